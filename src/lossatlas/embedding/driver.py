"""One call for all: several embeddings of the same samples from one streamed Gram matrix, with
their scores, as one ``xarray.Dataset``; and the registry of methods behind it."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from lossatlas._errors import InputError, positive_int, require
from lossatlas.progress import progress_bar

from .base import EmbeddingEstimator, param_names
from .gram import Gram, gram_from_source
from .inputs import as_source
from .methods import METHODS, Method, parse_method, parse_metric
from .pca import PCA, RandomProjection
from .phate import PHATE
from .scores import consecutive_pairs, continuity_from_neighbours, geodesic_distances, neighbours, spearman
from .tsne import TSNE
from .umap import UMAP

__all__ = ["ESTIMATORS", "embed", "make_estimator"]

ESTIMATORS: dict[Method, type[EmbeddingEstimator]] = {
    Method.PHATE: PHATE,
    Method.TSNE: TSNE,
    Method.UMAP: UMAP,
    Method.PCA: PCA,
    Method.RANDOM: RandomProjection,
}

_GROUP_COORDS = ("run", "seed", "step_size")
_ORDER_COORDS = ("epoch", "step")


def make_estimator(name: str | Method, **kw: Any) -> EmbeddingEstimator:
    """An unfitted estimator for method ``name`` (one of :data:`METHODS`).

    Examples
    --------
    >>> make_estimator("pca", n_components=3)
    PCA(n_components=3)
    """
    cls = ESTIMATORS[parse_method(name)]
    accepted = param_names(cls)
    unknown = sorted(set(kw) - accepted)
    require(not unknown, f"{cls.__name__} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(**kw)


def _version() -> str:
    try:
        return metadata.version("lossatlas")
    except metadata.PackageNotFoundError:
        return "not installed"


def _trajectory_labels(coords: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    order = next((coords[c] for c in _ORDER_COORDS if c in coords), None)
    if order is None:
        return None, None
    if "run" in coords:
        keys = [coords["run"]]
    else:
        keys = [coords[c] for c in _GROUP_COORDS if c in coords]
    if not keys:
        return np.zeros(len(order), dtype=np.int64), order
    stacked = np.stack([np.unique(k, return_inverse=True)[1].ravel() for k in keys], axis=1)
    return np.unique(stacked, axis=0, return_inverse=True)[1].ravel(), order


def embed(
    samples: Any,
    methods: tuple[str, ...] | list[str] = ("phate", "tsne", "umap", "pca"),
    *,
    n_components: int = 2,
    metric: str = "cosine",
    seed: int = 0,
    knn: int = 5,
    scores: bool = True,
    chunk: int | None = None,
    max_memory: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress=False,
):
    """Embed ``samples`` with several methods from one streamed Gram matrix, with scores.

    Parameters
    ----------
    samples : array, Dataset, DataArray or zarr path
    methods : names from :data:`METHODS`
    n_components, metric, seed : passed to every method that takes them
    knn : neighbours for PHATE's graph, DeMAP and trajectory continuity
    scores : compute DeMAP (geodesics in ``metric``) and, when the samples have trajectory coords
        (``run`` or ``seed``/``step_size``, with ``epoch``), trajectory continuity against the data
    options : per-method keyword arguments, e.g. ``{"tsne": {"perplexity": 20}}``
    progress : bool or callable
        As everywhere (:func:`lossatlas.progress.progress_bar`): one step for the Gram matrix,
        one per method, one for the scores.

    Returns
    -------
    xarray.Dataset with variable ``embedding`` (method, point, component), the samples' point coords,
    and attrs ``{method}_demap``, ``{method}_continuity``, ``{method}_seconds``, ``phate_t``,
    ``pca_explained_variance_ratio``.

    Examples
    --------
    >>> from lossatlas.embedding import make_tree
    >>> X, branch, pos = make_tree(n_branches=3, points_per_branch=30, n_dims=20)
    >>> ds = embed(X, methods=("pca", "random"), metric="euclidean")
    >>> ds["embedding"].shape
    (2, 90, 2)
    """

    if isinstance(samples, Gram):
        raise InputError("embed needs the weights themselves, not a Gram matrix; pass the samples")
    require(len(methods) > 0, f"give at least one method from {list(METHODS)}")
    names = [parse_method(m) for m in methods]
    require(len(set(names)) == len(names), f"methods repeat: {list(methods)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(METHODS))
    require(not unknown, f"options for unknown methods {unknown}; choose from {list(METHODS)}")
    metric_ = parse_metric(metric)
    knn = positive_int("knn", knn)
    common = {"n_components": n_components, "metric": metric, "seed": seed, "knn": knn, "chunk": chunk,
              "max_memory": max_memory}
    estimators: dict[Method, EmbeddingEstimator] = {}
    for m in names:
        accepted = param_names(ESTIMATORS[m])
        kw = {k: v for k, v in common.items() if k in accepted}
        kw.update(options.get(m.value, {}))
        est = make_estimator(m, **kw)
        est.validate()
        estimators[m] = est

    src = as_source(samples, chunk)
    for est in estimators.values():
        est.check_n_points(src.n)
    if scores:
        require(src.n >= knn + 1, f"scores with knn={knn} need at least {knn + 1} points, got {src.n}")
    need_gram = scores or any(est.uses_gram for est in estimators.values())
    with progress_bar(progress, int(need_gram) + len(names) + int(scores),
                      f"embedding {src.n} points: {', '.join(m.value for m in names)}") as advance:
        return _embed(src, names, estimators, need_gram, scores, metric_, seed, knn, n_components, max_memory, advance)


def _embed(src, names, estimators, need_gram, scores, metric_, seed, knn, n_components, max_memory, advance):
    import xarray as xr

    gram = gram_from_source(src, max_memory) if need_gram else None
    if need_gram:
        advance(1)

    attrs: dict[str, Any] = {
        "methods": [m.value for m in names],
        "metric": metric_.value,
        "seed": int(seed),
        "knn": knn,
        "n_params": src.p,
        "lossatlas_version": _version(),
    }
    out = np.zeros((len(names), src.n, n_components))
    for i, (m, est) in enumerate(estimators.items()):
        t0 = time.perf_counter()
        est.fit_prepared(src, gram)
        attrs[f"{m.value}_seconds"] = round(time.perf_counter() - t0, 4)
        out[i] = est.embedding_
        if isinstance(est, PHATE):
            attrs["phate_t"] = est.t_
        if isinstance(est, PCA):
            attrs["pca_explained_variance_ratio"] = [float(x) for x in est.explained_variance_ratio_]
        advance(1)

    if scores:
        D = gram.distances(metric_)
        G = geodesic_distances(D, knn)
        iu = np.triu_indices(src.n, 1)
        geo = G[iu]
        del G
        groups, order = _trajectory_labels(src.coords)
        nb_dat = neighbours(D, knn) if groups is not None else None
        for i, m in enumerate(names):
            attrs[f"{m.value}_demap"] = spearman(geo, pdist(out[i]))
            if groups is not None:
                pairs = consecutive_pairs(groups, order, src.n)
                attrs[f"{m.value}_continuity"] = continuity_from_neighbours(out[i], pairs, knn, nb_dat)
        attrs["scores_knn"] = knn
        advance(1)

    coords: dict[str, Any] = {
        "method": [m.value for m in names],
        "component": np.arange(n_components),
    }
    point_index = src.coords.get("point")
    coords["point"] = point_index if point_index is not None else np.arange(src.n)
    for name, values in src.coords.items():
        if name != "point":
            coords[name] = ("point", values)
    return xr.Dataset({"embedding": (("method", "point", "component"), out)}, coords=coords, attrs=attrs)

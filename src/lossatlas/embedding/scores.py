"""How well an embedding keeps the data: DeMAP (Moon et al. 2019) and trajectory continuity, with
the kNN graphs and geodesic distances they rest on (scikit-learn's neighbour search, SciPy's
shortest paths and rank correlation)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial.distance import pdist

from lossatlas._errors import positive_int, require

from .gram import Gram
from .methods import Metric

__all__ = [
    "consecutive_pairs",
    "continuity_from_neighbours",
    "demap",
    "geodesic_distances",
    "knn_graph",
    "neighbours",
    "spearman",
    "trajectory_continuity",
]


def knn_graph(D: np.ndarray, k: int) -> sparse.csr_matrix:
    """The symmetrised ``k``-nearest-neighbour graph of a distance matrix, edges weighted by distance.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 3.0, 6.0])
    >>> D = np.abs(np.subtract.outer(x, x))
    >>> knn_graph(D, 1).nnz
    6
    """
    from sklearn.neighbors import kneighbors_graph

    W = kneighbors_graph(D, k, mode="distance", metric="precomputed", include_self=False)
    # Zero weights would mean "no edge" to scipy; duplicates get a tiny positive length instead.
    W.data = np.maximum(W.data, np.finfo(float).tiny)
    return W.maximum(W.T).tocsr()


def neighbours(D: np.ndarray, k: int) -> np.ndarray:
    """Indices [n, k] of each point's ``k`` nearest other points, from a distance matrix.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 3.0, 6.0])
    >>> D = np.abs(np.subtract.outer(x, x))
    >>> neighbours(D, 1)[:, 0].tolist()
    [1, 0, 1, 2]
    """
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, metric="precomputed").fit(D).kneighbors(return_distance=False)


def _embedding_neighbours(E: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(E).kneighbors(return_distance=False)


def _connect_components(W: sparse.csr_matrix, D: np.ndarray) -> sparse.csr_matrix:
    """Join the components of a kNN graph by the shortest edges of a spanning tree over components."""
    n_comp, labels = csgraph.connected_components(W, directed=False)
    if n_comp == 1:
        return W
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(n_comp))
    best = np.full((n_comp, n_comp), np.inf)
    ends = np.full((n_comp, n_comp, 2), -1, dtype=np.int64)
    for c in range(n_comp):
        members = np.flatnonzero(labels == c)
        sub = D[members][:, order]  # rows: members of c; columns grouped by component
        argmin_rows = np.argmin(sub, axis=0)
        colmin = sub[argmin_rows, np.arange(len(order))]
        per_comp = np.minimum.reduceat(colmin, starts)
        for c2 in range(n_comp):
            if c2 == c:
                continue
            seg = slice(starts[c2], starts[c2 + 1] if c2 + 1 < n_comp else len(order))
            j = np.argmin(colmin[seg]) + seg.start
            best[c, c2] = per_comp[c2]
            ends[c, c2] = (members[argmin_rows[j]], order[j])
    np.fill_diagonal(best, 0.0)
    tree = csgraph.minimum_spanning_tree(np.maximum(best, np.finfo(float).tiny) * (1 - np.eye(n_comp)))
    W = W.tolil()
    for c, c2 in zip(*tree.nonzero()):
        i, j = ends[c, c2]
        w = max(D[i, j], np.finfo(float).tiny)
        W[i, j] = w
        W[j, i] = w
    return W.tocsr()


def geodesic_distances(D: np.ndarray, knn: int) -> np.ndarray:
    """Shortest-path lengths [n, n] on the ``knn`` graph of ``D``, its components joined by their
    shortest bridges (a minimum spanning tree over components), so every pair has one.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 3.0, 6.0])
    >>> D = np.abs(np.subtract.outer(x, x))
    >>> float(geodesic_distances(D, 1)[0, 3])
    6.0
    """
    W = _connect_components(knn_graph(D, knn), D)
    return csgraph.shortest_path(W, method="D", directed=False)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of ``a`` and ``b`` (NaN when either is constant).

    Examples
    --------
    >>> round(spearman(np.arange(5.0), np.exp(np.arange(5.0))), 12)
    1.0
    """
    from scipy.stats import ConstantInputWarning, spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # undefined: NaN, said by the caller
        return float(spearmanr(a, b).statistic)


def _embedding_array(embedding: Any, n: int | None = None) -> np.ndarray:
    if hasattr(embedding, "embedding_"):
        embedding = embedding.embedding_
    E = np.asarray(embedding, dtype=np.float64)
    if E.ndim == 1:
        E = E[:, None]
    require(E.ndim == 2, f"embedding must be [n_points, n_components], got shape {E.shape}")
    require(np.isfinite(E).all(), "embedding contains NaN or inf; refit it or drop those points")
    if n is not None:
        require(E.shape[0] == n, f"embedding has {E.shape[0]} points but the data have {n}")
    return E


def demap(samples: Any, embedding: Any, knn: int = 5, metric: str | Metric = "euclidean") -> float:
    """DeMAP (Moon et al. 2019): Spearman correlation of data geodesics with embedding distances.

    Geodesic distances are shortest paths on the symmetrised kNN graph of the points (edge length:
    ``metric`` distance between the points). A disconnected graph is joined by the shortest edges
    between its components (a minimum spanning tree over components), so every pair counts. Pass the
    noiseless points when they are known (Moon et al. do) to measure denoised preservation.

    Parameters
    ----------
    samples : array, Dataset, DataArray, zarr path or Gram
    embedding : array [n, k] or fitted estimator
    knn : int
    metric : {"euclidean", "cosine"}

    Returns
    -------
    float in [-1, 1]; 1 when embedding distances are a monotone function of the geodesics.

    Examples
    --------
    >>> t = np.sort(np.random.default_rng(0).uniform(size=50))
    >>> X = np.outer(t, np.ones(10))  # points on a line in R^10
    >>> round(demap(X, t[:, None]), 6)
    1.0
    """
    knn = positive_int("knn", knn)
    D = Gram.from_samples(samples).distances(metric)
    n = D.shape[0]
    require(n >= knn + 1, f"DeMAP with knn={knn} needs at least {knn + 1} points, got {n}; lower knn")
    E = _embedding_array(embedding, n)
    G = geodesic_distances(D, knn)
    iu = np.triu_indices(n, 1)
    return spearman(G[iu], pdist(E))


def consecutive_pairs(groups: Any, order: Any, n: int) -> np.ndarray:
    """Index pairs [m, 2] of points that follow each other (by ``order``) within a group.

    ``groups`` may be None (one trajectory), one value per point, or several columns per point
    (e.g. seed and step size) that together name a trajectory.

    Examples
    --------
    >>> consecutive_pairs([0, 0, 1, 1], [1, 0, 0, 1], 4).tolist()
    [[1, 0], [2, 3]]
    """
    order = np.asarray(order)
    require(order.shape == (n,), f"order must give one value per point ({n}), got shape {order.shape}")
    if groups is None:
        groups = np.zeros(n, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.ndim == 2:  # several columns (e.g. seed and step_size) form one group id
        groups = np.unique(groups, axis=0, return_inverse=True)[1].ravel()
    require(groups.shape == (n,), f"groups must give one value per point ({n}), got shape {groups.shape}")
    idx = np.lexsort((order, groups))
    same = groups[idx][1:] == groups[idx][:-1]
    return np.stack([idx[:-1][same], idx[1:][same]], axis=1)


def continuity_from_neighbours(E: np.ndarray, pairs: np.ndarray, k: int, nb_dat: np.ndarray | None) -> float:
    """Share of the directed checks "b among the k nearest neighbours of a" (both ways, for each
    consecutive pair) that hold in the embedding ``E``; with the data's neighbours ``nb_dat``, only
    the checks that hold in the data count.

    Examples
    --------
    >>> E = np.array([[0.0], [1.0], [3.0], [6.0]])
    >>> continuity_from_neighbours(E, np.array([[0, 1], [1, 2], [2, 3]]), 1, None)
    0.6666666666666666
    """
    if len(pairs) == 0:
        return float("nan")
    a, b = pairs[:, 0], pairs[:, 1]
    nb_emb = _embedding_neighbours(E, k)
    hit = np.concatenate([(nb_emb[a] == b[:, None]).any(axis=1), (nb_emb[b] == a[:, None]).any(axis=1)])
    if nb_dat is None:
        return float(hit.mean())
    valid = np.concatenate([(nb_dat[a] == b[:, None]).any(axis=1), (nb_dat[b] == a[:, None]).any(axis=1)])
    return float(hit[valid].mean()) if valid.any() else float("nan")


def trajectory_continuity(
    embedding: Any,
    groups: Any,
    order: Any,
    k: int = 5,
    reference: Any = None,
    metric: str | Metric = "euclidean",
) -> float:
    """How often consecutive points of a trajectory stay among each other's k nearest neighbours.

    Points of one trajectory share a ``groups`` value (e.g. run id, or the (seed, step_size) of a
    jump) and are ordered by ``order`` (e.g. epoch). For every consecutive pair (a, b) two directed
    checks are made in the embedding: b among the k nearest neighbours of a, and a among those of b.
    The score is the fraction that holds. With ``reference`` (the data), only the checks that hold
    in the data count, so the score is the share of the data's trajectory neighbourhoods that the
    embedding keeps (1.0 for any isometry).

    Examples
    --------
    >>> E = np.c_[np.arange(10.0), np.zeros(10)]
    >>> trajectory_continuity(E, groups=None, order=np.arange(10), k=2)
    1.0
    """
    k = positive_int("k", k)
    E = _embedding_array(embedding)
    n = E.shape[0]
    require(n >= k + 1, f"trajectory_continuity with k={k} needs at least {k + 1} points, got {n}; lower k")
    pairs = consecutive_pairs(groups, order, n)
    if len(pairs) == 0:
        warnings.warn("no two points share a group: trajectory continuity is undefined", RuntimeWarning)
        return float("nan")
    if reference is None:
        return continuity_from_neighbours(E, pairs, k, None)
    D = Gram.from_samples(reference).distances(metric)
    require(D.shape[0] == n, f"reference has {D.shape[0]} points but the embedding has {n}")
    score = continuity_from_neighbours(E, pairs, k, neighbours(D, k))
    if np.isnan(score):
        warnings.warn("no consecutive pair is a k-nearest-neighbour pair in the data", RuntimeWarning)
    return score

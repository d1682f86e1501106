"""Topology of a sampled loss landscape: kNN graphs, loss filtrations, persistence diagrams.

Horoi et al. (IDA 2022, sections 2.2 and 3.3) connect each sampled point to its ``k`` nearest
points, measured between rows of the PHATE diffusion potential, give every vertex its point's
loss, and filter the graph by increasing loss (a lower-star filtration: a simplex enters at the
largest value of its vertices). The persistence diagrams D0 (components) and D1 (cycles) of that
filtration, and their total persistence, describe how rugged the region around a minimum is.

Two choices of the authors' public code are deliberately not repeated here:

- their kNN graph takes, in each row of the potential itself, the ``k`` *largest* entries. The
  potential is a negative log of diffusion probabilities, so those are the points least related
  to the row's point. Here neighbours are the ``k`` rows of the potential nearest in Euclidean
  distance (the potential distance PHATE embeds), found by a neighbours search, never a dense
  n x n matrix.
- their values were offset by one against the points (the minimum left out of the embedding but
  not out of the values). Here values must have exactly one entry per embedded point, in the
  order of the embedding; anything else is refused.

Which filtration matches the paper: Horoi et al. (section 2.2) filter the *graph* itself, vertices
``f(v) <= w`` and edges ``max(f(u), f(v)) <= w``: ``complex="graph"`` here. The default
``complex="flag"`` also fills every triangle of the graph, so a cycle of three mutually linked
points dies instead of staying essential; D0 is the same under both.

Essential classes: each connected component of the kNN graph leaves one D0 class that never dies
(and under ``"graph"`` every independent cycle one in D1). ``pers(D)`` of the paper sums over the
pairs of a diagram, and does not say what happens to these. With ``essential="drop"`` they are
left out; when the kNN graph falls into several components each of them is essential, so the
total can be exactly 0 while the landscape is anything but flat. :func:`persistence` therefore
warns (:class:`DisconnectedGraphWarning`) naming the number of components, its result carries
``components`` and ``max_value``, and :func:`persistence_totals` reports beside every total the
number of components, the finite pairs, and the total with essential classes capped at the
largest filtration value (``essential="cap"``; comparable across minima, finite, and never 0
merely because the graph split).

Floor 4 (analysis): NumPy, SciPy and scikit-learn; gudhi (the ``topology`` extra) is imported
where used.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Any

import numpy as np

from ._errors import InputError, missing_extra, parse_enum, positive_int, require
from .diagrams import Diagrams, DisconnectedGraphWarning, Essential, persistence_totals, total_persistence, totals_text

__all__ = [
    "Complex",
    "Diagrams",
    "DisconnectedGraphWarning",
    "Essential",
    "graph_persistence",
    "knn_graph",
    "persistence",
    "persistence_totals",
    "totals_text",
    "potential_of",
    "total_persistence",
    "vertex_values",
]


class Complex(str, Enum):
    """Which complex the filtration runs over."""

    FLAG = "flag"  # the graph's clique (flag) complex up to triangles: a cycle filled by triangles dies
    GRAPH = "graph"  # vertices and edges only (the authors' code): every cycle is essential


def _array(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def potential_of(source: Any) -> np.ndarray:
    """The diffusion potential [n, m] of a fitted PHATE estimator, or ``source`` itself as an array.

    Any object with a ``potential_`` attribute counts as a fitted PHATE (duck typing keeps this
    module independent of the embedding package).

    Examples
    --------
    >>> potential_of(np.eye(3)).shape
    (3, 3)
    """
    if hasattr(source, "potential_"):
        pot = getattr(source, "potential_")
        require(pot is not None, "the estimator has no diffusion potential (potential_ is None); fit a PHATE first")
        pot = _array(pot)
    elif hasattr(source, "fit") and hasattr(source, "get_params"):
        name = type(source).__name__
        hint = "call .fit(samples) first" if name == "PHATE" else "fit a PHATE, whose potential_ holds it"
        raise InputError(f"a {name} estimator has no diffusion potential; {hint}, or pass an [n, m] potential array")
    else:
        pot = _array(source)
    require(pot.ndim == 2, f"the potential must be a 2-D array [n_points, m], got shape {pot.shape}")
    require(pot.dtype.kind in "fiu", f"the potential must hold real numbers, got dtype {pot.dtype}")
    pot = pot.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(pot).all(axis=1))
    require(bad.size == 0, f"the potential has NaN or inf in rows {bad[:20].tolist()}; refit the embedding "
                           "without those points")
    return pot


def knn_graph(source: Any, k: int = 20, n_jobs: int | None = None):
    """The symmetric kNN graph on distances between rows of the diffusion potential.

    Each point is linked to its ``k`` nearest other points (Euclidean distance between rows of the
    potential, i.e. PHATE's potential distance); the graph is the union of those links, so a vertex
    can have more than ``k`` neighbours. Built by scikit-learn's neighbours search, so it never
    holds an n x n matrix.

    Parameters
    ----------
    source : fitted PHATE (anything with ``potential_``) or array [n, m]
    k : int
        Neighbours per point; at most ``n - 1``.
    n_jobs : int, optional
        Passed to :class:`sklearn.neighbors.NearestNeighbors`.

    Returns
    -------
    scipy.sparse.csr_matrix [n, n] of bools, symmetric, empty diagonal.

    Examples
    --------
    >>> A = knn_graph(np.arange(5.0)[:, None], k=1)
    >>> A[2].indices.tolist()                    # the point at 2 is linked to 1 and 3
    [1, 3]
    """
    from sklearn.neighbors import NearestNeighbors

    pot = potential_of(source)
    k = positive_int("k", k)
    n = pot.shape[0]
    require(k < n, f"k={k} needs at least k + 1 = {k + 1} points, got {n}; lower k (e.g. k={max(1, n - 1)})")
    # kneighbors_graph without query points leaves each point out of its own neighbours by index,
    # so duplicate rows still count as neighbours of each other.
    nn = NearestNeighbors(n_neighbors=k, metric="euclidean", n_jobs=n_jobs).fit(pot)
    directed = nn.kneighbors_graph(mode="connectivity").astype(bool)
    return (directed + directed.T).tocsr()


def vertex_values(values: Any, n: int, samples: Any = None) -> np.ndarray:
    """One float per embedded point, in the embedding's order, from any accepted form of ``values``.

    Parameters
    ----------
    values : str, array, xarray.DataArray, xarray.Dataset or tensor
        A name (``"loss"`` for train loss, ``"test_loss"``, ...) of a variable of ``samples``; a
        Dataset (its ``"loss"``); or the values themselves, 1-D.
    n : int
        Number of embedded points; ``values`` must have exactly ``n`` entries.
    samples : xarray.Dataset, optional
        The samples the embedding was fitted on, when ``values`` is a name.

    Examples
    --------
    >>> vertex_values([0.5, 0.1], n=2)
    array([0.5, 0.1])
    """
    what = "values"
    if isinstance(values, str):
        require(samples is not None and hasattr(samples, "data_vars"),
                f"values={values!r} names a variable; also give samples=, the Dataset the embedding was "
                "fitted on, or pass the values themselves (e.g. values=samples['loss'])")
        require(values in samples.data_vars,
                f"samples has no variable {values!r}; choose one of {sorted(map(str, samples.data_vars))}")
        what = f"samples[{values!r}]"
        values = samples[values]
    elif hasattr(values, "data_vars"):
        require("loss" in values.data_vars,
                f"the Dataset has no variable 'loss' (it has {sorted(map(str, values.data_vars))}); pass "
                "values='NAME' with samples=DATASET, or the values themselves")
        what, values = "the Dataset's 'loss'", values["loss"]
    if hasattr(values, "dims") and hasattr(values, "values"):  # DataArray
        require(values.ndim == 1, f"{what} must be 1-D along the points, got dims {tuple(values.dims)}")
        values = values.values
    arr = _array(values)
    require(arr.ndim == 1, f"{what} must be 1-D (one value per point), got shape {arr.shape}")
    require(arr.dtype.kind in "fiub", f"{what} must hold real numbers, got dtype {arr.dtype}")
    require(
        arr.shape[0] == n,
        f"{what} has {arr.shape[0]} entries but the embedding has {n} points. Each vertex takes the value "
        "of its own point: give exactly one value per embedded point, in the embedding's order (if the "
        "embedding left points out, e.g. the minimum itself, leave their values out too)",
    )
    arr = arr.astype(np.float64)
    require(not np.isneginf(arr).any(), f"{what} contains -inf at points {np.flatnonzero(np.isneginf(arr))[:20].tolist()}")
    return arr


def _diagram(intervals) -> np.ndarray:
    arr = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))]


def graph_persistence(adjacency: Any, values: Any, complex: str | Complex = "flag") -> dict[int, np.ndarray]:
    """Persistence diagrams of the lower-star filtration of a graph by vertex values.

    A vertex enters at its value, an edge (and, with ``complex="flag"``, a triangle) at the largest
    value of its vertices. Pairs of zero persistence are left out. Vertices whose value is NaN or
    +inf (e.g. a diverged run) never enter any finite sublevel set, so they are left out with a
    warning: classes that only such a vertex would kill stay essential.

    Parameters
    ----------
    adjacency : scipy sparse matrix or array [n, n]
        Nonzero entries are edges; read as undirected (the union of both directions).
    values : array [n]
    complex : {"flag", "graph"}
        ``"flag"``: the clique complex up to triangles, so a cycle filled by triangles dies;
        ``"graph"``: vertices and edges only, so every cycle is essential.

    Returns
    -------
    :class:`Diagrams`: a dict {0: array [m0, 2], 1: array [m1, 2]} of (birth, death), essential
    classes with death ``inf``, sorted by birth then death; ``.components`` the number of
    connected components among the finite vertices, ``.max_value`` the largest finite value.

    Examples
    --------
    >>> square = np.roll(np.eye(4), 1, axis=1)   # the cycle 0-1-2-3-0
    >>> graph_persistence(square, [0.0, 1.0, 2.0, 3.0])[1]
    array([[ 3., inf]])
    """
    import scipy.sparse as sp

    try:
        import gudhi
    except ImportError:
        raise missing_extra("gudhi", "topology") from None
    kind = parse_enum(Complex, complex, "complex")
    adj = sp.csr_matrix(adjacency) if sp.issparse(adjacency) else sp.csr_matrix(_array(adjacency))
    require(adj.ndim == 2 and adj.shape[0] == adj.shape[1], f"adjacency must be square [n, n], got {adj.shape}")
    n = adj.shape[0]
    f = vertex_values(values, n)
    keep = np.isfinite(f)
    if not keep.all():
        bad = np.flatnonzero(~keep)
        warnings.warn(f"{bad.size} point(s) have NaN or inf values (e.g. {bad[:10].tolist()}); they enter no "
                      "sublevel set and are left out of the filtration", RuntimeWarning, stacklevel=2)
    upper = sp.triu(adj + adj.T, k=1).tocoo()
    i, j = upper.row.astype(np.int64), upper.col.astype(np.int64)
    both = keep[i] & keep[j]
    i, j = i[both], j[both]

    st = gudhi.SimplexTree()
    # Vertices first, with their own values; then edges at the max of their endpoints. insert would
    # lower an existing face to the simplex's value, so this order (edges never below their vertices)
    # keeps every vertex at its value.
    vertices = np.flatnonzero(keep)
    if vertices.size:
        st.insert_batch(vertices[None, :], f[vertices])
    if i.size:
        st.insert_batch(np.vstack([i, j]), np.maximum(f[i], f[j]))
    if kind is Complex.FLAG:
        st.expansion(2)  # triangles enter at the max of their edges = the max of their vertices
    # persistence_dim_max: without it gudhi skips the top dimension, so a graph would report no H1.
    st.persistence(homology_coeff_field=2, persistence_dim_max=True)
    components = _components(n, i, j, keep)
    top = float(f[keep].max()) if keep.any() else 0.0
    return Diagrams({d: _diagram(st.persistence_intervals_in_dimension(d)) for d in (0, 1)}, components, top,
                    complex=kind.value)


def _components(n: int, i: np.ndarray, j: np.ndarray, keep: np.ndarray) -> int:
    """Connected components of the graph on the kept vertices with edges (i, j)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    if not keep.any():
        return 0
    graph = sp.coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(np.unique(labels[keep]).size)


def persistence(
    source: Any,
    values: Any = "loss",
    k: int = 20,
    complex: str | Complex = "flag",
    *,
    samples: Any = None,
    n_jobs: int | None = None,
) -> dict[int, np.ndarray]:
    """Persistence diagrams of the loss filtration of the kNN graph on the diffusion potential.

    The kNN graph (see :func:`knn_graph`) links each point to its ``k`` nearest points in potential
    distance; each vertex takes its own point's value; the filtration is lower-star (a simplex
    enters at the largest value of its vertices), over the flag complex by default. Horoi et al.
    (2022) section 3.3, with the two defects of their public code fixed (see the module docstring).

    Parameters
    ----------
    source : fitted PHATE (anything with ``potential_``) or array [n, m]
        The diffusion potential, one row per embedded point.
    values : str, array, xarray.DataArray or xarray.Dataset
        The filtration values, one per embedded point in the embedding's order: an array or
        DataArray (e.g. ``samples["loss"]``), a Dataset (its train ``"loss"``), or a variable name
        (``"loss"``, the default; ``"test_loss"``) looked up in ``samples``.
    k : int
        Neighbours per point (the paper uses 20).
    complex : {"flag", "graph"}
        ``"flag"`` (default): cycles filled by triangles of the graph die. ``"graph"``: vertices and
        edges only, as in the authors' code, so every cycle is essential.
    samples : xarray.Dataset, optional
        Needed when ``values`` is a name.
    n_jobs : int, optional
        For the neighbours search.

    Returns
    -------
    :class:`Diagrams`: a dict {0: array [m0, 2], 1: array [m1, 2]} of (birth, death) pairs with
    positive persistence; essential classes (D0 always has one per connected component) have
    death ``inf``. ``.components`` is the number of connected components of the kNN graph,
    ``.max_value`` the largest filtration value; see :func:`persistence_totals`.

    Warns
    -----
    DisconnectedGraphWarning
        When the kNN graph has several components (each one's class is essential, so the total
        over finite pairs misses them all and is often exactly 0).

    Examples
    --------
    >>> emb = la.PHATE(metric="cosine").fit(samples)                  # doctest: +SKIP
    >>> diagrams = la.persistence(emb, values=samples["loss"], k=20)  # doctest: +SKIP
    >>> la.total_persistence(diagrams[0], p=2)                        # doctest: +SKIP
    >>> la.persistence_totals(diagrams)["components"]                 # doctest: +SKIP
    """
    parse_enum(Complex, complex, "complex")
    pot = potential_of(source)
    n = pot.shape[0]
    fitted_n = getattr(source, "n_points_", None)
    require(fitted_n is None or int(fitted_n) == n,
            f"the estimator embedded {fitted_n} points but its potential has {n} rows; refit it")
    f = vertex_values(values, n, samples)  # checked before the neighbours search
    positive_int("k", k)
    diagrams = graph_persistence(knn_graph(pot, k, n_jobs=n_jobs), f, complex)
    diagrams.k = int(k)
    if diagrams.components > 1:
        warnings.warn(
            f"the kNN graph (k={k}) of the {n} points has {diagrams.components} connected components: each "
            f"one's D0 class is essential, so total persistence over the finite pairs leaves all "
            f"{diagrams.components} out (it is 0 when each piece is one basin). Raise k, or compare the total "
            f"with essential classes capped at the largest loss (persistence_totals)",
            DisconnectedGraphWarning, stacklevel=2)
    return diagrams

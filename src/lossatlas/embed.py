"""Embeddings of sampled weights (PHATE, t-SNE, UMAP, PCA, a random plane) and trajectory scores.

Floor 4 (analysis): pure NumPy/SciPy/scikit-learn on weight samples. ``samples`` is any of

- a NumPy array ``[n_points, n_params]``;
- an ``xarray.Dataset`` with a variable ``weights`` of dims ``("point", "param")`` (possibly dask/zarr
  backed and chunked along ``point``), or such an ``xarray.DataArray``;
- the path of a zarr store holding such a Dataset.

Weights never sit in memory twice. Every method but the random plane works from the ``n x n`` Gram
matrix of the points, accumulated chunk by chunk along ``point`` (:class:`Gram`): exact PCA scores
come from the double-centred Gram, cosine and Euclidean distances from its entries. The Gram is
kept as ``Y Y^T`` with ``Y = X - r`` for a reference vector ``r`` near the data (the mean of the
first block of points), so the small distances between consecutive points of a trajectory, far from
the origin, keep their digits.

Which cosine PHATE sees. Horoi et al. describe cosine distance on the weights. The ``phate`` package
they use, given ``knn_dist="cosine"`` and raw data, first projects the data on its first
``n_pca=100`` principal components (centring it) and takes cosines between those scores: angles
seen from the mean of the samples, not from the origin of weight space. The two geometries differ.
On synthetic jump-and-retrain data (16 trajectories x 40 epochs, 50k parameters, see
``bench/embed.py``) the centred version kept trajectories far better (trajectory continuity
0.93-0.98 against 0.43-0.47 for raw-weight cosine; DeMAP 0.49-0.55 against 0.40-0.45), so
:class:`PHATE` defaults to ``distances="pca"``: what the package does, with exact rather than
randomized PCA, computed from the streamed Gram matrix. ``distances="centered"`` keeps every
component and ``distances="weights"`` uses the raw-weight cosine. t-SNE and UMAP use raw-weight
distances, as their packages do with ``metric="cosine"`` on raw data.

Scores: :func:`demap` (Moon et al. 2019) and :func:`trajectory_continuity`; test data:
:func:`make_tree` (the artificial tree of Horoi et al., Fig. 1C); one call for all: :func:`embed`.
"""

from __future__ import annotations

import numbers
import os
import time
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from scipy.linalg import eigh
from scipy.sparse import csgraph
from scipy.spatial.distance import pdist, squareform
from sklearn.base import BaseEstimator

from lossatlas._errors import InputError, missing_extra, require

__all__ = [
    "METHODS",
    "Method",
    "Metric",
    "Gram",
    "GramPCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "PCA",
    "RandomProjection",
    "gram_matrix",
    "pca_from_gram",
    "demap",
    "trajectory_continuity",
    "make_tree",
    "make_estimator",
    "embed",
]


class Metric(str, Enum):
    """Distance between weight vectors; both are exact functions of the Gram matrix."""

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


class Method(str, Enum):
    """Embedding methods known to :func:`make_estimator` and :func:`embed`."""

    PHATE = "phate"
    TSNE = "tsne"
    UMAP = "umap"
    PCA = "pca"
    RANDOM = "random"


METHODS = tuple(m.value for m in Method)

# Bounds of the automatic budget for weights held at once when they come from a lazy store: a
# quarter of the memory available, within these limits.
MIN_AUTO_MEMORY = 2**30
MAX_AUTO_MEMORY = 16 * 2**30
# Size of one block of a lazy array read at once when the store gives no chunking.
_DEFAULT_CHUNK_BYTES = 256 * 2**20
# Size of the float64 copy of a column block used in the products.
_COLUMN_BLOCK_BYTES = 32 * 2**20
# Up to this many points, the n x n steps after the Gram matrix (eigendecompositions, PHATE's
# diffusion and MDS, t-SNE's gradient) run on one BLAS/OpenMP thread. Measured on the 2-core
# reference machine while other processes ran: a 1,000 x 1,000 SVD took 0.2 s on one thread and
# 5-10 s on two (threads waiting on each other for a busy core), t-SNE of 240 points 1.7 s against
# 53 s; on an idle machine one thread costs at most the factor of two it forgoes, on work of a
# second or less.
_ONE_THREAD_MAX_POINTS = 4096


def _threads_for(n: int):
    """One BLAS/OpenMP thread for an n x n problem small enough to gain nothing from more."""
    from contextlib import nullcontext

    if n > _ONE_THREAD_MAX_POINTS:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _metric(value: Any) -> Metric:
    try:
        return Metric(value)
    except ValueError:
        raise InputError(
            f"unknown metric {value!r}; choose one of {[m.value for m in Metric]} "
            "(both are computed exactly from the Gram matrix of the weights)"
        ) from None


def _method(value: Any) -> Method:
    if isinstance(value, Method):
        return value
    try:
        return Method(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise InputError(f"unknown method {value!r}; choose from {list(METHODS)}") from None


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    require(
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an integer >= {minimum}, got {value!r}",
    )
    return int(value)


def _seed(value: Any) -> int:
    require(
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0,
        f"seed must be a non-negative integer (randomness is explicit), got {value!r}",
    )
    return int(value)


# --------------------------------------------------------------------------------------------------
# Input: arrays, xarray objects, zarr paths


class _Source:
    """Rows of a ``[point, param]`` weight matrix, in memory or read block by block."""

    def __init__(self, array: Any, *, lazy: bool, coords: dict[str, np.ndarray], chunk: int, reader=None):
        self.array = array
        self.lazy = lazy
        self.reader = reader  # reader(start, stop, out): decode rows straight into ``out``
        self.coords = coords
        self.n, self.p = (int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunk = max(1, min(int(chunk), max(self.n, 1)))

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self.lazy:
            return self.array[start:stop]
        return np.asarray(self.array[start:stop].values)

    def block(self, start: int, stop: int, check: bool, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop``; a lazy array is read chunk by chunk into ``out`` (no second copy)."""
        if not self.lazy:
            rows = self.array[start:stop]
            if check:
                _check_finite(rows, start, self.n)
            return rows
        if out is None:
            out = np.empty((stop - start, self.p), dtype=self.dtype)
        for a in range(start, stop, self.chunk):
            b = min(stop, a + self.chunk)
            if self.reader is not None:
                self.reader(a, b, out[a - start : b - start])
            else:
                out[a - start : b - start] = self.rows(a, b)
        if check:
            _check_finite(out, start, self.n)
        return out


def _check_finite(rows: np.ndarray, offset: int, n: int) -> None:
    # A NaN or inf makes its row's sum non-finite; summing avoids a boolean copy of the block.
    bad = ~np.isfinite(rows.sum(axis=1, dtype=np.float64))
    if bad.any():
        where = (np.flatnonzero(bad) + offset).tolist()
        shown = ", ".join(map(str, where[:20])) + (" ..." if len(where) > 20 else "")
        stop = offset + len(rows)
        scope = "" if (offset == 0 and stop >= n) else (
            f" (checked points {offset}-{stop - 1} of {n} so far; later ones may hold more)"
        )
        raise InputError(
            f"samples contain NaN or inf in {len(where)} point(s): {shown}{scope}. Drop them first, "
            "e.g. samples.isel(point=good) or X[good], or fix the run that produced them."
        )


def _point_coords(obj: Any) -> dict[str, np.ndarray]:
    out = {}
    for name, coord in obj.coords.items():
        if coord.dims == ("point",):
            out[str(name)] = np.asarray(coord.values)
    return out


def _as_source(samples: Any, chunk: int | None = None) -> _Source:
    """Adapt every accepted form of ``samples`` once, at the edge."""
    if isinstance(samples, Gram):
        raise InputError("this step needs the weights themselves, not a Gram matrix; pass the samples")
    if isinstance(samples, (str, os.PathLike)):
        import xarray as xr

        path = os.fspath(samples)
        require(os.path.exists(path), f"no zarr store at {path!r}; pass an existing store, a Dataset or an array")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr 3 warns about consolidated metadata
            # Without dask: reading one chunk then costs decoding it and little else (measured
            # 0.56 s per 160 MB chunk, against 0.87 s through a dask graph).
            samples = xr.open_zarr(path, chunks=None)
        source = _as_source(samples, chunk)
        source.reader = _zarr_reader(path, samples)
        return source
    mod = type(samples).__module__
    if mod.startswith("xarray"):
        import xarray as xr

        if isinstance(samples, xr.Dataset):
            require(
                "weights" in samples.data_vars,
                f"the Dataset has no variable 'weights' (it has {sorted(map(str, samples.data_vars))}); "
                "embeddings need the sampled weights, dims ('point', 'param')",
            )
            samples = samples["weights"]
        require(
            isinstance(samples, xr.DataArray) and set(samples.dims) == {"point", "param"},
            f"weights must have dims ('point', 'param'), got {getattr(samples, 'dims', None)}; "
            "rename them, e.g. da.rename({'sample': 'point'})",
        )
        da = samples.transpose("point", "param")
        require(da.dtype.kind in "fiu", f"weights must be real numbers, got dtype {da.dtype}")
        coords = _point_coords(da)
        if isinstance(getattr(da.variable, "_data", None), np.ndarray):  # already in memory
            return _Source(da.values, lazy=False, coords=coords, chunk=da.shape[0] or 1)
        if chunk is None:
            if da.chunks is not None:
                chunk = int(da.chunks[0][0])
            else:
                pref = da.encoding.get("preferred_chunks", {}).get("point")
                chunk = int(pref) if pref else _default_chunk(da.shape[1], da.dtype)
        return _Source(da, lazy=True, coords=coords, chunk=chunk)
    if mod.startswith("torch"):
        samples = samples.detach().cpu().numpy()
    X = np.asarray(samples)
    require(X.ndim == 2, f"samples must be a 2-D array [n_points, n_params], got shape {X.shape}")
    require(X.dtype.kind in "fiu", f"samples must be real numbers, got dtype {X.dtype}")
    return _Source(X, lazy=False, coords={}, chunk=X.shape[0] or 1)


def _zarr_reader(path: str, ds: Any):
    """Decode rows of the store's ``weights`` straight into a caller's buffer, or None.

    Saves a 1x copy and a fresh allocation per chunk over xarray's indexing (13.5 s against 18.4 s
    for 3.7 GB measured); used only when xarray would return the stored values unchanged.
    """
    try:
        import zarr

        da = ds["weights"]
        enc = da.encoding
        if da.dims != ("point", "param") or "scale_factor" in enc or "add_offset" in enc:
            return None
        arr = zarr.open_group(path, mode="r")["weights"]
        fill = getattr(arr, "fill_value", None)
        if arr.dtype != da.dtype or arr.shape != da.shape or not (fill is None or np.isnan(fill)):
            return None
        try:
            from zarr.core.buffer import default_buffer_prototype

            wrap = default_buffer_prototype().nd_buffer.from_numpy_array
        except ImportError:  # zarr 2 takes NumPy arrays
            wrap = lambda a: a  # noqa: E731

        def read(start: int, stop: int, out: np.ndarray) -> None:
            arr.get_basic_selection((slice(start, stop),), out=wrap(out))

        return read
    except Exception:  # any layout this shortcut does not know: xarray reads it
        return None


def _default_chunk(p: int, dtype: Any) -> int:
    return max(1, _DEFAULT_CHUNK_BYTES // max(1, p * np.dtype(dtype).itemsize))


# --------------------------------------------------------------------------------------------------
# The Gram matrix


@dataclass(frozen=True)
class Gram:
    """Second moments of ``n`` weight vectors, from which every embedding here is computed.

    Stored as ``shifted = Y Y^T``, ``cross = Y r`` and ``ref_sq = r . r`` with ``Y = X - r``; the raw
    Gram is ``X X^T = shifted + cross 1^T + 1 cross^T + ref_sq``. Keeping the shift makes distances
    between nearby points accurate even when the points lie far from the origin (as weights do).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(20, 100))
    >>> g = Gram.from_samples(X)
    >>> np.allclose(g.matrix(), X @ X.T)
    True
    """

    shifted: np.ndarray
    cross: np.ndarray
    ref_sq: float
    n_params: int

    @property
    def n(self) -> int:
        return int(self.shifted.shape[0])

    @classmethod
    def from_samples(
        cls, samples: Any, chunk: int | None = None, max_memory: int | None = None, n_jobs: int | None = None
    ) -> Gram:
        """Accumulate the Gram matrix of ``samples`` block by block along ``point``.

        Parameters
        ----------
        samples : array, xarray.Dataset / DataArray, or path of a zarr store
        chunk : int, optional
            Points read at once from a lazy store (default: the store's chunk along ``point``).
        max_memory : int, optional
            Bytes of weights held at once for a lazy store (a panel of points, plus a block of the
            points streamed past it). Default: a quarter of the available memory, between 1 and
            16 GiB. When all weights fit they are read once; otherwise each panel costs one read of
            the points after it. Arrays already in memory are used in place.
        n_jobs : int, optional
            Worker threads for the products (default: the usable CPUs).
        """
        if isinstance(samples, Gram):
            return samples
        return _gram_from_source(_as_source(samples, chunk), max_memory, n_jobs)

    def matrix(self) -> np.ndarray:
        """The raw Gram matrix ``X X^T`` [n, n]."""
        c = self.cross
        return self.shifted + ((c[:, None] + c[None, :]) + self.ref_sq)  # grouped so it stays symmetric

    def centered(self) -> np.ndarray:
        """The Gram matrix of the centred points, ``J X X^T J`` with ``J = I - 11^T/n``."""
        S = self.shifted
        row = S.mean(axis=1)
        return S - row[:, None] - row[None, :] + row.mean()

    def sq_norms(self) -> np.ndarray:
        """``|x_i|^2`` for every point."""
        return np.diag(self.shifted) + 2.0 * self.cross + self.ref_sq

    def euclidean_distances(self, squared: bool = False) -> np.ndarray:
        """Exact pairwise Euclidean distances between the raw weight vectors [n, n]."""
        d = np.diag(self.shifted)
        D = d[:, None] + d[None, :] - 2.0 * self.shifted
        np.maximum(D, 0.0, out=D)
        np.fill_diagonal(D, 0.0)
        return D if squared else np.sqrt(D, out=D)

    def cosine_distances(self) -> np.ndarray:
        """Exact pairwise cosine distances ``1 - cos(x_i, x_j)`` between the raw weight vectors [n, n].

        Computed as ``|x_i/a_i - x_j/a_j|^2 / 2`` (``a = |x|``) expanded around the reference, so no
        term cancels at the scale of ``|x|^2``: small angles stay accurate.
        """
        S, v, rr = self.shifted, self.cross, self.ref_sq
        a2 = self.sq_norms()
        d = np.diag(S)
        # |x|^2 = |y|^2 + 2 y.r + |r|^2 is only known to rounding of its terms' size
        zero_like = a2 <= 64 * np.finfo(float).eps * (d + 2 * np.abs(v) + rr)
        if np.any(zero_like):
            zero = np.flatnonzero(zero_like).tolist()[:20]
            raise InputError(
                f"points {zero} have all-zero weights, so their cosine distance is undefined; "
                "drop them or use metric='euclidean'"
            )
        a = np.sqrt(a2)
        inv = 1.0 / a
        # |u_i - u_j|^2 with u = y / a
        uu = (d * inv * inv)[:, None] + (d * inv * inv)[None, :] - 2.0 * S * inv[:, None] * inv[None, :]
        # w = 1/a_i - 1/a_j = (a_j - a_i) / (a_i a_j), with a_j - a_i = (a_j^2 - a_i^2) / (a_i + a_j)
        q = d + 2.0 * v
        w = (q[None, :] - q[:, None]) / (a[:, None] + a[None, :]) * inv[:, None] * inv[None, :]
        t = v * inv
        D = uu + 2.0 * w * (t[:, None] - t[None, :]) + w * w * rr
        D *= 0.5
        np.clip(D, 0.0, 2.0, out=D)
        D = 0.5 * (D + D.T)
        np.fill_diagonal(D, 0.0)
        return D

    def centered_cosine_distances(self) -> np.ndarray:
        """Cosine distances between the centred points ``x_i - mean(x)`` [n, n]."""
        Gc = self.centered()
        d = np.diag(Gc).copy()
        if np.any(d <= 0):
            at = np.flatnonzero(d <= 0).tolist()[:20]
            raise InputError(
                f"points {at} equal the mean of the samples, so their centred cosine distance is "
                "undefined; use distances='weights' or metric='euclidean'"
            )
        inv = 1.0 / np.sqrt(d)
        D = 1.0 - Gc * inv[:, None] * inv[None, :]
        np.clip(D, 0.0, 2.0, out=D)
        D = 0.5 * (D + D.T)
        np.fill_diagonal(D, 0.0)
        return D

    def distances(self, metric: str | Metric = "cosine", centered: bool = False) -> np.ndarray:
        """Pairwise distances for ``metric`` between the raw (or, for cosine, centred) weight vectors."""
        if _metric(metric) is Metric.COSINE:
            return self.centered_cosine_distances() if centered else self.cosine_distances()
        return self.euclidean_distances()


def _column_blocks(p: int, rows: int) -> tuple[range, int]:
    width = min(p, max(1024, _COLUMN_BLOCK_BYTES // (8 * max(rows, 1))))
    return range(0, p, width), width


def _available_memory() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit when there is one."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 * MIN_AUTO_MEMORY
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(avail), 0)


def _budget(max_memory: int | None) -> int:
    if max_memory is not None:
        return int(max_memory)
    return int(min(max(_available_memory() // 4, MIN_AUTO_MEMORY), MAX_AUTO_MEMORY))


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Products:
    """Sums of products of column blocks of shifted rows, split between worker threads.

    Each worker runs single-threaded BLAS on its own column blocks and keeps its own sum. Measured
    on the 2-core reference machine while other processes ran: OpenBLAS's own threads collapsed to
    about 1 GFLOP/s on these shapes (threads waiting on each other for a busy core), while one
    thread per worker kept 30 GFLOP/s each; on an idle machine the two are as fast.
    """

    def __init__(self, r: np.ndarray, n_jobs: int):
        from concurrent.futures import ThreadPoolExecutor

        self.r = r
        self.n_jobs = n_jobs
        self.pool = ThreadPoolExecutor(n_jobs) if n_jobs > 1 else None

    def _map(self, fn, n_blocks: int):
        parts = [range(i, n_blocks, self.n_jobs) for i in range(min(self.n_jobs, n_blocks))]
        if self.pool is None:
            return [fn(part) for part in parts]
        return list(self.pool.map(fn, parts))

    def gram(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A - r)(A - r)^T`` and ``(A - r) r``."""
        m, p = A.shape
        starts, width = _column_blocks(p, m)

        def work(part):
            # Buffers reused across blocks: fresh large allocations cost page faults every time.
            Yb = np.empty((m, width))
            T = np.empty((m, m))
            S = np.zeros((m, m))
            v = np.zeros(m)
            for i in part:
                c0 = starts[i]
                c1 = min(p, c0 + width)
                Y = Yb[:, : c1 - c0]
                np.subtract(A[:, c0:c1], self.r[c0:c1], out=Y)
                np.matmul(Y, Y.T, out=T)  # numpy runs syrk for this form
                S += T
                v += Y @ self.r[c0:c1]
            return S, v

        out = self._map(work, len(starts))
        S = sum(o[0] for o in out)
        return np.triu(S) + np.triu(S, 1).T, sum(o[1] for o in out)

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``(A - r)(B - r)^T``."""
        (ma, p), mb = A.shape, B.shape[0]
        starts, width = _column_blocks(p, ma + mb)

        def work(part):
            YAb, YBb = np.empty((ma, width)), np.empty((mb, width))
            T = np.empty((ma, mb))
            O = np.zeros((ma, mb))
            for i in part:
                c0 = starts[i]
                c1 = min(p, c0 + width)
                YA, YB = YAb[:, : c1 - c0], YBb[:, : c1 - c0]
                np.subtract(A[:, c0:c1], self.r[c0:c1], out=YA)
                np.subtract(B[:, c0:c1], self.r[c0:c1], out=YB)
                np.matmul(YA, YB.T, out=T)
                O += T
            return O

        return sum(self._map(work, len(starts)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _gram_from_source(src: _Source, max_memory: int | None, n_jobs: int | None = None) -> Gram:
    from threadpoolctl import threadpool_limits

    n, p = src.n, src.p
    require(n >= 1 and p >= 1, f"samples are empty (shape {n} x {p})")
    jobs = _usable_cpus() if n_jobs is None else _positive_int("n_jobs", n_jobs)
    chunk = src.chunk
    if not src.lazy:
        panel = stream = n
    else:
        fit = _budget(max_memory) // (p * src.dtype.itemsize)
        if fit >= n:
            panel = stream = n
        else:
            # Half for the panel, half for the block streamed past it: the panel is re-cast to
            # float64 once per block, and products of many points by many points run fastest.
            panel = max(chunk, (fit // 2) // chunk * chunk)
            stream = max(chunk, (fit - panel) // chunk * chunk)
    S = np.zeros((n, n))
    v = np.zeros(n)
    r: np.ndarray | None = None
    buf: np.ndarray | None = None
    products: _Products | None = None
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for a in range(0, n, panel):
                b = min(n, a + panel)
                # The first panel pass reads every point once (the panel, then the blocks after
                # it): check them there.
                A = src.block(a, b, check=(a == 0))
                if r is None:
                    # Mean of the first panel: close to the data, so Y = X - r is small.
                    r = A.mean(axis=0, dtype=np.float64)
                    products = _Products(r, jobs)
                S[a:b, a:b], v[a:b] = products.gram(A)
                for c in range(b, n, stream):
                    d = min(n, c + stream)
                    if buf is None:
                        buf = np.empty((stream, p), dtype=src.dtype)
                    B = src.block(c, d, check=(a == 0), out=buf[: d - c])
                    off = products.cross(A, B)
                    S[a:b, c:d] = off
                    S[c:d, a:b] = off.T
                del A
    finally:
        if products is not None:
            products.close()
    assert r is not None
    return Gram(shifted=S, cross=v, ref_sq=float(r @ r), n_params=p)


def gram_matrix(
    samples: Any, chunk: int | None = None, max_memory: int | None = None, n_jobs: int | None = None
) -> np.ndarray:
    """The Gram matrix ``X X^T`` (float64, [n, n]) of the weights, streamed chunk by chunk along ``point``.

    Memory is O(n^2) plus at most ``max_memory`` bytes of weights (default: a quarter of the available
    memory, 1 to 16 GiB); weights are never held twice. See :class:`Gram` for the accurate distances derived from it.

    Examples
    --------
    >>> X = np.arange(12.0).reshape(3, 4)
    >>> np.allclose(gram_matrix(X), X @ X.T)
    True
    """
    return Gram.from_samples(samples, chunk=chunk, max_memory=max_memory, n_jobs=n_jobs).matrix()


class GramPCA(NamedTuple):
    """PCA of centred data from its Gram matrix."""

    scores: np.ndarray  # [n, k] = U sqrt(lambda)
    explained_variance: np.ndarray  # [k], lambda / (n - 1), as scikit-learn
    explained_variance_ratio: np.ndarray  # [k]
    eigenvectors: np.ndarray  # [n, k], U


def pca_from_gram(G: np.ndarray | Gram, n: int, centered: bool = False) -> GramPCA:
    """Exact PCA scores of the centred data from the (uncentred) Gram matrix ``G = X X^T``.

    The scores are ``U sqrt(Lambda)`` for the top ``n`` eigenpairs of the double-centred Gram
    ``J G J``; their signs are fixed so the largest entry of each column of ``U`` is positive.

    Parameters
    ----------
    G : array [m, m] or Gram
    n : int
        Number of components (at most m).
    centered : bool
        Set when ``G`` is already the Gram matrix of centred data.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> pca = pca_from_gram(X @ X.T, 2)
    >>> pca.scores.shape
    (30, 2)
    """
    if isinstance(G, Gram):
        Gc = G.centered()
    else:
        G = np.asarray(G, dtype=np.float64)
        require(G.ndim == 2 and G.shape[0] == G.shape[1], f"G must be a square matrix, got {G.shape}")
        if centered:
            Gc = G
        else:
            row = G.mean(axis=1)
            Gc = G - row[:, None] - G.mean(axis=0)[None, :] + row.mean()
    m = Gc.shape[0]
    k = _positive_int("n_components", n)
    require(k <= m, f"asked for {k} components of {m} points; ask for at most {m}")
    Gc = 0.5 * (Gc + Gc.T)
    with _threads_for(m):
        lam, U = eigh(Gc, subset_by_index=[m - k, m - 1])
    lam, U = lam[::-1], U[:, ::-1]
    lam = np.maximum(lam, 0.0)
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[idx, np.arange(k)])
    signs[signs == 0] = 1.0
    U = U * signs
    total = max(float(np.trace(Gc)), np.finfo(float).tiny)
    scores = U * np.sqrt(lam)
    denom = max(m - 1, 1)
    return GramPCA(scores, lam / denom, lam / total, U)


# --------------------------------------------------------------------------------------------------
# Estimators


class _Embedding(BaseEstimator):
    """scikit-learn style: ``__init__`` stores, ``fit`` computes, fitted attributes end in ``_``."""

    _uses_gram = True

    def fit(self, samples: Any, y: Any = None) -> _Embedding:
        """Compute the embedding of ``samples`` (array, Dataset, DataArray, zarr path or :class:`Gram`)."""
        self._validate()
        if isinstance(samples, Gram):
            require(self._uses_gram, f"{type(self).__name__} needs the weights themselves; pass the samples")
            self._check_n(samples.n)
            gram = samples
        else:
            src = _as_source(samples, getattr(self, "chunk", None))
            self._check_n(src.n)
            if not self._uses_gram:
                return self._fit_source(src)
            gram = _gram_from_source(src, getattr(self, "max_memory", None))
        with _threads_for(gram.n):
            return self._fit_gram(gram)

    def fit_transform(self, samples: Any, y: Any = None) -> np.ndarray:
        """Fit and return ``embedding_`` [n_points, n_components]."""
        return self.fit(samples).embedding_

    # hooks
    def _validate(self) -> None:
        _positive_int("n_components", self.n_components)

    def _check_n(self, n: int) -> None:
        require(
            n > self.n_components,
            f"{type(self).__name__} needs more points than n_components ({self.n_components}), got {n}",
        )

    def _fit_gram(self, gram: Gram) -> _Embedding:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_source(self, src: _Source) -> _Embedding:  # pragma: no cover - abstract
        raise NotImplementedError


class PHATE(_Embedding):
    """PHATE (Moon et al. 2019) with cosine distances, as Horoi et al. use it on weights.

    Wraps the ``phate`` package; the weights are reduced once, streamed, to their Gram matrix. The
    kNN graph is built from

    - ``distances="pca"`` (default): the first ``n_pca`` exact principal-component scores of the
      centred weights, compared with ``metric``: what ``phate.PHATE(knn_dist=metric)`` does with the
      raw data;
    - ``distances="centered"``: the same with every component (exact distances of centred weights);
    - ``distances="weights"``: exact ``metric`` distances between the raw weight vectors (cosine seen
      from the origin of weight space), passed as ``knn_dist="precomputed_distance"``.

    On synthetic jump-and-retrain trajectories the centred variants keep trajectories much better
    than raw-weight cosine (see the module docstring). ``phate`` always receives the full distance
    matrix (``knn_dist="precomputed_distance"``). Metric MDS of the diffusion potential uses
    ``mds_metric``.

    Parameters
    ----------
    n_components : int
    metric : {"cosine", "euclidean"}
        Distance between points for the kNN graph.
    mds_metric : {"cosine", "euclidean"}
        Distance between rows of the diffusion potential for metric MDS.
    knn, decay, t, gamma, n_landmark, mds_solver : as in ``phate.PHATE``
    n_pca : int
        Principal components kept with ``distances="pca"``.
    distances : {"pca", "centered", "weights"}
    seed : int
    n_jobs : int
    chunk, max_memory : streaming settings, see :meth:`Gram.from_samples`
    verbose : int

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]
    potential_ : ndarray [n, m]
        Diffusion potential (m = n, or the number of landmarks when n > n_landmark).
    t_ : int
        The diffusion time used (the knee of the von Neumann entropy when ``t="auto"``).

    Examples
    --------
    >>> X, branch, pos = make_tree(n_branches=3, points_per_branch=40, n_dims=20, seed=0)
    >>> PHATE(metric="euclidean").fit(X).embedding_.shape
    (120, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        metric: str = "cosine",
        mds_metric: str = "cosine",
        knn: int = 5,
        decay: float | None = 40,
        t: int | str = "auto",
        n_pca: int = 100,
        gamma: float = 1,
        seed: int = 0,
        n_jobs: int = 1,
        distances: str = "pca",
        n_landmark: int | None = 2000,
        mds_solver: str = "sgd",
        chunk: int | None = None,
        max_memory: int | None = None,
        verbose: int = 0,
    ):
        self.n_components = n_components
        self.metric = metric
        self.mds_metric = mds_metric
        self.knn = knn
        self.decay = decay
        self.t = t
        self.n_pca = n_pca
        self.gamma = gamma
        self.seed = seed
        self.n_jobs = n_jobs
        self.distances = distances
        self.n_landmark = n_landmark
        self.mds_solver = mds_solver
        self.chunk = chunk
        self.max_memory = max_memory
        self.verbose = verbose

    def _validate(self) -> None:
        super()._validate()
        _metric(self.metric)
        _metric(self.mds_metric)
        _positive_int("knn", self.knn)
        _positive_int("n_pca", self.n_pca)
        _seed(self.seed)
        require(self.decay is None or (isinstance(self.decay, numbers.Real) and self.decay > 0),
                f"decay must be a positive number or None, got {self.decay!r}")
        require(self.t == "auto" or (isinstance(self.t, numbers.Integral) and self.t >= 1),
                f"t must be 'auto' or a positive integer, got {self.t!r}")
        require(isinstance(self.gamma, numbers.Real) and -1 <= self.gamma <= 1,
                f"gamma must lie in [-1, 1] (1: log potential, 0: square root), got {self.gamma!r}")
        require(self.distances in ("pca", "centered", "weights"),
                "distances must be 'pca' (first n_pca scores of the centred weights), 'centered' (all "
                f"of them) or 'weights' (raw weight vectors), got {self.distances!r}")
        require(self.mds_solver in ("sgd", "smacof"), f"mds_solver must be 'sgd' or 'smacof', got {self.mds_solver!r}")
        require(self.n_landmark is None or (isinstance(self.n_landmark, numbers.Integral) and self.n_landmark >= 2),
                f"n_landmark must be None or an integer >= 2, got {self.n_landmark!r}")

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        require(
            n >= self.knn + 1,
            f"PHATE with knn={self.knn} needs at least knn + 1 = {self.knn + 1} points, got {n}; "
            f"lower knn (e.g. knn={max(1, n - 1)}) or sample more points",
        )

    def _fit_gram(self, gram: Gram) -> PHATE:
        try:
            import phate
        except ImportError:
            raise missing_extra("phate", "embed") from None
        if self.distances == "pca":
            scores = pca_from_gram(gram, min(self.n_pca, gram.n)).scores
            if _metric(self.metric) is Metric.COSINE:
                zero = np.flatnonzero(~(np.abs(scores).max(axis=1) > 0)).tolist()
                require(not zero, f"points {zero[:20]} equal the mean of the samples, so their centred "
                                  "cosine distance is undefined; use distances='weights' or metric='euclidean'")
            data = squareform(pdist(scores, _metric(self.metric).value))
        else:
            data = gram.distances(self.metric, centered=self.distances == "centered")
        # The graph is always built from a full distance matrix (phate's exact kernel). Besides being
        # exact, this avoids graphtools' kNN search, which with cosine on nearly equidistant points
        # (iid high-dimensional samples) returns a graph without edges.
        knn_dist = "precomputed_distance"
        op = phate.PHATE(
            n_components=self.n_components,
            knn=self.knn,
            decay=self.decay,
            n_landmark=self.n_landmark,
            t=self.t,
            gamma=self.gamma,
            n_pca=None,
            mds_solver=self.mds_solver,
            knn_dist=knn_dist,
            mds_dist=_metric(self.mds_metric).value,
            mds="metric",
            n_jobs=self.n_jobs,
            random_state=self.seed,
            verbose=self.verbose,
        )
        with _phate_warnings_as_python_warnings():
            embedding = op.fit_transform(data)
        self.embedding_ = np.asarray(embedding, dtype=np.float64)
        self.potential_ = np.asarray(op.diff_potential)
        self.t_ = int(op.optimal_t if self.t == "auto" else self.t)
        self.n_points_ = gram.n
        return self


class _phate_warnings_as_python_warnings:
    """Turn phate's logged warnings (printed to stdout by tasklogger) into RuntimeWarnings.

    Callers can then filter them like any warning, and printed output stays clean.
    """

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("graphtools")  # the logger phate and graphtools share

        def to_warning(record):
            if record.levelno >= logging.WARNING:
                warnings.warn(f"phate: {record.getMessage().strip()}", RuntimeWarning, stacklevel=2)
                return False
            return True

        self.filter = to_warning
        self.logger.addFilter(self.filter)
        return self

    def __exit__(self, *exc):
        self.logger.removeFilter(self.filter)
        return False


def _pca_init(gram: Gram, k: int) -> np.ndarray:
    # scikit-learn's "pca" initialisation, computed exactly from the Gram matrix.
    scores = pca_from_gram(gram, k).scores
    scale = np.std(scores[:, 0])
    return scores / (scale if scale > 0 else 1.0) * 1e-4


class TSNE(_Embedding):
    """t-SNE (scikit-learn) on exact distances between the raw weight vectors.

    ``metric="euclidean"`` uses squared distances, as scikit-learn does. ``init="pca"`` (default, as
    scikit-learn) starts from the exact PCA of the weights, scaled like scikit-learn's, and is then
    deterministic: ``seed`` only matters with ``init="random"``.

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]
    kl_divergence_ : float

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(60, 10))
    >>> TSNE(perplexity=10).fit(X).embedding_.shape
    (60, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        metric: str = "cosine",
        seed: int = 0,
        init: str = "pca",
        max_iter: int = 1000,
        chunk: int | None = None,
        max_memory: int | None = None,
    ):
        self.n_components = n_components
        self.perplexity = perplexity
        self.metric = metric
        self.seed = seed
        self.init = init
        self.max_iter = max_iter
        self.chunk = chunk
        self.max_memory = max_memory

    def _validate(self) -> None:
        super()._validate()
        _metric(self.metric)
        _seed(self.seed)
        require(self.n_components <= 3, f"t-SNE embeds in 1 to 3 dimensions, got n_components={self.n_components}")
        require(isinstance(self.perplexity, numbers.Real) and self.perplexity > 0,
                f"perplexity must be a positive number, got {self.perplexity!r}")
        _positive_int("max_iter", self.max_iter, 250)
        require(self.init in ("pca", "random"), f"init must be 'pca' or 'random', got {self.init!r}")

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        require(self.perplexity < n,
                f"perplexity ({self.perplexity}) must be below the number of points ({n}); "
                f"use e.g. perplexity={max(1, (n - 1) // 3)}")

    def _fit_gram(self, gram: Gram) -> TSNE:
        from sklearn.manifold import TSNE as _SkTSNE

        if _metric(self.metric) is Metric.COSINE:
            D = gram.cosine_distances()
        else:
            D = gram.euclidean_distances(squared=True)
        est = _SkTSNE(
            n_components=self.n_components,
            perplexity=float(self.perplexity),
            metric="precomputed",
            init=_pca_init(gram, self.n_components) if self.init == "pca" else "random",
            random_state=self.seed,
            max_iter=self.max_iter,
        )
        self.embedding_ = np.asarray(est.fit_transform(D), dtype=np.float64)
        self.kl_divergence_ = float(est.kl_divergence_)
        self.n_points_ = gram.n
        return self


class UMAP(_Embedding):
    """UMAP (umap-learn) on exact distances between the raw weight vectors.

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(60, 10))
    >>> UMAP(n_neighbors=10).fit(X).embedding_.shape  # doctest: +SKIP
    (60, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        metric: str = "cosine",
        seed: int = 0,
        min_dist: float = 0.1,
        chunk: int | None = None,
        max_memory: int | None = None,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.seed = seed
        self.min_dist = min_dist
        self.chunk = chunk
        self.max_memory = max_memory

    def _validate(self) -> None:
        super()._validate()
        _metric(self.metric)
        _seed(self.seed)
        _positive_int("n_neighbors", self.n_neighbors, 2)
        require(isinstance(self.min_dist, numbers.Real) and self.min_dist >= 0,
                f"min_dist must be a non-negative number, got {self.min_dist!r}")

    def _check_n(self, n: int) -> None:
        super()._check_n(n)
        require(self.n_neighbors < n,
                f"UMAP with n_neighbors={self.n_neighbors} needs more points than that, got {n}; "
                f"lower n_neighbors (e.g. {max(2, n - 1)})")
        # Spectral initialisation needs n_components + 1 eigenvectors of a graph on n points.
        require(n > self.n_components + 1,
                f"UMAP needs more than n_components + 1 = {self.n_components + 1} points, got {n}")

    def _fit_gram(self, gram: Gram) -> UMAP:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import umap
        except ImportError:
            raise missing_extra("umap-learn", "embed") from None
        D = gram.distances(self.metric)
        est = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=self.n_neighbors,
            metric="precomputed",
            min_dist=self.min_dist,
            random_state=self.seed,
            n_jobs=1,
        )
        with warnings.catch_warnings():
            # "using precomputed metric; inverse_transform will be unavailable" and friends
            warnings.simplefilter("ignore", UserWarning)
            self.embedding_ = np.asarray(est.fit_transform(D), dtype=np.float64)
        self.n_points_ = gram.n
        return self


class PCA(_Embedding):
    """Exact PCA of the centred weights from their Gram matrix (never forms the covariance).

    Parameters
    ----------
    n_components : int
    components : {"auto", True, False}
        Also compute ``components_`` [n_components, n_params] and ``mean_`` (one more pass over the
        weights). ``"auto"``: only when the weights are already in memory.

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]
        The scores; each column's sign makes its eigenvector's largest entry positive (so streamed
        and in-memory fits agree; scikit-learn may differ by a sign per component).
    explained_variance_, explained_variance_ratio_ : ndarray [n_components]
    components_, mean_ : ndarray or None

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8))
    >>> PCA(n_components=3).fit(X).explained_variance_ratio_.shape
    (3,)
    """

    def __init__(self, n_components: int = 2, components: bool | str = "auto",
                 chunk: int | None = None, max_memory: int | None = None):
        self.n_components = n_components
        self.components = components
        self.chunk = chunk
        self.max_memory = max_memory

    def _validate(self) -> None:
        super()._validate()
        require(self.components in ("auto", True, False),
                f"components must be 'auto', True or False, got {self.components!r}")

    def _check_n(self, n: int) -> None:
        require(n >= self.n_components,
                f"PCA with n_components={self.n_components} needs at least that many points, got {n}")

    def fit(self, samples: Any, y: Any = None) -> PCA:
        self._validate()
        if isinstance(samples, Gram):
            self._check_n(samples.n)
            require(self.components is not True,
                    "components_ need the weights; pass the samples instead of a Gram, or components=False")
            return self._fit_gram(samples)
        src = _as_source(samples, self.chunk)
        self._check_n(src.n)
        gram = _gram_from_source(src, self.max_memory)
        self._fit_gram(gram)
        if self.components is True or (self.components == "auto" and not src.lazy):
            self._fit_components(src)
        return self

    def _fit_gram(self, gram: Gram) -> PCA:
        res = pca_from_gram(gram, self.n_components)
        self.embedding_ = res.scores
        self.explained_variance_ = res.explained_variance
        self.explained_variance_ratio_ = res.explained_variance_ratio
        self._eigenvectors = res.eigenvectors
        self.components_ = None
        self.mean_ = None
        self.n_points_ = gram.n
        return self

    def _fit_components(self, src: _Source) -> None:
        # components = X^T U / sqrt(lambda): U is orthogonal to 1, so centring is implicit.
        U = self._eigenvectors
        k = U.shape[1]
        comp = np.zeros((k, src.p))
        total = np.zeros(src.p)
        for a in range(0, src.n, src.chunk):
            b = min(src.n, a + src.chunk)
            rows = src.rows(a, b)
            for c0 in range(0, src.p, 1 << 16):
                c1 = c0 + (1 << 16)
                blk = rows[:, c0:c1].astype(np.float64)
                comp[:, c0:c1] += U[a:b].T @ blk
                total[c0:c1] += blk.sum(axis=0)
        sv = np.sqrt(self.explained_variance_ * max(src.n - 1, 1))
        ok = sv > 0
        comp[ok] /= sv[ok, None]
        comp[~ok] = 0.0
        # Signs stay those of the scores (fixed on the eigenvectors), so an embedding does not
        # depend on whether components were computed; scikit-learn may differ by a sign per component.
        self.components_ = comp
        self.mean_ = total / src.n


class RandomProjection(_Embedding):
    """The "random plane" baseline: centred weights projected on random Gaussian unit directions.

    Directions are plain Gaussian vectors normalised to unit length (not orthogonalised, not filter
    normalised: that normalisation is defined for models, not for bare vectors). Streams the
    weights once.

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]
    components_ : ndarray [n_components, n_params], the unit directions

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8))
    >>> RandomProjection(seed=1).fit(X).embedding_.shape
    (50, 2)
    """

    _uses_gram = False

    def __init__(self, n_components: int = 2, seed: int = 0, chunk: int | None = None):
        self.n_components = n_components
        self.seed = seed
        self.chunk = chunk

    def _validate(self) -> None:
        super()._validate()
        _seed(self.seed)

    def _check_n(self, n: int) -> None:
        require(n >= 1, "RandomProjection needs at least one point")

    def _fit_source(self, src: _Source) -> RandomProjection:
        rng = np.random.default_rng(self.seed)
        dirs = rng.standard_normal((self.n_components, src.p))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        emb = np.zeros((src.n, self.n_components))
        step = src.chunk if src.lazy else max(1, _DEFAULT_CHUNK_BYTES // (8 * src.p))
        for a in range(0, src.n, step):
            b = min(src.n, a + step)
            rows = src.rows(a, b)
            if src.lazy:
                _check_finite(rows, a, src.n)
            for c0 in range(0, src.p, 1 << 16):
                c1 = c0 + (1 << 16)
                emb[a:b] += rows[:, c0:c1].astype(np.float64) @ dirs[:, c0:c1].T
        if not src.lazy:
            _check_finite(emb, 0, src.n)
        self.components_ = dirs
        self.embedding_ = emb - emb.mean(axis=0)
        self.n_points_ = src.n
        return self


_ESTIMATORS: dict[Method, type[_Embedding]] = {
    Method.PHATE: PHATE,
    Method.TSNE: TSNE,
    Method.UMAP: UMAP,
    Method.PCA: PCA,
    Method.RANDOM: RandomProjection,
}


def make_estimator(name: str | Method, **kw: Any) -> _Embedding:
    """An unfitted estimator for method ``name`` (one of :data:`METHODS`).

    Examples
    --------
    >>> make_estimator("pca", n_components=3)
    PCA(n_components=3)
    """
    cls = _ESTIMATORS[_method(name)]
    accepted = set(cls._get_param_names())
    unknown = sorted(set(kw) - accepted)
    require(not unknown, f"{cls.__name__} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(**kw)


# --------------------------------------------------------------------------------------------------
# Scores


def _distance_matrix(samples: Any, metric: str | Metric) -> np.ndarray:
    return Gram.from_samples(samples).distances(metric)


def _knn_graph(D: np.ndarray, k: int) -> sparse.csr_matrix:
    n = D.shape[0]
    Dm = D.copy()
    np.fill_diagonal(Dm, np.inf)
    idx = np.argpartition(Dm, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    # Zero weights would mean "no edge" to scipy; duplicates get a tiny positive length instead.
    w = np.maximum(D[rows, cols], np.finfo(float).tiny)
    W = sparse.csr_matrix((w, (rows, cols)), shape=(n, n))
    return W.maximum(W.T).tocsr()


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


def _geodesic(D: np.ndarray, knn: int) -> np.ndarray:
    W = _connect_components(_knn_graph(D, knn), D)
    return csgraph.shortest_path(W, method="D", directed=False)


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


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra = rankdata(a)
    rb = rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra @ ra) * (rb @ rb))
    return float(ra @ rb / denom) if denom > 0 else float("nan")


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
    knn = _positive_int("knn", knn)
    D = _distance_matrix(samples, metric)
    n = D.shape[0]
    require(n >= knn + 1, f"DeMAP with knn={knn} needs at least {knn + 1} points, got {n}; lower knn")
    E = _embedding_array(embedding, n)
    G = _geodesic(D, knn)
    iu = np.triu_indices(n, 1)
    return _spearman(G[iu], pdist(E))


def _neighbours(D: np.ndarray, k: int) -> np.ndarray:
    Dm = D.copy()
    np.fill_diagonal(Dm, np.inf)
    return np.argpartition(Dm, k - 1, axis=1)[:, :k]


def _consecutive_pairs(groups: Any, order: Any, n: int) -> np.ndarray:
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
    k = _positive_int("k", k)
    E = _embedding_array(embedding)
    n = E.shape[0]
    require(n >= k + 1, f"trajectory_continuity with k={k} needs at least {k + 1} points, got {n}; lower k")
    pairs = _consecutive_pairs(groups, order, n)
    if len(pairs) == 0:
        warnings.warn("no two points share a group: trajectory continuity is undefined", RuntimeWarning)
        return float("nan")
    if reference is None:
        return _continuity_from_neighbours(E, pairs, k, None)
    D = _distance_matrix(reference, metric)
    require(D.shape[0] == n, f"reference has {D.shape[0]} points but the embedding has {n}")
    score = _continuity_from_neighbours(E, pairs, k, _neighbours(D, k))
    if np.isnan(score):
        warnings.warn("no consecutive pair is a k-nearest-neighbour pair in the data", RuntimeWarning)
    return score


# --------------------------------------------------------------------------------------------------
# Artificial data


def make_tree(
    n_branches: int = 20,
    points_per_branch: int = 100,
    n_dims: int = 100,
    noise: float = 4.0,
    seed: int = 0,
    return_clean: bool = False,
    branch_from: str = "first",
):
    """Artificial tree: random-walk branches splitting from one another, with noise, in high dimension.

    The tree of Horoi et al. Fig. 1C and of Moon et al. (diffusion-limited aggregation, as
    ``phate.tree.gen_dla``, whose defaults these are): the first branch is a random walk from the
    origin with steps uniform in [-1, 1] per dimension; each further branch is such a walk
    starting at a random point of the first branch (``branch_from="first"``, as ``gen_dla``) or
    of any branch made so far (``"any"``: a deeper tree). Gaussian noise of std ``noise`` per
    dimension is added at the end.

    Returns
    -------
    X : ndarray [n_branches * points_per_branch, n_dims]
    branch : ndarray [n] of int, the branch of each point
    position : ndarray [n] of int, the step along its branch
    clean : ndarray [n, n_dims], only with ``return_clean=True``: the points before noise

    Examples
    --------
    >>> X, branch, position = make_tree(n_branches=3, points_per_branch=10, n_dims=5)
    >>> X.shape, branch[-1], position[-1]
    ((30, 5), np.int64(2), np.int64(9))
    """
    B = _positive_int("n_branches", n_branches)
    L = _positive_int("points_per_branch", points_per_branch)
    d = _positive_int("n_dims", n_dims)
    require(isinstance(noise, numbers.Real) and noise >= 0, f"noise must be >= 0, got {noise!r}")
    require(branch_from in ("first", "any"), f"branch_from must be 'first' or 'any', got {branch_from!r}")
    rng = np.random.default_rng(_seed(seed))
    clean = np.empty((B * L, d))
    for i in range(B):
        if i == 0:
            start = np.zeros(d)
        else:
            start = clean[rng.integers(L if branch_from == "first" else i * L)]
        clean[i * L : (i + 1) * L] = start + np.cumsum(rng.uniform(-1.0, 1.0, size=(L, d)), axis=0)
    X = clean + rng.normal(0.0, float(noise), size=clean.shape)
    branch = np.repeat(np.arange(B), L)
    position = np.tile(np.arange(L), B)
    if return_clean:
        return X, branch, position, clean
    return X, branch, position


# --------------------------------------------------------------------------------------------------
# One call for all


_GROUP_COORDS = ("run", "seed", "step_size")
_ORDER_COORDS = ("epoch", "step")


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

    Returns
    -------
    xarray.Dataset with variable ``embedding`` (method, point, component), the samples' point coords,
    and attrs ``{method}_demap``, ``{method}_continuity``, ``{method}_seconds``, ``phate_t``,
    ``pca_explained_variance_ratio``.

    Examples
    --------
    >>> X, branch, pos = make_tree(n_branches=3, points_per_branch=30, n_dims=20)
    >>> ds = embed(X, methods=("pca", "random"), metric="euclidean")
    >>> ds["embedding"].shape
    (2, 90, 2)
    """
    import xarray as xr

    import lossatlas

    require(len(methods) > 0, f"give at least one method from {list(METHODS)}")
    names = [_method(m) for m in methods]
    require(len(set(names)) == len(names), f"methods repeat: {list(methods)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(METHODS))
    require(not unknown, f"options for unknown methods {unknown}; choose from {list(METHODS)}")
    _metric(metric)
    knn = _positive_int("knn", knn)
    common = {"n_components": n_components, "metric": metric, "seed": seed, "knn": knn, "chunk": chunk,
              "max_memory": max_memory}
    estimators = {}
    for m in names:
        accepted = set(_ESTIMATORS[m]._get_param_names())
        kw = {k: v for k, v in common.items() if k in accepted}
        kw.update(options.get(m.value, {}))
        est = make_estimator(m, **kw)
        est._validate()
        estimators[m] = est

    src = _as_source(samples, chunk)
    for est in estimators.values():
        est._check_n(src.n)
    if scores:
        require(src.n >= knn + 1, f"scores with knn={knn} need at least {knn + 1} points, got {src.n}")
    need_gram = scores or any(est._uses_gram for est in estimators.values())
    gram = _gram_from_source(src, max_memory) if need_gram else None

    attrs: dict[str, Any] = {
        "methods": [m.value for m in names],
        "metric": Metric(metric).value,
        "seed": int(seed),
        "knn": knn,
        "n_params": src.p,
        "lossatlas_version": lossatlas.__version__,
    }
    out = np.zeros((len(names), src.n, n_components))
    for i, (m, est) in enumerate(estimators.items()):
        t0 = time.perf_counter()
        if est._uses_gram:
            est.fit(gram)
            if isinstance(est, PCA) and (est.components is True or (est.components == "auto" and not src.lazy)):
                est._fit_components(src)
        else:
            est._fit_source(src)
        attrs[f"{m.value}_seconds"] = round(time.perf_counter() - t0, 4)
        out[i] = est.embedding_
        if isinstance(est, PHATE):
            attrs["phate_t"] = est.t_
        if isinstance(est, PCA):
            attrs["pca_explained_variance_ratio"] = [float(x) for x in est.explained_variance_ratio_]

    if scores:
        D = gram.distances(metric)
        G = _geodesic(D, knn)
        iu = np.triu_indices(src.n, 1)
        geo = G[iu]
        del G
        groups, order = _trajectory_labels(src.coords)
        nb_dat = _neighbours(D, knn) if groups is not None else None
        for i, m in enumerate(names):
            attrs[f"{m.value}_demap"] = _spearman(geo, pdist(out[i]))
            if groups is not None:
                pairs = _consecutive_pairs(groups, order, src.n)
                attrs[f"{m.value}_continuity"] = _continuity_from_neighbours(out[i], pairs, knn, nb_dat)
        attrs["scores_knn"] = knn

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


def _continuity_from_neighbours(E: np.ndarray, pairs: np.ndarray, k: int, nb_dat: np.ndarray | None) -> float:
    if len(pairs) == 0:
        return float("nan")
    a, b = pairs[:, 0], pairs[:, 1]
    nb_emb = _neighbours(squareform(pdist(E)), k)
    hit = np.concatenate([(nb_emb[a] == b[:, None]).any(axis=1), (nb_emb[b] == a[:, None]).any(axis=1)])
    if nb_dat is None:
        return float(hit.mean())
    valid = np.concatenate([(nb_dat[a] == b[:, None]).any(axis=1), (nb_dat[b] == a[:, None]).any(axis=1)])
    return float(hit[valid].mean()) if valid.any() else float("nan")

"""The Gram matrix of weight samples, streamed along ``point``, and the one Gram-matrix PCA.

Every method but the random plane works from the ``n x n`` Gram matrix of the points, accumulated
chunk by chunk (:class:`Gram`): exact PCA scores come from the double-centred Gram, cosine and
Euclidean distances from its entries. The Gram is kept as ``Y Y^T`` with ``Y = X - r`` for a
reference vector ``r`` near the data (the mean of the first block of points), so the small
distances between consecutive points of a trajectory, far from the origin, keep their digits.
Weights never sit in memory twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import eigh

from lossatlas._errors import InputError, positive_int, require

from .inputs import SampleSummary, Source, as_source, column_blocks
from .methods import Metric, parse_metric
from .resources import memory_budget, threads_for, usable_cpus

__all__ = ["Gram", "GramPCA", "gram_from_source", "gram_matrix", "pca_from_gram"]

# Size of the float64 copy of a column block used in the products.
_COLUMN_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Gram(SampleSummary):
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
        return gram_from_source(as_source(samples, chunk), max_memory, n_jobs)

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
        if parse_metric(metric) is Metric.COSINE:
            return self.centered_cosine_distances() if centered else self.cosine_distances()
        return self.euclidean_distances()


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

    @staticmethod
    def _blocks(p: int, rows: int) -> tuple[list[slice], int]:
        blocks = column_blocks(p, rows, _COLUMN_BLOCK_BYTES, min_width=1024)
        return blocks, blocks[0].stop - blocks[0].start

    def gram(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A - r)(A - r)^T`` and ``(A - r) r``."""
        m, p = A.shape
        blocks, width = self._blocks(p, m)

        def work(part):
            # Buffers reused across blocks: fresh large allocations cost page faults every time.
            Yb = np.empty((m, width))
            T = np.empty((m, m))
            S = np.zeros((m, m))
            v = np.zeros(m)
            for i in part:
                cols = blocks[i]
                Y = Yb[:, : cols.stop - cols.start]
                np.subtract(A[:, cols], self.r[cols], out=Y)
                np.matmul(Y, Y.T, out=T)  # numpy runs syrk for this form
                S += T
                v += Y @ self.r[cols]
            return S, v

        out = self._map(work, len(blocks))
        S = sum(o[0] for o in out)
        return np.triu(S) + np.triu(S, 1).T, sum(o[1] for o in out)

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``(A - r)(B - r)^T``."""
        (ma, p), mb = A.shape, B.shape[0]
        blocks, width = self._blocks(p, ma + mb)

        def work(part):
            YAb, YBb = np.empty((ma, width)), np.empty((mb, width))
            T = np.empty((ma, mb))
            O = np.zeros((ma, mb))
            for i in part:
                cols = blocks[i]
                w = cols.stop - cols.start
                YA, YB = YAb[:, :w], YBb[:, :w]
                np.subtract(A[:, cols], self.r[cols], out=YA)
                np.subtract(B[:, cols], self.r[cols], out=YB)
                np.matmul(YA, YB.T, out=T)
                O += T
            return O

        return sum(self._map(work, len(blocks)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def gram_from_source(src: Source, max_memory: int | None = None, n_jobs: int | None = None) -> Gram:
    """The :class:`Gram` of an adapted :class:`~lossatlas.embedding.inputs.Source`, read in panels.

    Every point is checked for NaN and inf on the first pass. See :meth:`Gram.from_samples` for the
    parameters.

    Examples
    --------
    >>> gram_from_source(as_source(np.eye(3))).n
    3
    """
    from threadpoolctl import threadpool_limits

    n, p = src.n, src.p
    require(n >= 1 and p >= 1, f"samples are empty (shape {n} x {p})")
    jobs = usable_cpus() if n_jobs is None else positive_int("n_jobs", n_jobs)
    chunk = src.chunk
    if not src.lazy:
        panel = stream = n
    else:
        fit = memory_budget(max_memory) // (p * src.dtype.itemsize)
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
    k = positive_int("n_components", n)
    require(k <= m, f"asked for {k} components of {m} points; ask for at most {m}")
    Gc = 0.5 * (Gc + Gc.T)
    with threads_for(m):
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

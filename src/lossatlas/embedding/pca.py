"""Linear embeddings: exact PCA from the Gram matrix, and the random-plane baseline."""

from __future__ import annotations

import numpy as np

from lossatlas._errors import require

from .base import EmbeddingEstimator
from .gram import Gram, pca_from_gram
from .inputs import DEFAULT_CHUNK_BYTES, Source, check_finite

__all__ = ["PCA", "RandomProjection", "principal_components"]

# Columns of a row block turned into float64 at once.
_COLUMNS = 1 << 16


def principal_components(src: Source, eigenvectors: np.ndarray, explained_variance: np.ndarray):
    """Unit principal directions ``X^T U / sqrt(lambda)`` [k, n_params] and the mean [n_params],
    in one pass over the weights.

    ``U`` (the Gram-matrix eigenvectors of :func:`~lossatlas.embedding.pca_from_gram`) is
    orthogonal to the all-ones vector, so centring is implicit; rows are taken relative to the
    first point, which keeps the digits of weights far from the origin. Directions of a zero
    eigenvalue are zero.

    Examples
    --------
    >>> from lossatlas.embedding.inputs import as_source
    >>> X = np.random.default_rng(0).normal(size=(20, 6))
    >>> res = pca_from_gram(X @ X.T, 2)
    >>> comp, mean = principal_components(as_source(X), res.eigenvectors, res.explained_variance)
    >>> np.allclose(np.linalg.norm(comp, axis=1), 1)
    True
    """
    U = eigenvectors
    k = U.shape[1]
    comp = np.zeros((k, src.p))
    total = np.zeros(src.p)
    ref = None
    for a in range(0, src.n, src.chunk):
        b = min(src.n, a + src.chunk)
        rows = src.rows(a, b)
        if ref is None:
            ref = np.asarray(rows[0], dtype=np.float64)
        for c0 in range(0, src.p, _COLUMNS):
            c1 = c0 + _COLUMNS
            blk = rows[:, c0:c1].astype(np.float64)
            total[c0:c1] += blk.sum(axis=0)
            blk -= ref[c0:c1]
            comp[:, c0:c1] += U[a:b].T @ blk
    sv = np.sqrt(explained_variance * max(src.n - 1, 1))
    ok = sv > 0
    comp[ok] /= sv[ok, None]
    comp[~ok] = 0.0
    return comp, total / src.n


class PCA(EmbeddingEstimator):
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

    def validate(self) -> None:
        super().validate()
        require(self.components in ("auto", True, False),
                f"components must be 'auto', True or False, got {self.components!r}")

    def check_n_points(self, n: int) -> None:
        require(n >= self.n_components,
                f"PCA with n_components={self.n_components} needs at least that many points, got {n}")

    def fit_prepared(self, source: Source | None, gram: Gram | None) -> PCA:
        if source is None:
            require(self.components is not True,
                    "components_ need the weights; pass the samples instead of a Gram, or components=False")
        super().fit_prepared(source, gram)
        if source is not None and (self.components is True or (self.components == "auto" and not source.lazy)):
            # Signs stay those of the scores (fixed on the eigenvectors), so an embedding does not
            # depend on whether components were computed; scikit-learn may differ by a sign per component.
            self.components_, self.mean_ = principal_components(
                source, self._eigenvectors, self.explained_variance_)
        return self

    def fit_gram(self, gram: Gram) -> PCA:
        res = pca_from_gram(gram, self.n_components)
        self.embedding_ = res.scores
        self.explained_variance_ = res.explained_variance
        self.explained_variance_ratio_ = res.explained_variance_ratio
        self._eigenvectors = res.eigenvectors
        self.components_ = None
        self.mean_ = None
        self.n_points_ = gram.n
        return self


class RandomProjection(EmbeddingEstimator):
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

    uses_gram = False

    def __init__(self, n_components: int = 2, seed: int = 0, chunk: int | None = None):
        self.n_components = n_components
        self.seed = seed
        self.chunk = chunk

    def check_n_points(self, n: int) -> None:
        require(n >= 1, "RandomProjection needs at least one point")

    def fit_source(self, src: Source) -> RandomProjection:
        rng = np.random.default_rng(self.seed)
        dirs = rng.standard_normal((self.n_components, src.p))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        emb = np.zeros((src.n, self.n_components))
        step = src.chunk if src.lazy else max(1, DEFAULT_CHUNK_BYTES // (8 * src.p))
        for a in range(0, src.n, step):
            b = min(src.n, a + step)
            rows = src.rows(a, b)
            if src.lazy:
                check_finite(rows, a, src.n)
            for c0 in range(0, src.p, _COLUMNS):
                c1 = c0 + _COLUMNS
                emb[a:b] += rows[:, c0:c1].astype(np.float64) @ dirs[:, c0:c1].T
        if not src.lazy:
            check_finite(emb, 0, src.n)
        self.components_ = dirs
        self.embedding_ = emb - emb.mean(axis=0)
        self.n_points_ = src.n
        return self

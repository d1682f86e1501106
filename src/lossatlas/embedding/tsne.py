"""t-SNE (scikit-learn) on exact distances between weight vectors, from the streamed Gram matrix."""

from __future__ import annotations

import numbers

import numpy as np

from lossatlas._errors import positive_int, require

from .base import EmbeddingEstimator
from .gram import Gram, pca_from_gram
from .methods import Metric, parse_metric

__all__ = ["TSNE"]


def _pca_init(gram: Gram, k: int) -> np.ndarray:
    # scikit-learn's "pca" initialisation, computed exactly from the Gram matrix.
    scores = pca_from_gram(gram, k).scores
    scale = np.std(scores[:, 0])
    return scores / (scale if scale > 0 else 1.0) * 1e-4


class TSNE(EmbeddingEstimator):
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

    def validate(self) -> None:
        super().validate()
        require(self.n_components <= 3, f"t-SNE embeds in 1 to 3 dimensions, got n_components={self.n_components}")
        require(isinstance(self.perplexity, numbers.Real) and self.perplexity > 0,
                f"perplexity must be a positive number, got {self.perplexity!r}")
        positive_int("max_iter", self.max_iter, 250)
        require(self.init in ("pca", "random"), f"init must be 'pca' or 'random', got {self.init!r}")

    def check_n_points(self, n: int) -> None:
        super().check_n_points(n)
        require(self.perplexity < n,
                f"perplexity ({self.perplexity}) must be below the number of points ({n}); "
                f"use e.g. perplexity={max(1, (n - 1) // 3)}")

    def fit_gram(self, gram: Gram) -> TSNE:
        from sklearn.manifold import TSNE as _SkTSNE

        if parse_metric(self.metric) is Metric.COSINE:
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

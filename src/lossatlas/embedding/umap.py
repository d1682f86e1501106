"""UMAP (umap-learn) on exact distances between weight vectors, from the streamed Gram matrix."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from lossatlas._errors import missing_extra, positive_int, require

from .base import EmbeddingEstimator
from .gram import Gram

__all__ = ["UMAP"]


class UMAP(EmbeddingEstimator):
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

    def validate(self) -> None:
        super().validate()
        positive_int("n_neighbors", self.n_neighbors, 2)
        require(isinstance(self.min_dist, numbers.Real) and self.min_dist >= 0,
                f"min_dist must be a non-negative number, got {self.min_dist!r}")

    def check_n_points(self, n: int) -> None:
        super().check_n_points(n)
        require(self.n_neighbors < n,
                f"UMAP with n_neighbors={self.n_neighbors} needs more points than that, got {n}; "
                f"lower n_neighbors (e.g. {max(2, n - 1)})")
        # Spectral initialisation needs n_components + 1 eigenvectors of a graph on n points.
        require(n > self.n_components + 1,
                f"UMAP needs more than n_components + 1 = {self.n_components + 1} points, got {n}")

    def fit_gram(self, gram: Gram) -> UMAP:
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

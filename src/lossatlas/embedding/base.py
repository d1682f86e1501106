"""What every embedding estimator shares: scikit-learn conventions and one way to be fitted."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from lossatlas._errors import positive_int, require

from .gram import Gram, gram_from_source
from .inputs import Source, as_source
from .methods import parse_metric
from .resources import threads_for

__all__ = ["EmbeddingEstimator", "param_names"]


def param_names(cls: type) -> set[str]:
    """The constructor parameters of an estimator class (what ``get_params`` reports).

    Examples
    --------
    >>> sorted(param_names(EmbeddingEstimator))
    []
    """
    return set(cls().get_params())


class EmbeddingEstimator(BaseEstimator):
    """scikit-learn style: ``__init__`` stores, ``fit`` computes, fitted attributes end in ``_``.

    Subclasses set ``uses_gram`` and implement :meth:`fit_gram` (methods computed from the Gram
    matrix) or :meth:`fit_source` (methods that read the weights themselves). The checks
    :meth:`validate` and :meth:`check_n_points` run before any expensive work, so
    :func:`~lossatlas.embedding.embed` can run them for every method before reading the weights.
    """

    uses_gram = True

    def fit(self, samples: Any, y: Any = None) -> EmbeddingEstimator:
        """Compute the embedding of ``samples`` (array, Dataset, DataArray, zarr path or :class:`Gram`)."""
        self.validate()
        if isinstance(samples, Gram):
            require(self.uses_gram, f"{type(self).__name__} needs the weights themselves; pass the samples")
            self.check_n_points(samples.n)
            return self.fit_prepared(None, samples)
        src = as_source(samples, getattr(self, "chunk", None))
        self.check_n_points(src.n)
        gram = gram_from_source(src, getattr(self, "max_memory", None)) if self.uses_gram else None
        return self.fit_prepared(src, gram)

    def fit_transform(self, samples: Any, y: Any = None) -> np.ndarray:
        """Fit and return ``embedding_`` [n_points, n_components]."""
        return self.fit(samples).embedding_

    def fit_prepared(self, source: Source | None, gram: Gram | None) -> EmbeddingEstimator:
        """Fit from already adapted weights and/or their Gram matrix (either may be None when the
        method does not need it); :meth:`validate` and :meth:`check_n_points` have run."""
        if self.uses_gram:
            with threads_for(gram.n):
                return self.fit_gram(gram)
        return self.fit_source(source)

    def validate(self) -> None:
        """Raise an InputError for a setting that cannot work, before any data are read.

        Checks the settings most methods share (``n_components``, and ``metric`` and ``seed``
        where the method takes them); subclasses add their own.
        """
        positive_int("n_components", self.n_components)
        params = self.get_params()
        if "metric" in params:
            parse_metric(self.metric)
        if "seed" in params:
            positive_int("seed", self.seed, minimum=0)

    def check_n_points(self, n: int) -> None:
        """Raise an InputError when ``n`` points are too few for these settings."""
        require(
            n > self.n_components,
            f"{type(self).__name__} needs more points than n_components ({self.n_components}), got {n}",
        )

    def fit_gram(self, gram: Gram) -> EmbeddingEstimator:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_source(self, src: Source) -> EmbeddingEstimator:  # pragma: no cover - abstract
        raise NotImplementedError

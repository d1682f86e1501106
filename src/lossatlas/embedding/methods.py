"""The names an embedding is asked for: the methods and the distances between weight vectors."""

from __future__ import annotations

from enum import Enum
from typing import Any

from lossatlas._errors import InputError, parse_enum

__all__ = ["METHODS", "Method", "Metric", "parse_method", "parse_metric"]


class Metric(str, Enum):
    """Distance between weight vectors; both are exact functions of the Gram matrix."""

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


class Method(str, Enum):
    """Embedding methods known to :func:`~lossatlas.embedding.make_estimator` and
    :func:`~lossatlas.embedding.embed`."""

    PHATE = "phate"
    TSNE = "tsne"
    UMAP = "umap"
    PCA = "pca"
    RANDOM = "random"


METHODS = tuple(m.value for m in Method)


def parse_metric(value: Any) -> Metric:
    """``value`` as a :class:`Metric` (member, value or name, any case), or an InputError listing them.

    Examples
    --------
    >>> parse_metric("Cosine")
    <Metric.COSINE: 'cosine'>
    """
    return parse_enum(Metric, value, "metric", hint=" (both are computed exactly from the Gram matrix of the weights)")


def parse_method(value: Any) -> Method:
    """``value`` as a :class:`Method` (member, value or name, any case), or an InputError listing them.

    Examples
    --------
    >>> parse_method("PCA")
    <Method.PCA: 'pca'>
    """
    try:
        return parse_enum(Method, value, "method")
    except InputError:
        # The wording callers (and the tests) have relied on since the first release.
        raise InputError(f"unknown method {value!r}; choose from {list(METHODS)}") from None

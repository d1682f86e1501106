"""The trace of the loss Hessian by Hutchinson's estimator, with its standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import positive_int
from ..progress import progress_bar
from .operators import HessianOperator, generator_for, rademacher


@dataclass
class TraceEstimate:
    """Hutchinson's estimate of tr(H): the mean of ``v^T H v`` over Rademacher vectors ``v``.

    Attributes
    ----------
    value : float
        The estimate (mean of :attr:`samples`).
    stderr : float
        Its standard error, ``std(samples, ddof=1) / sqrt(n)`` (NaN for one sample).
    samples : numpy.ndarray
        Each ``v^T H v``.
    """

    value: float
    stderr: float
    samples: np.ndarray

    def __float__(self) -> float:
        return float(self.value)


def hessian_trace(
    f,
    theta=None,
    samples: int = 100,
    seed: int = 0,
    *,
    split: str = "train",
    ignore=None,
    return_error: bool = False,
    progress=False,
):
    """Hutchinson's estimate of the trace of the Hessian of ``f``'s mean loss at ``theta``.

    ``tr(H) = E[v^T H v]`` for vectors ``v`` of independent +1/-1 entries; each sample costs
    one exact Hessian-vector product over all of ``f``'s data.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    samples : int
        Number of Rademacher vectors (PyHessian's ``maxIter`` default, 100).
    seed : int
        Seed of the vectors (a generator on theta's device).
    split : str
        ``"train"`` or ``"test"``.
    ignore : None, "biasbn" or name patterns
        Trace of the Hessian restricted to the kept parameters.
    return_error : bool
        Return a :class:`TraceEstimate` (value, standard error, samples) instead of a float.
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per sample.

    Returns
    -------
    float or TraceEstimate

    Examples
    --------
    >>> hessian_trace(f, f.origin, samples=100, seed=0)
    412.7
    >>> est = hessian_trace(f, samples=100, return_error=True)
    >>> est.value, est.stderr
    """
    samples = positive_int("samples", samples)
    op = HessianOperator(f, theta, split, ignore)
    gen = generator_for(seed, op.device)
    values = np.empty(samples)
    with progress_bar(progress, samples, "Hessian trace") as advance:
        for i in range(samples):
            v = rademacher(op.size, gen, op.dtype, op.device)
            values[i] = float(torch.dot(v.double(), op.matvec(v).double()))
            advance(1)
    stderr = float(values.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    est = TraceEstimate(float(values.mean()), stderr, values)
    return est if return_error else est.value

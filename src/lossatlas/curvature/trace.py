"""The trace of a curvature matrix from matrix-vector products, with its standard error.

Three estimators, each given a budget of products:

- ``"hutchinson"``: the mean of ``v^T M v`` over Rademacher vectors ``v``; its error falls as
  ``1/sqrt(products)``;
- ``"hutch++"`` (Meyer, Musco, Musco & Woodruff 2021): a third of the products sketch the top of the
  spectrum (``Q = orth(M S)``), whose trace ``tr(Q^T M Q)`` is exact, and Hutchinson takes only the
  rest, ``(I - QQ^T) M (I - QQ^T)``; on a spectrum that decays (as a network's does) its error is
  a fraction of Hutchinson's at the same cost;
- ``"xtrace"`` (Epperly, Tropp & Webber 2024): half the products as test vectors, half on the basis
  they span, every test vector used both ways (the estimate is exchangeable: each vector in turn
  checks the low-rank part built from the others), which also gives an honest standard error.

Products go through the data in blocks of ``block`` vectors (one pass per block).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .._errors import parse_enum, positive_int, require
from ..progress import progress_bar
from .operators import HessianOperator, generator_for


class TraceMethod(str, enum.Enum):
    """Stochastic trace estimator."""

    HUTCHINSON = "hutchinson"
    HUTCHPP = "hutch++"
    XTRACE = "xtrace"


@dataclass
class TraceEstimate:
    """An estimate of tr(M) with its standard error.

    Attributes
    ----------
    value : float
        The estimate.
    stderr : float
        Its standard error (NaN when it cannot be estimated, e.g. from one sample): for
        Hutchinson ``std(samples, ddof=1) / sqrt(n)``; for Hutch++ that of its Hutchinson part
        (the sketched part is exact); for XTrace the spread of its exchangeable estimates.
    samples : numpy.ndarray
        The per-vector values the standard error comes from.
    method : str
    products : int
        Matrix-vector products used.
    """

    value: float
    stderr: float
    samples: np.ndarray
    method: str = "hutchinson"
    products: int = field(default=0)

    def __float__(self) -> float:
        return float(self.value)


def rademacher_rows(k: int, n: int, gen: torch.Generator, device) -> torch.Tensor:
    """``[k, n]`` independent +1/-1 entries (float64) from ``gen``."""
    bits = torch.randint(0, 2, (k, n), generator=gen, device=device)
    return (bits * 2 - 1).to(torch.float64)


def _stderr(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


def estimate_trace(matmat, n: int, products: int, method="hutchinson", *, generator: torch.Generator,
                   device=None, block: int = 8, advance=None) -> TraceEstimate:
    """tr(M) of a symmetric ``n x n`` operator given as ``matmat(V [K, n]) -> M V^T`` as rows.

    Examples
    --------
    >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
    >>> est = estimate_trace(lambda V: V @ A, 100, 30, "hutch++", generator=torch.Generator().manual_seed(0))
    """
    method = parse_enum(TraceMethod, method, "trace method")
    products = positive_int("samples", products, minimum={"hutchinson": 1, "hutch++": 3, "xtrace": 2}[method.value])
    block = positive_int("block", block)
    device = torch.device(device) if device is not None else torch.device("cpu")
    advance = advance or (lambda _k: None)

    def apply(V: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, V.shape[0], block):
            out.append(matmat(V[i:i + block]).to(device=device, dtype=torch.float64))
            advance(min(block, V.shape[0] - i))
        return torch.cat(out) if out else V.new_zeros(0, n)

    if method is TraceMethod.HUTCHINSON:
        V = rademacher_rows(products, n, generator, device)
        samples = (V * apply(V)).sum(1).cpu().numpy()
        return TraceEstimate(float(samples.mean()), _stderr(samples), samples, method.value, products)
    if method is TraceMethod.HUTCHPP:
        k = products // 3
        S = rademacher_rows(k, n, generator, device)
        Q = torch.linalg.qr(apply(S).T)[0]  # [n, k]: an orthonormal basis of the sketch M S
        exact = float((Q.T * apply(Q.T.contiguous())).sum())  # tr(Q^T M Q)
        G = rademacher_rows(products - 2 * k, n, generator, device)
        G = G - (G @ Q) @ Q.T  # (I - QQ^T) g
        samples = (G * apply(G)).sum(1).cpu().numpy()
        return TraceEstimate(exact + float(samples.mean()), _stderr(samples), samples, method.value, products)
    return _xtrace(apply, n, products // 2, generator, device)


def _xtrace(apply, n: int, s: int, generator, device) -> TraceEstimate:
    require(s < n, f"xtrace needs fewer test vectors than the matrix has rows: {2 * s} products for a "
                   f"{n} x {n} matrix; ask for fewer samples or use hutchinson")
    Om = rademacher_rows(s, n, generator, device)  # rows: the test vectors
    Y = apply(Om).T  # [n, s]
    Q, R = torch.linalg.qr(Y)
    Z = apply(Q.T.contiguous()).T  # M Q, [n, s]
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    W = Q.T @ Om.T  # [s, s]
    # Column i of Q R^{-T} lies in range(Y) and is orthogonal to every y_j, j != i: with it
    # removed, QQ^T is the projector onto the span of the other test vectors' images.
    S = torch.linalg.inv(R).T
    S = S / S.norm(dim=0, keepdim=True)
    c = (S * W).sum(0)
    U = Om.T - Q @ W + (Q @ S) * c  # (I - P_i) w_i, column i
    MU = Y - Z @ W + (Z @ S) * c  # M (I - P_i) w_i
    est = torch.trace(H) - (S * (H @ S)).sum(0) + (U * MU).sum(0)
    samples = est.cpu().numpy()
    return TraceEstimate(float(samples.mean()), _stderr(samples), samples, "xtrace", 2 * s)


def hessian_trace(
    f,
    theta=None,
    samples: int = 100,
    seed: int = 0,
    method="hutchinson",
    *,
    curvature="hessian",
    split: str = "train",
    ignore=None,
    block: int = 8,
    return_error: bool = False,
    progress=False,
):
    """The trace of the Hessian (or Gauss-Newton or Fisher matrix) of ``f``'s mean loss at ``theta``.

    Each product is exact over all of ``f``'s data; ``block`` vectors share one pass through it.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    samples : int
        The budget of matrix-vector products (PyHessian's ``maxIter`` default, 100): Rademacher
        vectors for Hutchinson; a third sketch, a third basis, a third Hutchinson for Hutch++
        (at least 3); half test vectors, half basis for XTrace (at least 2).
    seed : int
        Seed of the vectors (a generator on theta's device).
    method : {"hutchinson", "hutch++", "xtrace"}
        The estimator (see :mod:`lossatlas.curvature.trace`). On a decaying spectrum Hutch++ and
        XTrace reach a fraction of Hutchinson's error with the same products.
    curvature : {"hessian", "ggn", "fisher"}
    split : str
        ``"train"`` or ``"test"``.
    ignore : None, "biasbn" or name patterns
        Trace of the matrix restricted to the kept parameters.
    block : int
        Vectors per pass through the data (memory grows with it).
    return_error : bool
        Return a :class:`TraceEstimate` (value, standard error, samples, method, products) instead
        of a float. ``float(estimate)`` is the value, so either works where a number is expected.
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per product.

    Returns
    -------
    float or TraceEstimate

    Examples
    --------
    >>> hessian_trace(f, f.origin, samples=100, seed=0)
    412.7
    >>> est = hessian_trace(f, samples=60, method="hutch++", return_error=True)
    >>> est.value, est.stderr
    """
    method = parse_enum(TraceMethod, method, "trace method")
    op = HessianOperator(f, theta, split, ignore, curvature=curvature)
    gen = generator_for(seed, op.device)
    with progress_bar(progress, samples if isinstance(samples, int) else 0, "Hessian trace") as advance:
        est = estimate_trace(op.matmat, op.size, samples, method, generator=gen, device=op.device, block=block,
                             advance=advance)
    return est if return_error else est.value

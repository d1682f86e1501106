"""Extreme eigenvalues of the loss Hessian: the top k, the most negative, or both, in one run.

PyHessian finds the top k by power iteration, deflating one eigenvalue at a time (k separate
runs, each as slow as the gap to the next eigenvalue allows). Here one Lanczos run with full
reorthogonalization (or SciPy's ARPACK on a LinearOperator) yields all k together.
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import parse_enum, positive_int, require
from ..progress import progress_bar
from .lanczos import Lanczos
from .operators import HessianOperator, generator_for

# Li et al.'s code shifts the Hessian by this multiple of its top eigenvalue so that the most
# negative eigenvalue becomes the one of largest magnitude.
SHIFT = 0.51
# Eigenvalues this small relative to the largest Ritz value count as converged at an absolute
# accuracy of tol * SMALL * |theta_max| (a relative test would never end for a near-zero bulk).
SMALL = 1e-3


class Which(str, enum.Enum):
    """Which end of the Hessian's spectrum to compute."""

    LARGEST = "largest"
    SMALLEST = "smallest"  # the most negative eigenvalues
    BOTH = "both"


class Method(str, enum.Enum):
    """Eigensolver."""

    LANCZOS = "lanczos"  # own Lanczos, full reorthogonalization, on the landscape's device
    ARPACK = "arpack"  # scipy.sparse.linalg.eigsh on a LinearOperator (implicit restarts)


class ConvergenceWarning(RuntimeWarning):
    """An eigensolver stopped at ``maxiter`` before every wanted eigenvalue met ``tol``."""


@dataclass
class Eigenpairs:
    """Eigenvalues (largest first), their unit eigenvectors [k, P] and how they were found."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: np.ndarray  # ||H y - lambda y|| bound of each pair (lanczos; NaN for arpack)
    products: int  # Hessian-vector products used
    converged: bool


def hessian_eigenvalues(
    f,
    theta=None,
    k: int = 1,
    which="largest",
    *,
    curvature="hessian",
    tol: float = 1e-3,
    maxiter: int | None = None,
    seed: int = 0,
    method="lanczos",
    split: str = "train",
    ignore=None,
    return_vectors: bool = False,
    progress=False,
):
    """Extreme eigenvalues of the Hessian (or the Gauss-Newton or Fisher matrix) of ``f``'s mean
    loss at ``theta``.

    Every product is exact over all of ``f``'s data (summed over its batches).

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    k : int
        Eigenvalues wanted at each end.
    which : {"largest", "smallest", "both"}
        ``"smallest"``: the k most negative (algebraically smallest). Following Li et al.'s
        code, the top eigenvalue is found first and the Hessian shifted by ``0.51`` times it,
        which makes the lower end the largest in magnitude. With ``method="arpack"`` the shifted
        operator is solved again literally (largest magnitude; if that lands on the upper end,
        i.e. every eigenvalue exceeds 2% of the top one, the smallest algebraic of the shifted
        operator is taken). With ``"lanczos"`` the same Krylov space serves both ends (Krylov
        spaces are shift-invariant, so the shifted operator's Ritz values are H's minus the
        shift): the run continues until the lower end has converged too.
    curvature : {"hessian", "ggn", "fisher"}
        The matrix: the Hessian, the generalized Gauss-Newton ``J^T H_out J`` or the empirical
        Fisher (see :func:`~lossatlas.curvature.operators.curvature_operator`).
    tol : float
        Lanczos: stop when every wanted Ritz pair has ``||H y - theta y|| <= tol * |theta|``
        (``|theta|`` floored at ``1e-3`` times the largest Ritz value); the eigenvalue error is
        then about ``tol**2`` times the spectral scale or less. ARPACK: its relative ``tol``.
    maxiter : int, optional
        Lanczos: most steps (Hessian-vector products and basis vectors kept, so memory is
        ``maxiter x P``); default ``max(100, 20 k)``, doubled for ``"both"``, at most P.
        ARPACK: its restart count (default SciPy's).
    seed : int
        Seed of the start vector (a generator on theta's device).
    method : {"lanczos", "arpack"}
    split : str
        Which data: ``"train"`` or ``"test"``.
    ignore : None, "biasbn" or name patterns
        Restrict the Hessian to the kept parameters (Li et al. use the weights only:
        ``"biasbn"``).
    return_vectors : bool
        Also return eigenvectors and convergence information as an :class:`Eigenpairs`.
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per Lanczos step (the total is
        ``maxiter``; the bar completes when the run converges).

    Returns
    -------
    Tensor or Eigenpairs
        1-D float64 CPU tensor, largest first (``2k`` values for ``"both"``, fewer if the
        operator is smaller).

    Examples
    --------
    >>> hessian_eigenvalues(f, f.origin, k=5)
    tensor([41.2, 17.9, 12.3, 9.6, 8.8], dtype=torch.float64)
    >>> lo = hessian_eigenvalues(f, f.origin, which="smallest")
    >>> hessian_eigenvalues(f, f.origin, k=3, curvature="ggn")
    """
    which = parse_enum(Which, which, "spectrum end")
    method = parse_enum(Method, method, "eigensolver")
    k = positive_int("k", k)
    require(isinstance(tol, (int, float)) and 0 < tol < 1, f"tol must be a number in (0, 1), got {tol!r}")
    if maxiter is not None:
        maxiter = positive_int("maxiter", maxiter, minimum=2)
    op = HessianOperator(f, theta, split, ignore, curvature=curvature)
    require(k <= op.size, f"k={k} but the Hessian has only {op.size} rows; ask for at most {op.size}")
    gen = generator_for(seed, op.device)
    if method is Method.ARPACK and op.size > 2 * k + 1:
        with op.retained():
            result = _arpack(op, k, which, tol, maxiter, gen)
    else:
        # Lanczos also covers operators too small for ARPACK (it spans the whole space).
        if maxiter is None:
            maxiter = max(100, 20 * k) * (2 if which is Which.BOTH else 1)
        total = min(maxiter, op.size)
        with progress_bar(progress, total, "Hessian eigenvalues") as advance, op.retained():
            result = _lanczos(op, k, which, tol, maxiter, gen, advance)
            advance(total - result.products)
    return result if return_vectors else result.values


def _wanted(values: np.ndarray, k: int, which: Which) -> np.ndarray:
    order = np.argsort(values)  # ascending
    top, bottom = order[::-1][:k], order[:k]
    if which is Which.LARGEST:
        return top
    if which is Which.SMALLEST:
        return bottom
    return np.unique(np.concatenate([top, bottom]))


def _lanczos(op: HessianOperator, k, which, tol, maxiter, gen, advance) -> Eigenpairs:
    v0 = torch.randn(op.size, generator=gen, dtype=op.dtype, device=op.device)
    lz = Lanczos(op.matvec, v0, capacity=maxiter, generator=gen)
    need = min(op.size, 2 * k if which is Which.BOTH else k)
    converged = False
    while lz.step():
        advance(1)
        if lz.m < need or lz.restarted:
            continue
        values, S, res = lz.ritz()
        idx = _wanted(values, k, which)
        floor = SMALL * float(np.max(np.abs(values)))
        if np.all(res[idx] <= tol * np.maximum(np.abs(values[idx]), floor)):
            converged = True
            break
    if lz.failed or lz.m == 0:
        warnings.warn("the Hessian-vector product was not finite (NaN or infinite loss at theta): "
                      "eigenvalues are NaN", RuntimeWarning, stacklevel=3)
        nan = torch.full((min(op.size, 2 * k if which is Which.BOTH else k),), math.nan, dtype=torch.float64)
        empty = torch.full((nan.numel(), op.theta.numel()), math.nan, dtype=op.dtype, device=op.device)
        return Eigenpairs(nan, empty, np.full(nan.numel(), math.nan), op.calls, False)
    values, S, res = lz.ritz()
    idx = _wanted(values, k, which)
    if not converged:
        floor = SMALL * float(np.max(np.abs(values)))
        converged = bool(np.all(res[idx] <= tol * np.maximum(np.abs(values[idx]), floor)))
    if not converged:
        warnings.warn(
            f"Lanczos stopped after {lz.m} Hessian-vector products with residuals up to "
            f"{float(np.max(res[idx])):.3g} (tol={tol}); pass a larger maxiter or tol",
            ConvergenceWarning, stacklevel=3,
        )
    idx = idx[np.argsort(values[idx])[::-1]]  # largest first
    vectors = lz.ritz_vectors(S[:, idx])
    vectors = torch.stack([op.embed(v) for v in vectors]) if len(idx) else vectors
    return Eigenpairs(torch.as_tensor(values[idx], dtype=torch.float64), vectors, res[idx], op.calls, converged)


def _eigsh(op: HessianOperator, k, which: str, tol, maxiter, v0, shift=0.0):
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    try:
        vals, vecs = eigsh(op.scipy(shift), k=k, which=which, tol=tol, maxiter=maxiter, v0=v0)
        return vals + shift, vecs, True
    except ArpackNoConvergence as exc:
        warnings.warn(f"ARPACK did not converge ({exc}); pass a larger maxiter or tol",
                      ConvergenceWarning, stacklevel=4)
        return exc.eigenvalues + shift, exc.eigenvectors, False


def _arpack(op: HessianOperator, k, which, tol, maxiter, gen) -> Eigenpairs:
    v0 = torch.randn(op.size, generator=gen, dtype=torch.float64, device=op.device).cpu().numpy()
    parts, ok = [], True
    k_top = k if which is not Which.SMALLEST else 1
    top_vals, top_vecs, conv = _eigsh(op, k_top, "LA", tol, maxiter, v0)
    ok &= conv
    if which is not Which.SMALLEST:
        parts.append((top_vals, top_vecs))
    if which is not Which.LARGEST:
        lam_max = float(np.max(top_vals))
        shift = SHIFT * lam_max if lam_max > 0 else 0.0
        vals, vecs, conv = _eigsh(op, k, "LM", tol, maxiter, v0, shift)
        if np.any(vals - shift > 0):
            # The largest magnitude of H - shift I is on the upper end: every eigenvalue is
            # above 2% of the top one, so the lower end is the smallest algebraic instead.
            vals, vecs, conv = _eigsh(op, k, "SA", tol, maxiter, v0, shift)
        ok &= conv
        parts.append((vals, vecs))
    values = np.concatenate([p[0] for p in parts])
    vectors = np.concatenate([p[1] for p in parts], axis=1)
    # Both ends may share eigenpairs when the operator is small: keep each once.
    keep = np.ones(values.size, dtype=bool)
    for i in range(values.size):
        for j in range(i):
            if keep[j] and abs(float(vectors[:, i] @ vectors[:, j])) > 0.99:
                keep[i] = False
    values, vectors = values[keep], vectors[:, keep]
    order = np.argsort(values)[::-1]
    vecs = torch.as_tensor(vectors[:, order].T.copy(), dtype=op.dtype, device=op.device)
    vecs = torch.stack([op.embed(v) for v in vecs])
    nan = np.full(order.size, math.nan)
    return Eigenpairs(torch.as_tensor(values[order], dtype=torch.float64), vecs, nan, op.calls, ok)

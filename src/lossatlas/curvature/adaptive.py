"""Adaptive sharpness (Kwon et al. 2021; Andriushchenko et al. 2023): the loss rise inside a
perturbation set scaled elementwise by ``|theta|``, the sharpness measure that recent work tests
against generalization.

With ``c = |theta|`` (``adaptive=True``) or ``c = 1`` (the plain ball), and the loss ``L_S`` on a
fixed subset ``S`` of the data:

- worst case: ``max_{||z||_p <= rho} L_S(theta + c * z) - L_S(theta)``, by projected gradient
  ascent in ``z`` (normalized steps for ``p = 2``, sign steps for ``p = inf``; the step halves
  whenever an ascent step fails to raise the loss, and the largest loss seen is kept);
- average case: ``E_{z ~ N(0, rho^2 I)} L_S(theta + c * z) - L_S(theta)``, by Monte Carlo.

Why ``|theta|``: a ReLU network with one layer multiplied by ``a`` and the next by ``1/a``
computes the same function, and ``theta + |theta| * z`` is rescaled with it, so the whole ascent
(in ``z``) is the same and so is the sharpness; in the plain ball it is not.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import torch

from .._errors import parse_enum, positive_int, require
from .operators import generator_for, resolve_theta


class SharpnessKind(str, enum.Enum):
    """Worst-case (ascent) or average-case (Gaussian noise) sharpness."""

    WORST = "worst"
    AVERAGE = "average"


def _norm_p(p) -> float:
    if isinstance(p, str) and p.strip().lower() in ("inf", "infinity", "linf"):
        return math.inf
    require(p in (2, math.inf) and not isinstance(p, bool), f"p must be 2 or inf, got {p!r}")
    return float(p)


def data_subset(n: int, samples: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of ``samples`` of ``n`` samples drawn without replacement (all when None)."""
    if samples is None or samples >= n:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    return torch.as_tensor(np.sort(rng.choice(n, size=samples, replace=False)))


def adaptive_sharpness(
    f,
    theta=None,
    rho: float = 0.05,
    kind="worst",
    p=2,
    adaptive: bool = True,
    seed: int = 0,
    *,
    samples: int | None = 1024,
    steps: int = 20,
    ignore=None,
    split: str = "train",
) -> float:
    """Adaptive sharpness of ``f``'s loss at ``theta`` (Andriushchenko et al. 2023's definition).

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    rho : float
        Radius of the perturbation set in the scaled coordinates ``z`` (worst case), or the
        standard deviation of ``z`` (average case).
    kind : {"worst", "average"}
    p : 2 or inf
        The norm of the worst-case ball (ignored for ``"average"``).
    adaptive : bool
        Scale perturbations elementwise by ``|theta|`` (True) or not (the plain ball).
    seed : int
        Chooses the data subset, the ascent's random start and the average case's noise.
    samples : int or None
        Size of the fixed data subset (None: all of ``split``).
    steps : int
        Ascent steps (worst case) or noise draws (average case).
    ignore : None, "biasbn" or name patterns
        Parameters left unperturbed.
    split : str

    Returns
    -------
    float
        The loss rise on the subset (NaN when the loss there is not finite).

    Examples
    --------
    >>> from lossatlas.sharpness import adaptive_sharpness
    >>> adaptive_sharpness(f, f.origin, rho=0.05, kind="worst", p=2)
    0.0132
    """
    kind = parse_enum(SharpnessKind, kind, "sharpness kind")
    pn = _norm_p(p)
    require(isinstance(rho, (int, float)) and not isinstance(rho, bool) and rho > 0,
            f"rho must be a positive number, got {rho!r}")
    require(isinstance(adaptive, bool), f"adaptive must be True or False, got {adaptive!r}")
    steps = positive_int("steps", steps)
    if samples is not None:
        samples = positive_int("samples", samples)
    x = resolve_theta(f, theta)
    names = [s.name for s in f.splits]
    require(split in names, f"no {split!r} data in this landscape; splits: {names}")
    n = f.splits[names.index(split)].n
    picks = data_subset(n, samples, seed)
    c = x.abs() if adaptive else torch.ones_like(x)
    if ignore is not None:
        c = c * f.space.mask(ignore).to(device=c.device, dtype=c.dtype)
    base, _ = f.subset_grad(x, picks, split, need_grad=False)
    if not math.isfinite(base):
        return math.nan
    gen = generator_for(seed, x.device)
    if kind is SharpnessKind.AVERAGE:
        rises = []
        for _ in range(steps):
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) * rho
            rises.append(f.subset_grad(x + c * z, picks, split, need_grad=False)[0] - base)
        return float(np.mean(rises))
    return _ascent(f, x, c, picks, split, float(rho), pn, steps, gen, base)


def _project(z: torch.Tensor, rho: float, p: float) -> torch.Tensor:
    if p == math.inf:
        return z.clamp(-rho, rho)
    norm = float(z.double().norm())
    return z * (rho / norm) if norm > rho else z


def _ascent(f, x, c, picks, split, rho, p, steps, gen, base) -> float:
    # A random start inside the ball: at an exact minimum the gradient at z = 0 vanishes.
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    z = _project(z * (0.5 * rho / float(z.double().norm())) if p == 2 else z.sign() * 0.5 * rho, rho, p)
    eta = rho if p == 2 else 0.5 * rho
    best = -math.inf
    value, g = f.subset_grad(x + c * z, picks, split)
    for _ in range(steps):
        best = max(best, value)
        gz = c * g  # d/dz L(x + c z)
        if p == math.inf:
            step = gz.sign()
        else:
            norm = float(gz.double().norm())
            if norm == 0 or not math.isfinite(norm):
                break
            step = gz / norm
        z_new = _project(z + eta * step, rho, p)
        v_new, g_new = f.subset_grad(x + c * z_new, picks, split)
        if not math.isfinite(v_new):
            return math.nan
        if v_new <= value:
            eta *= 0.5  # overshot: shorter steps from the same point
            best = max(best, v_new)
            continue
        z, value, g = z_new, v_new, g_new
    best = max(best, value)
    return float(best - base)

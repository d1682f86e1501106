"""Sharpness and flatness of minima, for comparing them.

- Keskar et al.'s epsilon-sharpness (the largest relative loss rise in a small box, by L-BFGS-B),
  in the full space and in a random subspace;
- the average and the largest loss rise at a radius along filter-normalized random directions
  (Li et al.'s scale-invariant directions);
- the basin (:mod:`lossatlas.basin`, re-exported here): the share of filter-normalized
  directions whose loss rises at most a threshold above the minimum's own (the course slides'
  "volume of minima"), and the mean distance at which it first rises by it (Huang et al. 2019);
- :func:`compare_minima`, one table of these measures for several minima.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ._errors import InputError, positive_int, require
from .curvature.adaptive import adaptive_sharpness
from .curvature.eigen import hessian_eigenvalues
from .curvature.operators import generator_for, resolve_theta
from .basin import basin_radius, basin_settings, basin_volume, plane_volume  # noqa: F401 - re-exported
from .curvature.trace import hessian_trace
from .progress import progress_bar
from .space import make_directions

# Keskar et al. solve the inner maximization inexactly with 10 iterations of L-BFGS-B.
KESKAR_ITERATIONS = 10


def _loss(f, theta: torch.Tensor, split: str) -> float:
    values = f.evaluate(theta.unsqueeze(0))
    key = "loss" if split == "train" else f"{split}_loss"
    require(key in values, f"no {split!r} data in this landscape (it computes {sorted(values)})")
    return float(values[key][0])


def epsilon_sharpness(
    f,
    theta=None,
    eps: float = 1e-3,
    *,
    subspace: int | None = None,
    maxiter: int = KESKAR_ITERATIONS,
    seed: int = 0,
    split: str = "train",
) -> float:
    """Keskar et al.'s epsilon-sharpness of the loss at ``theta``.

    Keskar et al. (ICLR 2017, Metric 2.1): for ``A`` in R^{n x p}, with ``A^+`` its
    pseudo-inverse, the box ``C_eps = {z in R^p : |z_i| <= eps (|(A^+ x)_i| + 1)}`` and

        phi_{x,f}(eps, A) = 100 * (max_{y in C_eps} f(x + A y) - f(x)) / (1 + f(x)),

    a relative loss rise in percent. ``A = I`` (``subspace=None``) is the full space, where the
    box is ``|y_i| <= eps (|x_i| + 1)``; ``subspace=p`` draws ``A`` with independent standard
    Gaussian entries (their random manifolds use p = 100). As in the paper, the maximization is
    solved inexactly by L-BFGS-B (SciPy's, with exact gradients over all of ``f``'s data; the
    paper uses 10 iterations). It starts at a seeded uniform point of the box, not at ``y = 0``,
    where the gradient of an exact minimum vanishes and L-BFGS-B would not move; the largest
    loss seen on the way is kept.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The minimum ``x`` (default ``f.origin``).
    eps : float
        Box size (Keskar et al. report 1e-3 and 5e-4).
    subspace : int, optional
        Dimension p of a random subspace; None for the full space.
    maxiter : int
        L-BFGS-B iterations.
    seed : int
        Seed of the subspace matrix and of the start point (a generator on theta's device).
    split : str
        Whose loss: ``"train"`` (the paper's) or ``"test"``.

    Returns
    -------
    float
        ``phi`` in percent.

    Examples
    --------
    >>> epsilon_sharpness(f, theta, eps=1e-3)
    3.1
    >>> epsilon_sharpness(f, theta, eps=5e-4, subspace=100, seed=0)
    """
    from scipy.optimize import minimize

    require(isinstance(eps, (int, float)) and eps > 0, f"eps must be a positive number, got {eps!r}")
    maxiter = positive_int("maxiter", maxiter)
    x = resolve_theta(f, theta)
    gen = generator_for(seed, x.device)
    n = x.numel()
    if subspace is None:
        A, half = None, eps * (x.abs() + 1)
    else:
        p = positive_int("subspace", subspace)
        require(p <= n, f"subspace={p} exceeds the {n} parameters; use subspace=None for the full space")
        A = torch.randn(n, p, generator=gen, dtype=x.dtype, device=x.device)
        coef = torch.linalg.lstsq(A.double(), x.double().unsqueeze(1)).solution.squeeze(1)  # A^+ x
        half = (eps * (coef.abs() + 1)).to(x.dtype)
    base = _loss(f, x, split)
    half_np = half.double().cpu().numpy()
    y0 = (torch.rand(half.numel(), generator=gen, dtype=torch.float64, device=x.device) * 2 - 1).cpu().numpy() * half_np
    best = [base]

    def negative(y: np.ndarray):
        yt = torch.as_tensor(y, dtype=x.dtype, device=x.device)
        point = x + (yt if A is None else A @ yt)
        value, g = f.grad(point, split=split)
        value = float(value)
        if np.isfinite(value):
            best[0] = max(best[0], value)
        g = g if A is None else A.T @ g
        return -value, -g.double().cpu().numpy()

    minimize(negative, y0, jac=True, method="L-BFGS-B", bounds=list(zip(-half_np, half_np)),
             options={"maxiter": maxiter})
    return 100.0 * (best[0] - base) / (1.0 + base)


def _directions(f, x, n, norm, ignore, seed) -> torch.Tensor:
    return torch.stack(make_directions(f.space, x, positive_int("directions", n), norm, ignore, seed))


def loss_rise(
    f, theta=None, radius: float = 0.25, directions: int = 20, *, norm="filter", ignore="biasbn",
    seed: int = 0, split: str = "train",
) -> dict:
    """Loss rise at ``radius`` along random normalized directions from ``theta``.

    Each direction ``d`` is Gaussian, rescaled per filter to the norms of theta's filters (Li
    et al.), so ``theta + r d`` perturbs every filter by the fraction ``r`` of its norm: the
    measure does not change when a ReLU network is rescaled layer by layer.

    Returns
    -------
    dict
        ``mean`` and ``max`` of ``f(theta + r d) - f(theta)`` over the directions, and ``rises``
        (one per direction; NaN where the loss was not finite, ignored by mean and max).

    Examples
    --------
    >>> loss_rise(f, theta, radius=0.25, directions=20)["mean"]
    """
    require(isinstance(radius, (int, float)) and radius > 0, f"radius must be a positive number, got {radius!r}")
    x = resolve_theta(f, theta)
    D = _directions(f, x, directions, norm, ignore, seed)
    key = "loss" if split == "train" else f"{split}_loss"
    values = f.evaluate(torch.cat([x.unsqueeze(0), x + radius * D]))
    require(key in values, f"no {split!r} data in this landscape")
    loss = values[key].double().cpu().numpy()
    rises = loss[1:] - loss[0]
    finite = rises[np.isfinite(rises)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "rises": rises,
    }


def compare_minima(
    f,
    minima,
    *,
    eps: Sequence[float] = (1e-3, 5e-4),
    subspace: int | None = 100,
    maxiter: int = KESKAR_ITERATIONS,
    radius: float = 0.25,
    directions: int = 20,
    threshold: float = 0.1,
    level: float | None = None,
    max_radius: float = 1.0,
    eigenvalues: int = 1,
    trace_samples: int = 0,
    norm="filter",
    ignore="biasbn",
    seed: int = 0,
    progress=False,
):
    """One table of sharpness and flatness measures for several minima.

    Parameters
    ----------
    f : Landscape or mapping of name -> Landscape
        One landscape for all minima (same model and data), or one per minimum.
    minima : mapping of name -> Tensor, or a sequence of Tensors (named "0", "1", ...)
    eps : sequence of float
        Boxes of :func:`epsilon_sharpness` (Keskar et al.: 1e-3 and 5e-4).
    subspace : int or None
        Also the sharpness in a random subspace of this dimension (None: full space only).
    radius, directions, threshold, norm, ignore
        For :func:`loss_rise`, :func:`basin_volume` and :func:`basin_radius` (the same
        directions seed for all); ``threshold`` is a rise above each minimum's own loss.
    level : float, optional
        Count the basins by this absolute loss level instead (only when asked for).
    max_radius : float
        Farthest distance :func:`basin_radius` searches.
    eigenvalues : int
        Top Hessian eigenvalues to report (0: none).
    trace_samples : int
        Hutchinson samples for the Hessian trace (0: skip).
    seed : int
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per minimum.

    Returns
    -------
    xarray.Dataset
        Over ``minimum``: ``loss`` (and ``accuracy``, ``test_loss``, ``test_error`` when ``f``
        has them), ``weight_norm``, ``sharpness`` over ``(minimum, eps, space)`` with space
        ``"full"`` / ``"subspace"``, ``mean_rise``, ``max_rise``, ``basin_volume``,
        ``basin_radius`` and ``basin_radius_std`` (Huang et al.'s ray estimate: mean and spread of
        the distance where the loss first rises by ``threshold``), ``basin_censored`` (rays still
        inside at ``max_radius``),
        ``lambda`` over ``(minimum, rank)`` and ``trace`` where asked.

    Examples
    --------
    >>> table = compare_minima(f, {"sgd-128": theta_a, "sgd-4096": theta_b})
    >>> table.to_dataframe()
    """
    import xarray as xr

    if isinstance(minima, Mapping):
        names, thetas = [str(k) for k in minima], list(minima.values())
    elif isinstance(minima, Sequence) and not isinstance(minima, (str, torch.Tensor)):
        names, thetas = [str(i) for i in range(len(minima))], list(minima)
    else:
        raise InputError("minima must be a mapping of name -> parameter vector, or a list of vectors")
    require(bool(names), "give at least one minimum")
    if isinstance(f, Mapping):
        missing = [n for n in names if n not in f]
        require(not missing, f"no landscape for the minima {missing}; give one per minimum or a single one")
        fs = [f[n] for n in names]
    else:
        fs = [f] * len(names)
    eps = [float(e) for e in eps]
    require(bool(eps) and all(e > 0 for e in eps), f"eps must hold positive numbers, got {eps}")
    spaces = ["full"] + (["subspace"] if subspace is not None else [])
    basin = basin_settings(threshold, level)  # checked before any work, recorded below
    eigenvalues = positive_int("eigenvalues", eigenvalues, minimum=0)
    trace_samples = positive_int("trace_samples", trace_samples, minimum=0)

    rows: dict[str, list] = {}
    sharp = np.full((len(names), len(eps), len(spaces)), np.nan)
    lambdas = np.full((len(names), eigenvalues), np.nan)
    with progress_bar(progress, len(names), "sharpness") as advance:
        for m, (fm, theta) in enumerate(zip(fs, thetas)):
            _measure(m, fm, theta, rows, sharp, lambdas, eps, subspace, maxiter, radius, directions,
                     (threshold, level, max_radius), eigenvalues, trace_samples, norm, ignore, seed)
            advance(1)
    data = {k: ("minimum", np.asarray(v, dtype=np.float64)) for k, v in rows.items()}
    data["sharpness"] = (("minimum", "eps", "space"), sharp)
    if eigenvalues:
        data["lambda"] = (("minimum", "rank"), lambdas)
    settings = {
        "eps": eps, "subspace": subspace, "maxiter": maxiter, "radius": float(radius),
        "directions": int(directions), **basin, "max_radius": float(max_radius), "eigenvalues": eigenvalues,
        "trace_samples": trace_samples, "norm": str(getattr(norm, "value", norm)),
        "ignore": ignore if ignore is None or isinstance(ignore, str) else list(ignore), "seed": int(seed),
        "minima": {n: fm.space.fingerprint(resolve_theta(fm, t)) for n, fm, t in zip(names, fs, thetas)},
        "landscapes": [getattr(fm, "fingerprint", None) if isinstance(getattr(fm, "fingerprint", None), str)
                       else None for fm in fs],
    }
    coords = {"minimum": names, "eps": eps, "space": spaces}
    if eigenvalues:
        coords["rank"] = np.arange(1, eigenvalues + 1)
    return xr.Dataset(data, coords=coords, attrs={"settings": settings})


def _measure(m, fm, theta, rows, sharp, lambdas, eps, subspace, maxiter, radius, directions, threshold,
             eigenvalues, trace_samples, norm, ignore, seed) -> None:
    """Fill row ``m`` of :func:`compare_minima`'s table for one minimum."""
    x = resolve_theta(fm, theta)
    values = fm.evaluate(x.unsqueeze(0))
    for key, v in values.items():
        rows.setdefault(key, []).append(float(v[0]))
    if "test_accuracy" in values:
        rows.setdefault("test_error", []).append(1.0 - float(values["test_accuracy"][0]))
    rows.setdefault("weight_norm", []).append(float(x.double().norm()))
    for a, e in enumerate(eps):
        sharp[m, a, 0] = epsilon_sharpness(fm, x, e, maxiter=maxiter, seed=seed)
        if subspace is not None:
            sharp[m, a, 1] = epsilon_sharpness(fm, x, e, subspace=subspace, maxiter=maxiter, seed=seed)
    rise = loss_rise(fm, x, radius, directions, norm=norm, ignore=ignore, seed=seed)
    rows.setdefault("mean_rise", []).append(rise["mean"])
    rows.setdefault("max_rise", []).append(rise["max"])
    threshold, level, max_radius = threshold
    rows.setdefault("basin_volume", []).append(
        basin_volume(fm, x, threshold, radius, directions, level=level, norm=norm, ignore=ignore, seed=seed))
    ray = basin_radius(fm, x, threshold, directions, level=level, max_radius=max_radius, norm=norm, ignore=ignore,
                       seed=seed)
    rows.setdefault("basin_radius", []).append(ray["mean"])
    rows.setdefault("basin_radius_std", []).append(ray["std"])
    rows.setdefault("basin_censored", []).append(ray["censored"])
    if eigenvalues:
        top = hessian_eigenvalues(fm, x, k=eigenvalues, seed=seed).numpy()
        lambdas[m, : top.size] = top
    if trace_samples:
        rows.setdefault("trace", []).append(hessian_trace(fm, x, samples=trace_samples, seed=seed))


__all__ = ["adaptive_sharpness", "basin_volume", "compare_minima", "epsilon_sharpness", "loss_rise", "plane_volume"]

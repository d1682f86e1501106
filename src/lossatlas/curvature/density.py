"""The Hessian's spectral density by stochastic Lanczos quadrature (SLQ).

For a unit start vector ``v``, ``m`` Lanczos steps give a tridiagonal ``T`` whose eigenvalues
(nodes) and squared first eigenvector components (weights) are an ``m``-point Gauss quadrature of
the spectral measure ``sum_i (v^T u_i)^2 delta(lambda - lambda_i)``; for random ``v`` its mean is
the spectral density. Each node is smoothed by a Gaussian, as PyHessian does (Ghorbani et al.
2019), with PyHessian's defaults: 100 iterations, 1 run, variance ``1e-5 * max(1, range)``.
"""

from __future__ import annotations

import numpy as np

from .._errors import positive_int, require
from ..progress import progress_bar
from .lanczos import Lanczos
from .operators import HessianOperator, generator_for, point_settings, rademacher


def slq(op: HessianOperator, iterations: int = 100, runs: int = 1, generator=None, advance=None):
    """Quadrature nodes and weights of the Hessian's spectral measure, one row per run.

    Parameters
    ----------
    op : HessianOperator
    iterations : int
        Lanczos steps per run (at most the operator's size; a run that finds an invariant
        subspace stops early, its measure then captured exactly).
    runs : int
        Independent Rademacher start vectors.
    generator : torch.Generator
        Draws the start vectors.
    advance : callable, optional
        Called with 1 after every Hessian-vector product (a progress bar's advance).

    Returns
    -------
    nodes, weights : numpy.ndarray [runs, iterations]
        Unused slots hold NaN nodes and zero weights; each row's weights sum to 1.

    Examples
    --------
    >>> nodes, weights = slq(HessianOperator(f), iterations=100, runs=1, generator=gen)
    """
    iterations, runs = positive_int("iterations", iterations), positive_int("runs", runs)
    nodes = np.full((runs, iterations), np.nan)
    weights = np.zeros((runs, iterations))
    with op.retained():
        for r in range(runs):
            _slq_run(op, r, iterations, generator, advance, nodes, weights)
    return nodes, weights


def _slq_run(op, r, iterations, generator, advance, nodes, weights) -> None:
    """One Lanczos run of :func:`slq` into row ``r`` of ``nodes`` and ``weights``."""
    v = rademacher(op.size, generator, op.dtype, op.device)
    lz = Lanczos(op.matvec, v, capacity=iterations)  # no restarts: the measure is v's
    while lz.step():
        if advance is not None:
            advance(1)
    if lz.failed or lz.m == 0:
        return  # a non-finite product (NaN loss): the row stays NaN, flagged by the caller
    values, S, _ = lz.ritz()
    nodes[r, : values.size] = values
    weights[r, : values.size] = S[0, :] ** 2


def gaussian_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, variance: float) -> np.ndarray:
    """Mean over runs of ``sum_j w_j N(grid; node_j, variance)``.

    Examples
    --------
    >>> gaussian_density(nodes, weights, np.linspace(-1, 10, 1000), 1e-4)
    """
    require(variance > 0, f"variance must be positive, got {variance}")
    keep = np.isfinite(nodes)
    z = grid[None, :] - np.where(keep, nodes, 0.0).reshape(-1)[:, None]
    kernel = np.exp(-0.5 * z * z / variance) / np.sqrt(2 * np.pi * variance)
    w = np.where(keep, weights, 0.0).reshape(-1)
    return (w[:, None] * kernel).sum(0) / nodes.shape[0]


def spectral_density(
    f,
    theta=None,
    iterations: int = 100,
    runs: int = 1,
    *,
    seed: int = 0,
    sigma_squared: float = 1e-5,
    bins: int = 10000,
    overhead: float = 0.01,
    split: str = "train",
    ignore=None,
    progress=False,
):
    """The Hessian's eigenvalue density at ``theta`` by stochastic Lanczos quadrature.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    iterations, runs : int
        Lanczos steps per run and number of runs (PyHessian: 100 and 1).
    seed : int
        Seed of the Rademacher start vectors (a generator on theta's device).
    sigma_squared : float
        Gaussian variance per unit of spectrum range: the variance is
        ``sigma_squared * max(1, range)`` as in PyHessian's ``density_generate``.
    bins : int
        Grid points.
    overhead : float
        Least margin of the grid beyond the extreme nodes; the margin is at least four
        standard deviations of the Gaussian, so the density integrates to 1 without the
        renormalization PyHessian applies.
    split, ignore
        As for :func:`hessian_eigenvalues`.
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per Hessian-vector product.

    Returns
    -------
    xarray.Dataset
        ``density`` over ``eigenvalue`` (the grid); ``nodes`` and ``weights`` over
        ``("run", "node")``; attrs: ``variance``, ``mass`` (the density's integral on the grid)
        and ``settings``.

    Examples
    --------
    >>> ds = spectral_density(f, f.origin)
    >>> ds["density"].plot(yscale="log")
    """
    import xarray as xr

    bins = positive_int("bins", bins, minimum=2)
    iterations, runs = positive_int("iterations", iterations), positive_int("runs", runs)
    require(sigma_squared > 0, f"sigma_squared must be positive, got {sigma_squared}")
    require(overhead >= 0, f"overhead must be >= 0, got {overhead}")
    op = HessianOperator(f, theta, split, ignore)
    steps = min(iterations, op.size)
    with progress_bar(progress, steps * runs, "spectral density") as advance:
        nodes, weights = slq(op, steps, runs, generator_for(seed, op.device), advance)
    finite = np.isfinite(nodes).any(axis=1)
    if not finite.any():
        import warnings

        warnings.warn("the Hessian-vector product was not finite (NaN or infinite loss at theta): "
                      "the density is NaN", RuntimeWarning, stacklevel=2)
    good = nodes[finite] if finite.any() else np.zeros((1, 1))
    top = float(np.mean(np.nanmax(good, axis=1)))
    bottom = float(np.mean(np.nanmin(good, axis=1)))
    variance = sigma_squared * max(1.0, top - bottom)
    margin = max(overhead, 4.0 * float(np.sqrt(variance)))
    grid = np.linspace(bottom - margin, top + margin, bins)
    density = gaussian_density(nodes[finite], weights[finite], grid, variance) if finite.any() else grid * np.nan
    mass = float(np.trapezoid(density, grid)) if hasattr(np, "trapezoid") else float(np.trapz(density, grid))
    settings = {
        "iterations": iterations, "runs": runs, "seed": int(seed), "sigma_squared": float(sigma_squared),
        "bins": bins, "overhead": float(overhead), "split": split,
        "ignore": ignore if ignore is None or isinstance(ignore, str) else list(ignore),
        **point_settings(f, op.theta),
    }
    return xr.Dataset(
        {
            "density": ("eigenvalue", density),
            "nodes": (("run", "node"), nodes),
            "weights": (("run", "node"), weights),
        },
        coords={"eigenvalue": grid, "run": np.arange(nodes.shape[0]), "node": np.arange(nodes.shape[1])},
        attrs={"variance": variance, "mass": mass, "nan_runs": int((~finite).sum()), "products": op.calls, "settings": settings},
    )

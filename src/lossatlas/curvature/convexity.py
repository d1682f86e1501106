"""Li et al.'s convexity map: ``|lambda_min / lambda_max|`` of the Hessian over a plane.

Where the ratio is near 0 the landscape is locally convex (the most negative curvature is
negligible beside the largest positive one); large values mark pronounced non-convexity. Each
cell is an independent pair of eigenvalue solves, so cells go to any
``concurrent.futures.Executor`` (threads, processes, a Dask cluster's executor).
"""

from __future__ import annotations

import math
from concurrent.futures import as_completed

import numpy as np
import torch

from .._errors import positive_int, require
from ..progress import progress_bar
from .eigen import hessian_eigenvalues
from .operators import point_settings, resolve_theta


def cell_seed(seed: int, i: int, j: int) -> int:
    """The start-vector seed of cell ``(i, j)``: independent of the order cells run in."""
    return int(np.random.SeedSequence([int(seed), int(i), int(j)]).generate_state(1)[0])


#: The eigenvalue solver's options a convexity cell takes, with their defaults: Li et al.'s code
#: solves each cell to ``tol=1e-2``; the others are :func:`hessian_eigenvalues`'s.
CELL_SOLVER = {"tol": 1e-2, "maxiter": None, "method": "lanczos", "split": "train", "ignore": None}


def cell_solver(options) -> dict:
    """:data:`CELL_SOLVER` updated with ``options``; an unknown option is refused, naming the known."""
    unknown = sorted(set(options) - set(CELL_SOLVER))
    require(not unknown, f"the convexity map does not take {unknown}; its solver options are {sorted(CELL_SOLVER)}")
    return {**CELL_SOLVER, **options}


def convexity_cell(f, point, *, seed: int = 0, **solver) -> tuple[float, float]:
    """``(lambda_min, lambda_max)`` of the Hessian at ``point`` (NaN where the loss is not finite).

    ``solver``: ``tol`` (default 1e-2, as in Li et al.'s code), ``maxiter``, ``method``,
    ``split`` and ``ignore``, as for :func:`hessian_eigenvalues`.

    Examples
    --------
    >>> lo, hi = convexity_cell(f, f.origin)
    """
    values = hessian_eigenvalues(f, point, k=1, which="both", seed=seed, **cell_solver(solver))
    if values.numel() == 0 or not torch.isfinite(values).all():
        return math.nan, math.nan
    return float(values[-1]), float(values[0])


def _cell_at(f, center, dirs, x: float, y: float, seed: int, kw: dict) -> tuple[float, float]:
    """One cell, its point made where it runs: a task carries the centre and directions (shared
    by every cell, sent once to a cluster) and two coordinates, not a vector per cell."""
    return convexity_cell(f, center + x * dirs[0] + y * dirs[1], seed=seed, **kw)


def convexity_map(
    f,
    center,
    dirs,
    span: float = 1.0,
    steps: int = 11,
    *,
    executor=None,
    seed: int = 0,
    progress=False,
    **solver,
):
    """Hessian eigenvalue extremes and their ratio on a plane, as Li et al.'s heat maps.

    Parameters
    ----------
    f : Landscape
    center : Tensor or None
        Centre of the plane (default ``f.origin``).
    dirs : two 1-D tensors
        The plane's directions (e.g. filter-normalized ``random_directions``); cell ``(i, j)``
        is at ``center + x[i] * dirs[0] + y[j] * dirs[1]`` as in :func:`lossatlas.plane`.
    span : float
        ``x = y = linspace(-span, span, steps)``.
    steps : int
        Cells per axis; coarser than a loss plane (each cell costs two eigenvalue solves).
    executor : concurrent.futures.Executor, optional
        Runs the cells (one task each); None computes them in this process, in order.
    seed : int
        Start vectors: cell ``(i, j)`` uses :func:`cell_seed` ``(seed, i, j)``.
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per cell.
    **solver
        ``tol``, ``maxiter``, ``method``, ``split``, ``ignore``: as for
        :func:`hessian_eigenvalues` (:data:`CELL_SOLVER`: ``tol`` 1e-2 as in Li et al.'s code).

    Returns
    -------
    xarray.Dataset
        ``lambda_min``, ``lambda_max`` and ``ratio = |lambda_min / lambda_max|`` over
        ``("x", "y")``; attrs ``nan_cells`` (cells whose loss or curvature was not finite) and
        ``settings``.

    Examples
    --------
    >>> dirs = random_directions(model, n=2, seed=0)
    >>> ds = convexity_map(f, f.origin, dirs, span=1.0, steps=11)
    >>> ds["ratio"].plot(vmin=0, vmax=0.5)
    """
    import xarray as xr

    center = resolve_theta(f, center)
    dirs = [resolve_theta(f, d) for d in dirs]
    require(len(dirs) == 2, f"a plane needs two directions, got {len(dirs)}")
    steps = positive_int("steps", steps)
    require(isinstance(span, (int, float)) and span > 0, f"span must be a positive number, got {span!r}")
    coords = np.linspace(-span, span, steps)
    kw = cell_solver(solver)
    cells = [(i, j) for i in range(steps) for j in range(steps)]

    def args(i, j):
        return f, center, dirs, float(coords[i]), float(coords[j]), cell_seed(seed, i, j), kw

    lo = np.full((steps, steps), np.nan)
    hi = np.full((steps, steps), np.nan)
    with progress_bar(progress, len(cells), f"convexity map {steps}x{steps}") as advance:
        if executor is None:
            for i, j in cells:
                lo[i, j], hi[i, j] = _cell_at(*args(i, j))
                advance(1)
        else:
            # Cells finish in any order (dynamic scheduling): each is placed by its own index.
            futures = {executor.submit(_cell_at, *args(i, j)): (i, j) for i, j in cells}
            for fut in as_completed(futures):
                i, j = futures[fut]
                lo[i, j], hi[i, j] = fut.result()
                advance(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(lo / hi)
    ratio[~np.isfinite(ratio)] = np.nan
    settings = {
        **point_settings(f, center),
        "dirs": [f.space.fingerprint(d) for d in dirs],
        "span": float(span), "steps": steps, "tol": float(kw["tol"]), "maxiter": kw["maxiter"], "seed": int(seed),
        "method": str(getattr(kw["method"], "value", kw["method"])), "split": kw["split"],
        "ignore": kw["ignore"] if kw["ignore"] is None or isinstance(kw["ignore"], str) else list(kw["ignore"]),
    }
    return xr.Dataset(
        {
            "lambda_min": (("x", "y"), lo),
            "lambda_max": (("x", "y"), hi),
            "ratio": (("x", "y"), ratio),
        },
        coords={"x": coords, "y": coords},
        attrs={"nan_cells": int(np.isnan(lo).sum()), "settings": settings},
    )

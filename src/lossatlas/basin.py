"""How wide the basin of a minimum is, measured from the minimum's own loss.

- :func:`basin_volume`: the share of random filter-normalized directions ``d`` along which the
  loss at ``theta + radius d`` rises at most ``threshold`` above ``f(theta)`` (the course slides'
  "volume of minima", measured on Li et al.'s scale-invariant directions);
- :func:`basin_radius`: the ray estimate of Huang et al. (2019, "Understanding generalization
  through visualizations"): along each direction, the distance at which the loss first rises by
  ``threshold`` above ``f(theta)``, found by a scan outward and bisection; its mean (and spread)
  over the directions;
- :func:`plane_volume`: the share of a stored plane's cells under a loss level.

Both basin measures count a *rise above the minimum's own loss*. *Why not an absolute level:* a
minimum with a lower loss of its own (a memorizing network at loss 0) then wins only because it
starts lower, not because its basin is wider. An absolute level is used only when asked for with
``level=``; which one was used is recorded (``basin_radius``'s ``settings``, and the settings of
:func:`lossatlas.sharpness.compare_minima`).

Floor 3 (samplers): evaluates a :class:`~lossatlas.landscape.Landscape`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._errors import positive_int, require
from .curvature.operators import resolve_theta
from .space import make_directions

__all__ = ["basin_radius", "basin_settings", "basin_volume", "plane_volume"]


def _key(split: str) -> str:
    return "loss" if split == "train" else f"{split}_loss"


def _losses(f, points: torch.Tensor, split: str) -> np.ndarray:
    values = f.evaluate(points)
    key = _key(split)
    require(key in values, f"no {split!r} data in this landscape (it computes {sorted(values)})")
    return values[key].double().cpu().numpy()


def _number(name: str, value, positive: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and math.isfinite(value)
    require(ok and (value > 0 or not positive), f"{name} must be a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


def basin_settings(threshold: float = 0.1, level: float | None = None) -> dict:
    """What a basin measure counts, as recorded beside it.

    Examples
    --------
    >>> basin_settings(0.1)
    {'basin_measure': 'rise', 'threshold': 0.1, 'level': None}
    >>> basin_settings(level=0.3)["basin_measure"]
    'absolute'
    """
    if level is not None:
        return {"basin_measure": "absolute", "threshold": None, "level": _number("level", level, positive=False)}
    return {"basin_measure": "rise", "threshold": _number("threshold", threshold), "level": None}


def _targets(base: float, how: dict) -> float:
    """The loss at which a direction leaves the basin."""
    return how["level"] if how["basin_measure"] == "absolute" else base + how["threshold"]


def basin_volume(
    f, theta=None, threshold: float = 0.1, radius: float = 0.25, directions: int = 20, *, level: float | None = None,
    norm="filter", ignore="biasbn", seed: int = 0, split: str = "train",
) -> float:
    """Share of filter-normalized directions ``d`` with ``f(theta + radius d) - f(theta) <= threshold``.

    A larger share is a wider basin (the slides' "volume of minima"). The threshold is a rise
    above the minimum's own loss, so minima of different losses compare by the shape of their
    basins, not by where they start. ``level=`` instead counts the directions whose loss stays
    at most that absolute level (``threshold`` is then not used); say which in what you report
    (:func:`basin_settings`). A direction whose loss is not finite is outside.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The minimum (default ``f.origin``).
    threshold : float
        The rise above ``f(theta)`` that still counts as inside.
    radius : float
        Distance along each direction, in units of theta's filter norms.
    directions : int
    level : float, optional
        An absolute loss level instead of a rise (only when asked for).
    norm, ignore, seed
        The directions (:func:`lossatlas.space.make_directions`; filter-normalized by default).
    split : {"train", "test"}

    Examples
    --------
    >>> basin_volume(f, theta, threshold=0.1, radius=0.25)
    0.85
    """
    how = basin_settings(threshold, level)
    radius = _number("radius", radius)
    x = resolve_theta(f, theta)
    D = torch.stack(make_directions(f.space, x, positive_int("directions", directions), norm, ignore, seed))
    loss = _losses(f, torch.cat([x.unsqueeze(0), x + radius * D]), split)
    inside = np.nan_to_num(loss[1:], nan=np.inf) <= _targets(float(loss[0]), how)
    return float(np.mean(inside))


def basin_radius(
    f, theta=None, threshold: float = 0.1, directions: int = 20, *, level: float | None = None,
    max_radius: float = 1.0, probes: int = 4, tol: float = 0.01, norm="filter", ignore="biasbn", seed: int = 0,
    split: str = "train",
) -> dict:
    """Distance along random filter-normalized directions at which the loss first rises by
    ``threshold`` above the minimum's own loss (Huang et al. 2019's ray estimate of basin size).

    Each direction is scanned outward at ``max_radius * k / probes`` (k = 1 ... probes); the first
    probe at or above ``f(theta) + threshold`` (or a non-finite loss) brackets the crossing, and
    bisection narrows it to ``tol``. A crossing that dips back below between two probes is not
    seen (the scan's resolution is ``max_radius / probes``). A direction that never rises by
    ``threshold`` within ``max_radius`` is *censored*: it counts as ``max_radius``, so the mean
    is then a lower bound, and ``censored`` says how many.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The minimum (default ``f.origin``).
    threshold : float
        The rise above ``f(theta)`` at which a ray leaves the basin.
    directions : int
    level : float, optional
        An absolute loss level instead of a rise (only when asked for; a minimum already above
        it has radius 0).
    max_radius : float
        Largest distance searched, in units of theta's filter norms.
    probes : int
        Points of the outward scan per direction.
    tol : float
        Width of the final bracket of each radius.
    norm, ignore, seed, split
        As :func:`basin_volume` (the same seed gives the same directions).

    Returns
    -------
    dict
        ``radii`` (array [directions]), ``mean``, ``std``, ``min``, ``max``, ``censored`` (rays
        still inside at ``max_radius``), ``loss`` (``f(theta)``), ``evaluations`` (points
        evaluated) and ``settings`` (every setting above, with ``basin_measure`` "rise" or
        "absolute").

    Examples
    --------
    >>> r = basin_radius(f, theta, threshold=0.1, directions=20)
    >>> r["mean"], r["std"], r["censored"]
    """
    how = basin_settings(threshold, level)
    max_radius, tol = _number("max_radius", max_radius), _number("tol", tol)
    probes = positive_int("probes", probes)
    n = positive_int("directions", directions)
    x = resolve_theta(f, theta)
    D = torch.stack(make_directions(f.space, x, n, norm, ignore, seed))
    base = float(_losses(f, x.unsqueeze(0), split)[0])
    target = _targets(base, how)
    evaluations = 1

    def outside(r: np.ndarray, rows: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        steps = torch.as_tensor(r, dtype=x.dtype, device=x.device).unsqueeze(1)
        loss = _losses(f, x + steps * D[torch.as_tensor(rows, device=x.device)], split)
        evaluations += len(rows)
        return ~(np.nan_to_num(loss, nan=np.inf) < target)

    lo, hi = np.zeros(n), np.full(n, np.nan)
    if base >= target:  # only with an absolute level: the minimum is already above it
        hi[:] = 0.0
    for k in range(1, probes + 1):
        open_ = np.flatnonzero(np.isnan(hi))
        if open_.size == 0:
            break
        r = max_radius * k / probes
        out = outside(np.full(open_.size, r), open_)
        hi[open_[out]] = r
        lo[open_[~out]] = r
    censored = np.isnan(hi)
    active = np.flatnonzero(~censored & (hi > 0))
    while active.size and np.max(hi[active] - lo[active]) > tol:
        mid = 0.5 * (lo[active] + hi[active])
        out = outside(mid, active)
        hi[active[out]], lo[active[~out]] = mid[out], mid[~out]
        active = active[hi[active] - lo[active] > tol]
    radii = np.where(censored, max_radius, 0.5 * (lo + np.nan_to_num(hi, nan=max_radius)))
    radii[~censored & (hi == 0)] = 0.0
    settings = {**how, "directions": n, "max_radius": max_radius, "probes": probes, "tol": tol,
                "norm": str(getattr(norm, "value", norm)),
                "ignore": ignore if ignore is None or isinstance(ignore, str) else list(ignore),
                "seed": int(seed), "split": split}
    return {"radii": radii, "mean": float(radii.mean()), "std": float(radii.std(ddof=1)) if n > 1 else 0.0,
            "min": float(radii.min()), "max": float(radii.max()), "censored": int(censored.sum()), "loss": base,
            "evaluations": evaluations, "settings": settings}


def plane_volume(ds, threshold: float = 0.1, variable: str = "loss", *, rise: bool = True) -> float:
    """Share of a loss plane's cells (e.g. :func:`lossatlas.plane`) whose loss rises at most
    ``threshold`` above the centre's (``rise=False``: at most ``threshold`` as an absolute level).

    Examples
    --------
    >>> plane_volume(la.plane(f, theta, dirs, span=1.0, steps=31), threshold=0.1)
    """
    from .grids import center_value

    require(variable in getattr(ds, "data_vars", {}), f"the dataset has no {variable!r} variable")
    values = np.asarray(ds[variable].values, dtype=np.float64)
    level = float(threshold)
    if rise:
        centre = center_value(ds, variable)
        require(centre is not None and np.isfinite(centre),
                "the plane has no computed centre cell (x = y = 0) to measure a rise from: use an odd number of "
                "steps on a symmetric span, or rise=False for an absolute level")
        level += float(centre)
    return float(np.mean(np.nan_to_num(values, nan=np.inf) <= level))

"""The loss barrier of a path between two minima, as the literature defines it.

The barrier of a path theta(t), t in [0, 1], from theta(0) = theta_a to theta(1) = theta_b is

    B = max_{t in [0, 1]} L(theta(t)) - ((1 - t) L(theta_a) + t L(theta_b))

(Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"; Entezari et
al. 2022; Ainsworth et al. 2023, "Git Re-Basin"): the largest rise of the loss above the chord
between the two ends. A path that runs downhill from a poor minimum to a good one has B = 0, and
so does a path that lies below its chord. *Why not "highest loss minus the mean of the ends":*
that measure reports a barrier of half the ends' difference on a path that falls the whole way.

The saddle above the higher end, ``max_t L(t) - max(L(0), L(1))``, is kept as a second, named
number (``saddle_height``): what a walk from either end must climb. Only ``t`` in [0, 1] counts;
points of an interpolation extrapolated beyond the two models never enter either number.
"""

from __future__ import annotations

import numpy as np

__all__ = ["barrier_stats", "path_barriers"]

# t values within this of 0 or 1 are the two models themselves (grids hold them exactly).
_ENDS_TOL = 1e-9


def barrier_stats(t, loss) -> dict[str, float]:
    """The barrier of a path sampled at ``t`` with losses ``loss``, over ``t`` in [0, 1].

    Parameters
    ----------
    t : array [n]
        The path's own parameter; must hold 0 and 1 (the two ends) exactly.
    loss : array [n]
        The loss at each ``t``; NaN (a diverged point) is ignored by the maxima and counted.

    Returns
    -------
    dict
        ``barrier`` (max over t of the rise above the chord; never below 0 at the ends),
        ``saddle_t`` (where it lies), ``saddle_height`` (highest loss minus the higher end),
        ``start``, ``end`` (L(0), L(1)) and ``nan_points`` (non-finite losses in [0, 1]).
        Every number is NaN when the path holds no t = 0 or t = 1, or an end is not finite.

    Examples
    --------
    >>> barrier_stats([0, 0.5, 1], [1.0, 0.6, 0.2])["barrier"]        # downhill: no barrier
    0.0
    >>> round(barrier_stats([0, 0.5, 1], [0.2, 1.0, 0.2])["barrier"], 6)
    0.8
    """
    t = np.asarray(t, dtype=np.float64).ravel()
    loss = np.asarray(loss, dtype=np.float64).ravel()
    if t.shape != loss.shape:
        raise ValueError(f"t has {t.size} points but loss has {loss.size}")
    inside = (t >= -_ENDS_TOL) & (t <= 1 + _ENDS_TOL)
    t, loss = t[inside], loss[inside]
    nan = float("nan")
    out = {"barrier": nan, "saddle_t": nan, "saddle_height": nan, "start": nan, "end": nan,
           "nan_points": int((~np.isfinite(loss)).sum())}
    i0 = np.flatnonzero(np.abs(t) <= _ENDS_TOL)
    i1 = np.flatnonzero(np.abs(t - 1) <= _ENDS_TOL)
    if i0.size == 0 or i1.size == 0:
        return out
    l0, l1 = float(loss[i0[0]]), float(loss[i1[0]])
    out["start"], out["end"] = l0, l1
    finite = np.isfinite(loss)
    if not (np.isfinite(l0) and np.isfinite(l1)):
        return out
    rise = np.where(finite, loss - ((1 - t) * l0 + t * l1), -np.inf)
    top = int(np.argmax(rise))
    out["barrier"] = float(max(rise[top], 0.0))
    out["saddle_t"] = float(t[top])
    out["saddle_height"] = float(np.max(np.where(finite, loss, -np.inf)) - max(l0, l1))
    return out


def path_barriers(ds) -> dict[str, float]:
    """``barrier``, ``saddle_height`` and ``saddle_t`` (and ``test_barrier``, ``test_saddle_height``)
    of a path dataset (:func:`lossatlas.connect`, or a stored ``connect_*.zarr``).

    The dataset's own attrs when it was computed under the definition of
    :func:`barrier_stats` (its attrs hold ``saddle_height``); otherwise, for a path stored by an
    older lossatlas (whose ``barrier`` was the highest loss minus the mean of the ends), the
    numbers recomputed from its stored losses, so no old barrier is ever shown as a new one.

    Examples
    --------
    >>> path_barriers(la.RunDir("runs/pair").open("connect_linear"))["barrier"]   # doctest: +SKIP
    """
    attrs = dict(getattr(ds, "attrs", {}))
    if "saddle_height" in attrs:
        keys = ("barrier", "saddle_height", "saddle_t", "test_barrier", "test_saddle_height")
        return {k: float(attrs[k]) for k in keys if k in attrs}
    out: dict[str, float] = {}
    t = np.asarray(ds["t"].values, dtype=np.float64)
    for prefix in ("", "test_"):
        if f"{prefix}loss" in ds:
            stats = barrier_stats(t, ds[f"{prefix}loss"].values)
            out[f"{prefix}barrier"], out[f"{prefix}saddle_height"] = stats["barrier"], stats["saddle_height"]
            if not prefix:
                out["saddle_t"] = stats["saddle_t"]
    return out

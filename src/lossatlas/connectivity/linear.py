"""The straight path between two minima (Goodfellow et al.'s 1-D interpolation)."""

from __future__ import annotations

import torch

from .._errors import positive_int
from ..grids import line_axis
from .path import check_endpoints, endpoint_settings, path_dataset


def linear_path(f, theta_a, theta_b, *, points: int = 61, progress=False):
    """Loss and metrics along ``(1 - t) theta_a + t theta_b`` for ``t`` in [0, 1].

    Parameters
    ----------
    f : Landscape
        With ``bn="recompute"`` (or ``"batch"``) for models with batch norm.
    theta_a, theta_b : Tensor
        The two minima.
    points : int
        Values of ``t`` (evenly spaced, both ends included).
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per point.

    Returns
    -------
    xarray.Dataset
        Over ``t``: ``loss`` (and ``accuracy``, ``test_*`` when ``f`` has them); attrs
        ``barrier`` (the largest rise above the chord between the ends, :func:`.barrier.barrier_stats`),
        ``saddle_height`` (highest loss above the higher end), ``saddle_t``, ``settings``.

    Examples
    --------
    >>> ds = linear_path(f, theta_a, theta_b)
    >>> ds.attrs["barrier"]
    """
    a, b = check_endpoints(f, theta_a, theta_b)
    points = positive_int("points", points, minimum=2)
    t = line_axis(0.0, 1.0, points)

    def at(i, j):
        tt = torch.as_tensor(t[i:j], dtype=a.dtype, device=a.device).unsqueeze(1)
        return (1 - tt) * a + tt * b

    settings = {"method": "linear", "points": points, **endpoint_settings(f, a, b)}
    return path_dataset(f, t, at, "linear", settings, progress=progress)

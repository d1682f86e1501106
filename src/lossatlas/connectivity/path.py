"""A path between two minima evaluated on a landscape: the dataset every method returns."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .._errors import require
from ..progress import progress_bar
from .barrier import barrier_stats

# Points evaluated per call of Landscape.evaluate (a [chunk, P] block in memory at a time).
CHUNK = 16


def check_endpoints(f, theta_a, theta_b) -> tuple[torch.Tensor, torch.Tensor]:
    """Both minima as checked vectors on the landscape's device, and the batch-norm refusal.

    A model with batch norm evaluated with its running statistics (``bn="eval"``) would judge
    every point of the path by the statistics of the model the landscape was built from, so
    not even the far end would match its minimum.
    """
    for name, theta in (("theta_a", theta_a), ("theta_b", theta_b)):
        require(isinstance(theta, torch.Tensor), f"{name} must be a torch.Tensor, got {type(theta).__name__}")
        f.space.check_vector(theta, name)
    bn = getattr(getattr(f, "bn", None), "value", getattr(f, "bn", None))
    require(
        not (getattr(f, "has_bn", False) and bn == "eval"),
        "the model has batch norm: build the Landscape with bn='recompute' so that every point "
        "on the path is evaluated with batch statistics of its own",
    )
    dev, dt = f.origin.device, f.origin.dtype
    return theta_a.detach().to(dev, dt), theta_b.detach().to(dev, dt)


def path_dataset(f, t: np.ndarray, points: Callable[[int, int], torch.Tensor], method: str,
                 settings: dict, extra: dict | None = None, progress=False):
    """Evaluate the path at ``t`` into a dataset over ``t``; ``points(i, j)`` builds the
    parameter vectors of ``t[i:j]`` as a [j - i, P] block (so only a chunk is in memory).

    ``attrs["barrier"]`` is the standard barrier (:func:`.barrier.barrier_stats`: the largest
    rise of the loss above the chord between the ends), ``saddle_t`` where it lies and
    ``saddle_height`` the highest loss above the higher end (``test_barrier`` and
    ``test_saddle_height`` likewise when ``f`` has test data); NaN losses are kept, ignored by
    the maxima and counted in ``nan_points``.
    """
    import xarray as xr

    t = np.asarray(t, dtype=np.float64)
    columns: dict[str, list] = {}
    with progress_bar(progress, int(t.size), f"path of {t.size} points") as advance:
        for start in range(0, t.size, CHUNK):
            stop = min(start + CHUNK, t.size)
            values = f.evaluate(points(start, stop))
            for key, v in values.items():
                columns.setdefault(key, []).append(v.double().cpu().numpy())
            advance(stop - start)
    data = {key: ("t", np.concatenate(v)) for key, v in columns.items()}
    attrs = {"method": method, "settings": settings}
    for prefix in ("", "test_"):
        key = f"{prefix}loss"
        if key in data:
            stats = barrier_stats(t, data[key][1])
            attrs[f"{prefix}barrier"] = stats["barrier"]
            attrs[f"{prefix}saddle_height"] = stats["saddle_height"]
            if not prefix:
                attrs["saddle_t"] = stats["saddle_t"]
                attrs["nan_points"] = stats["nan_points"]
    if extra:
        data.update(extra.pop("data", {}))
        attrs.update(extra)
    return xr.Dataset(data, coords={"t": t}, attrs=attrs)


def endpoint_settings(f, a: torch.Tensor, b: torch.Tensor) -> dict:
    """Settings that pin a path to its ends and data."""
    data = getattr(f, "fingerprint", None)
    return {
        "theta_a": f.space.fingerprint(a),
        "theta_b": f.space.fingerprint(b),
        "landscape": data if isinstance(data, str) else None,
    }

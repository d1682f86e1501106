"""Direction files: directions saved once and reused, so that two minima or two checkpoints are
drawn on the same directions (``--dir_file`` in Li et al.'s code). A file holds the directions as
one [n, P] tensor, the parameter names they belong to and the settings that drew them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .._errors import InputError, require
from .files import atomic_torch_save, json_safe


def write_directions(path, dirs: Sequence, names: Sequence[str], **meta: Any) -> Path:
    """Save directions (1-D tensors of one length) with the parameter names of their space.

    Examples
    --------
    >>> write_directions("dirs.pt", dirs, names=ParamSpace(model).names, norm="filter", seed=0)
    """
    import torch

    stacked = torch.stack([d.detach().cpu() for d in dirs])
    return atomic_torch_save(path, {"directions": stacked, "names": list(names), "size": int(stacked.shape[1]),
                                    "meta": json_safe(meta)})


def read_directions(path, names: Sequence[str] | None = None, size: int | None = None):
    """``(list of 1-D tensors, meta)`` from a file of :func:`write_directions`, checked against
    the parameter ``names`` and ``size`` of the model they are for."""
    import torch

    path = Path(path)
    require(path.is_file(), f"directions file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user to fix
        raise InputError(f"cannot read the directions file {path}: {exc}") from exc
    require(isinstance(obj, dict) and "directions" in obj, f"{path} is not a directions file (no 'directions' tensor)")
    dirs = obj["directions"]
    if size is not None:
        require(int(dirs.shape[1]) == int(size), f"{path} holds directions of {int(dirs.shape[1])} parameters; the model has {size}")
    if names is not None and obj.get("names") is not None:
        require(list(obj["names"]) == list(names), f"{path} was saved for a model with other parameter names; "
                "directions can be reused only on one architecture")
    return list(dirs.unbind(0)), dict(obj.get("meta") or {})

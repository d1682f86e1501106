"""Checkpoint files: model state dicts read safely (``torch.load(weights_only=True)``) and written
atomically. It knows file formats, not models: matching keys to a model is ``models``' job."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .._errors import InputError, require
from .files import atomic_torch_save, json_safe


def read_checkpoint(path) -> dict:
    """A state dict from a checkpoint file, loaded with ``weights_only=True`` (no code runs).

    Accepts a bare state dict or a dict holding one under ``"state_dict"`` or ``"model"``.
    """
    import torch

    path = Path(path)
    require(path.is_file(), f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user to fix
        raise InputError(
            f"cannot load {path} with torch.load(weights_only=True): {exc}. Save plain tensors "
            "(torch.save(model.state_dict(), path)); pickled modules are refused for safety"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        if all(hasattr(v, "shape") for v in obj.values()):
            return dict(obj)
    raise InputError(f"{path} holds no state dict (a mapping of parameter names to tensors)")


def write_checkpoint(path, state_dict: Mapping, **extra: Any) -> Path:
    """Save ``{"state_dict": ..., **extra}`` atomically (extra values must be plain types)."""
    return atomic_torch_save(path, {"state_dict": dict(state_dict), **json_safe(extra)})

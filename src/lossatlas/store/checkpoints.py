"""Checkpoint files: model state dicts read safely and written atomically.

It knows file formats, not models: :func:`read_checkpoint` returns the state dict as the file
holds it (keys untouched), and matching those keys to a model, wrapper prefixes included, is
:func:`lossatlas.models.load_checkpoint`'s job.

Formats read: ``torch.save`` files (loaded with ``torch.load(weights_only=True)``, so no code in
the file runs) holding a bare state dict or one nested under :data:`STATE_KEYS` beside other
training state (optimizer, epoch, ...), as Lightning and most training scripts save them; and
``.safetensors`` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .._errors import InputError, require
from .files import torch_load_failure, atomic_torch_save, json_safe

#: Keys under which training scripts nest the model's state dict, tried in this order.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")

# How deep to look for nested state dicts ({"model": {"state_dict": ...}} is two levels).
_MAX_DEPTH = 3


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: 8 bytes of little-endian header length, then a JSON header."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise InputError(
            f"{path} is a safetensors file; reading it needs the package 'safetensors' "
            "(`pip install safetensors`)"
        ) from exc
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user to fix
        raise InputError(f"cannot read the safetensors file {path}: {exc}") from exc


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_state_dict(obj: Any, depth: int = 0) -> dict | None:
    """The first mapping of names to tensors: ``obj`` itself or one nested under STATE_KEYS."""
    if not isinstance(obj, Mapping):
        return None
    if _is_state_dict(obj):
        return dict(obj)
    if depth < _MAX_DEPTH:
        for key in STATE_KEYS:
            found = _find_state_dict(obj.get(key), depth + 1) if key in obj else None
            if found is not None:
                return found
    return None


def read_checkpoint(path) -> dict:
    """The state dict (parameter and buffer names to CPU tensors) of a checkpoint file.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file, or a ``torch.save`` file holding a bare state dict or a dict
        with one under ``"state_dict"``, ``"model_state_dict"``, ``"model"`` or ``"net"``
        (other entries, such as optimizer state or the epoch, are ignored).

    Returns
    -------
    dict
        The state dict with its keys as stored (``module.``, ``_orig_mod.`` or a Lightning
        module's attribute prefix included).

    Raises
    ------
    InputError
        If the file is missing, cannot be loaded with ``weights_only=True`` (a pickled module,
        for instance) or holds no state dict.

    Examples
    --------
    >>> state = read_checkpoint("resnet20.pt")
    >>> sorted(state)[:2]
    ['bn1.bias', 'bn1.num_batches_tracked']
    """
    import torch

    path = Path(path)
    require(path.is_file(), f"checkpoint file not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user to fix
        raise InputError(torch_load_failure(path, exc, "Save plain tensors (torch.save(model.state_dict(), path)); "
                                            "pickled modules are refused for safety")) from exc
    state = _find_state_dict(obj)
    if state is None:
        held = f" (it holds {sorted(map(str, obj))[:10]})" if isinstance(obj, Mapping) else ""
        raise InputError(
            f"{path} holds no state dict (a mapping of parameter names to tensors, bare or under "
            f"one of {list(STATE_KEYS)}){held}"
        )
    return state


def write_checkpoint(path, state_dict: Mapping, **extra: Any) -> Path:
    """Save ``{"state_dict": ..., **extra}`` atomically (extra values must be plain types).

    Examples
    --------
    >>> write_checkpoint("net.pt", model.state_dict(), epoch=3)
    """
    return atomic_torch_save(path, {"state_dict": dict(state_dict), **json_safe(extra)})

"""What the adapters share: the recorder's options, checked when the callback is made, and
metrics read as plain numbers."""

from __future__ import annotations

import numbers
from typing import Any, Mapping

from .._errors import InputError, positive_int, require


def missing(package: str, extra: str) -> InputError:
    return InputError(f"this adapter needs the package {package!r}: pip install 'lossatlas[{extra}]'")


def options(out, every_steps, every_epochs, source, **more) -> dict:
    """The Recorder's arguments, checked now (before training starts)."""
    require(out is not None, "out must be a run directory path")
    if every_steps is not None:
        positive_int("every_steps", every_steps)
    if every_epochs is not None:
        positive_int("every_epochs", every_epochs)
    return dict(out=out, every_steps=every_steps, every_epochs=every_epochs, source=source, **more)


def scalars(metrics: Mapping[str, Any]) -> dict:
    """The one-number entries of ``metrics`` (tensors of one element, ints, floats), by name;
    names with ``/`` (a logger's namespaces) keep it."""
    import torch

    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[str(k)] = v.detach()
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out

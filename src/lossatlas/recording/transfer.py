"""Copying a snapshot of the weights to the host without stalling training more than once.

On a GPU the flat vector is gathered on the device (ordered on the stream before the next
optimizer step, so later updates cannot change it) and copied into a pinned host buffer with a
non-blocking copy; an event marks its end. Training goes on at once; the copy is waited for only
when the snapshot is read, which the recorder does when it takes the next snapshot, long after
the copy finished. Read-out buffers go back to a pool, so the recorder, reading each snapshot
before starting the next copy, pins one buffer for the whole run. On a CPU the copy is a plain
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class CopyPlan:
    """How a device tensor reaches the host: into pinned memory, and without blocking."""

    pin: bool
    non_blocking: bool


def copy_plan(device_type: str) -> CopyPlan:
    """The copy for tensors on a device of this type: pinned and non-blocking from CUDA (the
    copy overlaps training), plain from anything else (a CPU tensor needs no transfer; pinned
    memory serves only CUDA transfers).

    Examples
    --------
    >>> copy_plan("cuda")
    CopyPlan(pin=True, non_blocking=True)
    >>> copy_plan("cpu")
    CopyPlan(pin=False, non_blocking=False)
    """
    fast = str(device_type) == "cuda"
    return CopyPlan(pin=fast, non_blocking=fast)


def _allocate(n: int, dtype: torch.dtype, pin: bool) -> torch.Tensor:
    return torch.empty(n, dtype=dtype, pin_memory=pin)


def _cuda_event():
    event = torch.cuda.Event()
    event.record()
    return event


class Pending:
    """One snapshot on its way to the host; :meth:`numpy` waits for it (once) and reads it."""

    def __init__(self, buffer: torch.Tensor, event=None, release: Callable[[torch.Tensor], None] | None = None):
        self._buffer, self._event, self._release = buffer, event, release
        self._array: np.ndarray | None = None

    def numpy(self) -> np.ndarray:
        if self._array is None:
            if self._event is not None:
                self._event.synchronize()
            if self._release is None:  # a host tensor of its own
                self._array = self._buffer.numpy()
            else:  # a pooled buffer: copied out, then handed back for the next snapshot
                self._array = self._buffer.numpy().copy()
                self._release(self._buffer)
            self._buffer = None
        return self._array


class HostCopier:
    """Copies flat device vectors of ``n`` entries to the host by ``plan``.

    Parameters
    ----------
    n : int
    dtype : torch.dtype
    plan : CopyPlan
        From :func:`copy_plan` of the vectors' device type.
    allocate : callable, optional
        ``allocate(n, dtype, pin)``: a host buffer (default ``torch.empty(..., pin_memory=pin)``).
    event : callable, optional
        Records a marker after the copy and returns it (``.synchronize()`` waits for it); by
        default a CUDA event when ``plan.non_blocking``, else none. Injected by the tests, which
        run the CUDA branch on a machine without one.

    Examples
    --------
    >>> copier = HostCopier(3, torch.float32, copy_plan("cpu"))
    >>> copier.start(torch.ones(3)).numpy()
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, n: int, dtype: torch.dtype, plan: CopyPlan, allocate: Callable | None = None,
                 event: Callable | None = None):
        self.n, self.dtype, self.plan = n, dtype, plan
        self._allocate = allocate or _allocate
        self._event = event if event is not None else (_cuda_event if plan.non_blocking else None)
        self._free: list[torch.Tensor] = []
        self.allocated = 0

    def _buffer(self) -> torch.Tensor:
        if self._free:
            return self._free.pop()
        self.allocated += 1
        return self._allocate(self.n, self.dtype, self.plan.pin)

    def start(self, flat: torch.Tensor) -> Pending:
        """Begin copying ``flat`` (a fresh vector the caller will not change) to the host."""
        if not self.plan.non_blocking:
            return Pending(flat.detach().cpu())
        buf = self._buffer()
        buf.copy_(flat.detach(), non_blocking=True)
        return Pending(buf, self._event(), self._free.append)

"""Where a landscape runs, and at which float32 precision.

``resolve_device`` turns ``device=`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``,
a ``torch.device`` or None) into a ``torch.device``, refusing a device this machine lacks before
any work starts.

``float32_precision`` sets TF32 for the duration of one call. TF32 (NVIDIA's 19-bit matmul
format, about 1e-3 relative error) makes float32 matmuls and convolutions several times faster on
Ampere and later GPUs. Torch's switches for it (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``) are process-wide, and cuDNN's is on by default; a landscape
with ``tf32=False`` must compute in full float32 whatever the rest of the process chose, and one
with ``tf32=True`` must not leave TF32 on behind it. So each call sets both switches on entry and
restores them on exit, and one process-wide condition variable keeps concurrent calls consistent:
calls asking for the same precision run together (the first saves the switches, the last
restores them), a call asking for the other precision waits until they are done.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch

from .._errors import InputError, require


def _no(kind: str, reason: str) -> InputError:
    return InputError(f"device={kind!r} but {reason}; use device='cpu' or device='auto' (CUDA when available)")


def resolve_device(device=None, model: torch.nn.Module | None = None) -> torch.device:
    """The ``torch.device`` that ``device`` names, checked against this machine.

    Parameters
    ----------
    device : None, "auto", "cpu", "cuda", "cuda:N", "mps" or torch.device
        None: the device of ``model``'s parameters (the CPU without a model or parameters).
        ``"auto"``: CUDA when available, else the CPU.
    model : nn.Module, optional

    Raises
    ------
    InputError
        For a device this machine does not have (e.g. ``"cuda"`` without CUDA).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        p = next(model.parameters(), None) if model is not None else None
        return p.device if p is not None else torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip().lower())
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise _no(str(device), f"CUDA is not available here: {why} (torch {torch.__version__})")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise _no(str(device), f"this machine has {count} CUDA device(s), numbered from 0")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise _no(str(device), "the Apple MPS backend is not available here")
    else:
        require(dev.type == "cpu", f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return dev


def prefers_vmap(device: torch.device) -> bool:
    """Whether ``strategy="auto"`` starts from the vmap engine on ``device``: off the CPU, where
    one large kernel per layer beats a loop of small ones (on a CPU the loop is faster,
    ``bench/surface.py``)."""
    return device.type != "cpu"


@dataclass(frozen=True)
class EnginePlan:
    """How a Landscape evaluates on its device (see :func:`choose_engines`)."""

    strategy: str  # "loop" or "vmap"
    compile: bool | str  # True, False or "auto" (compile once eager time is spent)
    workers: int  # threads of the loop engine
    tune_allocator: bool  # raise glibc's malloc thresholds (CPU only)


def choose_engines(device: torch.device, strategy: str = "auto", *, recompute: bool = False, has_conv: bool = False,
                   compile="auto", workers="auto", threads: int = 1) -> EnginePlan:
    """The engines a Landscape uses on ``device``: every device-dependent choice in one place,
    so each branch (CUDA included) is tested on any machine.

    - ``strategy="auto"``: vmap off the CPU (:func:`prefers_vmap`), the loop on the CPU and
      whenever batch-norm statistics are recomputed point by point;
    - ``compile="auto"``: only a convolutional model's single-worker loop on the CPU compiles
      (once enough eager time is spent);
    - ``workers="auto"``: the CPU loop of a convolutional model uses ``threads`` workers
      (measured in ``bench/surface.py``: an MLP's kernels are too short to gain), else one.

    Examples
    --------
    >>> choose_engines(torch.device("cuda"), has_conv=True)
    EnginePlan(strategy='vmap', compile=False, workers=1, tune_allocator=False)
    >>> choose_engines(torch.device("cpu"), has_conv=True, threads=2).workers
    2
    """
    cpu = device.type == "cpu"
    if strategy == "auto":
        strategy = "vmap" if prefers_vmap(device) and not recompute else "loop"
    if strategy == "vmap" and recompute:
        raise InputError("bn='recompute' needs strategy='loop' (statistics are re-estimated point by point)")
    loop = strategy == "loop"
    if isinstance(compile, str):
        require(compile == "auto", f"compile must be True, False or 'auto', got {compile!r}")
        compile = "auto" if (has_conv and loop and cpu) else False
    else:
        compile = bool(compile)
    if workers == "auto":
        # Measured (bench/surface.py, 2-core CPU): a small CNN's plane went 1.05-1.6x faster
        # in two workers, an MLP's plane on digits slower (its kernels are too short for
        # threads to gain over the GIL), so "auto" uses workers for convolutional models.
        workers = threads if (loop and cpu and has_conv and compile is not True) else 1
    require(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
            f"workers must be 'auto' or an integer >= 1, got {workers!r}")
    if workers > 1:
        require(loop, "workers > 1 needs strategy='loop' (vmap batches points itself)")
        require(compile is not True, "compile=True runs one compiled worker; pass workers=1 with it (or compile=False)")
        # Eager evaluation in several workers was measured as fast as one compiled worker on
        # a 2-core CPU (bench/surface.py), without the compile time: "auto" stays eager.
        compile = False
    return EnginePlan(strategy, compile, int(workers), cpu)


class _Precision:
    """Process-wide state of :func:`float32_precision`."""

    cond = threading.Condition()
    holders = 0
    tf32: bool | None = None
    saved: tuple[bool, bool] | None = None
    local = threading.local()


def _switches() -> tuple[bool, bool]:
    return bool(torch.backends.cuda.matmul.allow_tf32), bool(torch.backends.cudnn.allow_tf32)


def _set(matmul: bool, cudnn: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def float32_precision(device: torch.device, tf32: bool):
    """Within the block, float32 matmuls and convolutions on CUDA use TF32 exactly when ``tf32``.

    A no-op off CUDA. Reentrant in one thread for the same setting; asking for the other setting
    from inside a block refuses (it could only wait for itself).

    Examples
    --------
    >>> with float32_precision(torch.device("cuda"), tf32=False):
    ...     y = x @ w  # full float32 even if the process allows TF32
    """
    if device.type != "cuda":
        yield
        return
    state = _Precision
    mine = getattr(state.local, "tf32", None)
    if mine is not None and mine != tf32:
        raise InputError(f"a Landscape with tf32={tf32} was called from inside a call of one with tf32={mine}")
    with state.cond:
        while state.holders and state.tf32 != tf32:
            state.cond.wait()
        if state.holders == 0:
            state.saved, state.tf32 = _switches(), tf32
            _set(tf32, tf32)
        state.holders += 1
    depth = getattr(state.local, "depth", 0)
    state.local.tf32, state.local.depth = tf32, depth + 1
    try:
        yield
    finally:
        state.local.depth = depth
        if depth == 0:
            state.local.tf32 = None
        with state.cond:
            state.holders -= 1
            if state.holders == 0:
                _set(*state.saved)
                state.tf32 = state.saved = None
                state.cond.notify_all()

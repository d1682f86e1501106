"""glibc's malloc thresholds, raised so that evaluation loops reuse their freed buffers.

Evaluating a landscape allocates and frees the same activation buffers thousands of times. By
default glibc serves large buffers with fresh ``mmap`` calls and trims the top of its heap after
large frees, so every forward pass faults its pages in (and zeroes them) again; on a loaded
2-core machine that made evaluation loops 1.2-6x slower (``bench/surface.py``).
"""

from __future__ import annotations

import os
import sys
import threading

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ALLOCATOR_BYTES = 1 << 30
_GLIBC_MMAP_CAP = 32 << 20  # older glibc refuse mmap thresholds above HEAP_MAX_SIZE / 2
_OFF = ("0", "false", "no", "off")

_tuned = False
_lock = threading.Lock()


def tune_allocator(not_chosen: tuple[str, ...] = ()) -> bool:
    """Keep glibc's malloc from handing large freed buffers back to the kernel.

    Raises glibc's mmap and trim thresholds (``mallopt``) to 1 GiB, so freed buffers are
    reused; the process then keeps up to its peak memory instead of returning it.

    The setting is process-wide and stays. It does nothing, and returns False, off Linux/glibc,
    when the environment variable ``LOSSATLAS_TUNE_ALLOCATOR`` is ``0``, or when the user chose
    thresholds through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``. It is safe to
    call repeatedly; :class:`~lossatlas.landscape.Landscape` calls it once when built on a CPU
    unless given ``tune_allocator=False``.

    ``not_chosen`` names threshold variables that are set but were not the user's choice: Dask's
    nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
    dynamic mmap threshold, so each activation buffer above 128 KiB was a fresh ``mmap``; a worker
    then spent 2.4x the driver's CPU time on the same forward pass (ReLU and pooling 4x). The
    worker process passes that variable here when it holds Dask's own value.

    Returns
    -------
    bool
        Whether the thresholds are raised.

    Examples
    --------
    >>> tune_allocator()  # on Linux with glibc
    True
    """
    global _tuned
    with _lock:
        if _tuned:
            return True
        if (
            not sys.platform.startswith("linux")
            or os.environ.get("LOSSATLAS_TUNE_ALLOCATOR", "1").strip().lower() in _OFF
            or any(k in os.environ and k not in not_chosen for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        ):
            return False
        try:
            import ctypes
            import platform

            if platform.libc_ver()[0] != "glibc":
                return False
            mallopt = ctypes.CDLL("libc.so.6").mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError, ValueError):
            return False
        if not mallopt(_M_MMAP_THRESHOLD, _ALLOCATOR_BYTES) and not mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_CAP):
            return False
        _tuned = bool(mallopt(_M_TRIM_THRESHOLD, _ALLOCATOR_BYTES))
        return _tuned

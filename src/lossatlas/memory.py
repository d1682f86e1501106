"""Memory there is: the bytes a process may still use, on the CPU or on a CUDA device.

The bottom floor (no lossatlas imports), shared by everything that sizes work from free memory:
embeddings holding weights, the vmap engine's chunks, grids, and the gradient graphs that
Hessian-vector products keep.
"""

from __future__ import annotations

import os

FALLBACK_BYTES = 4 * 2**30  # when the system says nothing


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, capped by a cgroup limit when there is one.

    Examples
    --------
    >>> available_memory() > 0
    True
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = FALLBACK_BYTES
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(avail), 0)


def device_free_memory(device) -> int:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on CUDA, :func:`available_memory`
    elsewhere.

    Examples
    --------
    >>> device_free_memory("cpu") > 0
    True
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()

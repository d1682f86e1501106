"""How much of the machine an embedding may use: memory for weights held at once, worker threads,
and one BLAS thread for small dense problems."""

from __future__ import annotations

import os
from contextlib import nullcontext

from ..memory import available_memory

__all__ = [
    "MAX_AUTO_MEMORY",
    "MIN_AUTO_MEMORY",
    "ONE_THREAD_MAX_POINTS",
    "available_memory",
    "memory_budget",
    "threads_for",
    "usable_cpus",
]

# Bounds of the automatic budget for weights held at once when they come from a lazy store: a
# quarter of the memory available, within these limits.
MIN_AUTO_MEMORY = 2**30
MAX_AUTO_MEMORY = 16 * 2**30
# Up to this many points, the n x n steps after the Gram matrix (eigendecompositions, PHATE's
# diffusion and MDS, t-SNE's gradient) run on one BLAS/OpenMP thread. Measured on the 2-core
# reference machine while other processes ran: a 1,000 x 1,000 SVD took 0.2 s on one thread and
# 5-10 s on two (threads waiting on each other for a busy core), t-SNE of 240 points 1.7 s against
# 53 s; on an idle machine one thread costs at most the factor of two it forgoes, on work of a
# second or less.
ONE_THREAD_MAX_POINTS = 4096


def threads_for(n: int):
    """A context with one BLAS/OpenMP thread for an n x n problem small enough to gain nothing from more.

    Examples
    --------
    >>> with threads_for(100):
    ...     pass
    """
    if n > ONE_THREAD_MAX_POINTS:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def memory_budget(max_memory: int | None) -> int:
    """Bytes of weights to hold at once: ``max_memory``, or a quarter of :func:`available_memory`
    between :data:`MIN_AUTO_MEMORY` and :data:`MAX_AUTO_MEMORY`.

    Examples
    --------
    >>> memory_budget(2**20)
    1048576
    """
    if max_memory is not None:
        return int(max_memory)
    return int(min(max(available_memory() // 4, MIN_AUTO_MEMORY), MAX_AUTO_MEMORY))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one).

    Examples
    --------
    >>> usable_cpus() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)

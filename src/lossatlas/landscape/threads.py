"""Sharing torch's intra-op threads among worker threads without changing the process's count.

The loop strategy can evaluate points in W worker threads, each on its own copy of the model
(``workers=`` of :class:`~lossatlas.landscape.Landscape`). Each worker must then run its kernels
on ``T // W`` intra-op threads, T being torch's thread count, or the W workers oversubscribe the
cores.

How torch keeps the count: one process-wide value (``at::set_num_threads`` stores it), which a
thread copies into its own OpenMP setting the first time it runs a parallel kernel, and that
per-thread copy, which ``torch.get_num_threads()`` reads. ``torch.set_num_threads(n)`` sets both,
for the calling thread. Saving and restoring the count around each evaluation, as this package
once did, loses the process value as soon as two evaluations overlap: B saves the 1 that A set,
A restores T, B restores 1, and every thread started afterwards runs on one core.

So the split is a process-wide, reference-counted section (:func:`shared_intra_op`):

- one lock guards a count of the evaluations inside it;
- the first to enter records the process-wide value, read in a fresh thread (which copies it on
  first use; the caller's own copy may be stale), and the last to leave writes that value back;
- only the worker threads set their count (``T // W``, at the start of their block); the calling
  thread, which merely waits for them, keeps its own count untouched.

Nothing here can stop a user from calling ``torch.set_num_threads`` while an evaluation runs; the
value in effect when the first evaluation entered is the one restored.
"""

from __future__ import annotations

import contextlib
import threading

import torch


class _Section:
    lock = threading.Lock()
    active = 0
    process: int | None = None


def process_threads() -> int:
    """Torch's process-wide intra-op thread count (what a new thread starts with).

    Examples
    --------
    >>> process_threads() >= 1
    True
    """
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()), name="lossatlas-threads-probe")
    t.start()
    t.join()
    return seen[0]


def _restore_process(n: int) -> None:
    if torch.get_num_threads() == n:
        torch.set_num_threads(n)  # the caller's own count is already n: only the process value moves
    else:
        # set_num_threads also sets the calling thread's count: do it from a thread of no consequence.
        t = threading.Thread(target=torch.set_num_threads, args=(n,), name="lossatlas-threads-restore")
        t.start()
        t.join()


@contextlib.contextmanager
def shared_intra_op(workers: int):
    """Within the block, ``workers`` threads may each use ``T // workers`` intra-op threads.

    Yields the per-worker count; each worker thread calls :func:`use_threads` with it before its
    first kernel. On leaving the last overlapping block the process-wide count is ``T`` again.

    Examples
    --------
    >>> with shared_intra_op(2) as n:
    ...     futures = [pool.submit(work, n) for _ in range(2)]  # work() starts with use_threads(n)
    """
    s = _Section
    with s.lock:
        if s.active == 0:
            s.process = process_threads()
        s.active += 1
        per_worker = max(1, s.process // max(1, workers))
    try:
        yield per_worker
    finally:
        with s.lock:
            s.active -= 1
            if s.active == 0:
                _restore_process(s.process)
                s.process = None


def use_threads(n: int) -> None:
    """Set the calling (worker) thread's intra-op count to ``n`` if it is not already."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)

"""Independent work on a Dask cluster, behind the ``concurrent.futures.Executor`` interface.

The samplers (:func:`lossatlas.plane`, :func:`lossatlas.jump_retrain`,
:func:`lossatlas.curvature.convexity_map`) take any ``Executor``; they submit plain tasks and
collect them with ``as_completed``, and never import Dask. :class:`DaskExecutor` is the Executor
that sends those tasks to a cluster, so that:

- a model, data set or Landscape registered with :meth:`DaskExecutor.share` travels as a small
  :class:`~lossatlas.execute.worker.Rebuild` handle and is rebuilt once per worker process;
- a large tensor argument (a plane's centre and directions) is scattered to the workers once per
  call and then referred to by key, not pickled into every task. A scattered copy is reused only
  while the tensor is unchanged (same version counter, storage and shape: a stamp that costs half a
  microsecond, where hashing the contents of an 11M-parameter vector costs 70 ms) and only while a
  task that uses it is pending: once the last of them finishes the copy is released, on the driver
  and on the workers, so a tensor changed in place between two calls (even through ``.data`` or
  NumPy, which bypass the version counter) is always sent again;
- every task's pickled size is measured (:attr:`DaskExecutor.stats`);
- a task whose workers keep dying (Dask gives up after ``distributed.scheduler.allowed-failures``
  deaths, 3 by default) fails with :class:`WorkerLostError` naming the task's plain arguments
  (its coordinates), instead of Dask's bare ``KilledWorker``.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import threading
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._errors import InputError, positive_int, require
from .worker import THREADS_ENV, Rebuild, run_task

# Seconds to wait for a scheduler at an address before saying that none answers.
CONNECT_TIMEOUT = 10.0
# Tensor arguments at least this large are scattered once instead of pickled into each task.
SCATTER_BYTES = 4 * 1024


class WorkerLostError(RuntimeError):
    """A task killed every worker that ran it (Dask's ``allowed-failures`` was exhausted)."""


def _describe(fn, args, kwargs) -> str:
    """A short text of a task: its function and plain arguments (coordinates, seeds)."""
    import torch

    def one(v):
        if isinstance(v, Rebuild):
            return f"<{v.kind}>"
        if isinstance(v, torch.Tensor):
            return f"<tensor {tuple(v.shape)}>" if v.numel() > 8 else repr(v.tolist())
        if isinstance(v, np.ndarray):
            return np.array2string(v, threshold=12, precision=4, separator=",").replace("\n", "")
        if isinstance(v, (list, tuple)):
            return f"<{type(v).__name__} of {len(v)}>" if len(v) > 8 else "[" + ", ".join(one(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {one(x)}" for k, x in v.items()) + "}"
        text = repr(v)
        return text if len(text) <= 80 else text[:77] + "..."

    parts = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in kwargs.items()]
    return f"{getattr(fn, '__name__', fn)}({', '.join(parts)})"


class DaskExecutor(Executor):
    """An Executor on a Dask cluster: a new ``LocalCluster`` of worker processes, or an existing
    scheduler.

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes, one thread each (intra-op
        threads: ``threads`` per worker, default the CPU count divided among them).
    scheduler : str or distributed.Client, optional
        The address of a running scheduler (``tcp://host:8786``), a cluster object (such as a
        dask-jobqueue ``SLURMCluster``) or a ``Client``. An address that does not answer within
        ``timeout`` seconds is refused with :class:`InputError`.
    resources : dict, optional
        Worker resources every task asks for, e.g. ``{"GPU": 1}`` on a cluster of GPU workers
        started with ``--resources GPU=1``: one task per GPU at a time.
    threads : int, optional
        Intra-op threads of each local worker.
    timeout : float
        Seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT`).

    Examples
    --------
    >>> from lossatlas.execute import DaskExecutor
    >>> with DaskExecutor(workers=2) as ex:
    ...     f = ex.landscape(Source(model="mlp", data="digits", checkpoint="model.pt"))
    ...     ds = plane(f, steps=41, executor=ex, store="runs/demo")
    >>> ex.stats["payload_bytes_mean"]            # bytes pickled per task
    """

    def __init__(self, workers: int | None = None, scheduler=None, *, resources: dict | None = None,
                 threads: int | None = None, timeout: float | None = None):
        require(workers is None or scheduler is None,
                "give either workers= (start a local cluster) or scheduler= (use a running one), not both")
        require(workers is not None or scheduler is not None, "give workers= or scheduler=")
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            from .._errors import missing_extra

            raise missing_extra("a Dask cluster", "cluster") from None
        self.resources = dict(resources) if resources else None
        self._cluster = None
        self._own_client = True
        self._shared: dict[int, tuple[Any, Any]] = {}
        self._sent: dict[int, _Scattered] = {}
        self._batch = threading.local()
        self._lock = threading.Lock()
        self._payloads: list[int] = []
        self._scattered = 0
        self._t0 = time.perf_counter()
        timeout = CONNECT_TIMEOUT if timeout is None else float(timeout)
        if workers is not None:
            n = positive_int("workers", workers)
            per = threads or max(1, (os.cpu_count() or 1) // n)
            env = {THREADS_ENV: str(per), "OMP_NUM_THREADS": str(per), "MKL_NUM_THREADS": str(per)}
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                         env=env, silence_logs=40)
            self.client = Client(self._cluster, timeout=timeout)
        elif isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
        else:
            where = scheduler if isinstance(scheduler, str) else getattr(scheduler, "scheduler_address", scheduler)
            try:
                self.client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"no Dask scheduler answered at {where} within {timeout:g} s ({type(exc).__name__}); "
                                 "check the address, or start a scheduler there (dask scheduler, then dask worker "
                                 f"{where})") from None
        self.address = self.client.scheduler.address

    # -- what tasks refer to --------------------------------------------------------------
    def share(self, obj, handle: Rebuild):
        """Let tasks refer to ``obj`` by ``handle``: workers rebuild it once, nothing of it is pickled."""
        require(isinstance(handle, Rebuild), f"share needs a Rebuild handle, got {type(handle).__name__}")
        with self._lock:
            self._shared[id(obj)] = (obj, handle)
        return obj

    def landscape(self, source, **options):
        """Build a Landscape of ``source`` here and share it (workers rebuild the same one).

        ``options`` are those of :class:`~lossatlas.landscape.Landscape`, plus ``test``
        (default True: also the test split).

        Examples
        --------
        >>> f = ex.landscape(Source(model="mlp", data="digits", checkpoint="model.pt"), bn="eval")
        """
        from .worker import build_landscape

        model, data, device = source.build()
        f = build_landscape(model, data, device, options)
        return self.share(f, landscape_handle(source, data, f, options))

    def source(self, source):
        """Build ``(model, data, device)`` of ``source`` here and share the model and the data
        (workers rebuild both from the source, once each), e.g. for :func:`lossatlas.jump_retrain`.

        Examples
        --------
        >>> model, data, device = ex.source(Source(model="mlp", data="digits", checkpoint="model.pt"))
        >>> jump_retrain(model, data, executor=ex, store="runs/jr")
        """
        from ..space import ParamSpace

        model, data, device = source.build()
        shared = _portable(source.replace(data_fingerprint=data.fingerprint)).as_dict()
        space = ParamSpace(model)
        self.share(model, Rebuild("model", shared, expect={"center": space.fingerprint(space.vector(model))}))
        self.share(data, Rebuild("data", shared, expect={"data": data.fingerprint}))
        return model, data, device

    def _pack(self, value, used: list):
        """``value`` as a task carries it; the scattered copies it refers to are appended to ``used``."""
        import torch

        with self._lock:
            hit = self._shared.get(id(value))
        if hit is not None:
            return hit[1]
        if isinstance(value, torch.Tensor) and value.numel() * value.element_size() >= SCATTER_BYTES:
            stamp = _stamp(value)
            hold = getattr(self._batch, "held", None)
            with self._lock:
                sent = self._sent.get(id(value))
                if sent is not None and sent.stamp == stamp:
                    sent.users += 1  # held for this task until it finishes
                    used.append(sent)
                    if hold is not None and not any(h is sent for h in hold):
                        sent.users += 1  # and for the rest of the block
                        hold.append(sent)
                    return sent.future
            # broadcast: every worker holds a copy, so one that dies loses no input of others
            future = self.client.scatter(value, broadcast=True, hash=False)
            self._scattered += value.numel() * value.element_size()
            sent = _Scattered(value, stamp, future, users=1 + (hold is not None))
            with self._lock:
                # a changed tensor's old copy stays with the tasks still using it, and is released by them
                self._sent[id(value)] = sent
            if hold is not None:
                hold.append(sent)
            used.append(sent)
            return future
        if isinstance(value, list):
            return [self._pack(v, used) for v in value]
        if isinstance(value, tuple):
            return tuple(self._pack(v, used) for v in value)
        return value

    def _done_with(self, used: list) -> None:
        """A task finished: release each scattered copy that no pending task uses any more."""
        free = []
        with self._lock:
            for sent in used:
                sent.users -= 1
                if sent.users == 0:
                    if self._sent.get(id(sent.value)) is sent:
                        del self._sent[id(sent.value)]
                    free.append(sent)
        for sent in free:
            sent.future.release()

    @contextlib.contextmanager
    def submitting(self) -> Iterator[None]:
        """Tasks submitted inside the block share the tensors they scatter: each is sent once,
        even where an early task finishes before the last is submitted; it is released when
        the block has ended and the last task using it has finished.

        Examples
        --------
        >>> with ex.submitting():
        ...     futures = [ex.submit(evaluate_cells, f, center, dirs, row) for row in rows]
        """
        outer = getattr(self._batch, "held", None)
        if outer is not None:  # nested: the outer block holds
            yield
            return
        self._batch.held = held = []
        try:
            yield
        finally:
            self._batch.held = None
            self._done_with(held)

    def held(self) -> int:
        """How many scattered tensors the driver holds for pending tasks (0 between calls).

        Examples
        --------
        >>> ds = plane(f, steps=5, executor=ex)
        >>> ex.held()
        0
        """
        with self._lock:
            return len(self._sent)

    # -- Executor -------------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Send ``fn(*args, **kwargs)`` to the cluster; returns a ``concurrent.futures.Future``."""
        used: list[_Scattered] = []
        packed_args = tuple(self._pack(a, used) for a in args)
        packed_kwargs = {k: self._pack(v, used) for k, v in kwargs.items()}
        try:
            size = len(pickle.dumps((fn, packed_args, packed_kwargs), protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # a Dask future outside its client context, a local function: as Dask pickles it
            import cloudpickle

            try:
                size = len(cloudpickle.dumps((fn, packed_args, packed_kwargs)))
            except Exception:  # noqa: BLE001 - unpicklable: an in-process worker runs it as is
                size = None
        if size is not None:
            self._payloads.append(size)
        # The task's text is written only if it fails (np.array2string cost 1 ms a task).
        what = lambda: _describe(fn, args, kwargs)  # noqa: E731
        dask_future = self.client.submit(run_task, fn, packed_args, packed_kwargs, pure=False,
                                         resources=self.resources)
        out: Future = Future()
        out.set_running_or_notify_cancel()
        dask_future.add_done_callback(lambda f: (_settle(f, out, what), self._done_with(used)))
        out._dask_future = dask_future  # keeps it alive (a released Dask future is cancelled)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __exit__(self, *exc) -> bool:
        self.shutdown()
        return False

    # -- facts ----------------------------------------------------------------------------
    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def worker_pids(self) -> dict:
        """Worker address -> process id (e.g. to kill one in a test)."""
        return self.client.run(os.getpid)

    @property
    def stats(self) -> dict:
        """Tasks sent, their pickled size (bytes), the bytes scattered once, seconds since start."""
        p = self._payloads
        return {"tasks": len(p), "payload_bytes_mean": float(np.mean(p)) if p else math.nan,
                "payload_bytes_max": int(max(p)) if p else 0, "scattered_bytes": int(self._scattered),
                "seconds": time.perf_counter() - self._t0}


@dataclass(eq=False)
class _Scattered:
    """A tensor scattered to the workers: the tensor (held, so its id stays its own), its stamp
    when sent, the Dask future of the copy, and how many pending tasks use it."""

    value: Any
    stamp: tuple
    future: Any
    users: int


def _stamp(t) -> tuple:
    """What changes when a tensor is written in place through torch (version counter), replaced
    (storage) or reshaped: half a microsecond, against milliseconds for a content hash."""
    return (t._version, t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))


def _settle(dask_future, out: Future, what) -> None:
    try:
        result = dask_future.result()
        dask_future.release()  # the result is here: the worker's copy is no longer needed
        out.set_result(result)
    except BaseException as exc:  # noqa: BLE001 - every failure is handed to the caller
        if type(exc).__name__ == "KilledWorker":
            import dask

            allowed = dask.config.get("distributed.scheduler.allowed-failures")
            exc = WorkerLostError(
                f"the task {what()} killed every worker that ran it ({allowed + 1} workers; Dask's "
                f"distributed.scheduler.allowed-failures is {allowed}): it crashes its process (out of memory, a "
                "segfault, a GPU error). Finished cells are kept in the store; rerun the same command to compute "
                "the rest once the cause is fixed"
            )
        out.set_exception(exc)


def landscape_handle(source, data, f, options: dict) -> Rebuild:
    """The :class:`Rebuild` handle of a Landscape built from ``source`` with ``options``: the
    source with the data's fingerprint, and the fingerprints workers must reproduce."""
    src = source.replace(data_fingerprint=data.fingerprint) if source.data_fingerprint is None else source
    return Rebuild("landscape", _portable(src).as_dict(), dict(options),
                   {"data": f.fingerprint, "center": f.space.fingerprint(f.origin)})


def _portable(src):
    """``src`` with its file paths absolute: a worker process may start in another directory."""
    paths = {k: str(Path(getattr(src, k)).resolve()) for k in ("checkpoint", "data_root") if getattr(src, k)}
    if Path(src.data).suffix in (".pt", ".pth") and Path(src.data).is_file():
        paths["data"] = str(Path(src.data).resolve())
    return src.replace(**paths)


@contextlib.contextmanager
def executor_for(dask: int | None = None, scheduler: str | None = None, **options) -> Iterator[DaskExecutor | None]:
    """The executor of a command: None (in this process) by default, a :class:`DaskExecutor`
    on ``dask`` local worker processes or at the ``scheduler`` address.

    Examples
    --------
    >>> with executor_for(dask=2) as ex:
    ...     plane(f, executor=ex)
    """
    require(dask is None or scheduler is None, "give dask= (local worker processes) or scheduler= (a running "
            "cluster), not both")
    if dask is None and scheduler is None:
        yield None
        return
    ex = DaskExecutor(workers=dask, scheduler=scheduler, **options)
    try:
        yield ex
    finally:
        ex.shutdown()

"""What a worker process holds: objects rebuilt once from plain values, and the task wrapper.

A task never carries a model, a data set or a Landscape. It carries a :class:`Rebuild` handle
(a few hundred bytes of plain values: the run's :class:`~lossatlas.sources.Source` and the
Landscape's options), and each worker process builds the object the first time a task names it,
keeping it for every later task (a cache keyed by the handle's fingerprint). The handle records
the fingerprints of the driver's object, so a worker that rebuilt something else (other files,
another split) refuses to compute rather than return values of another landscape.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from .._errors import InputError, require

# Environment variable that sets each worker process's intra-op thread count.
THREADS_ENV = "LOSSATLAS_WORKER_THREADS"

_BUILT: dict[str, Any] = {}
_LOCK = threading.Lock()
_COUNTS: dict[str, Any] = {"builds": 0, "tasks": 0, "malloc": None}


@dataclass(frozen=True)
class Rebuild:
    """A handle to an object that workers rebuild from plain values, once per process.

    Attributes
    ----------
    kind : str
        ``"landscape"``, ``"model"`` or ``"data"``.
    source : dict
        :meth:`Source.as_dict` of the run (plain values).
    options : dict
        Keyword arguments of :class:`~lossatlas.landscape.Landscape` (``kind="landscape"``),
        plus ``test`` (bool: evaluate the test split too).
    expect : dict
        Fingerprints of the driver's object (``data``, ``center``), checked after the rebuild.

    Examples
    --------
    >>> h = Rebuild("landscape", Source(model="mlp", data="digits").as_dict(), {"bn": "eval"})
    >>> f = h.resolve()        # built on first use in this process, cached afterwards
    """

    kind: str
    source: dict
    options: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)

    def __post_init__(self):
        # Hashed once, where the handle is made, and carried with it: each task unpickles a new
        # copy, and hashing it again on the worker cost about 0.7 ms a task.
        from ..store import fingerprint

        key = fingerprint({"kind": self.kind, "source": self.source, "options": self.options, "expect": self.expect})
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        """The fingerprint of the handle's plain values: equal keys name the same object."""
        return self._key

    def resolve(self):
        """The object, built on first use in this process."""
        key = self.key
        with _LOCK:
            if key not in _BUILT:
                _BUILT[key] = _build(self)
                _COUNTS["builds"] += 1
            return _BUILT[key]


def _source_objects(source: dict):
    """``(model, data, device)`` of a source, shared by every handle naming that source."""
    from ..sources import Source
    from ..store import fingerprint

    key = "source:" + fingerprint(source)
    if key not in _BUILT:
        _BUILT[key] = Source.from_dict(source, "the run's source").build()
    return _BUILT[key]


def build_landscape(model, data, device, options: dict):
    """The Landscape of ``model`` on ``data`` with ``options`` (``test``: also the test split):
    the one construction the driver and the workers share, so both evaluate the same function."""
    from ..landscape import Landscape

    opts = dict(options)
    use_test = opts.pop("test", True)
    X, y = data.test
    test = (X, y) if use_test and X.shape[0] > 0 else None
    return Landscape(model, data.train, test=test, device=device, **opts)


def _build(handle: Rebuild):
    model, data, device = _source_objects(handle.source)
    if handle.kind == "model":
        obj = model
    elif handle.kind == "data":
        obj = data
    elif handle.kind == "landscape":
        obj = build_landscape(model, data, device, handle.options)
    else:
        raise InputError(f"unknown kind of shared object {handle.kind!r}; choose landscape, model or data")
    _check(handle, obj, data)
    return obj


def _check(handle: Rebuild, obj, data) -> None:
    want = handle.expect
    if "data" in want:
        got = getattr(obj, "fingerprint", None) if handle.kind == "landscape" else data.fingerprint
        require(got == want["data"], f"a worker rebuilt data with fingerprint {got}, not the driver's {want['data']}: "
                "the workers must see the same data files as the driver")
    if "center" in want:
        from ..space import ParamSpace

        if handle.kind == "landscape":
            got = obj.space.fingerprint(obj.origin)
        else:
            space = ParamSpace(obj)
            got = space.fingerprint(space.vector(obj))
        require(got == want["center"], f"a worker rebuilt a model with parameters {got}, not the driver's "
                f"{want['center']}: the workers must read the same checkpoint as the driver")


def _setup() -> None:
    """Once per worker process, before its first task: its thread count and its allocator."""
    if _COUNTS["tasks"]:
        return
    n = os.environ.get(THREADS_ENV)
    if n:
        import torch

        torch.set_num_threads(max(1, int(n)))
    if _COUNTS["malloc"] is None:
        from ..landscape.allocator import tune_allocator

        _COUNTS["malloc"] = tune_allocator(not_chosen=dask_thresholds())


def dask_thresholds(environ=None) -> tuple[str, ...]:
    """The malloc threshold variables of this process that hold the value Dask's nanny sets on
    every worker (``distributed.nanny.pre-spawn-environ``), not one the user chose.

    Examples
    --------
    >>> dask_thresholds({"MALLOC_TRIM_THRESHOLD_": "65536"})
    ('MALLOC_TRIM_THRESHOLD_',)
    """
    import dask
    import distributed  # noqa: F401 - its import loads the nanny's defaults into dask.config

    env = os.environ if environ is None else environ
    preset = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    return tuple(k for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
                 if k in env and k in preset and str(preset[k]) == str(env[k]))


def _resolve(value):
    if isinstance(value, Rebuild):
        return value.resolve()
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v) for v in value)
    return value


def run_task(fn, args: tuple, kwargs: dict):
    """Run ``fn(*args, **kwargs)`` on a worker, handles replaced by this process's objects."""
    _setup()
    _COUNTS["tasks"] += 1
    return fn(*_resolve(tuple(args)), **{k: _resolve(v) for k, v in kwargs.items()})


def worker_counts() -> dict:
    """How many objects this process built, how many tasks it ran and whether glibc's malloc
    thresholds are raised in it (``malloc``; for tests and benchmarks)."""
    return {**_COUNTS, "pid": os.getpid()}

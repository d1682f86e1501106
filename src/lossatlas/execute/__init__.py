"""Where independent work runs: in this process by default, or on a Dask cluster.

:class:`DaskExecutor` is a ``concurrent.futures.Executor`` for the samplers' ``executor=``;
workers rebuild models, data and Landscapes from plain values (:class:`Rebuild`) once per
process. :mod:`.preflight` holds the checks made before a run's work starts.
"""

from .cluster import CONNECT_TIMEOUT, DaskExecutor, WorkerLostError, executor_for, landscape_handle
from .preflight import check_weights, check_writable
from .worker import Rebuild, build_landscape, run_task, worker_counts

__all__ = [
    "CONNECT_TIMEOUT", "DaskExecutor", "Rebuild", "WorkerLostError", "build_landscape", "check_weights",
    "check_writable", "executor_for", "landscape_handle", "run_task", "worker_counts",
]

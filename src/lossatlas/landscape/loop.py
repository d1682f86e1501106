"""The loop engine: points written one after another into a reused parameter set.

The fastest way on a CPU, where the model's kernels, not the loop, take the time. A point costs
two kernel launches to write (:class:`~.replicas.Replica`) and its forward passes; per-batch sums
are only collected, and reduced once after the last point.

With ``workers > 1`` the points are shared out among worker threads, each with its own replica
and ``T // workers`` intra-op threads (inter-op parallelism; threads release the GIL inside
kernels, where nearly all of the time goes). On a 2-core CPU two workers evaluated a small CNN's
plane 1.05-1.6x as fast as one worker with two intra-op threads, whose small kernels spend much of
their time synchronizing; an MLP's plane was slower (``bench/surface.py``). How the thread count
is shared without leaving the process's changed: :mod:`.threads`.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .compiled import CompilePolicy
from .problem import Problem
from .replicas import Replica
from .threads import shared_intra_op, use_threads


class LoopEngine:
    """Evaluates points on replicas of ``module`` (replica 0 is ``module`` itself).

    Not safe for concurrent calls: the landscape serializes them.
    """

    def __init__(self, problem: Problem, module: nn.Module, origin: torch.Tensor, workers: int, compile_mode):
        self.problem, self.module, self.origin, self.workers = problem, module, origin, workers
        first = (problem.splits[0].batches[0], problem.splits[0].targets[0])
        self.compile = CompilePolicy(compile_mode, self._primary_values, first)
        self._replicas: list[Replica] | None = None
        self._pool = None

    def _primary_values(self, batch, y):
        """The single worker's step on the private module (the function that gets compiled)."""
        return self.problem.batch_values(self.module, batch, y)

    @property
    def replicas(self) -> list[Replica]:
        if self._replicas is None:
            self._replicas = [Replica(self.module, self.problem.space, self.origin)]
        return self._replicas

    def replica(self, i: int) -> Replica:
        """Worker ``i``'s parameter set: replica 0 is the private module, the others copies of it."""
        reps = self.replicas
        while len(reps) <= i:
            reps.append(Replica(copy.deepcopy(self.module), self.problem.space, self.origin))
        return reps[i]

    def evaluate(self, points: torch.Tensor, coords=None, tables=None) -> torch.Tensor:
        """``[K, len(keys)]`` float64 means at ``points`` (with ``tables``: from the first-layer
        tables at ``coords``)."""
        k = points.shape[0]
        workers = min(self.workers, k)
        if workers <= 1:
            return self._block(self.replica(0), points, coords, tables, single=True)
        replicas = [self.replica(i) for i in range(workers)]
        blocks = torch.tensor_split(points, workers)
        coord_blocks = torch.tensor_split(coords, workers) if coords is not None else [None] * workers
        if self._pool is None or self._pool._max_workers < workers:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lossatlas-landscape")
        with shared_intra_op(workers) as threads:
            futures = [self._pool.submit(self._block, r, b, c, tables, False, threads)
                       for r, b, c in zip(replicas, blocks, coord_blocks)]
            return torch.cat([f.result() for f in futures])

    @torch.no_grad()  # grad mode is per thread: set here, in the thread that evaluates
    def _block(self, rep: Replica, points: torch.Tensor, coords=None, tables=None, single: bool = False,
               threads: int | None = None) -> torch.Tensor:
        if threads is not None:
            use_threads(threads)
        problem = self.problem
        m = len(problem.metrics)
        # With span tables, the first layer returns its output combined from them (set per batch)
        # instead of computing it; the override lives on this replica only while it evaluates.
        layer, state = None, {}
        if tables is not None:
            layer = rep.module.get_submodule(tables.layer_name)
            layer.forward = lambda *args, **kwargs: state["z"]
        sums: list[list[list[torch.Tensor]]] = [[[] for _ in range(m)] for _ in problem.splits]
        # The single eager/compiled worker asks the compile policy at every point (compile="auto"
        # may switch it on mid-way); other workers, and any worker reading tables, run eagerly.
        switchable = single and tables is None

        def replica_step(batch, y):
            return problem.batch_values(rep.module, batch, y)

        coord_rows = coords.tolist() if tables is not None else None  # one transfer, not one per point
        try:
            for i, vec in enumerate(points):
                timed = switchable and self.compile.timing
                start = time.perf_counter() if timed else 0.0
                step = self.compile.step() if switchable else replica_step
                c = coord_rows[i] if tables is not None else None
                rep.write(vec)
                if problem.recompute:
                    before = None
                    if tables is not None:
                        def before(b, c=c):
                            state["z"] = tables.first_output(0, b, c)
                    problem.recompute_statistics(rep.module, before)
                for s_i, (lists, split) in enumerate(zip(sums, problem.splits)):
                    for b_i, (batch, y) in enumerate(zip(split.batches, split.targets)):
                        if tables is not None:
                            state["z"] = tables.first_output(s_i, b_i, c)
                        for values, v in zip(lists, step(batch, y)):
                            values.append(v)
                if timed:
                    self.compile.eager_seconds += time.perf_counter() - start
        finally:
            if layer is not None:
                del layer.forward  # back to the class's forward
        return problem.means(sums, points.shape[0])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_replicas"] = None  # staging views would unpickle as copies; rebuilt on first use
        state["_pool"] = None
        return state

"""The vmap engine: chunks of points pushed through ``torch.vmap`` at once (the accelerator path).

One call evaluates a chunk of K points on a batch: the model's parameters carry a leading
dimension of K (``torch.func.functional_call`` under ``vmap``), so each layer runs as one larger
kernel (a batched matmul, a grouped convolution) instead of K small ones.

**Chunk size.** A chunk's memory grows with K, so K is sized from the memory there is
(``chunk="auto"``):

- on CUDA, the engine runs the first batch with one and with two points and measures the peak of
  allocated memory each time (``torch.cuda.max_memory_allocated``, after resetting the device's
  peak statistics): the difference is the cost of one more point, the rest a fixed cost. K is
  what fits in :data:`MEMORY_FRACTION` of the free memory that ``torch.cuda.mem_get_info``
  reports, leaving room for the allocator's fragmentation and for other work on the GPU;
- elsewhere (CPU, MPS) there is no cheap peak measurement, so one point's cost is estimated as
  its parameters plus every module output of one forward pass on the first batch (an
  overestimate: without autograd most of them are freed as the pass goes on), and K is what fits
  in a budget of :data:`CPU_BUDGET_BYTES` or an eighth of the available memory, if less.

K is capped at :data:`MAX_CHUNK`.

**Probe.** Before any grid starts (at construction), the engine evaluates two points (the model's
own parameters, twice) on the first batch and compares them with a plain forward pass. A forward
that vmap cannot transform (data-dependent control flow, ``.item()``, in-place updates of
captured tensors) fails there, with a clear error, instead of halfway through a grid; with
``strategy="auto"`` the landscape then falls back to the loop engine.
"""

from __future__ import annotations

import torch
from torch import nn

from .batches import batch_len, tensors
from .problem import Problem
from .replicas import FunctionalModel

MEMORY_FRACTION = 0.5
CPU_BUDGET_BYTES = 1 << 30
MAX_CHUNK = 64


class VmapError(RuntimeError):
    """The forward pass cannot run under ``torch.vmap`` (or gives other values there)."""


class VmapEngine:
    """Evaluates chunks of points with ``torch.vmap`` over a functional view of ``module``.

    Parameters
    ----------
    chunk : int or "auto"
        Points per vmap call; ``"auto"`` sizes it from free memory in :meth:`probe`.
    """

    def __init__(self, problem: Problem, module: nn.Module, chunk, rtol: float = 1e-4):
        self.problem, self.module, self.rtol = problem, module, rtol
        self.chunk = None if chunk == "auto" else int(chunk)
        self.names = [e.name for e in problem.space.entries]
        self.buffers = dict(module.named_buffers())
        device = next(iter(tensors(problem.splits[0].batches[0])), torch.empty(0)).device
        # MPS has no float64: sums stay in float32 there until they reach the CPU.
        self.acc_dtype = torch.float32 if device.type == "mps" else torch.float64

    def _one(self, flat, batch, y):
        problem = self.problem
        params = dict(zip(self.names, problem.space.split(flat)))
        out = problem.output(FunctionalModel(self.module, params, self.buffers), batch)
        values = [problem.loss_sum(out, y).to(self.acc_dtype)]
        if "accuracy" in problem.metrics:
            values.append((out.argmax(1) == y).sum().to(self.acc_dtype))
        return torch.stack(values)

    def _batch(self, chunk: torch.Tensor, batch, y) -> torch.Tensor:
        from torch.func import vmap

        return vmap(self._one, in_dims=(0, None, None), randomness="different")(chunk, batch, y)

    @torch.no_grad()
    def evaluate(self, points: torch.Tensor) -> torch.Tensor:
        """``[K, len(keys)]`` float64 means on the CPU."""
        rows = []
        for i in range(0, points.shape[0], self.chunk):
            chunk = points[i : i + self.chunk]
            columns = []
            for split in self.problem.splits:
                total = None
                for batch, y in zip(split.batches, split.targets):
                    v = self._batch(chunk, batch, y)
                    total = v if total is None else total + v
                columns.append(total / split.n)
            rows.append(torch.cat(columns, dim=1).cpu().double())
        return torch.cat(rows)

    @torch.no_grad()
    def probe(self, origin: torch.Tensor) -> None:
        """Check that the forward runs under vmap with the plain values, and size the chunk.

        Raises
        ------
        VmapError
            Naming what failed.
        """
        split = self.problem.splits[0]
        batch, y = split.batches[0], split.targets[0]
        pair = torch.stack([origin, origin])
        try:
            fast = self._batch(pair, batch, y)
        except Exception as exc:  # noqa: BLE001 - any failure means vmap cannot serve this forward
            raise VmapError(f"{type(exc).__name__}: {exc}") from exc
        plain = torch.stack([v.to(self.acc_dtype) for v in self.problem.batch_values(self.module, batch, y)])
        if not all(torch.allclose(row, plain, rtol=self.rtol, atol=1e-5, equal_nan=True) for row in fast):
            raise VmapError(f"vmapped values {fast[0].tolist()} differ from the plain forward's {plain.tolist()}")
        if self.chunk is None:
            self.chunk = self._size(pair, batch, y)

    def _size(self, pair: torch.Tensor, batch, y, memory=None) -> int:
        """Points per chunk. ``memory``: the device's memory queries (:class:`CudaMemory` on CUDA;
        tests pass a stand-in to exercise the CUDA branch on any machine)."""
        device = pair.device
        if memory is None and device.type == "cuda":
            memory = CudaMemory(device)
        if memory is not None:
            memory.synchronize()
            base = memory.allocated()
            peaks = []
            for k in (1, 2):
                memory.reset_peak()
                self._batch(pair[:k], batch, y)
                memory.synchronize()
                peaks.append(memory.peak() - base)
            return chunk_from_peaks(peaks[0], peaks[1], memory.free())
        per_point = self._estimate_point_bytes(batch)
        budget = min(CPU_BUDGET_BYTES, _available_bytes(device) / 8)
        return int(max(1, min(MAX_CHUNK, budget // per_point)))

    def _estimate_point_bytes(self, batch) -> int:
        """One point's parameters plus every module output of a forward pass on ``batch``."""
        seen = [sum(p.numel() * p.element_size() for p in self.module.parameters())]

        def count(mod, args, out):
            seen[0] += sum(t.numel() * t.element_size() for t in tensors(out))

        handles = [m.register_forward_hook(count) for m in self.module.modules() if not list(m.children())]
        try:
            self.problem.forward(self.module, batch)
        finally:
            for h in handles:
                h.remove()
        return max(seen[0], batch_len(batch))


class CudaMemory:
    """The memory queries of one CUDA device that chunk sizing makes (``torch.cuda``)."""

    def __init__(self, device: torch.device):
        self.device = device

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)

    def free(self) -> int:
        return torch.cuda.mem_get_info(self.device)[0]


def chunk_from_peaks(peak_one: float, peak_two: float, free: float) -> int:
    """Points per chunk from the peak memory of a chunk of one and of two points (bytes above
    what was allocated before) and the device's free memory: the second point's cost is the cost
    of each further point, the rest is fixed, and the chunk fills :data:`MEMORY_FRACTION` of the
    free memory (at least 1, at most :data:`MAX_CHUNK`).

    Examples
    --------
    >>> chunk_from_peaks(3 << 20, 5 << 20, 40 << 20)  # 2 MiB a point, 1 MiB fixed, 20 MiB budget
    9
    """
    per_point = max(peak_two - peak_one, 1)
    fixed = max(peak_one - per_point, 0)
    budget = MEMORY_FRACTION * free - fixed
    return int(max(1, min(MAX_CHUNK, budget // per_point)))


def _available_bytes(device: torch.device) -> float:
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            return float(mps.recommended_max_memory() - mps.current_allocated_memory())
    from ..memory import available_memory

    return float(available_memory())

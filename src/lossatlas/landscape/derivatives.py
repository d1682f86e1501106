"""Gradients and Hessian-vector products of the mean loss, functions of theta alone.

Each call borrows a model copy of its own from a :class:`~.replicas.ModulePool` built from a
pristine template (copied at construction, before any evaluation), and never the modules that
evaluation writes points into. Two consequences:

- the result depends on theta alone, never on what was evaluated before (under
  ``bn="recompute"`` evaluation leaves the statistics of its last point in its modules);
- ``grad`` and ``hvp`` may run in several threads at once, and beside an evaluation
  (``torch.func.functional_call`` swaps a module's parameters while it runs: on a shared module
  another thread would compute with them). Only the forward-mode part of ``hvp`` takes turns
  across threads, because torch keeps forward-mode AD levels process-wide.

Batch norm: ``bn="eval"`` uses the model's running statistics, ``bn="batch"`` each batch's own
(differentiated through, as in training). ``bn="recompute"`` first re-estimates the running
statistics at theta on the training data, exactly as evaluation does, so that the value returned
equals ``evaluate(theta)``; the derivatives are then taken with those statistics held fixed (the
gradient of the eval-mode network at theta, which is what a Hessian of a trained network in eval
mode measures; differentiating through the re-estimation pass is not supported).
"""

from __future__ import annotations

import contextlib
import threading

import torch

from .._errors import require
from .problem import Problem, Split
from .replicas import FunctionalModel, ModulePool


# How a Hessian-vector product is taken. Both are exact (they agree to rounding):
# - "reverse": reverse-over-reverse (double backward), the default. On a 2-core CPU it took
#   0.7-0.8x the time of forward-over-reverse for the small CNN on digits (bench/hessian.py);
# - "forward": forward-over-reverse (torch.func jvp of grad), which keeps no second graph.
HVP_MODES = ("reverse", "forward")

# Retained gradient graphs (:meth:`Derivatives.retained`) may take this share of the memory that
# is free when they are built (MemAvailable on a CPU, ``torch.cuda.mem_get_info`` on CUDA); the
# second backward of each product needs room of its own beside them.
RETAIN_FRACTION = 0.25

# Forward-mode AD levels are process-wide in torch (one stack, entered and left in order), so
# forward-over-reverse products from two threads at once break each other's levels: they take turns.
_FORWARD_AD = threading.Lock()


def flat_loss(problem: Problem, module, n: int):
    """``loss(flat, batch, y)``: one batch's summed loss over ``n`` at the flat parameter vector
    ``flat`` (``module`` called functionally with its own buffers), for ``torch.func`` transforms."""
    names = [e.name for e in problem.space.entries]
    buffers = dict(module.named_buffers())

    def loss(flat, batch, y):
        params = dict(zip(names, problem.space.split(flat)))
        return problem.loss_sum(problem.output(FunctionalModel(module, params, buffers), batch), y) / n

    return loss


class Derivatives:
    """``grad`` and ``hvp`` of a :class:`~.problem.Problem` on borrowed model copies."""

    def __init__(self, problem: Problem, pool: ModulePool):
        self.problem, self.pool = problem, pool
        self._kept = threading.local()

    def __getstate__(self):
        return {"problem": self.problem, "pool": self.pool}

    def __setstate__(self, state):
        self.__init__(state["problem"], state["pool"])

    @contextlib.contextmanager
    def retained(self, theta: torch.Tensor, split: str = "train", budget: int | None = None,
                 precision=contextlib.nullcontext):
        """Keep the gradient graphs of ``theta`` for the reverse-mode products of this thread
        inside the block (see :class:`RetainedGraphs`); ``budget`` in bytes, default
        :data:`RETAIN_FRACTION` of the free memory; ``precision()``: the context the graphs are
        built in (the landscape's float32 matmul precision)."""
        if budget is None:
            from ..memory import device_free_memory

            budget = int(RETAIN_FRACTION * device_free_memory(theta.device))
        outer = getattr(self._kept, "graphs", None)
        with self.pool.borrow() as replica:
            s = self.problem.split(split)
            with precision():
                self._prepare(replica, theta)
                graphs = RetainedGraphs(self._loss(replica.module, s), s, theta, split, budget)
            self._kept.graphs = graphs
            try:
                yield graphs
            finally:
                self._kept.graphs = outer
                graphs.release()

    def _loss(self, module, split: Split):
        return flat_loss(self.problem, module, split.n)

    def _prepare(self, replica, theta: torch.Tensor) -> None:
        if self.problem.recompute:
            with torch.no_grad():
                replica.write(theta)
                self.problem.recompute_statistics(replica.module)

    def grad(self, theta: torch.Tensor, split: str = "train") -> tuple[float, torch.Tensor]:
        from torch.func import grad_and_value

        s = self.problem.split(split)
        with self.pool.borrow() as replica:
            self._prepare(replica, theta)
            fn = grad_and_value(self._loss(replica.module, s))
            g, total = torch.zeros_like(theta), 0.0
            for batch, y in zip(s.batches, s.targets):
                gb, vb = fn(theta, batch, y)
                g += gb
                total += float(vb)
        return total, g

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, split: str = "train",
            mode: str = "reverse") -> torch.Tensor:
        """``H(theta) v`` summed over every batch of ``split``; ``mode`` as in :data:`HVP_MODES`."""
        require(mode in HVP_MODES, f"hvp mode must be one of {', '.join(HVP_MODES)}, got {mode!r}")
        kept = getattr(self._kept, "graphs", None)
        if kept is not None and mode == "reverse" and kept.serves(theta, split):
            return kept.hvp(v)
        s = self.problem.split(split)
        with self.pool.borrow() as replica:
            self._prepare(replica, theta)
            loss = self._loss(replica.module, s)
            if mode == "forward":
                return self._forward_over_reverse(loss, s, theta, v)
            return self._reverse_over_reverse(loss, s, theta, v)

    @staticmethod
    def _forward_over_reverse(loss, s: Split, theta, v) -> torch.Tensor:
        from torch.func import grad, jvp

        g = grad(loss)
        out = torch.zeros_like(theta)
        with _FORWARD_AD:
            for batch, y in zip(s.batches, s.targets):
                out += jvp(lambda t: g(t, batch, y), (theta,), (v,))[1]
        return out

    @staticmethod
    def _reverse_over_reverse(loss, s: Split, theta, v) -> torch.Tensor:
        return _double_backward(loss, zip(s.batches, s.targets), theta.detach().requires_grad_(True), v)


def _double_backward(loss, pairs, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``H v`` summed over the ``(batch, y)`` pairs at the leaf ``t``, by double backward: the
    gradient with its graph kept, then the vector-Jacobian product of that gradient with v (the
    Hessian is symmetric, so v^T H = (H v)^T). Graphs are local to the calling thread: no lock is
    needed."""
    out = torch.zeros_like(t)
    with torch.enable_grad():
        for batch, y in pairs:
            (g,) = torch.autograd.grad(loss(t, batch, y), t, create_graph=True)
            (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
            out += hv
    return out


class RetainedGraphs:
    """The gradient graphs of one point, kept so that each Hessian-vector product there is one
    backward pass instead of a forward and two backward passes.

    A Krylov solver (Lanczos, SLQ, ARPACK) takes many products at one theta. Each reverse-mode
    product computes the gradient with its graph (forward, backward with ``create_graph``) and
    then differentiates ``g . v``; the first two steps do not depend on ``v``. Here they run once
    per batch and their graphs stay, and every product is ``autograd.grad(g, theta, v,
    retain_graph=True)`` on them (ResNet-20 on 64 images, one CPU thread: 0.37 s a product
    against 0.52 s; bench/hessian.py). Values are the same up to rounding: the same graph, run
    again.

    The graphs take memory (the activations and what the double backward saves): the first
    batch's is measured as it is built (the bytes of every tensor autograd saves, each storage
    once), and batches are kept while they fit in ``budget``; the others are recomputed at each
    product as before. Nothing is kept when one batch does not fit (that batch's graph was then
    built once for nothing) or when ``budget`` is 0 (nothing is built).
    """

    def __init__(self, loss, split: Split, theta: torch.Tensor, name: str, budget: int):
        self.theta, self.name, self.budget = theta, name, int(budget)
        self._loss = loss
        self.t = theta.detach().requires_grad_(True)
        self.graphs: list[torch.Tensor] = []
        self.bytes_per_batch = 0
        pairs = list(zip(split.batches, split.targets))
        if self.budget > 0:
            # batch i is kept while (i + 1) batches fit in the budget
            with torch.enable_grad():
                g, self.bytes_per_batch = _measured_gradient(lambda: loss(self.t, *pairs[0]), self.t, pairs[0])
                n = min(len(pairs), self.budget // self.bytes_per_batch)
                if n:
                    self.graphs = [g] + [torch.autograd.grad(loss(self.t, batch, y), self.t, create_graph=True)[0]
                                         for batch, y in pairs[1:n]]
        self._rest = pairs[len(self.graphs):]
        self._kept_count = len(self.graphs)

    @property
    def kept(self) -> int:
        """Batches whose graphs were kept (still reported after the block has released them)."""
        return self._kept_count

    def serves(self, theta: torch.Tensor, split: str) -> bool:
        """Whether a product at ``theta`` on ``split`` can use these graphs."""
        if split != self.name or not self.graphs:
            return False
        return theta is self.theta or (theta.shape == self.theta.shape and theta.device == self.theta.device
                                       and bool(torch.equal(theta, self.theta)))

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        out = _double_backward(self._loss, self._rest, self.t, v)  # the batches not kept, from scratch
        for g in self.graphs:
            out += torch.autograd.grad(g, self.t, grad_outputs=v, retain_graph=True)[0]
        return out

    def release(self) -> None:
        self.graphs = []
        self._rest = []


def _measured_gradient(loss, t: torch.Tensor, data) -> tuple[torch.Tensor, int]:
    """The gradient of ``loss()`` at ``t`` with its graph, and the bytes of the tensors that
    graph saved (each storage counted once; ``t``'s own storage and the ``data`` batch's are
    held anyway, so not counted)."""
    from .batches import tensors

    seen: set[int] = {x.untyped_storage().data_ptr() for x in [t, *tensors(data)]}
    total = [0]

    def pack(x):
        storage = x.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        (g,) = torch.autograd.grad(loss(), t, create_graph=True)
    return g, total[0] + g.untyped_storage().nbytes()

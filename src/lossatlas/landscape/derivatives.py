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
        # Double backward: the gradient with its graph kept, then the vector-Jacobian product of
        # that gradient with v (the Hessian is symmetric, so v^T H = (H v)^T). Graphs are local to
        # the calling thread: no lock is needed.
        out = torch.zeros_like(theta)
        t = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            for batch, y in zip(s.batches, s.targets):
                (g,) = torch.autograd.grad(loss(t, batch, y), t, create_graph=True)
                (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
                out += hv
        return out

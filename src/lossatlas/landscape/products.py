"""Curvature-matrix products with several vectors at once: the Hessian, the generalized
Gauss-Newton matrix and the empirical Fisher of the mean loss, each summed over every batch.

The loss is ``L(theta) = (1/n) sum_i l_i(theta)`` over the ``n`` samples of a split, so each
matrix is the same weighted sum of per-sample terms (weights ``1/n``, as the loss is averaged):

- Hessian ``H = (1/n) sum_i d^2 l_i``;
- generalized Gauss-Newton ``G = J^T H_out J``: ``J`` the Jacobian of the model's outputs on a
  batch, ``H_out`` the Hessian of the batch's summed loss (divided by ``n``) with respect to those
  outputs (for softmax cross-entropy ``diag(p) - p p^T`` per sample; for the mean squared error
  ``2/d`` times the identity, ``d`` outputs per sample). A product takes one JVP through the
  model, one product with ``H_out`` (autodiff of the loss alone, exact for any loss) and one VJP;
- empirical Fisher ``F = (1/n) sum_i g_i g_i^T``, ``g_i`` the gradient of sample i's loss, from
  per-sample gradients (``torch.func.vmap`` of ``grad`` over the samples of a batch).

Products with a block of vectors ``V [K, P]`` map over the vectors with ``torch.func.vmap`` (one
pass through the data for all K), falling back to one vector at a time where an operation has no
batching rule.
"""

from __future__ import annotations

import torch
import torch.utils._pytree as pytree

from .._errors import InputError, require
from .derivatives import _FORWARD_AD, HVP_MODES, flat_loss
from .problem import Problem, Split
from .replicas import FunctionalModel, ModulePool

CURVATURES = ("hessian", "ggn", "fisher")


class Products:
    """``M(theta) V`` for a block of vectors, M one of :data:`CURVATURES`, on borrowed model copies."""

    def __init__(self, problem: Problem, pool: ModulePool, batch_stats: bool = False):
        self.problem, self.pool = problem, pool
        self.batch_stats = batch_stats  # batch norm normalizes with each batch's own statistics
        self._batched_ok = True  # cleared when vmap over the vectors fails once (no batching rule)

    def matmat(self, theta: torch.Tensor, V: torch.Tensor, curvature: str = "hessian",
               split: str = "train", mode: str = "reverse") -> torch.Tensor:
        require(curvature in CURVATURES,
                f"curvature must be one of {', '.join(CURVATURES)}, got {curvature!r}")
        require(mode in HVP_MODES, f"hvp mode must be one of {', '.join(HVP_MODES)}, got {mode!r}")
        if curvature == "fisher" and self.batch_stats:
            raise InputError("the empirical Fisher needs per-sample gradients, which batch statistics "
                             "(bn='batch') mix across samples; use bn='eval' or 'recompute', or the 'ggn'")
        s = self.problem.split(split)
        with self.pool.borrow() as replica:
            if self.problem.recompute:
                with torch.no_grad():
                    replica.write(theta)
                    self.problem.recompute_statistics(replica.module)
            module = replica.module
            out = torch.zeros_like(V)
            for batch, y in zip(s.batches, s.targets):
                out += self._batch(module, s, batch, y, theta, V, curvature, mode)
        return out

    # -- one batch -------------------------------------------------------------------------
    def _batch(self, module, s: Split, batch, y, theta, V, curvature, mode):
        fn = {"hessian": self._hessian, "ggn": self._ggn, "fisher": self._fisher}[curvature]
        if self._batched_ok or curvature == "fisher":
            try:
                return fn(module, s, batch, y, theta, V, mode)
            except RuntimeError as exc:  # an operation without a vmap batching rule
                if curvature == "fisher" or V.shape[0] == 1 or "vmap" not in str(exc).lower():
                    raise
                self._batched_ok = False
        return torch.cat([fn(module, s, batch, y, theta, v.unsqueeze(0), mode) for v in V])

    def _output_fn(self, module, batch):
        names = [e.name for e in self.problem.space.entries]
        buffers = dict(module.named_buffers())
        problem = self.problem

        def output(flat):
            return problem.output(FunctionalModel(module, dict(zip(names, problem.space.split(flat))), buffers), batch)

        return output

    def _loss_fn(self, module, s: Split):
        return flat_loss(self.problem, module, s.n)

    def _hessian(self, module, s, batch, y, theta, V, mode):
        from torch.func import grad, jvp, vmap

        loss = self._loss_fn(module, s)
        if mode == "forward":
            g = grad(lambda t: loss(t, batch, y))
            with _FORWARD_AD:
                if V.shape[0] == 1:
                    return jvp(g, (theta,), (V[0],))[1].unsqueeze(0)
                return vmap(lambda v: jvp(g, (theta,), (v,))[1])(V)
        t = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(loss(t, batch, y), t, create_graph=True)
            if V.shape[0] == 1:
                return torch.autograd.grad(g, t, grad_outputs=V[0])[0].unsqueeze(0)
            # One backward pass through the gradient's graph for all K vectors (vmap inside autograd).
            return torch.autograd.grad(g, t, grad_outputs=V, is_grads_batched=True)[0]

    def _ggn(self, module, s, batch, y, theta, V, mode):
        from torch.func import grad, jvp, vjp, vmap

        output = self._output_fn(module, batch)
        out, pullback = vjp(output, theta)
        out = out.detach()
        loss_out = grad(lambda o: self.problem.loss_sum(o, y) / s.n)
        with _FORWARD_AD:
            if V.shape[0] == 1:  # vmap's overhead is a sizeable share of a small model's product
                Jv = jvp(output, (theta,), (V[0],))[1]
                return pullback(jvp(loss_out, (out,), (Jv,))[1])[0].unsqueeze(0)
            JV = vmap(lambda v: jvp(output, (theta,), (v,))[1])(V)  # [K, *out.shape]
            HJV = vmap(lambda u: jvp(loss_out, (out,), (u,))[1])(JV)
        return vmap(lambda u: pullback(u)[0])(HJV)

    def _fisher(self, module, s, batch, y, theta, V, mode):
        G = self.sample_grads(module, batch, y, theta)  # [B, P], each sample's loss gradient
        return (V @ G.T) @ G / s.n

    def sample_grads(self, module, batch, y, theta) -> torch.Tensor:
        """The gradient of each sample's loss in ``batch`` (summed loss, not divided by n): [B, P]."""
        from torch.func import grad, vmap

        leaves, spec = pytree.tree_flatten((batch, y))
        which = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.dim() > 0]
        require(bool(which), "the empirical Fisher needs batches of tensors with a sample dimension")
        names = [e.name for e in self.problem.space.entries]
        buffers = dict(module.named_buffers())
        problem = self.problem

        def one(flat, *sample):
            filled = list(leaves)
            for i, x in zip(which, sample):
                filled[i] = x.unsqueeze(0)
            b, t = pytree.tree_unflatten(filled, spec)
            params = dict(zip(names, problem.space.split(flat)))
            return problem.loss_sum(problem.output(FunctionalModel(module, params, buffers), b), t)

        return vmap(grad(one), in_dims=(None,) + (0,) * len(which))(theta, *[leaves[i] for i in which])

    def value_and_grad(self, theta: torch.Tensor, picks: torch.Tensor, split: str = "train",
                       need_grad: bool = True) -> tuple[float, torch.Tensor | None]:
        """Mean loss over the samples ``picks`` of ``split`` (indices in batch order) and its gradient."""
        from torch.func import grad_and_value

        from .batches import map_tensors

        s = self.problem.split(split)
        picks = torch.as_tensor(picks, dtype=torch.long).reshape(-1)
        require(picks.numel() > 0 and int(picks.min()) >= 0 and int(picks.max()) < s.n,
                f"sample indices must lie in [0, {s.n})")
        m = int(picks.numel())
        total, g, start = 0.0, (torch.zeros_like(theta) if need_grad else None), 0
        with self.pool.borrow() as replica:
            if self.problem.recompute:
                with torch.no_grad():
                    replica.write(theta)
                    self.problem.recompute_statistics(replica.module)
            loss = self._loss_fn(replica.module, Split(s.name, [], [], m))
            fn = grad_and_value(loss)
            for batch, y in zip(s.batches, s.targets):
                size = int(y.shape[0]) if isinstance(y, torch.Tensor) and y.dim() else 1
                local = picks[(picks >= start) & (picks < start + size)] - start
                start += size
                if local.numel() == 0:
                    continue
                local = local.to(y.device if isinstance(y, torch.Tensor) else theta.device)
                sub_b, sub_y = map_tensors(lambda t: t[local], batch), map_tensors(lambda t: t[local], y)
                if need_grad:
                    gb, vb = fn(theta, sub_b, sub_y)
                    g += gb
                else:
                    with torch.no_grad():
                        vb = loss(theta, sub_b, sub_y)
                total += float(vb)
        return total, g

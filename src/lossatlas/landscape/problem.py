"""What every evaluation engine computes: the data splits, the forward pass, the loss and its
metrics, and how per-batch sums become per-point means.

Engines (``loop``, ``vmap``) and ``derivatives`` differ only in how they push parameter vectors
through the model; they share one :class:`Problem`, so that each computes the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .._errors import InputError
from ..space import ParamSpace
from .batches import model_output
from .replicas import BATCH_NORM


@dataclass
class Split:
    """One data split: its batches, their targets, and its number of samples."""

    name: str
    batches: list
    targets: list
    n: int

    @property
    def prefix(self) -> str:
        """How its values are named: ``loss`` for the training split, ``test_loss`` for ``test``."""
        return "" if self.name == "train" else f"{self.name}_"


@dataclass
class Problem:
    """The loss and metrics of a model over fixed data splits, as sums over batches.

    ``recompute``: batch-norm running statistics are re-estimated on the training split at each
    point before its values are computed (``bn="recompute"`` on a model with batch norm).
    """

    space: ParamSpace
    forward: Callable
    loss_sum: Callable
    splits: list[Split]
    metrics: tuple[str, ...]
    recompute: bool

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.prefix + m for s in self.splits for m in self.metrics)

    def split(self, name: str) -> Split:
        for s in self.splits:
            if s.name == name:
                return s
        raise InputError(f"no {name!r} data in this landscape; splits: {[s.name for s in self.splits]}")

    def output(self, module: nn.Module, batch) -> torch.Tensor:
        return model_output(self.forward(module, batch))

    def batch_values(self, module: nn.Module, batch, y) -> tuple[torch.Tensor, ...]:
        """Sums over one batch: ``(loss,)`` or ``(loss, correct)``, as ``module`` computes them."""
        out = self.output(module, batch)
        loss = self.loss_sum(out, y)
        if len(self.metrics) == 1:
            return (loss,)
        return loss, (out.argmax(1) == y).sum()

    def recompute_statistics(self, module: nn.Module, before_batch: Callable | None = None) -> None:
        """Re-estimate ``module``'s batch-norm running statistics on the training split, leaving
        the module in eval mode.

        One train-mode pass over the split's batches (each normalized by its own statistics, as in
        training); each layer's running mean and variance become those of all the inputs it saw:
        batches weighted by their size, variances pooled with the spread of the batch means
        (Chan et al.'s parallel update), the variance unbiased over all of them. The split into
        batches then does not matter to a layer whose inputs do not depend on batch norm. torch's
        ``momentum=None`` (``swa_utils.update_bn``) instead averages the batches with equal weights,
        so a short last batch counts as much as a full one; Garipov et al.'s ``update_bn`` weights
        the batches by size but averages their unbiased variances without the spread of the means.
        """
        bns = [m for m in module.modules() if isinstance(m, BATCH_NORM)]
        pooled: dict[nn.Module, list] = {}

        def accumulate(m, args):
            x = args[0].detach()
            x = x if x.dtype in (torch.float32, torch.float64) else x.float()
            dims = [d for d in range(x.dim()) if d != 1]
            var, mean = torch.var_mean(x, dim=dims, correction=0)
            n = x.numel() // x.shape[1]
            if m not in pooled:
                pooled[m] = [n, mean, var * n]
                return
            n_a, mean_a, m2_a = pooled[m]
            total = n_a + n
            delta = mean - mean_a
            pooled[m] = [total, mean_a + delta * (n / total), m2_a + var * n + delta**2 * (n_a * n / total)]

        hooks = [m.register_forward_pre_hook(accumulate) for m in bns]
        try:
            for m in bns:
                m.reset_running_stats()
                m.train()
            for b, batch in enumerate(self.splits[0].batches):
                if before_batch is not None:
                    before_batch(b)
                self.forward(module, batch)
        finally:
            for h in hooks:
                h.remove()
            for m in bns:
                m.eval()
        with torch.no_grad():
            for m, (n, mean, m2) in pooled.items():
                if m.running_mean is None:
                    continue
                m.running_mean.copy_(mean)
                m.running_var.copy_(m2 / max(n - 1, 1))

    def means(self, sums: Sequence[Sequence[Sequence[torch.Tensor]]], k: int) -> torch.Tensor:
        """``[k, len(keys)]`` float64 means on the CPU from ``sums[split][metric]``: per-batch
        sums of k points, point-major (all batches of point 0, then of point 1, ...)."""
        columns = []
        for lists, split in zip(sums, self.splits):
            for values in lists:
                # One transfer, then float64 on the CPU (MPS has no float64).
                per_batch = torch.stack([v.reshape(()) for v in values]).cpu().double()
                columns.append(per_batch.reshape(k, len(split.batches)).sum(1) / split.n)
        return torch.stack(columns, dim=1)

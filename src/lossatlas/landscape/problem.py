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
        """Re-estimate ``module``'s batch-norm running statistics on the training split (a
        cumulative average over its batches), leaving the module in eval mode."""
        bns = [m for m in module.modules() if isinstance(m, BATCH_NORM)]
        for m in bns:
            m.reset_running_stats()
            m.train()
        for b, batch in enumerate(self.splits[0].batches):
            if before_batch is not None:
                before_batch(b)
            self.forward(module, batch)
        for m in bns:
            m.eval()

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

"""The built-in losses, each returning the SUM over a batch, so that batches of any size average
correctly over the data (the landscape divides by the number of samples once, at the end)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .._errors import require
from .batches import batch_len


def _cross_entropy(out, y):
    if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
        # Class indices for [N, C] logits: per sample, logsumexp of the logits minus the target's
        # logit (0 at the target itself, so a confident sample's small loss keeps its precision,
        # as in torch's log-softmax). The same value as F.cross_entropy to float rounding, in
        # about half its time on a CPU, where this is a sizeable share of a small model's work.
        return torch.logsumexp(out - out.gather(1, y.unsqueeze(1)), 1).sum()
    return F.cross_entropy(out, y, reduction="sum")


def _nll(out, y):
    return F.nll_loss(out, y, reduction="sum")


def _per_output(out) -> int:
    # mse and l1 average over output elements within a sample, as torch's "mean" reduction does.
    return max(1, out[0].numel())


def _mse(out, y):
    return F.mse_loss(out, y.to(out.dtype).reshape(out.shape), reduction="sum") / _per_output(out)


def _l1(out, y):
    return F.l1_loss(out, y.to(out.dtype).reshape(out.shape), reduction="sum") / _per_output(out)


def _bce(out, y):
    return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype).reshape(-1), reduction="sum")


LOSSES: dict[str, Callable] = {"cross_entropy": _cross_entropy, "nll": _nll, "mse": _mse, "bce": _bce, "l1": _l1}


class MeanToSum:
    """Wraps a user loss returning the batch mean so that it returns the batch sum."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, out, y):
        return self.fn(out, y) * batch_len(y)


def resolve_loss(loss: str | Callable) -> tuple[Callable, str]:
    """``(sum_fn, name)`` for a loss name of :data:`LOSSES` or a callable returning the batch mean.

    Examples
    --------
    >>> fn, name = resolve_loss("cross_entropy")
    >>> fn(torch.zeros(2, 3), torch.tensor([0, 1]))  # the sum: 2 * log(3)
    tensor(2.1972)
    """
    if isinstance(loss, str):
        require(loss in LOSSES, f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable")
        return LOSSES[loss], loss
    require(callable(loss), "loss must be a name or a callable loss(output, target)")
    return MeanToSum(loss), getattr(loss, "__name__", type(loss).__name__)

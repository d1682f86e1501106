"""Building blocks shared by the architectures: activations by name, 1-D/2-D layer kinds, a
size-aware max-pool and a global average pool.

Nothing here works in place, so that landscapes can be evaluated with
``torch.func.functional_call`` under ``torch.vmap`` over stacks of parameter sets.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

#: Activation names accepted by the MLP, mapped to their (non in-place) modules.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


class GlobalAvgPool(nn.Module):
    """Mean over all spatial positions: works for any input size, 1-D or 2-D, and under vmap.

    Examples
    --------
    >>> GlobalAvgPool()(torch.ones(2, 3, 4, 4)).shape
    torch.Size([2, 3])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


def layer_kinds(ndim: int) -> tuple[type, type, type]:
    """The convolution, batch-norm and max-pool classes for ``ndim`` spatial dimensions (1 or 2).

    Examples
    --------
    >>> layer_kinds(1)[0] is nn.Conv1d
    True
    """
    if ndim == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d


def halving_pool(ndim: int, size: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """A 2x max-pool that skips dimensions already of size 1, and the size it leaves.

    Skipping keeps tiny inputs (8x8 digits, or an image whose height is 1) usable with the same
    number of blocks; ``ceil_mode`` keeps the last row/column of odd sizes.

    Examples
    --------
    >>> halving_pool(2, (1, 7))[1]
    (1, 4)
    """
    kernel = tuple(2 if s >= 2 else 1 for s in size)
    if all(k == 1 for k in kernel):
        return nn.Identity(), size
    _, _, pool = layer_kinds(ndim)
    k = kernel[0] if ndim == 1 else kernel
    new = tuple(-(-s // kk) for s, kk in zip(size, kernel))
    return pool(kernel_size=k, stride=k, ceil_mode=True), new

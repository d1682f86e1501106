"""A fully connected network on the flattened input, optionally with batch normalization."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._errors import require
from .architecture import Architecture
from .arguments import int_sequence
from .layers import ACTIVATIONS


class MLP(Architecture, arch="mlp", ranks=(1, 2, 3), init_scheme="torch"):
    """Fully connected network on the flattened input.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is of any
        rank (it is flattened), e.g. ``(784,)`` or ``(1, 28, 28)``.
    hidden : sequence of int, default (64, 64)
        Widths of the hidden layers; empty gives a linear (logistic-regression) model.
    activation : str, default "relu"
        One of relu, tanh, sigmoid, gelu, elu, leaky_relu, softplus, silu, identity.
    batch_norm : bool, default False
        Put a BatchNorm1d between each hidden linear layer and its activation.

    Examples
    --------
    >>> net = MLP((1, 8, 8), 10, hidden=(32,))
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__(input_shape, num_classes)
        hidden = int_sequence(hidden, "hidden", allow_empty=True)
        require(
            activation in ACTIVATIONS,
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}",
        )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            width = h
        layers.append(nn.Linear(width, self.num_classes))
        self.net = nn.Sequential(*layers)
        self.finish(hidden=hidden, activation=activation, batch_norm=bool(batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

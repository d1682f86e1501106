"""A fully connected network on the flattened input, optionally with batch normalization."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._errors import positive_int, require
from .arguments import int_sequence, make_spec, sample_shape
from .init import initialize
from .layers import ACTIVATIONS


class MLP(nn.Module):
    """Fully connected network on the flattened input.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample (any rank; it is flattened), e.g. ``(784,)`` or ``(1, 28, 28)``.
    num_classes : int
        Number of output logits.
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

    #: Initialization scheme of :func:`lossatlas.models.init.initialize` (also for seeded builds).
    init_scheme = "torch"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        shape = sample_shape(input_shape, "mlp", (1, 2, 3))
        num_classes = positive_int("num_classes", num_classes)
        hidden = int_sequence(hidden, "hidden", allow_empty=True)
        require(
            activation in ACTIVATIONS,
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}",
        )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        self.spec = make_spec(
            "mlp", shape, num_classes, hidden=hidden, activation=activation, batch_norm=bool(batch_norm)
        )
        initialize(self, None, self.init_scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

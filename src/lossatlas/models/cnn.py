"""Convolutional networks without skip connections: SmallCNN, SmallVGG and Li et al.'s VGG-9.

1-D layers serve ``(C, L)`` inputs, 2-D layers ``(C, H, W)``; pooling skips dimensions already
of size 1, so tiny inputs (8x8 digits) keep every block.

VGG-9 is the network of Li et al., *Visualizing the loss landscape of neural nets*, Sec. 5 ("a
9-layer VGG network with Batch Normalization"); the paper gives no layer table, so the layout
(7 conv layers 64, 64, M, 128, 128, M, 256, 256, 256, M, then a 256-unit fully connected layer
with BN and the classifier: 7 conv + 2 FC = 9 layers) is taken from the configuration published
with the authors' code.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._errors import positive_int
from .architecture import Architecture
from .arguments import int_sequence
from .layers import GlobalAvgPool, halving_pool, layer_kinds


def conv_stack(
    layout: Sequence[int | str], input_shape: Sequence[int], batch_norm: bool, conv_bias: bool
) -> tuple[nn.Sequential, int, tuple[int, ...]]:
    """The feature extractor of the plain CNNs, from a VGG-style layout.

    Each int of ``layout`` adds a 3x3 convolution (padding 1) with that many output channels,
    then batch normalization if ``batch_norm``, then a ReLU; each ``"M"`` adds a
    :func:`~lossatlas.models.layers.halving_pool`. 1-D layers for ``(C, L)`` inputs, 2-D for
    ``(C, H, W)``.

    Returns
    -------
    features : torch.nn.Sequential
    channels : int
        Channels of its output.
    size : tuple of int
        Spatial size of its output.

    Examples
    --------
    >>> features, channels, size = conv_stack((8, "M", 16, "M"), (1, 8, 8), True, False)
    >>> channels, size, len(features)
    (16, (2, 2), 8)
    """
    ndim = len(input_shape) - 1
    conv, bn, _ = layer_kinds(ndim)
    cin, size = int(input_shape[0]), tuple(input_shape[1:])
    layers: list[nn.Module] = []
    for item in layout:
        if item == "M":
            pool, size = halving_pool(ndim, size)
            layers.append(pool)
            continue
        layers.append(conv(cin, int(item), kernel_size=3, padding=1, bias=conv_bias))
        if batch_norm:
            layers.append(bn(int(item)))
        layers.append(nn.ReLU())
        cin = int(item)
    return nn.Sequential(*layers), cin, size


class SmallCNN(Architecture, arch="smallcnn", ranks=(2, 3), init_scheme="torch"):
    """Conv blocks (3x3 conv, optional BN, ReLU, 2x max-pool) and a one-hidden-layer head.

    Uses 1-D layers for ``(C, L)`` inputs (e.g. mnist1d, ``(1, 40)``) and 2-D layers for
    ``(C, H, W)`` inputs (digits ``(1, 8, 8)``, MNIST, CIFAR). Pooling skips dimensions that are
    already of size 1, so tiny inputs work.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is
        ``(C, L)`` or ``(C, H, W)``.
    channels : sequence of int, default (16, 32)
        Output channels of the conv blocks (one block per entry).
    hidden : int or None, default 64
        Width of the hidden layer of the head; ``None`` or 0 gives a single linear layer.
    batch_norm : bool, default False
        Add batch normalization after each convolution (the convolution then has no bias,
        which would be redundant and a perfectly flat direction of the landscape).

    Examples
    --------
    >>> net = SmallCNN((1, 40), 10)
    >>> net(torch.zeros(4, 1, 40)).shape
    torch.Size([4, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int | None = 64,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(input_shape, num_classes)
        channels = int_sequence(channels, "channels", allow_empty=False)
        if hidden is not None and hidden != 0:
            hidden = positive_int("hidden", hidden)
        else:
            hidden = None
        layout = [item for c in channels for item in (c, "M")]
        self.features, cin, size = conv_stack(layout, self.input_shape, batch_norm, not batch_norm)
        flat = cin * math.prod(size)
        if hidden is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, self.num_classes))
        else:
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, self.num_classes)
            )
        self.finish(channels=channels, hidden=hidden, batch_norm=bool(batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------- SmallVGG


class SmallVGG(Architecture, arch="smallvgg", ranks=(2, 3), init_scheme="he"):
    """A small VGG-like network: stages of 3x3 convs with BN and ReLU, each ending in a max-pool.

    Global average pooling feeds the linear classifier, so any input size works. 1-D layers for
    ``(C, L)`` inputs, 2-D for ``(C, H, W)``.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is
        ``(C, L)`` or ``(C, H, W)``.
    channels : sequence of int, default (16, 32, 64)
        Channels of each stage.
    batch_norm : bool, default True
        Batch normalization after each convolution (convolutions then have no bias).
    convs_per_stage : int, default 2
        Number of conv layers in each stage, as in VGG.

    Examples
    --------
    Trained on 28x28 digits, the same network takes any other size too:

    >>> net = SmallVGG((1, 28, 28), 10, channels=(8, 16))
    >>> tuple(net(torch.zeros(3, 1, 20, 36)).shape)
    (3, 10)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        batch_norm: bool = True,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__(input_shape, num_classes)
        channels = int_sequence(channels, "channels", allow_empty=False)
        convs_per_stage = positive_int("convs_per_stage", convs_per_stage)
        layout = [item for c in channels for item in (c,) * convs_per_stage + ("M",)]
        self.features, cin, _ = conv_stack(layout, self.input_shape, batch_norm, not batch_norm)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(cin, self.num_classes)
        self.finish(channels=channels, batch_norm=bool(batch_norm), convs_per_stage=convs_per_stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


# --------------------------------------------------------------------------- VGG-9

# 7 conv layers ("M" = 2x max-pool); with the two FC layers below that makes Li et al.'s VGG-9.
_VGG9_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG9(Architecture, arch="vgg9", ranks=(3,), init_scheme="he"):
    """The VGG-9 of Li et al. (CIFAR-10, with batch normalization): 7 conv + 2 FC layers.

    Conv layers 64, 64, pool, 128, 128, pool, 256, 256, 256, pool (3x3, padding 1, each followed
    by BN and ReLU), then a fully connected layer of 256 units with BN and ReLU on the flattened
    feature map, then the linear classifier. About 2.79M parameters on CIFAR-10. As in the
    authors' model, the convolutions keep their biases even with BN.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is
        ``(C, H, W)``; any size (pooling uses ``ceil_mode`` and skips dimensions of size 1).
    batch_norm : bool, default True
        Batch normalization after every conv layer and the hidden FC layer.
    width : int, default 1
        Multiplies every layer's channel count (and the FC width).

    Examples
    --------
    >>> from lossatlas.models import count_parameters
    >>> round(count_parameters(VGG9((3, 32, 32), 10)) / 1e6, 2)
    2.79
    """

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, batch_norm: bool = True, width: int = 1
    ) -> None:
        super().__init__(input_shape, num_classes)
        width = positive_int("width", width)
        layout = [item if item == "M" else int(item) * width for item in _VGG9_LAYOUT]
        # As in the authors' model, the convolutions keep their biases even with BN.
        self.features, cin, size = conv_stack(layout, self.input_shape, batch_norm, True)
        fc: list[nn.Module] = [nn.Flatten(), nn.Linear(cin * math.prod(size), cin)]
        if batch_norm:
            fc.append(nn.BatchNorm1d(cin))
        fc.append(nn.ReLU())
        self.fc = nn.Sequential(*fc)
        self.classifier = nn.Linear(cin, self.num_classes)
        self.finish(batch_norm=bool(batch_norm), width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x)))

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
from .arguments import int_sequence, make_spec, sample_shape
from .init import initialize
from .layers import GlobalAvgPool, halving_pool, layer_kinds


class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, optional BN, ReLU, 2x max-pool) and a one-hidden-layer head.

    Uses 1-D layers for ``(C, L)`` inputs (e.g. mnist1d, ``(1, 40)``) and 2-D layers for
    ``(C, H, W)`` inputs (digits ``(1, 8, 8)``, MNIST, CIFAR). Pooling skips dimensions that are
    already of size 1, so tiny inputs work.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, L)`` or ``(C, H, W)``.
    num_classes : int
        Number of output logits.
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

    #: Initialization scheme of :func:`lossatlas.models.init.initialize` (also for seeded builds).
    init_scheme = "torch"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int | None = 64,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        shape = sample_shape(input_shape, "smallcnn", (2, 3))
        num_classes = positive_int("num_classes", num_classes)
        channels = int_sequence(channels, "channels", allow_empty=False)
        if hidden is not None and hidden != 0:
            hidden = positive_int("hidden", hidden)
        else:
            hidden = None
        ndim = len(shape) - 1
        conv, bn, _ = layer_kinds(ndim)
        size = shape[1:]
        cin = shape[0]
        feats: list[nn.Module] = []
        for c in channels:
            feats.append(conv(cin, c, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                feats.append(bn(c))
            feats.append(nn.ReLU())
            pool, size = halving_pool(ndim, size)
            feats.append(pool)
            cin = c
        self.features = nn.Sequential(*feats)
        flat = cin * math.prod(size)
        if hidden is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))
        else:
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )
        self.spec = make_spec(
            "smallcnn",
            shape,
            num_classes,
            channels=channels,
            hidden=hidden,
            batch_norm=bool(batch_norm),
        )
        initialize(self, None, self.init_scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------- SmallVGG


class SmallVGG(nn.Module):
    """A small VGG-like network: stages of 3x3 convs with BN and ReLU, each ending in a max-pool.

    Global average pooling feeds the linear classifier, so any input size works. 1-D layers for
    ``(C, L)`` inputs, 2-D for ``(C, H, W)``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, L)`` or ``(C, H, W)``.
    num_classes : int
        Number of output logits.
    channels : sequence of int, default (16, 32, 64)
        Channels of each stage.
    batch_norm : bool, default True
        Batch normalization after each convolution (convolutions then have no bias).
    convs_per_stage : int, default 2
        Number of conv layers in each stage, as in VGG.

    Examples
    --------
    >>> net = SmallVGG((1, 28, 28), 10)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    #: Initialization scheme of :func:`lossatlas.models.init.initialize` (also for seeded builds).
    init_scheme = "he"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        batch_norm: bool = True,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__()
        shape = sample_shape(input_shape, "smallvgg", (2, 3))
        num_classes = positive_int("num_classes", num_classes)
        channels = int_sequence(channels, "channels", allow_empty=False)
        convs_per_stage = positive_int("convs_per_stage", convs_per_stage)
        ndim = len(shape) - 1
        conv, bn, _ = layer_kinds(ndim)
        size = shape[1:]
        cin = shape[0]
        feats: list[nn.Module] = []
        for c in channels:
            for _ in range(convs_per_stage):
                feats.append(conv(cin, c, kernel_size=3, padding=1, bias=not batch_norm))
                if batch_norm:
                    feats.append(bn(c))
                feats.append(nn.ReLU())
                cin = c
            pool, size = halving_pool(ndim, size)
            feats.append(pool)
        self.features = nn.Sequential(*feats)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(cin, num_classes)
        self.spec = make_spec(
            "smallvgg",
            shape,
            num_classes,
            channels=channels,
            batch_norm=bool(batch_norm),
            convs_per_stage=convs_per_stage,
        )
        initialize(self, None, self.init_scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


# --------------------------------------------------------------------------- VGG-9

# 7 conv layers ("M" = 2x max-pool); with the two FC layers below that makes Li et al.'s VGG-9.
_VGG9_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG9(nn.Module):
    """The VGG-9 of Li et al. (CIFAR-10, with batch normalization): 7 conv + 2 FC layers.

    Conv layers 64, 64, pool, 128, 128, pool, 256, 256, 256, pool (3x3, padding 1, each followed
    by BN and ReLU), then a fully connected layer of 256 units with BN and ReLU on the flattened
    feature map, then the linear classifier. About 2.79M parameters on CIFAR-10. As in the
    authors' model, the convolutions keep their biases even with BN.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``; any size (pooling uses ``ceil_mode`` and skips dimensions of size 1).
    num_classes : int
        Number of output logits.
    batch_norm : bool, default True
        Batch normalization after every conv layer and the hidden FC layer.
    width : int, default 1
        Multiplies every layer's channel count (and the FC width).

    Examples
    --------
    >>> net = VGG9((3, 32, 32), 10)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    #: Initialization scheme of :func:`lossatlas.models.init.initialize` (also for seeded builds).
    init_scheme = "he"

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, batch_norm: bool = True, width: int = 1
    ) -> None:
        super().__init__()
        shape = sample_shape(input_shape, "vgg9", (3,))
        num_classes = positive_int("num_classes", num_classes)
        width = positive_int("width", width)
        size = shape[1:]
        cin = shape[0]
        feats: list[nn.Module] = []
        for item in _VGG9_LAYOUT:
            if item == "M":
                pool, size = halving_pool(2, size)
                feats.append(pool)
                continue
            c = int(item) * width
            feats.append(nn.Conv2d(cin, c, kernel_size=3, padding=1))
            if batch_norm:
                feats.append(nn.BatchNorm2d(c))
            feats.append(nn.ReLU())
            cin = c
        self.features = nn.Sequential(*feats)
        fc: list[nn.Module] = [nn.Flatten(), nn.Linear(cin * math.prod(size), cin)]
        if batch_norm:
            fc.append(nn.BatchNorm1d(cin))
        fc.append(nn.ReLU())
        self.fc = nn.Sequential(*fc)
        self.classifier = nn.Linear(cin, num_classes)
        self.spec = make_spec("vgg9", shape, num_classes, batch_norm=bool(batch_norm), width=width)
        initialize(self, None, self.init_scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x)))

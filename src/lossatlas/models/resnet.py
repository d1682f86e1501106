"""CIFAR ResNets of He et al. (depth 6n+2), with or without skip connections.

ResNet-20/56/110 follow He et al., *Deep residual learning* (CIFAR nets, 6n+2 layers, option-A
shortcuts); the "noshort" variants and the widened ones follow Li et al., *Visualizing the loss
landscape of neural nets*, Sec. 6.1 (skip connections removed, widths multiplied by k for
"Wide-ResNet-56").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import positive_int, require
from .architecture import Architecture
from .arguments import blocks_per_stage
from .layers import GlobalAvgPool


class _BasicBlock(nn.Module):
    """Post-activation basic block of He et al.; ``shortcut`` is None (no skip), "A" or "B"."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut
        self.stride = stride
        self.extra = cout - cin
        self.proj: nn.Module | None = None
        if shortcut == "B" and (stride != 1 or cin != cout):
            self.proj = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            if self.proj is not None:
                skip = self.proj(x)
            else:
                # Option A: subsample and zero-pad the new channels, adding no parameters.
                skip = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
                if self.extra > 0:
                    skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra))
            out = out + skip
        return F.relu(out)


class ResNet(Architecture, arch="resnet", ranks=(3,), init_scheme="he"):
    """CIFAR ResNet of He et al. (depth 6n+2), optionally without skip connections.

    A 3x3 stem conv, three stages of n basic blocks with 16, 32, 64 channels (times ``width``),
    strides 1, 2, 2, global average pooling and a linear classifier. ``shortcut=False`` gives
    Li et al.'s "noshort" networks; ``width=k`` their "Wide-ResNet-56, k" (every layer k times
    wider). ``channels`` sets the first stage's channels (default He et al.'s 16; the stages then
    have ``channels``, 2x and 4x that, times ``width``), for networks narrower than the published
    ones. Build it with :func:`resnet` or ``build("resnet56", ...)``.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is
        ``(C, H, W)``; any size (global average pooling before the classifier).
    depth : int, default 20
        6n+2: 20, 32, 44, 56, 110, ...
    shortcut : bool, default True
        Keep the skip connections.
    width : int, default 1
        Channel multiplier of every layer.
    channels : int, default 16
        Channels of the first stage before ``width`` multiplies them (He et al.: 16).
    shortcut_type : {"A", "B"}, default "A"
        Where a block changes shape: "A" subsamples and zero-pads (no parameters; the published
        0.27M of ResNet-20), "B" uses a 1x1 conv + BN projection (as in Li et al.'s released
        code; with it, the noshort variants have fewer parameters than the originals).

    Examples
    --------
    >>> from lossatlas.models import count_parameters
    >>> net = ResNet((3, 32, 32), 10, depth=20)
    >>> count_parameters(net)
    269722
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        shortcut: bool = True,
        width: int = 1,
        shortcut_type: str = "A",
        channels: int = 16,
    ) -> None:
        super().__init__(input_shape, num_classes)
        width = positive_int("width", width)
        channels = positive_int("channels", channels)
        n = blocks_per_stage(depth, 2, "resnet", (20, 32, 44, 56, 110))
        require(
            shortcut_type in ("A", "B"),
            f"shortcut_type must be 'A' (identity with zero-padding) or 'B' (1x1 conv "
            f"projection); got {shortcut_type!r}",
        )
        kind = shortcut_type if shortcut else None
        c0 = channels * width
        self.conv1 = nn.Conv2d(self.input_shape[0], c0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        blocks: list[nn.Module] = []
        cin = c0
        for stage, base in enumerate((channels, 2 * channels, 4 * channels)):
            cout = base * width
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_BasicBlock(cin, cout, stride, kind))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = GlobalAvgPool()
        self.linear = nn.Linear(cin, self.num_classes)
        self.finish(depth=depth, shortcut=bool(shortcut), width=width, shortcut_type=shortcut_type, channels=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return self.linear(self.pool(out))


def resnet(
    depth: int,
    input_shape: Sequence[int],
    num_classes: int,
    shortcut: bool = True,
    width: int = 1,
    shortcut_type: str = "A",
    channels: int = 16,
) -> ResNet:
    """CIFAR ResNet-``depth`` of He et al.; ``shortcut=False`` gives Li et al.'s noshort net.

    See :class:`ResNet` for the parameters.

    Examples
    --------
    >>> net = resnet(56, (3, 32, 32), 10, shortcut=False)
    >>> net.spec["name"], net.spec["depth"], net.spec["shortcut"]
    ('resnet', 56, False)
    """
    return ResNet(
        input_shape,
        num_classes,
        depth=depth,
        shortcut=shortcut,
        width=width,
        shortcut_type=shortcut_type,
        channels=channels,
    )

"""Wide ResNets WRN-d-k of Zagoruyko & Komodakis, *Wide residual networks* (pre-activation basic
blocks, depth 6n+4, widths 16, 16k, 32k, 64k), as used by Horoi et al. (WRN-28-2).
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


class _PreActBlock(nn.Module):
    """Wide-ResNet block: BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3 plus the shortcut.

    When the shape changes, the 1x1 projection sees the pre-activated input, as in Zagoruyko &
    Komodakis' reference model.
    """

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.proj: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.proj = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        skip = x if self.proj is None else self.proj(pre)
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + skip


class WideResNet(Architecture, arch="wrn", ranks=(3,), init_scheme="he"):
    """Wide ResNet WRN-d-k of Zagoruyko & Komodakis (pre-activation, depth 6n+4).

    A 3x3 stem conv with 16 channels, three groups of n blocks with 16k, 32k, 64k channels
    (strides 1, 2, 2), a final BN-ReLU, global average pooling and a linear classifier.
    WRN-28-2 has about 1.47M parameters on CIFAR-10 and WRN-16-2 about 0.69M.

    Parameters
    ----------
    input_shape, num_classes
        As for every :class:`~lossatlas.models.Architecture`; here input_shape is
        ``(C, H, W)``; any size.
    depth : int, default 28
        6n+4: 10, 16, 22, 28, 40, ...
    k : int, default 2
        Widening factor.
    dropout : float, default 0.0
        Dropout between the two convolutions of each block (active in train mode only; under
        ``torch.vmap`` in train mode pass ``randomness="different"`` or ``"same"``).

    Examples
    --------
    WRN-16-2 has (16 - 4) / 6 = 2 blocks in each of its three groups:

    >>> len(WideResNet((3, 32, 32), 10, depth=16, k=2).layers)
    6
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 28,
        k: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        k = positive_int("k (the widening factor)", k)
        n = blocks_per_stage(depth, 4, "wrn", (10, 16, 22, 28, 40))
        require(
            isinstance(dropout, (int, float)) and 0.0 <= float(dropout) < 1.0,
            f"dropout must be a probability in [0, 1); got {dropout!r}",
        )
        self.conv1 = nn.Conv2d(self.input_shape[0], 16, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        cin = 16
        for stage, base in enumerate((16, 32, 64)):
            cout = base * k
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_PreActBlock(cin, cout, stride, float(dropout)))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = GlobalAvgPool()
        self.linear = nn.Linear(cin, self.num_classes)
        self.finish(depth=depth, k=k, dropout=float(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.linear(self.pool(out))


def wide_resnet(
    depth: int, k: int, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0
) -> WideResNet:
    """Wide ResNet WRN-``depth``-``k``; see :class:`WideResNet`.

    Examples
    --------
    >>> from lossatlas.models import count_parameters
    >>> net = wide_resnet(28, 2, (3, 32, 32), 10)
    >>> round(count_parameters(net) / 1e6, 2)
    1.47
    """
    return WideResNet(input_shape, num_classes, depth=depth, k=k, dropout=dropout)

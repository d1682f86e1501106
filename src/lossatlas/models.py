"""Built-in architectures for the papers' experiments, buildable by name from a config.

Every model takes ``input_shape`` (without the batch dimension: ``(C, H, W)`` for images,
``(C, L)`` for 1-D signals, ``(D,)`` for flat vectors) and ``num_classes``, and maps a batch to
logits ``[N, num_classes]``. Each carries a ``spec`` dict (plain lists, ints, strings) so that
``build(**model.spec)`` rebuilds the same architecture, which is what configs and checkpoints
store.

Forward passes avoid in-place operations so that landscapes can be evaluated with
``torch.func.functional_call`` under ``torch.vmap`` over stacks of parameter sets.

Sources for the architectures:

- ResNet-20/56/110 and their "noshort" variants: He et al., *Deep residual learning* (CIFAR
  nets, 6n+2 layers, option-A shortcuts) and Li et al., *Visualizing the loss landscape of neural
  nets*, Sec. 6.1 (skip connections removed, widths multiplied by k for "Wide-ResNet-56").
- VGG-9: Li et al., Sec. 5 ("a 9-layer VGG network with Batch Normalization"); the paper gives no
  layer table, so the layout (7 conv layers 64, 64, M, 128, 128, M, 256, 256, 256, M, then a
  256-unit fully connected layer with BN and the classifier: 7 conv + 2 FC = 9 layers) is taken
  from the configuration published with the authors' code.
- WRN-d-k: Zagoruyko & Komodakis, *Wide residual networks* (pre-activation basic blocks,
  depth 6n+4, widths 16, 16k, 32k, 64k), as used by Horoi et al. (WRN-28-2).
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._errors import InputError, require

__all__ = [
    "MODELS",
    "MLP",
    "SmallCNN",
    "SmallVGG",
    "VGG9",
    "ResNet",
    "WideResNet",
    "resnet",
    "wide_resnet",
    "build",
    "model_names",
    "count_parameters",
]

#: Base names accepted by :func:`build` (each also takes its architecture's kwargs).
MODELS = ("mlp", "smallcnn", "smallvgg", "vgg9", "resnet", "wrn")

# Named instances from the papers; `build` also accepts any "resnet<D>[-noshort]" and "wrn-<D>-<K>".
_EXAMPLES = (
    "resnet20",
    "resnet56",
    "resnet110",
    "resnet20-noshort",
    "resnet56-noshort",
    "resnet110-noshort",
    "wrn-16-2",
    "wrn-28-2",
)

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
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


# --------------------------------------------------------------------------- validation helpers


def _shape(input_shape: Any, arch: str, ranks: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = all(int(s) == s for s in input_shape)
    except (TypeError, ValueError):
        shape, ok = (), False
    require(
        ok and len(shape) > 0 and all(s >= 1 for s in shape),
        f"input_shape must be a tuple of positive ints without the batch dimension, "
        f"e.g. (3, 32, 32); got {input_shape!r}",
    )
    expected = {
        1: "(D,) for flat vectors, e.g. (784,)",
        2: "(C, L) for 1-D signals, e.g. (1, 40)",
        3: "(C, H, W) for images, e.g. (3, 32, 32)",
    }
    require(
        len(shape) in ranks,
        f"{arch} needs input_shape " + " or ".join(expected[r] for r in ranks)
        + f"; got {shape} (give the shape of one sample, without the batch dimension)",
    )
    return shape


def _positive_int(value: Any, what: str) -> int:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{what} must be a positive int; got {value!r}",
    )
    return int(value)


def _int_tuple(values: Any, what: str, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(values, int):
        values = (values,)
    try:
        out = tuple(values)
    except TypeError:
        out = (None,)
    require(
        all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out)
        and (allow_empty or len(out) > 0),
        f"{what} must be a {'possibly empty ' if allow_empty else 'non-empty '}sequence of "
        f"positive ints; got {values!r}",
    )
    return out


def _spec(name: str, shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> dict[str, Any]:
    # Lists, not tuples, so the spec survives yaml.safe_dump / json round trips unchanged.
    spec: dict[str, Any] = {"name": name, "input_shape": list(shape), "num_classes": num_classes}
    for key, value in kwargs.items():
        spec[key] = list(value) if isinstance(value, tuple) else value
    return spec


# --------------------------------------------------------------------------- initialization


def _reset(model: nn.Module, generator: torch.Generator | None, conv_init: str) -> None:
    """(Re)initialize every parameter and buffer of ``model`` from ``generator``.

    Both the plain constructors (``generator=None``: torch's global RNG) and seeded builds go
    through here, so seeded and unseeded models share one distribution.
    ``conv_init="torch"`` reproduces torch's default layer init; ``"he"`` uses He-normal
    (fan-out) convolutions as He et al. and Zagoruyko & Komodakis do.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                w = m.weight
                fan_in = w.shape[1] * math.prod(w.shape[2:])
                if conv_init == "he" and not isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(
                        w, mode="fan_out", nonlinearity="relu", generator=generator
                    )
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                else:
                    # kaiming_uniform(a=sqrt(5)) is torch's own default for Linear and Conv.
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
                    if m.bias is not None:
                        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                # Also needed after `to_empty`, which leaves running statistics uninitialized.
                m.reset_running_stats()
                if m.affine:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- small building blocks


class _GlobalAvgPool(nn.Module):
    """Mean over all spatial positions: works for any input size, 1-D or 2-D, and under vmap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


def _layers(ndim: int) -> tuple[type, type, type]:
    if ndim == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d


def _pool(ndim: int, size: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """A 2x max-pool that skips dimensions already of size 1, and the size it leaves.

    Skipping keeps tiny inputs (8x8 digits, or an image whose height is 1) usable with the same
    number of blocks; ``ceil_mode`` keeps the last row/column of odd sizes.
    """
    kernel = tuple(2 if s >= 2 else 1 for s in size)
    if all(k == 1 for k in kernel):
        return nn.Identity(), size
    _, _, pool = _layers(ndim)
    k = kernel[0] if ndim == 1 else kernel
    new = tuple(-(-s // kk) for s, kk in zip(size, kernel))
    return pool(kernel_size=k, stride=k, ceil_mode=True), new


# --------------------------------------------------------------------------- MLP


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

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "torch"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "mlp", (1, 2, 3))
        num_classes = _positive_int(num_classes, "num_classes")
        hidden = _int_tuple(hidden, "hidden", allow_empty=True)
        require(
            activation in _ACTIVATIONS,
            f"unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}",
        )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[activation]())
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        self.spec = _spec(
            "mlp",
            shape,
            num_classes,
            hidden=hidden,
            activation=activation,
            batch_norm=bool(batch_norm),
        )
        _reset(self, None, self._conv_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- SmallCNN


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

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "torch"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int | None = 64,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "smallcnn", (2, 3))
        num_classes = _positive_int(num_classes, "num_classes")
        channels = _int_tuple(channels, "channels", allow_empty=False)
        if hidden is not None and hidden != 0:
            hidden = _positive_int(hidden, "hidden")
        else:
            hidden = None
        ndim = len(shape) - 1
        conv, bn, _ = _layers(ndim)
        size = shape[1:]
        cin = shape[0]
        feats: list[nn.Module] = []
        for c in channels:
            feats.append(conv(cin, c, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                feats.append(bn(c))
            feats.append(nn.ReLU())
            pool, size = _pool(ndim, size)
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
        self.spec = _spec(
            "smallcnn",
            shape,
            num_classes,
            channels=channels,
            hidden=hidden,
            batch_norm=bool(batch_norm),
        )
        _reset(self, None, self._conv_init)

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

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "he"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        batch_norm: bool = True,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "smallvgg", (2, 3))
        num_classes = _positive_int(num_classes, "num_classes")
        channels = _int_tuple(channels, "channels", allow_empty=False)
        convs_per_stage = _positive_int(convs_per_stage, "convs_per_stage")
        ndim = len(shape) - 1
        conv, bn, _ = _layers(ndim)
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
            pool, size = _pool(ndim, size)
            feats.append(pool)
        self.features = nn.Sequential(*feats)
        self.pool = _GlobalAvgPool()
        self.classifier = nn.Linear(cin, num_classes)
        self.spec = _spec(
            "smallvgg",
            shape,
            num_classes,
            channels=channels,
            batch_norm=bool(batch_norm),
            convs_per_stage=convs_per_stage,
        )
        _reset(self, None, self._conv_init)

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

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "he"

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, batch_norm: bool = True, width: int = 1
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "vgg9", (3,))
        num_classes = _positive_int(num_classes, "num_classes")
        width = _positive_int(width, "width")
        size = shape[1:]
        cin = shape[0]
        feats: list[nn.Module] = []
        for item in _VGG9_LAYOUT:
            if item == "M":
                pool, size = _pool(2, size)
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
        self.spec = _spec("vgg9", shape, num_classes, batch_norm=bool(batch_norm), width=width)
        _reset(self, None, self._conv_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x)))


# --------------------------------------------------------------------------- CIFAR ResNets


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


class ResNet(nn.Module):
    """CIFAR ResNet of He et al. (depth 6n+2), optionally without skip connections.

    A 3x3 stem conv, three stages of n basic blocks with 16, 32, 64 channels (times ``width``),
    strides 1, 2, 2, global average pooling and a linear classifier. ``shortcut=False`` gives
    Li et al.'s "noshort" networks; ``width=k`` their "Wide-ResNet-56, k" (every layer k times
    wider). Build it with :func:`resnet` or ``build("resnet56", ...)``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``; any size (global average pooling before the classifier).
    num_classes : int
        Number of output logits.
    depth : int, default 20
        6n+2: 20, 32, 44, 56, 110, ...
    shortcut : bool, default True
        Keep the skip connections.
    width : int, default 1
        Channel multiplier of every layer.
    shortcut_type : {"A", "B"}, default "A"
        Where a block changes shape: "A" subsamples and zero-pads (no parameters; the published
        0.27M of ResNet-20), "B" uses a 1x1 conv + BN projection (as in Li et al.'s released
        code; with it, the noshort variants have fewer parameters than the originals).

    Examples
    --------
    >>> net = ResNet((3, 32, 32), 10, depth=20)
    >>> count_parameters(net)
    269722
    """

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "he"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        shortcut: bool = True,
        width: int = 1,
        shortcut_type: str = "A",
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "resnet", (3,))
        num_classes = _positive_int(num_classes, "num_classes")
        width = _positive_int(width, "width")
        require(
            isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0,
            f"resnet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...); got {depth!r}",
        )
        require(
            shortcut_type in ("A", "B"),
            f"shortcut_type must be 'A' (identity with zero-padding) or 'B' (1x1 conv "
            f"projection); got {shortcut_type!r}",
        )
        n = (depth - 2) // 6
        kind = shortcut_type if shortcut else None
        c0 = 16 * width
        self.conv1 = nn.Conv2d(shape[0], c0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        blocks: list[nn.Module] = []
        cin = c0
        for stage, base in enumerate((16, 32, 64)):
            cout = base * width
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_BasicBlock(cin, cout, stride, kind))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = _GlobalAvgPool()
        self.linear = nn.Linear(cin, num_classes)
        self.spec = _spec(
            "resnet",
            shape,
            num_classes,
            depth=depth,
            shortcut=bool(shortcut),
            width=width,
            shortcut_type=shortcut_type,
        )
        _reset(self, None, self._conv_init)

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
    )


# --------------------------------------------------------------------------- Wide ResNets


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


class WideResNet(nn.Module):
    """Wide ResNet WRN-d-k of Zagoruyko & Komodakis (pre-activation, depth 6n+4).

    A 3x3 stem conv with 16 channels, three groups of n blocks with 16k, 32k, 64k channels
    (strides 1, 2, 2), a final BN-ReLU, global average pooling and a linear classifier.
    WRN-28-2 has about 1.47M parameters on CIFAR-10 and WRN-16-2 about 0.69M.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``; any size.
    num_classes : int
        Number of output logits.
    depth : int, default 28
        6n+4: 10, 16, 22, 28, 40, ...
    k : int, default 2
        Widening factor.
    dropout : float, default 0.0
        Dropout between the two convolutions of each block (active in train mode only; under
        ``torch.vmap`` in train mode pass ``randomness="different"`` or ``"same"``).

    Examples
    --------
    >>> net = WideResNet((3, 32, 32), 10, depth=16, k=2)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    # Initialization scheme used by `_reset` (also for seeded builds).
    _conv_init = "he"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 28,
        k: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        shape = _shape(input_shape, "wrn", (3,))
        num_classes = _positive_int(num_classes, "num_classes")
        k = _positive_int(k, "k (the widening factor)")
        require(
            isinstance(depth, int) and depth >= 10 and (depth - 4) % 6 == 0,
            f"wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...); got {depth!r}",
        )
        require(
            isinstance(dropout, (int, float)) and 0.0 <= float(dropout) < 1.0,
            f"dropout must be a probability in [0, 1); got {dropout!r}",
        )
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(shape[0], 16, 3, padding=1, bias=False)
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
        self.pool = _GlobalAvgPool()
        self.linear = nn.Linear(cin, num_classes)
        self.spec = _spec("wrn", shape, num_classes, depth=depth, k=k, dropout=float(dropout))
        _reset(self, None, self._conv_init)

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
    >>> net = wide_resnet(28, 2, (3, 32, 32), 10)
    >>> round(count_parameters(net) / 1e6, 2)
    1.47
    """
    return WideResNet(input_shape, num_classes, depth=depth, k=k, dropout=dropout)


# --------------------------------------------------------------------------- registry and build

_CLASSES: dict[str, type] = {
    "mlp": MLP,
    "smallcnn": SmallCNN,
    "smallvgg": SmallVGG,
    "vgg9": VGG9,
    "resnet": ResNet,
    "wrn": WideResNet,
}

_ALIASES = {
    "small-cnn": "smallcnn",
    "cnn": "smallcnn",
    "small-vgg": "smallvgg",
    "vgg-9": "vgg9",
    "wide-resnet": "wrn",
    "wideresnet": "wrn",
}


def _unknown(name: Any) -> InputError:
    return InputError(
        f"unknown model {name!r}; known models: {', '.join(MODELS)}, and named variants such as "
        f"{', '.join(_EXAMPLES)} (generally 'resnet<6n+2>[-noshort]' and 'wrn-<6n+4>-<k>')"
    )


def _resolve(name: Any) -> tuple[str, dict[str, Any]]:
    """Map a model name to its base name and the kwargs the name fixes."""
    if not isinstance(name, str):
        raise _unknown(name)
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in _CLASSES:
        return key, {}
    m = re.fullmatch(r"resnet-?(\d+)?(-noshort)?", key)
    if m:
        fixed: dict[str, Any] = {}
        if m.group(1):
            fixed["depth"] = int(m.group(1))
        if m.group(2):
            fixed["shortcut"] = False
        return "resnet", fixed
    m = re.fullmatch(r"(?:wrn|wide-?resnet)-?(\d+)-(\d+)", key)
    if m:
        return "wrn", {"depth": int(m.group(1)), "k": int(m.group(2))}
    raise _unknown(name)


def model_names() -> tuple[str, ...]:
    """Names accepted by :func:`build`: the base names, then the papers' named variants.

    Any ``"resnet<D>"``, ``"resnet<D>-noshort"`` (D = 6n+2) and ``"wrn-<D>-<K>"`` (D = 6n+4) is
    accepted too.

    Examples
    --------
    >>> "wrn-28-2" in model_names()
    True
    """
    return MODELS + _EXAMPLES


def build(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a built-in model by name, optionally with a seeded, reproducible initialization.

    Parameters
    ----------
    name : str
        A base name (``"mlp"``, ``"smallcnn"``, ``"smallvgg"``, ``"vgg9"``, ``"resnet"``,
        ``"wrn"``) or a named variant: ``"resnet56"``, ``"resnet56-noshort"``, ``"wrn-28-2"``
        (case and ``-``/``_`` are not significant).
    input_shape : tuple of int
        Shape of one sample without the batch dimension.
    num_classes : int
        Number of output logits.
    seed : int, optional
        If given, parameters are drawn from a private ``torch.Generator`` seeded with it: the
        same seed gives bit-identical parameters and torch's global RNG is neither read nor
        advanced. If None, torch's global RNG is used, as for any module.
    **kwargs
        Keyword arguments of the architecture (e.g. ``hidden=(128,)`` for ``"mlp"``,
        ``width=2`` for ``"resnet56"``).

    Returns
    -------
    torch.nn.Module
        On the CPU, in train mode, with a ``spec`` attribute such that ``build(**model.spec)``
        rebuilds the same architecture (the seed is not part of the spec).

    Raises
    ------
    InputError
        For an unknown name, unknown or conflicting kwargs, or an input shape the architecture
        cannot take.

    Examples
    --------
    >>> a = build("resnet20", (3, 32, 32), 10, seed=0)
    >>> b = build(**a.spec, seed=0)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    base, fixed = _resolve(name)
    cls = _CLASSES[base]
    for key, value in fixed.items():
        require(
            key not in kwargs or kwargs[key] == value,
            f"model name {name!r} sets {key}={value!r} but {key}={kwargs.get(key)!r} was also "
            f"given; drop the keyword or use the base name {base!r}",
        )
    kwargs = {**kwargs, **fixed}
    skip = ("self", "input_shape", "num_classes")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in skip]
    unknown = sorted(set(kwargs) - set(accepted))
    require(
        not unknown,
        f"{base} does not take {', '.join(map(repr, unknown))}; it accepts: {', '.join(accepted)}",
    )
    if seed is None:
        return cls(input_shape, num_classes, **kwargs)
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
        f"seed must be a non-negative int or None; got {seed!r}",
    )
    # Construct without storage (no RNG is touched on the meta device), then draw every
    # parameter from a private generator: reproducible, thread-safe, global RNG untouched.
    with torch.device("meta"):
        model = cls(input_shape, num_classes, **kwargs)
    model = model.to_empty(device="cpu")
    _reset(model, torch.Generator().manual_seed(seed), cls._conv_init)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once).

    Parameters
    ----------
    model : torch.nn.Module
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.

    Examples
    --------
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Load a checkpoint file into ``model`` in place, naming any keys that do not match.

    The file is read with ``torch.load(..., weights_only=True)`` (see
    :func:`lossatlas.store.read_checkpoint`).

    Examples
    --------
    >>> model = build("resnet20", (3, 32, 32), 10)
    >>> load_checkpoint(model, "resnet20.pt")
    """
    from .store import read_checkpoint

    state = read_checkpoint(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {missing[:20]}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:20]}")
        if shapes:
            parts.append(f"different shapes: {shapes[:20]}")
        raise InputError(
            f"the checkpoint {path} does not match the model ({'; '.join(parts)}); check that "
            "--model builds the architecture the checkpoint was saved from"
        )
    model.load_state_dict(state)
    return model

"""The built-in architectures by name: :func:`build` (optionally seeded), the accepted names and
their aliases, and :func:`count_parameters`."""

from __future__ import annotations

import inspect
import re
from typing import Any, Sequence

import torch
from torch import nn

from .._errors import InputError, positive_int, require
from .cnn import VGG9, SmallCNN, SmallVGG
from .init import initialize
from .mlp import MLP
from .resnet import ResNet
from .wide_resnet import WideResNet

#: Base names accepted by :func:`build` (each also takes its architecture's kwargs).
MODELS = ("mlp", "smallcnn", "smallvgg", "vgg9", "resnet", "wrn")

#: Other spellings of the base names (after lower-casing and ``_`` -> ``-``).
ALIASES = {
    "small-cnn": "smallcnn",
    "cnn": "smallcnn",
    "small-vgg": "smallvgg",
    "vgg-9": "vgg9",
    "wide-resnet": "wrn",
    "wideresnet": "wrn",
}

# Named instances from the papers; `build` also accepts any "resnet<D>[-noshort]" and "wrn-<D>-<K>".
_VARIANTS = (
    "resnet20",
    "resnet56",
    "resnet110",
    "resnet20-noshort",
    "resnet56-noshort",
    "resnet110-noshort",
    "wrn-16-2",
    "wrn-28-2",
)

_CLASSES: dict[str, type] = {
    "mlp": MLP,
    "smallcnn": SmallCNN,
    "smallvgg": SmallVGG,
    "vgg9": VGG9,
    "resnet": ResNet,
    "wrn": WideResNet,
}


def _unknown(name: Any) -> InputError:
    return InputError(
        f"unknown model {name!r}; known models: {', '.join(MODELS)}, and named variants such as "
        f"{', '.join(_VARIANTS)} (generally 'resnet<6n+2>[-noshort]' and 'wrn-<6n+4>-<k>')"
    )


def _resolve(name: Any) -> tuple[str, dict[str, Any]]:
    """Map a model name to its base name and the kwargs the name fixes."""
    if not isinstance(name, str):
        raise _unknown(name)
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
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
    return MODELS + _VARIANTS


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
    seed = positive_int("seed (or None)", seed, minimum=0)
    # Construct without storage (no RNG is touched on the meta device), then draw every
    # parameter from a private generator: reproducible, thread-safe, global RNG untouched.
    with torch.device("meta"):
        model = cls(input_shape, num_classes, **kwargs)
    model = model.to_empty(device="cpu")
    initialize(model, torch.Generator(device="cpu").manual_seed(seed), cls.init_scheme)
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

"""A run's own random streams: data order, augmentation and dropout, on the model's device.

Nothing here seeds or draws from torch's global generators, so a run gives the same weights
whatever ran before it and whatever runs beside it in other threads.

Dropout. ``torch.nn.functional.dropout`` and its relatives draw from the global generator of the
device, and take no generator argument. A forward is therefore run inside :class:`RandomStream`,
a ``TorchFunctionMode`` (thread-local, unlike the global generator, which one lock would have to
serialize across threads): it replaces every dropout call by the same mask arithmetic with a mask
drawn from the run's own dropout generator, and hands the run's generator to any other random
draw that names none (``torch.rand``, ``randn_like``, ``Tensor.bernoulli_``...) on that device.

An ensemble (``vmap``) cannot give each member its own generator inside the vmapped forward. Its
members' masks are drawn *before* the forward instead, each from that member's generator, with
the shapes a shape-only pass on the ``meta`` device recorded, and are passed into ``vmap`` as
inputs; :class:`RandomStream` then applies mask ``k`` at the ``k``-th dropout call. A member thus
draws exactly the masks (same shapes, order and generator) that it draws when trained alone.

Not routed: draws made inside a C++ kernel that Python never sees (``nn.LSTM(dropout=...)``,
``scaled_dot_product_attention(dropout_p=...)``). A single run leaves those to torch's global
generator; a vmapped ensemble refuses them (train such models with ``ensemble="sequential"``).
Cost: one Python call per torch function of the forward, measured at about 0.3 ms on an 8 ms
training step of the small CNN on a CPU (a busy 2-core machine, so roughly).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .._errors import InputError

STREAMS = ("order", "augment", "dropout")

# SELU's constants, as torch's alpha dropout uses them.
_ALPHA = 1.7580993408473766


class RunGenerators:
    """The generators of one run, on ``device``, seeded from ``seed`` by independent streams.

    The first two streams (data order, augmentation) are those of earlier lossatlas versions,
    so runs without dropout keep their values.

    Examples
    --------
    >>> gens = RunGenerators(0, torch.device("cpu"))
    >>> perm = torch.randperm(10, generator=gens.order, device=gens.device)
    >>> state = gens.state_dict()   # saved in the resume checkpoint
    """

    def __init__(self, seed: int, device: torch.device):
        self.device = torch.device(device)
        children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
        for name, child in zip(STREAMS, children):
            g = torch.Generator(device=self.device)
            g.manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] >> 1))
            setattr(self, name, g)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).get_state() for name in STREAMS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in STREAMS:
            getattr(self, name).set_state(state[name])


# -- dropout as mask arithmetic -------------------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    """One dropout function: which entries share a mask value, and alpha or plain scaling."""

    # None: element-wise masks. Else feature (channel) dropout, one mask entry per sample and
    # channel, for inputs of at least this rank; a lower rank is one unbatched sample.
    batched_rank: int | None
    alpha: bool = False


_KINDS: dict[Callable, _Kind] = {
    F.dropout: _Kind(None),
    F.dropout1d: _Kind(3),
    F.dropout2d: _Kind(3),  # torch reads a rank-3 input of dropout2d as a batch of 1-D signals
    F.dropout3d: _Kind(5),
    F.alpha_dropout: _Kind(None, alpha=True),
    F.feature_alpha_dropout: _Kind(2, alpha=True),
    torch.dropout: _Kind(None),
    torch.alpha_dropout: _Kind(None, alpha=True),
    torch.feature_dropout: _Kind(2),
    torch.feature_alpha_dropout: _Kind(2, alpha=True),
}


def _mask_shape(kind: _Kind, x: torch.Tensor) -> tuple[int, ...]:
    shape = tuple(x.shape)
    if kind.batched_rank is None:
        return shape
    keep = 2 if x.dim() >= kind.batched_rank else 1
    return shape[:keep] + (1,) * (len(shape) - keep)


def draw_mask(shape: Sequence[int], p: float, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """A keep-mask (1 with probability ``1 - p``) drawn from ``generator``, on its device."""
    return torch.empty(tuple(shape), dtype=dtype, device=generator.device).bernoulli_(1 - p, generator=generator)


def _apply(kind: _Kind, x: torch.Tensor, mask: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
    if kind.alpha:  # keeps the mean and variance of SELU activations, as torch's alpha dropout
        a = 1.0 / ((_ALPHA**2 * p + 1) * (1 - p)) ** 0.5 if p < 1 else 0.0
        b = (mask - 1) * (_ALPHA * a) + _ALPHA * a * p
        return x.mul_(mask * a).add_(b) if inplace else x * (mask * a) + b
    scale = 1.0 / (1 - p) if p < 1 else 0.0
    return x.mul_(mask).mul_(scale) if inplace else x * mask * scale


_SIGNATURES: dict[Callable, inspect.Signature] = {}


def _dropout_args(func, args, kwargs) -> tuple[torch.Tensor, float, bool, bool]:
    """``(input, p, training, inplace)`` of a dropout call, however its arguments were passed."""
    if func not in _SIGNATURES:
        try:
            _SIGNATURES[func] = inspect.signature(func)
        except (TypeError, ValueError):  # torch.dropout and friends are builtins: (input, p, train)
            _SIGNATURES[func] = None
    sig = _SIGNATURES[func]
    if sig is None:
        bound = dict(zip(("input", "p", "train"), args), **kwargs)
        x, p, training, inplace = bound["input"], bound["p"], bound["train"], False
    else:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        x, p, training, inplace = a["input"], a["p"], a["training"], a.get("inplace", False)
    p = float(p)
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return x, p, bool(training), bool(inplace)


# -- every other random draw ------------------------------------------------------------------

_FACTORIES = {torch.rand, torch.randn, torch.randint, torch.randperm}
_FROM_TENSOR = {
    torch.rand_like, torch.randn_like, torch.randint_like, torch.bernoulli, torch.normal, torch.multinomial,
    torch.Tensor.bernoulli, torch.Tensor.bernoulli_, torch.Tensor.uniform_, torch.Tensor.normal_,
    torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_,
    torch.Tensor.log_normal_, torch.Tensor.multinomial,
}


def _target_device(func, args, kwargs) -> torch.device:
    if func not in _FACTORIES:
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor):
                return a.device
    dev = kwargs.get("device")
    return torch.device(dev) if dev is not None else torch.get_default_device()


def _same(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class RandomStream(TorchFunctionMode):
    """Routes the random draws of a forward through a run's own generator (see the module notes).

    Parameters
    ----------
    generator : torch.Generator, optional
        Draw dropout masks (and other draws that name no generator) from it.
    masks : list of Tensor, optional
        Pre-drawn masks, applied in call order (the ensemble's vmapped forward).
    record : list, optional
        Record each dropout call as ``(kind, mask shape, p, dtype)`` and leave its input as is
        (the ensemble's shape pass).

    Examples
    --------
    >>> gens = RunGenerators(0, torch.device("cpu"))
    >>> with RandomStream(gens.dropout):
    ...     out = model(x)          # dropout masks from gens.dropout; the global RNG is untouched
    """

    def __init__(self, generator: torch.Generator | None = None, masks: list | None = None, record: list | None = None):
        super().__init__()
        self.generator, self.masks, self.record = generator, masks, record
        self.used = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = _KINDS.get(func)
        if kind is not None:
            x, p, training, inplace = _dropout_args(func, args, kwargs)
            if not training or p == 0:
                return x
            shape = _mask_shape(kind, x)
            if self.record is not None:
                self.record.append((kind, shape, p, x.dtype))
                return x
            if self.masks is not None:
                if self.used >= len(self.masks) or tuple(self.masks[self.used].shape) != shape:
                    raise InputError(
                        "the model's dropout calls differ from those of its shape pass (dropout in eval mode, "
                        "or calls that depend on the data); train it with ensemble='sequential'"
                    )
                mask = self.masks[self.used]
                self.used += 1
            else:
                mask = draw_mask(shape, p, x.dtype, self.generator)
            return _apply(kind, x, mask, p, inplace)
        if (func in _FACTORIES or func in _FROM_TENSOR) and kwargs.get("generator") is None:
            if self.generator is None:
                raise InputError(
                    f"the model draws random numbers ({getattr(func, '__name__', func)}) outside dropout layers, "
                    "which a vmapped ensemble cannot give each member its own stream for; train it with "
                    "ensemble='sequential'"
                )
            # A draw on another device than the run's (rare: the model's own device is the run's)
            # keeps torch's default generator of that device.
            if _same(_target_device(func, args, kwargs), self.generator.device):
                kwargs = {**kwargs, "generator": self.generator}
        return func(*args, **kwargs)

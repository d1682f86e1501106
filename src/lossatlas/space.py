"""The model's parameters as one flat vector, and directions in that space.

Everything above this floor works on flat 1-D tensors; :class:`ParamSpace` is the one adapter
between an ``nn.Module`` and such vectors. Directions follow Li et al., *Visualizing the loss
landscape of neural nets*: Gaussian, then rescaled per filter (or layer, or model) to the norm of
the parameters they perturb.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ._errors import InputError, parse_enum, positive_int, require
from .store.files import fingerprint

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


class Norm(str, enum.Enum):
    """How a random direction is rescaled (Li et al. section 4)."""

    FILTER = "filter"  # each filter (output channel / row) to the norm of the same filter of theta
    LAYER = "layer"  # each parameter tensor to the norm of the same tensor of theta
    MODEL = "model"  # the whole vector to the norm of theta
    NONE = "none"  # plain Gaussian


class Ignore(str, enum.Enum):
    """Which parameters a direction leaves at zero."""

    BIASBN = "biasbn"  # every 1-D parameter: biases and norm-layer weights (Li et al.'s default)
    NONE = "none"


def parse_norm(norm: str | Norm) -> Norm:
    """``norm`` as a :class:`Norm` (member, value or name)."""
    return parse_enum(Norm, norm, "normalization")


def parse_ignore(ignore) -> Ignore | tuple[str, ...]:
    """``"biasbn"``, ``None``/``"none"``, or glob patterns of parameter names to zero."""
    if ignore is None:
        return Ignore.NONE
    if isinstance(ignore, (str, Ignore)):
        return parse_enum(Ignore, ignore, "ignore rule",
                          hint=", None, or a list of parameter-name patterns such as ['fc.*']")
    patterns = tuple(ignore)
    require(all(isinstance(p, str) for p in patterns), "ignore patterns must be strings")
    return patterns


@dataclass(frozen=True)
class Entry:
    """One parameter tensor's place in the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    kind: str  # "weight", "bias" or "norm"

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)

    @property
    def filters(self) -> int:
        """Number of filters: output channels of a conv, rows of a linear weight; 1 for 1-D."""
        return self.shape[0] if len(self.shape) >= 2 else 1


class ParamSpace:
    """The parameters of a model as one flat vector.

    The order is that of ``model.named_parameters()``, as in
    ``torch.nn.utils.parameters_to_vector``. Parameters that do not require grad are included
    (they are still part of the landscape's point), shared parameters appear once.

    Examples
    --------
    >>> space = ParamSpace(model)
    >>> theta = space.vector(model)          # a copy, 1-D, length space.size
    >>> space.assign(model, theta * 1.0)     # write a vector back into a model
    """

    def __init__(self, model: nn.Module):
        require(isinstance(model, nn.Module), f"expected a torch.nn.Module, got {type(model).__name__}")
        norm_params = set()
        for module in model.modules():
            if isinstance(module, _NORM_TYPES):
                norm_params.update(id(p) for p in module.parameters(recurse=False))
        entries, offset = [], 0
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                kind = "weight"
            elif id(p) in norm_params:
                kind = "norm"
            else:
                kind = "bias"
            entries.append(Entry(name, tuple(p.shape), offset, p.numel(), kind))
            offset += p.numel()
        require(offset > 0, "the model has no parameters")
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.size: int = offset
        self.names: tuple[str, ...] = tuple(e.name for e in entries)
        self.buffer_names: tuple[str, ...] = tuple(n for n, _ in model.named_buffers())
        first = next(model.parameters())
        self.dtype = first.dtype

    def __repr__(self) -> str:
        return f"ParamSpace(size={self.size}, tensors={len(self.entries)})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ParamSpace) and [
            (e.name, e.shape) for e in self.entries
        ] == [(e.name, e.shape) for e in other.entries]

    def __hash__(self):
        return hash(tuple((e.name, e.shape) for e in self.entries))

    # -- model <-> vector -------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`InputError` naming the differences if ``model`` has other parameters."""
        theirs = {n: tuple(p.shape) for n, p in model.named_parameters()}
        ours = {e.name: e.shape for e in self.entries}
        if theirs != ours:
            missing = sorted(set(ours) - set(theirs))
            extra = sorted(set(theirs) - set(ours))
            shape = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])
            raise InputError(
                "the model's parameters do not match this parameter space: "
                f"missing {missing}, unexpected {extra}, different shapes {shape}"
            )

    def vector(self, model: nn.Module | None = None, *, state: dict | None = None) -> torch.Tensor:
        """The parameters as a new 1-D tensor (a copy), from a model or a ``state_dict``."""
        if state is not None:
            missing = [e.name for e in self.entries if e.name not in state]
            require(not missing, f"the state dict lacks the parameters {missing}")
            bad = [e.name for e in self.entries if tuple(state[e.name].shape) != e.shape]
            require(not bad, f"the state dict's tensors {bad} have other shapes than the model's")
            tensors = [state[e.name] for e in self.entries]
        else:
            require(model is not None, "give a model or a state dict")
            self.check_model(model)
            params = dict(model.named_parameters())
            tensors = [params[e.name] for e in self.entries]
        with torch.no_grad():
            return torch.cat([t.detach().reshape(-1) for t in tensors]).clone()

    def assign(self, model: nn.Module, vec: torch.Tensor) -> None:
        """Write ``vec`` into the model's parameters in place."""
        self.check_vector(vec)
        self.check_model(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for e in self.entries:
                p = params[e.name]
                p.copy_(vec[e.slice].view(e.shape).to(device=p.device, dtype=p.dtype))

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``vec`` shaped as the parameters (no copy); works on a [..., P] batch too."""
        lead = vec.shape[:-1]
        return {e.name: vec[..., e.slice].view(*lead, *e.shape) for e in self.entries}

    def split(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``vec``, one per parameter tensor, in order."""
        return [vec[..., e.slice].view(*vec.shape[:-1], *e.shape) for e in self.entries]

    def check_vector(self, vec, what: str = "vector") -> None:
        """Raise :class:`InputError` unless ``vec`` is a finite 1-D tensor of length :attr:`size`."""
        require(isinstance(vec, torch.Tensor), f"the {what} must be a torch.Tensor, got {type(vec).__name__}")
        require(
            vec.dim() == 1 and vec.numel() == self.size,
            f"the {what} has shape {tuple(vec.shape)}, but the model has {self.size} parameters: "
            f"build it with ParamSpace(model).vector(...) or random_directions(model, ...)",
        )
        if not torch.isfinite(vec).all():
            bad = torch.nonzero(~torch.isfinite(vec)).flatten()
            names = sorted({self.locate(int(i)) for i in bad[:1000]})
            raise InputError(
                f"the {what} holds {bad.numel()} NaN or infinite values (in {names[:10]}); "
                "load a checkpoint from before the run diverged"
            )

    def locate(self, index: int) -> str:
        """Name of the parameter tensor holding flat position ``index``."""
        for e in self.entries:
            if e.offset <= index < e.offset + e.numel:
                return e.name
        raise IndexError(index)

    def mask(self, ignore) -> torch.Tensor:
        """Boolean [P] mask, True where a direction is kept under the ignore rule."""
        rule = parse_ignore(ignore)
        keep = torch.ones(self.size, dtype=torch.bool)
        for e in self.entries:
            if rule is Ignore.BIASBN and len(e.shape) <= 1:
                keep[e.slice] = False
            elif isinstance(rule, tuple) and any(fnmatch.fnmatchcase(e.name, p) for p in rule):
                keep[e.slice] = False
        return keep

    def filter_norms(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """Frobenius norm of every filter of every tensor (1-D tensors count as one filter)."""
        return [
            t.reshape(t.shape[0], -1).norm(dim=1) if t.dim() >= 2 else t.norm().reshape(1)
            for t in self.split(vec)
        ]

    def fingerprint(self, vec: torch.Tensor) -> str:
        """Short hash of a vector's exact values (any dtype or device), for provenance and resume checks."""
        return fingerprint(vec)


# -- directions ---------------------------------------------------------------------------

def _space_and_theta(model) -> tuple[ParamSpace, torch.Tensor]:
    space = ParamSpace(model)
    theta = space.vector(model)
    space.check_vector(theta, "model's parameter vector")
    return space, theta


def normalize_direction(
    space: ParamSpace,
    direction: torch.Tensor,
    theta: torch.Tensor,
    norm: str | Norm = "filter",
    ignore="biasbn",
) -> torch.Tensor:
    """Rescale ``direction`` to the scale of ``theta`` (a new tensor).

    ``"filter"``: each filter ``d_i`` becomes ``d_i / ||d_i|| * ||theta_i||`` (Li et al. eq. 1).
    ``"layer"``: the same per parameter tensor. ``"model"``: the whole vector. ``"none"``: as is.
    For ``"filter"`` and ``"layer"`` a 1-D parameter's direction is the parameter itself unless
    the ignore rule zeroes it (as in Li et al.'s code).
    """
    norm = parse_norm(norm)
    space.check_vector(theta, "center")
    require(direction.shape == theta.shape, f"direction has shape {tuple(direction.shape)}, expected ({space.size},)")
    d = direction.detach().to(dtype=theta.dtype).clone()
    eps = 1e-10
    if norm in (Norm.FILTER, Norm.LAYER):
        for e, dt, wt in zip(space.entries, space.split(d), space.split(theta)):
            if len(e.shape) <= 1:
                dt.copy_(wt)
            elif norm is Norm.FILTER:
                d2, w2 = dt.reshape(e.shape[0], -1), wt.reshape(e.shape[0], -1)
                d2.mul_((w2.norm(dim=1) / (d2.norm(dim=1) + eps)).unsqueeze(1))
            else:
                dt.mul_(wt.norm() / (dt.norm() + eps))
    d[~space.mask(ignore)] = 0
    if norm is Norm.MODEL:
        d.mul_(theta.norm() / (d.norm() + eps))
    return d


def gaussian(size: int, seed: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """A standard Gaussian vector drawn from its own generator on ``device`` (default CPU), so
    global RNG state is untouched. The values depend on (seed, device type): a CUDA generator
    draws another stream than the CPU one; save directions to reuse them across devices."""
    device = torch.device(device if device is not None else "cpu")
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(size, generator=gen, dtype=dtype, device=device)


def direction_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for ``n`` directions: direction ``k`` of ``seed`` is the same for any n."""
    ss = np.random.SeedSequence(int(seed))
    return [int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for child in ss.spawn(n)]


def random_directions(
    model: nn.Module,
    n: int = 2,
    norm: str | Norm = "filter",
    ignore="biasbn",
    seed: int = 0,
    theta: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Random directions around a model's parameters, normalized as Li et al.

    Parameters
    ----------
    model : nn.Module
        The model; its parameters give the scale of each filter (unless ``theta`` is given).
    n : int
        Number of directions.
    norm : {"filter", "layer", "model", "none"}
    ignore : "biasbn", None, or list of name patterns
        ``"biasbn"`` zeroes every 1-D parameter (biases, norm-layer weights).
    seed : int
        Direction ``k`` depends only on ``(seed, k)``; global RNG state is not used.
    theta : Tensor, optional
        Scale reference other than the model's current parameters.

    Returns
    -------
    list of 1-D tensors of length ``ParamSpace(model).size``

    Examples
    --------
    >>> d0, d1 = random_directions(model, n=2, norm="filter", ignore="biasbn", seed=0)
    """
    space, model_theta = _space_and_theta(model)
    return make_directions(space, model_theta if theta is None else theta, n, norm, ignore, seed)


def make_directions(
    space: ParamSpace, theta: torch.Tensor, n: int = 2, norm="filter", ignore="biasbn", seed: int = 0
) -> list[torch.Tensor]:
    """:func:`random_directions` for a parameter space and vector instead of a model."""
    positive_int("n", n)
    require(isinstance(seed, (int, np.integer)), f"seed must be an integer, got {seed!r}")
    space.check_vector(theta, "theta")
    return [
        normalize_direction(space, gaussian(space.size, s, theta.dtype, theta.device), theta, norm, ignore)
        for s in direction_seeds(int(seed), n)
    ]


def direction_between(model_a: nn.Module, model_b: nn.Module) -> torch.Tensor:
    """``theta_b - theta_a`` for two models of one architecture (for 1-D interpolation).

    Examples
    --------
    >>> d = direction_between(small_batch_model, large_batch_model)
    >>> line(f, ParamSpace(a).vector(a), ParamSpace(b).vector(b))
    """
    space_a, theta_a = _space_and_theta(model_a)
    space_b, theta_b = _space_and_theta(model_b)
    require(space_a == space_b, "the two models have different parameters; they must share one architecture")
    return theta_b - theta_a


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two vectors (near 0 for random directions in high dimension)."""
    return float(torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm()))


def orthogonalize(directions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gram-Schmidt: the second direction made orthogonal to the first, keeping each norm."""
    out: list[torch.Tensor] = []
    for d in directions:
        v = d.clone()
        for u in out:
            v -= torch.dot(v, u) / torch.dot(u, u) * u
        out.append(v * (d.norm() / v.norm()))
    return out

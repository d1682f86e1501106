"""Mini-batch losses for training a path (a Bezier bend, NEB pivots) at flat parameter vectors.

:class:`Landscape` evaluates fixed data with fixed batch-norm handling; a path is trained like
a network: on shuffled mini-batches, with batch norm normalizing by each batch's own
statistics (train mode), through the model's functional call (the user's module is copied once
and never changed). Dropout stays off, so the only randomness is the explicit generator's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .._errors import InputError, positive_int, require
from ..space import ParamSpace


class _Bound(nn.Module):
    """Calls a module with given parameters and buffers, for ``forward(model, batch)`` callables."""

    def __init__(self, module, state):
        super().__init__()
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_state", state)

    def forward(self, *args, **kwargs):
        from torch.func import functional_call

        return functional_call(self._module, self._state, args, kwargs, strict=False)


def _length(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        return _length(next(iter(batch.values())))
    return _length(batch[0])


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return type(batch)(_to(v, device) for v in batch)


class TrainingLoss:
    """Mean loss of one mini-batch and its gradient at a flat parameter vector.

    Parameters
    ----------
    model : nn.Module
        The architecture (copied; its parameters are replaced by each vector).
    data : (X, y) tensors or an iterable of batches
        Training data. Tensors are reshuffled every epoch by ``generator``; an iterable's
        batches are kept and visited in a reshuffled order.
    loss : str or callable
        A name of :data:`lossatlas.landscape.LOSSES` or ``loss(output, target)`` returning the
        batch mean.
    batch_size : int
        Mini-batch size for tensor data (an incomplete last batch is dropped, so batch norm
        never sees a batch of one).
    generator : torch.Generator
        Shuffles the data (on the data's device).
    forward, target : callable, optional
        As for :class:`Landscape`: ``forward(model, batch)`` and ``target(batch)``.

    Examples
    --------
    >>> obj = TrainingLoss(model, (X, y), "cross_entropy", batch_size=64, generator=gen)
    >>> batch = next(obj.batches())
    >>> value, grad = obj.value_and_grad(theta, batch)
    """

    def __init__(self, model: nn.Module, data, loss="cross_entropy", *, batch_size: int = 128,
                 generator: torch.Generator, forward: Callable | None = None,
                 target: Callable | None = None, device=None):
        from ..landscape import LOSSES, default_forward, default_target

        require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.space = ParamSpace(model)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        module = copy.deepcopy(model).to(self.device)
        module.eval()  # dropout off: no draws from the global generator
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                # Each batch's own statistics, and no running statistics to update under torch.func.
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None
                m.train()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        self.buffers = dict(module.named_buffers())
        self.names = [e.name for e in self.space.entries]
        if isinstance(loss, str):
            require(loss in LOSSES, f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable")
            total = LOSSES[loss]
            self.loss = lambda out, y: total(out, y) / _length(y)
        else:
            require(callable(loss), "loss must be a name or a callable loss(output, target)")
            self.loss = loss
        self.forward = forward or default_forward
        self.target = target or default_target
        self.generator = generator
        self.batch_size = positive_int("batch_size", batch_size)
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            X, y = (t.to(self.device) for t in data)
            require(X.shape[0] == y.shape[0], f"inputs and targets differ in length: {X.shape[0]} vs {y.shape[0]}")
            require(X.shape[0] >= 2, "the training data needs at least two samples")
            self._tensors, self._list = (X, y), None
        else:
            try:
                batches = [_to(b, self.device) for b in data]
            except TypeError:
                raise InputError("data must be an (inputs, targets) pair of tensors or an iterable of batches") from None
            require(bool(batches), "the training data holds no batches")
            self._tensors, self._list = None, batches

    def batches(self) -> Iterator:
        """Mini-batches without end, epoch after epoch, each epoch reshuffled."""
        gen = self.generator
        while True:
            if self._tensors is not None:
                X, y = self._tensors
                n = X.shape[0]
                perm = torch.randperm(n, generator=gen, device=gen.device).to(self.device)
                bs = min(self.batch_size, n)
                for i in range(0, n - bs + 1, bs):
                    idx = perm[i : i + bs]
                    yield X[idx], y[idx]
            else:
                for i in torch.randperm(len(self._list), generator=gen, device=gen.device).tolist():
                    yield self._list[i]

    def _loss_fn(self, batch):
        y = self.target(batch)

        def fn(flat):
            params = dict(zip(self.names, self.space.split(flat)))
            out = self.forward(_Bound(self.module, (params, self.buffers)), batch)
            return self.loss(out, y)

        return fn

    def value_and_grad(self, theta: torch.Tensor, batch) -> tuple[float, torch.Tensor]:
        """The batch's mean loss at ``theta`` and its gradient."""
        from torch.func import grad_and_value

        g, value = grad_and_value(self._loss_fn(batch))(theta)
        return float(value), g

    def value(self, theta: torch.Tensor, batch) -> float:
        """The batch's mean loss at ``theta``."""
        with torch.no_grad():
            return float(self._loss_fn(batch)(theta))


class FullDataLoss:
    """The landscape's own loss over all its data (exact gradients, one 'batch' per step).

    Used when no training data is given and the model has no batch norm.
    """

    def __init__(self, f):
        self.f = f

    def batches(self) -> Iterator:
        while True:
            yield None

    def value_and_grad(self, theta: torch.Tensor, batch) -> tuple[float, torch.Tensor]:
        value, g = self.f.grad(theta)
        return float(value), g

    def value(self, theta: torch.Tensor, batch) -> float:
        return float(self.f.evaluate(theta.unsqueeze(0))["loss"][0])


def training_loss(f, model, data, loss, *, batch_size, generator, forward=None, target=None):
    """The objective a path is trained on: mini-batches of ``data`` when given, else ``f``'s data.

    A model with batch norm needs ``model`` and ``data`` (training needs train-mode batch norm,
    which the landscape's evaluation does not use).
    """
    if data is None and model is None:
        require(
            not getattr(f, "has_bn", False),
            "the model has batch norm: pass model= and data= (its training data) so the path is "
            "trained with train-mode batch norm on mini-batches",
        )
        return FullDataLoss(f)
    require(model is not None and data is not None, "pass both model= and data= to train on mini-batches")
    if loss is None:
        loss = getattr(f, "loss_name", "cross_entropy")
    obj = TrainingLoss(model, data, loss, batch_size=batch_size, generator=generator,
                       forward=forward, target=target, device=f.origin.device)
    require(obj.space == f.space, "model= has other parameters than the landscape's model; pass the same architecture")
    return obj


@dataclass(frozen=True)
class PathTraining:
    """How the free points of a path (a Bezier bend, NEB pivots) are trained: the keyword options
    :func:`bezier_curve` and :func:`neb_path` share, with their one set of defaults.

    Attributes
    ----------
    model, data : optional
        The architecture and its training data, to train on mini-batches with train-mode batch
        norm (required for batch-norm models). Without them the path is trained on the
        landscape's own loss over all its data (exact gradients).
    loss : str or callable, optional
        Training loss (default: the landscape's loss name).
    batch_size : int
        Mini-batch size for tensor ``data``.
    forward, target : callable, optional
        As for :class:`~lossatlas.Landscape`, for models called otherwise than ``model(inputs)``.

    Examples
    --------
    >>> PathTraining.of({"model": net, "data": (X, y), "batch_size": 64}).batch_size   # doctest: +SKIP
    64
    """

    model: Any = None
    data: Any = None
    loss: Any = None
    batch_size: int = 128
    forward: Callable | None = None
    target: Callable | None = None

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def of(cls, options: Mapping[str, Any], method: str = "this path") -> "PathTraining":
        """The options from keyword arguments; an unknown one is refused, naming the accepted."""
        unknown = sorted(set(options) - set(cls.names()))
        require(not unknown, f"{method} does not take {unknown}; its training options are {cls.names()}")
        return cls(**options)

    def objective(self, f, generator: torch.Generator):
        """:func:`training_loss` of these options on ``f``, drawing batches from ``generator``."""
        return training_loss(f, self.model, self.data, self.loss, batch_size=self.batch_size, generator=generator,
                             forward=self.forward, target=self.target)

    def settings(self) -> dict:
        """What changes the trained path: the batch size and whether it trained on mini-batches."""
        return {"batch_size": int(self.batch_size), "minibatches": self.data is not None}

"""The landscape's private copies of the model.

The user's module is read once, copied (:func:`private_copy`) and never touched again. Evaluation
engines write points into their copies' parameters (:class:`Replica`) or call them functionally
(:class:`FunctionalModel`); derivatives borrow copies of their own from a :class:`ModulePool`, so
that no two threads ever run one module object at once (``torch.func.functional_call`` swaps a
module's parameters for the duration of a call, which another thread would see).
"""

from __future__ import annotations

import contextlib
import copy
import threading

import torch
from torch import nn

from ..space import ParamSpace

BATCH_NORM = nn.modules.batchnorm._BatchNorm


def private_copy(model: nn.Module, device: torch.device, bn: str, channels_last: bool) -> nn.Module:
    """A copy of ``model`` on ``device`` in eval mode, without gradients, its batch-norm layers
    set up for ``bn`` (``"eval"``, ``"batch"`` or ``"recompute"``)."""
    module = copy.deepcopy(model).to(device)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if not isinstance(m, BATCH_NORM):
            continue
        if bn == "batch":
            # No running statistics: each batch normalizes with its own, nothing is updated.
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
            m.train()
        elif bn == "recompute":
            m.momentum = None  # overwritten by the pooled statistics of the re-estimation pass
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


class Replica:
    """One parameter set of the loop strategy: a module and the staging vector points go through."""

    def __init__(self, module: nn.Module, space: ParamSpace, origin: torch.Tensor):
        self.module = module
        named = dict(module.named_parameters())
        self.params = [named[e.name] for e in space.entries]
        self.stage = torch.empty_like(origin)
        self.views = space.split(self.stage)

    def write(self, vec: torch.Tensor) -> None:
        # One copy into a staging vector whose views have the parameters' shapes, then one
        # multi-tensor copy into the parameters: two kernel launches per point, not two per tensor.
        self.stage.copy_(vec)
        if hasattr(torch, "_foreach_copy_"):
            torch._foreach_copy_(self.params, self.views)
        else:  # torch < 2.1
            for p, t in zip(self.params, self.views):
                p.copy_(t)


class FunctionalModel(nn.Module):
    """Calls ``module`` with the given parameters and buffers, so user ``forward`` functions that
    take a model work unchanged under ``torch.func`` transforms."""

    def __init__(self, module: nn.Module, params: dict, buffers: dict):
        super().__init__()
        object.__setattr__(self, "_m", module)
        object.__setattr__(self, "_state", (params, buffers))

    def forward(self, *args, **kwargs):
        from torch.func import functional_call

        params, buffers = self._state
        return functional_call(self._m, (params, buffers), args, kwargs, strict=False)

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "_m"), name)


class ModulePool:
    """Replicas of a template module, each lent to one caller at a time (copied on demand).

    Examples
    --------
    >>> with pool.borrow() as replica:
    ...     replica.write(theta)
    """

    def __init__(self, template: nn.Module, space: ParamSpace, origin: torch.Tensor):
        self.template, self.space, self.origin = template, space, origin
        self._free: list[Replica] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self):
        with self._lock:
            replica = self._free.pop() if self._free else None
        if replica is None:  # the template is never run or written, so copying it needs no lock
            replica = Replica(copy.deepcopy(self.template), self.space, self.origin)
        try:
            yield replica
        finally:
            with self._lock:
                self._free.append(replica)

    def __getstate__(self):
        return {"template": self.template, "space": self.space, "origin": self.origin}

    def __setstate__(self, state):
        self.__init__(state["template"], state["space"], state["origin"])

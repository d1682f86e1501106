"""E models of one architecture trained at once: their parameters stacked
(``torch.func.stack_module_state``), one vmapped functional forward, one optimizer.

The optimizer steps the stacked tensors, which for the element-wise optimizers here (SGD,
momentum, Nesterov, Adam, weight decay) is the same update as E separate optimizers. Member ``e``
has its own :class:`RunGenerators`: its data order, augmentation and dropout masks are the ones
it draws when trained alone (see :mod:`lossatlas.training.randomness` for the dropout masks).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .._errors import InputError
from ..landscape import LOSSES
from ..space import ParamSpace
from .config import TrainConfig, make_optimizer
from .inputs import TrainData
from .loop import Trainer, batch_metrics, snapshot_coords, splits
from .randomness import RandomStream, RunGenerators, draw_mask
from .recorder import Recorder


def _vmap_errors(fn: Callable) -> Callable:
    """``fn``, with vmap's refusal of a random draw it cannot route turned into an InputError."""

    def call(*args):
        try:
            return fn(*args)
        except RuntimeError as exc:
            if "random" not in str(exc).lower():
                raise
            raise InputError(
                "the model draws random numbers inside a kernel that a vmapped ensemble cannot give each member "
                f"its own stream for ({exc}); train it with ensemble='sequential'"
            ) from None

    return call


class EnsembleTrainer(Trainer):
    """Trains ``models`` (all on ``td``'s device) together and writes the results back into them."""

    def __init__(self, models: list[nn.Module], td: TrainData, cfg: TrainConfig, seeds: list[int]):
        self.models, self.td, self.cfg, self.seeds = models, td, cfg, [int(s) for s in seeds]
        self.n_models = len(models)
        self.device = td.X.device
        self.space = ParamSpace(models[0])
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        self.loss_sum = LOSSES[cfg.loss]
        self.gens = [RunGenerators(s, self.device) for s in self.seeds]
        self.opt = make_optimizer(cfg, list(self.params.values()))
        self.augment = td.augment if cfg.augment else None
        self.perms: list[torch.Tensor] = []
        self._calls: dict[tuple, list] = {}  # dropout calls of a forward, by per-member input shape
        self._train = _vmap_errors(vmap(self._forward, in_dims=(0, 0, 0, 0), randomness="error"))
        self._eval = _vmap_errors(vmap(lambda p, b, x: self._forward(p, b, x, []), in_dims=(0, 0, None), randomness="error"))

    def _forward(self, params, buffers, x, masks):
        stream = RandomStream(masks=list(masks))
        with stream:
            out = functional_call(self.base, (params, buffers), (x,))
        if stream.used != len(masks):
            raise InputError(
                "the model made fewer dropout calls than its shape pass recorded (calls that depend on the data); "
                "train it with ensemble='sequential'"
            )
        return out

    def _dropout_calls(self, x0: torch.Tensor, params0: dict, buffers0: dict) -> list:
        """The dropout calls (kind, mask shape, p, dtype) one member's forward makes on inputs
        shaped like ``x0``: from a forward on the meta device (no compute), or, for a model that
        cannot run on meta, from a real no-grad forward of member 0 on copies of its buffers."""
        key = (tuple(x0.shape), x0.dtype)
        if key not in self._calls:
            record: list = []
            try:
                meta = lambda d: {k: torch.empty_like(v, device="meta") for k, v in d.items()}  # noqa: E731
                with torch.no_grad(), RandomStream(record=record):
                    functional_call(self.base, (meta(params0), meta(buffers0)), (torch.empty_like(x0, device="meta"),))
            except InputError:
                raise
            except Exception:
                record = []
                with torch.no_grad(), RandomStream(record=record):
                    functional_call(self.base, ({k: v.detach() for k, v in params0.items()},
                                                {k: v.clone() for k, v in buffers0.items()}), (x0,))
            self._calls[key] = record
        return self._calls[key]

    def start_epoch(self) -> None:
        self.base.train()
        n = self.td.X.shape[0]
        self.perms = [torch.randperm(n, generator=g.order, device=self.device) for g in self.gens]

    def step(self, rows: slice) -> None:
        xs, ys = [], []
        for perm, g in zip(self.perms, self.gens):
            xb = self.td.X[perm[rows]]
            if self.augment is not None:
                xb = self.augment(xb, g.augment)
            xs.append(xb)
            ys.append(self.td.y[perm[rows]])
        xb, yb = torch.stack(xs), torch.stack(ys)
        calls = self._dropout_calls(xb[0], {k: v[0] for k, v in self.params.items()},
                                    {k: v[0] for k, v in self.buffers.items()})
        # Member e's masks, in call order, from its own dropout generator: the draws it makes alone.
        masks = [torch.stack([draw_mask(shape, p, dtype, g.dropout) for g in self.gens]) for _, shape, p, dtype in calls]
        self.opt.zero_grad(set_to_none=True)
        outs = self._train(self.params, self.buffers, xb, masks)
        losses = torch.stack([self.loss_sum(outs[e], yb[e]) for e in range(self.n_models)]) / xb.shape[1]
        losses.sum().backward()  # member e's gradient is its own loss's gradient
        self.opt.step()

    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        was = self.base.training  # restored: a mid-epoch snapshot must not leave the rest in eval mode
        self.base.eval()
        E, bs = self.n_models, self.cfg.eval_batch_size
        params = {k: v.detach() for k, v in self.params.items()}
        out = {}
        try:
            for prefix, (X, y) in splits(self.td):
                loss = torch.zeros(E, dtype=torch.float64, device=self.device)
                correct = torch.zeros(E, dtype=torch.float64, device=self.device)
                for i in range(0, X.shape[0], bs):
                    outs = self._eval(params, self.buffers, X[i : i + bs])
                    for e in range(E):
                        l, c = batch_metrics(outs[e], y[i : i + bs], self.loss_sum)
                        loss[e] += l
                        correct[e] += c
                out[prefix + "loss"] = loss.cpu().numpy() / X.shape[0]
                out[prefix + "accuracy"] = correct.cpu().numpy() / X.shape[0]
        finally:
            self.base.train(was)
        return out

    def _vectors(self) -> np.ndarray:
        E = self.n_models
        return torch.cat([self.params[e.name].detach().reshape(E, -1) for e in self.space.entries], 1).cpu().numpy()

    def snapshot(self, recorder: Recorder, epoch: float, step: int, lr: float) -> None:
        coords = snapshot_coords(epoch, step, lr, list(range(self.n_models)), self.seeds)
        recorder.add(self._vectors(), self.evaluate(), coords)

    def state(self) -> dict:
        return {
            "params": {k: v.detach() for k, v in self.params.items()},
            "buffers": dict(self.buffers), "optimizer": self.opt.state_dict(),
            "generators": [g.state_dict() for g in self.gens],
        }

    def load(self, state: dict) -> None:
        with torch.no_grad():
            for k in self.params:
                self.params[k].copy_(state["params"][k])
            for k in self.buffers:
                self.buffers[k].copy_(state["buffers"][k])
        self.opt.load_state_dict(state["optimizer"])
        for g, s in zip(self.gens, state["generators"]):
            g.load_state_dict(s)

    def finish(self) -> None:
        # Trained in place, like any trainer: the stacked weights go back into the models.
        with torch.no_grad():
            for e, m in enumerate(self.models):
                for k, p in m.named_parameters():
                    p.copy_(self.params[k][e])
                for k, b in m.named_buffers():
                    if k in self.buffers:
                        b.copy_(self.buffers[k][e])

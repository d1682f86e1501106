"""One model trained by a torch optimizer, with its own generators on its device."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..landscape import LOSSES
from ..space import ParamSpace
from .config import TrainConfig, make_optimizer
from .inputs import TrainData
from .loop import Trainer, batch_metrics, snapshot_coords, splits
from .randomness import RandomStream, RunGenerators
from .recorder import Recorder


class SingleTrainer(Trainer):
    """Trains ``model`` (on ``td``'s device) in place.

    Data order, augmentation and dropout draw from :class:`RunGenerators` seeded by ``seed``;
    every forward runs inside :class:`RandomStream`, so dropout never touches the global RNG.
    """

    def __init__(self, model: nn.Module, td: TrainData, cfg: TrainConfig, seed: int, run_index: int = 0):
        self.model, self.td, self.cfg, self.seed, self.run_index = model, td, cfg, int(seed), run_index
        self.n_models = 1
        self.device = td.X.device
        self.space = ParamSpace(model)
        self.loss_sum = LOSSES[cfg.loss]
        self.gens = RunGenerators(self.seed, self.device)
        self.opt = make_optimizer(cfg, model.parameters())
        self.augment = td.augment if cfg.augment else None
        self.perm: torch.Tensor | None = None

    def start_epoch(self) -> None:
        self.model.train()
        self.perm = torch.randperm(self.td.X.shape[0], generator=self.gens.order, device=self.device)

    def step(self, rows: slice) -> None:
        idx = self.perm[rows]
        xb, yb = self.td.X[idx], self.td.y[idx]
        if self.augment is not None:
            xb = self.augment(xb, self.gens.augment)
        self.opt.zero_grad(set_to_none=True)
        with RandomStream(self.gens.dropout):
            out = self.model(xb)
        loss = self.loss_sum(out, yb) / xb.shape[0]
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        modes = [m.training for m in self.model.modules()]
        self.model.eval()
        bs = self.cfg.eval_batch_size
        out = {}
        try:
            for prefix, (X, y) in splits(self.td):
                loss = correct = torch.zeros((), dtype=torch.float64, device=self.device)
                for i in range(0, X.shape[0], bs):
                    with RandomStream(self.gens.dropout):  # dropout a model applies even in eval mode
                        pred = self.model(X[i : i + bs])
                    l, c = batch_metrics(pred, y[i : i + bs], self.loss_sum)
                    loss, correct = loss + l, correct + c
                out[prefix + "loss"] = np.array([loss.item() / X.shape[0]])
                out[prefix + "accuracy"] = np.array([correct.item() / X.shape[0]])
        finally:
            for m, mode in zip(self.model.modules(), modes):
                m.training = mode
        return out

    def snapshot(self, recorder: Recorder, epoch: float, step: int, lr: float) -> None:
        w = self.space.vector(self.model).detach().cpu().numpy()[None]
        recorder.add(w, self.evaluate(), snapshot_coords(epoch, step, lr, [self.run_index], [self.seed]))

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "generators": self.gens.state_dict()}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.gens.load_state_dict(state["generators"])

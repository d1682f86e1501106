"""The epoch loop that single and ensemble trainers share: schedule, snapshots (each epoch and
every ``every_steps`` steps) and resume checkpoints at the end of each epoch."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig, set_lr
from .inputs import TrainData
from .recorder import Recorder


def batch_metrics(out: torch.Tensor, y: torch.Tensor, loss_sum: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and number of correct predictions of one batch, as 0-d tensors on its device
    (accumulated there: one host sync per snapshot, not per batch). Accuracy is NaN for outputs
    that are not class scores."""
    loss = loss_sum(out, y).detach().double()
    if out.dim() >= 2 and out.shape[-1] > 1 and not y.is_floating_point():
        correct = (out.argmax(-1) == y).sum().double()
    else:
        correct = torch.full((), float("nan"), dtype=torch.float64, device=out.device)
    return loss, correct


def splits(td: TrainData) -> list[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The evaluated splits with their metric prefixes: train, and test when there is one."""
    return [("", (td.X, td.y))] + ([("test_", td.test)] if td.test is not None else [])


class Trainer:
    """One run of the epoch loop; subclasses say how a batch steps and how a snapshot reads.

    Subclasses set ``cfg``, ``td`` (on the training device), ``opt`` and ``n_models``, and
    implement :meth:`start_epoch`, :meth:`step`, :meth:`snapshot`, :meth:`state`, :meth:`load`
    and :meth:`finish`.
    """

    cfg: TrainConfig
    td: TrainData
    opt: torch.optim.Optimizer
    n_models: int

    def steps_per_epoch(self) -> int:
        return math.ceil(self.td.X.shape[0] / self.cfg.batch_size)

    def batch_slice(self, b: int) -> slice:
        return slice(b * self.cfg.batch_size, (b + 1) * self.cfg.batch_size)

    def fit(self, recorder: Recorder, state: dict | None, save: Callable[[dict], None] | None,
            advance: Callable[[int], None]) -> None:
        """Train from the start, or from a resume ``state`` (then no epoch-0 snapshot is taken
        again); ``save(state)`` is called after every epoch's snapshot."""
        cfg = self.cfg
        start_epoch, step = 0, 0
        if state is not None:
            self.load(state)
            start_epoch, step = int(state["epoch"]), int(state["step"])
        else:
            self.snapshot(recorder, 0.0, 0, cfg.lr_at(0))
        spe = self.steps_per_epoch()
        for epoch in range(start_epoch, cfg.epochs):
            lr = set_lr(self.opt, cfg, epoch)
            self.start_epoch()
            for b in range(spe):
                self.step(self.batch_slice(b))
                step += 1
                if cfg.every_steps and step % cfg.every_steps == 0 and b + 1 < spe:
                    self.snapshot(recorder, epoch + (b + 1) / spe, step, lr)
            self.snapshot(recorder, float(epoch + 1), step, lr)
            if save is not None:
                save({**self.state(), "epoch": epoch + 1, "step": step, "points": recorder.count})
            advance(self.n_models)
        self.finish()

    # -- what a subclass provides ---------------------------------------------------------
    def start_epoch(self) -> None:
        raise NotImplementedError

    def step(self, rows: slice) -> None:
        raise NotImplementedError

    def snapshot(self, recorder: Recorder, epoch: float, step: int, lr: float) -> None:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    def load(self, state: dict) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


def snapshot_coords(epoch: float, step: int, lr: float, runs, seeds) -> dict[str, np.ndarray]:
    """The coordinates of one snapshot of the models ``runs`` (indices) with their ``seeds``."""
    k = len(runs)
    return {
        "epoch": np.full(k, epoch, float), "step": np.full(k, step), "lr": np.full(k, lr),
        "run": np.asarray(runs), "seed": np.asarray(seeds),
    }

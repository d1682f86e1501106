"""The settings of a training run: optimizer and schedule enums, :class:`TrainConfig` with its
validation and learning-rate schedule, and the torch optimizer it describes.

One place holds the defaults that the API, a config file and the command line share.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass

import torch

from .._errors import parse_enum, positive_int, require
from ..store import json_safe


class Optimizer(str, enum.Enum):
    """The optimizers a run can use (both element-wise, so an ensemble steps them stacked)."""

    SGD = "sgd"  # with momentum (0 for plain SGD) and optionally Nesterov
    ADAM = "adam"


class Schedule(str, enum.Enum):
    """Learning-rate schedules, by epoch."""

    CONSTANT = "constant"
    STEP = "step"  # multiply by gamma at each milestone epoch
    COSINE = "cosine"  # cosine annealing to zero over the run


def _real(name: str, value) -> float:
    """``value`` as a float, or an InputError naming the setting (a YAML ``lr: '0.1'`` is a string)."""
    require(
        isinstance(value, numbers.Real) and not isinstance(value, bool),
        f"{name} must be a number, got {value!r} ({type(value).__name__})",
    )
    return float(value)


@dataclass
class TrainConfig:
    """Every setting of a training run; one place for the defaults of API, config file and CLI.

    Examples
    --------
    >>> cfg = TrainConfig(lr=0.1, epochs=300, schedule="step", milestones=(150, 225)).validate()
    >>> round(cfg.final_lr(), 6)   # 0.1 x 0.1 x 0.1
    0.001
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 10
    batch_size: int = 128
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    seed: int = 0
    loss: str = "cross_entropy"
    every_steps: int | None = None
    eval_batch_size: int = 1024
    augment: bool = True  # apply the data's augmentation when it has one

    def validate(self) -> "TrainConfig":
        """Check and normalize every field in place (enums to their values); returns ``self``.

        Raises :class:`~lossatlas.InputError` naming the first bad setting.
        """
        from ..landscape import LOSSES

        self.optimizer = parse_enum(Optimizer, self.optimizer, "optimizer").value
        self.schedule = parse_enum(Schedule, self.schedule, "schedule").value
        self.lr = _real("lr", self.lr)
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        self.momentum = _real("momentum", self.momentum)
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        require(isinstance(self.nesterov, bool), f"nesterov must be True or False, got {self.nesterov!r}")
        require(not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0")
        self.weight_decay = _real("weight_decay", self.weight_decay)
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(len(tuple(self.betas)) == 2, f"betas must be two numbers, got {self.betas!r}")
        self.betas = tuple(_real("betas", b) for b in self.betas)
        require(all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}")
        self.epochs = positive_int("epochs", self.epochs, minimum=0)
        self.batch_size = positive_int("batch_size", self.batch_size)
        self.eval_batch_size = positive_int("eval_batch_size", self.eval_batch_size)
        self.milestones = tuple(positive_int("milestones", m) for m in self.milestones)
        require(self.schedule != "step" or bool(self.milestones), "schedule='step' needs milestones, e.g. milestones=(150, 225)")
        self.gamma = _real("gamma", self.gamma)
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        self.seed = positive_int("seed", self.seed, minimum=0)
        if self.every_steps is not None:
            self.every_steps = positive_int("every_steps (or None)", self.every_steps)
        require(self.loss in LOSSES, f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        require(isinstance(self.augment, bool), f"augment must be True or False, got {self.augment!r}")
        return self

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier during ``epoch`` (0-based)."""
        if self.schedule == Schedule.STEP.value:
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.schedule == Schedule.COSINE.value:
            return 0.5 * (1 + math.cos(math.pi * epoch / max(1, self.epochs)))
        return 1.0

    def lr_at(self, epoch: int) -> float:
        """The learning rate during ``epoch`` (0-based)."""
        return self.lr * self.lr_factor(epoch)

    def final_lr(self) -> float:
        """The learning rate of the last epoch, after the schedule (J&R retrains at it)."""
        return self.lr_at(max(0, self.epochs - 1))

    @classmethod
    def recorded(cls, run) -> "TrainConfig":
        """The training recorded in run directory ``run`` (``config/train.yaml``), validated;
        keys that are not settings of a run are ignored."""
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in run.read_config("train")["train"].items() if k in fields}).validate()

    def original_optimizer(self, augment: bool) -> dict:
        """J&R's retraining "with the original optimizer" (Horoi et al.): this run's optimizer,
        momentum (Nesterov only when set), weight decay and batch size at its final learning rate,
        with ``augment``, as keyword arguments of :func:`lossatlas.jump_retrain`.

        Examples
        --------
        >>> TrainConfig(lr=0.1, epochs=4, schedule="step", milestones=(2,)).validate().original_optimizer(False)["lr"]
        0.010000000000000002
        """
        out = dict(optimizer=self.optimizer, lr=self.final_lr(), momentum=self.momentum, weight_decay=self.weight_decay,
                   batch_size=self.batch_size, augment=bool(augment))
        if self.nesterov:  # only when set: the stored J&R sets of earlier runs record no such key
            out["nesterov"] = True
        return out

    def lr_drops(self) -> list[int]:
        """Epochs at whose start the learning rate drops (marked red in trajectory plots)."""
        if self.schedule == Schedule.STEP.value:
            return sorted({m for m in self.milestones if 0 < m <= self.epochs})
        return []

    def as_dict(self) -> dict:
        """Plain values (JSON and YAML safe), e.g. for ``attrs["train"]``."""
        return json_safe(self.__dict__)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The torch optimizer ``cfg`` describes, over ``params``."""
    if cfg.optimizer == Optimizer.SGD.value:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, epoch: int) -> float:
    """Set the scheduled learning rate of ``epoch`` on every group of ``opt``; returns it."""
    lr = cfg.lr_at(epoch)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


class Ensemble(str, enum.Enum):
    """How a list of models is trained."""

    AUTO = "auto"  # vmap on accelerators, sequential on a CPU (measured faster there: bench/train.py)
    VMAP = "vmap"
    SEQUENTIAL = "sequential"

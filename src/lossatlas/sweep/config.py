"""The settings of a sweep (``lossatlas sweep CONFIG``): the grid of networks and how each minimum
is sampled, as one typed config read from YAML with every field checked before any training.

Horoi et al. (IDA 2022, section 4.1) train 108 Wide-ResNets from one initialization over depth x
width x batch size x weight decay x augmentation, then sample 640 points around each minimum with
J&R, a 3-D grid and naive sampling. The defaults here are that design scaled to MNIST-1D and small
MLPs (``examples/sweep/mnist1d-mlp.yaml`` holds the earlier study's exact settings,
``examples/sweep/mnist1d-cnn-bn.yaml`` those of the study at the papers' protocol).

J&R retrains, by default, "with the original optimizer" (Horoi et al.): each network's own
optimizer, momentum, weight decay, augmentation and batch size at the learning rate its training
ended with, for a quarter of its training epochs (the ICLR 2021 paper: 50 epochs of retraining
after 200 of training). The earlier protocol set one retraining rate for all networks by matching
SGD steps x learning rate to the paper's (:data:`PAPER_STEPS_X_LR`); a config that sets
``jump.lr`` and ``jump.epochs`` still runs that way.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .._errors import require
from ..typed import from_mapping

__all__ = ["AXES", "BATCH_NORM_MODELS", "JumpSettings", "Network", "SweepConfig", "model_args_for",
           "read_sweep_config"]

#: The axes of a sweep, in the order its networks are numbered (the last varies fastest).
AXES = ("depth", "width", "batch_size", "weight_decay", "augment")

#: Horoi et al. retrain 40 CIFAR-10 epochs at batch 128 (about 15,600 SGD steps) at lr 1e-3 (the
#: earlier protocol matched this product; kept as a record in the store's ``travel`` attribute).
PAPER_STEPS_X_LR = 15_600 * 1e-3

#: Whether each model family has batch normalization: ``"option"`` (the ``batch_norm`` setting
#: chooses, default none) or ``"always"`` (the residual networks).
BATCH_NORM_MODELS = {"mlp": "option", "smallcnn": "option", "wrn": "always", "resnet": "always"}


def model_args_for(model: str, depth: int, width: int, batch_norm: bool = False) -> dict:
    """The factory arguments of built-in ``model`` at sweep ``depth`` and ``width``.

    ``mlp``: ``depth`` hidden layers of ``width`` units. ``smallcnn``: ``depth`` convolutions of
    ``width, 2 width, ...`` channels. ``wrn``: ``depth`` and widening factor ``width``, as Horoi et
    al.'s WRN-depth-width. ``resnet``: ``depth`` layers, ``width`` base channels. ``batch_norm``
    adds batch normalization to ``mlp`` and ``smallcnn`` (the residual networks always have it).

    Examples
    --------
    >>> model_args_for("mlp", 2, 32)
    {'hidden': [32, 32]}
    >>> model_args_for("smallcnn", 3, 8, batch_norm=True)
    {'channels': [8, 16, 32], 'batch_norm': True}
    """
    # (batch_norm=False adds nothing: the factories' default, so the earlier sweeps' sources stay the same)
    extra = {"batch_norm": True} if batch_norm and BATCH_NORM_MODELS.get(model) == "option" else {}
    if model == "mlp":
        return {"hidden": [int(width)] * int(depth), **extra}
    if model == "smallcnn":
        return {"channels": [int(width) * 2**i for i in range(int(depth))], **extra}
    if model == "wrn":
        return {"depth": int(depth), "k": int(width)}
    if model == "resnet":
        return {"depth": int(depth), "width": int(width)}
    raise ValueError(model)


@dataclass
class JumpSettings:
    """Jump and retrain around each minimum (Horoi et al. section 3.1); grid and naive sampling
    draw as many points as J&R records after its jumps (``n_points``).

    Each retraining setting left ``None`` (the default) is the network's own, "the original
    optimizer" of the papers: ``lr`` its training's final learning rate (after the step decay),
    ``momentum`` its training's momentum, ``batch_size`` its own batch size (a sweep axis), and
    ``epochs`` a quarter of its training epochs (rounded up; the ICLR 2021 paper retrains 50
    epochs after 200). Weight decay and augmentation are always the network's own.
    """

    seeds: list = field(default_factory=lambda: [0, 1, 2, 3])
    step_sizes: list = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    epochs: Optional[int] = None
    lr: Optional[float] = None
    momentum: Optional[float] = None
    batch_size: Optional[int] = None
    ensemble: str = "vmap"
    grid_span: float = 1.0
    naive_step_sizes: list = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    topology_k: int = 20

    def runs(self) -> int:
        return len(self.seeds) * len(self.step_sizes)

    def batch_size_for(self, net: "Network") -> int:
        """The retraining batch size of ``net``: its own, unless one is fixed for all."""
        return int(net.batch_size if self.batch_size is None else self.batch_size)

    def epochs_for(self, train_epochs: int) -> int:
        """Retraining epochs: ``epochs``, or a quarter of ``train_epochs`` (rounded up) when unset."""
        return int(self.epochs) if self.epochs is not None else max(1, math.ceil(int(train_epochs) / 4))

    def n_points(self, train_epochs: int | None = None) -> int:
        """Retrained points per minimum (epochs 1..E of every run; the paper's 640); give the
        training's epochs when ``epochs`` is unset."""
        require(self.epochs is not None or train_epochs is not None,
                "the retraining epochs default to a quarter of the training's: give train_epochs")
        return self.runs() * self.epochs_for(train_epochs if train_epochs is not None else 0)


@dataclass
class Network:
    """One network of the sweep: its index and its value on each axis."""

    index: int
    depth: int
    width: int
    batch_size: int
    weight_decay: float
    augment: bool

    def name(self) -> str:
        return f"net-{self.index:04d}"

    def axes(self) -> dict:
        return {a: getattr(self, a) for a in AXES}


@dataclass
class SweepConfig:
    """Every setting of a sweep.

    Examples
    --------
    >>> cfg = SweepConfig(depths=[1, 2], widths=[16], batch_sizes=[64], weight_decays=[0.0, 1e-3],
    ...                   augment=[False]).validate()
    >>> len(cfg.networks())
    4
    """

    model: str = "mlp"
    init_seed: int = 0
    data: str = "mnist1d"
    data_root: Optional[str] = None
    data_seed: int = 0
    subset: Optional[int] = None
    test_subset: Optional[int] = None
    depths: list = field(default_factory=lambda: [1, 2, 3])
    widths: list = field(default_factory=lambda: [32, 64])
    batch_sizes: list = field(default_factory=lambda: [32, 128, 512])
    weight_decays: list = field(default_factory=lambda: [0.0, 1e-4, 1e-3])
    augment: list = field(default_factory=lambda: [False, True])
    # training from the initialization to the minimum: SGD, step decay at 1/2 and 3/4 of the epochs
    lr: float = 0.05
    momentum: float = 0.9
    epochs: int = 40
    jump: JumpSettings = field(default_factory=JumpSettings)
    device: str = "cpu"
    # batch normalization after each layer of mlp and smallcnn (null: the model family's own: none
    # for those, always for wrn and resnet)
    batch_norm: Optional[bool] = None

    def validate(self) -> "SweepConfig":
        """Check every field (raises :class:`~lossatlas.InputError` naming it); returns ``self``."""
        from ..training import TrainConfig

        require(self.model in ("mlp", "smallcnn", "wrn", "resnet"),
                f"model must be one of mlp, smallcnn, wrn, resnet (the families with a depth and a width), "
                f"got {self.model!r}")
        for name in ("depths", "widths", "batch_sizes", "weight_decays", "augment"):
            values = getattr(self, name)
            require(isinstance(values, list) and len(values) > 0, f"{name} must be a non-empty list, got {values!r}")
            require(len(set(map(repr, values))) == len(values), f"{name} repeats a value: {values}")
        for name in ("depths", "widths", "batch_sizes"):
            require(all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in getattr(self, name)),
                    f"{name} must hold positive integers, got {getattr(self, name)}")
        require(all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in self.weight_decays),
                f"weight_decays must hold numbers >= 0, got {self.weight_decays}")
        self.weight_decays = [float(v) for v in self.weight_decays]
        require(all(isinstance(v, bool) for v in self.augment), f"augment must hold true/false, got {self.augment}")
        for b in self.batch_sizes:  # the training settings of every network, checked before any trains
            self.train_config(b, self.weight_decays[0])
        require(self.batch_norm is None or isinstance(self.batch_norm, bool),
                f"batch_norm must be true, false or null (the model's own), got {self.batch_norm!r}")
        require(not (self.batch_norm is False and BATCH_NORM_MODELS[self.model] == "always"),
                f"{self.model} always has batch normalization: set batch_norm to true or leave it null")
        j = self.jump
        require(j.epochs is None or (isinstance(j.epochs, int) and not isinstance(j.epochs, bool) and j.epochs >= 1),
                f"jump.epochs must be a positive integer or null (a quarter of the training's), got {j.epochs!r}")
        require(j.lr is None or (isinstance(j.lr, (int, float)) and not isinstance(j.lr, bool) and j.lr > 0),
                f"jump.lr must be a positive number or null (each network's final learning rate), got {j.lr!r}")
        require(j.momentum is None or (isinstance(j.momentum, (int, float)) and not isinstance(j.momentum, bool)
                                       and 0 <= j.momentum < 1),
                f"jump.momentum must be in [0, 1) or null (the training's momentum), got {j.momentum!r}")
        require(bool(j.seeds) and len(set(j.seeds)) == len(j.seeds), f"jump.seeds must be distinct, got {j.seeds}")
        require(all(c > 0 for c in j.step_sizes) and bool(j.step_sizes), f"jump.step_sizes must be positive, got {j.step_sizes}")
        require(all(c > 0 for c in j.naive_step_sizes) and bool(j.naive_step_sizes),
                f"jump.naive_step_sizes must be positive, got {j.naive_step_sizes}")
        n = self.n_points()
        require(n % len(j.naive_step_sizes) == 0,
                f"naive sampling draws n_points / len(naive_step_sizes) directions: {n} J&R points do not "
                f"divide by {len(j.naive_step_sizes)} step sizes")
        require(j.ensemble in ("vmap", "sequential"), f"jump.ensemble must be vmap or sequential, got {j.ensemble!r}")
        require(j.grid_span > 0, f"jump.grid_span must be positive, got {j.grid_span}")
        require(isinstance(j.topology_k, int) and 1 <= j.topology_k < n,
                f"jump.topology_k must be an integer in [1, {n - 1}], got {j.topology_k}")
        require(j.batch_size is None or (isinstance(j.batch_size, int) and not isinstance(j.batch_size, bool)
                                         and j.batch_size >= 1),
                f"jump.batch_size must be a positive integer or null (each network's own), got {j.batch_size!r}")
        for b in ([j.batch_size] if j.batch_size is not None else self.batch_sizes):
            TrainConfig(lr=self.jr_lr(), momentum=self.jr_momentum(), epochs=self.jr_epochs(), batch_size=b).validate()
        return self

    def final_lr(self) -> float:
        """The learning rate every network's training ends with (after the step decay)."""
        return self.train_config(self.batch_sizes[0], self.weight_decays[0]).final_lr()

    def jr_lr(self) -> float:
        """The retraining learning rate: ``jump.lr``, or the training's final learning rate."""
        return float(self.jump.lr) if self.jump.lr is not None else self.final_lr()

    def jr_momentum(self) -> float:
        """The retraining momentum: ``jump.momentum``, or the training's."""
        return float(self.jump.momentum) if self.jump.momentum is not None else float(self.momentum)

    def jr_epochs(self) -> int:
        """The retraining epochs: ``jump.epochs``, or a quarter of the training's (rounded up)."""
        return self.jump.epochs_for(self.epochs)

    def n_points(self) -> int:
        """J&R points recorded per network after the jumps (grid and naive draw as many)."""
        return self.jump.n_points(self.epochs)

    def has_batch_norm(self) -> bool:
        """Whether the networks have batch normalization."""
        return BATCH_NORM_MODELS[self.model] == "always" or bool(self.batch_norm)

    def retraining(self, net: "Network") -> dict:
        """The J&R settings of ``net`` beside its training's final learning rate, as the store
        records them per network.

        Examples
        --------
        >>> cfg = SweepConfig(epochs=40, lr=0.1).validate()
        >>> r = cfg.retraining(cfg.networks()[0])
        >>> round(r["final_lr"], 6), round(r["jr_lr"], 6), r["jr_epochs"], r["jr_batch_size"]
        (0.001, 0.001, 10, 32)
        """
        return {"final_lr": self.final_lr(), "jr_lr": self.jr_lr(), "jr_momentum": self.jr_momentum(),
                "jr_epochs": self.jr_epochs(), "jr_batch_size": self.jump.batch_size_for(net),
                "jr_weight_decay": float(net.weight_decay), "jr_augment": bool(net.augment),
                "batch_norm": self.has_batch_norm()}

    def protocol(self) -> str:
        """``"final_lr"``: J&R retrains at each network's final learning rate (the papers'
        protocol); ``"fixed_lr"``: at ``jump.lr`` (the earlier protocol, steps x lr matched)."""
        return "final_lr" if self.jump.lr is None else "fixed_lr"

    def train_config(self, batch_size: int, weight_decay: float):
        """The training of one network: SGD with momentum, x0.1 at 1/2 and 3/4 of the epochs."""
        from ..training import TrainConfig

        e = self.epochs
        return TrainConfig(optimizer="sgd", lr=self.lr, momentum=self.momentum, weight_decay=weight_decay, epochs=e,
                           batch_size=batch_size, schedule="step" if e >= 4 else "constant",
                           milestones=(e // 2, 3 * e // 4) if e >= 4 else (), gamma=0.1,
                           seed=self.init_seed).validate()

    def networks(self) -> list[Network]:
        grid = itertools.product(self.depths, self.widths, self.batch_sizes, self.weight_decays, self.augment)
        return [Network(i, *values) for i, values in enumerate(grid)]

    def source(self, net: Network):
        """The :class:`~lossatlas.sources.Source` of one network (its model, data and augmentation)."""
        from ..sources import Source

        return Source(model=self.model, model_args=model_args_for(self.model, net.depth, net.width, self.has_batch_norm()),
                      init_seed=self.init_seed, data=self.data, data_root=self.data_root, data_seed=self.data_seed,
                      subset=self.subset, test_subset=self.test_subset, augment=net.augment,
                      device=self.device).validate()

    def travel(self, n_train: int) -> dict:
        """SGD steps x learning rate of one retraining run, against the paper's; per retraining
        batch size when each network retrains at its own (keys ``"batch_SIZE"``). A record: only
        the earlier protocol chose its learning rate by it."""
        def one(b):
            steps = self.jr_epochs() * math.ceil(n_train / b)
            return {"steps": steps, "lr": self.jr_lr(), "steps_x_lr": steps * self.jr_lr(),
                    "paper_steps_x_lr": PAPER_STEPS_X_LR, "fraction_of_paper": steps * self.jr_lr() / PAPER_STEPS_X_LR}

        if self.jump.batch_size is not None:
            return one(self.jump.batch_size)
        return {f"batch_{b}": one(b) for b in self.batch_sizes}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_sweep_config(mapping: Mapping[str, Any], where: str = "sweep config") -> SweepConfig:
    """A checked :class:`SweepConfig` from plain values (a YAML file read with ``yaml.safe_load``)."""
    require(isinstance(mapping, Mapping), f"{where} must be a mapping of settings, got {type(mapping).__name__}")
    values = dict(mapping)
    jump = values.pop("jump", {}) or {}
    require(isinstance(jump, Mapping), f"{where}: jump must be a mapping of settings, got {jump!r}")
    cfg = from_mapping(SweepConfig, values, where, ignore=("jump",))
    cfg.jump = from_mapping(JumpSettings, dict(jump), f"{where}: jump")
    return cfg.validate()

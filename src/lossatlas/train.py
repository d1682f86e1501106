"""Training runs with recorded trajectories: one model, or an ensemble of models at once.

Every snapshot (each epoch, optionally every k steps) records the flat weights and the train
and test loss and accuracy into an ``xarray.Dataset`` with dims ``point`` and ``param``; with a
run directory it is streamed to ``NAME.zarr`` as training runs, next to a resume checkpoint, so a
stopped run continues from its last snapshot.

An ensemble trains E models of one architecture together (``torch.func.stack_module_state`` and
``vmap``): the optimizer steps the stacked tensors, which for the element-wise optimizers here
(SGD, momentum, Nesterov, Adam, weight decay) is the same update as E separate optimizers.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ._errors import InputError, require
from .landscape import LOSSES
from .space import ParamSpace
from .store import RunDir, for_zarr, json_safe, provenance, read_attr


class Optimizer(str, enum.Enum):
    SGD = "sgd"
    ADAM = "adam"


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    STEP = "step"  # multiply by gamma at each milestone epoch
    COSINE = "cosine"  # cosine annealing to zero over the run


@dataclass
class TrainConfig:
    """Every setting of a training run; one place for the defaults of API, config file and CLI."""

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
        try:
            self.optimizer = Optimizer(self.optimizer).value
        except ValueError:
            raise InputError(f"unknown optimizer {self.optimizer!r}; use one of {[o.value for o in Optimizer]}") from None
        try:
            self.schedule = Schedule(self.schedule).value
        except ValueError:
            raise InputError(f"unknown schedule {self.schedule!r}; use one of {[s.value for s in Schedule]}") from None
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        require(not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(isinstance(self.epochs, int) and self.epochs >= 0, f"epochs must be an integer >= 0, got {self.epochs}")
        require(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        self.milestones = tuple(int(m) for m in self.milestones)
        require(self.schedule != "step" or self.milestones, "schedule='step' needs milestones, e.g. milestones=(150, 225)")
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        require(self.every_steps is None or self.every_steps >= 1, "every_steps must be >= 1 or None")
        require(self.loss in LOSSES, f"unknown loss {self.loss!r}; use one of {sorted(LOSSES)}")
        self.betas = tuple(float(b) for b in self.betas)
        return self

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier during ``epoch`` (0-based)."""
        if self.schedule == "step":
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / max(1, self.epochs)))
        return 1.0

    def lr_drops(self) -> list[int]:
        """Epochs at whose start the learning rate drops (marked red in trajectory plots)."""
        if self.schedule == "step":
            return sorted({m for m in self.milestones if 0 < m <= self.epochs})
        return []

    def as_dict(self) -> dict:
        return json_safe(self.__dict__)


# -- data --------------------------------------------------------------------------------

@dataclass
class _TrainData:
    X: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor] | None
    augment: Callable | None
    fingerprint: str
    info: dict = field(default_factory=dict)


def _fingerprint(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def as_train_data(data, test=None, augment=None) -> _TrainData:
    """Accept a ``lossatlas.data.Data`` or an ``(X, y)`` pair (plus optional test pair)."""
    if hasattr(data, "train") and hasattr(data, "test"):  # lossatlas.data.Data
        X, y = data.train
        test = data.test if test is None else test
        augment = augment if augment is not None else getattr(data, "augment", None)
        fp = getattr(data, "fingerprint", None) or _fingerprint(X, y)
        info = {"dataset": getattr(data, "name", "data")}
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        X, y = data
        fp = _fingerprint(X, y, *(test or ()))
        info = {"dataset": "tensors"}
    else:
        raise InputError(
            "training data must be an (X, y) pair of tensors or a lossatlas.data.Data "
            f"(from la.load_data), got {type(data).__name__}"
        )
    require(X.shape[0] == y.shape[0], f"inputs and targets differ in length: {X.shape[0]} vs {y.shape[0]}")
    require(X.shape[0] > 0, "the training set is empty")
    if test is not None:
        require(len(test) == 2 and test[0].shape[0] == test[1].shape[0], "test must be an (X, y) pair of equal length")
        if test[0].shape[0] == 0:
            test = None  # a dataset without a test split
    for name, t in (("inputs", X),) + ((("test inputs", test[0]),) if test is not None else ()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise InputError(f"the {name} hold NaN or infinite values")
    return _TrainData(X, y, test, augment, fp, info)


def _generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Separate streams for data order and augmentation, from the run's seed."""
    ss = np.random.SeedSequence(int(seed))
    order, aug = (int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in ss.spawn(2))
    return torch.Generator().manual_seed(order), torch.Generator().manual_seed(aug)


# -- the trajectory writer ----------------------------------------------------------------

class _Recorder:
    """Collects snapshots in memory, or appends them to ``NAME.zarr`` as they come."""

    def __init__(self, run: RunDir | None, name: str, attrs: dict, n_params: int, chunk: int, extra=None):
        self.run, self.name, self.attrs, self.chunk = run, name, attrs, chunk
        self.extra = extra or {}
        self.rows: list[dict] = []
        self.n_params = n_params
        self.count = 0

    def add(self, weights: np.ndarray, values: dict[str, np.ndarray], coords: dict[str, np.ndarray]) -> None:
        k = weights.shape[0]
        coords = dict(coords)
        index = coords["run"]  # position in the list of models trained together
        for key, per_run in self.extra.items():
            coords[key] = per_run[index]
        if self.run is None:
            self.rows.append({"weights": weights, **values, **coords})
        else:
            data = {"weights": (("point", "param"), weights.astype(np.float32))}
            data.update({n: (("point",), v) for n, v in values.items()})
            ds = xr.Dataset(data, coords={n: (("point",), v) for n, v in coords.items()})
            path = self.run.zarr_path(self.name)
            ds.attrs = self.attrs  # every write: an append without attrs would erase them
            ds = for_zarr(ds)
            if self.count == 0:
                enc = {"weights": {"chunks": (self.chunk, min(self.n_params, 2**22))}}
                ds.to_zarr(path, mode="w", encoding=enc, consolidated=False)
            else:
                ds.to_zarr(path, append_dim="point", consolidated=False)
        self.count += k

    def truncate(self, n: int) -> None:
        """Drop points beyond ``n`` (written after the last resume checkpoint)."""
        import zarr

        group = zarr.open_group(str(self.run.zarr_path(self.name)), mode="r+")
        for key in group.array_keys():
            arr = group[key]
            dims = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS") or ()
            if dims and dims[0] == "point" and arr.shape[0] > n:
                arr.resize((n,) + tuple(arr.shape[1:]))
        self.count = n

    def dataset(self) -> xr.Dataset:
        if self.run is not None:
            return self.run.open(self.name, load=False)
        keys = self.rows[0].keys()
        cat = {k: np.concatenate([r[k] for r in self.rows]) for k in keys}
        coords = {k: (("point",), cat.pop(k)) for k in ("epoch", "step", "lr", "run", "seed", *self.extra) if k in cat}
        data = {"weights": (("point", "param"), cat.pop("weights"))}
        data.update({k: (("point",), v) for k, v in cat.items()})
        return xr.Dataset(data, coords=coords, attrs=self.attrs)


# -- evaluation of snapshots ---------------------------------------------------------------

def _metrics(out: torch.Tensor, y: torch.Tensor, loss_sum) -> tuple[float, float]:
    loss = float(loss_sum(out, y))
    acc = float((out.argmax(-1) == y).sum()) if out.dim() >= 2 and out.shape[-1] > 1 and not y.is_floating_point() else float("nan")
    return loss, acc


# -- training ------------------------------------------------------------------------------

@dataclass
class Run:
    """A finished (or resumed) training run.

    Attributes
    ----------
    trajectory : xarray.Dataset
        ``weights`` (point, param), ``loss``, ``accuracy``, ``test_loss``, ``test_accuracy``
        (point); coords ``epoch``, ``step``, ``lr``, ``run``; attrs ``lr_drops`` and the config.
    models : list of nn.Module
        The trained models (trained in place).
    config : TrainConfig
    store : RunDir or None
    """

    trajectory: xr.Dataset
    models: list
    config: TrainConfig
    store: RunDir | None = None

    @property
    def model(self) -> nn.Module:
        return self.models[0]

    @property
    def final(self) -> torch.Tensor:
        """Flat weights of the (first) model at the end."""
        return ParamSpace(self.models[0]).vector(self.models[0])


def train(
    model: nn.Module | Sequence[nn.Module],
    data,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int | Sequence[int] = 0,
    *,
    test=None,
    store: RunDir | str | None = None,
    name: str = "trajectory",
    progress: bool | Callable = False,
    ensemble: str = "auto",
    run_coords: dict[str, Sequence] | None = None,
    **options: Any,
) -> Run:
    """Train a model (or several of one architecture) and record its trajectory.

    Parameters
    ----------
    model : nn.Module or list of nn.Module
        Trained in place, like any trainer. A list trains an ensemble, member ``e`` with
        ``seed[e]`` for its data order and augmentation.
    data : (X, y) tensors or lossatlas.data.Data
        A ``Data`` brings its test split and augmentation along.
    optimizer : {"sgd", "adam"}
        ``"sgd"`` with ``momentum`` (0 for plain SGD) and ``nesterov=True`` if wanted.
    seed : int or list of int
        Seeds data order, augmentation and dropout; the model's initialization is the caller's
        (``lossatlas.models.build(..., seed=...)``).
    test : (X, y), optional
    store : RunDir or path, optional
        Stream the trajectory to ``store/NAME.zarr``; rerunning with the same settings resumes
        from the last snapshot.
    ensemble : {"auto", "vmap", "sequential"}
        How a list of models is trained: ``"vmap"`` stacks them into one vmapped model,
        ``"sequential"`` runs one after another. ``"auto"`` picks vmap on accelerators and
        sequential on a CPU, where it was measured faster (``bench/train.py``).
    **options
        Any other :class:`TrainConfig` field: ``nesterov``, ``betas``, ``schedule``
        (``"constant"``, ``"step"``, ``"cosine"``), ``milestones``, ``gamma``, ``every_steps``,
        ``loss``, ``eval_batch_size``, ``augment``.
    run_coords : dict, optional
        Extra per-model coordinates recorded on every snapshot of that model, e.g.
        ``{"step_size": [0.25, 0.5]}`` (jump-and-retrain uses this).

    Returns
    -------
    Run

    Examples
    --------
    >>> run = train(model, (X, y), optimizer="sgd", lr=0.1, momentum=0.9, epochs=10, seed=0)
    >>> run.trajectory.loss.values[-1]
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    require(bool(models) and all(isinstance(m, nn.Module) for m in models), "model must be an nn.Module or a list of them")
    seeds = list(seed) if isinstance(seed, (list, tuple, range)) else [int(seed) + i for i in range(len(models))]
    require(len(seeds) == len(models), f"{len(models)} models but {len(seeds)} seeds")
    unknown = set(options) - set(TrainConfig.__dataclass_fields__)
    require(not unknown, f"unknown training options {sorted(unknown)}; see lossatlas.train.TrainConfig")
    cfg = TrainConfig(
        optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs,
        batch_size=batch_size, seed=seeds[0], **options,
    ).validate()
    td = as_train_data(data, test, None)
    space = ParamSpace(models[0])
    for m in models[1:]:
        require(ParamSpace(m) == space, "all models of an ensemble must share one architecture")
    for m in models:
        space.check_vector(space.vector(m), "model's initial parameters")
    device = next(models[0].parameters()).device
    mode = ensemble
    require(mode in ("auto", "vmap", "sequential"), f"ensemble must be 'auto', 'vmap' or 'sequential', got {mode!r}")
    if mode == "auto":
        mode = "vmap" if device.type != "cpu" and len(models) > 1 else "sequential"

    run_dir = RunDir(store) if isinstance(store, (str, os.PathLike)) else store
    attrs = {
        **provenance(),
        "kind": "trajectory",
        "config": cfg.as_dict(),
        "seeds": seeds,
        "data_fingerprint": td.fingerprint,
        "init_fingerprints": [space.fingerprint(space.vector(m)) for m in models],
        "lr_drops": cfg.lr_drops(),
        "param_names": list(space.names),
        "n_params": space.size,
        **td.info,
    }
    attrs["fingerprint"] = hashlib.sha256(
        repr((attrs["config"], seeds, td.fingerprint, attrs["init_fingerprints"], mode)).encode()
    ).hexdigest()[:16]
    extra = {k: np.asarray(v) for k, v in (run_coords or {}).items()}
    for k, v in extra.items():
        require(len(v) == len(models), f"run_coords[{k!r}] has {len(v)} values for {len(models)} models")
    recorder = _Recorder(run_dir, name, attrs, space.size, chunk=len(models) if mode == "vmap" else 1, extra=extra)

    if mode == "vmap":
        trainer = _EnsembleTrainer(models, td, cfg, seeds, device)
        trainer.fit(recorder, run_dir, name, progress)
    else:
        for e, (m, s) in enumerate(zip(models, seeds)):
            cfg_e = copy.copy(cfg)
            cfg_e.seed = s
            _SingleTrainer(m, td, cfg_e, run_index=e).fit(recorder, run_dir, f"{name}.{e}" if len(models) > 1 else name, progress)
    return Run(recorder.dataset(), models, cfg, run_dir)


class _Base:
    """What single and ensemble trainers share: schedule, snapshots, resume checkpoints."""

    cfg: TrainConfig
    td: _TrainData

    def steps_per_epoch(self) -> int:
        return math.ceil(self.td.X.shape[0] / self.cfg.batch_size)

    def _optimizer(self, params):
        c = self.cfg
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)

    def _set_lr(self, opt, epoch: int) -> float:
        lr = self.cfg.lr * self.cfg.lr_factor(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    @staticmethod
    def _state_path(run: RunDir, name: str):
        return run.path / f"{name}.state.pt"

    @staticmethod
    def _save_state(run: RunDir, name: str, state: dict) -> None:
        path = _Base._state_path(run, name)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    @staticmethod
    def _load_state(run: RunDir, name: str, fingerprint: str) -> dict | None:
        path = _Base._state_path(run, name)
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            raise InputError(
                f"{path} belongs to a run with other settings, data or initial weights; "
                "choose another output directory or delete it to start over"
            )
        return state


class _SingleTrainer(_Base):
    def __init__(self, model: nn.Module, td: _TrainData, cfg: TrainConfig, run_index: int = 0):
        self.model, self.td, self.cfg, self.run_index = model, td, cfg, run_index
        self.space = ParamSpace(model)
        self.device = next(model.parameters()).device
        self.loss_sum = LOSSES[cfg.loss]

    @torch.no_grad()
    def _evaluate(self) -> dict[str, np.ndarray]:
        was = self.model.training
        self.model.eval()
        out = {}
        splits = [("", (self.td.X, self.td.y))] + ([("test_", self.td.test)] if self.td.test is not None else [])
        for prefix, (X, y) in splits:
            loss = acc = 0.0
            for i in range(0, X.shape[0], self.cfg.eval_batch_size):
                xb = X[i : i + self.cfg.eval_batch_size].to(self.device)
                yb = y[i : i + self.cfg.eval_batch_size].to(self.device)
                l, a = _metrics(self.model(xb), yb, self.loss_sum)
                loss, acc = loss + l, acc + a
            out[prefix + "loss"] = np.array([loss / X.shape[0]])
            out[prefix + "accuracy"] = np.array([acc / X.shape[0]])
        self.model.train(was)
        return out

    def _snapshot(self, recorder: _Recorder, epoch: float, step: int, lr: float) -> None:
        w = self.space.vector(self.model).cpu().numpy()[None]
        coords = {
            "epoch": np.array([epoch], float), "step": np.array([step]), "lr": np.array([lr]),
            "run": np.array([self.run_index]), "seed": np.array([self.cfg.seed]),
        }
        recorder.add(w, self._evaluate(), coords)

    def fit(self, recorder: _Recorder, run: RunDir | None, name: str, progress) -> None:
        cfg, td, model = self.cfg, self.td, self.model
        order_gen, aug_gen = _generators(cfg.seed)
        opt = self._optimizer(model.parameters())
        start_epoch, step = 0, 0
        fp = recorder.attrs["fingerprint"] + f".{self.run_index}"
        state = self._load_state(run, name, fp) if run is not None else None
        torch_rng = torch.Generator().manual_seed(cfg.seed)  # dropout, via fork_rng below
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            order_gen.set_state(state["order_gen"])
            aug_gen.set_state(state["aug_gen"])
            torch_rng.set_state(state["torch_rng"])
            start_epoch, step = int(state["epoch"]), int(state["step"])
            recorder.truncate(int(state["points"]))
        n = td.X.shape[0]
        spe = self.steps_per_epoch()
        augment = td.augment if cfg.augment else None
        with torch.random.fork_rng(devices=[]):
            torch.random.set_rng_state(torch_rng.get_state())
            if state is None:
                self._snapshot(recorder, 0.0, 0, cfg.lr * cfg.lr_factor(0))
            with _progress_bar(progress, cfg.epochs - start_epoch, f"train run {self.run_index}") as advance:
                for epoch in range(start_epoch, cfg.epochs):
                    lr = self._set_lr(opt, epoch)
                    model.train()
                    perm = torch.randperm(n, generator=order_gen)
                    for b in range(spe):
                        idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                        xb, yb = td.X[idx], td.y[idx]
                        if augment is not None:
                            xb = augment(xb, aug_gen)
                        xb, yb = xb.to(self.device), yb.to(self.device)
                        opt.zero_grad(set_to_none=True)
                        loss = self.loss_sum(model(xb), yb) / xb.shape[0]
                        loss.backward()
                        opt.step()
                        step += 1
                        if cfg.every_steps and step % cfg.every_steps == 0 and b + 1 < spe:
                            self._snapshot(recorder, epoch + (b + 1) / spe, step, lr)
                    self._snapshot(recorder, float(epoch + 1), step, lr)
                    if run is not None:
                        self._save_state(run, name, {
                            "fingerprint": fp, "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "order_gen": order_gen.get_state(), "aug_gen": aug_gen.get_state(),
                            "torch_rng": torch.random.get_rng_state(), "epoch": epoch + 1, "step": step,
                            "points": recorder.count,
                        })
                    advance(1)
        model.eval()


class _EnsembleTrainer(_Base):
    """E models stacked into one vmapped functional model, stepped by one optimizer."""

    def __init__(self, models, td: _TrainData, cfg: TrainConfig, seeds, device):
        from torch.func import stack_module_state

        self.models, self.td, self.cfg, self.seeds, self.device = models, td, cfg, seeds, device
        self.space = ParamSpace(models[0])
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        self.loss_sum = LOSSES[cfg.loss]

    def _call(self, params, buffers, x):
        from torch.func import functional_call

        return functional_call(self.base, (params, buffers), (x,))

    def _vmapped(self, in_x: int | None):
        from torch.func import vmap

        return vmap(self._call, in_dims=(0, 0, in_x), randomness="different")

    @torch.no_grad()
    def _evaluate(self) -> dict[str, np.ndarray]:
        self.base.eval()
        E = len(self.models)
        out = {}
        splits = [("", (self.td.X, self.td.y))] + ([("test_", self.td.test)] if self.td.test is not None else [])
        params = {k: v.detach() for k, v in self.params.items()}
        for prefix, (X, y) in splits:
            loss, acc = np.zeros(E), np.zeros(E)
            for i in range(0, X.shape[0], self.cfg.eval_batch_size):
                xb = X[i : i + self.cfg.eval_batch_size].to(self.device)
                yb = y[i : i + self.cfg.eval_batch_size].to(self.device)
                outs = self._vmapped(None)(params, self.buffers, xb)
                for e in range(E):
                    l, a = _metrics(outs[e], yb, self.loss_sum)
                    loss[e] += l
                    acc[e] += a
            out[prefix + "loss"] = loss / X.shape[0]
            out[prefix + "accuracy"] = acc / X.shape[0]
        return out

    def _vectors(self) -> np.ndarray:
        return torch.cat([self.params[e.name].detach().reshape(len(self.models), -1) for e in self.space.entries], 1).cpu().numpy()

    def _snapshot(self, recorder, epoch, step, lr):
        E = len(self.models)
        coords = {
            "epoch": np.full(E, epoch, float), "step": np.full(E, step), "lr": np.full(E, lr),
            "run": np.arange(E), "seed": np.array(self.seeds),
        }
        recorder.add(self._vectors(), self._evaluate(), coords)

    def fit(self, recorder: _Recorder, run: RunDir | None, name: str, progress) -> None:
        cfg, td = self.cfg, self.td
        E = len(self.models)
        gens = [_generators(s) for s in self.seeds]
        opt = self._optimizer(list(self.params.values()))
        start_epoch, step = 0, 0
        fp = recorder.attrs["fingerprint"]
        state = self._load_state(run, name, fp) if run is not None else None
        if state is not None:
            with torch.no_grad():
                for k in self.params:
                    self.params[k].copy_(state["params"][k])
                for k in self.buffers:
                    self.buffers[k].copy_(state["buffers"][k])
            opt.load_state_dict(state["optimizer"])
            for (og, ag), so, sa in zip(gens, state["order_gens"], state["aug_gens"]):
                og.set_state(so)
                ag.set_state(sa)
            start_epoch, step = int(state["epoch"]), int(state["step"])
            recorder.truncate(int(state["points"]))
        n = td.X.shape[0]
        spe = self.steps_per_epoch()
        augment = td.augment if cfg.augment else None
        if state is None:
            self._snapshot(recorder, 0.0, 0, cfg.lr * cfg.lr_factor(0))
        step_fn = self._vmapped(0)
        with _progress_bar(progress, cfg.epochs - start_epoch, f"train ensemble of {E}") as advance:
            for epoch in range(start_epoch, cfg.epochs):
                lr = self._set_lr(opt, epoch)
                self.base.train()
                perms = [torch.randperm(n, generator=og) for og, _ in gens]
                for b in range(spe):
                    sl = slice(b * cfg.batch_size, (b + 1) * cfg.batch_size)
                    xs, ys = [], []
                    for e, (perm, (_, ag)) in enumerate(zip(perms, gens)):
                        xb = td.X[perm[sl]]
                        if augment is not None:
                            xb = augment(xb, ag)
                        xs.append(xb)
                        ys.append(td.y[perm[sl]])
                    xb, yb = torch.stack(xs).to(self.device), torch.stack(ys).to(self.device)
                    opt.zero_grad(set_to_none=True)
                    outs = step_fn(self.params, self.buffers, xb)
                    losses = torch.stack([self.loss_sum(outs[e], yb[e]) for e in range(E)]) / xb.shape[1]
                    losses.sum().backward()  # member e's gradient is its own loss's gradient
                    opt.step()
                    step += 1
                    if cfg.every_steps and step % cfg.every_steps == 0 and b + 1 < spe:
                        self._snapshot(recorder, epoch + (b + 1) / spe, step, lr)
                self._snapshot(recorder, float(epoch + 1), step, lr)
                if run is not None:
                    self._save_state(run, name, {
                        "fingerprint": fp,
                        "params": {k: v.detach() for k, v in self.params.items()},
                        "buffers": dict(self.buffers), "optimizer": opt.state_dict(),
                        "order_gens": [og.get_state() for og, _ in gens],
                        "aug_gens": [ag.get_state() for _, ag in gens],
                        "epoch": epoch + 1, "step": step, "points": recorder.count,
                    })
                advance(1)
        # Trained in place, like any trainer: write the stacked weights back into the models.
        with torch.no_grad():
            for e, m in enumerate(self.models):
                for k, p in m.named_parameters():
                    p.copy_(self.params[k][e])
                for k, b in m.named_buffers():
                    if k in self.buffers:
                        b.copy_(self.buffers[k][e])
                m.eval()


def _progress_bar(progress, total: int, description: str):
    from .surface import _progress

    return _progress(progress, total, description)

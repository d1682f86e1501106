"""``train()``: one model or an ensemble, its trajectory recorded in memory or streamed to a run
directory, resumable from its last epoch, refused when the store holds other settings."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._errors import parse_enum, positive_int, require
from ..progress import progress_bar
from ..space import ParamSpace
from ..store import RunDir, differences, fingerprint, json_safe, mismatch, normalized, provenance
from .config import Ensemble, TrainConfig
from .ensemble import EnsembleTrainer
from .inputs import TrainData, as_train_data
from .recorder import Recorder
from .single import SingleTrainer


@dataclass
class Run:
    """A finished (or resumed) training run.

    Attributes
    ----------
    trajectory : xarray.Dataset
        ``weights`` (point, param), ``loss``, ``accuracy``, ``test_loss``, ``test_accuracy``
        (point); coords ``epoch``, ``step``, ``lr``, ``run``, ``seed``; attrs ``train`` (the
        settings), ``final_lr``, ``lr_drops`` and ``settings`` (what the store is checked against).
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


def _model_device(m: nn.Module) -> torch.device:
    return next(m.parameters()).device


def resolve_device(device, models: Sequence[nn.Module]) -> torch.device:
    """The training device: ``device`` (``"auto"``: CUDA when available), or the models' own."""
    if device is None:
        devs = {_model_device(m) for m in models}
        require(len(devs) == 1, f"the models lie on several devices {sorted(map(str, devs))}; pass device=...")
        return devs.pop()
    from ..landscape.devices import resolve_device as checked_device  # the one device check

    dev = checked_device(device)
    if dev.type == "cuda" and dev.index is None:  # the current device, named by index as a model's tensors name it
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def train_settings(cfg: TrainConfig, seeds, models, td: TrainData, extra: dict, mode: str, device: torch.device) -> dict:
    """Every setting that changes a run's values, as recorded in ``attrs["settings"]`` and in
    its resume checkpoints: a store holding other ones is refused."""
    return normalized({
        "train": cfg.as_dict(),
        "seeds": [int(s) for s in seeds],
        # parameters and buffers: running statistics change the recorded evaluation
        "init": [fingerprint(dict(m.state_dict())) for m in models],
        "data": td.settings(cfg.augment),
        "run_coords": json_safe(extra),
        "ensemble": mode,
        "device": device.type,
    })


def _resume(run: RunDir | None, name: str, state_names: list[str], settings: dict, cfg: TrainConfig,
            replace: bool) -> tuple[list[dict | None], int]:
    """The resume checkpoint of each state name (None: start afresh) and the stored points to keep."""
    fresh: list[dict | None] = [None] * len(state_names)
    if run is None:
        return fresh, 0
    if not run.check(name, settings, replace):
        for s in state_names:
            run.remove_state(s)
        return fresh, 0
    states = []
    for i, s in enumerate(state_names):
        state = run.load_state(s)
        if state is not None:
            diffs = differences(state.get("settings"), {**settings, "member": i})
            if diffs and not replace:
                raise mismatch(run.state_path(s), diffs)
            if diffs:  # replace=True: a checkpoint of other settings is no start point
                run.remove(name)
                for t in state_names:
                    run.remove_state(t)
                return fresh, 0
        states.append(state)
    done = [i for i, s in enumerate(states) if s is not None]
    if not done:  # stored before any checkpoint (epoch-0 snapshots only): start over
        run.remove(name)
        return fresh, 0
    last = done[-1]
    # Models of a sequential list train one after another: all before the last checkpointed one finished.
    for i in range(last):
        require(states[i] is not None and int(states[i]["epoch"]) == cfg.epochs,
                f"{run.zarr_path(name)}: the resume checkpoints are incomplete; pass replace=True to train afresh")
    return states, int(states[last]["points"])


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
    device=None,
    replace: bool = False,
    **options: Any,
) -> Run:
    """Train a model (or several of one architecture) and record its trajectory.

    Parameters
    ----------
    model : nn.Module or list of nn.Module
        Trained in place, like any trainer; each module's train/eval mode comes back as it was.
        A list trains an ensemble, member ``e`` with ``seed[e]``.
    data : (X, y) tensors or lossatlas.data.Data
        A ``Data`` brings its test split and augmentation along.
    optimizer : {"sgd", "adam"}
        ``"sgd"`` with ``momentum`` (0 for plain SGD) and ``nesterov=True`` if wanted.
    seed : int or list of int
        Seeds the run's own generators (data order, augmentation, dropout) on the training device;
        an int gives member ``e`` of a list ``seed + e``. The global generators are neither seeded
        nor drawn from, so a run is the same alone, in threads, or as a member of a vmap ensemble.
        The model's initialization is the caller's (``lossatlas.models.build(..., seed=...)``).
    test : (X, y), optional
    store : RunDir or path, optional
        Stream the trajectory to ``store/NAME.zarr``, with a resume checkpoint after every epoch:
        rerunning with the same settings resumes from the last one (a finished run is reused, its
        final weights loaded into the model). A store holding other settings raises
        :class:`~lossatlas.StoreMismatchError` naming each difference.
    replace : bool
        Delete a store (and its checkpoints) holding other settings and train afresh.
    device : torch.device or str, optional
        Where to train (``"auto"``: CUDA when available); None: the model's device. The data go
        there once; a model elsewhere is trained as a copy there and its results copied back.
    ensemble : {"auto", "vmap", "sequential"}
        How a list of models is trained: ``"vmap"`` stacks them into one vmapped model,
        ``"sequential"`` runs one after another. ``"auto"`` picks vmap on accelerators and
        sequential on a CPU, where it was measured faster (``bench/train.py``).
    run_coords : dict, optional
        Extra per-model coordinates recorded on every snapshot of that model, e.g.
        ``{"step_size": [0.25, 0.5]}`` (jump-and-retrain uses this).
    **options
        Any other :class:`TrainConfig` field: ``nesterov``, ``betas``, ``schedule``
        (``"constant"``, ``"step"``, ``"cosine"``), ``milestones``, ``gamma``, ``every_steps``,
        ``loss``, ``eval_batch_size``, ``augment``.

    Returns
    -------
    Run

    Examples
    --------
    >>> run = train(model, (X, y), optimizer="sgd", lr=0.1, momentum=0.9, epochs=10, seed=0)
    >>> run.trajectory.loss.values[-1]
    >>> run.trajectory.attrs["final_lr"]     # the learning rate of the last epoch
    0.1
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    require(bool(models) and all(isinstance(m, nn.Module) for m in models), "model must be an nn.Module or a list of them")
    seeds = list(seed) if isinstance(seed, (list, tuple, range, np.ndarray)) else [int(seed) + i for i in range(len(models))]
    require(len(seeds) == len(models), f"{len(models)} models but {len(seeds)} seeds")
    seeds = [positive_int("seed", s, minimum=0) for s in seeds]
    unknown = set(options) - set(TrainConfig.__dataclass_fields__)
    require(not unknown, f"unknown training options {sorted(unknown)}; see lossatlas.training.TrainConfig")
    cfg = TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs,
                      batch_size=batch_size, seed=seeds[0], **options).validate()
    td = as_train_data(data, test, None)
    space = ParamSpace(models[0])
    for m in models[1:]:
        require(ParamSpace(m) == space, "all models of an ensemble must share one architecture")
    for m in models:
        space.check_vector(space.vector(m), "model's initial parameters")
    dev = resolve_device(device, models)
    mode = parse_enum(Ensemble, ensemble, "ensemble").value
    if mode == Ensemble.AUTO.value:
        mode = Ensemble.VMAP.value if dev.type != "cpu" and len(models) > 1 else Ensemble.SEQUENTIAL.value
    extra = {k: np.asarray(v) for k, v in (run_coords or {}).items()}
    for k, v in extra.items():
        require(v.ndim == 1 and len(v) == len(models), f"run_coords[{k!r}] has {v.size} values for {len(models)} models")
    require(isinstance(replace, bool), f"replace must be True or False, got {replace!r}")
    require(isinstance(name, str) and bool(name), f"name must be a non-empty string, got {name!r}")
    run_dir = RunDir(store) if isinstance(store, (str, os.PathLike)) and not isinstance(store, RunDir) else store

    settings = train_settings(cfg, seeds, models, td, extra, mode, dev)
    vmapped = mode == Ensemble.VMAP.value
    attrs = {
        **provenance(device=str(dev)),
        "kind": "trajectory",
        "train": cfg.as_dict(),
        "config": cfg.as_dict(),  # the name earlier versions wrote
        "final_lr": cfg.final_lr(),
        "seeds": seeds,
        "data_fingerprint": td.fingerprint,
        "init_fingerprints": [space.fingerprint(space.vector(m)) for m in models],
        "lr_drops": cfg.lr_drops(),
        "param_names": list(space.names),
        "n_params": space.size,
        "ensemble": mode,
        **td.info,
        "settings": settings,
    }
    state_names = [name] if vmapped or len(models) == 1 else [f"{name}.{e}" for e in range(len(models))]
    states, points = _resume(run_dir, name, state_names, settings, cfg, replace)

    def saver(i: int):
        if run_dir is None:
            return None
        return lambda state: run_dir.save_state(state_names[i], {**state, "settings": {**settings, "member": i}})

    recorder = Recorder(run_dir, name, attrs, space.size, chunk=len(models) if vmapped else 1, extra=extra)
    if points:
        recorder.truncate(points)
    work = [m if _model_device(m) == dev else copy.deepcopy(m).to(dev) for m in models]
    modes = [[m.training for m in model.modules()] for model in models]
    tdd = td.to(dev)
    remaining = sum(cfg.epochs - (int(s["epoch"]) if s else 0) for s in states) * (len(models) if vmapped else 1)
    label = f"train ensemble of {len(models)}" if vmapped else f"train {len(models)} run{'s' * (len(models) > 1)}"
    try:
        with progress_bar(progress, remaining, label) as advance:
            if vmapped:
                EnsembleTrainer(work, tdd, cfg, seeds).fit(recorder, states[0], saver(0), advance)
            else:
                for e, (m, s) in enumerate(zip(work, seeds)):
                    SingleTrainer(m, tdd, cfg, s, run_index=e).fit(recorder, states[e], saver(e), advance)
        for m, w in zip(models, work):
            if w is not m:
                m.load_state_dict(w.state_dict())
    finally:
        for model, flags in zip(models, modes):
            for m, flag in zip(model.modules(), flags):
                m.training = flag
    trajectory = recorder.dataset()
    # NaN losses are recorded, not fatal; the count says whether to look.
    n_bad = int((~np.isfinite(np.asarray(trajectory["loss"].values))).sum())
    if run_dir is not None:
        run_dir.update_attrs(name, {"n_nonfinite": n_bad})
        trajectory = run_dir.open(name, load=False)
    else:
        trajectory.attrs["n_nonfinite"] = n_bad
    return Run(trajectory, models, cfg, run_dir)

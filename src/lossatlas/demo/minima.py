"""Train one of the demo's minima into its own run directory (``DIR/good``, ``DIR/bad``, ...).

Each sub-run is a proper lossatlas run: ``config/source.yaml`` (model, initialization seed, data
split, augmentation, labels), ``config/train.yaml``, ``trajectory.zarr`` and ``model.pt``, so that
every command works on it afterwards (``lossatlas surface DIR/good``, ``lossatlas jump DIR/bad``).
Training is resumable: a rerun of the demo into the same directory reuses what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..landscape import Landscape
from ..sources import Source
from ..store import RunDir, differences, mismatch, write_checkpoint
from ..training import TrainConfig, train
from .settings import MINIMA, DemoSettings

__all__ = ["Minimum", "has_batch_norm", "source_of", "train_into", "train_minimum"]


@dataclass
class Minimum:
    """A trained minimum: its run directory, model, data, landscape and final metrics."""

    name: str
    run: RunDir
    source: Source
    model: torch.nn.Module
    data: Any  # lossatlas.data.Data
    landscape: Landscape
    final: dict  # loss, accuracy, test_loss, test_accuracy at the end of training

    @property
    def theta(self) -> torch.Tensor:
        return self.landscape.origin


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def source_of(name: str, settings: DemoSettings, device: str) -> Source:
    """The recorded source of minimum ``name``: one model and initialization for all three."""
    kind = MINIMA[name]
    return Source(model="smallcnn", model_args={"channels": list(settings.channels), "hidden": settings.hidden},
                  init_seed=settings.init_seed, data="mnist1d", data_seed=settings.data_seed,
                  subset=settings.subset, test_subset=settings.test_subset, augment=kind["augment"],
                  random_labels=kind["random_labels"], device=device).validate()


def train_config(name: str, settings: DemoSettings) -> TrainConfig:
    return TrainConfig(optimizer="sgd", lr=settings.lr, momentum=settings.momentum,
                       weight_decay=MINIMA[name]["weight_decay"], epochs=settings.epochs_of(name),
                       batch_size=settings.batch_size, schedule="step", milestones=settings.milestones_of(name),
                       gamma=0.1, seed=settings.init_seed).validate()


def train_into(out, name: str, src: Source, cfg: TrainConfig, dev: torch.device, replace: bool = False,
               progress=True, describe: dict | None = None) -> Minimum:
    """Train ``src`` by ``cfg`` into the run ``out/name``, or reuse its finished run of the same
    settings (a run of another source is refused unless ``replace``); the demo and the studies
    train every minimum through this.

    Examples
    --------
    >>> m = train_into("runs/x", "good", source, TrainConfig(epochs=10), torch.device("cpu"))   # doctest: +SKIP
    """
    run = RunDir(Path(out) / name)
    # The data's fingerprint is recorded below, once the data is built: never part of the check.
    ignored = ("device", "checkpoint", "data_fingerprint")
    record = {k: v for k, v in src.as_dict().items() if k not in ("device", "data_fingerprint")}
    if run.has_source() and not replace:
        # Checked before the source is rewritten: products of another source are never relabelled.
        stored = {k: v for k, v in run.read_source().items() if k not in ignored}
        diffs = differences(stored, {k: v for k, v in record.items() if k not in ignored})
        if diffs:
            raise mismatch(run.path / "config" / "source.yaml", diffs)
    data = src.build_data()
    run.write_source({**record, "data_fingerprint": data.fingerprint})
    run.write_config("train", {"source": src.as_dict(), "train": cfg.as_dict()})
    model = src.build_model(data).to(dev)  # seeded: one initialization per init_seed
    options = cfg.as_dict()
    main = {k: options.pop(k) for k in ("optimizer", "lr", "momentum", "weight_decay", "epochs", "batch_size", "seed")}
    result = train(model, data, **main, store=run, progress=progress, replace=replace, device=dev, **options)
    write_checkpoint(run.path / "model.pt", model.state_dict(), source=src.as_dict())
    t = result.trajectory
    final = {k: float(t[k].values[-1]) for k in ("loss", "accuracy", "test_loss", "test_accuracy") if k in t}
    run.update_summary(train={"epochs": cfg.epochs, "final": final, **({"settings": describe} if describe else {}),
                              "data": data.describe(), "init_fingerprint": t.attrs.get("init_fingerprints", [None])[0]})
    X, y = data.test
    f = Landscape(model, data.train, test=(X, y) if X.shape[0] else None,
                  bn="recompute" if has_batch_norm(model) else "eval", device=dev)
    return Minimum(name, run, src, model, data, f, final)


def train_minimum(out: Path, name: str, settings: DemoSettings, device: str, dev: torch.device,
                  replace: bool = False) -> Minimum:
    """Train the demo's minimum ``name`` into ``out/name`` (or reuse the stored run of the same settings)."""
    return train_into(out, name, source_of(name, settings, device), train_config(name, settings), dev, replace)

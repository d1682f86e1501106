"""``lossatlas train`` (a run with its trajectory) and ``lossatlas jump`` (jump and retrain, grid
and naive sampling around a minimum)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer
from typing_extensions import Annotated

from .._errors import require
from .common import (NEEDS_SOURCE, CheckpointOpt, DaskOpt, DataOpt, DataRootOpt, DataSeedOpt, DeviceOpt, ModelArgOpt, ModelOpt,
                     ReplaceOpt, SchedulerOpt, SubsetOpt, check_executor, console, executor, floats, open_out,
                     record_fingerprint, reported, resolve_source, source_flags, test_pair, write_report, absolute_source)

# J&R retraining without a recorded run (a bare checkpoint): Horoi et al.'s README example.
JUMP_DEFAULTS = dict(optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=0.0, batch_size=128, augment=False)
_SOURCE_KEYS = ("model", "model_args", "checkpoint", "init_seed", "data", "data_root", "data_seed", "subset",
                "test_subset", "augment", "random_labels", "checkpoint_sha256", "code_dir")


def _settings(config: Optional[Path], flags: dict) -> tuple[dict, dict, Optional[str]]:
    """Source and train settings from a YAML file and flags: flags win, every key is used or
    refused, and a value of the wrong type names its field."""
    import yaml

    from ..training import TrainConfig
    from ..typed import from_mapping

    loaded: dict[str, Any] = {}
    if config is not None:
        require(config.is_file(), f"config file {config} does not exist")
        with open(config) as fh:
            loaded = yaml.safe_load(fh) or {}
        require(isinstance(loaded, dict), f"{config} must hold a mapping of settings")
    where = str(config) if config is not None else "the options"
    flag_out, file_out = flags.pop("out", None), loaded.pop("out", None)
    out = flag_out or file_out  # an explicit --out wins over the file's
    require(out is None or isinstance(out, str), f"{where}: out must be a path, got {out!r}")
    merged = {**loaded, **{k: v for k, v in flags.items() if v is not None}}
    source = {k: merged.pop(k) for k in _SOURCE_KEYS if k in merged}
    cfg = from_mapping(TrainConfig, merged, where)  # unknown keys and wrong types are refused here
    source.setdefault("init_seed", cfg.seed if "seed" in merged else 0)
    if "seed" not in merged:
        cfg.seed = source["init_seed"]
    return source, cfg.validate().as_dict(), out


def train_cmd(
    config: Optional[Path] = typer.Option(None, help="YAML file of settings; flags override it (default: none, the options alone)"),
    model: ModelOpt = None, model_arg: ModelArgOpt = None, checkpoint: CheckpointOpt = None, data: DataOpt = None,
    data_root: DataRootOpt = None, data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="random crop and flip, shift for 1-D (default: off)"),
    random_labels: Optional[float] = typer.Option(None, help="fraction of training labels replaced at random (default: 0)"),
    optimizer: Optional[str] = typer.Option(None, help="sgd or adam (default: sgd)"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default: 0.1)"),
    momentum: Optional[float] = typer.Option(None, help="SGD momentum (default: 0.9)"),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (default: off)"),
    weight_decay: Optional[float] = typer.Option(None, help="L2 weight decay (default: 0)"),
    epochs: Optional[int] = typer.Option(None, help="epochs of training (default: 10)"),
    batch_size: Optional[int] = typer.Option(None, help="minibatch size (default: 128)"),
    schedule: Optional[str] = typer.Option(None, help="learning-rate schedule: constant, step or cosine (default: constant)"),
    milestones: Optional[str] = typer.Option(None, help="comma-separated epochs of the step decay (default: none)"),
    gamma: Optional[float] = typer.Option(None, help="factor of each step decay (default: 0.1)"),
    every_steps: Optional[int] = typer.Option(None, help="also snapshot every k steps (default: once per epoch only)"),
    seed: Optional[int] = typer.Option(None, help="seed of the data order, augmentation and dropout (default: --init-seed)"),
    init_seed: Optional[int] = typer.Option(None, help="seed of the initialization of built-in models (default: 0)"),
    replace: ReplaceOpt = False,
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/train)"),
):
    """Train a model, recording its trajectory (trajectory.zarr) and final weights (model.pt)."""
    with reported():
        from rich.table import Table

        from ..execute import check_weights
        from ..sources import Source
        from ..store import write_checkpoint
        from ..training import train

        flags = dict(source_flags(model, model_arg, checkpoint, data, data_root, data_seed, subset),
                     augment=augment, random_labels=random_labels, optimizer=optimizer, lr=lr, momentum=momentum,
                     nesterov=nesterov, weight_decay=weight_decay, epochs=epochs, batch_size=batch_size,
                     schedule=schedule, milestones=[int(m) for m in floats(milestones, "--milestones")] if milestones else None,
                     gamma=gamma, every_steps=every_steps, seed=seed, init_seed=init_seed,
                     out=str(out) if out else None)
        source, cfg, out_s = _settings(config, flags)
        require("model" in source and "data" in source, NEEDS_SOURCE.replace("give a run directory (RUN) made by an earlier command, or ", "give "))
        src = Source.from_dict({**absolute_source(source), "device": device}, str(config) if config else "the options")
        dev = src.resolve_device()
        target = Path(out_s or "runs/train")
        run = open_out(target, src)
        run.write_config("train", {"source": src.as_dict(), "train": cfg})
        d = src.build_data()
        record_fingerprint(run, d)
        net = src.build_model(d).to(dev)
        if src.checkpoint:
            check_weights(net, f"the checkpoint {src.checkpoint}")
        options = {k: v for k, v in cfg.items() if k not in ("optimizer", "lr", "momentum", "weight_decay", "epochs", "batch_size", "seed")}
        resumed = 0 if replace else resume_epoch(run, cfg)
        t0 = time.perf_counter()
        result = train(net, d, optimizer=cfg["optimizer"], lr=cfg["lr"], momentum=cfg["momentum"],
                       weight_decay=cfg["weight_decay"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                       seed=cfg["seed"], store=run, progress=True, replace=replace, device=dev, **options)
        seconds = time.perf_counter() - t0
        if resumed:
            console.print(f"resumed from epoch {resumed} of {cfg['epochs']} (the epochs before were read from {run.path})")
        write_checkpoint(run.path / "model.pt", net.state_dict(), source=src.as_dict())
        t = result.trajectory
        last = {k: float(t[k].values[-1]) for k in ("loss", "accuracy", "test_loss", "test_accuracy") if k in t}
        run.update_summary(train={"seconds": seconds, "epochs": cfg["epochs"], "final": last, "data": d.describe()})
        table = Table(title=f"{src.model} on {d.name}, {cfg['epochs']} epochs in {seconds:.1f} s")
        for k in last:
            table.add_column(k)
        table.add_row(*(f"{v:.4g}" for v in last.values()))
        console.print(table)
        console.print(f"wrote {run.zarr_path('trajectory')} and {run.path / 'model.pt'}")
        write_report(run)


def resume_epoch(run, cfg: dict) -> int:
    """The epoch a rerun of `train` resumes from (0: it starts afresh or the run is finished)."""
    state = run.load_state("trajectory")
    epoch = int(state["epoch"]) if state and "epoch" in state else 0
    return epoch if 0 < epoch < cfg["epochs"] else 0


def retrain_defaults(run) -> tuple[dict, str]:
    """J&R settings "with the original optimizer" (Horoi et al.): the run's optimizer, momentum,
    weight decay, batch size and augmentation, at its final learning rate after the schedule."""
    from ..training import TrainConfig

    if run is None or not run.has_config("train"):
        return dict(JUMP_DEFAULTS), "no training run: lossatlas's documented J&R defaults"
    cfg = TrainConfig.recorded(run)
    out = cfg.original_optimizer(augment=bool(run.read_source().get("augment", False)))
    return out, f"the training run's optimizer at its final learning rate ({cfg.lr:g} x schedule = {out['lr']:g})"


def jump(
    run_path: Annotated[Optional[Path], typer.Argument(metavar="RUN", help="a run directory (its final weights are the centre)")] = None,
    model: ModelOpt = None, model_arg: ModelArgOpt = None, checkpoint: CheckpointOpt = None, data: DataOpt = None,
    data_root: DataRootOpt = None, data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    seeds: int = typer.Option(4, help="number of random directions"),
    step_sizes: str = typer.Option("0.25,0.5,0.75,1.0", help="comma-separated jump lengths"),
    epochs: int = typer.Option(40, help="retraining epochs per run"),
    optimizer: Optional[str] = typer.Option(None, help="default: the run's"),
    lr: Optional[float] = typer.Option(None, help="default: the run's final learning rate"),
    momentum: Optional[float] = typer.Option(None, help="default: the run's"),
    batch_size: Optional[int] = typer.Option(None, help="default: the run's"),
    weight_decay: Optional[float] = typer.Option(None, help="default: the run's"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="default: the run's"),
    sampling: str = typer.Option("jr", help="jr, grid, naive or all (grid and naive get as many points as J&R)"),
    span: float = typer.Option(1.0, help="half-width of the grid sampling"),
    seed: int = typer.Option(0, help="base seed of the retraining runs' data order"),
    replace: ReplaceOpt = False,
    dask: DaskOpt = None, scheduler: SchedulerOpt = None,
    out: Optional[Path] = typer.Option(None, help="run directory (default RUN, else runs/jump)"),
):
    """Jump-and-retrain sampling around a model (Horoi et al.): jump.zarr (and grid.zarr, naive.zarr)."""
    with reported():
        import numpy as np

        from ..execute import check_weights
        from ..jump import grid_sample, jump_retrain, naive_sample
        from ..landscape import Landscape

        require(sampling in ("jr", "grid", "naive", "all"), f"--sampling must be jr, grid, naive or all, got {sampling!r}")
        require(seeds >= 1 and epochs >= 0 and span > 0, "--seeds must be >= 1, --epochs >= 0 and --span > 0")
        steps = floats(step_sizes, "--step-sizes")
        check_executor(dask, scheduler)
        target = out or run_path or Path("runs/jump")
        from .recorded import adopt_source

        flags = adopt_source(run_path, source_flags(model, model_arg, checkpoint, data, data_root, data_seed, subset), device)
        src, given_run = resolve_source(run_path, flags, device)
        dev = src.resolve_device()
        run = open_out(target, src)
        chosen, why = retrain_defaults(given_run)
        given = dict(optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size, weight_decay=weight_decay, augment=augment)
        chosen.update({k: v for k, v in given.items() if v is not None})
        console.print(f"retraining with {', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in chosen.items())} "
                      f"({why}; flags override)")
        run.write_config("jump", {"source": src.as_dict(), "seeds": seeds, "step_sizes": steps, "epochs": epochs,
                                  "retrain": chosen, "retrain_defaults": why, "sampling": sampling, "span": span, "seed": seed})
        d = src.build_data()
        record_fingerprint(run, d)
        net = src.build_model(d).to(dev)
        check_weights(net, f"the checkpoint {src.checkpoint}" if src.checkpoint else "the model")
        n_points = seeds * len(steps) * (epochs + 1)
        summary = {}
        if sampling in ("jr", "all"):
            t0 = time.perf_counter()
            options = dict(chosen)
            use_augment = options.pop("augment")
            with executor(dask, scheduler) as ex:
                if ex is not None:  # workers rebuild the model and data from the source, once each
                    net, d, _ = ex.source(src)
                s = jump_retrain(net, d, seeds=range(seeds), step_sizes=steps, epochs=epochs, store=run, progress=True,
                                 train_seed=seed, replace=replace, augment=use_augment, device=dev, executor=ex,
                                 **options)
            bad = int((~np.isfinite(np.asarray(s["loss"].values))).sum())
            summary["jump"] = {"points": int(s.sizes["point"]), "seconds": time.perf_counter() - t0, "retrain": chosen,
                               "nonfinite": bad}
            if bad:
                console.print(f"[yellow]{bad} of {int(s.sizes['point'])} J&R points have a NaN or infinite loss "
                              "(diverged retraining); they are kept and flagged[/]")
        if sampling in ("grid", "naive", "all"):
            f = Landscape(net, d.train, test=test_pair(d), device=dev)
            if sampling in ("grid", "all"):
                g = grid_sample(f, n_points=n_points, span=span, store=run, progress=True, replace=replace)
                summary["grid"] = {"points": int(g.sizes["point"])}
            if sampling in ("naive", "all"):
                nv = naive_sample(f, n_points=n_points - n_points % len(steps), step_sizes=steps, store=run,
                                  progress=True, replace=replace)
                summary["naive"] = {"points": int(nv.sizes["point"])}
        run.update_summary(**{f"sampling_{k}": v for k, v in summary.items()})
        console.print(f"wrote {', '.join(str(run.zarr_path(k)) for k in summary)}")
        write_report(run)

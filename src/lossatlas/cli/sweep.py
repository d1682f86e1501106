"""``lossatlas sweep CONFIG`` (train and sample a grid of networks) and ``lossatlas predict SWEEP``
(predict generalization from the samples: Horoi et al. 2022, Table 1)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .._errors import require
from .common import DaskOpt, ReplaceOpt, SchedulerOpt, check_executor, console, executor, reported


def _read_config(path: Path) -> dict:
    import yaml

    require(path.is_file(), f"no sweep config at {path}; give a YAML file (see examples/sweep/)")
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        require(False, f"{path} is not valid YAML: {exc}")
    return mapping if mapping is not None else {}


def sweep(
    config: Path = typer.Argument(..., help="YAML file of the sweep's settings (examples/sweep/mnist1d-mlp.yaml)"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/sweep-CONFIGNAME)"),
    dask: DaskOpt = None,
    scheduler: SchedulerOpt = None,
    replace: ReplaceOpt = False,
):
    """Train a grid of networks from one initialization (depth, width, batch size, weight decay,
    augmentation), sample J&R, grid and naive points around each minimum, keep the small results.
    Resumable network by network; each network is one task for --dask/--scheduler."""
    with reported():
        check_executor(dask, scheduler)
        from ..execute import check_writable
        from ..store import RunDir
        from ..store.version import check_run_version, record_run_version
        from ..sweep import read_sweep_config, run_sweep

        cfg = read_sweep_config(_read_config(config), str(config))  # every field checked before any work
        target = out or Path("runs") / f"sweep-{config.stem}"
        if target.is_dir():
            check_run_version(target)
        check_writable(target)
        run = RunDir(target)
        record_run_version(run.path)
        n = len(cfg.networks())
        console.print(f"sweep: {n} networks of {cfg.model} on {cfg.data} into {run.path}")
        retrain = "each network's final learning rate" if cfg.protocol() == "final_lr" else "jump.lr for all"
        console.print(f"J&R: {cfg.jump.runs()} runs per network, each {cfg.jr_epochs()} epochs at {retrain} "
                      f"({cfg.jr_lr():g}), momentum {cfg.jr_momentum():g}, {cfg.n_points()} points")
        with executor(dask, scheduler) as ex:
            ds = run_sweep(cfg, run, executor=ex, progress=True, replace=replace, report=console.print)
        done = int(ds["done"].values.sum())
        console.print(f"sweep: {done} of {n} networks done; next: lossatlas predict {run.path}")


def predict(
    sweep_dir: Path = typer.Argument(..., metavar="SWEEP", help="run directory of a finished sweep"),
    folds: int = typer.Option(10, help="cross-validation folds (of both protocols: stratified, and grouped by siblings)"),
    seed: int = typer.Option(0, help="seed of the folds, the randomized classifiers and the scrambled control"),
    permutations: int = typer.Option(100, help="label permutations of the permutation test (0: none)"),
    classifier: Optional[List[str]] = typer.Option(None, "--classifier", help="only this classifier (repeatable; "
                                                   "default all 11: logistic_regression, linear_svm, ...)"),
    partial: bool = typer.Option(False, help="use the finished networks of an unfinished sweep"),
    permutation_classifier: str = typer.Option("linear_svm", help="the classifier of the permutation test"),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="cross-validation folds fitted in parallel, in processes (default: one at a time)"),
    replace: ReplaceOpt = False,
):
    """Predict each network's generalization class (quintiles of test loss), weight decay and
    augmentation from its J&R, grid and naive samples with 11 classifiers; prints and stores the
    table with the scrambled control, chance and a permutation test, under the paper's protocol
    (stratified folds) and a grouped one (networks that differ only in the predicted setting kept
    in one fold)."""
    with reported():
        from ..store import RunDir
        from ..sweep import predict_sweep, table_text

        require(sweep_dir.is_dir(), f"no sweep run directory at {sweep_dir}")
        run = RunDir(sweep_dir, create=False)
        result = predict_sweep(run, folds=folds, seed=seed, permutations=permutations, replace=replace, progress=True,
                               partial=partial, names=classifier or None, n_jobs=jobs,
                               permutation_classifier=permutation_classifier)
        console.print(table_text(result), soft_wrap=True, markup=False, highlight=False)

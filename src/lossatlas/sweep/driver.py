"""The sweep driver: every network of a :class:`SweepConfig` trained and sampled, each an
independent task, its small results written into ``DIR/sweep.zarr`` one network at a time.

The store holds, per network: its axes, its retraining settings (:data:`RETRAINING`: the
training's final learning rate, J&R's learning rate, momentum, epochs, batch size, weight decay
and augmentation, and whether the network has batch normalization), train and test loss and
accuracy at the minimum, the J&R, grid and naive features (train loss and accuracy of each sampled
point), the total persistence of the J&R set and the seconds of each stage. A network's row is written before it is marked done, so
an interrupted sweep, run again, trains only the networks not yet done. The samples' weights never
reach the store (they live in the task only): a 108-network sweep of small MLPs is about 2 MB, small enough to commit.
"""

from __future__ import annotations

from concurrent.futures import Executor, as_completed
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from .._errors import require
from ..progress import progress_bar
from ..static_sampling import TIES
from ..store import DONE, RunDir, provenance
from .config import AXES, SweepConfig, read_sweep_config
from .network import FEATURE_SETS, sample_network

__all__ = ["NAME", "PROTOCOL_TITLES", "RETRAINING", "SCALARS", "load_sweep", "retraining_protocol", "run_sweep"]

#: The product name of a sweep in its run directory.
NAME = "sweep"

#: The per-network numbers of the store (besides the axes and the features).
SCALARS = ("n_params", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "tp_d0", "tp_d1", "tp_d0_capped",
           "knn_components", "embedded", "phate_components",
           "jr_nonfinite", "grid_nonfinite", "naive_nonfinite", "seconds_train", "seconds_jump_retrain",
           "seconds_grid_naive", "seconds_topology")


#: How the samplers of a sweep draw (issue 19): recorded, so that a sweep sampled otherwise (before
#: these rules: J&R at batch 128 for all, grid and naive directions from J&R's seed stream, grid
#: ties by array index) is refused, never mixed.
SAMPLERS = {"jr_batch_size": "the network's own unless jump.batch_size is set",
            "directions": "J&R: its seeds; grid and naive: each its own stream of seed 0",
            "grid_ties": TIES,
            # (stores made before: D0 and D1 over finite pairs only, no capped total)
            "topology": "D0 and D1 over finite pairs; D0 also with essential classes capped at the largest J&R loss"}


#: The per-network retraining settings the store records (:meth:`SweepConfig.retraining`), written
#: when the store is laid out, so that an unfinished sweep already shows them for every network.
RETRAINING = ("final_lr", "jr_lr", "jr_momentum", "jr_epochs", "jr_batch_size", "jr_weight_decay", "jr_augment",
              "batch_norm")

#: How J&R chose its retraining, by the value of the store's ``retraining_protocol`` attribute.
PROTOCOL_TITLES = {
    "final_lr": "J&R at each network's own optimizer, batch size and final learning rate (the papers' protocol)",
    "fixed_lr": "J&R at one fixed learning rate for all networks (jump.lr)",
    "earlier": "earlier protocol: J&R at one learning rate for all, set by matching SGD steps x lr to the paper's",
}


def _settings(cfg: SweepConfig, data_fingerprint: str) -> dict:
    # Everything that changes a stored value: the whole config (the device included: results on
    # another device differ in rounding), the data actually built and the samplers' rules.
    return {"kind": "sweep", "config": cfg.as_dict(), "data_fingerprint": data_fingerprint, "samplers": SAMPLERS}


def retraining_protocol(sweep: xr.Dataset) -> str:
    """How a stored sweep retrained around its minima: a key of :data:`PROTOCOL_TITLES`
    (``"earlier"`` for stores made before the per-network retraining settings were recorded)."""
    return str(sweep.attrs.get("retraining_protocol", "earlier"))


def _layout(cfg: SweepConfig, settings: dict) -> xr.Dataset:
    nets = cfg.networks()
    n, m = len(nets), 2 * cfg.n_points()
    data = {f"{s}_features": (("network", "feature"), np.full((n, m), np.nan, np.float32)) for s in FEATURE_SETS}
    data.update({k: (("network",), np.full(n, np.nan)) for k in SCALARS})
    data[DONE] = (("network",), np.zeros(n, bool))
    coords = {"network": np.arange(n), "feature": np.arange(m)}
    coords.update({a: (("network",), np.asarray([getattr(x, a) for x in nets])) for a in AXES})
    plans = [cfg.retraining(x) for x in nets]
    coords.update({k: (("network",), np.asarray([p[k] for p in plans])) for k in RETRAINING})
    attrs = {**provenance(device=cfg.device), "kind": "sweep", "settings": settings, "axes": list(AXES),
             "retraining": list(RETRAINING), "retraining_protocol": cfg.protocol(),
             "feature_layout": f"train loss of the {m // 2} sampled points, then their train accuracy",
             "travel": None}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _row(out: dict) -> dict[str, np.ndarray]:
    values = {f"{s}_features": np.asarray(out[f"{s}_features"], np.float32)[None] for s in FEATURE_SETS}
    flat = {**out, **{f"seconds_{k}": v for k, v in out["seconds"].items()}}
    values.update({k: np.asarray([flat[k]], float) for k in SCALARS})
    return values


def run_sweep(config, out, executor: Executor | None = None, progress: bool | Callable = False,
              replace: bool = False, report: Callable[[str], None] | None = None) -> xr.Dataset:
    """Train and sample every network of ``config`` into the run directory ``out``.

    Parameters
    ----------
    config : SweepConfig or mapping
        The sweep (a mapping is read with :func:`read_sweep_config`, every field checked).
    out : path or RunDir
        The sweep's run directory: ``config/sweep.yaml`` and ``sweep.zarr``.
    executor : concurrent.futures.Executor, optional
        Each network is one task (e.g. a Dask cluster's executor); results are written as they
        come, in any order.
    replace : bool
        Delete a store of other settings and start afresh (else it is refused with
        :class:`~lossatlas.StoreMismatchError` naming the differences).
    report : callable, optional
        Receives one line such as ``"resumed: 40 of 108 networks done"``.

    Returns
    -------
    xarray.Dataset (lazy, from the store), dim ``network`` with the axes as coords.

    Examples
    --------
    >>> ds = run_sweep({"depths": [1], "widths": [16], "batch_sizes": [64], "weight_decays": [0.0],
    ...                 "augment": [False]}, "runs/sweep")            # doctest: +SKIP
    """
    cfg = config if isinstance(config, SweepConfig) else read_sweep_config(config)
    cfg.validate()
    run = out if isinstance(out, RunDir) else RunDir(Path(out))
    nets = cfg.networks()
    # The data is built (and checked) before any training: a bad data set fails here.
    data = cfg.source(nets[0]).replace(augment=False).build_data()
    require(len(data.train[1]) > 0 and len(data.test[1]) > 0,
            "the sweep needs a training and a test split: the test loss at the optimum labels each network")
    settings = _settings(cfg, data.fingerprint)
    if run.check(NAME, settings, replace):
        done = run.done_mask(NAME)
    else:
        layout = _layout(cfg, settings)
        layout.attrs["travel"] = cfg.travel(len(data.train[1]))
        run.create_grid(NAME, layout, chunks={"network": 1})
        for a in AXES + RETRAINING:  # the layout writes index coords only
            run.write_variable(NAME, a, layout[a].values)
        done = np.zeros(len(nets), bool)
    run.write_config("sweep", cfg.as_dict())
    todo = [i for i in range(len(nets)) if not done[i]]
    if report is not None:
        report(f"resumed: {int(done.sum())} of {len(nets)} networks done" if done.any()
               else f"{len(nets)} networks to train and sample")
    plain = cfg.as_dict()
    with progress_bar(progress, len(todo), f"sweep: {len(todo)} networks") as advance:
        if executor is None:
            for i in todo:
                run.write_cells(NAME, _row(sample_network(plain, i)), (slice(i, i + 1),))
                advance(1)
        else:
            futures = {executor.submit(sample_network, plain, i): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                run.write_cells(NAME, _row(fut.result()), (slice(i, i + 1),))
                advance(1)
    ds = run.open(NAME, load=False)
    # Finished and still in one chunk per network: one chunk per variable, a few files to commit.
    if (todo or ds["done"].chunks[0][0] == 1) and bool(ds["done"].values.all()):
        run.compact(NAME)
        ds = run.open(NAME, load=False)
    return ds


def load_sweep(out, complete: bool = False) -> xr.Dataset:
    """The stored sweep of run directory ``out`` (only its finished networks), loaded.

    ``complete=True`` refuses a sweep with networks still to train.
    """
    run = out if isinstance(out, RunDir) else RunDir(Path(out), create=False)
    require(run.exists(NAME), f"{run.path} holds no sweep ({NAME}.zarr); run the sweep first")
    ds = run.open(NAME, load=True)
    done = ds[DONE].values.astype(bool)
    require(not complete or done.all(), f"the sweep in {run.path} has {int((~done).sum())} of {done.size} networks "
            "still to train; run the sweep again to finish it")
    return ds.isel(network=np.flatnonzero(done))

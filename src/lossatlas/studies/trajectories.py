"""Li et al. (2018), Section 7: optimizer paths on their PCA directions, and the variance they capture.

The small VGG with batch norm (``smallvgg``, channels (16, 32, 64)) on MNIST-1D's 4,000 training
signals, initialized once (seed 0) and trained by SGD (lr 0.1, momentum 0.9, weight decay 5e-4)
for 60 epochs with a x0.1 step decay at epochs 30, 45 and 55 (Li et al.'s 300-epoch schedule at a
fifth of its length), one snapshot per epoch, at batch 128 and at batch 32. For each path: the two
PCA directions of ``[theta_i - theta_final]`` and the share of the variance each captures (Li et
al. find 40-90 % in the first two for VGG-9 on CIFAR-10), the loss plane spanned by them around
the final weights (on a seeded 1,000-signal subset, batch norm in eval mode, as ``lossatlas
trajectory RUN --steps 31 --samples 1000``) with the path over its contours (Fig. 9), and the same
path on two random filter-normalized directions (Fig. 8: in a space this large random directions
are nearly orthogonal to the path, so it barely moves on them).

Layout: ``OUT/batch128`` and ``OUT/batch32`` (proper run directories: ``trajectory.zarr``,
``trajectory_plane.zarr``, ``trajectory_path.zarr`` (the path's coordinates on both pairs of
directions), ``figures/trajectory_pca`` and ``figures/trajectory_random``), ``OUT/summary.json``
and ``OUT/report.html``. Resumable: a rerun reuses the trained runs and the planes.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("trajectories", "runs/study-trajectories", quick=True)   # doctest: +SKIP
>>> summary["paths"]["batch128"]["explained_total"]                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from .. import plot
from ..demo import FULL
from ..demo.analyses import trajectory_stage
from ..landscape import Landscape
from ..sources import Source
from ..space import random_directions
from ..store import fingerprint
from ..trajectory import pca_directions, project, select_run
from ..training import TrainConfig
from . import common

__all__ = ["QUICK_SETTINGS", "SETTINGS", "TITLE", "run"]

TITLE = "Li et al.: optimizer paths on their PCA directions and the variance they capture (small VGG, MNIST-1D)"

#: The full study: the shorter schedule of Li et al.'s section 7 measured in docs/benchmarks.md.
SETTINGS = {"model": "smallvgg", "model_args": {}, "init_seed": 0, "data_seed": 0, "subset": None,
            "test_subset": None, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 60,
            "milestones": (30, 45, 55), "batch_sizes": (128, 32), "plane_steps": 31, "plane_samples": 1000,
            "random_seed": 0}

#: Tests: a narrow VGG on 500 signals, 4 epochs, 5 x 5 planes on 200 signals.
QUICK_SETTINGS = {**SETTINGS, "model_args": {"channels": [4, 8, 8]}, "subset": 500, "test_subset": 200,
                  "epochs": 4, "milestones": (2, 3), "plane_steps": 5, "plane_samples": 200}


def _spec(cfg: dict, batch: int, device: str) -> common.MinimumSpec:
    src = Source(model=cfg["model"], model_args=dict(cfg["model_args"]), init_seed=cfg["init_seed"], data="mnist1d",
                 data_seed=cfg["data_seed"], subset=cfg["subset"], test_subset=cfg["test_subset"], device=device)
    train = TrainConfig(optimizer="sgd", lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
                        epochs=cfg["epochs"], batch_size=batch, schedule="step", milestones=tuple(cfg["milestones"]),
                        seed=cfg["init_seed"])
    return common.MinimumSpec(f"batch{batch}", src, train)


def _path(m, cfg: dict, replace: bool) -> dict:
    """The PCA plane and path (the demo's trajectory stage, on a seeded subset with batch norm in
    eval mode), the same path on two random directions, and what each spans."""
    f = Landscape(m.model, m.data.train, bn="eval", samples=cfg["plane_samples"], seed=cfg["data_seed"],
                  device=m.theta.device)
    stage = trajectory_stage(dataclasses.replace(m, landscape=f), dataclasses.replace(FULL, trajectory_steps=cfg["plane_steps"]),
                             replace)
    traj = select_run(m.run.open("trajectory", load=False))
    final = traj.weights.isel(point=-1).values
    dirs, ratios = pca_directions(traj, n=2)
    xy = project(traj, final, dirs)
    rand = random_directions(m.model, n=2, seed=cfg["random_seed"])
    xy_r = project(traj, final, [r.detach().cpu().numpy() for r in rand])
    epochs = np.asarray(traj.epoch.values, float)
    lr_drops = [int(e) for e in traj.attrs.get("lr_drops", [])]
    plot.plot_trajectory(xy_r, epochs, explained=None, lr_drops=lr_drops, path=m.run.figures / "trajectory_random",
                         title=f"{m.name}: the same path on two random directions")
    settings = {"directions": "pca and random (filter-normalized)", "random_seed": cfg["random_seed"],
                "trajectory": fingerprint(np.asarray(traj.weights.values))}
    # derived from the stored trajectory in seconds: redone (never refused) whenever it changed
    if not m.run.check("trajectory_path", settings, replace=True):
        m.run.save("trajectory_path", xr.Dataset(
            {"pca": (("point", "axis"), xy), "random": (("point", "axis"), xy_r)},
            coords={"epoch": ("point", epochs), "axis": [1, 2]},
            attrs={"settings": settings, "explained": ratios.tolist()}))
    plane = m.run.open("trajectory_plane")
    out = {**stage, "explained_variance": ratios.tolist(), "explained_total": float(ratios.sum()),
           "path_points": int(xy.shape[0]), "pca_extent": np.abs(xy).max(0).tolist(),
           "random_extent": np.abs(xy_r).max(0).tolist(),
           "plane_loss_min": float(np.nanmin(plane.loss.values)), "plane_loss_max": float(np.nanmax(plane.loss.values)),
           "plane_points": int(plane.loss.size), "final": m.final, "run": str(m.run.path)}
    m.run.update_summary(trajectory={k: v for k, v in out.items() if k not in ("final", "run")})
    return out


@common.study_run('summary = run(Path("runs/study-trajectories"), quick=True)',
                  'summary["paths"]["batch32"]["explained_variance"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None) -> dict:
    cfg = QUICK_SETTINGS if quick else SETTINGS
    st = common.start_study(out, "trajectories", {"quick": quick, "device": device, "settings": cfg}, device, console)
    dev, clock, notices, say = st.device, st.clock, st.notices, st.say
    say(f"trajectories study ({'quick' if quick else 'full'}) on {dev}: {cfg['model']} on MNIST-1D, SGD lr "
        f"{cfg['lr']:g}, momentum {cfg['momentum']:g}, weight decay {cfg['weight_decay']:g}, {cfg['epochs']} epochs "
        f"(drops at {', '.join(map(str, cfg['milestones']))}), batch {' and '.join(map(str, cfg['batch_sizes']))}")
    paths = {}
    for batch in cfg["batch_sizes"]:
        spec = _spec(cfg, batch, device)
        with notices.catch(f"training {spec.name}"), clock.stage(f"train_{spec.name}"):
            m = common.train_minimum(out, spec, device=dev, replace=replace)
        with notices.catch(f"paths of {spec.name}"), clock.stage(f"plane_{spec.name}"):
            paths[spec.name] = row = _path(m, cfg, replace)
        r, f = row["explained_variance"], m.final
        say(f"{spec.name}: train acc {f['accuracy']:.4f}, test acc {f['test_accuracy']:.4f}; PCA 1 + PCA 2 = "
            f"{100 * r[0]:.1f}% + {100 * r[1]:.1f}% = {100 * row['explained_total']:.1f}%; path spans "
            f"{row['pca_extent'][0]:.3g} x {row['pca_extent'][1]:.3g} on them, "
            f"{row['random_extent'][0]:.3g} x {row['random_extent'][1]:.3g} on random directions")
    totals = {k: v["explained_total"] for k, v in paths.items()}
    summary = {"paths": paths,
               "comparison": {"paper_range": [0.4, 0.9], "explained_total": totals,
                              "within_paper_range": {k: bool(0.4 <= v <= 0.9) for k, v in totals.items()},
                              "smaller_batch_less_straight": bool(totals["batch32"] < totals["batch128"])
                              if {"batch32", "batch128"} <= set(totals) else None},
               "study": {"title": TITLE, "quick": quick, "device": str(dev), "settings": cfg},
               "notices": notices.as_list()}
    return common.finish_study(out, "study", summary, clock, st.console)

"""Horoi et al.: SGD, SGD with momentum and Adam from five initializations, embedded together.

A small 1-D CNN (``smallcnn`` (16, 32), hidden 64: 22,826 parameters) on MNIST-1D with random
circular shifts and no weight decay (as the paper trains its optimizer comparison), from five
initialization seeds (0-4), each trained with each optimizer: SGD (lr 0.05), SGD with momentum
0.9 (lr 0.05) and Adam (lr 1e-3), 20 epochs at batch 128 with a x0.1 step decay at epochs 10 and
15, the weights recorded every 16 SGD steps (twice an epoch). The 15 trajectories are embedded
together by PHATE (cosine), t-SNE, UMAP and PCA, with DeMAP and trajectory continuity, and drawn
with the initializations as gold stars (the paper's Fig. 4); Adam's five trajectories are also
embedded alone (Fig. 4c).

Measured beside the pictures, per optimizer (mean over the seeds): the distance travelled in
weight space from the initialization to the final weights, the length of the path, the final
weight norm; per embedding, how well it separates the final points of the three optimizers
(silhouette of the final points by optimizer) and whether it keeps each run's way out from its
start (Spearman correlation of the embedded distance from the start with the cosine distance
from the initial weights, mean over the runs).

Layout: ``OUT/seed0`` ... ``OUT/seed4`` (one run directory per initialization, each holding the
trajectories ``trajectory_sgd``, ``trajectory_momentum`` and ``trajectory_adam``),
``OUT/trajectories.zarr`` (the losses of every snapshot, no weights), ``OUT/embedding_trajectories.zarr``
(the joint embedding), ``OUT/figures``, ``OUT/summary.json``, ``OUT/report.html``. Resumable.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("optimizers", "runs/study-optimizers", quick=True)   # doctest: +SKIP
>>> summary["embedding"]["trajectories"]                                     # doctest: +SKIP
15
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .. import plot
from ..demo.analyses import scores_of
from ..embedding import embed
from ..plot.optimizers import plot_optimizer_panel
from ..sources import Source
from ..store import RunDir, differences, mismatch
from ..training import train
from . import common

__all__ = ["OPTIMIZERS", "QUICK_SETTINGS", "SETTINGS", "TITLE", "run"]

TITLE = "Horoi et al.: SGD vs SGD+momentum vs Adam trajectories from 5 initializations, embedded together"

#: Each optimizer's training settings (the paper gives all three lr 0.1; see docs/studies.md).
OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.0},
    "momentum": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
    "adam": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0},
}
LABELS = {"sgd": "SGD", "momentum": "SGD+momentum", "adam": "Adam"}

SETTINGS = {"channels": (16, 32), "hidden": 64, "seeds": (0, 1, 2, 3, 4), "data_seed": 0, "subset": None,
            "test_subset": None, "augment": True, "epochs": 20, "milestones": (10, 15), "batch_size": 128,
            "every_steps": 16, "methods": ("phate", "tsne", "umap", "pca")}

#: Tests: 500 signals, 2 epochs; no UMAP (its compilation alone takes 15-20 s in a fresh process).
QUICK_SETTINGS = {**SETTINGS, "channels": (8, 16), "hidden": 32, "subset": 500, "test_subset": 300, "epochs": 2,
                  "milestones": (1,), "every_steps": None, "methods": ("phate", "pca")}


def _source(cfg: dict, seed: int, device: str) -> Source:
    return Source(model="smallcnn", model_args={"channels": list(cfg["channels"]), "hidden": cfg["hidden"]},
                  init_seed=int(seed), data="mnist1d", data_seed=cfg["data_seed"], subset=cfg["subset"],
                  test_subset=cfg["test_subset"], augment=cfg["augment"], device=device).validate()


def _train_seed(out: Path, cfg: dict, seed: int, device: str, dev, replace: bool) -> dict:
    """The three optimizers from initialization ``seed``, into ``out/seed{seed}``."""
    src = _source(cfg, seed, device)
    run = RunDir(out / f"seed{seed}")
    ignored = ("device", "checkpoint", "data_fingerprint", "checkpoint_sha256", "code_dir")
    record = {k: v for k, v in src.as_dict().items() if k not in ignored}
    if run.has_source() and not replace:  # never relabel products of another source
        stored = {k: v for k, v in run.read_source().items() if k not in ignored}
        diffs = differences(stored, record)
        if diffs:
            raise mismatch(run.path / "config" / "source.yaml", diffs)
    data = src.build_data()
    run.write_source({**src.as_dict(), "data_fingerprint": data.fingerprint})
    trajectories = {}
    for name, opt in OPTIMIZERS.items():
        model = src.build_model(data).to(dev)  # the same initialization for every optimizer
        options = dict(epochs=cfg["epochs"], batch_size=cfg["batch_size"], weight_decay=0.0, schedule="step",
                       milestones=tuple(cfg["milestones"]), gamma=0.1, every_steps=cfg["every_steps"])
        run.write_config(f"train_{name}", {"source": src.as_dict(), "train": {**opt, **options, "seed": int(seed)}})
        result = train(model, data, seed=int(seed), store=run, name=f"trajectory_{name}", progress=True,
                       replace=replace, device=dev, **opt, **options)
        trajectories[name] = result.trajectory
    return trajectories


def _joint(trajectories: dict) -> xr.Dataset:
    """The 15 trajectories as one set of points: weights, losses, and the coordinates
    ``optimizer``, ``seed`` (the initialization), ``run`` (``optimizer/seed``), ``epoch``, ``step``."""
    parts = []
    for (name, seed), t in trajectories.items():
        t = t.load()
        n = t.sizes["point"]
        keep = {k: (("point",), np.asarray(t[k].values)) for k in ("loss", "accuracy", "test_loss", "test_accuracy")
                if k in t}
        parts.append(xr.Dataset({"weights": (("point", "param"), np.asarray(t.weights.values, np.float32)), **keep},
                                coords={"optimizer": ("point", np.array([name] * n)),
                                        "seed": ("point", np.full(n, int(seed))),
                                        "run": ("point", np.array([f"{name}/seed{seed}"] * n)),
                                        "epoch": ("point", np.asarray(t.epoch.values, float)),
                                        "step": ("point", np.asarray(t.step.values, np.int64))}))
    joint = xr.concat(parts, dim="point")
    return joint.assign_coords(point=np.arange(joint.sizes["point"]))


def _arrays(emb: xr.Dataset) -> dict:
    names = {"phate": "PHATE", "tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
    return {names.get(str(k), str(k)): np.asarray(emb.embedding.values[i]) for i, k in enumerate(emb.method.values)}


def _options(n: int, methods) -> dict:
    options = {"tsne": {"perplexity": float(min(30, max(2, (n - 1) // 3)))},
               "umap": {"n_neighbors": int(min(15, max(2, n - 1)))}}
    return {k: v for k, v in options.items() if k in methods}


def _travel(joint: xr.Dataset) -> dict:
    """Per optimizer (mean over the runs): distance from the initialization to the final weights,
    path length, initial and final weight norm, final train and test accuracy."""
    w = joint.weights.values.astype(np.float64)
    runs, opt, step = (np.asarray(joint[k].values) for k in ("run", "optimizer", "step"))
    per = {}
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        idx = idx[np.argsort(step[idx], kind="stable")]
        path = np.linalg.norm(np.diff(w[idx], axis=0), axis=1).sum()
        per.setdefault(str(opt[idx[0]]), []).append(
            {"distance": float(np.linalg.norm(w[idx[-1]] - w[idx[0]])), "path_length": float(path),
             "init_norm": float(np.linalg.norm(w[idx[0]])), "final_norm": float(np.linalg.norm(w[idx[-1]])),
             "train_accuracy": float(joint.accuracy.values[idx[-1]]),
             "test_accuracy": float(joint.test_accuracy.values[idx[-1]]),
             "train_loss": float(joint.loss.values[idx[-1]])})
    return {k: {**{key: float(np.mean([row[key] for row in v])) for key in v[0]}, "runs": len(v)}
            for k, v in per.items()}


def _unfolding(emb: xr.Dataset, joint: xr.Dataset) -> dict:
    """Whether each embedding keeps a run's way out from its start: per run, the Spearman
    correlation of the embedded distance from the run's first point with the cosine distance from
    the initial weights (1: the farther in weight space, the farther in the picture; near 0 or
    negative: the run folds back towards its start), averaged over the runs."""
    from scipy.stats import spearmanr

    w = joint.weights.values.astype(np.float64)
    runs, step = np.asarray(joint.run.values), np.asarray(joint.step.values)
    out: dict = {str(k): [] for k in emb.method.values}
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        idx = idx[np.argsort(step[idx], kind="stable")]
        w0 = w[idx[0]]
        cos = 1.0 - (w[idx] @ w0) / (np.linalg.norm(w[idx], axis=1) * np.linalg.norm(w0) + 1e-30)
        for i, k in enumerate(emb.method.values):
            e = np.asarray(emb.embedding.values[i])[idx]
            rho = spearmanr(cos, np.linalg.norm(e - e[0], axis=1)).statistic
            out[str(k)].append(float(rho))
    return {k: float(np.nanmean(v)) for k, v in out.items() if v}


def _silhouettes(emb: xr.Dataset, joint: xr.Dataset) -> dict:
    """How far apart the optimizers' final points lie in each embedding (silhouette, -1 to 1)."""
    from sklearn.metrics import silhouette_score

    runs, opt, step = (np.asarray(joint[k].values) for k in ("run", "optimizer", "step"))
    last = np.array([np.flatnonzero(runs == r)[np.argmax(step[runs == r])] for r in np.unique(runs)])
    labels = opt[last]
    if len(np.unique(labels)) < 2 or len(last) <= len(np.unique(labels)):
        return {}
    return {str(k): float(silhouette_score(emb.embedding.values[i][last], labels))
            for i, k in enumerate(emb.method.values)}


@common.study_run('summary = run(Path("runs/study-optimizers"), quick=True)', 'summary["embedding"]["stars"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None) -> dict:
    cfg = QUICK_SETTINGS if quick else SETTINGS
    st = common.start_study(out, "optimizers", {"quick": quick, "device": device, "settings": cfg,
                                                "optimizers": OPTIMIZERS}, device, console)
    out, top, dev, console = Path(out), st.top, st.device, st.console
    clock, notices, say = st.clock, st.notices, st.say

    say(f"optimizers study ({'quick' if quick else 'full'}) on {dev}: smallcnn {tuple(cfg['channels'])}, hidden "
        f"{cfg['hidden']}, {len(cfg['seeds'])} initializations x {len(OPTIMIZERS)} optimizers, {cfg['epochs']} epochs, "
        f"weights every {cfg['every_steps']} steps")
    trajectories = {}
    for seed in cfg["seeds"]:
        with notices.catch(f"training seed {seed}"), clock.stage(f"train_seed{seed}"):
            for name, traj in _train_seed(out, cfg, seed, device, dev, replace).items():
                trajectories[(name, seed)] = traj
        say(f"seed {seed}: " + "; ".join(
            f"{LABELS[k]} train acc {float(trajectories[(k, seed)].accuracy.values[-1]):.3f}, test acc "
            f"{float(trajectories[(k, seed)].test_accuracy.values[-1]):.3f}" for k in OPTIMIZERS))

    joint = _joint(trajectories)
    n = int(joint.sizes["point"])
    top.save("trajectories", joint.drop_vars("weights"))
    console.rule(f"[bold]the {len(trajectories)} trajectories embedded together ({n} points)")
    with notices.catch("embedding"), clock.stage("embedding"):
        emb = embed(joint, methods=cfg["methods"], seed=0, options=_options(n, cfg["methods"]))
        top.save("embedding_trajectories", emb)
        adam = joint.isel(point=np.flatnonzero(joint.optimizer.values == "adam"))
        emb_adam = embed(adam, methods=("phate",), seed=0)
        top.save("embedding_adam", emb_adam)
    scores = scores_of(emb)
    say("; ".join(f"{k}: DeMAP {v.get('DeMAP', np.nan):.2f}, continuity {v.get('continuity', np.nan):.2f}"
                  for k, v in scores.items()))

    figures = top.figures
    with notices.catch("figures"):
        arrays = _arrays(emb)
        names = {"phate": "PHATE", "tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
        labelled = joint.drop_vars("weights").assign_coords(
            optimizer=("point", np.array([LABELS[o] for o in joint.optimizer.values])))
        fig = plot_optimizer_panel(arrays, labelled, scores={names.get(k, k): v for k, v in scores.items()},
                                   path=figures / "optimizers_panel",
                                   title=f"{len(trajectories)} training runs ({len(cfg['seeds'])} initializations x "
                                         f"{len(OPTIMIZERS)} optimizers) embedded together")
        stars = [sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "initializations")
                 for ax in fig.axes]
        plot.plot_optimizer_trajectories(arrays["PHATE"], labelled, path=figures / "optimizers_phate",
                                         title="PHATE (cosine) of the training trajectories", method="PHATE")
        adam_meta = labelled.isel(point=np.flatnonzero(joint.optimizer.values == "adam"))
        plot.plot_optimizer_trajectories(np.asarray(emb_adam.embedding.values[0]), adam_meta, group="run",
                                         path=figures / "adam_phate", title="PHATE of Adam's trajectories alone",
                                         method="PHATE")
    travel = _travel(joint)
    silhouettes = _silhouettes(emb, joint)
    for k, v in travel.items():
        say(f"{LABELS[k]}: distance from the initialization {v['distance']:.3g}, path length {v['path_length']:.3g}, "
            f"final weight norm {v['final_norm']:.3g} (initial {v['init_norm']:.3g}), "
            f"test acc {v['test_accuracy']:.3f}")
    summary = {
        "optimizers": {LABELS[k]: {**v, **OPTIMIZERS[k]} for k, v in travel.items()},
        "embedding": {"points": n, "trajectories": len(trajectories), "stars": stars, "scores": scores,
                      "final_points_silhouette": silhouettes, "distance_from_start_spearman": _unfolding(emb, joint),
                      "adam_alone": {"points": int(emb_adam.sizes["point"]), "scores": scores_of(emb_adam),
                                     "distance_from_start_spearman": _unfolding(emb_adam, adam)}},
        "study": {"title": TITLE, "quick": quick, "device": str(dev), "settings": cfg},
        "notices": notices.as_list(),
    }
    return common.finish_study(out, "study", summary, clock, console)

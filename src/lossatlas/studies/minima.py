"""Horoi et al.: good, bad and memorization minima, mapped by jump and retrain, PHATE and topology.

The earlier protocol: this study keeps the demo's retraining as first built
(:data:`lossatlas.demo.settings.EARLIER_RETRAINING`: lr 0.05, the runs' *initial* rate and 100
times their final one, for 10 epochs) and networks without batch norm, so that its committed
results stay reproducible. The papers' protocol (a batch-norm ResNet that fits its training set,
retrained at its final learning rate for a quarter of its training) is the ``minima-protocol``
study (:mod:`lossatlas.studies.minima_protocol`). Each minimum's row in ``summary.json`` records
its ``final_lr`` and the retraining's ``jr_lr``, ``jr_batch_size`` and ``jr_epochs``.

The demo's network (``smallcnn`` (16, 32), hidden 256) on MNIST-1D, its three minima trained with the
demo's source and training settings from one initialization (seed 0): good (weight decay and
random shifts), bad (neither) and memorization (random labels). Around each, jump and retrain
with the demo's retraining (4 directions x 4 jumps, 10 epochs = 320 SGD steps at lr 0.05: steps
x lr = 16, as far as the paper's 15,600 steps at lr 1e-3), then PHATE (cosine) with t-SNE, UMAP
and PCA and their DeMAP and continuity scores, and total persistence of D0 and D1. Besides:

- a second initialization (seed 1) of the good and the bad minimum (the paper's robustness figure,
  Fig. 5, repeats those two): do the star, the outward paths and the persistence ordering hold?
- grid and naive samples around the good minimum, as many points as its J&R set, embedded by
  PHATE beside J&R and coloured by log loss (the IDA paper's Fig. 2, top row).

Besides the pictures, the study measures the shape of each retraining run in weight space: its
distance to the minimum after retraining over its distance at the jump (the *return ratio*: below
1, the run came back), and whether it went farther out than the jump point at some epoch
(*outward*). The paper's star is runs that return without going out first.

Layout: ``OUT/good``, ``OUT/bad``, ``OUT/memorization`` (initialization 0, with ``grid.zarr`` and
``naive.zarr`` in ``OUT/good``), ``OUT/good-init1``, ``OUT/bad-init1`` (the same minima from
initialization 1), each trained with the demo's source and training settings, the
comparison figures in ``OUT/figures``, ``OUT/summary.json`` and ``OUT/report.html`` (one report
of all five). Everything is resumable: a rerun reuses the stored minima and samples.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("minima", "runs/study-minima", quick=True)   # doctest: +SKIP
>>> summary["patterns"]["init0"]["persistence_good_below_bad"]       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .. import plot
from ..demo import FULL, MINIMA, QUICK, DemoSettings, Notices, source_of
from ..demo.analyses import embedding_stage, jump_stage, retraining_record, topology_stage
from ..demo.clock import StageClock
from ..demo.minima import train_config
from ..embedding import embed
from ..jump import grid_sample, naive_sample
from ..topology import persistence_totals, totals_text
from . import common

__all__ = ["QUICK_SETTINGS", "SETTINGS", "TITLE", "retraining_shape", "run"]

TITLE = "Horoi et al.: good, bad and memorization minima (J&R, PHATE, persistence), two initializations"

#: The full study: the demo's minima and retraining as they are (no surfaces, no Hessian).
SETTINGS = {"demo": FULL, "second_init": 1, "repeat": ("good", "bad"), "compared": "good"}

#: The quick study (tests): a small network on 500 signals, 2 x 2 jumps x 1 epoch; no UMAP,
#: whose compilation alone takes 15-20 s in a fresh process.
QUICK_SETTINGS = {
    "demo": dataclasses.replace(QUICK, channels=(8, 16), hidden=32, subset=500, test_subset=300, epochs=4,
                                memorization_epochs=6, jr_seeds=2, jr_step_sizes=(0.5, 1.0), jr_epochs=1,
                                methods=("phate", "pca"), topology_k=8),
    "second_init": 1, "repeat": ("good", "bad"), "compared": "good",
}


def retraining_shape(samples: xr.Dataset, theta) -> dict:
    """How the J&R runs move in weight space relative to the minimum ``theta``.

    For each run (seed and step size) the distance ``d(e) = |theta_e - theta|`` at every recorded
    epoch: the *return ratio* ``d(last) / d(0)`` (below 1: the run came back towards the minimum)
    and *outward*: some later epoch is farther out than the jump point (``max d(e > 0) > d(0)``).

    Returns
    -------
    dict with ``return_ratio`` (mean), ``outward_fraction``, ``settled_return_ratio``
    (``d(last) / d(1)``: from the end of the first retraining epoch, when the kick out of a
    high-loss jump point is over; NaN with a single retraining epoch), the same three for the
    cosine distance (``cosine_...``), and all six per step size.

    Examples
    --------
    >>> shape = retraining_shape(jump_samples, minimum.theta)   # doctest: +SKIP
    >>> shape["return_ratio"] < 1                               # doctest: +SKIP
    True
    """
    w = np.asarray(samples["weights"].values, dtype=np.float64)
    t = np.asarray(theta.detach().cpu().double().numpy() if hasattr(theta, "detach") else theta, np.float64)
    if w.shape[1] != t.size:
        raise ValueError(f"samples have {w.shape[1]} parameters, the minimum {t.size}")
    seed, step, epoch = (np.asarray(samples[k].values) for k in ("seed", "step_size", "epoch"))
    # Euclidean, and cosine (1 - cos, the distance PHATE's graph is built on here)
    dists = {"": np.linalg.norm(w - t[None, :], axis=1),
             "cosine_": 1.0 - (w @ t) / (np.linalg.norm(w, axis=1) * np.linalg.norm(t) + 1e-30)}
    out: dict = {}
    by_step: dict = {}
    for prefix, d in dists.items():
        rows = []
        for s in np.unique(seed):
            for c in np.unique(step):
                idx = np.flatnonzero((seed == s) & (step == c))
                if idx.size < 2:
                    continue
                idx = idx[np.argsort(epoch[idx], kind="stable")]
                d0 = d[idx[0]]
                # after the first epoch: the kick out of a high-loss jump point is over
                settled = float(d[idx[-1]] / d[idx[1]]) if idx.size > 2 else float("nan")
                rows.append((float(c), float(d[idx[-1]] / d0), bool(d[idx[1:]].max() > d0), settled))
        out["runs"] = len(rows)
        keys = ("return_ratio", "outward_fraction", "settled_return_ratio")
        out.update({f"{prefix}{k}": float(np.mean([r[i + 1] for r in rows])) for i, k in enumerate(keys)})
        for c in sorted({r[0] for r in rows}):
            rs = [r for r in rows if r[0] == c]
            by_step.setdefault(f"{c:g}", {}).update(
                {f"{prefix}{k}": float(np.mean([r[i + 1] for r in rs])) for i, k in enumerate(keys)})
    return {**out, "by_step_size": by_step}


def _embedding_grid(rows: list, color: str, path: Path, title: str) -> Figure:
    """Rows of ``(panel title, 2-D embedding, samples)`` in one figure, each drawn by
    :func:`lossatlas.plot.plot_embedding` (its own legend and colour bar)."""
    ncols = max(len(r) for r in rows)
    fig = Figure(figsize=(5.6 * ncols, 4.2 * len(rows)), layout="constrained")
    for i, row in enumerate(rows):
        for j, (name, emb, samples) in enumerate(row):
            ax = fig.add_subplot(len(rows), ncols, i * ncols + j + 1)
            plot.plot_embedding(emb, samples, color=color, ax=ax, method="PHATE", title=name)
    fig.suptitle(title)
    plot.save_figure(fig, path)
    return fig


def _phate_of(emb: xr.Dataset) -> np.ndarray:
    methods = [str(m) for m in emb.method.values]
    return np.asarray(emb.embedding.values[methods.index("phate")])


def _static_samplings(m, s: DemoSettings, n: int, replace: bool) -> dict:
    """Grid and naive samples of ``n`` points around minimum ``m`` and their PHATE embeddings
    (``embedding_grid``, ``embedding_naive`` in its run directory), with DeMAP."""
    span = float(max(s.jr_step_sizes))
    out = {}
    for kind in ("grid", "naive"):
        if kind == "grid":
            ds = grid_sample(m.landscape, n_points=n, span=span, seed=0, store=m.run, name="grid", progress=True,
                             replace=replace)
        else:
            ds = naive_sample(m.landscape, n_points=n, step_sizes=s.jr_step_sizes, seed=0, store=m.run, name="naive",
                              progress=True, replace=replace)
        # Static samples have no time: without the (all zero) epoch every point is drawn alike,
        # and no trajectory continuity is scored.
        flat = ds.drop_vars("epoch").load()
        emb = embed(flat, methods=("phate",), seed=0)
        m.run.save(f"embedding_{kind}", emb)
        loss = np.asarray(flat.loss.values, float)
        out[kind] = {"points": int(flat.sizes["point"]), "phate_demap": float(emb.attrs.get("phate_demap", np.nan)),
                     "loss_min": float(np.nanmin(loss)), "loss_median": float(np.nanmedian(loss)),
                     "loss_max": float(np.nanmax(loss)), "embedding": _phate_of(emb), "samples": flat}
    return out


def _minimum(out: Path, name: str, s: DemoSettings, first: DemoSettings, device: str, dev, replace: bool):
    """Minimum ``name`` of ``s``'s initialization with the demo's source and training settings:
    the first initialization into ``out/name``, another into ``out/name-initN``.

    Trained by :func:`lossatlas.studies.common.train_minimum`, not the demo's own trainer: that one
    names the sub-run after the minimum, and it refuses its own finished run on a rerun (it
    compares the recorded source, whose data fingerprint it leaves out, with a record that holds
    the fingerprint field), so the study could not resume."""
    sub = name if s.init_seed == first.init_seed else f"{name}-init{s.init_seed}"
    spec = common.MinimumSpec(sub, source_of(name, s, device), train_config(name, s))
    m = common.train_minimum(out, spec, device=dev, replace=replace)
    # The demo's stages read the kind of minimum (weight decay, augmentation) from its name.
    return dataclasses.replace(m, name=name)


def _one_init(out: Path, names, s: DemoSettings, first: DemoSettings, device: str, dev, replace: bool,
              clock: StageClock, notices: Notices, tag: str, say) -> dict:
    """Train, sample, embed and measure the minima ``names`` of one initialization."""
    res = {}
    for name in names:
        with notices.catch(f"{tag} {name}"):
            with clock.stage(f"{tag}_train_{name}"):
                m = _minimum(out, name, s, first, device, dev, replace)
            with clock.stage(f"{tag}_jump_{name}"):
                samples = jump_stage(m, s, replace)
            with clock.stage(f"{tag}_embedding_{name}"):
                scores = embedding_stage(m, s, samples)
            with clock.stage(f"{tag}_topology_{name}"):
                diagrams, fit, totals = topology_stage(m, s, samples)
            shape = retraining_shape(samples, m.theta)
        retraining = retraining_record(m, s)
        emb = m.run.open("embedding")
        meta = samples.drop_vars("weights").load()
        res[name] = {"minimum": m, "samples": samples, "meta": meta, "phate": _phate_of(emb), "scores": scores,
                     "diagrams": diagrams, "fit": fit, "totals": totals, "shape": shape,
                     "retraining": retraining}
        f = m.final
        say(f"{tag} {name}: train acc {f['accuracy']:.3f}, test acc {f['test_accuracy']:.3f}; total persistence "
            f"{totals_text(persistence_totals(diagrams))}; return ratio {shape['return_ratio']:.2f}, "
            f"outward {shape['outward_fraction']:.0%} (cosine: {shape['cosine_return_ratio']:.2f}, "
            f"{shape['cosine_outward_fraction']:.0%}); PHATE DeMAP {scores.get('phate', {}).get('DeMAP', np.nan):.2f}")
    return res


def _row(r: dict) -> dict:
    m = r["minimum"]
    return {**r["retraining"], "train_loss": m.final["loss"], "train_accuracy": m.final["accuracy"],
            "test_loss": m.final["test_loss"],
            "test_accuracy": m.final["test_accuracy"], **persistence_totals(r["diagrams"]),
            "total_persistence_d0": r["totals"].get(0, 0.0),
            "total_persistence_d1": r["totals"].get(1, 0.0), "return_ratio": r["shape"]["return_ratio"],
            "outward_fraction": r["shape"]["outward_fraction"],
            "cosine_return_ratio": r["shape"]["cosine_return_ratio"],
            "cosine_outward_fraction": r["shape"]["cosine_outward_fraction"],
            "settled_return_ratio": r["shape"]["settled_return_ratio"],
            "cosine_settled_return_ratio": r["shape"]["cosine_settled_return_ratio"],
            "return_by_step_size": r["shape"]["by_step_size"], "jr_points": int(r["meta"].sizes["point"]),
            "embedding_scores": r["scores"], "run": str(m.run.path)}


def _patterns(rows: dict) -> dict:
    """The paper's claims, checked on one initialization's minima."""
    g, b = rows["good"], rows["bad"]
    phate = {k: v["embedding_scores"].get("phate", {}).get("DeMAP", np.nan) for k, v in rows.items()}
    best = {k: max(v["embedding_scores"], key=lambda meth: v["embedding_scores"][meth].get("DeMAP", -np.inf))
            for k, v in rows.items()}
    return {"persistence_good_below_bad": bool(g["total_persistence_d0"] < b["total_persistence_d0"]),
            # the drop totals compare nothing when either D0 has no finite pair (a split kNN graph)
            "persistence_measured": not (g["empty_d0"] or b["empty_d0"]),
            "capped_persistence_good_below_bad": bool(g["capped_total_persistence_d0"] < b["capped_total_persistence_d0"]),
            "good_returns_closer_than_bad": bool(g["return_ratio"] < b["return_ratio"]),
            "good_less_outward_than_bad": bool(g["outward_fraction"] < b["outward_fraction"]),
            "good_returns_closer_than_bad_cosine": bool(g["cosine_return_ratio"] < b["cosine_return_ratio"]),
            "good_settles_closer_than_bad": bool(g["settled_return_ratio"] < b["settled_return_ratio"]),
            "good_generalizes_better": bool(g["test_accuracy"] > b["test_accuracy"]),
            "phate_demap": phate, "best_demap_method": best}


@common.study_run('summary = run(Path("runs/study-minima"), quick=True)', 'sorted(summary["minima"]["init0"])')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None) -> dict:
    cfg = QUICK_SETTINGS if quick else SETTINGS
    s0: DemoSettings = cfg["demo"]
    s1 = dataclasses.replace(s0, init_seed=cfg["second_init"])
    st = common.start_study(out, "minima", {"quick": quick, "device": device, "settings": s0.as_dict(),
                                            "second_init": cfg["second_init"], "repeat": list(cfg["repeat"]),
                                            "compared": cfg["compared"]}, device, console)
    out, top, dev, console = Path(out), st.top, st.device, st.console
    clock, notices, say = st.clock, st.notices, st.say
    travel = s0.jr_travel()

    say(f"minima study ({'quick' if quick else 'full'}) on {dev}: smallcnn {tuple(s0.channels)}, hidden {s0.hidden}, "
        f"MNIST-1D {s0.n_train()} training signals; J&R {s0.jr_seeds} directions x {len(s0.jr_step_sizes)} jumps, "
        f"{travel['steps']} SGD steps at lr {s0.jr_lr:g}: steps x lr = {travel['steps_x_lr']:.3g} "
        f"({travel['fraction_of_paper']:.0%} of the paper's {travel['paper_steps_x_lr']:.3g})")
    console.rule("[bold]initialization 0: good, bad and memorization minima")
    first = _one_init(out, list(MINIMA), s0, s0, device, dev, replace, clock, notices, "init0", say)
    console.rule(f"[bold]initialization {cfg['second_init']}: {', '.join(cfg['repeat'])}")
    second = _one_init(out, list(cfg["repeat"]), s1, s0, device, dev, replace, clock, notices,
                       f"init{cfg['second_init']}", say)

    compared = first[cfg["compared"]]
    n = int(compared["meta"].sizes["point"])
    console.rule(f"[bold]grid and naive sampling around the {cfg['compared']} minimum ({n} points each)")
    with notices.catch("grid and naive sampling"):
        with clock.stage("grid_naive"):
            static = _static_samplings(compared["minimum"], s0, n, replace)
    jr_demap = compared["scores"].get("phate", {}).get("DeMAP", np.nan)
    say("; ".join(f"{k}: loss {v['loss_min']:.3g}-{v['loss_max']:.3g} (median {v['loss_median']:.3g}), PHATE DeMAP "
                  f"{v['phate_demap']:.2f}" for k, v in static.items()) + f"; J&R PHATE DeMAP {jr_demap:.2f}")

    console.rule("[bold]figures, summary and report")
    figures = top.figures
    with notices.catch("figures"):
        tag1 = f"init {cfg['second_init']}"
        rows = [[(f"init 0, {k}", r["phate"], r["meta"]) for k, r in first.items()],
                [(f"{tag1}, {k}", r["phate"], r["meta"]) for k, r in second.items()]]
        _embedding_grid(rows, "trajectory", figures / "phate_minima",
                        f"PHATE (cosine) of the J&R samples: {s0.jr_seeds} directions x {len(s0.jr_step_sizes)} jumps, "
                        f"{travel['steps']} steps at lr {s0.jr_lr:g} (steps x lr {travel['steps_x_lr']:.3g})")
        _embedding_grid(rows, "loss", figures / "phate_minima_loss", "the same embeddings, coloured by log loss")
        meta_c = compared["meta"]
        _embedding_grid([[(f"grid sampling ({n} points)", static["grid"]["embedding"], static["grid"]["samples"]),
                          (f"naive sampling ({n} points)", static["naive"]["embedding"], static["naive"]["samples"]),
                          (f"jump and retrain ({n} points)", compared["phate"], meta_c)]], "loss",
                        figures / "phate_sampling", f"PHATE of three samplings of the {cfg['compared']} minimum "
                        "(init 0), coloured by log loss")
        for tag, res in (("init0", first), (f"init{cfg['second_init']}", second)):
            plot.plot_persistence_diagrams({k: r["diagrams"] for k, r in res.items()}, p=2,
                                           path=figures / f"persistence_{tag}",
                                           title=f"persistence diagrams of the J&R samples, {tag}")
    say("figures written to " + str(figures))

    minima = {"init0": {k: _row(r) for k, r in first.items()},
              f"init{cfg['second_init']}": {k: _row(r) for k, r in second.items()}}
    patterns = {tag: _patterns(rows_) for tag, rows_ in minima.items()}
    held = {key: all(p[key] for p in patterns.values()) for key in
            ("persistence_good_below_bad", "good_returns_closer_than_bad", "good_less_outward_than_bad",
             "good_returns_closer_than_bad_cosine", "good_settles_closer_than_bad", "good_generalizes_better")}
    sampling = {k: {kk: vv for kk, vv in v.items() if kk not in ("embedding", "samples")} for k, v in static.items()}
    sampling["jr"] = {"points": n, "phate_demap": float(jr_demap)}
    summary = {"minima": minima, "patterns": patterns, "held_on_both_inits": held, "sampling": sampling,
               "study": {"title": TITLE, "quick": quick, "device": str(dev), "settings": s0.as_dict(),
                         "second_init": cfg["second_init"], "retraining": travel},
               "notices": notices.as_list()}
    say("patterns on both initializations: " + ", ".join(f"{k} {v}" for k, v in held.items()))
    return common.finish_study(out, "study", summary, clock, console)

"""Draxler et al. (2018), "Essentially no barriers in neural network energy landscape": linear
against Bezier (Garipov et al. 2018) against AutoNEB paths between independently trained minima,
and the barriers against the width of the network.

The demo's 1-D CNN on MNIST-1D (``smallcnn``: convolutions of w and 2w channels, a dense layer of
8w units, no batch norm) at widths w = 4, 8 and 16 (3,042, 11,386 and 44,010 parameters; ``model=
"mlp"`` gives MLPs instead), three initializations per width (seeds 0, 1, 2; each trains with its
own data order too), so three pairs of independent minima per width. Every pair gets
``la.connect``'s three paths: the straight line, a trained quadratic Bezier curve (the demo's
``connect_stage``) and AutoNEB's relaxed chain of pivots (``studies.common.neb_stage``), each
evaluated on all training and test signals. A pair's barrier is the largest rise of the loss
above the chord between the two ends, over t in [0, 1] (Frankle et al. 2020;
:func:`lossatlas.connectivity.barrier_stats`; on the dense AutoNEB path), and its saddle height
the highest loss above the higher end (what a walk from either end must climb).

Layout: one sub-run per minimum (``OUT/w{width}-s{seed}``: a proper lossatlas run), one
``OUT/pair-w{width}-s{a}-s{b}`` per pair (``connect_linear``, ``connect_bezier``, ``connect_neb``
and ``figures/connectivity``), ``OUT/figures/barriers_vs_width``, ``summary.json`` and
``report.html``. A rerun reuses the stored minima and paths (a path stored with other settings is
refused, or redone with ``replace=True``). The findings are in ``docs/studies.md``.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("barriers", "runs/study-barriers")     # doctest: +SKIP
>>> summary["widths"]["16"]["neb"]["mean"]                     # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..connectivity import path_barriers
from ..demo.between import connect_stage
from ..demo.settings import DemoSettings
from ..sources import Source
from ..store import RunDir
from ..training import TrainConfig
from .common import MinimumSpec, PathSettings, finish_study, neb_stage, start_study, study_run, train_minimum

__all__ = ["FULL", "METHODS", "QUICK", "TITLE", "BarrierSettings", "pair_name", "plot_barriers_vs_width", "run",
           "specs"]

TITLE = "Draxler et al.: linear vs Bezier vs AutoNEB barriers between minima, against width"

#: The paths of every pair, in the order of the tables.
METHODS = ("linear", "bezier", "neb")


@dataclass(frozen=True)
class BarrierSettings(PathSettings):
    """Every setting of the study (plain values, recorded in ``config/barriers.yaml``)."""

    model: str = "smallcnn"  # or "mlp"
    widths: tuple = (4, 8, 16)  # smallcnn: channels (w, 2w) and a hidden layer of 8w; mlp: units per layer
    depth: int = 2  # mlp only: hidden layers, all of the same width
    hidden_per_width: int = 8  # smallcnn only: the dense layer's units per unit of width
    seeds: tuple = (0, 1, 2)  # initialization and data order of each minimum
    data_seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    # training: SGD with momentum, step decay x0.1 at 1/2 and 3/4 of the epochs
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 40
    weight_decay: float = 0.0
    # the paths (connect_points, bezier_steps, neb_scale, neb_cycles) are PathSettings'

    def demo(self) -> DemoSettings:
        """The demo's settings of the connect stage (linear points, Bezier steps)."""
        return DemoSettings(connect_points=self.connect_points, bezier_steps=self.bezier_steps)

    def model_args(self, width: int) -> dict:
        if self.model == "mlp":
            return {"hidden": [int(width)] * self.depth}
        return {"channels": [int(width), 2 * int(width)], "hidden": self.hidden_per_width * int(width)}

    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.combinations(self.seeds, 2))


FULL = BarrierSettings()

QUICK = BarrierSettings(widths=(2, 4), seeds=(0, 1), hidden_per_width=4, subset=400, test_subset=200, epochs=4, batch_size=50,
                        connect_points=7, bezier_steps=10, neb_scale=0.005, neb_cycles=2)


def minimum_name(width: int, seed: int) -> str:
    return f"w{width}-s{seed}"


def pair_name(width: int, a: int, b: int) -> str:
    return f"pair-w{width}-s{a}-s{b}"


def specs(s: BarrierSettings, device: str) -> dict[str, MinimumSpec]:
    """The minima by sub-run name ``w{width}-s{seed}``."""
    out = {}
    for width in s.widths:
        for seed in s.seeds:
            src = Source(model=s.model, model_args=s.model_args(width), init_seed=seed, data="mnist1d",
                         data_seed=s.data_seed, subset=s.subset, test_subset=s.test_subset, device=device)
            e = s.epochs
            cfg = TrainConfig(optimizer="sgd", lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, epochs=e,
                              batch_size=s.batch_size, schedule="step" if e >= 4 else "constant",
                              milestones=(e // 2, 3 * e // 4) if e >= 4 else (), gamma=0.1, seed=seed)
            name = minimum_name(width, seed)
            out[name] = MinimumSpec(name, src, cfg)
    return out


def _ends(m) -> dict:
    """The minimum's train and test loss and error, evaluated exactly at its weights."""
    values = m.landscape.evaluate(m.theta[None])
    out = {k: float(v.double().cpu()[0]) for k, v in values.items()}
    for prefix in ("", "test_"):
        if f"{prefix}accuracy" in out:
            out[f"{prefix}error"] = 1.0 - out[f"{prefix}accuracy"]
    return out


def path_row(ds) -> dict:
    """A path's barrier (train and test), saddle, ends and the worst test error along it."""
    loss = np.asarray(ds["loss"].values, float)
    got = path_barriers(ds)  # the path's attrs, or recomputed when it was stored under the old definition
    row = {"barrier": got["barrier"], "saddle_loss": float(np.nanmax(loss)),
           "saddle_t": got.get("saddle_t", float("nan")), "ends_loss": [float(loss[0]), float(loss[-1])],
           # the saddle above the higher of the two minima (what a walk from either end must climb)
           "above_higher_end": got["saddle_height"],
           "points": int(ds.sizes["t"]), "nan_points": int(ds.attrs.get("nan_points", 0))}
    if "test_loss" in ds:
        row["test_barrier"] = got.get("test_barrier", float("nan"))
    if "test_accuracy" in ds:
        err = 1.0 - np.asarray(ds["test_accuracy"].values, float)
        row["max_test_error"] = float(np.nanmax(err))
        row["ends_test_error"] = [float(err[0]), float(err[-1])]
    if "pivots" in ds:
        row["pivots"] = int(ds.sizes["pivot"])
    return row


def by_width(pairs: dict, s: BarrierSettings) -> dict:
    """Per width and method: the mean and the largest barrier over its pairs (train and test)."""
    out = {}
    for width in s.widths:
        rows = [p for p in pairs.values() if p["width"] == width]
        entry = {}
        for method in METHODS:
            train = np.asarray([r[method]["barrier"] for r in rows], float)
            test = np.asarray([r[method].get("test_barrier", np.nan) for r in rows], float)
            higher = np.asarray([r[method]["above_higher_end"] for r in rows], float)
            entry[method] = {"mean": float(np.mean(train)), "max": float(np.max(train)), "min": float(np.min(train)),
                             "above_higher_end_mean": float(np.mean(higher)),
                             "test_mean": float(np.mean(test)), "test_max": float(np.max(test)), "pairs": len(rows)}
        out[str(width)] = entry
    return out


def findings(widths: dict, s: BarrierSettings) -> dict:
    """What the numbers say about Draxler et al.'s two claims (computed, so the docs can quote them)."""
    keys = [str(w) for w in s.widths]
    mean = {m: [widths[k][m]["mean"] for k in keys] for m in METHODS}
    return {
        "neb_below_linear_everywhere": all(widths[k]["neb"]["max"] < widths[k]["linear"]["min"] for k in keys),
        "neb_over_linear_mean": {k: widths[k]["neb"]["mean"] / widths[k]["linear"]["mean"]
                                 if widths[k]["linear"]["mean"] > 0 else float("nan") for k in keys},
        "shrinks_with_width": {m: bool(np.all(np.diff(v) < 0)) for m, v in mean.items()},
        "widest_over_narrowest": {m: v[-1] / v[0] if v[0] != 0 else float("nan") for m, v in mean.items()},
    }


def plot_barriers_vs_width(pairs: dict, path=None, title: str | None = None, xlabel: str = "width"):
    """Barrier against width, one colour per method: each pair a point, the mean a line; train
    loss on the left, test loss on the right, on a log scale (symmetric-log when a barrier is not
    positive: AutoNEB's can come near 0 or below).

    Examples
    --------
    >>> plot_barriers_vs_width(summary["pairs"], path="figures/barriers_vs_width")   # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    from ..plot.save import finish
    from ..plot.style import palette

    fig = Figure(figsize=(8.4, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=True)
    widths = sorted({p["width"] for p in pairs.values()})
    names = {"linear": "linear", "bezier": "Bezier", "neb": "AutoNEB"}
    for ax, key, label in ((axes[0], "barrier", "train"), (axes[1], "test_barrier", "test")):
        for color, method in zip(palette(len(METHODS)), METHODS):
            xs, ys = [], []
            for p in pairs.values():
                v = p[method].get(key, np.nan)
                xs.append(p["width"])
                ys.append(v)
            ys = np.asarray(ys, float)
            bad = int((~np.isfinite(ys)).sum())
            ax.scatter(xs, ys, color=color, s=14, alpha=0.6)
            means = [np.nanmean([p[method].get(key, np.nan) for p in pairs.values() if p["width"] == w]) for w in widths]
            ax.plot(widths, means, "-o", color=color, label=names[method] + (f" ({bad} non-finite)" if bad else ""))
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        values = np.asarray([p[m].get(key, np.nan) for p in pairs.values() for m in METHODS], float)
        if np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"barrier ({label} loss)")
        ax.set_title(f"{label} loss barrier", fontsize=9)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


@study_run('summary = run(Path("runs/study-barriers"))', 'summary["widths"]["16"]["neb"]["mean"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: BarrierSettings | None = None) -> dict:
    s = settings or (QUICK if quick else FULL)
    out = Path(out)
    st = start_study(out, "barriers", {"quick": quick, "device": device, "settings": s.as_dict()}, device, console)
    say, clock = st.say, st.clock
    total = len(s.widths) * len(s.seeds)
    st.console.rule(f"[bold]1/3. train {total} minima: widths {list(s.widths)} x seeds {list(s.seeds)}")
    minima = {}
    for name, spec in specs(s, device).items():
        with clock.stage(f"train_{name}"):
            m = train_minimum(out, spec, st.device, replace=replace)
            minima[name] = m
        say(f"{name}: train loss {m.final['loss']:.4g}, accuracy {m.final['accuracy']:.4f}; "
            f"test accuracy {m.final.get('test_accuracy', float('nan')):.4f}")
    widths_of = {minimum_name(w, seed): w for w in s.widths for seed in s.seeds}
    rows = {name: {"width": widths_of[name], "seed": int(m.source.init_seed), "n_params": int(m.theta.numel()),
                   **_ends(m)} for name, m in minima.items()}

    st.console.rule("[bold]2/3. linear, Bezier and AutoNEB paths between every pair")
    pairs = {}
    for width in s.widths:
        for sa, sb in s.pairs():
            a, b = minima[minimum_name(width, sa)], minima[minimum_name(width, sb)]
            pname = pair_name(width, sa, sb)
            pair = RunDir(out / pname)
            with clock.stage(f"connect_{pname}"):
                # each path is reused when stored for the same ends and options, refused when not
                connect_stage(pair, a, b, s.demo(), replace)  # linear and Bezier
                neb_stage(pair, a, b, s, replace)  # AutoNEB, drawn with the other two
            paths = {m: path_row(pair.open(f"connect_{m}")) for m in METHODS}
            pairs[pname] = {"width": width, "a": a.name, "b": b.name, **paths}
            pair.update_summary(connect={"a": a.name, "b": b.name, "barriers": {m: paths[m]["barrier"] for m in METHODS}})
            say(f"{pname}: " + ", ".join(f"{m} {paths[m]['barrier']:.4g}" for m in METHODS))

    st.console.rule("[bold]3/3. summary, figure and report")
    widths = by_width(pairs, s)
    if s.model == "smallcnn":
        what = f"smallcnn: channels (w, 2w), hidden layer {s.hidden_per_width}w"
    else:
        what = f"MLP: {s.depth} hidden layers of w units"
    plot_barriers_vs_width(pairs, path=st.top.figures / "barriers_vs_width", xlabel=f"width w ({what})",
                           title=f"barriers between independent minima against width (MNIST-1D, {s.model})")
    for w, entry in widths.items():
        say(f"width {w}: " + ", ".join(f"{m} mean {e['mean']:.4g} (max {e['max']:.4g})" for m, e in entry.items()))
    summary = {"minima": rows, "pairs": pairs, "widths": widths, "findings": findings(widths, s),
               "barriers": {"quick": quick, "device": str(st.device), "settings": s.as_dict()}}
    return finish_study(out, "barriers", summary, clock, st.console)

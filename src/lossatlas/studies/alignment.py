"""Entezari et al. (2022) and Ainsworth et al. (2023, "Git Re-Basin"): how much of the barrier
between two independently trained minima is a permutation of their hidden units, against width.

Three families, each trained from three initializations (seeds 0, 1, 2; each with its own data
order) at three widths, so three pairs of independent minima per width:

- ``mlp``: MLPs of two hidden layers of w units on the 8x8 digits (no batch norm);
- ``resnet``: ResNet-20 (He et al., option-A shortcuts, batch norm) with c, 2c, 4c channels on
  the 8x8 digits;
- ``smallcnn``: the barriers study's CNN on MNIST-1D, trained with that study's exact settings
  (so the same minima), linear paths only, to set aligned straight lines beside that study's
  AutoNEB paths.

Every pair is connected before and after aligning the second minimum to the first (``la.align``:
weight matching, and activation matching on 512 training inputs): straight lines for all, and
trained quadratic Bezier curves (Garipov et al.) for the MLPs and ResNets, unaligned and weight-
matched. Paths of batch-norm networks are evaluated with batch-norm statistics recomputed at
every point (``bn="recompute"``: an interpolated network's stored statistics are stale). The
barrier is the standard one (``lossatlas.connectivity.barrier``: the largest rise above the chord
between the ends).

Layout: one sub-run per minimum (``OUT/{family}-w{w}-s{seed}``), one
``OUT/{family}-pair-w{w}-s{a}-s{b}`` per pair (``connect_{linear,bezier}_{none,weights,
activations}``, ``figures/connectivity``), ``OUT/figures/alignment_vs_width``, ``summary.json``
and ``report.html``. A rerun reuses every stored minimum and path. The findings are in
``docs/studies.md``.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("alignment", "runs/study-alignment")     # doctest: +SKIP
>>> summary["widths"]["mlp"]["128"]["linear"]["weights"]["mean"]   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sources import Source
from ..store import RunDir
from ..training import TrainConfig
from . import barriers
from .common import MinimumSpec, PathSettings, finish_study, start_study, study_run, train_minimum

__all__ = ["FULL", "QUICK", "TITLE", "AlignmentSettings", "plot_alignment_vs_width", "run"]

TITLE = "Entezari et al. / Ainsworth et al.: barriers before and after permutation alignment, against width"

#: The alignments of every pair, in the order of the tables.
VARIANTS = ("none", "weights", "activations")


@dataclass(frozen=True)
class AlignmentSettings(PathSettings):
    """Every setting of the study (plain values, recorded in ``config/alignment.yaml``)."""

    mlp_widths: tuple = (8, 32, 128)  # units of each of the two hidden layers
    resnet_channels: tuple = (2, 4, 8)  # ResNet-20's first-stage channels c (stages c, 2c, 4c)
    cnn_widths: tuple = (4, 8, 16)  # the barriers study's smallcnn minima (linear paths only)
    seeds: tuple = (0, 1, 2)
    data_seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 30
    activation_samples: int = 512  # training inputs for activation matching
    connect_points: int = 21
    bezier_steps: int = 300


FULL = AlignmentSettings()

QUICK = AlignmentSettings(mlp_widths=(4,), resnet_channels=(2,), cnn_widths=(2,), seeds=(0, 1), subset=300,
                          test_subset=100, epochs=2, batch_size=50, activation_samples=64, connect_points=5,
                          bezier_steps=4)

_BEZIER = ("mlp", "resnet")  # families that also get Bezier curves


def _specs(s: AlignmentSettings, device: str) -> dict[str, dict[int, dict[int, MinimumSpec]]]:
    """``family -> width -> seed -> MinimumSpec``."""
    out: dict = {"mlp": {}, "resnet": {}, "smallcnn": {}}
    e = s.epochs
    for family, widths in (("mlp", s.mlp_widths), ("resnet", s.resnet_channels)):
        for w in widths:
            for seed in s.seeds:
                if family == "mlp":
                    model, args = "mlp", {"hidden": [int(w), int(w)]}
                else:
                    model, args = "resnet20", {"channels": int(w)}
                src = Source(model=model, model_args=args, init_seed=seed, data="digits", data_seed=s.data_seed,
                             subset=s.subset, test_subset=s.test_subset, device=device)
                cfg = TrainConfig(optimizer="sgd", lr=s.lr, momentum=s.momentum, epochs=e, batch_size=s.batch_size,
                                  schedule="step" if e >= 4 else "constant",
                                  milestones=(e // 2, 3 * e // 4) if e >= 4 else (), gamma=0.1, seed=seed)
                out[family].setdefault(w, {})[seed] = MinimumSpec(f"{family}-w{w}-s{seed}", src, cfg)
    # The barriers study's minima, exactly: same sources and training, so its AutoNEB paths apply.
    b = barriers.QUICK if s is QUICK else barriers.FULL
    b = barriers.BarrierSettings(**{**b.as_dict(), "widths": tuple(s.cnn_widths), "seeds": tuple(s.seeds)})
    for name, spec in barriers.specs(b, device).items():
        w, seed = int(name.split("-")[0][1:]), int(name.split("-s")[1])
        out["smallcnn"].setdefault(w, {})[seed] = MinimumSpec(f"smallcnn-{name}", spec.source, spec.train)
    return out


def _aligned_theta(a, b, variant: str, s: AlignmentSettings):
    """``b``'s weights as a vector of ``a``'s space, aligned to ``a`` (or not), with the alignment."""
    from ..alignment import find_permutation

    f = a.landscape
    if variant == "none":
        return f.space.vector(b.model), {"method": "none"}, 0.0
    start = time.perf_counter()
    X = a.data.train[0][: s.activation_samples].to(f.origin.device)
    perm = find_permutation(a.model, b.model, method=variant, data=X, seed=0)
    aligned = perm.apply(b.model)
    seconds = time.perf_counter() - start
    return f.space.vector(aligned), {"method": variant, "fingerprint": perm.fingerprint()}, seconds


def _path(pair: RunDir, a, theta_b, method: str, variant: str, alignment: dict, s: AlignmentSettings, replace):
    """One path, reused when stored with the same ends, data, options and alignment."""
    from ..connectivity import connect

    f = a.landscape
    name = f"connect_{method}_{variant}"
    want = {"theta_a": f.space.fingerprint(a.theta), "theta_b": f.space.fingerprint(theta_b),
            "landscape": f.fingerprint, "points": s.connect_points, "alignment": alignment}
    if method == "bezier":
        want.update(steps=s.bezier_steps, seed=0)
    if pair.check(name, want, replace, partial=True):
        return pair.open(name)
    if method == "linear":
        ds = connect(f, a.theta, theta_b, method="linear", points=s.connect_points)
    else:
        ds = connect(f, a.theta, theta_b, method="bezier", model=a.model, data=a.data.train, steps=s.bezier_steps,
                     points=s.connect_points, seed=0)
    ds.attrs["settings"] = {**dict(ds.attrs.get("settings", {})), **want}
    pair.save(name, ds)
    return ds


def _row(ds) -> dict:
    row = {"barrier": float(ds.attrs["barrier"]), "ends_loss": [float(ds.loss.values[0]), float(ds.loss.values[-1])],
           "max_loss": float(np.nanmax(ds.loss.values))}
    if "test_barrier" in ds.attrs:
        row["test_barrier"] = float(ds.attrs["test_barrier"])
    if "test_accuracy" in ds:
        row["max_test_error"] = float(np.nanmax(1.0 - np.asarray(ds["test_accuracy"].values, float)))
    return row


def _by_width(pairs: dict) -> dict:
    """``family -> width -> method -> variant -> {mean, min, max, test_mean}`` over the pairs."""
    out: dict = {}
    for p in pairs.values():
        fam = out.setdefault(p["family"], {}).setdefault(str(p["width"]), {})
        for method, variants in p["paths"].items():
            for variant, row in variants.items():
                fam.setdefault(method, {}).setdefault(variant, []).append(row)
    for fam in out.values():
        for entry in fam.values():
            for method, variants in entry.items():
                for variant, rows in variants.items():
                    v = np.asarray([r["barrier"] for r in rows], float)
                    t = np.asarray([r.get("test_barrier", np.nan) for r in rows], float)
                    variants[variant] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                                         "test_mean": float(np.mean(t)), "pairs": len(rows)}
    return out


def findings(widths: dict) -> dict:
    """The trends the papers report, computed: alignment lowers the linear barrier, by a share
    that grows with width (Ainsworth et al. Fig. 3/5; Entezari et al.'s conjecture)."""
    out = {}
    for family, by_w in widths.items():
        keys = sorted(by_w, key=int)
        lin = {v: [by_w[k]["linear"][v]["mean"] for k in keys] for v in VARIANTS}
        kept = [w / n if n > 0 else float("nan") for w, n in zip(lin["weights"], lin["none"])]
        out[family] = {
            "weights_lower_everywhere": all(by_w[k]["linear"]["weights"]["max"] < by_w[k]["linear"]["none"]["min"]
                                            for k in keys),
            "linear_weights_over_none": dict(zip(keys, kept)),
            "aligned_share_falls_with_width": bool(np.all(np.diff(kept) < 0)),
            "aligned_barrier_falls_with_width": bool(np.all(np.diff(lin["weights"]) < 0)),
        }
    return out


def plot_alignment_vs_width(widths: dict, path=None, title: str | None = None):
    """Barrier against width, before and after alignment: one panel per family and path method,
    one line per alignment (mean over pairs, the range shaded).

    Examples
    --------
    >>> plot_alignment_vs_width(summary["widths"], path="figures/alignment_vs_width")   # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    from ..plot.save import finish
    from ..plot.style import palette

    panels = [(fam, m) for fam in widths for m in ("linear", "bezier") if m in next(iter(widths[fam].values()))]
    fig = Figure(figsize=(3.2 * len(panels), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    names = {"none": "not aligned", "weights": "weight matching", "activations": "activation matching"}
    for ax, (fam, method) in zip(axes, panels):
        keys = sorted(widths[fam], key=int)
        x = [int(k) for k in keys]
        for color, variant in zip(palette(len(VARIANTS)), VARIANTS):
            if variant not in widths[fam][keys[0]][method]:
                continue
            rows = [widths[fam][k][method][variant] for k in keys]
            ax.plot(x, [r["mean"] for r in rows], "-o", color=color, label=names[variant])
            ax.fill_between(x, [r["min"] for r in rows], [r["max"] for r in rows], color=color, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("width (ResNet: first-stage channels)" if fam == "resnet" else "width")
        ax.set_ylabel("barrier (train loss)")
        ax.set_title(f"{fam}, {method}", fontsize=9)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


@study_run('summary = run(Path("runs/study-alignment"))', 'summary["findings"]["mlp"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: AlignmentSettings | None = None) -> dict:
    from .. import plot

    s = settings or (QUICK if quick else FULL)
    out = Path(out)
    st = start_study(out, "alignment", {"quick": quick, "device": device, "settings": s.as_dict()}, device, console)
    say, clock = st.say, st.clock
    specs = _specs(s, device)
    st.console.rule("[bold]1/3. train the minima")
    minima: dict = {}
    for family, by_w in specs.items():
        for w, by_seed in by_w.items():
            for seed, spec in by_seed.items():
                with clock.stage(f"train_{spec.name}"):
                    m = train_minimum(out, spec, st.device, replace=replace, progress=False)
                minima[(family, w, seed)] = m
                say(f"{spec.name}: train loss {m.final['loss']:.4g}, test accuracy "
                    f"{m.final.get('test_accuracy', float('nan')):.4f}")

    st.console.rule("[bold]2/3. paths between every pair, before and after alignment")
    pairs = {}
    for family, by_w in specs.items():
        methods = ("linear", "bezier") if family in _BEZIER else ("linear",)
        for w in by_w:
            for sa, sb in itertools.combinations(s.seeds, 2):
                a, b = minima[(family, w, sa)], minima[(family, w, sb)]
                pname = f"{family}-pair-w{w}-s{sa}-s{sb}"
                pair = RunDir(out / pname)
                paths: dict = {m: {} for m in methods}
                stored = {}
                with clock.stage(f"connect_{pname}"):
                    for variant in VARIANTS:
                        theta_b, alignment, seconds = _aligned_theta(a, b, variant, s)
                        for method in methods:
                            if method == "bezier" and variant == "activations":
                                continue
                            ds = _path(pair, a, theta_b, method, variant, alignment, s, replace)
                            paths[method][variant] = {**_row(ds), "alignment": alignment, "align_s": seconds}
                            stored[f"{method}, {variant}"] = ds
                plot.plot_connectivity(stored, path=pair.figures / "connectivity", title=f"{a.name} to {b.name}")
                pairs[pname] = {"family": family, "width": int(w), "a": a.name, "b": b.name, "paths": paths}
                pair.update_summary(connect={m: {v: r["barrier"] for v, r in p.items()} for m, p in paths.items()})
                say(f"{pname}: " + "; ".join(f"{m} " + ", ".join(f"{v} {r['barrier']:.4g}" for v, r in p.items())
                                             for m, p in paths.items()))

    st.console.rule("[bold]3/3. summary, figure and report")
    widths = _by_width(pairs)
    plot_alignment_vs_width(widths, path=st.top.figures / "alignment_vs_width",
                            title="barriers between independent minima, before and after alignment")
    rows = {f"{fam}-w{w}-s{seed}": {"train_loss": m.final["loss"], "test_accuracy": m.final.get("test_accuracy"),
                                    "n_params": int(m.theta.numel())}
            for (fam, w, seed), m in minima.items()}
    summary = {"minima": rows, "pairs": pairs, "widths": widths, "findings": findings(widths),
               "alignment": {"quick": quick, "device": str(st.device), "settings": s.as_dict()}}
    return finish_study(out, "alignment", summary, clock, st.console)

"""Li et al. (2018), Section 5: small against large batch, with and without weight decay (Figs. 2-4),
sharpness against test error, and the barriers between minima (Draxler et al. 2018; each the
largest rise of the loss above the chord between the two ends, Frankle et al. 2020).

One 1-D CNN on MNIST-1D (the demo's ``smallcnn``: channels (16, 32), hidden layer 256, no batch
norm, 86,378 parameters), initialized once (seed 0) and trained by SGD with momentum 0.9 on the
4000 training signals at batch 64 (1.6 % of the data) and batch 2000 (50 %), each with weight
decay 0 and 5e-4. Li et al. give both batch sizes the same optimizer settings (SGD, lr 0.1, the
same schedule); so does this study: lr 0.1 for both, step decay x0.1 at 1/2 and 3/4 of training.
Only the epochs differ, so that each reaches a minimum: 30 epochs at batch 64 (1,890 steps) and
200 at batch 2000 (400 steps; measured, the loss stops falling after about 150 epochs). The small
batch still takes more updates, which is what Li et al. give as the reason why weight decay shrinks
small-batch weights more. A fifth minimum, batch 64 without weight decay from initialization 1,
gives a pair of independent small-batch minima for the barriers.

Stages: the 1-D interpolation from the small- to the large-batch minimum (Fig. 2; train and test,
``pair-wd*/interpolation.zarr``); a filter-normalized 1-D slice through each minimum (Fig. 4; one
Gaussian direction, the same seed for all, biases excluded; ``*/slice.zarr``); weight histograms
(Fig. 3); one table of the top Hessian eigenvalue, Keskar et al.'s epsilon-sharpness, the loss rise
along filter-normalized directions and the basin volume, with the test error (``sharpness.zarr``);
and the linear, Bezier and AutoNEB paths between the two small-batch minima and between the
small- and the large-batch minimum (``pair-*/connect_*.zarr``). The findings are in
``docs/studies.md``.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("batch", "runs/study-batch")      # doctest: +SKIP
>>> summary["minima"]["sb-wd0"]["test_error"]              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..demo.between import connect_stage, interpolation_stage, sharpness_stage
from ..demo.clock import StageClock
from ..demo.settings import DemoSettings
from ..landscape import Landscape
from ..plot import plot_line_grid, plot_weight_histograms
from ..sources import Source, resolve_device
from ..sharpness import adaptive_sharpness
from ..space import make_directions
from ..store import RunDir
from ..surface import line
from ..training import TrainConfig
from .common import MinimumSpec, PathSettings, finish_study, neb_stage, train_minimum, weight_values

__all__ = ["FULL", "QUICK", "TITLE", "BatchSettings", "run", "specs"]

TITLE = "Li et al.: small vs large batch, with and without weight decay; sharpness vs test error; barriers"


@dataclass(frozen=True)
class BatchSettings(PathSettings):
    """Every setting of the study (plain values, recorded in ``config/study-batch.yaml``)."""

    channels: tuple = (16, 32)
    hidden: int = 256
    init_seed: int = 0
    second_seed: int = 1  # initialization and data order of the second small-batch minimum
    data_seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    lr: float = 0.1  # Li et al.'s, the same for both batch sizes
    momentum: float = 0.9
    small_batch: int = 64
    large_batch: int = 2000
    small_epochs: int = 30
    large_epochs: int = 200
    weight_decays: tuple = (0.0, 5e-4)
    interpolation_steps: int = 41
    slice_steps: int = 41
    slice_span: float = 1.0
    # Keskar et al.'s boxes (eps 1e-3 and 5e-4), in the full space and a random 100-d subspace
    sharpness_eps: tuple = (1e-3, 5e-4)
    sharpness_subspace: int | None = 100
    sharpness_maxiter: int = 10
    rise_radius: float = 0.25
    rise_directions: int = 20
    # the sharpness measures and the paths between minima are evaluated on this many training
    # signals (a seeded subset, the same for every minimum; None: all) and all test signals
    measure_subset: int | None = None
    # adaptive sharpness (Andriushchenko et al. 2023): worst case in the |theta|-scaled l2 ball
    adaptive_rho: float = 0.05

    def demo(self) -> DemoSettings:
        """The demo's settings of the stages this study borrows (interpolation, connect, sharpness)."""
        return DemoSettings(interpolation_steps=self.interpolation_steps, connect_points=self.connect_points,
                            bezier_steps=self.bezier_steps, sharpness_eps=tuple(self.sharpness_eps),
                            sharpness_subspace=self.sharpness_subspace, sharpness_maxiter=self.sharpness_maxiter,
                            rise_radius=self.rise_radius, rise_directions=self.rise_directions)


FULL = BatchSettings()

QUICK = BatchSettings(
    channels=(4, 8), hidden=32, subset=400, test_subset=200, small_batch=50, large_batch=400, small_epochs=3, large_epochs=6,
    interpolation_steps=9, slice_steps=7, sharpness_eps=(1e-3,), sharpness_subspace=None, sharpness_maxiter=2,
    rise_directions=3, measure_subset=200, connect_points=7, bezier_steps=10, neb_scale=0.005, neb_cycles=2,
)


def wd_label(wd: float) -> str:
    return "wd0" if wd == 0 else f"wd{wd:g}"


def specs(s: BatchSettings, device: str) -> dict[str, MinimumSpec]:
    """The minima by sub-run name: ``sb-wd0``, ``lb-wd0``, ``sb-wd0.0005``, ``lb-wd0.0005``, ``sb-wd0-init1``."""

    def source(seed: int) -> Source:
        return Source(model="smallcnn", model_args={"channels": list(s.channels), "hidden": s.hidden},
                      init_seed=seed, data="mnist1d", data_seed=s.data_seed, subset=s.subset,
                      test_subset=s.test_subset, device=device)

    def config(batch: int, epochs: int, wd: float, seed: int) -> TrainConfig:
        return TrainConfig(optimizer="sgd", lr=s.lr, momentum=s.momentum, weight_decay=wd, epochs=epochs,
                           batch_size=batch, schedule="step", milestones=(epochs // 2, 3 * epochs // 4), gamma=0.1,
                           seed=seed)

    out = {}
    for wd in s.weight_decays:
        out[f"sb-{wd_label(wd)}"] = MinimumSpec(f"sb-{wd_label(wd)}", source(s.init_seed),
                                                config(s.small_batch, s.small_epochs, wd, s.init_seed))
        out[f"lb-{wd_label(wd)}"] = MinimumSpec(f"lb-{wd_label(wd)}", source(s.init_seed),
                                                config(s.large_batch, s.large_epochs, wd, s.init_seed))
    name = f"sb-{wd_label(s.weight_decays[0])}-init{s.second_seed}"
    out[name] = MinimumSpec(name, source(s.second_seed),
                            config(s.small_batch, s.small_epochs, s.weight_decays[0], s.second_seed))
    return out


def measured(m, s: BatchSettings):
    """The minimum with its landscape on :attr:`BatchSettings.measure_subset` training signals
    (chosen by a seeded generator, the same for every minimum) and all its test signals."""
    X, y = m.data.train
    if s.measure_subset is None or s.measure_subset >= X.shape[0]:
        return m
    keep = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))[: s.measure_subset]
    Xt, yt = m.data.test
    f = Landscape(m.model, (X[keep], y[keep]), test=(Xt, yt) if Xt.shape[0] else None, bn=m.landscape.bn,
                  device=m.theta.device)
    return dataclasses.replace(m, landscape=f)


def slice_stage(m, s: BatchSettings, replace: bool):
    """Li et al. Fig. 4: the loss along one filter-normalized direction ``theta + alpha d``."""
    (d,) = make_directions(m.landscape.space, m.theta, n=1, norm="filter", ignore="biasbn", seed=0)
    ds = line(m.landscape, m.theta, m.theta + d, steps=s.slice_steps, extent=(-s.slice_span, s.slice_span),
              store=m.run, name="slice", progress=True, replace=replace,
              attrs={"directions": "random", "norm": "filter", "ignore": "biasbn", "seed": 0,
                     "label_a": m.name, "label_b": f"{m.name} + filter-normalized direction"})
    t = ds.t.values
    rises = {}
    for r in (0.25, 0.5, 1.0):
        if r <= s.slice_span:
            near = [int(np.argmin(np.abs(t - v))) for v in (-r, r)]
            rises[f"{r:g}"] = float(np.mean([ds.loss.values[i] for i in near]) - ds.loss.sel(t=0.0, method="nearest"))
    m.run.update_summary(slice={"mean_rise_at_alpha": rises})
    return ds, rises


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def findings(rows: dict, s: BatchSettings) -> dict:
    """What the numbers say about Li et al.'s claims (computed, so the docs can quote them)."""
    names = list(rows)
    err = [rows[n]["test_error"] for n in names]
    measures = {"top_hessian_eigenvalue": [rows[n]["top_hessian_eigenvalue"] for n in names],
                "mean_rise": [rows[n]["mean_rise"] for n in names],
                "slice_rise_0.5": [rows[n].get("slice_rise", {}).get("0.5", np.nan) for n in names],
                "adaptive_sharpness": [rows[n].get("adaptive_sharpness", np.nan) for n in names]}
    first = next(iter(rows[names[0]]["sharpness"]))
    measures[f"sharpness {first}"] = [rows[n]["sharpness"][first] for n in names]
    out = {"spearman_with_test_error": {k: _spearman(v, err) for k, v in measures.items()}}
    norms = {}
    for wd in s.weight_decays:
        sb, lb = rows.get(f"sb-{wd_label(wd)}"), rows.get(f"lb-{wd_label(wd)}")
        if sb and lb:
            norms[wd_label(wd)] = {"small_batch": sb["weights_norm"], "large_batch": lb["weights_norm"],
                                   "small_batch_larger": sb["weights_norm"] > lb["weights_norm"],
                                   "small_batch_lower_test_error": sb["test_error"] < lb["test_error"]}
    out["weight_norms"] = norms
    return out


def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: BatchSettings | None = None) -> dict:
    """Run the study into ``out``; returns the summary (also ``out/summary.json``).

    Parameters
    ----------
    out : path
        The study directory: one sub-run per minimum, ``pair-*`` directories for the comparisons,
        ``sharpness.zarr``, ``figures/``, ``summary.json`` and ``report.html`` at the top.
    quick : bool
        Tiny settings (:data:`QUICK`) that check every stage runs; no finding.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    replace : bool
        Redo stored products of other settings (otherwise refused; equal ones are reused).
    settings : BatchSettings, optional
        Overrides ``quick``.

    Examples
    --------
    >>> summary = run(Path("runs/study-batch"), quick=True)   # doctest: +SKIP
    """
    from rich.console import Console

    console = console or Console(highlight=False)
    s = settings or (QUICK if quick else FULL)
    dev = resolve_device(device)  # refused before any work when this machine lacks it
    out = Path(out)
    top = RunDir(out)
    top.write_config("study-batch", {"quick": quick, "device": device, "settings": s.as_dict()})
    clock, demo = StageClock(), s.demo()
    console.rule("[bold]1/6. train the minima from one initialization")
    minima = {}
    for name, spec in specs(s, device).items():
        console.print(f"{name}: {spec.describe()}")
        with clock.stage(f"train_{name}"):
            minima[name] = m = train_minimum(out, spec, dev, replace=replace)
        console.print(f"  train loss {m.final['loss']:.4g}, accuracy {m.final['accuracy']:.4f}; "
                      f"test accuracy {m.final['test_accuracy']:.4f}")
    batch_minima = {n: m for n, m in minima.items() if "-init" not in n}

    console.rule("[bold]2/6. 1-D interpolation from the small- to the large-batch minimum (Li Fig. 2)")
    interpolations, lines = {}, []
    for wd in s.weight_decays:
        a, b = minima[f"sb-{wd_label(wd)}"], minima[f"lb-{wd_label(wd)}"]
        pair = RunDir(out / f"pair-{wd_label(wd)}")
        with clock.stage(f"interpolation_{wd_label(wd)}"):
            interpolations[wd_label(wd)] = interpolation_stage(pair, a, b, demo, replace)
        lines.append((f"WD={wd:g}: batch {s.small_batch} (0) to {s.large_batch} (1)", pair.open("interpolation")))
    plot_line_grid([lines], path=top.figures / "interpolation", title="small batch (t=0) to large batch (t=1)")

    console.rule("[bold]3/6. filter-normalized 1-D slices (Li Fig. 4) and weight histograms (Fig. 3)")
    slices, rises = {}, {}
    for name, m in batch_minima.items():
        with clock.stage(f"slice_{name}"):
            slices[name], rises[name] = slice_stage(m, s, replace)

    def err(n):
        return 100 * (1 - minima[n].final["test_accuracy"])

    grid = [[(f"SGD, {b}, WD={wd:g}, test error {err(f'{k}-{wd_label(wd)}'):.1f}%", slices[f"{k}-{wd_label(wd)}"])
             for k, b in (("sb", s.small_batch), ("lb", s.large_batch))] for wd in s.weight_decays]
    plot_line_grid(grid, path=top.figures / "slices", title="loss along a filter-normalized direction (Li et al. Fig. 4)")
    weights = {n: weight_values(m) for n, m in batch_minima.items()}
    plot_weight_histograms([(f"WD={wd:g}", {f"batch {b}": weights[f"{k}-{wd_label(wd)}"]
                                            for k, b in (("sb", s.small_batch), ("lb", s.large_batch))})
                            for wd in s.weight_decays], path=top.figures / "weights",
                           title="weights of the minima (Li et al. Fig. 3)")

    console.rule("[bold]4/6. sharpness against test error")
    subset = {n: measured(m, s) for n, m in minima.items()}
    with clock.stage("sharpness"):
        sharp = sharpness_stage(top, subset, demo)
        for name, m in subset.items():
            sharp[name]["adaptive_sharpness"] = adaptive_sharpness(m.landscape, m.theta, rho=s.adaptive_rho, seed=0)
    console.rule("[bold]5/6. barriers: linear, Bezier and AutoNEB paths (Draxler et al.)")
    barriers = {}
    first = wd_label(s.weight_decays[0])
    pairs = {"pair-seeds": (f"sb-{first}", f"sb-{first}-init{s.second_seed}"), f"pair-{first}": (f"sb-{first}", f"lb-{first}")}
    for pair_name, (na, nb) in pairs.items():
        pair = RunDir(out / pair_name)
        with clock.stage(f"connect_{pair_name}"):
            got = connect_stage(pair, subset[na], subset[nb], demo, replace)["barriers"]
            got["neb"] = neb_stage(pair, subset[na], subset[nb], s, replace)
        pair.update_summary(connect={"a": na, "b": nb, "barriers": got})
        barriers[pair_name] = {"a": na, "b": nb, **got}
        console.print(f"{na} to {nb}: " + ", ".join(f"{k} {v:.4g}" for k, v in got.items()))

    console.rule("[bold]6/6. summary and report")
    rows = {}
    for name, m in minima.items():
        r = sharp[name]
        rows[name] = {**m.final, "test_error": 1 - m.final["test_accuracy"], **spec_row(m),
                      "weight_norm": r.get("weight_norm"), "top_hessian_eigenvalue": r["top_hessian_eigenvalue"],
                      "sharpness": r["sharpness"], "mean_rise": r.get("mean_rise"), "max_rise": r.get("max_rise"),
                      "basin_volume": r.get("basin_volume"), "basin_radius": r.get("basin_radius"),
                      "adaptive_sharpness": r.get("adaptive_sharpness"),
                      "slice_rise": rises.get(name, {}),
                      "weights_norm": float(np.linalg.norm(weight_values(m)))}
    summary = {"minima": rows, "interpolation": interpolations, "barriers": barriers, "findings": findings(rows, s),
               "batch": {"quick": quick, "device": str(dev), "settings": s.as_dict(),
                         "large_batch_lr": "the small batch's (0.1), as in Li et al.; epochs differ so each converges"}}
    for name, row in rows.items():
        console.print(f"{name}: test error {row['test_error']:.4f}, top eigenvalue {row['top_hessian_eigenvalue']:.4g}, "
                      f"mean rise {row['mean_rise']:.4g}, weight norm {row['weights_norm']:.2f}")
    return finish_study(out, "batch", summary, clock, console)


def spec_row(m) -> dict:
    """The minimum's batch size, weight decay, epochs and seeds from its recorded training config."""
    cfg = m.run.read_config("train")["train"]
    return {"batch_size": cfg["batch_size"], "weight_decay": cfg["weight_decay"], "epochs": cfg["epochs"],
            "init_seed": m.source.init_seed}


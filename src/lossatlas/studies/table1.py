"""Horoi et al. (2022), Table 1 and Fig. 3B: predicting generalization, weight decay and
augmentation from the losses sampled around 108 minima, and total persistence against test loss.

The study is the sweep (:func:`lossatlas.sweep.run_sweep`, resumable network by network) followed
by the prediction (:func:`lossatlas.sweep.predict_sweep`, resumable cell by cell), both into the
study directory, which is then the sweep's run directory: ``config/sweep.yaml``, ``sweep.zarr``,
``prediction.zarr``, ``permutation.zarr``, ``figures/persistence_vs_test_loss``, ``summary.json``
(``prediction`` as ``lossatlas predict`` writes it, ``table1`` with the study's numbers and
timings) and ``report.html``. The full settings are :class:`~lossatlas.sweep.SweepConfig`'s
defaults: the 108 MLPs of ``examples/sweep/mnist1d-mlp.yaml``, with J&R now retraining at each
network's final learning rate for a quarter of its epochs (the yaml, and the committed store, keep
the earlier protocol's one rate and 40 epochs for all); about three hours of training on two cores. A directory that already holds a finished sweep of the same settings only predicts, and a
finished prediction is read back (cached).

The finished sweep is committed (``results/sweep-mnist1d-mlp``). In a source checkout the full
study starts from it: when the study directory holds no sweep yet and the committed one has the
same settings, its stores are copied in (``start_from``), so the study predicts, or reads back the
committed prediction, in seconds; ``replace=True`` recomputes everything instead.

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("table1", "runs/study-table1")          # doctest: +SKIP
>>> summary["table1"]["table"]["jr"]["generalization"]["mean"]   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..prediction import CLASSIFIERS
from ..store import RunDir
from ..sweep import FEATURES, NAME, TASKS, SweepConfig, predict_sweep, read_sweep_config, run_sweep, table_text
from ..sweep.driver import SAMPLERS
from ..sweep.table import PAPER
from .common import finish_study, start_study, study_run

__all__ = ["COMMITTED", "FULL", "QUICK", "TITLE", "Table1Settings", "run", "start_from_store"]

TITLE = "Horoi et al.: Table 1 (predicting generalization from sampled losses) and Fig. 3B"

#: The committed result store of the full sweep, in a source checkout (None when not there).
COMMITTED: str | None = None
_here = Path(__file__).resolve().parents[3] / "results" / "sweep-mnist1d-mlp"
if (_here / f"{NAME}.zarr").is_dir():
    COMMITTED = str(_here)

#: Products of a finished sweep's directory copied by :func:`start_from_store`.
PRODUCTS = (NAME, "prediction", "permutation")


@dataclass(frozen=True)
class Table1Settings:
    """Every setting of the study (plain values, recorded in ``config/table1.yaml``).

    ``sweep``: the :class:`~lossatlas.sweep.SweepConfig` as a mapping (its device is the study's);
    the rest are :func:`~lossatlas.sweep.predict_sweep`'s (``classifiers`` None: all 11)."""

    sweep: dict = field(default_factory=lambda: SweepConfig().as_dict())
    folds: int = 10
    seed: int = 0
    permutations: int = 100
    permutation_classifier: str = "linear_svm"
    classifiers: tuple | None = None
    n_jobs: int | None = None
    start_from: str | None = None  # a finished sweep directory whose stores seed an empty study

    def config(self, device: str) -> SweepConfig:
        return read_sweep_config({**self.sweep, "device": device}, "table1 settings: sweep")

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["classifiers"] = None if self.classifiers is None else list(self.classifiers)
        return out


FULL = Table1Settings(start_from=COMMITTED)

QUICK = Table1Settings(
    sweep=SweepConfig(depths=[1], widths=[4, 6, 8], batch_sizes=[64], weight_decays=[0.0, 1e-3], augment=[False, True],
                      epochs=2, subset=200, test_subset=100).as_dict()
    | {"jump": {**SweepConfig().as_dict()["jump"], "seeds": [0, 1], "step_sizes": [0.5, 1.0], "epochs": 2,
                "naive_step_sizes": [0.5, 1.0], "topology_k": 3}},
    folds=2, permutations=4, classifiers=("logistic_regression", "knn", "lda", "gaussian_nb"),
)


def start_from_store(top: RunDir, source, cfg: SweepConfig) -> list[str]:
    """Copy the sweep, prediction and permutation stores of the finished sweep directory
    ``source`` into ``top`` when ``top`` holds no sweep yet and ``source``'s sweep was run with
    exactly ``cfg``; returns the names copied (none when the settings differ or it is unfinished).

    The copies keep their recorded settings, so :func:`run_sweep` and :func:`predict_sweep` then
    check them as their own (the data fingerprint included) and reuse them.

    Examples
    --------
    >>> start_from_store(RunDir("runs/study-table1"), "results/sweep-mnist1d-mlp", cfg)   # doctest: +SKIP
    ['sweep', 'prediction', 'permutation']
    """
    src = RunDir(Path(source), create=False)
    if top.exists(NAME) or not src.exists(NAME) or src.path.resolve() == top.path.resolve():
        return []
    if src.differs(NAME, {"config": cfg.as_dict(), "samplers": SAMPLERS}, partial=True) or not src.done_mask(NAME).all():
        return []
    copied = []
    for name in PRODUCTS:
        if src.exists(name):
            top.save(name, src.open(name, load=True))
            copied.append(name)
    return copied


def _done_before(top: RunDir, name: str, want: dict) -> int:
    """Finished rows (or cells) of ``name`` that the coming call will keep: those of a store whose
    recorded settings agree with ``want`` (a store of other settings is refused or redone)."""
    if not top.exists(name):
        return 0
    if top.differs(name, want, partial=True):
        return 0
    return int(top.done_mask(name).sum())


@study_run('summary = run(Path("runs/study-table1"))', 'summary["table1"]["table"]["jr"]["generalization"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: Table1Settings | None = None) -> dict:
    s = settings or (QUICK if quick else FULL)
    out = Path(out)
    st = start_study(out, "table1", {"quick": quick, "device": device, "settings": s.as_dict()}, device, console)
    top, say, clock = st.top, st.say, st.clock
    cfg = s.config(str(st.device))  # every field checked before any work
    n = len(cfg.networks())
    copied = []
    if s.start_from and not replace:
        copied = start_from_store(top, s.start_from, cfg)
        if copied:
            say(f"started from the finished sweep in {s.start_from} (copied {', '.join(copied)}); "
                "replace=True recomputes it")
        elif not top.exists(NAME):
            say(f"the sweep in {s.start_from} was made with other settings (the samplers' rules included); "
                "it is not reused: the sweep trains anew")
    names = None if s.classifiers is None else list(s.classifiers)
    chosen = list(CLASSIFIERS) if names is None else [c for c in CLASSIFIERS if c in set(names)]
    trained_before = _done_before(top, NAME, {"config": cfg.as_dict()})

    st.console.rule(f"[bold]1/2. the sweep: {n} networks, trained and sampled (J&R, grid, naive) one by one")
    with clock.stage("sweep"):
        run_sweep(cfg, top, progress=True, replace=replace, report=say)
    kept = trained_before == n  # an unchanged sweep: its prediction, if stored, is reused
    cells_before = _done_before(top, "prediction", {"folds": s.folds, "seed": s.seed, "classifiers": chosen}) if kept else 0

    st.console.rule("[bold]2/2. the prediction: Table 1, the permutation test and Fig. 3B")
    with clock.stage("predict"):
        res = predict_sweep(top, folds=s.folds, seed=s.seed, permutations=s.permutations, replace=replace,
                            progress=True, n_jobs=s.n_jobs, names=names,
                            permutation_classifier=s.permutation_classifier)
    computed = int(top.done_mask("prediction").sum()) - cells_before
    say(table_text(res))
    table = {f: {t: {k: res["table"][f][t][k] for k in ("mean", "sem")} for t in TASKS} for f in FEATURES}
    grouped = res["protocols"]["grouped"]
    grouped = {"table": {f: {t: {k: grouped["table"][f][t][k] for k in ("mean", "sem")} for t in TASKS} for f in FEATURES},
               "permutation": grouped["permutation"], "group_axes": res["group_axes"], "groups": res["groups"]}
    summary = {"table1": {
        "quick": quick, "device": str(st.device), "settings": s.as_dict(), "networks": res["networks"],
        "started_from": s.start_from if copied else None, "networks_trained_now": n - trained_before,
        "cells_computed_now": int(computed), "table": table, "grouped": grouped, "chance": res["chance"],
        "permutation": res["permutation"], "spearman": res["spearman"], "replaced": res["replaced"],
        "paper": {f: dict(zip(TASKS, v)) for f, v in PAPER.items()}, "text": table_text(res)}}
    return finish_study(out, "table1", summary, clock, st.console)

"""Pieces shared by the studies: a named minimum trained into its own sub-run, a stage clock, the
study's summary and report (their multi-panel figures are in :mod:`lossatlas.plot.panels`).

A study keeps one run directory per minimum (``OUT/NAME``, a proper lossatlas run: recorded source,
``config/train.yaml``, ``trajectory.zarr``, ``model.pt``), so every command works on it later
(``lossatlas surface OUT/sb-wd0``), and comparisons in directories of their own beside them
(``OUT/pair-...``); the report finds both, one level down.

Example
-------
>>> from lossatlas.studies.common import MinimumSpec, train_minimum, finish_study
>>> spec = MinimumSpec("sb", source, TrainConfig(batch_size=64, epochs=40))   # doctest: +SKIP
>>> m = train_minimum("runs/study-x", spec, device="cpu")                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from .._errors import require
from ..connectivity import connect, path_barriers, scaled_cycles
from ..demo.between import path_request
from ..demo.clock import StageClock
from ..demo.minima import Minimum, train_into
from ..plot import plot_connectivity
from ..sources import Source, resolve_device
from ..store import RunDir
from ..training import TrainConfig

__all__ = [
    "MinimumSpec", "PathSettings", "StudySettings", "StudyStart", "neb_stage", "announcer", "finish_study", "start_study",
    "study_run", "train_minimum", "weight_values",
]


@dataclass(frozen=True)
class StudySettings:
    """Base of a study's settings: plain values, recorded as they are (tuples as lists)."""

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class PathSettings(StudySettings):
    """Settings of the paths between minima that the studies draw (``la.connect``): linear points,
    Bezier steps, and AutoNEB's cycles as a fraction of the reference's CIFAR schedule."""

    connect_points: int = 41
    bezier_steps: int = 600
    neb_scale: float = 0.02  # of the reference's CIFAR schedule (scaled_cycles): 14 cycles, 320 steps
    neb_cycles: int | None = None  # keep only the first N cycles (the quick settings)

    def cycles(self) -> tuple:
        """AutoNEB's cycles (:func:`lossatlas.connectivity.scaled_cycles`, the first ``neb_cycles``)."""
        cycles = scaled_cycles(self.neb_scale)
        return cycles[: self.neb_cycles] if self.neb_cycles else cycles


def neb_stage(top: RunDir, a, b, s: PathSettings, replace: bool = False) -> float:
    """AutoNEB between minima ``a`` and ``b`` into ``top/connect_neb.zarr``, drawn beside the linear
    and Bezier paths of :func:`lossatlas.demo.between.connect_stage` stored there; returns its
    barrier. A stored chain of the same ends, data, cycles and seed is reused; one of other
    settings is refused (``replace=True``: computed afresh)."""
    want = {**path_request(a, b), "cycles": [[c.steps, c.lr, c.insert, c.count] for c in s.cycles()], "seed": 0}
    if top.check("connect_neb", want, replace, partial=True):
        ds = top.open("connect_neb")
    else:
        ds = connect(a.landscape, a.theta, b.theta, method="neb", cycles=s.cycles(), model=a.model,
                     data=a.data.train, batch_size=128, seed=0, progress=True)
        top.save("connect_neb", ds)
    paths = {k.replace("connect_", ""): top.open(k) for k in ("connect_linear", "connect_bezier", "connect_neb")
             if top.exists(k)}
    plot_connectivity(paths, path=top.figures / "connectivity", title=f"{a.name} to {b.name}")
    return path_barriers(ds)["barrier"]  # recomputed for a chain stored under the old definition


@dataclass(frozen=True)
class MinimumSpec:
    """What makes one minimum of a study: its sub-run's name, its source (model, initialization,
    data, augmentation, labels) and its training settings."""

    name: str
    source: Source
    train: TrainConfig

    def describe(self) -> dict:
        t = self.train
        return {"batch_size": t.batch_size, "lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay,
                "epochs": t.epochs, "schedule": t.schedule, "milestones": list(t.milestones),
                "init_seed": self.source.init_seed, "train_seed": t.seed}


def train_minimum(out, spec: MinimumSpec, device="auto", replace: bool = False, progress=True) -> Minimum:
    """Train ``spec`` into ``out/spec.name`` (a finished run of the same settings is reused).

    Parameters
    ----------
    out : path
        The study directory.
    spec : MinimumSpec
    device : str or torch.device
        Where to train and evaluate (``auto``: CUDA when available).
    replace : bool
        Redo a sub-run that holds another source or other training settings (otherwise refused).

    Returns
    -------
    lossatlas.demo.Minimum
        With a landscape on the training data (and the test data, when there is any).

    Examples
    --------
    >>> m = train_minimum("runs/study-batch", spec, device="cpu")   # doctest: +SKIP
    >>> m.final["test_accuracy"]                                   # doctest: +SKIP
    """
    return train_into(out, spec.name, spec.source.validate(), spec.train.validate(), resolve_device(device),
                      replace=replace, progress=progress, describe=spec.describe())


def finish_study(out, study: str, summary: Mapping, clock: StageClock, console=None) -> dict:
    """Write ``out/summary.json`` (``summary`` plus the timings under ``study``) and
    ``out/report.html``; returns the summary as written.

    Examples
    --------
    >>> finish_study("runs/study-batch", "batch", {"minima": rows}, clock)   # doctest: +SKIP
    """
    from ..report import build_report

    top = RunDir(Path(out))
    top.update_summary(**summary)
    report = build_report(top.path)
    entry = dict(top.summary().get(study, {}))
    entry.update(timings=clock.stages, total=clock.total(), report=str(report))
    top.update_summary(**{study: entry})
    if console is not None:
        total = entry["total"]
        console.print(f"{total['wall_s']:.0f} s wall, {total['cpu_s']:.0f} s CPU (load average "
                      f"{total['load_average_at_end'][0]:.1f} at the end); open {report}")
    return top.summary()


def weight_values(m: Minimum) -> np.ndarray:
    """Every entry of the minimum's weight matrices and kernels (not biases nor norm scales), as
    Li et al.'s weight histograms (Fig. 3) count them."""
    space, theta = m.landscape.space, m.theta.detach().cpu()
    parts = [theta[e.slice].numpy() for e in space.entries if e.kind == "weight"]
    require(bool(parts), "the model has no weight matrices")
    return np.concatenate(parts)


_RUN_DOC = """Run the study into ``out``; returns its summary (also ``out/summary.json``).

    Parameters
    ----------
    out : Path
        The study directory (see the module's docstring for its layout).
    quick : bool
        Tiny settings that check every stage in seconds (no finding).
    device : str
        ``auto``, ``cpu``, ``cuda``, ...
    replace : bool
        Redo products stored with other settings (otherwise they are refused).
    console : rich.console.Console, optional

    Examples
    --------
{examples}
    """


def study_run(*examples: str):
    """Decorator: gives a study's ``run`` the docstring that every study's ``run`` shares (they
    take the same arguments), with the study's own example lines.

    Examples
    --------
    >>> @study_run('summary = run(Path("runs/study-x"), quick=True)')
    ... def run(out, quick=False, device="auto", replace=False, console=None):
    ...     return {}
    >>> "Parameters" in run.__doc__
    True
    """
    lines = "\n".join(f"    >>> {e}" + ("   # doctest: +SKIP" if not e.startswith("#") else "") for e in examples)

    def give(fn):
        fn.__doc__ = _RUN_DOC.format(examples=lines)
        return fn

    return give


def announcer(console, notices) -> Callable[[str], None]:
    """A study's ``say``: prints a line, then the third-party warnings ``notices`` caught since
    the last line (in yellow, once each).

    Examples
    --------
    >>> say = announcer(console, Notices())   # doctest: +SKIP
    >>> say("seed 0 trained")                 # doctest: +SKIP
    """
    def say(text: str) -> None:
        console.print(text)
        for line in notices.new_lines():
            console.print(f"[yellow]{line}[/]")

    return say


@dataclass
class StudyStart:
    """What every study sets up first: its directory, device, clock, caught warnings and voice."""

    top: RunDir
    device: torch.device
    console: object
    clock: StageClock
    notices: object  # lossatlas.demo.Notices
    say: Callable[[str], None]


def start_study(out, name: str, config: Mapping, device="auto", console=None) -> StudyStart:
    """Open the study directory ``out``, record ``config`` as ``config/{name}.yaml``, resolve the
    device and start the clock; ``console`` defaults to a plain rich console.

    Examples
    --------
    >>> st = start_study("runs/study-x", "x", {"quick": True}, device="cpu")   # doctest: +SKIP
    >>> st.say(f"training on {st.device}")                                   # doctest: +SKIP
    """
    from rich.console import Console

    from ..demo import Notices

    console = console or Console(highlight=False)
    top = RunDir(Path(out))
    top.write_config(name, dict(config))
    notices = Notices()
    return StudyStart(top, resolve_device(device), console, StageClock(), notices, announcer(console, notices))

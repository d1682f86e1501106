"""Minima side by side (Li et al. Figs. 5 and 6): one plane around each minimum, on directions
drawn alike and drawn on one set of contour levels and one colour range.

Each minimum gets its own run directory ``OUT/NAME`` (its recorded source, ``compare.zarr``: a
plane the report and every command read as any other), and ``OUT/figures/compare`` holds the
figure of them all.

Directions: ``per-model`` (the default) draws, for every minimum, Gaussian directions from one
seed and filter-normalizes them to that minimum's own weights; minima of one architecture then
share the same Gaussian draw, each scaled to its own filters, as Li et al. compare minima (a
plane on raw directions would show a minimum with larger weights as flatter). ``shared`` uses
the very same two vectors, drawn and normalized around the first minimum, for all: this needs
minima of one parameter space and is for settings where scale is not at issue (e.g. ``norm=none``).

Example
-------
>>> from lossatlas.comparison import CompareSettings, compare_minima
>>> res = compare_minima({"SB": src_sb, "LB": src_lb}, "runs/compare", CompareSettings(steps=21))  # doctest: +SKIP
>>> res["figure"]   # doctest: +SKIP
PosixPath('runs/compare/figures/compare')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Mapping

from ._errors import parse_enum, require
from .sources import Source
from .store import RunDir

__all__ = ["DATA_FIELDS", "CompareSettings", "DirectionMode", "compare_minima", "check_same_data"]

#: The source fields that make the data: every minimum compared must have the same.
DATA_FIELDS = ("data", "data_root", "data_seed", "subset", "test_subset", "augment", "random_labels")


class DirectionMode(str, Enum):
    """How the minima's directions are drawn (see the module's text)."""

    PER_MODEL = "per-model"
    SHARED = "shared"


@dataclass(frozen=True)
class CompareSettings:
    """The settings of a comparison; every one changes the planes' values and is recorded."""

    steps: int = 21
    span: float = 1.0
    norm: str = "filter"
    ignore: str = "biasbn"
    seed: int = 0
    directions: str = DirectionMode.PER_MODEL.value
    bn: str = "eval"
    samples: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "CompareSettings":
        from .landscape import BatchNormMode
        from .space import parse_ignore, parse_norm

        require(self.steps >= 3 and self.steps % 2 == 1,
                f"steps must be odd and at least 3 (each minimum a grid point), got {self.steps}")
        require(self.span > 0, f"span must be positive, got {self.span}")
        parse_norm(self.norm)
        parse_ignore(None if self.ignore == "none" else self.ignore)
        parse_enum(BatchNormMode, self.bn, "batch-norm mode")
        parse_enum(DirectionMode, self.directions, "direction mode")
        require(self.samples is None or self.samples >= 1, f"samples must be a positive number, got {self.samples}")
        return self


def check_same_data(sources: Mapping[str, Source]) -> None:
    """Refuse minima evaluated on different data (the planes would not be comparable)."""
    require(len(sources) >= 2, f"give at least two minima to compare, got {len(sources)}")
    items = list(sources.items())
    first_name, first = items[0]
    for name, src in items[1:]:
        diffs = [f"{k}: {getattr(first, k)!r} for {first_name}, {getattr(src, k)!r} for {name}"
                 for k in DATA_FIELDS if getattr(first, k) != getattr(src, k)]
        require(not diffs, "the minima must be evaluated on the same data; " + "; ".join(diffs))


def compare_minima(sources: Mapping[str, Source], out, settings: CompareSettings | None = None, options=None,
                   device="auto", replace: bool = False, progress: bool = True) -> dict:
    """Planes around several minima on directions drawn alike, and the figure of them side by side.

    Parameters
    ----------
    sources : dict name -> Source
        The minima (each a model with its checkpoint), all on the same data.
    out : str or Path
        The comparison's directory: ``out/NAME/compare.zarr`` per minimum, ``out/figures/compare``.
    settings : CompareSettings
    options : lossatlas.plot.FigureOptions, optional
        Figure size, font size, and levels or colour range to use instead of the shared ones.
    device : str
    replace : bool
        Redo a stored plane made with other settings (otherwise refused).
    progress : bool

    Returns
    -------
    dict with ``planes`` (name -> Dataset), ``figure`` (its path without suffix), ``directions``
    (the mode used) and ``minima`` (name -> centre loss and accuracies).

    Example
    -------
    >>> compare_minima({"SB": src_sb, "LB": src_lb}, "runs/compare")   # doctest: +SKIP
    """
    from .execute import build_landscape, check_weights
    from .plot import plot_compare
    from .space import ParamSpace, random_directions
    from .surface import center_value, plane

    s = (settings or CompareSettings()).validate()
    s = dataclasses.replace(s, directions=parse_enum(DirectionMode, s.directions, "direction mode").value)
    check_same_data(sources)
    out = Path(out)
    first = next(iter(sources.values()))
    dev = first.resolve_device()
    data = first.build_data()
    models = {}
    for name, src in sources.items():
        net = src.replace(device=str(dev)).build_model(data).to(dev)
        check_weights(net, f"the checkpoint of {name}" if src.checkpoint else name)
        models[name] = net
    spaces = [ParamSpace(m) for m in models.values()]
    one_space = all(sp == spaces[0] for sp in spaces[1:])
    require(s.directions == DirectionMode.PER_MODEL.value or one_space,
            "shared directions need minima of one architecture (the same parameters); use per-model directions")
    ignore = None if s.ignore == "none" else s.ignore
    shared = random_directions(next(iter(models.values())), n=2, norm=s.norm, ignore=ignore, seed=s.seed) \
        if s.directions == DirectionMode.SHARED.value else None
    how = {"directions": "random", "direction_mode": s.directions, "norm": s.norm, "ignore": s.ignore, "seed": s.seed,
           "same_space": one_space}
    for name in models:  # before anything is written: a stored plane of other settings is refused in words
        _check_stored(out / name, {**how, "steps": s.steps, "span": s.span, "bn": s.bn, "samples": s.samples}, replace)
    top = RunDir(out)
    top.write_config("compare", {"minima": {k: v.as_dict() for k, v in sources.items()}, "compare": s.as_dict()})
    planes, minima = {}, {}
    for name, net in models.items():
        run = _minimum_run(out / name, sources[name], replace)
        dirs = shared if shared is not None else random_directions(net, n=2, norm=s.norm, ignore=ignore, seed=s.seed)
        f = build_landscape(net, data, dev, dict(bn=s.bn, samples=s.samples, seed=first.data_seed))
        ds = plane(f, f.origin, [d.to(dev) for d in dirs], span=s.span, steps=s.steps, store=run, name="compare",
                   progress=progress, replace=replace,
                   attrs={**how, "steps": s.steps, "span": s.span, "samples_requested": s.samples, "title": name})
        planes[name] = ds
        minima[name] = {k: center_value(ds, k) for k in ("loss", "accuracy", "test_loss", "test_accuracy") if k in ds}
    subtitles = {k: _subtitle(v) for k, v in minima.items()}
    figure = top.figures / "compare"
    plot_compare(planes, path=figure, subtitles=subtitles, options=options,
                 title=f"train loss around each minimum ({_mode_words(s, one_space)})")
    if "test_loss" in next(iter(planes.values())):
        plot_compare(planes, var="test_loss", path=top.figures / "compare_test_loss", subtitles=subtitles,
                     options=dataclasses.replace(options, levels=None, vrange=None) if options else None)
    top.update_summary(compare={"directions": s.directions, "same_space": one_space, "minima": minima})
    return {"planes": planes, "figure": figure, "directions": s.directions, "same_space": one_space, "minima": minima}


def _check_stored(path: Path, wanted: Mapping, replace: bool) -> None:
    """Refuse, naming the settings, a stored comparison plane made with other settings."""
    if replace or not (path / "compare.zarr").is_dir():
        return
    stored = RunDir(path, create=False).open("compare", load=False).attrs
    stored = {**stored, "samples": stored.get("samples_requested")}
    diffs = [f"{k}: {stored.get(k)!r} stored, {v!r} asked" for k, v in wanted.items()
             if k in ("direction_mode", "norm", "ignore", "seed", "steps", "span", "bn", "samples") and stored.get(k) != v]
    require(not diffs, f"{path} holds a comparison plane made with other settings ({'; '.join(diffs)}); "
            "pass replace=True to compute it afresh, or compare into another directory")


def _minimum_run(path: Path, src: Source, replace: bool) -> RunDir:
    """The minimum's own run directory, recording its source; one recording another is refused."""
    from .store import differences

    run = RunDir(path)
    record = {k: v for k, v in src.as_dict().items() if k not in ("device", "data_fingerprint")}
    if run.has_source():
        stored = {k: v for k, v in run.read_source().items() if k not in ("device", "data_fingerprint")}
        diffs = differences(stored, record)
        require(replace or not diffs, f"{run.path} records another minimum "
                f"({'; '.join(f'{k}: {a} there, {b} now' for k, a, b in diffs)}); pass replace=True or compare into another directory")
        if diffs:
            run.write_source(record)
    else:
        run.write_source(record)
    return run


def _subtitle(values: Mapping[str, float | None]) -> str:
    parts = []
    if values.get("loss") is not None:
        parts.append(f"loss {values['loss']:.3g}")
    if values.get("test_accuracy") is not None and math.isfinite(values["test_accuracy"]):
        parts.append(f"test acc. {100 * values['test_accuracy']:.1f} %")
    return ", ".join(parts)


def _mode_words(s: CompareSettings, one_space: bool) -> str:
    if s.directions == DirectionMode.SHARED.value:
        return "the same two directions for all"
    return f"seed {s.seed}, {s.norm}-normalized per minimum" + ("" if one_space else "; architectures differ")

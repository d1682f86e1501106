"""``lossatlas compare``: minima side by side on directions drawn alike and shared contour levels
(Li et al. Figs. 5 and 6)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from .._errors import require
from .common import (DataOpt, DataRootOpt, DataSeedOpt, DeviceOpt, ModelArgOpt, ModelOpt, ReplaceOpt, SubsetOpt,
                     console, endpoint_source, reported, source_flags, write_report)
from .figures import ColorRangeOpt, FigSizeOpt, FontSizeOpt, LevelsOpt, figure_options

DIRECTIONS_HELP = (
    "per-model (default): for every minimum, Gaussian directions drawn from --seed and normalized "
    "(--norm) to that minimum's own weights; minima of one architecture share the same Gaussian draw, "
    "each scaled to its own filters, as Li et al. compare minima (raw directions would make a minimum "
    "with larger weights look flatter). shared: the very same two vectors, normalized around the first "
    "minimum, for all (minima of one architecture only; for --norm none)")


def _labels(runs: List[Path]) -> list[str]:
    """A directory name per minimum: a run directory's name, a checkpoint's stem; repeats numbered."""
    out: list[str] = []
    for spec in runs:
        base = spec.resolve().name if spec.is_dir() else spec.stem
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base).strip(".") or "minimum"
        name, i = base, 1
        while name in out or name in ("config", "figures"):
            i += 1
            name = f"{base}-{i}"
        out.append(name)
    return out


def compare(
    runs: Annotated[List[Path], typer.Argument(
        metavar="RUN...", help="two or more minima: run directories, or checkpoints (then give --model and --data)")],
    model: ModelOpt = None, model_arg: ModelArgOpt = None, data: DataOpt = None, data_root: DataRootOpt = None,
    data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    steps: int = typer.Option(21, help="grid points per axis (odd: each minimum is the centre point)"),
    span: float = typer.Option(1.0, help="coordinates run over [-span, span]"),
    norm: str = typer.Option("filter", help="direction normalization: filter, layer, model, none"),
    ignore: str = typer.Option("biasbn", help="biasbn (zero biases and BN weights) or none"),
    seed: int = typer.Option(0, help="seed of the random directions"),
    directions: str = typer.Option("per-model", help=DIRECTIONS_HELP),
    bn: str = typer.Option("eval", help="batch norm: eval, batch, recompute"),
    samples: Optional[int] = typer.Option(None, help="evaluate on a seeded subset of N training samples (default: all of them)"),
    fig_size: FigSizeOpt = None, font_size: FontSizeOpt = None, levels: LevelsOpt = None,
    color_range: ColorRangeOpt = None,
    replace: ReplaceOpt = False,
    out: Path = typer.Option(Path("runs/compare"), help="directory of the comparison: OUT/NAME per minimum, OUT/figures/compare"),
):
    """Minima side by side (Li et al. Figs. 5-6): a plane around each on directions drawn alike, all drawn
    on the same contour levels and colour range; OUT/NAME/compare.zarr per minimum and OUT/figures/compare."""
    with reported():
        from ..comparison import CompareSettings, check_same_data, compare_minima

        require(len(runs) >= 2, f"give at least two minima to compare, got {len(runs)}")
        settings = CompareSettings(steps=steps, span=span, norm=norm, ignore=ignore, seed=seed, directions=directions,
                                   bn=bn, samples=samples).validate()
        options = figure_options(fig_size, font_size, levels, color_range)
        flags = source_flags(model, model_arg, None, data, data_root, data_seed, subset)
        sources = {name: endpoint_source(spec, flags, device)[0] for name, spec in zip(_labels(runs), runs)}
        check_same_data(sources)
        res = compare_minima(sources, out, settings, options=options, device=device, replace=replace, progress=True)
        why = ("the same two directions for every minimum" if res["directions"] == "shared" else
               f"directions from seed {seed}, {norm}-normalized to each minimum"
               + ("" if res["same_space"] else " (the architectures differ, so each draws its own)"))
        console.print(f"directions: {why}")
        for name, values in res["minima"].items():
            line = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in values.items() if v is not None)
            console.print(f"{name}: {line}")
        console.print(f"wrote {len(res['planes'])} planes (OUT/NAME/compare.zarr) and {res['figure']}.png in {out}")
        from ..store import RunDir

        write_report(RunDir(out))

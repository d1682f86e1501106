"""``lossatlas study NAME``: the named reproductions of the papers' experiments (:mod:`lossatlas.studies`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..studies.registry import STUDIES
from .common import DeviceOpt, ReplaceOpt, console, reported


def study(
    name: str = typer.Argument(..., help=f"the study to run: {', '.join(sorted(STUDIES))} (docs/studies.md)"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/study-NAME)"),
    quick: bool = typer.Option(False, help="smaller settings that only check that every stage runs (no finding)"),
    device: DeviceOpt = "auto",
    replace: ReplaceOpt = False,
):
    """A small-scale reproduction of one of the papers' experiments: its figures, summary.json and report.html."""
    with reported():
        from ..studies import run_study

        target = out or Path("runs") / f"study-{name}"
        run_study(name, target, quick=quick, device=device, replace=replace, console=console)
        console.print(f"study {name}: {target / 'report.html'}")

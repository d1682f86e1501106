"""``lossatlas report``: the run's self-contained HTML page, rebuilt from what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import console, reported


def report(
    run_path: Path = typer.Argument(..., metavar="RUN", help="run directory"),
    out: Optional[Path] = typer.Option(None, help="where to write the page (default RUN/report.html)"),
):
    """One self-contained HTML report (opens with no network) of everything the run holds: report.html."""
    with reported():
        from ..report import build_report

        path = build_report(run_path, path=out)
        size = path.stat().st_size / 2**20
        console.print(f"wrote {path} ({size:.1f} MB); open it in a browser, no network needed")

"""``lossatlas demo``: the main job, what ``make demo`` runs (see :mod:`lossatlas.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DeviceOpt, ReplaceOpt, console, reported


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="demo directory (one run directory per minimum inside)"),
    quick: bool = typer.Option(False, help="smaller settings (under two minutes; for tests)"),
    device: DeviceOpt = "auto",
    replace: ReplaceOpt = False,
):
    """Good, bad and memorization minima of a 1-D CNN on MNIST-1D: surfaces, PCA paths, interpolation,
    J&R with PHATE/t-SNE/UMAP/PCA, persistence, Hessian, sharpness, barriers, summary.json and report.html."""
    with reported():
        from ..demo import run_demo

        run_demo(out, quick=quick, device=device, replace=replace, console=console)

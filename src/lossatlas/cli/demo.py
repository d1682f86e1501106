"""``lossatlas demo``: the main job, what ``make demo`` runs (see :mod:`lossatlas.demo`)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from .common import DeviceOpt, ReplaceOpt, console, reported


def call(command, **kwargs):
    """Call another command's function from Python with its command-line defaults for every
    option not given (called directly, typer's parameters default to their OptionInfo)."""
    for name, param in inspect.signature(command).parameters.items():
        if name not in kwargs:
            default = param.default
            kwargs[name] = default.default if isinstance(default, typer.models.ParameterInfo) else default
    return command(**kwargs)


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="demo directory (one run directory per minimum inside)"),
    quick: bool = typer.Option(False, help="smaller settings (about a minute; for tests)"),
    device: DeviceOpt = "auto",
    replace: ReplaceOpt = False,
):
    """Good, bad and memorization minima of a 1-D CNN on MNIST-1D: surfaces, PCA paths, interpolation,
    J&R with PHATE/t-SNE/UMAP/PCA, persistence, Hessian, sharpness, barriers, summary.json and report.html."""
    with reported():
        from ..demo import run_demo

        run_demo(out, quick=quick, device=device, replace=replace, console=console)

"""The typer application: one module per command group, each imported here without torch."""

from __future__ import annotations

import typer

from . import analysis, demo, measures, surface, training
from . import report as report_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sample, draw and measure the loss landscapes of PyTorch models.",
    pretty_exceptions_enable=False,
)
app.command("surface")(surface.surface)
app.command("interpolate")(surface.interpolate)
app.command("train")(training.train_cmd)
app.command("trajectory")(analysis.trajectory)
app.command("jump")(training.jump)
app.command("embed")(analysis.embed)
app.command("topology")(measures.topology)
app.command("hessian")(measures.hessian)
app.command("sharpness")(measures.sharpness)
app.command("connect")(measures.connect)
app.command("report")(report_cmd.report)
app.command("demo")(demo.demo)


def main() -> None:
    app()

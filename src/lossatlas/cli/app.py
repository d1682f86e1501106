"""The typer application: one module per command group, each imported here without torch."""

from __future__ import annotations

import typer

from . import analysis, compare, demo, measures, study, surface, sweep, training
from . import report as report_cmd
from .helpfmt import flags_take_no_value

flags_take_no_value()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sample, draw and measure the loss landscapes of PyTorch models.",
    pretty_exceptions_enable=False,
)
# One module per command group; the order is the order of `lossatlas --help`.
COMMANDS = (
    ("surface", surface.surface), ("interpolate", surface.interpolate), ("train", training.train_cmd),
    ("trajectory", analysis.trajectory), ("jump", training.jump), ("embed", analysis.embed),
    ("topology", measures.topology), ("hessian", measures.hessian), ("sharpness", measures.sharpness),
    ("connect", measures.connect), ("compare", compare.compare), ("sweep", sweep.sweep), ("predict", sweep.predict), ("study", study.study), ("report", report_cmd.report), ("demo", demo.demo),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)

def main() -> None:
    app()

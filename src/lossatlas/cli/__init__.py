"""The ``lossatlas`` command: thin typer commands that build a typed config and call the library.

Each command writes into a run directory and prints where. Bad input is reported in one red line
on stderr with how to fix it (exit code 2), before any expensive work starts.
"""

from .app import app, main

__all__ = ["app", "main"]

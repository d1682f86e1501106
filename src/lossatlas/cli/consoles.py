"""The command line's two consoles: results on standard output, errors and interruptions on
standard error. Their own module so that every command module (and the guard around each
command body) prints through the same two objects without importing one another."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

"""What every command shares around its work: a refused command leaves its run directory as it
found it, an interrupted one says what was kept and how to go on, and third-party warnings
reach the user in words, with the settings lossatlas used.

:func:`guarded` wraps each command's body (through :func:`lossatlas.cli.common.reported`):

- bad input (an :class:`~lossatlas.InputError`) undoes what the command wrote to its output
  directory before it was refused: configs and the recorded source are restored, and a directory
  the command created is removed unless it already holds a product;
- Ctrl-C (``KeyboardInterrupt``) prints the stage and how far it got (from
  :data:`lossatlas.progress.LAST`), says how to continue, and exits with 130, like a shell;
- warnings from PHATE, SGD-MDS, UMAP or scikit-learn are collected and said once each, reworded
  (:func:`lossatlas.demo.notices.explain`) and followed by the settings the command used.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator, Optional

import typer

# Commands whose stored work a rerun picks up where it stopped (the others start over).
RESUMABLE = frozenset({"surface", "interpolate", "train", "jump", "trajectory", "sweep", "study", "demo", "hessian"})

_state: dict = {"depth": 0, "journals": [], "settings": [], "run": None}


class Journal:
    """What a command wrote to one output directory, so that a refusal can undo it."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        self.before: dict[Path, Optional[bytes]] = {}

    def remember(self, file) -> None:
        """Keep ``file``'s content (None: absent) before its first write by this command."""
        file = Path(file)
        if file not in self.before:
            self.before[file] = file.read_bytes() if file.is_file() else None

    def rollback(self) -> None:
        """Undo the writes. Work already stored (a zarr product, a trained ``model.pt``) is kept,
        with the recorded source that describes it, so that the corrected command reuses it."""
        kept = any(self.path.glob("*.zarr")) or (self.path / "model.pt").exists()
        if self.created and not kept:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for file, content in self.before.items():
            if kept and file.name in ("source.yaml", "train.yaml"):  # they describe the kept work
                continue
            if content is None:
                file.unlink(missing_ok=True)
            else:
                file.write_bytes(content)


def journal(path) -> Journal:
    """A journal for the output directory ``path`` of the running command (before its first write)."""
    j = Journal(path)
    _state["journals"].append(j)
    _state["run"] = j.path
    return j


def using(text: str) -> None:
    """Say which settings a library stage runs with, for the notes its warnings produce
    (``"PHATE with knn 5 on cosine distances, seed 0"``)."""
    if text not in _state["settings"]:
        _state["settings"].append(text)


def _interrupted(command: str) -> None:
    from ..progress import LAST

    from .consoles import errors

    where = ""
    if LAST:
        where = f" during {LAST['stage']}: {LAST['done']} of {LAST['total']} done"
    run = _state["run"]
    kept = f"; the finished work is stored in {run}" if run is not None else ""
    how = ("run the same command again to resume" if command in RESUMABLE
           else "run the same command again to start it over (this stage keeps no partial result)")
    errors.print(f"[bold yellow]interrupted[/]{where}{kept}; {how}", soft_wrap=True)


def _say_notes(notices, command: str) -> None:
    from .consoles import console

    used = "; ".join(_state["settings"])
    for line in notices.new_lines():
        console.print(f"[yellow]{line[:-1] if line.endswith('.') else line}"
                      f"{f' (lossatlas used: {used})' if used else ''}.[/]", soft_wrap=True)


@contextlib.contextmanager
def guarded(fail) -> Iterator[None]:
    """The body of a command: bad input rolled back and reported by ``fail``, Ctrl-C reported
    with exit code 130, library warnings reworded. Nested uses act once, at the outermost."""
    from .._errors import InputError

    outer = _state["depth"] == 0
    if not outer:
        try:
            yield
        except InputError as exc:
            _rollback()
            fail(exc)
        return
    from ..demo.notices import Notices
    from ..progress import LAST

    command = _command_name()
    _state.update(depth=1, journals=[], settings=[], run=None)
    LAST.clear()
    notices = Notices()
    try:
        with notices.catch(command or "lossatlas"):
            try:
                yield
            except InputError as exc:
                _rollback()
                fail(exc)
            except KeyboardInterrupt:
                _interrupted(command)
                raise typer.Exit(130) from None
    finally:
        _say_notes(notices, command)
        _state.update(depth=0, journals=[], settings=[], run=None)


def current_context():
    """The running command's click context, or None (typer 0.29 and later vendor click)."""
    import click

    getters = [click.get_current_context]
    try:
        from typer._click.globals import get_current_context
    except ImportError:
        pass
    else:
        getters.insert(0, get_current_context)
    for get in getters:
        ctx = get(silent=True)
        if ctx is not None and ctx.info_name:
            return ctx
    return None


def _command_name() -> str:
    ctx = current_context()
    return str(ctx.info_name) if ctx is not None else ""


def _rollback() -> None:
    for j in reversed(_state["journals"]):
        j.rollback()
    _state["journals"] = []

"""Which lossatlas wrote a run directory: ``lossatlas-version.yaml`` records the newest version
that wrote to it (beside ``config/``, whose files are the commands' own configs), and an older lossatlas refuses the run before any work (its stores may hold
layouts or settings it does not know)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import yaml

from .._errors import require
from .files import atomic_write_text

VERSION_FILE = Path("lossatlas-version.yaml")


def installed_version() -> str:
    try:
        return metadata.version("lossatlas")
    except metadata.PackageNotFoundError:
        return "0"


def _parse(text: str):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(str(text))
    except InvalidVersion:
        return Version("0")


def recorded_version(path) -> str | None:
    """The version recorded in a run directory, or None (nothing recorded)."""
    f = Path(path) / VERSION_FILE
    if not f.is_file():
        return None
    data = yaml.safe_load(f.read_text()) or {}
    return str(data.get("lossatlas_version")) if isinstance(data, dict) and data.get("lossatlas_version") else None


def check_run_version(path) -> None:
    """Refuse a run directory written by a newer lossatlas than this one.

    Examples
    --------
    >>> check_run_version("runs/demo")      # nothing recorded, or this version or older: passes
    """
    have, mine = recorded_version(path), installed_version()
    require(have is None or _parse(have) <= _parse(mine),
            f"{path} was written by lossatlas {have}, newer than the installed {mine}: its stores may use layouts "
            f"this version does not know. Upgrade lossatlas (pip install -U lossatlas) or use another run directory")


def record_run_version(path) -> None:
    """Record this version in a run directory (kept when a newer one is recorded already)."""
    have, mine = recorded_version(path), installed_version()
    if have is None or _parse(have) < _parse(mine):
        atomic_write_text(Path(path) / VERSION_FILE, yaml.safe_dump({"lossatlas_version": mine}))

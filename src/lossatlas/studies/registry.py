"""The studies by name: each name maps to the module of this package that runs it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from .._errors import InputError

#: Study name -> module of :mod:`lossatlas.studies` (imported only when the study runs).
STUDIES: dict[str, str] = {}


def study_module(name: str) -> ModuleType:
    """The module of study ``name``; an unknown name lists the known ones."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in STUDIES:
        raise InputError(f"unknown study {name!r}; known studies: {', '.join(sorted(STUDIES)) or 'none'}")
    return importlib.import_module(f"{__package__}.{STUDIES[key]}")


def run_study(name: str, out, quick: bool = False, device: str = "auto", replace: bool = False, console=None) -> dict:
    """Run study ``name`` into the directory ``out``; returns its summary (also ``out/summary.json``)."""
    module = study_module(name)
    return module.run(Path(out), quick=quick, device=device, replace=replace, console=console)

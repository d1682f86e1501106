"""The studies by name: every module of this package but the infrastructure ones is a study, named
after its module (``skip_width`` is ``skip-width``), found without importing any of them."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from .._errors import InputError

#: Modules of this package that are not studies.
INFRASTRUCTURE = frozenset({"registry", "common"})


def _discover() -> dict[str, str]:
    here = str(Path(__file__).parent)
    return {m.name.replace("_", "-"): m.name for m in pkgutil.iter_modules([here])
            if not m.name.startswith("_") and m.name not in INFRASTRUCTURE}


#: Study name -> module of :mod:`lossatlas.studies` (imported only when the study runs).
STUDIES: dict[str, str] = _discover()


def study_module(name: str) -> ModuleType:
    """The module of study ``name``; an unknown name lists the known ones."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in STUDIES:
        raise InputError(f"unknown study {name!r}; known studies: {', '.join(sorted(STUDIES)) or 'none'}")
    return importlib.import_module(f"{__package__}.{STUDIES[key]}")


def run_study(name: str, out, quick: bool = False, device: str = "auto", replace: bool = False, console=None) -> dict:
    """Run study ``name`` into the directory ``out``; returns its summary (also ``out/summary.json``).

    Examples
    --------
    >>> summary = run_study("batch", "runs/study-batch", quick=True)   # doctest: +SKIP
    """
    module = study_module(name)
    return module.run(Path(out), quick=quick, device=device, replace=replace, console=console)

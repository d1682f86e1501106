"""Runs recorded from the user's own training (``la.Recorder``): the source options given to a
command on such a run say how to rebuild its model and data, and are recorded there once."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .._errors import require


def adopt_source(run_path: Optional[Path], flags: dict, device: str) -> dict:
    """The source flags left for :func:`~lossatlas.cli.common.resolve_source`: on a run directory
    that records no source yet (a recorded run), the flags become its source (recorded now, and
    used by every later command) and none are left; elsewhere they are returned as given."""
    from ..sources import Source
    from ..store import RunDir

    if run_path is None or not Path(run_path).is_dir():
        return flags
    run = RunDir(run_path, create=False)
    if run.has_source():
        return flags
    recorded = run.exists("trajectory") and bool(run.open("trajectory", load=False).attrs.get("recorded"))
    if not recorded:
        return flags
    require(bool(flags) and "model" in flags and "data" in flags,
            f"{run.path} was recorded from your own training and records no source: give --model and --data "
            "(and --model-arg, --subset, --data-seed as needed) saying how to rebuild its model and data, "
            "or record it with Recorder(source=...)")
    from ..recording import record_source

    record_source(run, Source.from_dict({**flags, "device": device}, "the source options"))
    return {}

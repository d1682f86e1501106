"""The source of a recorded run: how to rebuild its model and data, in ``config/source.yaml``."""

from __future__ import annotations

from typing import Mapping

from .._errors import require
from ..sources import Source
from ..store import RunDir, differences


def as_source(source) -> Source:
    """A :class:`~lossatlas.Source` from a Source or a mapping of its fields (checked)."""
    if isinstance(source, Source):
        return source.validate()
    require(isinstance(source, Mapping), f"source must be a lossatlas.Source or a mapping of its fields, got {type(source).__name__}")
    return Source.from_dict(dict(source), "source")


def record_source(run: RunDir, source) -> Source:
    """Record ``source`` in ``run`` (as every command records its own), or check that the
    source already recorded there is the same model and data; another one is refused.

    Examples
    --------
    >>> record_source(RunDir("runs/mine"), {"model": "mynets:make", "data": "digits"})  # doctest: +SKIP
    """
    src = as_source(source)
    record = {k: v for k, v in src.as_dict().items() if k not in ("device", "checkpoint")}
    if run.has_source():
        stored = {k: v for k, v in run.read_source().items() if k not in ("device", "checkpoint")}
        diffs = [d for d in differences(stored, record) if d[0] != "data_fingerprint"]
        require(not diffs, f"{run.path} records another source ("
                f"{'; '.join(f'{k}: {a} there, {b} now' for k, a, b in diffs)}); record into another directory")
    else:
        run.write_source(record)
    return src

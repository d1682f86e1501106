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


def record_checkpoints(files: list, flags: dict, device: str, out: Path, replace: bool) -> Path:
    """A run in ``out`` whose trajectory is the series of checkpoint ``files`` (in the order
    given: point 0 is the first, its epoch coordinate the position), recorded with
    :class:`~lossatlas.Recorder`, with the source of the last checkpoint: what `trajectory`
    works on when given checkpoints saved by the user's own training instead of a run.

    A run recorded from the same files (path and content) is reused; from other files it is
    refused unless ``replace``. Every file is checked, and the model built from the first one,
    before anything is written.
    """
    from ..models import load_checkpoint
    from ..recording import Recorder, record_source
    from ..sources import Source, file_sha256
    from ..store import RunDir
    from .products import claim

    files = [Path(f) for f in files]
    for f in files:
        require(f.is_file(), f"file not found: {f} (give one run directory, or three or more checkpoint files "
                "saved along one training run, in order)")
    require(len(files) >= 3, f"a path on two PCA directions needs at least 3 checkpoints, got {len(files)}")
    require("model" in flags and "data" in flags, "checkpoint files need --model and --data to build the model "
            "they belong to (and --model-arg, --subset, --data-seed as needed)")
    series = [{"checkpoint": str(f.resolve()), "sha256": file_sha256(f)} for f in files]
    src = Source.from_dict({**flags, "checkpoint": str(files[-1].resolve()), "device": device}, "the source options")
    data = src.build_data()
    model = src.replace(checkpoint=str(files[0].resolve())).build_model(data)  # a bad file fails here, nothing written
    settings = {"checkpoints": series}
    if Path(out).is_dir():
        run = RunDir(out, create=False)
        claim(run, "trajectory", settings, replace)
        if run.exists("trajectory"):
            return run.path
    rec = Recorder(model, out, every_steps=None, every_epochs=1, replace=replace, resume=False)
    for f in files[1:]:  # one "step" and one "epoch" a checkpoint: the epoch coordinate is its position
        load_checkpoint(model, f)
        rec.step()
        rec.end_epoch()
    rec.close()
    from .products import COMMAND

    rec.run.update_attrs("trajectory", {COMMAND: settings, "checkpoints": [s["checkpoint"] for s in series]})
    record_source(rec.run, src)
    return rec.run.path

"""Checks of a run before its work starts: each failure is an InputError that names the fix,
raised before anything is computed or written, so nothing already computed is lost."""

from __future__ import annotations

import uuid
from pathlib import Path

from .._errors import InputError, require


def check_writable(path) -> None:
    """Refuse an output directory that cannot be created or written (a probe file is written
    and removed there, or in its nearest existing parent when it does not exist yet).

    Examples
    --------
    >>> check_writable("runs/demo")
    """
    path = Path(path)
    probe_dir = path
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    require(probe_dir.is_dir(), f"cannot create the output directory {path}: {probe_dir} is a file, not a directory; "
            "choose another output directory")
    probe = probe_dir / f".lossatlas-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to the output directory {path} ({exc.strerror or exc}); choose another "
                         "output directory or make it writable") from None


def check_weights(model, what: str = "the model") -> None:
    """Refuse a model whose parameters or buffers hold NaN or inf (a diverged checkpoint).

    Examples
    --------
    >>> check_weights(model, "the checkpoint model.pt")
    """
    import torch

    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    require(not bad, f"{what} holds NaN or infinite weights in {bad[:10]}{' ...' if len(bad) > 10 else ''}: it "
            "diverged or was damaged; use the checkpoint of an earlier, finite epoch")

"""Products a command computes whole and then stores (embeddings, Hessian spectra, sharpness
tables, paths, persistence): none replaces one made with other settings unless ``--replace`` is
given, and ``--name`` keeps several of one kind side by side in a run directory.

Each such product records the command's settings in ``attrs["command"]``; :func:`claim` compares
them before any work (the library's own samplers, planes, lines and training runs, do the same
through :meth:`lossatlas.store.RunDir.check`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import typer
from typing_extensions import Annotated

from .._errors import require

COMMAND = "command"
NameOpt = Annotated[Optional[str], typer.Option(
    "--name", help="store the product as KIND_NAME.zarr with its own figures, beside others of its kind (compare "
                   "settings in one run directory); default: the kind alone")]


def product(kind: str, name: Optional[str]) -> str:
    """The stored name of a product of ``kind`` given ``--name`` (``surface`` or ``surface_wide``).

    Examples
    --------
    >>> product("surface", "wide")
    'surface_wide'
    """
    if name is None:
        return kind
    require(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name)),
            f"--name takes letters, digits, '-' and '_' (up to 64, starting with a letter or digit), got {name!r}")
    return f"{kind}_{name}"


def claim(run, name: str, settings: Mapping[str, Any], replace: bool) -> None:
    """Before computing ``name``: a stored one made with other settings is refused, naming each
    setting with both values (or deleted with ``replace``)."""
    from ..store import differences
    from ..store.rundir import read_attr
    from ..store.settings import mismatch

    if not run.exists(name):
        return
    stored = read_attr(run.open(name, load=False), COMMAND, None)
    diffs = differences(stored if isinstance(stored, Mapping) else {}, settings)
    if not diffs:
        return
    if replace:
        run.remove(name)
        return
    raise mismatch(run.zarr_path(name), diffs)


def store(run, name: str, ds, settings: Mapping[str, Any]):
    """Save ``ds`` as ``name`` with the command's ``settings`` recorded (see :func:`claim`)."""
    ds.attrs[COMMAND] = dict(settings)
    return run.save(name, ds)


def weights(src) -> dict:
    """What pins a source's weights, for a product's recorded settings: the checkpoint file and
    its content hash (a model without one is pinned by its factory and init seed)."""
    from ..sources import file_sha256

    if not src.checkpoint:
        return {"model": src.model, "init_seed": src.init_seed}
    return {"checkpoint": str(src.checkpoint), "checkpoint_sha256": src.checkpoint_sha256 or file_sha256(src.checkpoint)}


def claim_attrs(run, name: str, attrs: Mapping[str, Any], replace: bool) -> None:
    """Before a plane or line is resumed or refused by its sampler (which compares fingerprints of
    the centre and ends): the readable settings stored in its attrs (directions' seed, norm,
    ignore rule), compared first, so that a refusal names them in words."""
    from ..store.settings import mismatch, normalized

    if replace or not run.exists(name):
        return
    stored = run.open(name, load=False).attrs
    asked = normalized(attrs)
    diffs = [(k, stored[k], v) for k, v in asked.items() if k in stored and normalized({k: stored[k]})[k] != v]
    if diffs:
        raise mismatch(run.zarr_path(name), diffs)

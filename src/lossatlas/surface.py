"""2-D planes of the loss landscape (Li et al. section 4), and the home of the sampling API.

Grids are evaluated block by block from the center and the directions (never as a full
points x params matrix), optionally streamed into a run directory. A stored grid records every
setting that changes its values (``attrs["settings"]``); an interrupted grid resumes with only
its missing cells computed, and a request with other settings is refused
(:class:`~lossatlas.StoreMismatchError`) unless ``replace=True``. Rows of a plane are
independent tasks for an ``executor``.

The machinery shared with lines lives in :mod:`lossatlas.grids`, lines in
:mod:`lossatlas.lines`; this module re-exports both (``lossatlas.surface.line``,
``lossatlas.surface.center_value``, ...), which is where the package root maps them.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from .grids import (as_tensor, center_index, center_value, check_grid_fits, check_store, check_vectors,
                    compute_chunks, count_nonfinite, directions_array, evaluate_cells, evaluation_settings,
                    free_memory, grid_axes, grid_axis, grid_dataset, open_store, point_block, rule_text,
                    stored_grid, zero_index)
from .landscape import Landscape
from .lines import evaluate_line, line
from .progress import progress_bar
from .space import make_directions, parse_ignore, parse_norm
from .store import RunDir, fingerprint, provenance

__all__ = [
    "as_tensor", "center_index", "center_value", "check_grid_fits", "check_store", "check_vectors",
    "compute_chunks", "count_nonfinite", "directions_array", "evaluate_cells", "evaluate_line",
    "evaluation_settings", "free_memory", "grid_axes", "grid_axis", "grid_dataset", "line", "open_store",
    "plane", "point_block", "rule_text", "stored_grid", "zero_index",
]


# -- planes --------------------------------------------------------------------------------

def plane(
    f: Landscape,
    center: torch.Tensor | None = None,
    dirs: Sequence[torch.Tensor] | None = None,
    span=1.0,
    steps=51,
    *,
    norm: str = "filter",
    ignore="biasbn",
    seed: int = 0,
    store: RunDir | str | None = None,
    name: str = "surface",
    progress: bool | Callable = False,
    executor: Executor | None = None,
    attrs: dict | None = None,
    save_directions: bool = True,
    replace: bool = False,
) -> xr.Dataset:
    """The loss on a 2-D grid: ``loss[i, j]`` at ``center + x[i]*dirs[0] + y[j]*dirs[1]``.

    Parameters
    ----------
    f : Landscape
    center : Tensor, optional
        Default ``f.origin`` (the model's parameters).
    dirs : two 1-D tensors, optional
        The caller's directions (e.g. PCA directions, or directions saved with an earlier plane
        to draw two minima on the same axes). Default: two random directions drawn with
        ``norm``, ``ignore`` and ``seed``. Either way their fingerprints are recorded.
    span : float, (min, max) or (xmin, xmax, ymin, ymax)
        A number ``s``: ``x = y = linspace(-s, s, steps)``. A pair: the same range on both axes.
        Four numbers: asymmetric ranges, ``x`` on ``[xmin, xmax]`` and ``y`` on ``[ymin, ymax]``.
    steps : int or (nx, ny)
        Points per axis. The grid has a centre cell (``attrs["center_index"]``) only when 0 is
        one of the coordinates of both axes, e.g. an odd ``steps`` on a symmetric range.
    store : RunDir or path, optional
        Stream the grid into ``store/name.zarr``; an interrupted plane resumes there. A plane of
        other settings there raises :class:`~lossatlas.StoreMismatchError` (``replace=True``:
        deleted, computed afresh).
    progress : bool or callable(done, total)
    executor : concurrent.futures.Executor, optional
        Rows are independent tasks (e.g. :class:`lossatlas.execute.DaskExecutor`), collected as
        they complete; each row is stored (values, then its done flags) when it arrives.
    attrs : dict, optional
        Extra attrs to record (e.g. the direction settings of user-given directions).

    Returns
    -------
    xarray.Dataset with dims ``("x", "y")``: ``loss``, ``accuracy`` (classification),
    ``test_loss``/``test_accuracy`` (with test data), ``done``; optionally ``directions``
    (direction, param). ``attrs["settings"]`` holds every setting that changes the values.

    Examples
    --------
    >>> ds = plane(Landscape(model, (X, y)), span=1.0, steps=31, seed=0)
    >>> wide = plane(f, span=(-0.5, 1.5, -1.0, 1.0), steps=(41, 21))
    """
    xs, ys = grid_axes(span, steps)
    norm_e = parse_norm(norm)
    rule = parse_ignore(ignore)
    if dirs is None:
        base = f.origin if center is None else as_tensor(center)
        f.space.check_vector(base, "center")
        dirs = make_directions(f.space, base.to(f.origin.device, f.origin.dtype), 2, norm_e, rule, seed)
        how = {"directions": "random", "norm": norm_e.value, "ignore": rule_text(rule), "seed": int(seed)}
    else:
        how = {"directions": "given"}
    center, dirs = check_vectors(f, center, list(dirs), 2)
    dir_prints = [f.space.fingerprint(d) for d in dirs]
    settings = {
        "kind": "plane",
        "center_fingerprint": f.space.fingerprint(center),
        "directions": {"how": how["directions"], **{k: v for k, v in how.items() if k != "directions"},
                       "fingerprints": dir_prints},
        "x": [float(xs[0]), float(xs[-1]), len(xs)],
        "y": [float(ys[0]), float(ys[-1]), len(ys)],
        **evaluation_settings(f),
    }
    ci, cj = zero_index(xs), zero_index(ys)
    d0, d1 = dirs[0].double(), dirs[1].double()
    meta = {
        **provenance(),
        **how,
        **(attrs or {}),
        "kind": "plane", "loss_name": f.loss_name, "bn": f.bn.value, "samples": settings["samples"],
        "data_fingerprint": f.fingerprint, "center_fingerprint": settings["center_fingerprint"],
        "direction_fingerprints": dir_prints,
        "direction_norms": [float(d.norm()) for d in dirs],
        "direction_cosine": float(torch.dot(d0, d1) / (d0.norm() * d1.norm())),
        "center_index": None if ci is None or cj is None else [ci, cj],
        "n_params": f.space.size, "settings": settings, "fingerprint": fingerprint(settings),
    }

    shape = (len(xs), len(ys))
    values = {k: np.full(shape, np.nan) for k in f.keys}
    done = np.zeros(shape, bool)
    run = open_store(store)
    kept = dirs if save_directions else None
    if run is not None and check_store(run, name, settings, replace, "plane"):
        values, done = stored_grid(run, name, f.keys)
        meta["resumed_cells"] = int(done.sum())
    elif run is not None:
        run.create_grid(name, grid_dataset({"x": xs, "y": ys}, values, done, meta, kept),
                        chunks={"x": 1, "param": 2**20})
        if kept is not None:
            run.write_variable(name, "directions", directions_array(kept))

    # One row of the grid is one task: the unit of progress, of resumption and of scale-out.
    def chunk(i):
        pending = [j for j in range(len(ys)) if not done[i, j]]
        coords = np.array([[xs[i], ys[j]] for j in pending])
        return (i, pending), (f, center, dirs, coords), len(pending)

    def record(key, result):
        i, pending = key
        for k in f.keys:
            values[k][i, pending] = result[k]
        done[i, pending] = True
        if run is not None:
            run.write_cells(name, {k: values[k][i : i + 1] for k in f.keys}, (slice(i, i + 1), slice(None)))

    chunks = [chunk(i) for i in range(len(xs)) if not done[i].all()]
    total = int((~done).sum())
    with progress_bar(progress, total, f"plane {shape[0]}x{shape[1]}") as advance:
        compute_chunks(chunks, evaluate_cells, record, executor, advance)

    meta["n_nonfinite"] = count_nonfinite(values, done)
    ds = grid_dataset({"x": xs, "y": ys}, values, done, meta, kept)
    if run is not None:
        run.update_attrs(name, ds.attrs)
    return ds

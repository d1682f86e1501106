"""1-D lines of the loss landscape (Li et al. section 3): the linear interpolation between two
models (their Figs. 2-3) and slices along one direction.

A line is stored as a grid along ``t`` in blocks of up to 16 points, each block an independent
task for an ``executor``, stored (values, then done flags) as it arrives; an interrupted line
resumes with only its missing points computed. ``lossatlas.surface`` re-exports :func:`line`.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Callable

import numpy as np
import torch
import xarray as xr

from ._errors import positive_int, require
from .grids import (check_store, check_vectors, compute_chunks, count_nonfinite, evaluation_settings, grid_dataset,
                    line_axis, open_store, point_block, stored_grid, zero_index)
from .landscape import Landscape
from .progress import progress_bar
from .store import RunDir, fingerprint, provenance

__all__ = ["BN_STATISTICS", "evaluate_line", "line"]

# Points of a line evaluated (and stored, and resumed) together.
_LINE_BLOCK = 16

#: What the batch-norm statistics are along a line, under each mode of the Landscape (recorded
#: in ``attrs["bn_statistics"]`` of a line of a model with batch norm).
BN_STATISTICS = {
    "eval": "the running statistics of the Landscape's model at every point (they are not interpolated)",
    "batch": "each evaluation batch's own statistics",
    "recompute": "statistics re-estimated on the training data at every point",
}


def line(
    f: Landscape,
    start: torch.Tensor | None,
    end: torch.Tensor,
    steps: int = 101,
    extent: tuple[float, float] = (-0.5, 1.5),
    *,
    store: RunDir | str | None = None,
    name: str = "line",
    progress: bool | Callable = False,
    executor: Executor | None = None,
    attrs: dict | None = None,
    replace: bool = False,
    settings: dict | None = None,
) -> xr.Dataset:
    """The loss along ``(1 - t) * start + t * end`` for ``t`` in ``linspace(*extent, steps)``.

    With ``start`` and ``end`` two minimizers this is the 1-D linear interpolation of Goodfellow
    et al. used by Li et al. (Figs. 2-3); with ``end = start + d`` it is a 1-D slice along ``d``.
    The grid holds ``t = 0`` and ``t = 1`` exactly wherever they lie in ``extent``
    (:func:`lossatlas.grids.line_axis`: a ``steps`` that cannot is refused, naming the counts
    that can), and the points there are exactly ``start`` and ``end`` (evaluated as
    :meth:`Landscape.evaluate` does), so with ``bn="eval"`` and no batch norm the ends are each
    model's own loss. With batch norm, ``attrs["bn_statistics"]`` says which statistics were
    used: under ``bn="eval"`` those of ``f``'s model at every ``t``; ``bn="recompute"`` is the
    honest choice between two models.

    Parameters
    ----------
    f : Landscape
        Its test data, if any, gives ``test_loss``/``test_accuracy`` along the line.
    start, end : Tensor
        Parameter vectors; ``start=None`` is ``f.origin``.
    store : RunDir or path, optional
        Stream the line into ``store/name.zarr`` in blocks; an interrupted line resumes with
        only its missing points computed; a line of other settings is refused (``replace=True``:
        deleted, computed afresh).
    progress : bool or callable(done, total)
    executor : concurrent.futures.Executor, optional
        Blocks of up to 16 points are independent tasks (e.g. :class:`lossatlas.execute.DaskExecutor`,
        with ``f`` shared through it), collected as they complete; each block is stored (values,
        then its done flags) when it arrives.
    attrs : dict, optional
        Extra attrs to record (e.g. the names of the two models).
    settings : dict, optional
        Extra settings that changed ``end`` (e.g. the permutation alignment of the second
        model), recorded in ``attrs["settings"]``: a stored line of other ones is refused.

    Returns
    -------
    xarray.Dataset with dim ``t``: ``loss``, ``accuracy`` (and ``test_*``), ``done``.

    Examples
    --------
    >>> line(f, theta_small_batch, theta_large_batch, steps=51, extent=(-0.5, 1.5)).loss.sel(t=0.0)
    >>> with DaskExecutor(workers=2) as ex:
    ...     g = ex.landscape(Source(model="mlp", data="digits", checkpoint="a.pt"))
    ...     ds = line(g, None, theta_b, executor=ex, store="runs/ab")
    """
    steps = positive_int("steps", steps, minimum=2)
    require(len(extent) == 2 and float(extent[0]) < float(extent[1]), f"extent must be an increasing pair, got {extent!r}")
    start, (end,) = check_vectors(f, start, [end], 1)
    # t = 0 and t = 1 exactly (refused otherwise), so that the points there are `start` and `end`
    ts = line_axis(float(extent[0]), float(extent[1]), steps)
    settings = {
        "kind": "line",
        "start_fingerprint": f.space.fingerprint(start),
        "end_fingerprint": f.space.fingerprint(end),
        "t": [float(ts[0]), float(ts[-1]), steps],
        **evaluation_settings(f),
        **(settings or {}),
    }
    c = zero_index(ts)
    meta = {
        **provenance(),
        "has_batch_norm": bool(f.has_bn),
        "bn_statistics": BN_STATISTICS[f.bn.value] if f.has_bn else "no batch norm",
        **(attrs or {}),
        "kind": "line", "loss_name": f.loss_name, "bn": f.bn.value, "samples": settings["samples"],
        "data_fingerprint": f.fingerprint, "start_fingerprint": settings["start_fingerprint"],
        "end_fingerprint": settings["end_fingerprint"],
        "distance": float((end - start).norm()),
        "center_index": None if c is None else [c],
        "n_params": f.space.size,
        "settings": settings,
        "fingerprint": fingerprint(settings),
    }
    values = {k: np.full(steps, np.nan) for k in f.keys}
    done = np.zeros(steps, bool)
    block = point_block(f, _LINE_BLOCK)
    run = open_store(store)
    if run is not None and check_store(run, name, settings, replace, "line"):
        values, done = stored_grid(run, name, f.keys)
        meta["resumed_cells"] = int(done.sum())
    elif run is not None:
        run.create_grid(name, grid_dataset({"t": ts}, values, done, meta), chunks={"t": block})

    # A block of points (one chunk of the store) is one task: the unit of progress, of resumption
    # and of scale-out.
    def chunk(i):
        todo = np.flatnonzero(~done[i : i + block]) + i
        return (i, todo), (f, start, end, ts[todo]), len(todo)

    def record(key, result):
        i, todo = key
        region = slice(i, min(i + block, steps))
        for k in f.keys:
            values[k][todo] = result[k]
        done[todo] = True
        if run is not None:
            run.write_cells(name, {k: values[k][region] for k in f.keys}, (region,))

    chunks = [chunk(i) for i in range(0, steps, block) if not done[i : i + block].all()]
    total = int((~done).sum())
    with progress_bar(progress, total, f"line of {steps} points") as advance:
        compute_chunks(chunks, evaluate_line, record, executor, advance)
    meta["n_nonfinite"] = count_nonfinite(values, done)
    ds = grid_dataset({"t": ts}, values, done, meta)
    if run is not None:
        run.update_attrs(name, ds.attrs)
    return ds


def evaluate_line(f: Landscape, start: torch.Tensor, end: torch.Tensor, t) -> dict[str, np.ndarray]:
    """Values of ``f`` at ``(1 - t) * start + t * end`` for each ``t``: one task of :func:`line`.

    Built as ``(1 - t) a + t b`` rather than ``a + t (b - a)``, so that the points at ``t = 0``
    and ``t = 1`` are exactly ``start`` and ``end``. On a worker ``f`` is that process's rebuilt
    Landscape, so the vectors are moved to its device.

    Examples
    --------
    >>> evaluate_line(f, f.origin, f.origin + d, np.array([0.0, 0.5, 1.0]))["loss"]
    array([0.0312, 0.4402, 1.2031])
    """
    dev, dt = f.origin.device, f.origin.dtype
    start, end = start.to(dev, dt), end.to(dev, dt)
    t = torch.as_tensor(np.asarray(t, dtype=float), dtype=dt, device=dev)
    points = torch.outer(1 - t, start) + torch.outer(t, end)
    return {k: v.cpu().numpy() for k, v in f.evaluate(points).items()}

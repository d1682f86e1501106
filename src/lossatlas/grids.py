"""The grid machinery that lines and planes share (Li et al. sections 3-4): axes and their centre
cell, parameter vectors built and evaluated in blocks, the recorded settings of a stored grid,
resuming one, and the independent chunks of a grid run in this process or on an executor.

:mod:`lossatlas.surface` (planes) and :mod:`lossatlas.lines` (lines) are built on it; both
re-export what users call (``center_value``, ``grid_axes``, ...) from ``lossatlas.surface``.
"""

from __future__ import annotations

import contextlib

import math
from concurrent.futures import Executor, as_completed
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np
import torch
import xarray as xr

from ._errors import InputError, StoreMismatchError, require
from .landscape import Landscape
from .store import DONE, RunDir

# Largest block of points materialized at once, in bytes (chunks of rows of a grid).
_POINT_BLOCK_BYTES = 256 * 2**20


# -- grids and their centre ----------------------------------------------------------------

def grid_axis(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` coordinates from ``lo`` to ``hi``, with a coordinate that is 0 up to rounding made 0.

    Examples
    --------
    >>> grid_axis(-1.0, 1.0, 3)
    array([-1.,  0.,  1.])
    """
    a = np.linspace(lo, hi, n)
    # linspace can miss 0 by an ulp; a coordinate that is 0 up to rounding is made exactly 0 so
    # that the centre cell is the center itself.
    i = int(np.argmin(np.abs(a)))
    if abs(a[i]) <= 1e-9 * (hi - lo):
        a[i] = 0.0
    return a


#: The coordinates a line or path grid must hold exactly: the two models (or the centre and the
#: end of the direction) themselves.
LINE_ANCHORS = (0.0, 1.0)

# Searched for the spacing that puts both anchors on the grid (steps - 1 a multiple of it).
_MAX_PERIOD = 100_000


def line_axis(lo: float, hi: float, steps: int) -> np.ndarray:
    """The ``t`` coordinates of a line or path: ``steps`` evenly spaced values from ``lo`` to
    ``hi`` that hold ``t = 0`` and ``t = 1`` exactly wherever they lie in ``[lo, hi]``.

    A line between two models that misses ``t = 0`` or ``t = 1`` never evaluates either model
    (``steps=11`` on ``(-0.5, 1.5)`` samples -0.5, -0.3, ..., 1.5), so such a count is refused
    with the nearest counts that work. Every line (:func:`lossatlas.line`, ``interpolate``) and
    path grid takes its ``t`` from here.

    Raises
    ------
    InputError
        When no point would land on 0 or 1, naming the step counts that would.

    Examples
    --------
    >>> line_axis(-0.5, 1.5, 9)
    array([-0.5 , -0.25,  0.  ,  0.25,  0.5 ,  0.75,  1.  ,  1.25,  1.5 ])
    >>> line_axis(-0.5, 1.5, 11)
    Traceback (most recent call last):
    ...
    lossatlas._errors.InputError: steps=11 on the extent (-0.5, 1.5) puts no point at t = 0 and t = 1 ...
    """
    lo, hi, steps = float(lo), float(hi), int(steps)
    require(math.isfinite(lo) and math.isfinite(hi) and lo < hi, f"extent must be an increasing pair, got ({lo}, {hi})")
    require(steps >= 2, f"steps must be at least 2, got {steps}")
    width = hi - lo
    tol = 1e-9
    # where each anchor inside the extent falls, in units of the extent (0 = lo, 1 = hi)
    where = [(a, (a - lo) / width) for a in LINE_ANCHORS if lo - tol * width <= a <= hi + tol * width]

    def lands(intervals: int) -> bool:
        return all(abs(u * intervals - round(u * intervals)) <= tol * max(1, intervals) for _, u in where)

    if not lands(steps - 1):
        period = next((m for m in range(1, _MAX_PERIOD + 1) if lands(m)), None)
        missed = " and ".join(f"t = {a:g}" for a, _ in where)
        if period is None:
            raise InputError(f"steps={steps} on the extent ({lo:g}, {hi:g}) puts no point at {missed}, and no "
                             f"number of steps would: choose an extent whose ends are whole multiples of a common "
                             f"spacing with 0 and 1, e.g. (-0.5, 1.5)")
        below, above = period * ((steps - 1) // period) + 1, period * (-(-(steps - 1) // period)) + 1
        options = " or ".join(f"steps={n}" for n in sorted({below, above}) if n >= 2)
        raise InputError(f"steps={steps} on the extent ({lo:g}, {hi:g}) puts no point at {missed}, where the line's "
                         f"start and end lie: use {options} (any count with steps - 1 a multiple of {period})")
    ts = np.linspace(lo, hi, steps)
    for a, u in where:
        ts[int(round(u * (steps - 1)))] = a  # exactly, so the point there is exactly that model
    return ts


def grid_axes(span, steps) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates ``(x, y)`` of a plane for ``span`` and ``steps`` (see :func:`lossatlas.plane`).

    Examples
    --------
    >>> grid_axes((-1.0, 2.0, -0.5, 0.5), (4, 3))
    (array([-1.,  0.,  1.,  2.]), array([-0.5,  0. ,  0.5]))
    """
    if isinstance(steps, (int, np.integer)):
        nx = ny = int(steps)
    else:
        require(len(steps) == 2, f"steps must be an int or a pair (nx, ny), got {steps!r}")
        nx, ny = (int(s) for s in steps)
    require(nx >= 2 and ny >= 2, f"steps must be at least 2 along each axis, got {steps!r}")
    check_grid_fits((nx, ny))
    if isinstance(span, (int, float, np.floating, np.integer)):
        require(span > 0, f"span must be positive, got {span}")
        bx = by = (-float(span), float(span))
    else:
        span = [float(s) for s in span]
        if len(span) == 2:
            bx = by = (span[0], span[1])
        elif len(span) == 4:
            bx, by = (span[0], span[1]), (span[2], span[3])
        else:
            raise InputError(f"span must be a number, (min, max) or (xmin, xmax, ymin, ymax), got {span!r}")
        require(all(math.isfinite(s) for s in span), f"span must be finite, got {span!r}")
        require(bx[0] < bx[1] and by[0] < by[1], f"span ranges must be increasing, got {span!r}")
    return grid_axis(*bx, nx), grid_axis(*by, ny)


def check_grid_fits(shape, n_values: int = 4) -> None:
    """Refuse, before any work, a grid whose values (float64 each, a done flag, and the copies of
    the returned dataset: about 100 bytes a cell) would take over half the memory available."""
    need, free = 3.0 * float(np.prod(shape, dtype=float)) * (8 * n_values + 1), free_memory()
    require(need <= free / 2, f"a grid of {' x '.join(map(str, shape))} cells needs about {need / 2**30:.3g} GiB, but "
            f"{free / 2**30:.3g} GiB of memory is available; use fewer steps (or split the span into several grids)")


def free_memory() -> float:
    """Bytes of memory available now (:func:`lossatlas.memory.available_memory`)."""
    from .memory import available_memory

    return float(available_memory())


def zero_index(axis: np.ndarray) -> int | None:
    """Index of the coordinate of ``axis`` that is exactly 0, or None.

    Examples
    --------
    >>> zero_index(grid_axis(-1.0, 1.0, 5)), zero_index(grid_axis(-1.0, 1.0, 4))
    (2, None)
    """
    hits = np.flatnonzero(axis == 0.0)
    return int(hits[0]) if len(hits) else None


def center_index(ds: xr.Dataset) -> tuple[int, ...] | None:
    """Index of the grid cell at the center (every coordinate exactly 0), or None when the grid
    has none (an even number of steps on a symmetric range, or a range without 0).

    Examples
    --------
    >>> center_index(plane(f, steps=5))
    (2, 2)
    """
    if "center_index" in ds.attrs:
        stored = ds.attrs["center_index"]
        return None if stored is None else tuple(int(i) for i in stored)
    dims = [d for d in ("x", "y") if d in ds.dims] or [d for d in ("t",) if d in ds.dims]
    require(bool(dims), "center_index needs a plane (dims x, y) or a line (dim t)")
    idx = [zero_index(np.asarray(ds[d].values, float)) for d in dims]
    return None if any(i is None for i in idx) else tuple(idx)


def center_value(ds: xr.Dataset, var: str = "loss") -> float | None:
    """The value of ``var`` at the grid's centre cell, exactly (no nearest-cell guess), or None
    when the grid has no centre cell. NaN when the centre diverged or is not computed yet.

    Examples
    --------
    >>> center_value(plane(f, steps=5))       # the model's own loss
    0.0312
    >>> center_value(plane(f, steps=4)) is None
    True
    """
    require(var in ds, f"no variable {var!r} in the dataset; it has {sorted(ds.data_vars)}")
    idx = center_index(ds)
    if idx is None:
        return None
    if DONE in ds and not bool(ds[DONE].values[idx]):
        return float("nan")
    return float(ds[var].values[idx])


# -- evaluation ----------------------------------------------------------------------------

def as_tensor(v) -> torch.Tensor:
    """``v`` (a tensor, an array or a sequence) as a tensor."""
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


def check_vectors(f: Landscape, center, dirs, n_dirs: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``center`` (None: ``f.origin``) and ``n_dirs`` vectors ``dirs``, checked against ``f``'s
    parameters and moved to its device and dtype.

    Examples
    --------
    >>> center, (d,) = check_vectors(f, None, [f.origin * 0.1], 1)
    """
    require(isinstance(f, Landscape), f"expected a Landscape, got {type(f).__name__}")
    center = f.origin if center is None else as_tensor(center)
    dirs = [as_tensor(d) for d in dirs]
    f.space.check_vector(center, "center")
    require(len(dirs) == n_dirs, f"expected {n_dirs} directions, got {len(dirs)}")
    for i, d in enumerate(dirs):
        f.space.check_vector(d, f"direction {i}")
    dev, dt = f.origin.device, f.origin.dtype
    return center.to(dev, dt), [d.to(dev, dt) for d in dirs]


def point_block(f: Landscape, limit: int | None = None) -> int:
    """How many parameter vectors of ``f`` fit in one block of at most 256 MiB (capped at ``limit``)."""
    n = max(1, _POINT_BLOCK_BYTES // (f.space.size * f.origin.element_size()))
    return n if limit is None else max(1, min(n, int(limit)))


def evaluate_cells(f: Landscape, center: torch.Tensor, dirs: Sequence[torch.Tensor], coords) -> dict[str, np.ndarray]:
    """Values at ``center + sum_k coords[:, k] * dirs[k]`` for a set of cells.

    Points are built in blocks of at most 256 MiB, never all at once.

    Examples
    --------
    >>> evaluate_cells(f, f.origin, dirs, np.array([[0.0, 0.0], [0.5, -0.5]]))["loss"]
    array([0.0312, 0.9310])
    """
    coords = np.asarray(coords, dtype=float).reshape(len(coords), len(dirs))
    block = point_block(f)
    stacked = torch.stack(list(dirs))
    parts = []
    for i in range(0, len(coords), block):
        c = torch.as_tensor(coords[i : i + block], dtype=center.dtype, device=center.device)
        parts.append(f.evaluate_span(center, stacked, c))
    return {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]}


# -- recorded settings ---------------------------------------------------------------------

def evaluation_settings(f: Landscape) -> dict:
    """The settings of ``f`` that change the values it computes: its data (the exact samples,
    so the evaluation subset and its seed), loss, batch-norm mode and the values computed.

    Examples
    --------
    >>> evaluation_settings(f)["bn"]
    'eval'
    """
    return {
        "data_fingerprint": f.fingerprint,
        "loss": f.loss_name,
        "bn": f.bn.value,
        "values": list(f.keys),
        "samples": {str(k): int(v) for k, v in f.n_samples.items()},
        # re-estimated statistics pooled over the pass, batches weighted by size (issue 19): a
        # store of the old equal-weight estimate lacks the key and is refused, not reused
        **({"bn_statistics": "pooled"} if f.bn.value == "recompute" and getattr(f, "has_bn", False) else {}),
    }


def open_store(store) -> RunDir | None:
    """``store`` as a :class:`RunDir` (a path is opened, created if needed), or None.

    Examples
    --------
    >>> open_store(None) is None
    True
    """
    return store if store is None or isinstance(store, RunDir) else RunDir(store)


def check_store(run: RunDir, name: str, settings: dict, replace: bool, what: str) -> bool:
    """:meth:`RunDir.check`, with a refusal that says which kind of product differs.

    Examples
    --------
    >>> check_store(RunDir("runs/demo"), "line", {"kind": "line"}, False, "line")
    False
    """
    try:
        return run.check(name, settings, replace)
    except StoreMismatchError as err:
        new = StoreMismatchError(f"asked for a different {what}: {err}")
        new.path, new.diffs = getattr(err, "path", None), getattr(err, "diffs", None)
        raise new from None


def rule_text(rule) -> str | list:
    """An ignore rule as recorded in attrs and settings.

    Examples
    --------
    >>> from lossatlas.space import parse_ignore
    >>> rule_text(parse_ignore("biasbn"))
    'biasbn'
    """
    return list(rule) if isinstance(rule, tuple) else rule.value


# -- stored grids --------------------------------------------------------------------------

def stored_grid(run: RunDir, name: str, keys) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The values (``keys``) and the done mask of the grid ``name`` in ``run``, to resume it.

    Examples
    --------
    >>> values, done = stored_grid(RunDir("runs/demo"), "surface", ["loss", "accuracy"])
    """
    old = run.open(name)
    return {k: old[k].values.astype(float) for k in keys}, old[DONE].values.astype(bool)


def count_nonfinite(values: dict[str, np.ndarray], done: np.ndarray) -> int:
    """How many computed cells hold a NaN or infinite loss (any ``*loss`` variable).

    Examples
    --------
    >>> count_nonfinite({"loss": np.array([0.5, np.nan, np.inf])}, np.array([True, True, False]))
    1
    """
    return int(sum((~np.isfinite(v) & done).sum() for k, v in values.items() if k.endswith("loss")))


def directions_array(dirs) -> np.ndarray:
    """Directions as a float32 ``(direction, param)`` array, as stored beside a plane."""
    return torch.stack(list(dirs)).cpu().float().numpy()


def grid_dataset(coords: dict, values, done, meta, dirs=None) -> xr.Dataset:
    """The Dataset of a grid: ``values`` and ``done`` on the dims of ``coords``, ``meta`` as attrs,
    and the directions ``dirs`` (optional) as ``directions(direction, param)``.

    Examples
    --------
    >>> ds = grid_dataset({"t": np.array([0.0, 1.0])}, {"loss": np.zeros(2)}, np.ones(2, bool), {})
    >>> sorted(ds.data_vars)
    ['done', 'loss']
    """
    dims = tuple(coords)
    data = {k: (dims, v.copy()) for k, v in values.items()}
    data[DONE] = (dims, done.copy())
    if dirs is not None:
        data["directions"] = (("direction", "param"), directions_array(dirs))
    ds = xr.Dataset(data, coords=coords, attrs=dict(meta))
    for k in values:
        ds[k].attrs["long_name"] = k.replace("_", " ")
    return ds


# -- independent chunks ---------------------------------------------------------------------

def compute_chunks(
    chunks: Iterable[tuple[Hashable, tuple, int]],
    work: Callable[..., Any],
    record: Callable[[Hashable, Any], None],
    executor: Executor | None,
    advance: Callable[[int], None],
) -> None:
    """Compute independent chunks of a grid, each stored by ``record`` as soon as it arrives.

    Each chunk is ``(key, args, cells)``: ``work(*args)`` computes it, ``record(key, result)``
    stores it and ``advance(cells)`` reports progress. Without an executor the chunks run here,
    in order; with one they are all submitted as tasks and collected as they complete
    (``as_completed``: dynamic scheduling, no static split), so a slow or restarted worker holds
    up no other chunk, and a chunk lost with its worker is retried by the executor.

    Examples
    --------
    >>> out = {}
    >>> compute_chunks([(0, (2,), 1), (1, (3,), 1)], lambda x: x * x, out.__setitem__, None, lambda n: None)
    >>> out
    {0: 4, 1: 9}
    """
    if executor is None:
        for key, args, cells in chunks:
            record(key, work(*args))
            advance(cells)
        return
    # An executor that can (DaskExecutor) sends the tensors all chunks share once for the call.
    with getattr(executor, "submitting", contextlib.nullcontext)():
        futures = {executor.submit(work, *args): (key, cells) for key, args, cells in chunks}
    for fut in as_completed(futures):
        key, cells = futures[fut]
        record(key, fut.result())
        advance(cells)

"""1-D lines and 2-D planes of the loss landscape (Li et al. sections 3-4).

Grids are evaluated block by block from the center and the directions (never as a full
points x params matrix), optionally streamed into a run directory. A stored grid records every
setting that changes its values (``attrs["settings"]``); an interrupted grid resumes with only
its missing cells computed, and a request with other settings is refused
(:class:`~lossatlas.StoreMismatchError`) unless ``replace=True``.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, as_completed
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from ._errors import InputError, StoreMismatchError, positive_int, require
from .landscape import Landscape
from .progress import progress_bar
from .space import make_directions, parse_ignore, parse_norm
from .store import DONE, RunDir, fingerprint, provenance

# Largest block of points materialized at once, in bytes (chunks of rows of a grid).
_POINT_BLOCK_BYTES = 256 * 2**20
# Points of a line evaluated (and stored, and resumed) together.
_LINE_BLOCK = 16

_BN_STATISTICS = {
    "eval": "the running statistics of the Landscape's model at every point (they are not interpolated)",
    "batch": "each evaluation batch's own statistics",
    "recompute": "statistics re-estimated on the training data at every point",
}


# -- grids and their centre ----------------------------------------------------------------

def _axis(lo: float, hi: float, n: int) -> np.ndarray:
    a = np.linspace(lo, hi, n)
    # linspace can miss 0 by an ulp; a coordinate that is 0 up to rounding is made exactly 0 so
    # that the centre cell is the center itself.
    i = int(np.argmin(np.abs(a)))
    if abs(a[i]) <= 1e-9 * (hi - lo):
        a[i] = 0.0
    return a


def grid_axes(span, steps) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates ``(x, y)`` of a plane for ``span`` and ``steps`` (see :func:`plane`).

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
    return _axis(*bx, nx), _axis(*by, ny)


def check_grid_fits(shape, n_values: int = 4) -> None:
    """Refuse, before any work, a grid whose values (float64 each, a done flag, and the copies of
    the returned dataset: about 100 bytes a cell) would take over half the memory available."""
    need, free = 3.0 * float(np.prod(shape, dtype=float)) * (8 * n_values + 1), free_memory()
    require(need <= free / 2, f"a grid of {' x '.join(map(str, shape))} cells needs about {need / 2**30:.3g} GiB, but "
            f"{free / 2**30:.3g} GiB of memory is available; use fewer steps (or split the span into several grids)")


def free_memory() -> float:
    """Bytes of memory available now (inf when psutil is not installed)."""
    try:
        import psutil  # comes with distributed; without it, nothing is refused
    except ImportError:
        return math.inf
    return float(psutil.virtual_memory().available)


def _zero_index(axis: np.ndarray) -> int | None:
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
    idx = [_zero_index(np.asarray(ds[d].values, float)) for d in dims]
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

def _as_tensor(v) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


def _check_inputs(f: Landscape, center, dirs, n_dirs: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    require(isinstance(f, Landscape), f"expected a Landscape, got {type(f).__name__}")
    center = f.origin if center is None else _as_tensor(center)
    dirs = [_as_tensor(d) for d in dirs]
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
    }


def open_store(store) -> RunDir | None:
    """``store`` as a :class:`RunDir` (a path is opened, created if needed), or None."""
    return store if store is None or isinstance(store, RunDir) else RunDir(store)


def check_store(run: RunDir, name: str, settings: dict, replace: bool, what: str) -> bool:
    """:meth:`RunDir.check`, with a refusal that says which kind of product differs."""
    try:
        return run.check(name, settings, replace)
    except StoreMismatchError as err:
        new = StoreMismatchError(f"asked for a different {what}: {err}")
        new.path, new.diffs = getattr(err, "path", None), getattr(err, "diffs", None)
        raise new from None


def rule_text(rule) -> str | list:
    """An ignore rule as recorded in attrs and settings."""
    return list(rule) if isinstance(rule, tuple) else rule.value


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
        base = f.origin if center is None else _as_tensor(center)
        f.space.check_vector(base, "center")
        dirs = make_directions(f.space, base.to(f.origin.device, f.origin.dtype), 2, norm_e, rule, seed)
        how = {"directions": "random", "norm": norm_e.value, "ignore": rule_text(rule), "seed": int(seed)}
    else:
        how = {"directions": "given"}
    center, dirs = _check_inputs(f, center, list(dirs), 2)
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
    ci, cj = _zero_index(xs), _zero_index(ys)
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
        values, done = _stored(run, name, f.keys)
        meta["resumed_cells"] = int(done.sum())
    elif run is not None:
        run.create_grid(name, _dataset({"x": xs, "y": ys}, values, done, meta, kept), chunks={"x": 1, "param": 2**20})
        if kept is not None:
            run.write_variable(name, "directions", _directions_array(kept))

    # One row of the grid is one task: the unit of progress, of resumption and of scale-out.
    tasks = [i for i in range(len(xs)) if not done[i].all()]

    def cells(i):
        pending = [j for j in range(len(ys)) if not done[i, j]]
        return pending, np.array([[xs[i], ys[j]] for j in pending])

    def record(i, pending, result):
        for k in f.keys:
            values[k][i, pending] = result[k]
        done[i, pending] = True
        if run is not None:
            run.write_cells(name, {k: values[k][i : i + 1] for k in f.keys}, (slice(i, i + 1), slice(None)))

    total = int((~done).sum())
    with progress_bar(progress, total, f"plane {shape[0]}x{shape[1]}") as advance:
        if executor is None:
            for i in tasks:
                pending, coords = cells(i)
                record(i, pending, evaluate_cells(f, center, dirs, coords))
                advance(len(pending))
        else:
            futures = {}
            for i in tasks:
                pending, coords = cells(i)
                futures[executor.submit(evaluate_cells, f, center, dirs, coords)] = (i, pending)
            for fut in as_completed(futures):
                i, pending = futures[fut]
                record(i, pending, fut.result())
                advance(len(pending))

    meta["n_nonfinite"] = _nonfinite(values, done)
    ds = _dataset({"x": xs, "y": ys}, values, done, meta, kept)
    if run is not None:
        run.update_attrs(name, ds.attrs)
    return ds


def _stored(run: RunDir, name: str, keys) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The values and done mask of a stored grid, to resume it."""
    old = run.open(name)
    return {k: old[k].values.astype(float) for k in keys}, old[DONE].values.astype(bool)


def _nonfinite(values: dict[str, np.ndarray], done: np.ndarray) -> int:
    return int(sum((~np.isfinite(v) & done).sum() for k, v in values.items() if k.endswith("loss")))


def _directions_array(dirs) -> np.ndarray:
    return torch.stack(list(dirs)).cpu().float().numpy()


def _dataset(coords: dict, values, done, meta, dirs=None) -> xr.Dataset:
    dims = tuple(coords)
    data = {k: (dims, v.copy()) for k, v in values.items()}
    data[DONE] = (dims, done.copy())
    if dirs is not None:
        data["directions"] = (("direction", "param"), _directions_array(dirs))
    ds = xr.Dataset(data, coords=coords, attrs=dict(meta))
    for k in values:
        ds[k].attrs["long_name"] = k.replace("_", " ")
    return ds


# -- lines ---------------------------------------------------------------------------------

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
    attrs: dict | None = None,
    replace: bool = False,
) -> xr.Dataset:
    """The loss along ``(1 - t) * start + t * end`` for ``t`` in ``linspace(*extent, steps)``.

    With ``start`` and ``end`` two minimizers this is the 1-D linear interpolation of Goodfellow
    et al. used by Li et al. (Figs. 2-3); with ``end = start + d`` it is a 1-D slice along ``d``.
    The points at ``t = 0`` and ``t = 1`` are exactly ``start`` and ``end`` (and evaluated as
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

    Returns
    -------
    xarray.Dataset with dim ``t``: ``loss``, ``accuracy`` (and ``test_*``), ``done``.

    Examples
    --------
    >>> line(f, theta_small_batch, theta_large_batch, steps=51, extent=(-0.5, 1.5)).loss.sel(t=0.0)
    """
    steps = positive_int("steps", steps, minimum=2)
    require(len(extent) == 2 and float(extent[0]) < float(extent[1]), f"extent must be an increasing pair, got {extent!r}")
    start, (end,) = _check_inputs(f, start, [end], 1)
    ts = _axis(float(extent[0]), float(extent[1]), steps)
    one = np.flatnonzero(np.abs(ts - 1.0) <= 1e-9 * (ts[-1] - ts[0]))
    ts[one] = 1.0  # t = 1 exactly, so that the point there is exactly `end`
    settings = {
        "kind": "line",
        "start_fingerprint": f.space.fingerprint(start),
        "end_fingerprint": f.space.fingerprint(end),
        "t": [float(ts[0]), float(ts[-1]), steps],
        **evaluation_settings(f),
    }
    c = _zero_index(ts)
    meta = {
        **provenance(),
        "has_batch_norm": bool(f.has_bn),
        "bn_statistics": _BN_STATISTICS[f.bn.value] if f.has_bn else "no batch norm",
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
        values, done = _stored(run, name, f.keys)
        meta["resumed_cells"] = int(done.sum())
    elif run is not None:
        run.create_grid(name, _dataset({"t": ts}, values, done, meta), chunks={"t": block})

    total = int((~done).sum())
    with progress_bar(progress, total, f"line of {steps} points") as advance:
        for i in range(0, steps, block):
            todo = np.flatnonzero(~done[i : i + block]) + i
            if not len(todo):
                continue
            t = torch.as_tensor(ts[todo], dtype=start.dtype, device=start.device)
            # (1 - t) a + t b rather than a + t (b - a): exact at both ends.
            points = torch.outer(1 - t, start) + torch.outer(t, end)
            result = f.evaluate(points)
            for k in f.keys:
                values[k][todo] = result[k].cpu().numpy()
            done[todo] = True
            if run is not None:
                region = slice(i, min(i + block, steps))
                run.write_cells(name, {k: values[k][region] for k in f.keys}, (region,))
            advance(len(todo))
    meta["n_nonfinite"] = _nonfinite(values, done)
    ds = _dataset({"t": ts}, values, done, meta)
    if run is not None:
        run.update_attrs(name, ds.attrs)
    return ds

"""1-D lines and 2-D planes of the loss landscape (Li et al. sections 3-4).

Grids are evaluated row by row from the center and the directions (never as a full
points x params matrix), optionally streamed into a run directory where an interrupted plane
resumes with only its missing cells computed.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import Executor, as_completed
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from ._errors import InputError, StoreMismatchError, require
from .landscape import Landscape
from .space import Norm, make_directions, parse_ignore, parse_norm
from .store import DONE, RunDir, provenance, read_attr

# Largest block of points materialized at once, in bytes (chunks of rows of a grid).
_POINT_BLOCK_BYTES = 256 * 2**20


def _coords(span, steps) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(steps, (int, np.integer)):
        nx = ny = int(steps)
    else:
        require(len(steps) == 2, f"steps must be an int or a pair (nx, ny), got {steps!r}")
        nx, ny = (int(s) for s in steps)
    require(nx >= 2 and ny >= 2, f"steps must be at least 2 along each axis, got {steps!r}")
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
        require(bx[0] < bx[1] and by[0] < by[1], f"span ranges must be increasing, got {span!r}")
    return np.linspace(*bx, nx), np.linspace(*by, ny)


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:16]


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


def _evaluate_cells(f: Landscape, center, dirs, coords: np.ndarray) -> dict[str, np.ndarray]:
    """Values at ``center + sum_k coords[:, k] * dirs[k]`` for a set of cells.

    Points are built in blocks of at most ``_POINT_BLOCK_BYTES``, never all at once.
    """
    block = max(1, _POINT_BLOCK_BYTES // (f.space.size * center.element_size()))
    stacked = torch.stack(dirs)
    parts = []
    for i in range(0, len(coords), block):
        c = torch.as_tensor(coords[i : i + block], dtype=center.dtype, device=center.device)
        parts.append(f.evaluate_span(center, stacked, c))
    return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}


def _progress(progress, total: int, description: str):
    """A context that yields ``advance(n)``: a rich bar, a user callback, or nothing."""
    import contextlib

    if progress is True:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        @contextlib.contextmanager
        def bar():
            with Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), transient=False,
            ) as p:
                task = p.add_task(description, total=total)
                yield lambda n: p.advance(task, n)

        return bar()
    if callable(progress):
        state = {"done": 0}

        def advance(n):
            state["done"] += n
            progress(state["done"], total)

        return contextlib.nullcontext(advance)
    return contextlib.nullcontext(lambda n: None)


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
) -> xr.Dataset:
    """The loss on a 2-D grid: ``loss[i, j]`` at ``center + x[i]*dirs[0] + y[j]*dirs[1]``.

    Parameters
    ----------
    f : Landscape
    center : Tensor, optional
        Default ``f.origin`` (the model's parameters).
    dirs : two 1-D tensors, optional
        Default: two random directions drawn with ``norm``, ``ignore`` and ``seed``.
    span : float, (min, max) or (xmin, xmax, ymin, ymax)
        ``x = linspace(-span, span, steps)``; the same for ``y``.
    steps : int or (nx, ny)
    store : RunDir or path, optional
        Stream the grid into ``store/name.zarr``; an interrupted plane resumes there.
    progress : bool or callable(done, total)
    executor : concurrent.futures.Executor, optional
        Rows are submitted as independent tasks (e.g. a Dask cluster's executor).
    attrs : dict, optional
        Extra attrs to record (e.g. the direction settings of user-given directions).

    Returns
    -------
    xarray.Dataset with dims ``("x", "y")``: ``loss``, ``accuracy`` (classification),
    ``test_loss``/``test_accuracy`` (with test data), ``done``; optionally ``direction``
    (direction, param).

    Examples
    --------
    >>> f = Landscape(model, (X, y))
    >>> ds = plane(f, span=1.0, steps=31, seed=0)
    >>> ds.loss.sel(x=0, y=0)
    """
    xs, ys = _coords(span, steps)
    norm_e = parse_norm(norm)
    rule = parse_ignore(ignore)
    if dirs is None:
        base = f.origin if center is None else center
        f.space.check_vector(base, "center")
        dirs = make_directions(f.space, base.to(f.origin.device, f.origin.dtype), 2, norm_e, rule, seed)
        how = {"directions": "random", "norm": norm_e.value, "ignore": _rule_text(rule), "seed": int(seed)}
    else:
        how = {"directions": "given"}
    center, dirs = _check_inputs(f, center, list(dirs), 2)
    how.update(attrs or {})
    meta = {
        **provenance(),
        **how,
        "kind": "plane",
        "loss_name": f.loss_name,
        "bn": f.bn.value,
        "samples": json_dict(f.n_samples),
        "data_fingerprint": f.fingerprint,
        "center_fingerprint": f.space.fingerprint(center),
        "direction_fingerprints": [f.space.fingerprint(d) for d in dirs],
        "direction_norms": [float(d.norm()) for d in dirs],
        "direction_cosine": float(torch.dot(dirs[0].double(), dirs[1].double()) / (dirs[0].double().norm() * dirs[1].double().norm())),
        "n_params": f.space.size,
    }
    meta["fingerprint"] = _hash(meta["data_fingerprint"], meta["center_fingerprint"], meta["direction_fingerprints"], xs, ys, f.keys)

    shape = (len(xs), len(ys))
    values = {k: np.full(shape, np.nan) for k in f.keys}
    done = np.zeros(shape, bool)
    run = RunDir(store) if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__") else store
    if run is not None and run.exists(name):
        old = run.open(name, load=False)
        if read_attr(old, "fingerprint") != meta["fingerprint"]:
            raise StoreMismatchError(
                f"{run.zarr_path(name)} holds a different plane (other model, data, directions or grid); "
                "choose another output directory, delete it to start over, or pass --replace (CLI)"
            )
        done = old[DONE].values.astype(bool)
        for k in f.keys:
            values[k] = old[k].values.astype(float)
        meta["resumed_cells"] = int(done.sum())
    elif run is not None:
        template = _dataset(xs, ys, values, done, meta, dirs if save_directions else None, f)
        run.create_grid(name, template, chunks={"x": 1, "param": 2**20})
        if save_directions:
            _write_directions(run, name, dirs)

    # One row of the grid is one task: the unit of progress, of resumption and of scale-out.
    tasks = [[i] for i in range(len(xs)) if not done[i].all()]

    def cells(rows):
        pending = [(i, j) for i in rows for j in range(len(ys)) if not done[i, j]]
        return pending, np.array([[xs[i], ys[j]] for i, j in pending])

    def record(rows, pending, result):
        for n, (i, j) in enumerate(pending):
            for k in f.keys:
                values[k][i, j] = result[k][n]
            done[i, j] = True
        if run is not None:
            for i in rows:
                part = {k: values[k][i : i + 1] for k in f.keys}
                run.write_cells(name, part, (slice(i, i + 1), slice(None)))

    total = int((~done).sum())
    with _progress(progress, total, f"plane {shape[0]}x{shape[1]}") as advance:
        if executor is None:
            for rows in tasks:
                pending, coords = cells(rows)
                record(rows, pending, _evaluate_cells(f, center, dirs, coords))
                advance(len(pending))
        else:
            futures = {}
            for rows in tasks:
                pending, coords = cells(rows)
                futures[executor.submit(_evaluate_cells, f, center, dirs, coords)] = (rows, pending)
            for fut in as_completed(futures):
                rows, pending = futures[fut]
                record(rows, pending, fut.result())
                advance(len(pending))

    meta["n_nonfinite"] = int(sum((~np.isfinite(values[k]) & done).sum() for k in f.keys if k.endswith("loss")))
    ds = _dataset(xs, ys, values, done, meta, dirs if save_directions else None, f)
    if run is not None:
        _write_final_attrs(run, name, ds.attrs)
    return ds


def _rule_text(rule) -> str | list:
    return list(rule) if isinstance(rule, tuple) else rule.value


def json_dict(d: dict) -> dict:
    return {str(k): int(v) for k, v in d.items()}


def _dataset(xs, ys, values, done, meta, dirs, f: Landscape) -> xr.Dataset:
    data = {k: (("x", "y"), v) for k, v in values.items()}
    data[DONE] = (("x", "y"), done.copy())
    if dirs is not None:
        data["directions"] = (("direction", "param"), torch.stack(dirs).cpu().float().numpy())
    ds = xr.Dataset(data, coords={"x": xs, "y": ys}, attrs=dict(meta))
    for k in values:
        ds[k].attrs["long_name"] = k.replace("_", " ")
    return ds


def _write_directions(run: RunDir, name: str, dirs) -> None:
    arr = torch.stack(dirs).cpu().float().numpy()
    import zarr

    zarr.open_group(str(run.zarr_path(name)), mode="r+")["directions"][...] = arr


def _write_final_attrs(run: RunDir, name: str, attrs: dict) -> None:
    import zarr

    from .store import _clean_attrs

    group = zarr.open_group(str(run.zarr_path(name)), mode="r+")
    group.attrs.update(_clean_attrs(xr.Dataset(attrs=attrs)).attrs)


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
) -> xr.Dataset:
    """The loss along ``start + t * (end - start)`` for ``t`` in ``linspace(*extent, steps)``.

    With ``start`` and ``end`` two minimizers this is the 1-D linear interpolation of Goodfellow
    et al. used by Li et al. (Fig. 2); with ``end = start + d`` it is a 1-D slice along ``d``.

    Examples
    --------
    >>> ds = line(f, theta_small_batch, theta_large_batch, steps=51, extent=(-0.5, 1.5))
    >>> ds.loss.sel(t=0.0)
    """
    require(isinstance(steps, (int, np.integer)) and steps >= 2, f"steps must be an integer >= 2, got {steps!r}")
    require(len(extent) == 2 and extent[0] < extent[1], f"extent must be an increasing pair, got {extent!r}")
    start = f.origin if start is None else start
    start, (end,) = _check_inputs(f, start, [end], 1)
    ts = np.linspace(float(extent[0]), float(extent[1]), int(steps))
    delta = end - start
    meta = {
        **provenance(),
        **(attrs or {}),
        "kind": "line",
        "loss_name": f.loss_name,
        "bn": f.bn.value,
        "data_fingerprint": f.fingerprint,
        "start_fingerprint": f.space.fingerprint(start),
        "end_fingerprint": f.space.fingerprint(end),
        "distance": float(delta.norm()),
        "n_params": f.space.size,
    }
    values = {k: np.full(len(ts), np.nan) for k in f.keys}
    block = 16
    with _progress(progress, len(ts), "line") as advance:
        for i in range(0, len(ts), block):
            coords = ts[i : i + block, None]
            result = _evaluate_cells(f, start, [delta], coords)
            for k in f.keys:
                values[k][i : i + len(coords)] = result[k]
            advance(len(coords))
    meta["n_nonfinite"] = int(sum((~np.isfinite(values[k])).sum() for k in f.keys if k.endswith("loss")))
    ds = xr.Dataset({k: (("t",), v) for k, v in values.items()}, coords={"t": ts}, attrs=meta)
    if store is not None:
        run = RunDir(store) if not isinstance(store, RunDir) else store
        run.save(name, ds)
    return ds

"""Sampling around a minimum: jump and retrain (Horoi et al.), grid and naive sampling.

Jump and retrain (J&R): for each seed draw one filter-normalized random direction ``v``; for each
step size ``c`` jump to ``theta_0 + c * v`` and retrain from there, recording the weights and
losses at the jump (epoch 0) and after every epoch. The low-loss regions that training actually
traverses are sampled this way. Grid sampling (a 3-D grid on three random directions) and naive
sampling (random directions times step sizes) are the static baselines of Horoi et al. Table 1.

Every sampler records the settings that change its values in ``attrs["settings"]``; a store
holding other settings is refused (:class:`~lossatlas.StoreMismatchError`) unless
``replace=True``, and an interrupted sampler resumes where it stopped. With a store, weights go to
disk block by block: no (points x params) matrix is ever held in memory.
"""

from __future__ import annotations

import copy
import enum
from concurrent.futures import Executor, as_completed
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ._errors import parse_enum, positive_int, require
from .landscape import Landscape
from .progress import progress_bar
from .space import ParamSpace, gaussian, make_directions, normalize_direction, parse_ignore, parse_norm
from .static_sampling import TIES, grid_points, sampler_directions, sampler_seeds
from .store import DONE, RunDir, fingerprint, provenance, read_attr
from .surface import check_store, evaluate_cells, evaluation_settings, free_memory, open_store, point_block, rule_text
from .training import TrainConfig, as_train_data, resolve_device, train


class JumpEnsemble(str, enum.Enum):
    """How the runs of one J&R set train."""

    SEQUENTIAL = "sequential"  # run by run (each an executor task when one is given)
    VMAP = "vmap"  # all runs as one vmapped ensemble


def _jump_directions(space: ParamSpace, theta: torch.Tensor, seeds, norm, ignore) -> list[torch.Tensor]:
    # Direction of seed s is the first direction of make_directions(seed=s): the same for every
    # step size of that seed, and the same as random_directions(model, n=1, seed=s).
    return [make_directions(space, theta, 1, norm, ignore, int(s))[0] for s in seeds]


def _retrain_one(model, theta0, direction, step: float, data, test, cfg: dict, seed: int, coords: dict, store,
                 name: str, device) -> xr.Dataset:
    """One J&R run: a copy of ``model`` at ``theta0 + step * direction``, retrained. Module-level
    so it pickles; the jump is made here so that a task carries the centre and the directions
    (each shared by many runs, sent once to a cluster) rather than a vector per run."""
    m = copy.deepcopy(model)
    ParamSpace(m).assign(m, theta0 + step * direction)
    run = train(m, data, seed=seed, test=test, store=store, name=name, run_coords=coords, device=device, **cfg)
    return run.trajectory.load() if store is None else None


def _retrain_together(model, theta0, directions, steps, data, test, cfg: dict, seeds, coords: dict, store, name: str,
                      device) -> xr.Dataset:
    """All J&R runs as one vmapped ensemble: member ``r`` starts at ``theta0 + steps[r] *
    directions[r]`` with training seed ``seeds[r]``, as it would alone. Returns the runs' points
    run by run (the ensemble records them epoch by epoch)."""
    members = []
    for d, c in zip(directions, steps):
        m = copy.deepcopy(model)
        ParamSpace(m).assign(m, theta0 + c * d)
        members.append(m)
    run = train(members, data, seed=list(seeds), test=test, store=store, name=name, run_coords=coords,
                device=device, ensemble="vmap", **cfg)
    t = run.trajectory
    order = np.lexsort((t["epoch"].values, t["run"].values))
    return t.isel(point=order)


def jump_retrain(
    model: nn.Module,
    data,
    seeds: Sequence[int] = range(4),
    step_sizes: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    epochs: int = 40,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    momentum: float = 0.9,
    *,
    norm: str = "filter",
    ignore="biasbn",
    test=None,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    store: RunDir | str | None = None,
    name: str = "jump",
    executor: Executor | None = None,
    progress: bool | Callable = False,
    train_seed: int = 0,
    replace: bool = False,
    device=None,
    ensemble: str = "sequential",
    **train_options,
) -> xr.Dataset:
    """Jump-and-retrain sampling around ``model``'s parameters (Horoi et al. section 3.1).

    Parameters
    ----------
    model : nn.Module
        At a minimum; it is not changed (runs train copies).
    data : (X, y) tensors, a DataLoader or lossatlas.data.Data
        The original training set (a ``Data`` brings its test split and augmentation; a
        DataLoader is read once, as :func:`lossatlas.train` reads it).
    seeds : ints
        One random direction per seed, shared by all step sizes of that seed.
    step_sizes : floats
        Jump lengths in units of the filter-normalized direction.
    epochs : int
        Retraining epochs per run; each run records ``epochs + 1`` points (epoch 0 is the jump).
    optimizer, lr, momentum, batch_size, weight_decay, **train_options
        As :func:`lossatlas.train`.
    norm, ignore
        Direction normalization (default Li et al.'s filter normalization, biases and BN zeroed).
    store : RunDir or path, optional
        Runs stream to ``store/NAME.runs/`` (each resumable), then gather into ``NAME.zarr``. A
        store made with other settings (centre, data, seeds, step sizes, direction rules,
        training settings, train seed) raises :class:`~lossatlas.StoreMismatchError`.
    replace : bool
        Delete a store of other settings (and its unfinished runs) and compute afresh.
    executor : concurrent.futures.Executor, optional
        Runs are independent tasks (e.g. a Dask cluster's executor); give ``store`` with it.
    train_seed : int
        Base seed of the runs' data order and augmentation (run ``r`` uses ``train_seed + r``).
    device : torch.device or str, optional
        Where the runs train (``"auto"``: CUDA when available); default the model's device. The
        directions are drawn there too.
    ensemble : {"sequential", "vmap"}
        ``"vmap"`` trains all runs at once as one vmapped ensemble (one task; each member with its
        own seed, the same update as alone up to float rounding): 2x faster for a small MLP on a
        CPU (measured, 16 runs), more on a GPU. ``"sequential"`` trains run by run, each an
        executor task when one is given.

    Returns
    -------
    xarray.Dataset with ``weights`` (point, param), ``loss``, ``accuracy`` (and ``test_*``),
    coords ``seed``, ``step_size``, ``epoch``, ``run``; ``attrs["train"]`` the training settings.

    Examples
    --------
    >>> samples = jump_retrain(model, (X, y), seeds=range(4), step_sizes=(0.25, 0.5, 0.75, 1.0),
    ...                        epochs=40, optimizer="sgd", lr=1e-3, momentum=0.9)
    >>> samples.sel(point=samples.epoch == 0)   # the 16 jump points
    """
    seeds = [int(s) for s in seeds]
    step_sizes = [float(c) for c in step_sizes]
    require(bool(seeds) and bool(step_sizes), "give at least one seed and one step size")
    require(len(set(seeds)) == len(seeds), f"seeds must be distinct, got {seeds}")
    require(all(c > 0 for c in step_sizes), f"step sizes must be positive, got {step_sizes}")
    cfg = dict(optimizer=optimizer, lr=lr, momentum=momentum, epochs=int(epochs), batch_size=batch_size,
               weight_decay=weight_decay, **train_options)
    tc = TrainConfig(**cfg).validate()  # bad settings fail here, before any run starts
    full = tc.as_dict()
    full.pop("seed", None)  # each run's seed is train_seed + r, recorded as train_seed
    norm_e, rule = parse_norm(norm), parse_ignore(ignore)
    td = as_train_data(data, test)
    dev = resolve_device(device, [model])
    space = ParamSpace(model)
    theta0 = space.vector(model).to(dev)
    space.check_vector(theta0, "model's parameter vector")
    runs = [(si, ci) for si in range(len(seeds)) for ci in range(len(step_sizes))]
    mode = parse_enum(JumpEnsemble, ensemble, "ensemble").value
    run_dir = open_store(store)
    require(executor is None or run_dir is not None, "with an executor, give store= so that runs write their results")

    settings = {
        "kind": "jump_retrain",
        "center_fingerprint": space.fingerprint(theta0),
        # Retraining starts from the model's buffers (batch-norm statistics) too.
        "buffers_fingerprint": fingerprint({k: b for k, b in model.named_buffers()}),
        "data": td.settings(tc.augment),
        "seeds": seeds,
        "step_sizes": step_sizes,
        "norm": norm_e.value,
        "ignore": rule_text(rule),
        "train": full,
        "train_seed": int(train_seed),
        "device": dev.type,  # the runs train there, and their random directions are drawn there
    }
    if mode != JumpEnsemble.SEQUENTIAL.value:  # (absent from stores made before the option existed)
        settings["ensemble"] = mode  # vmapped runs agree with sequential ones only up to float rounding
    attrs = {
        **provenance(),
        "kind": "jump",
        "sampling": "jump_retrain",
        "seeds": seeds,
        "step_sizes": step_sizes,
        "norm": norm_e.value,
        "ignore": rule_text(rule),
        "center_fingerprint": settings["center_fingerprint"],
        "train": full,
        "train_seed": int(train_seed),
        "n_params": space.size,
        "settings": settings,
    }
    scratch = f"{name}.runs"
    if run_dir is not None:
        if check_store(run_dir, name, settings, replace, "jump_retrain"):
            if read_attr(run_dir.open(name, load=False), "complete"):
                return run_dir.open(name, load=False)
        else:
            # Runs left without a record of their settings cannot be trusted to match: start over.
            run_dir.remove(scratch)
            # A marker with the settings, so that an interrupted set of runs is resumed only
            # with the same settings; the gathered runs replace it at the end.
            run_dir.save(name, xr.Dataset(attrs={**attrs, "complete": False}))
    dirs = _jump_directions(space, theta0, seeds, norm_e, rule)

    def task(r):
        si, ci = runs[r]
        coords = {"seed": [seeds[si]], "step_size": [step_sizes[ci]], "run": [r]}
        return (model, theta0, dirs[si], step_sizes[ci], data, test, cfg, int(train_seed) + r, coords, run_dir,
                f"{scratch}/run-{r:04d}", dev)

    parts: list[xr.Dataset] = []
    if mode == JumpEnsemble.VMAP.value:
        together = f"{scratch}/ensemble"
        coords = {"seed": [seeds[si] for si, _ in runs], "step_size": [step_sizes[ci] for _, ci in runs],
                  "run": list(range(len(runs)))}
        args = (model, theta0, [dirs[si] for si, _ in runs], [step_sizes[ci] for _, ci in runs], data, test,
                {**cfg, "progress": progress if executor is None else False},
                [int(train_seed) + r for r in range(len(runs))], coords, run_dir, together, dev)
        ds = _retrain_together(*args) if executor is None else executor.submit(_retrain_together, *args).result()
        if run_dir is None:
            ds = ds.load()
        else:  # reopened from the store: the executor's copy lives on a worker
            ds = run_dir.open(together, load=False)
            # reordered run by run, so the ensemble's chunking (one epoch of all runs) goes
            ds = ds.isel(point=np.lexsort((ds["epoch"].values, ds["run"].values))).drop_encoding()
    else:
        with progress_bar(progress, len(runs), f"jump & retrain: {len(runs)} runs") as advance:
            if executor is None:
                for r in range(len(runs)):
                    out = _retrain_one(*task(r))
                    if out is not None:
                        parts.append(out)
                    advance(1)
            else:
                # Runs finish in any order (dynamic scheduling); each wrote its own store.
                for fut in as_completed([executor.submit(_retrain_one, *task(r)) for r in range(len(runs))]):
                    fut.result()
                    advance(1)
        if run_dir is not None:
            parts = [run_dir.open(f"{scratch}/run-{r:04d}", load=False) for r in range(len(runs))]
        ds = xr.concat(parts, dim="point", data_vars="minimal", coords="minimal", compat="override", join="override")
    ds.attrs = attrs
    if run_dir is None:
        return ds
    out = ds.chunk({"point": int(epochs) + 1})  # streamed from the runs' stores, run by run
    out.attrs["complete"] = True
    run_dir.save(name, out)
    run_dir.remove(scratch)  # the runs now live in NAME.zarr
    return run_dir.open(name, load=False)


# -- static baselines ----------------------------------------------------------------------

def _static_samples(f: Landscape, center, blocks, n: int, attrs: dict, settings: dict, coord_vars: dict,
                    store, name: str, progress, replace: bool, chunk: int, span: bool) -> xr.Dataset:
    """Evaluate the points of ``blocks`` (``(first point, coords [k, m], m directions)``) and keep
    their weights: in memory without a store, else written block by block into ``name.zarr``.
    ``span``: evaluate through :func:`evaluate_cells` (first-layer tables, worth it when many
    blocks share their directions) rather than point by point."""
    run = open_store(store)
    attrs = {**attrs, "settings": settings}
    values = {k: np.full(n, np.nan) for k in f.keys}
    done = np.zeros(n, bool)
    weights = None
    if run is not None and check_store(run, name, settings, replace, attrs["sampling"] + " sampling"):
        done = run.done_mask(name)
        if done.all():
            return run.open(name, load=False)
    elif run is not None:
        # The layout only: a lazy (dask) array stands for the weights, nothing of their size is made
        # (the store's grid layout chunks through dask anyway; a NumPy stand-in would be copied).
        import dask.array as da

        empty = da.full((n, f.space.size), np.nan, dtype=np.float32, chunks=(chunk, 2**20))
        data = {"weights": (("point", "param"), empty), DONE: (("point",), done)}
        data.update({k: (("point",), v) for k, v in values.items()})
        coords = {k: (("point",), np.asarray(v)) for k, v in coord_vars.items()}
        run.create_grid(name, xr.Dataset(data, coords=coords, attrs=attrs), chunks={"point": chunk, "param": 2**20})
        for k, v in coord_vars.items():  # the layout writes index coords only
            run.write_variable(name, k, np.asarray(v))
    else:
        weights = np.empty((n, f.space.size), np.float32)
    with progress_bar(progress, int((~done).sum()), f"{attrs['sampling']} sampling: {n} points") as advance:
        for i, c, dirs in blocks:
            k = len(c)
            if done[i : i + k].all():
                continue
            ct = torch.as_tensor(c, dtype=center.dtype, device=center.device)
            points = center.unsqueeze(0) + ct @ torch.stack(list(dirs))
            if span:
                out = evaluate_cells(f, center, dirs, c)
            else:
                out = {key: v.cpu().numpy() for key, v in f.evaluate(points).items()}
            w = points.cpu().float().numpy()
            if run is None:
                weights[i : i + k] = w
                for key in f.keys:
                    values[key][i : i + k] = out[key]
            else:
                run.write_cells(name, {"weights": w, **out}, (slice(i, i + k),))
            done[i : i + k] = True
            advance(k)
    if run is not None:
        run.update_attrs(name, attrs)
        return run.open(name, load=False)
    data = {"weights": (("point", "param"), weights)}
    data.update({k: (("point",), v) for k, v in values.items()})
    return xr.Dataset(data, coords={k: (("point",), v) for k, v in coord_vars.items()}, attrs=attrs)


def _check_in_memory(f: Landscape, n: int, store) -> None:
    """Without a store every sampled point's weights are held in memory: refuse, before any work,
    a sampling whose weights would take over half the memory available."""
    need, free = 4.0 * n * f.space.size, free_memory()
    require(store is not None or need <= free / 2, f"{n} sampled points of {f.space.size} parameters need about "
            f"{need / 2**30:.3g} GiB of weights in memory, but {free / 2**30:.3g} GiB is available; give store= to "
            "stream them to disk, or sample fewer points")


def _prepare_center(f: Landscape, center) -> torch.Tensor:
    require(isinstance(f, Landscape), f"expected a Landscape, got {type(f).__name__}")
    center = f.origin if center is None else torch.as_tensor(center)
    f.space.check_vector(center, "center")
    return center.to(f.origin.device, f.origin.dtype)


def grid_sample(
    f: Landscape,
    n_points: int = 640,
    span: float = 1.0,
    *,
    center: torch.Tensor | None = None,
    norm: str = "filter",
    ignore="biasbn",
    seed: int = 0,
    store: RunDir | str | None = None,
    name: str = "grid",
    progress: bool | Callable = False,
    replace: bool = False,
) -> xr.Dataset:
    """Grid sampling (Horoi et al. 2022): a 3-D grid on three random directions around the minimum.

    The grid has ``m`` points per axis on ``[-span, span]`` with ``m`` the smallest odd number
    such that ``m**3 - 1 >= n_points``; the ``n_points`` grid points nearest the center (by
    Chebyshev, then Euclidean distance, excluding the center itself, as the paper does) are
    evaluated, so the count matches a J&R set exactly while the points stay on the grid.
    Equidistant points are taken in mirror pairs through the center, the pairs in an order drawn
    from ``seed`` (:func:`~lossatlas.static_sampling.grid_points`): no side of an axis is
    favoured. The three axes come from the grid's own stream of ``seed``
    (:func:`~lossatlas.static_sampling.sampler_directions`), never J&R's or naive sampling's
    directions of the same seed.

    With ``store``, the weights stream into ``store/name.zarr`` block by block (never all in
    memory), an interrupted sampling resumes, and a store of other settings is refused unless
    ``replace=True``.

    Examples
    --------
    >>> g = grid_sample(f, n_points=640, span=1.0, seed=0)
    """
    n_points = positive_int("n_points", n_points)
    require(span > 0, f"span must be positive, got {span}")
    _check_in_memory(f, n_points, store)
    norm_e, rule = parse_norm(norm), parse_ignore(ignore)
    center = _prepare_center(f, center)
    coords, m = grid_points(n_points, span, seed)
    settings = {"kind": "grid", "center_fingerprint": f.space.fingerprint(center), "n_points": n_points,
                "span": float(span), "seed": int(seed), "norm": norm_e.value, "ignore": rule_text(rule),
                "directions": "the grid's own stream of seed", "ties": TIES,
                "device": center.device.type, **evaluation_settings(f)}
    attrs = {**provenance(), "kind": "samples", "sampling": "grid", "span": float(span), "per_axis": m, "seed": int(seed),
             "norm": norm_e.value, "ignore": rule_text(rule), "center_fingerprint": settings["center_fingerprint"]}
    cv = {"gx": coords[:, 0], "gy": coords[:, 1], "gz": coords[:, 2],
          "step_size": np.abs(coords).max(1), "epoch": np.zeros(len(coords), int)}
    block = point_block(f, 32)

    def blocks() -> Iterator:
        dirs = sampler_directions(f.space, center, "grid", 3, norm_e, rule, seed)
        for i in range(0, len(coords), block):
            yield i, coords[i : i + block], dirs

    return _static_samples(f, center, blocks(), len(coords), attrs, settings, cv, store, name, progress, replace,
                           block, span=True)


def naive_sample(
    f: Landscape,
    n_points: int = 640,
    step_sizes: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    *,
    center: torch.Tensor | None = None,
    norm: str = "filter",
    ignore="biasbn",
    seed: int = 0,
    store: RunDir | str | None = None,
    name: str = "naive",
    progress: bool | Callable = False,
    replace: bool = False,
) -> xr.Dataset:
    """Naive sampling (Horoi et al. 2022): ``theta_0 + c * theta_i`` for random directions ``theta_i``.

    ``n_points / len(step_sizes)`` filter-normalized directions, each at every step size, drawn
    from naive sampling's own stream of ``seed`` (:func:`~lossatlas.static_sampling.sampler_directions`:
    never J&R's or the grid's directions of the same seed). With
    ``store``, the weights stream into ``store/name.zarr`` one direction at a time, an
    interrupted sampling resumes, and a store of other settings is refused unless
    ``replace=True``.

    Examples
    --------
    >>> s = naive_sample(f, n_points=640, step_sizes=(0.25, 0.5, 0.75, 1.0), seed=0)
    """
    step_sizes = [float(c) for c in step_sizes]
    n_points = positive_int("n_points", n_points)
    require(bool(step_sizes) and all(c > 0 for c in step_sizes), f"step sizes must be positive, got {step_sizes}")
    require(n_points % len(step_sizes) == 0,
            f"n_points={n_points} is not a multiple of the {len(step_sizes)} step sizes")
    _check_in_memory(f, n_points, store)
    norm_e, rule = parse_norm(norm), parse_ignore(ignore)
    center = _prepare_center(f, center)
    n_dirs = n_points // len(step_sizes)
    direction = np.repeat(np.arange(n_dirs), len(step_sizes))
    steps = np.tile(step_sizes, n_dirs)
    seeds = sampler_seeds(int(seed), "naive", n_dirs)  # naive sampling's own stream of `seed`

    def blocks() -> Iterator:  # one direction at a time: never n_dirs x params in memory
        for k, s in enumerate(seeds):
            d = normalize_direction(f.space, gaussian(f.space.size, s, center.dtype, center.device), center, norm_e, rule)
            yield k * len(step_sizes), np.asarray(step_sizes)[:, None], [d]

    settings = {"kind": "naive", "center_fingerprint": f.space.fingerprint(center), "n_points": n_points,
                "step_sizes": step_sizes, "seed": int(seed), "norm": norm_e.value, "ignore": rule_text(rule),
                "directions": "naive sampling's own stream of seed", "device": center.device.type,
                **evaluation_settings(f)}
    attrs = {**provenance(), "kind": "samples", "sampling": "naive", "seed": int(seed), "step_sizes": step_sizes,
             "norm": norm_e.value, "ignore": rule_text(rule), "center_fingerprint": settings["center_fingerprint"]}
    cv = {"direction": direction, "step_size": steps, "epoch": np.zeros(n_points, int)}
    # Each direction serves only len(step_sizes) points: too few for first-layer tables, which are
    # set up and checked per direction, to pay (measured: the tables cost more than they saved).
    return _static_samples(f, center, blocks(), n_points, attrs, settings, cv, store, name, progress, replace,
                           len(step_sizes), span=False)

"""Sampling around a minimum: jump and retrain (Horoi et al.), grid and naive sampling.

Jump and retrain (J&R): for each seed draw one filter-normalized random direction ``v``; for each
step size ``c`` jump to ``theta_0 + c * v`` and retrain from there, recording the weights and
losses at the jump (epoch 0) and after every epoch. The low-loss regions that training actually
traverses are sampled this way. Grid sampling (a 3-D grid on three random directions) and naive
sampling (random directions times step sizes) are the static baselines of Horoi et al. Table 1.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from concurrent.futures import Executor
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ._errors import InputError, require
from .landscape import Landscape
from .space import ParamSpace, direction_seeds, gaussian, make_directions, normalize_direction, parse_ignore, parse_norm
from .store import RunDir, provenance
from .surface import _progress
from .train import TrainConfig, as_train_data, train


def _jump_directions(space: ParamSpace, theta: torch.Tensor, seeds, norm, ignore) -> list[torch.Tensor]:
    # Direction of seed s is the first direction of make_directions(seed=s): the same for every
    # step size of that seed, and the same as random_directions(model, n=1, seed=s).
    return [make_directions(space, theta, 1, norm, ignore, int(s))[0] for s in seeds]


def _retrain_one(model, theta, data, test, cfg: dict, seed: int, coords: dict, store, name: str) -> xr.Dataset:
    """One J&R run: a copy of ``model`` at ``theta``, retrained (module-level so it pickles)."""
    m = copy.deepcopy(model)
    ParamSpace(m).assign(m, theta)
    run = train(m, data, seed=seed, test=test, store=store, name=name, run_coords=coords, **cfg)
    return run.trajectory.load() if store is None else None


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
    **train_options,
) -> xr.Dataset:
    """Jump-and-retrain sampling around ``model``'s parameters (Horoi et al. section 3.1).

    Parameters
    ----------
    model : nn.Module
        At a minimum; it is not changed (runs train copies).
    data : (X, y) tensors or lossatlas.data.Data
        The original training set (a ``Data`` brings its test split and augmentation).
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
        Runs stream to ``store/NAME.runs/`` (each resumable), then gather into ``NAME.zarr``.
    executor : concurrent.futures.Executor, optional
        Runs are independent tasks (e.g. a Dask cluster's executor); give ``store`` with it.
    train_seed : int
        Base seed of the runs' data order and augmentation (run ``r`` uses ``train_seed + r``).

    Returns
    -------
    xarray.Dataset with ``weights`` (point, param), ``loss``, ``accuracy`` (and ``test_*``),
    coords ``seed``, ``step_size``, ``epoch``, ``run``.

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
    TrainConfig(**cfg).validate()  # bad settings fail here, before any run starts
    parse_norm(norm), parse_ignore(ignore)
    as_train_data(data, test)
    space = ParamSpace(model)
    theta0 = space.vector(model)
    space.check_vector(theta0, "model's parameter vector")
    dirs = _jump_directions(space, theta0, seeds, norm, ignore)
    runs = [(si, ci) for si in range(len(seeds)) for ci in range(len(step_sizes))]
    run_dir = RunDir(store) if store is not None and not isinstance(store, RunDir) else store
    require(executor is None or run_dir is not None, "with an executor, give store= so that runs write their results")

    attrs = {
        **provenance(),
        "kind": "jump",
        "sampling": "jump_retrain",
        "seeds": seeds,
        "step_sizes": step_sizes,
        "norm": parse_norm(norm).value,
        "ignore": ignore if isinstance(ignore, str) or ignore is None else list(ignore),
        "center_fingerprint": space.fingerprint(theta0),
        "train": {k: v for k, v in cfg.items()},
        "n_params": space.size,
    }
    if run_dir is not None and run_dir.exists(name):
        done = run_dir.open(name, load=False)
        if done.attrs.get("center_fingerprint") == attrs["center_fingerprint"] and done.attrs.get("complete"):
            return done
    scratch = f"{name}.runs"

    def task(r):
        si, ci = runs[r]
        theta = theta0 + step_sizes[ci] * dirs[si]
        coords = {"seed": [seeds[si]], "step_size": [step_sizes[ci]], "run": [r]}
        return (model, theta, data, test, cfg, train_seed + r, coords, run_dir, f"{scratch}/run-{r:04d}")

    parts: list[xr.Dataset] = []
    with _progress(progress, len(runs), f"jump & retrain: {len(runs)} runs") as advance:
        if executor is None:
            for r in range(len(runs)):
                out = _retrain_one(*task(r))
                if out is not None:
                    parts.append(out)
                advance(1)
        else:
            futures = [executor.submit(_retrain_one, *task(r)) for r in range(len(runs))]
            for fut in futures:
                fut.result()
                advance(1)
    if run_dir is not None:
        parts = [run_dir.open(f"{scratch}/run-{r:04d}", load=False) for r in range(len(runs))]
    ds = xr.concat(parts, dim="point", data_vars="minimal", coords="minimal", compat="override", join="override")
    ds.attrs = attrs
    if run_dir is None:
        return ds
    out = ds.chunk({"point": epochs + 1})
    out.attrs["complete"] = True
    run_dir.save(name, out)
    shutil.rmtree(run_dir.path / scratch, ignore_errors=True)  # the runs now live in NAME.zarr
    return run_dir.open(name, load=False)


def _static_samples(f: Landscape, center, blocks, n: int, attrs, coord_vars, store, name, progress):
    """Evaluate the points of ``blocks`` (pairs of coords [k, m] and m directions), keeping weights."""
    from .surface import _evaluate_cells

    values = {k: np.empty(n) for k in f.keys}
    weights = np.empty((n, f.space.size), np.float32)
    i = 0
    with _progress(progress, n, f"{attrs['sampling']} sampling: {n} points") as advance:
        for c, dirs in blocks:
            out = _evaluate_cells(f, center, dirs, c)
            for k in f.keys:
                values[k][i : i + len(c)] = out[k]
            ct = torch.as_tensor(c, dtype=center.dtype, device=center.device)
            weights[i : i + len(c)] = (center.unsqueeze(0) + ct @ torch.stack(dirs)).cpu().numpy()
            i += len(c)
            advance(len(c))
    data = {"weights": (("point", "param"), weights)}
    data.update({k: (("point",), v) for k, v in values.items()})
    ds = xr.Dataset(data, coords={k: (("point",), v) for k, v in coord_vars.items()}, attrs=attrs)
    if store is not None:
        run = RunDir(store) if not isinstance(store, RunDir) else store
        run.save(name, ds.chunk({"point": 64}))
    return ds


def grid_sample(
    f: Landscape,
    n_points: int = 640,
    span: float = 1.0,
    *,
    center: torch.Tensor | None = None,
    norm: str = "filter",
    ignore="biasbn",
    seed: int = 0,
    store=None,
    name: str = "grid",
    progress=False,
) -> xr.Dataset:
    """Grid sampling (Horoi et al. 2022): a 3-D grid on three random directions around the minimum.

    The grid has ``m`` points per axis on ``[-span, span]`` with ``m`` the smallest odd number
    such that ``m**3 - 1 >= n_points``; the ``n_points`` grid points nearest the center (by
    Chebyshev, then Euclidean distance, excluding the center itself, as the paper does) are
    evaluated, so the count matches a J&R set exactly while the points stay on the grid.

    Examples
    --------
    >>> g = grid_sample(f, n_points=640, span=1.0, seed=0)
    """
    require(isinstance(n_points, int) and n_points >= 1, f"n_points must be a positive integer, got {n_points!r}")
    require(span > 0, f"span must be positive, got {span}")
    center = f.origin if center is None else center
    f.space.check_vector(center, "center")
    center = center.to(f.origin.device, f.origin.dtype)
    dirs = make_directions(f.space, center, 3, norm, ignore, seed)
    m = 3
    while m**3 - 1 < n_points:
        m += 2
    axis = np.linspace(-span, span, m)
    g = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    cheb, eucl = np.abs(g).max(1), np.linalg.norm(g, axis=1)
    order = np.lexsort((eucl, cheb))
    order = order[cheb[order] > 0][:n_points]
    coords = g[order]
    attrs = {**provenance(), "kind": "samples", "sampling": "grid", "span": span, "per_axis": m, "seed": seed,
             "norm": parse_norm(norm).value, "center_fingerprint": f.space.fingerprint(center)}
    cv = {"gx": coords[:, 0], "gy": coords[:, 1], "gz": coords[:, 2],
          "step_size": np.abs(coords).max(1), "epoch": np.zeros(len(coords), int)}
    blocks = ((coords[i : i + 32], dirs) for i in range(0, len(coords), 32))
    return _static_samples(f, center, blocks, len(coords), attrs, cv, store, name, progress)


def naive_sample(
    f: Landscape,
    n_points: int = 640,
    step_sizes: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    *,
    center: torch.Tensor | None = None,
    norm: str = "filter",
    ignore="biasbn",
    seed: int = 0,
    store=None,
    name: str = "naive",
    progress=False,
) -> xr.Dataset:
    """Naive sampling (Horoi et al. 2022): ``theta_0 + c * theta_i`` for random directions ``theta_i``.

    ``n_points / len(step_sizes)`` filter-normalized directions, each at every step size.

    Examples
    --------
    >>> s = naive_sample(f, n_points=640, step_sizes=(0.25, 0.5, 0.75, 1.0), seed=0)
    """
    step_sizes = [float(c) for c in step_sizes]
    require(isinstance(n_points, int) and n_points >= 1, f"n_points must be a positive integer, got {n_points!r}")
    require(n_points % len(step_sizes) == 0,
            f"n_points={n_points} is not a multiple of the {len(step_sizes)} step sizes")
    center = f.origin if center is None else center
    f.space.check_vector(center, "center")
    n_dirs = n_points // len(step_sizes)
    direction = np.repeat(np.arange(n_dirs), len(step_sizes))
    steps = np.tile(step_sizes, n_dirs)
    center = center.to(f.origin.device, f.origin.dtype)
    seeds = direction_seeds(int(seed), n_dirs)  # direction k of `seed`, as make_directions draws it

    def blocks():  # one direction at a time: never n_dirs x params in memory
        for s in seeds:
            d = normalize_direction(f.space, gaussian(f.space.size, s, center.dtype).to(center.device), center, norm, ignore)
            yield np.asarray(step_sizes)[:, None], [d]

    attrs = {**provenance(), "kind": "samples", "sampling": "naive", "seed": seed, "step_sizes": step_sizes,
             "norm": parse_norm(norm).value, "center_fingerprint": f.space.fingerprint(center)}
    cv = {"direction": direction, "step_size": steps, "epoch": np.zeros(n_points, int)}
    return _static_samples(f, center, blocks(), n_points, attrs, cv, store, name, progress)

"""Optimizer trajectories in low dimension: PCA directions (Li et al. section 7) and projections.

Pure NumPy on a trajectory dataset (``weights`` with dims ``point``, ``param``). Weights are read
in column blocks, so a trajectory of a large model never sits in memory as float64 at once: the
PCA comes from the ``n x n`` Gram matrix of ``theta_i - theta_final``, accumulated block by block.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ._errors import InputError, require

_BLOCK_BYTES = 128 * 2**20


def _weights(traj) -> xr.DataArray | np.ndarray:
    if isinstance(traj, xr.Dataset):
        require("weights" in traj, "the dataset has no 'weights' variable (dims point, param)")
        return traj["weights"]
    if isinstance(traj, (xr.DataArray, np.ndarray)):
        return traj
    raise InputError(f"expected a trajectory Dataset or a weights array, got {type(traj).__name__}")


def _blocks(n_points: int, n_params: int):
    step = max(1, _BLOCK_BYTES // (8 * max(1, n_points)))
    return [slice(i, min(n_params, i + step)) for i in range(0, n_params, step)]


def _read(W, rows, cols) -> np.ndarray:
    block = W[rows, cols] if isinstance(W, np.ndarray) else W.isel(point=rows, param=cols).values
    return np.asarray(block, dtype=np.float64)


def select_run(traj: xr.Dataset, run: int | None = None) -> xr.Dataset:
    """One run of a (possibly multi-run) trajectory, in epoch order."""
    if "run" in traj.coords and len(np.unique(traj.run.values)) > 1:
        runs = np.unique(traj.run.values)
        run = int(runs[0]) if run is None else int(run)
        require(run in runs, f"run {run} is not in the trajectory (runs: {runs.tolist()})")
        traj = traj.isel(point=np.flatnonzero(traj.run.values == run))
    if "epoch" in traj.coords:
        traj = traj.isel(point=np.argsort(traj.epoch.values, kind="stable"))
    return traj


def pca_directions(trajectory, n: int = 2, run: int | None = None, final: np.ndarray | None = None):
    """PCA directions of ``[theta_i - theta_final]`` and the share of variance each captures.

    As Li et al.: the matrix of differences to the final point over all snapshots, centered as
    scikit-learn's PCA does, its first ``n`` principal directions.

    Parameters
    ----------
    trajectory : xarray.Dataset
        From :func:`lossatlas.train` (``weights`` (point, param)); a multi-run trajectory is
        reduced to ``run`` (default: the first).
    n : int
    final : array, optional
        The reference point (default: the last snapshot).

    Returns
    -------
    directions : list of n float32 arrays of length P (unit norm)
    ratios : array of n explained-variance ratios

    Examples
    --------
    >>> dirs, ratio = pca_directions(run.trajectory, n=2)
    >>> ds = plane(f, run.final, dirs, span=...)
    """
    traj = select_run(trajectory, run) if isinstance(trajectory, xr.Dataset) else trajectory
    W = _weights(traj)
    n_points, n_params = W.shape
    require(n_points >= 2, f"a trajectory of {n_points} snapshot(s) has no direction; record more epochs")
    require(1 <= n <= n_points - 1, f"n must be between 1 and {n_points - 1} for {n_points} snapshots")
    blocks = _blocks(n_points, n_params)
    ref = None if final is None else np.asarray(final, dtype=np.float64)
    G = np.zeros((n_points, n_points))
    for cols in blocks:
        A = _read(W, slice(None), cols)
        A -= A[-1] if ref is None else ref[cols]
        if not np.isfinite(A).all():
            raise InputError("the trajectory holds NaN or infinite weights (a diverged run); drop those snapshots")
        G += A @ A.T
    J = np.eye(n_points) - 1.0 / n_points
    Gc = J @ G @ J
    lam, U = np.linalg.eigh(Gc)
    lam, U = lam[::-1], U[:, ::-1]
    lam = np.clip(lam, 0, None)
    require(lam[0] > 0, "all snapshots are identical: the trajectory does not move")
    ratios = lam[:n] / lam.sum()
    s = np.sqrt(lam[:n])
    dirs = np.zeros((n, n_params), np.float64)
    for cols in blocks:
        A = _read(W, slice(None), cols)
        A -= A[-1] if ref is None else ref[cols]
        A -= A.mean(0)
        dirs[:, cols] = (U[:, :n] / np.where(s > 0, s, 1)).T @ A
    # A sign convention, so that reruns give the same picture: the first snapshot at negative x.
    for k in range(n):
        if U[0, k] > 0:
            dirs[k] *= -1
    return [d.astype(np.float32) for d in dirs], ratios


def project(trajectory, center, directions: Sequence) -> np.ndarray:
    """Coordinates ``c`` of each snapshot in the plane: least squares of ``w - center ~ sum_k c_k d_k``.

    For orthonormal (PCA) directions these are plain dot products; for random directions (Li et
    al. Fig. 8) the least-squares solution accounts for their overlap.

    Examples
    --------
    >>> xy = project(run.trajectory, run.final, dirs)    # [n_points, 2]
    """
    W = _weights(trajectory)
    n_points, n_params = W.shape
    D = np.stack([np.asarray(d, dtype=np.float64).reshape(-1) for d in directions])
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    require(D.shape[1] == n_params and c.shape[0] == n_params,
            f"directions and center must have {n_params} entries, like the weights")
    DD = D @ D.T
    DW = np.zeros((len(D), n_points))
    for cols in _blocks(n_points, n_params):
        A = _read(W, slice(None), cols) - c[cols]
        DW += D[:, cols] @ A.T
    return np.linalg.solve(DD, DW).T

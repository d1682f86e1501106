"""Optimizer trajectories in low dimension: PCA directions (Li et al. section 7) and projections.

Floor 4 (analysis), on a trajectory dataset (``weights`` with dims ``point``, ``param``) or a
weights array. The PCA is the embedding's: the ``n x n`` Gram matrix of the snapshots, streamed
along ``point`` (:mod:`lossatlas.embedding.gram`), so a trajectory of a large model never sits in
memory as float64 at once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._errors import require
from .embedding.gram import gram_from_source, pca_from_gram
from .embedding.inputs import as_source, column_blocks
from .embedding.pca import principal_components

__all__ = ["pca_directions", "project", "select_run"]

# Size of the float64 copy of a column block in :func:`project`.
_BLOCK_BYTES = 128 * 2**20


def select_run(traj, run: int | None = None):
    """One run of a (possibly multi-run) trajectory Dataset, in epoch order.

    Examples
    --------
    >>> one = select_run(ensemble.trajectory, run=2)  # doctest: +SKIP
    """
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
    scikit-learn's PCA does, its first ``n`` principal directions. Centring removes any common
    reference, so the directions are those of the snapshots themselves.

    Parameters
    ----------
    trajectory : xarray.Dataset or array [n_points, n_params]
        From :func:`lossatlas.train` (``weights`` (point, param)); a multi-run trajectory is
        reduced to ``run`` (default: the first).
    n : int
    final : array, optional
        The reference point (default: the last snapshot). After centring it does not change the
        directions; it is checked to have one entry per parameter.

    Returns
    -------
    directions : list of n float32 arrays of length P (unit norm); each oriented so that the first
        snapshot lies at a negative coordinate
    ratios : array of n explained-variance ratios

    Examples
    --------
    >>> dirs, ratio = pca_directions(run.trajectory, n=2)  # doctest: +SKIP
    >>> ds = plane(f, run.final, dirs, span=...)  # doctest: +SKIP
    """
    import xarray as xr

    traj = select_run(trajectory, run) if isinstance(trajectory, xr.Dataset) else trajectory
    src = as_source(traj)
    n_points, n_params = src.n, src.p
    require(n_points >= 2, f"a trajectory of {n_points} snapshot(s) has no direction; record more epochs")
    require(1 <= n <= n_points - 1, f"n must be between 1 and {n_points - 1} for {n_points} snapshots")
    if final is not None:
        require(np.asarray(final).size == n_params,
                f"final must have {n_params} entries, like the weights, got {np.asarray(final).size}")
    pca = pca_from_gram(gram_from_source(src), n)
    require(pca.explained_variance[0] > 0, "all snapshots are identical: the trajectory does not move")
    dirs, _ = principal_components(src, pca.eigenvectors, pca.explained_variance)
    # A sign convention, so that reruns give the same picture: the first snapshot at negative x.
    dirs[pca.eigenvectors[0] > 0] *= -1
    return [d.astype(np.float32) for d in dirs], pca.explained_variance_ratio


def project(trajectory, center, directions: Sequence) -> np.ndarray:
    """Coordinates ``c`` of each snapshot in the plane: least squares of ``w - center ~ sum_k c_k d_k``.

    For orthonormal (PCA) directions these are plain dot products; for random directions (Li et
    al. Fig. 8) the least-squares solution accounts for their overlap.

    Examples
    --------
    >>> xy = project(run.trajectory, run.final, dirs)  # doctest: +SKIP
    """
    src = as_source(trajectory)
    n_points, n_params = src.n, src.p
    D = np.stack([np.asarray(d, dtype=np.float64).reshape(-1) for d in directions])
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    require(D.shape[1] == n_params and c.shape[0] == n_params,
            f"directions and center must have {n_params} entries, like the weights")
    DD = D @ D.T
    DW = np.zeros((len(D), n_points))
    for a in range(0, n_points, src.chunk):
        b = min(n_points, a + src.chunk)
        rows = src.block(a, b, check=False)
        for cols in column_blocks(n_params, b - a, _BLOCK_BYTES):
            A = rows[:, cols].astype(np.float64) - c[cols]
            DW[:, a:b] += D[:, cols] @ A.T
    return np.linalg.solve(DD, DW).T

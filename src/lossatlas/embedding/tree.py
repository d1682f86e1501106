"""Test data with known structure: the artificial tree of Horoi et al. (Fig. 1C) and Moon et al."""

from __future__ import annotations

import numbers

import numpy as np

from lossatlas._errors import positive_int, require

__all__ = ["make_tree"]


def make_tree(
    n_branches: int = 20,
    points_per_branch: int = 100,
    n_dims: int = 100,
    noise: float = 4.0,
    seed: int = 0,
    return_clean: bool = False,
    branch_from: str = "first",
):
    """Artificial tree: random-walk branches splitting from one another, with noise, in high dimension.

    The tree of Horoi et al. Fig. 1C and of Moon et al. (diffusion-limited aggregation, as
    ``phate.tree.gen_dla``, whose defaults these are): the first branch is a random walk from the
    origin with steps uniform in [-1, 1] per dimension; each further branch is such a walk
    starting at a random point of the first branch (``branch_from="first"``, as ``gen_dla``) or
    of any branch made so far (``"any"``: a deeper tree). Gaussian noise of std ``noise`` per
    dimension is added at the end.

    Returns
    -------
    X : ndarray [n_branches * points_per_branch, n_dims]
    branch : ndarray [n] of int, the branch of each point
    position : ndarray [n] of int, the step along its branch
    clean : ndarray [n, n_dims], only with ``return_clean=True``: the points before noise

    Examples
    --------
    >>> X, branch, position = make_tree(n_branches=3, points_per_branch=10, n_dims=5)
    >>> X.shape, branch[-1], position[-1]
    ((30, 5), np.int64(2), np.int64(9))
    """
    B = positive_int("n_branches", n_branches)
    L = positive_int("points_per_branch", points_per_branch)
    d = positive_int("n_dims", n_dims)
    require(isinstance(noise, numbers.Real) and noise >= 0, f"noise must be >= 0, got {noise!r}")
    require(branch_from in ("first", "any"), f"branch_from must be 'first' or 'any', got {branch_from!r}")
    rng = np.random.default_rng(positive_int("seed", seed, minimum=0))
    clean = np.empty((B * L, d))
    for i in range(B):
        if i == 0:
            start = np.zeros(d)
        else:
            start = clean[rng.integers(L if branch_from == "first" else i * L)]
        clean[i * L : (i + 1) * L] = start + np.cumsum(rng.uniform(-1.0, 1.0, size=(L, d)), axis=0)
    X = clean + rng.normal(0.0, float(noise), size=clean.shape)
    branch = np.repeat(np.arange(B), L)
    position = np.tile(np.arange(L), B)
    if return_clean:
        return X, branch, position, clean
    return X, branch, position

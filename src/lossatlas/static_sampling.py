"""Where the static samplers of Horoi et al. (grid and naive sampling, :mod:`lossatlas.jump`) put
their points: each sampler's own stream of direction seeds, and the grid points nearest the
minimum with ties broken symmetrically.

Seed streams. J&R's direction of seed ``s`` is ``random_directions(seed=s)[0]``, the first child
of ``SeedSequence(s)``. Were the grid's axes and the naive directions drawn the same way from
``seed=0``, the grid's first axis and the first naive direction would both be J&R's seed-0
direction, and the naive set's first points would be J&R's jump points. Here each static sampler
draws from its own child stream of its seed (``SeedSequence(seed, spawn_key=(stream,))``), so the
three samplers' directions are independent whatever seeds they are given.

Ties. The grid keeps the ``n_points`` points nearest the centre by Chebyshev, then Euclidean
distance (on the integer lattice, so that equal distances are equal exactly). Where the cut falls
inside a set of equidistant points, taking them by array index leaned to negative coordinates.
Instead each point is taken together with its mirror image through the centre, and the pairs of a
tie are taken in an order drawn from the seed: the kept set is symmetric (its mean is the centre)
for any even ``n_points``.
"""

from __future__ import annotations

import numpy as np
import torch

from .space import gaussian, normalize_direction

__all__ = ["SEED_STREAMS", "TIES", "grid_points", "sampler_directions", "sampler_seeds"]

#: The child stream of a seed that each static sampler draws its directions from ("grid", "naiv"
#: in ASCII); J&R uses the seeds themselves, as random_directions does.
SEED_STREAMS = {"grid": 0x67726964, "naive": 0x6E616976}

#: How the grid breaks ties between equidistant points (recorded in the grid's settings).
TIES = "mirror pairs through the centre, in a seeded order"


def sampler_seeds(seed: int, sampler: str, n: int) -> list[int]:
    """The seeds of the ``n`` directions that ``sampler`` ("grid" or "naive") draws from ``seed``:
    direction ``k`` is the same for any ``n``, and no other sampler draws it.

    Examples
    --------
    >>> sampler_seeds(0, "grid", 3)[:2] == sampler_seeds(0, "grid", 2)
    True
    >>> sampler_seeds(0, "grid", 1) == sampler_seeds(0, "naive", 1)
    False
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=(SEED_STREAMS[sampler],))
    return [int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for child in ss.spawn(int(n))]


def sampler_directions(space, center: torch.Tensor, sampler: str, n: int, norm, ignore, seed: int) -> list[torch.Tensor]:
    """The first ``n`` directions of ``sampler``'s stream of ``seed``, normalized around ``center``
    as :func:`~lossatlas.space.normalize_direction` does.

    Examples
    --------
    >>> dirs = sampler_directions(f.space, f.origin, "grid", 3, "filter", "biasbn", seed=0)   # doctest: +SKIP
    """
    return [normalize_direction(space, gaussian(space.size, s, center.dtype, center.device), center, norm, ignore)
            for s in sampler_seeds(seed, sampler, n)]


def grid_points(n_points: int, span: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """The ``n_points`` points of a 3-D grid nearest its centre (the centre itself left out), as
    ``[n_points, 3]`` coordinates in ``[-span, span]``, and the points per axis ``m`` (the smallest
    odd ``m`` with ``m**3 - 1 >= n_points``).

    Points are ordered by Chebyshev, then Euclidean distance; equidistant points come in mirror
    pairs (``p`` and ``-p`` together), the pairs in an order drawn from ``seed``.

    Examples
    --------
    >>> pts, m = grid_points(640, 1.0)
    >>> m, pts.shape, bool(np.all(pts.mean(0) == 0))
    (9, (640, 3), True)
    """
    m = 3
    while m**3 - 1 < n_points:
        m += 2
    half = m // 2
    k = np.arange(-half, half + 1)
    lattice = np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)  # index i mirrors m**3 - 1 - i
    cheb, sq = np.abs(lattice).max(1), (lattice**2).sum(1)
    total = lattice.shape[0]
    index = np.arange(total)
    pair = np.minimum(index, total - 1 - index)
    pair_rank = np.random.default_rng(int(seed)).permutation(total)[pair]  # a seeded order of the pairs
    member = (index > pair).astype(np.int64)
    order = np.lexsort((member, pair_rank, sq, cheb))
    order = order[cheb[order] > 0][:n_points]
    axis = np.linspace(-span, span, m)
    axis = 0.5 * (axis - axis[::-1])  # exactly symmetric: -axis[j] == axis[m - 1 - j], axis[half] == 0
    return axis[lattice[order] + half], m

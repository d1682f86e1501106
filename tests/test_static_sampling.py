"""The samplers' details (issue 19, item 9): grid and naive directions from their own seed streams
(not J&R's), grid ties broken symmetrically, and the sweep's J&R at each network's own batch size,
with a sweep of the old rules refused."""

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas._errors import StoreMismatchError
from lossatlas.space import cosine, random_directions
from lossatlas.static_sampling import grid_points, sampler_seeds

from helpers import DEVICE, blobs, mlp


def _old_grid(n_points, span=1.0):
    """The old rule: Chebyshev then Euclidean distance, ties by array index."""
    m = 3
    while m**3 - 1 < n_points:
        m += 2
    axis = np.linspace(-span, span, m)
    axis[m // 2] = 0.0
    g = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    cheb, eucl = np.abs(g).max(1), np.linalg.norm(g, axis=1)
    order = np.lexsort((eucl, cheb))
    return g[order[cheb[order] > 0][:n_points]]


@pytest.mark.parametrize("n_points", [40, 640])
def test_grid_ties_are_broken_symmetrically(n_points):
    pts, m = grid_points(n_points, 1.0, seed=0)
    # Before: ties by array index, 18 of the 28 x != 0 points at negative x for 40 points (mean x
    # -0.15), 284 against 276 for 640 (mean x -0.0125); now mirror pairs: the mean is the centre.
    assert np.all(pts.mean(0) == 0.0)
    assert (pts[:, 0] < 0).sum() == (pts[:, 0] > 0).sum()
    # still the n_points nearest: the same distances as before, and no repeats
    def dist(p):
        return sorted(zip(np.round(np.abs(p).max(1), 12), np.round((p**2).sum(1), 12)))
    assert dist(pts) == dist(_old_grid(n_points))
    assert len({tuple(p) for p in pts}) == n_points
    # deterministic, and the seed only picks which mirror pairs of the cut tie are kept
    assert np.array_equal(grid_points(n_points, 1.0, seed=0)[0], pts)
    other = grid_points(n_points, 1.0, seed=1)[0]
    assert np.all(other.mean(0) == 0.0) and dist(other) == dist(pts)


def test_each_sampler_draws_its_own_directions():
    X, y = blobs(n=40, d_in=6, seed=0)
    model = mlp(seed=0, d_in=6, hidden=5)
    f = la.Landscape(model, (X, y), device=DEVICE)
    grid = la.grid_sample(f, n_points=6, span=1.0, seed=0)  # the 6 points +-e_x, +-e_y, +-e_z
    naive = la.naive_sample(f, n_points=2, step_sizes=(0.5, 1.0), seed=0)
    center = f.origin.cpu()
    on_x = np.flatnonzero((grid["gx"].values == 1.0) & (grid["gy"].values == 0) & (grid["gz"].values == 0))[0]
    grid_x = torch.from_numpy(grid["weights"].values[on_x]) - center
    naive_0 = (torch.from_numpy(naive["weights"].values[1]) - center) / float(naive["step_size"][1])
    (jr_0,) = random_directions(model, n=1, seed=0)  # J&R's direction of seed 0
    # Before: all three were one direction (cosines 1.000).
    for a, b in ((grid_x, jr_0), (naive_0, jr_0), (grid_x, naive_0)):
        assert abs(cosine(a, b)) < 0.5
    assert grid.attrs["settings"]["directions"] == "the grid's own stream of seed"
    assert naive.attrs["settings"]["directions"] == "naive sampling's own stream of seed"
    assert len(set(sampler_seeds(0, "grid", 3)) | set(sampler_seeds(0, "naive", 3))) == 6


TINY = {
    "depths": [1], "widths": [6], "batch_sizes": [64], "weight_decays": [0.0], "augment": [False],
    "epochs": 2, "subset": 200, "test_subset": 100,
    "jump": {"seeds": [0, 1], "step_sizes": [0.5, 1.0], "epochs": 2, "topology_k": 3},
}


def test_sweep_retrains_each_network_at_its_own_batch_size(monkeypatch):
    from lossatlas.sweep import network, read_sweep_config

    seen = []
    real = network.jump_retrain
    monkeypatch.setattr(network, "jump_retrain", lambda *a, **k: seen.append(k["batch_size"]) or real(*a, **k))
    network.sample_network(read_sweep_config(TINY).as_dict(), 0)
    assert seen == [64]  # Before: 128, the fixed jump.batch_size, whatever the network's own
    fixed = read_sweep_config({**TINY, "jump": {**TINY["jump"], "batch_size": 32}})
    assert fixed.jump.batch_size_for(fixed.networks()[0]) == 32
    travel = read_sweep_config({**TINY, "batch_sizes": [32, 64]}).travel(200)
    assert travel["batch_32"]["steps"] == 2 * 7 and travel["batch_64"]["steps"] == 2 * 4


def test_a_sweep_stored_under_the_old_samplers_is_refused(tmp_path):
    from lossatlas.store import RunDir
    from lossatlas.sweep import read_sweep_config, run_sweep
    from lossatlas.sweep.driver import _layout, _settings

    cfg = read_sweep_config(TINY)
    data = cfg.source(cfg.networks()[0]).build_data()
    new = _settings(cfg, data.fingerprint)
    assert new["samplers"]["jr_batch_size"].startswith("the network's own")
    old = {k: v for k, v in new.items() if k != "samplers"}
    old["config"] = {**old["config"], "jump": {**old["config"]["jump"], "batch_size": 128}}
    run = RunDir(tmp_path / "s")
    run.create_grid("sweep", _layout(cfg, old), chunks={"network": 1})
    with pytest.raises(StoreMismatchError, match="samplers"):
        run_sweep(cfg, run)


def test_the_table1_study_does_not_start_from_the_committed_sweep_of_the_old_samplers(tmp_path):
    from lossatlas.store import RunDir
    from lossatlas.studies.table1 import COMMITTED, start_from_store
    from lossatlas.sweep import read_sweep_config

    if COMMITTED is None:  # an installed package has no results/ folder
        pytest.skip("no committed sweep in this checkout")
    old = read_sweep_config(RunDir(COMMITTED, create=False).read_config("sweep"))
    assert old.jump.batch_size == 128  # made under the old rules
    # even with its own config, the store lacks the samplers' rules and is not copied
    assert start_from_store(RunDir(tmp_path / "study"), COMMITTED, old) == []

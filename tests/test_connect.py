"""Paths between minima: linear, Bezier and AutoNEB barriers, ends, batch norm, inputs."""

import copy

import numpy as np
import pytest
import torch

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.connectivity import NEBCycle, connect, scaled_cycles
from lossatlas.connectivity.neb import fill_chain, highest_gaps, redistribute
from lossatlas.landscape import Landscape
from lossatlas.space import ParamSpace


@pytest.fixture(scope="module")
def minima():
    """Two minima of one small MLP trained from different seeds (a permutation apart, roughly)."""
    X, y = blobs(n=144, d_in=8, seed=0)
    (X, Xt), (y, yt) = (X[:96], X[96:]), (y[:96], y[96:])
    models = [train_briefly(mlp(seed=s, d_in=8, hidden=8), X, y, steps=200, lr=0.2) for s in (1, 2)]
    a, b = (ParamSpace(m).vector(m) for m in models)
    f = Landscape(models[0], (X, y), test=(Xt, yt), device=DEVICE)
    return f, a.to(DEVICE), b.to(DEVICE), models, (X, y)


def _ends_match(f, ds, a, b):
    ends = f.evaluate(torch.stack([a, b]))
    assert ds["loss"].values[0] == pytest.approx(float(ends["loss"][0]), rel=1e-6, abs=1e-9)
    assert ds["loss"].values[-1] == pytest.approx(float(ends["loss"][1]), rel=1e-6, abs=1e-9)


def test_bezier_and_neb_barriers_are_below_the_linear_one(minima):
    f, a, b, models, data = minima
    lin = connect(f, a, b, method="linear", points=21)
    assert lin.attrs["barrier"] > 0.1  # independent minima: a real barrier on the straight line
    assert {"loss", "accuracy", "test_loss", "test_accuracy"} <= set(lin.data_vars)
    assert lin["t"].values[0] == 0.0 and lin["t"].values[-1] == 1.0
    assert np.isfinite(lin.attrs["test_barrier"])
    _ends_match(f, lin, a, b)

    before = copy.deepcopy(models[0].state_dict())
    bez = connect(f, a, b, method="bezier", model=models[0], data=data, steps=120, lr=0.1, batch_size=32,
                  points=21, seed=0)
    assert bez.attrs["barrier"] < 0.5 * lin.attrs["barrier"]
    _ends_match(f, bez, a, b)
    assert bez["bend"].shape == (f.space.size,) and np.isfinite(bez["train_loss_trace"]).all()
    assert all(torch.equal(before[k], v) for k, v in models[0].state_dict().items())

    cycles = [NEBCycle(25, 0.1, "equal", 2), NEBCycle(25, 0.1, "highest", 2)]
    neb = connect(f, a, b, method="neb", cycles=cycles, subpivots=4)
    assert neb.attrs["barrier"] < 0.5 * lin.attrs["barrier"]
    _ends_match(f, neb, a, b)
    pivots = torch.as_tensor(neb["pivots"].values)
    assert torch.equal(pivots[0], a.cpu()) and torch.equal(pivots[-1], b.cpu())
    assert np.all(np.diff(neb["t"].values) > 0) and neb["t"].values[-1] == pytest.approx(1.0)
    assert len(neb.attrs["saddle_loss"]) == 2
    # The saddle is read off the dense path: the barrier is its largest rise above the chord
    # between the ends (t = 0 and t = 1 exactly), the saddle height its top above the higher end.
    loss, t = neb["loss"].values, neb["t"].values
    assert t[0] == 0.0 and t[-1] == 1.0
    assert neb.attrs["barrier"] == pytest.approx(np.max(loss - ((1 - t) * loss[0] + t * loss[-1])))
    assert neb.attrs["saddle_height"] == pytest.approx(loss.max() - max(loss[0], loss[-1]))


def test_bezier_without_data_trains_on_the_landscape_loss(minima):
    f, a, b, _, _ = minima
    lin = connect(f, a, b, points=11)
    bez = connect(f, a, b, method="bezier", steps=60, lr=0.1, points=11, seed=1)
    assert bez.attrs["barrier"] < lin.attrs["barrier"]
    assert bez.attrs["settings"]["minibatches"] is False
    again = connect(f, a, b, method="bezier", steps=60, lr=0.1, points=11, seed=1)
    assert np.array_equal(again["loss"].values, bez["loss"].values)  # explicit generators only


def test_batch_norm_paths_need_recomputed_statistics():
    X, y = blobs(n=64, d_in=8, seed=3)
    models = [train_briefly(mlp(seed=s, d_in=8, hidden=8, bn=True), X, y, steps=60) for s in (0, 1)]
    a, b = (ParamSpace(m).vector(m) for m in models)
    stale = Landscape(models[0], (X, y), bn="eval", device=DEVICE)
    with pytest.raises(InputError, match="recompute"):
        connect(stale, a, b)
    f = Landscape(models[0], (X, y), bn="recompute", device=DEVICE)
    a, b = a.to(DEVICE), b.to(DEVICE)
    with pytest.raises(InputError, match="model= and data="):
        connect(f, a, b, method="bezier")
    bez = connect(f, a, b, method="bezier", model=models[0], data=(X, y), steps=40, lr=0.05,
                  batch_size=16, points=7)
    # Recomputed statistics at t = 0 and t = 1 reproduce each minimum as its own network.
    for model, loss in zip(models, bez["loss"].values[[0, -1]]):
        own = Landscape(model, (X, y), bn="recompute", device=DEVICE)
        assert loss == pytest.approx(float(own.evaluate(own.origin)["loss"][0]), rel=1e-5)
    assert np.isfinite(bez["loss"].values).all()


def test_neb_chain_helpers():
    chain = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0]])
    even = redistribute(chain, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(even[1], torch.tensor([1.5, 0.0]))
    filled, w = fill_chain(torch.tensor([[0.0], [4.0]]), [[0.25, 0.5]], torch.ones(1, dtype=torch.float64))
    assert torch.allclose(filled.flatten(), torch.tensor([0.0, 1.0, 2.0, 4.0]))
    assert torch.allclose(w, torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    # Three pivots, 3 sub-points per gap: a bump in the second gap gets the new pivot.
    losses = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.2, 2.0, 1.6, 1.0])
    assert highest_gaps(losses, 3, 3, count=1, threshold=0.1) == [[], [0.5]]
    assert highest_gaps(losses * 0, 3, 3, count=1, threshold=0.1) == [[], []]
    cycles = scaled_cycles(0.1)
    assert len(cycles) == 14 and sum(c.steps for c in cycles) == 1600
    assert cycles[0].insert == "equal" and cycles[0].count == 3 and cycles[-1].lr == 0.001


def test_connect_refuses_bad_input(minima):
    f, a, b, _, _ = minima
    with pytest.raises(InputError, match="connection method"):
        connect(f, a, b, method="spline")
    with pytest.raises(InputError, match="does not take"):
        connect(f, a, b, method="linear", steps=3)
    with pytest.raises(InputError, match="theta_b"):
        connect(f, a, torch.zeros(3))
    with pytest.raises(InputError, match="insertion"):
        connect(f, a, b, method="neb", cycles=[NEBCycle(1, 0.1, "middle")])
    # The training options of Bezier and NEB are one set (PathTraining), named when one is unknown.
    for method in ("bezier", "neb"):
        with pytest.raises(InputError, match=r"does not take \['batchsize'\].*'batch_size'"):
            connect(f, a, b, method=method, batchsize=8)
    from lossatlas.connectivity import bezier_curve, neb_path

    with pytest.raises(InputError, match=r"method 'bezier' does not take \['batchsize'\].*'batch_size'"):
        bezier_curve(f, a, b, batchsize=8)
    with pytest.raises(InputError, match=r"method 'neb' does not take \['batchsize'\]"):
        neb_path(f, a, b, batchsize=8)


def test_connectivity_figure(minima, tmp_path):
    from lossatlas.plot.curvature import plot_connectivity

    f, a, b, _, _ = minima
    paths = {"linear": connect(f, a, b, points=11), "bezier": connect(f, a, b, method="bezier", steps=20, points=11)}
    fig = plot_connectivity(paths, path=tmp_path / "paths")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(l.startswith("linear, barrier") for l in labels) and any("(test)" in l for l in labels)
    assert (tmp_path / "paths.png").stat().st_size > 0 and (tmp_path / "paths.pdf").exists()

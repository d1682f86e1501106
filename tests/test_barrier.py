"""The standard loss barrier (issue 19, item 1): max over t in [0, 1] of L(t) - ((1-t) L(0) + t L(1)).

The old measure, the highest loss on the path minus the mean of its two ends, reported a positive
barrier on a path that falls the whole way and on one that stays below both ends; each test gives
the old value in a comment.
"""

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from helpers import DEVICE
from lossatlas.connectivity import barrier_stats, connect, path_barriers
from lossatlas.landscape import Landscape

torch.set_num_threads(1)


def _old(loss):
    loss = np.asarray(loss, float)
    return float(np.nanmax(loss) - 0.5 * (loss[0] + loss[-1]))


def test_a_path_that_falls_the_whole_way_has_no_barrier():
    t, loss = np.linspace(0, 1, 5), [1.0, 0.8, 0.5, 0.3, 0.2]
    got = barrier_stats(t, loss)
    assert _old(loss) == pytest.approx(0.4)  # the old barrier: 1.0 - (1.0 + 0.2) / 2
    assert got["barrier"] == 0.0 and got["saddle_height"] == 0.0
    assert got["start"] == 1.0 and got["end"] == 0.2


def test_a_path_below_both_ends_has_no_barrier():
    t, loss = np.linspace(0, 1, 3), [1.0, 0.1, 0.9]
    assert _old(loss) == pytest.approx(0.05)  # the old barrier: 1.0 - 0.95
    got = barrier_stats(t, loss)
    assert got["barrier"] == 0.0 and got["saddle_height"] == 0.0


def test_the_rise_above_the_chord_and_the_saddle_above_the_higher_end():
    t, loss = np.array([0.0, 0.25, 0.5, 0.75, 1.0]), np.array([0.2, 1.0, 0.8, 0.7, 0.6])
    got = barrier_stats(t, loss)
    chord = 0.2 + 0.4 * t
    assert got["barrier"] == pytest.approx(np.max(loss - chord)) == pytest.approx(0.7)  # at t = 0.25
    assert got["saddle_t"] == 0.25
    assert got["saddle_height"] == pytest.approx(0.4)  # 1.0 above the higher end 0.6
    assert _old(loss) == pytest.approx(0.6)  # the old barrier: 1.0 - (0.2 + 0.6) / 2


def test_points_outside_the_two_ends_and_nan_points_never_count():
    t = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    loss = np.array([9.0, 1.0, np.nan, 0.5, 7.0])
    got = barrier_stats(t, loss)
    assert got["barrier"] == 0.0 and got["nan_points"] == 1
    assert np.isnan(barrier_stats([0.1, 0.5, 1.0], [1.0, 2.0, 1.0])["barrier"])  # no t = 0: no number


def _quadratic_landscape():
    """Least squares y = X w: a convex quadratic loss whose minimum is known exactly."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = X @ torch.randn(5, 1, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(64, 1, generator=gen,
                                                                                     dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    f = Landscape(model, (X, y), loss="mse", device=DEVICE)
    w_star = torch.linalg.lstsq(X, y).solution.reshape(-1)
    return f, w_star


def test_connect_reports_no_barrier_downhill_to_the_minimum_of_a_convex_loss():
    f, w_star = _quadratic_landscape()
    start = (w_star + torch.tensor([2.0, -1.0, 0.5, 1.5, -2.0], dtype=torch.float64)).to(DEVICE)
    ds = connect(f, start, w_star.to(DEVICE), method="linear", points=11)
    loss = ds["loss"].values
    assert np.all(np.diff(loss) < 0)  # the loss falls the whole way
    # before: the barrier was loss[0] - (loss[0] + loss[-1]) / 2 = half the fall, here 6.16
    assert _old(loss) == pytest.approx(0.5 * (loss[0] - loss[-1])) and _old(loss) > 1.0
    assert ds.attrs["barrier"] == 0.0 and ds.attrs["saddle_height"] == 0.0
    # a convex loss lies below every chord: no barrier between any two points either way
    back = connect(f, w_star.to(DEVICE), start, method="linear", points=11)
    assert back.attrs["barrier"] == 0.0


def test_path_barriers_recomputes_a_path_stored_under_the_old_definition():
    t = np.linspace(0, 1, 5)
    loss = np.array([1.0, 0.8, 0.5, 0.3, 0.2])
    old_store = xr.Dataset({"loss": ("t", loss), "test_loss": ("t", loss + 0.1)}, coords={"t": t},
                           attrs={"barrier": _old(loss), "saddle_t": 0.0})
    got = path_barriers(old_store)
    assert got["barrier"] == 0.0 and got["test_barrier"] == 0.0 and got["saddle_height"] == 0.0
    new_store = old_store.assign_attrs(barrier=0.25, saddle_height=0.1, saddle_t=0.5)
    assert path_barriers(new_store)["barrier"] == 0.25  # computed under this definition: kept


def test_test_barrier_uses_the_same_definition():
    _, w_star = _quadratic_landscape()
    gen = torch.Generator().manual_seed(1)
    Xt = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    yt = Xt @ w_star.reshape(-1, 1)
    model = nn.Linear(5, 1, bias=False).double()
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = X @ w_star.reshape(-1, 1)
    f = Landscape(model, (X, y), test=(Xt, yt), loss="mse", device=DEVICE)
    start = (w_star + 1.0).to(DEVICE)
    ds = connect(f, start, w_star.to(DEVICE), method="linear", points=9)
    assert ds.attrs["test_barrier"] == 0.0 and ds.attrs["test_saddle_height"] == 0.0
    assert _old(ds["test_loss"].values) > 0  # before: half the fall of the test loss

import numpy as np
import xarray as xr
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.space import ParamSpace, random_directions

from helpers import blobs, mlp, train_briefly
from test_landscape import manual_loss


def relu_net(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_filter_normalized_surface_is_scale_invariant(ignore):
    X, y = blobs(n=80)
    net = train_briefly(relu_net(), X, y, steps=30)
    scaled = relu_net()
    scaled.load_state_dict(net.state_dict())
    with torch.no_grad():  # ReLU is positively homogeneous: the function is unchanged
        scaled[0].weight *= 10
        scaled[0].bias *= 10
        scaled[2].weight /= 10
    surfaces = []
    for model in (net, scaled):
        f = la.Landscape(model, (X, y))
        d = random_directions(model, n=2, norm="filter", ignore=ignore, seed=5)
        surfaces.append(la.plane(f, f.origin, d, span=1.0, steps=7).loss.values)
    np.testing.assert_allclose(surfaces[0], surfaces[1], rtol=2e-4)
    # Without normalization the two surfaces differ a lot: the invariance is the method's doing.
    raw = []
    for model in (net, scaled):
        f = la.Landscape(model, (X, y))
        d = random_directions(model, n=2, norm="none", ignore=ignore, seed=5)
        raw.append(la.plane(f, f.origin, [0.05 * v for v in d], span=1.0, steps=7).loss.values)
    assert np.abs(raw[0] - raw[1]).max() > 1e-2


def test_linear_regression_surface_is_exact():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 5, generator=gen, dtype=torch.float64)
    target = X @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64) + 0.7
    model = nn.Linear(5, 1).double()
    f = la.Landscape(model, (X, target), loss="mse")
    assert f.keys == ("loss",)
    d = random_directions(model, n=2, norm="none", ignore=None, seed=1)
    ds = la.plane(f, f.origin, d, span=2.0, steps=9)
    A = torch.cat([X, torch.ones(200, 1, dtype=torch.float64)], 1)  # [weight, bias] order
    for i, x in enumerate(ds.x.values):
        for j, yy in enumerate(ds.y.values):
            w = f.origin + x * d[0] + yy * d[1]
            exact = ((A @ w - target) ** 2).mean().item()
            assert ds.loss.values[i, j] == pytest.approx(exact, rel=1e-10)


def test_plane_orientation_and_order_of_grid():
    X, y = blobs(n=60)
    model = train_briefly(mlp(), X, y)
    f = la.Landscape(model, (X, y))
    d = random_directions(model, n=2, seed=11)
    ds = la.plane(f, f.origin, d, span=(-1.0, 2.0, -0.5, 0.5), steps=(4, 3))
    assert ds.loss.dims == ("x", "y") and ds.loss.shape == (4, 3)
    np.testing.assert_allclose(ds.x.values, np.linspace(-1, 2, 4))
    np.testing.assert_allclose(ds.y.values, np.linspace(-0.5, 0.5, 3))
    for i, j in [(0, 0), (3, 0), (0, 2), (2, 1), (3, 2)]:
        x, yy = float(ds.x[i]), float(ds.y[j])
        loss, acc = manual_loss(model, f.origin + x * d[0] + yy * d[1], X, y)
        assert ds.loss.values[i, j] == pytest.approx(loss, rel=1e-5)
        assert ds.loss.sel(x=x, y=yy).item() == pytest.approx(loss, rel=1e-5)
        assert ds.accuracy.values[i, j] == pytest.approx(acc)
    assert ds.attrs["directions"] == "given" and ds.done.values.all()


def test_default_directions_recorded_in_attrs_and_test_split():
    X, y = blobs(n=60)
    f = la.Landscape(mlp(), (X[:40], y[:40]), test=(X[40:], y[40:]))
    ds = la.plane(f, span=0.5, steps=3, norm="layer", ignore="biasbn", seed=4)
    assert set(ds.data_vars) >= {"loss", "accuracy", "test_loss", "test_accuracy", "done", "directions"}
    assert ds.attrs["norm"] == "layer" and ds.attrs["seed"] == 4 and ds.attrs["ignore"] == "biasbn"
    d = la.make_directions(f.space, f.origin, 2, "layer", "biasbn", 4)
    np.testing.assert_array_equal(ds.directions.values, torch.stack(d).numpy())


def test_line_interpolates_between_models():
    X, y = blobs(n=60)
    a, b = train_briefly(mlp(seed=0), X, y), train_briefly(mlp(seed=1), X, y)
    f = la.Landscape(a, (X, y))
    ta, tb = ParamSpace(a).vector(a), ParamSpace(b).vector(b)
    ds = la.line(f, ta, tb, steps=5, extent=(-0.5, 1.5))
    np.testing.assert_allclose(ds.t.values, [-0.5, 0.0, 0.5, 1.0, 1.5])
    for k, t in enumerate(ds.t.values):
        assert ds.loss.values[k] == pytest.approx(manual_loss(a, ta + t * (tb - ta), X, y)[0], rel=1e-5)


def test_values_agree_with_loss_landscapes_package():
    loss_landscapes = pytest.importorskip("loss_landscapes")
    import copy

    from loss_landscapes.metrics import Loss

    X, y = blobs(n=60)
    model = train_briefly(mlp(), X, y)
    f = la.Landscape(model, (X, y))
    d0, d1 = random_directions(model, n=2, seed=9)
    steps, h = 5, 0.25
    ends = []
    for d in (d0, d1):
        m = copy.deepcopy(model)
        ParamSpace(m).assign(m, f.origin + steps * h * d)
        ends.append(m)
    ref = loss_landscapes.planar_interpolation(
        copy.deepcopy(model), ends[0], ends[1], Loss(F.cross_entropy, X, y), steps=steps, deepcopy_model=True
    )
    # planar_interpolation visits column i top-down or bottom-up in turn: its even columns sit
    # one step further along the second direction. Compare coordinate by coordinate.
    coords = [(i, k + (1 if i % 2 == 0 else 0)) for i in range(steps) for k in range(steps)]
    pts = torch.stack([f.origin + i * h * d0 + j * h * d1 for i, j in coords])
    ours = f.evaluate(pts)["loss"].numpy()
    theirs = np.array([ref[i][k] for i in range(steps) for k in range(steps)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_store_round_trip_and_resume_after_interruption(tmp_path):
    X, y = blobs(n=60)
    model = mlp()
    f = la.Landscape(model, (X, y), test=(X[:20], y[:20]))
    d = random_directions(model, n=2, seed=0)
    full = la.plane(f, f.origin, d, steps=6)

    class Stop(Exception):
        pass

    def interrupt(done, total):
        if done >= 18:  # three of six rows finished
            raise Stop

    with pytest.raises(Stop):
        la.plane(f, f.origin, d, steps=6, store=tmp_path, progress=interrupt)
    run = la.RunDir(tmp_path)
    mask = run.done_mask("surface")
    assert mask.sum() == 18 and mask[:3].all() and not mask[3:].any()
    partial = run.open("surface")
    assert np.isnan(partial.loss.values[3:]).all()  # undone cells are NaN, and flagged not done

    calls = []
    original = f.evaluate_span
    f.evaluate_span = lambda center, dirs, coords: calls.append(len(coords)) or original(center, dirs, coords)
    resumed = la.plane(f, f.origin, d, steps=6, store=tmp_path)
    assert sum(calls) == 18  # only the missing cells
    assert resumed.attrs["resumed_cells"] == 18
    for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(resumed[k].values, full[k].values, rtol=1e-12)
    back = run.open("surface")
    np.testing.assert_allclose(back.loss.values, full.loss.values, rtol=1e-12)
    assert back.done.values.all()
    np.testing.assert_array_equal(back.directions.values, torch.stack(d).numpy())
    calls.clear()
    la.plane(f, f.origin, d, steps=6, store=tmp_path)
    assert calls == []  # a finished plane is not recomputed
    with pytest.raises(InputError, match="different plane"):
        la.plane(f, f.origin, d, steps=7, store=tmp_path)


def test_plane_through_an_executor_matches_in_process():
    from concurrent.futures import ThreadPoolExecutor

    X, y = blobs(n=40)
    f = la.Landscape(mlp(), (X, y))
    d = random_directions(mlp(), n=2, seed=0)
    with ThreadPoolExecutor(2) as ex:
        a = la.plane(f, f.origin, d, steps=4, executor=ex)
    b = la.plane(f, f.origin, d, steps=4)
    np.testing.assert_allclose(a.loss.values, b.loss.values)


def test_diverged_points_are_recorded():
    X, y = blobs(n=40)
    f = la.Landscape(mlp(), (X, y))
    d = [torch.full((f.space.size,), 1e30), torch.zeros(f.space.size)]
    ds = la.plane(f, f.origin, d, steps=3)
    assert ds.attrs["n_nonfinite"] > 0 and np.isfinite(ds.loss.sel(x=0.0).values).all()


def test_bad_input_errors():
    X, y = blobs(n=40)
    f = la.Landscape(mlp(), (X, y))
    d = random_directions(mlp(), n=2)
    with pytest.raises(InputError, match="steps must be at least 2"):
        la.plane(f, f.origin, d, steps=1)
    with pytest.raises(InputError, match="parameters"):
        la.plane(f, f.origin, [d[0][:-1], d[1]])
    with pytest.raises(InputError, match="expected 2 directions"):
        la.plane(f, f.origin, d[:1])
    nan = d[0].clone()
    nan[3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        la.plane(f, f.origin, [nan, d[1]])
    with pytest.raises(InputError, match="steps must be an integer >= 2"):
        la.line(f, f.origin, f.origin + d[0], steps=1)


def test_store_writes_strings_portably(tmp_path):
    import warnings

    from lossatlas.store import RunDir

    ds = xr.Dataset({"v": (("method",), [1.0, 2.0]), "label": (("method",), np.array(["a", "bb"]))},
                    coords={"method": np.array(["phate", "tsne"])})
    run = RunDir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns about fixed-width UTF-32, which has no v3 spec
        # (its note that consolidated metadata is not yet in the v3 specification is not about strings)
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata")
        run.save("strings", ds)
    back = run.open("strings")
    assert [str(m) for m in back["method"].values] == ["phate", "tsne"]
    assert [str(v) for v in back["label"].values] == ["a", "bb"]
    assert float(back["v"].sel({"method": "tsne"})) == 2.0

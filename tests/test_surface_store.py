"""Planes and lines in a store: recorded settings, refusal of other settings, resume, replace;
the grid's centre cell; interpolation between two models."""

import numpy as np
import pytest

from lossatlas._errors import StoreMismatchError
from lossatlas.landscape import Landscape
from lossatlas.space import ParamSpace, random_directions
from lossatlas.store import RunDir, read_attr
from lossatlas.surface import center_index, center_value, line, plane
from lossatlas.store.settings import said

from helpers import DEVICE, blobs, mlp, train_briefly, Stop, stop_after


def count_calls(f, method):
    calls = []
    original = getattr(f, method)

    def spy(*args):
        calls.append(len(args[-1]))
        return original(*args)

    setattr(f, method, spy)
    return calls


@pytest.fixture(scope="module")
def data():
    X, y = blobs(n=60)
    return X.to(DEVICE), y.to(DEVICE)


def landscape(data, model=None, **kw):
    X, y = data
    kw.setdefault("samples", 40)
    return Landscape((model or mlp()).to(DEVICE), (X, y), device=DEVICE, **kw)


def plane_variants(data):
    """(setting named in the refusal, the changed call) for each setting of a plane in turn."""
    X, y = data
    f = landscape(data)
    shifted = f.origin + 0.01
    given = random_directions(mlp(), n=2, seed=9)
    return [
        ("center_fingerprint", lambda run: plane(f, shifted, span=0.5, steps=3, store=run)),
        ("directions.seed", lambda run: plane(f, span=0.5, steps=3, seed=1, store=run)),
        ("directions.norm", lambda run: plane(f, span=0.5, steps=3, norm="layer", store=run)),
        ("directions.ignore", lambda run: plane(f, span=0.5, steps=3, ignore=None, store=run)),
        ("directions.how", lambda run: plane(f, None, given, span=0.5, steps=3, store=run)),
        ("x", lambda run: plane(f, span=(-0.5, 0.6, -0.5, 0.5), steps=3, store=run)),
        ("y", lambda run: plane(f, span=0.5, steps=(3, 4), store=run)),
        ("bn", lambda run: plane(landscape(data, bn="batch"), span=0.5, steps=3, store=run)),
        ("samples.train", lambda run: plane(landscape(data, samples=30), span=0.5, steps=3, store=run)),
        ("data_fingerprint", lambda run: plane(landscape(data, seed=1), span=0.5, steps=3, store=run)),  # subset seed
        ("loss", lambda run: plane(landscape(data, loss="nll"), span=0.5, steps=3, store=run)),
        ("data_fingerprint", lambda run: plane(Landscape(mlp().to(DEVICE), (X + 1, y), samples=40, device=DEVICE),
                                               span=0.5, steps=3, store=run)),
        ("values", lambda run: plane(landscape(data, test=(X[10:55], y[10:55])), span=0.5, steps=3, store=run)),
    ]


def test_plane_refuses_each_changed_setting_and_replace_recomputes(data, tmp_path):
    f = landscape(data)
    run = RunDir(tmp_path)
    first = plane(f, span=0.5, steps=3, store=run)
    assert read_attr(run.open("surface"), "settings")["directions"]["seed"] == 0
    calls = count_calls(f, "evaluate_span")
    again = plane(f, span=0.5, steps=3, store=run)  # same settings: reused, nothing evaluated
    assert calls == [] and again.attrs["resumed_cells"] == 9
    np.testing.assert_array_equal(again.loss.values, first.loss.values)
    for setting, call in plane_variants(data):
        with pytest.raises(StoreMismatchError, match="replace=True") as err:
            call(run)
        assert setting in [d[0] for d in err.value.diffs], (setting, err.value.diffs)
        # each difference is said as settings.said words it: "seed: 0 stored, 1 asked", or for a
        # fingerprint what it pins ("the centre's weights ... differ from the stored ones")
        for key, old, new in err.value.diffs:
            assert said(key, old, new) in str(err.value)
    # replace=True starts afresh with the new settings, and gives what a fresh plane gives
    fresh = plane(f, span=0.5, steps=3, seed=1)
    redone = plane(f, span=0.5, steps=3, seed=1, store=run, replace=True)
    np.testing.assert_array_equal(redone.loss.values, fresh.loss.values)
    stored = run.open("surface")
    assert read_attr(stored, "settings")["directions"]["seed"] == 1
    np.testing.assert_array_equal(stored.loss.values, fresh.loss.values)


def line_variants(data):
    f = landscape(data)
    a, b = f.origin, f.origin + random_directions(mlp(), n=1, seed=0)[0]
    X, y = data
    return [
        ("start_fingerprint", lambda run: line(f, a + 0.01, b, steps=5, store=run)),
        ("end_fingerprint", lambda run: line(f, a, b + 0.01, steps=5, store=run)),
        ("t", lambda run: line(f, a, b, steps=9, store=run)),
        ("t", lambda run: line(f, a, b, steps=6, extent=(-1.0, 1.5), store=run)),
        ("bn", lambda run: line(landscape(data, bn="recompute"), a, b, steps=5, store=run)),
        ("samples.train", lambda run: line(landscape(data, samples=30), a, b, steps=5, store=run)),
        ("data_fingerprint", lambda run: line(landscape(data, seed=1), a, b, steps=5, store=run)),
        ("loss", lambda run: line(landscape(data, loss="nll"), a, b, steps=5, store=run)),
        ("values", lambda run: line(landscape(data, test=(X[10:55], y[10:55])), a, b, steps=5, store=run)),
    ]


def test_line_refuses_each_changed_setting_and_replace_recomputes(data, tmp_path):
    f = landscape(data)
    a, b = f.origin, f.origin + random_directions(mlp(), n=1, seed=0)[0]
    run = RunDir(tmp_path)
    first = line(f, a, b, steps=5, store=run)
    calls = count_calls(f, "evaluate")
    again = line(f, a, b, steps=5, store=run)
    assert calls == [] and again.attrs["resumed_cells"] == 5
    np.testing.assert_array_equal(again.loss.values, first.loss.values)
    for setting, call in line_variants(data):
        with pytest.raises(StoreMismatchError, match="replace=True") as err:
            call(run)
        assert setting in [d[0] for d in err.value.diffs], (setting, err.value.diffs)
    redone = line(f, a, b, steps=9, store=run, replace=True)
    assert redone.sizes["t"] == 9 and run.open("line").sizes["t"] == 9
    np.testing.assert_array_equal(run.open("line").loss.values, line(f, a, b, steps=9).loss.values)


def test_line_resumes_only_its_missing_points(data, tmp_path):
    f = landscape(data, test=(data[0][10:55], data[1][10:55]))
    a, b = f.origin, f.origin + random_directions(mlp(), n=1, seed=0)[0]
    full = line(f, a, b, steps=41)
    run = RunDir(tmp_path)
    with pytest.raises(Stop):
        line(f, a, b, steps=41, store=run, progress=stop_after(16))  # after the first block of 16
    mask = run.done_mask("line")
    assert mask.sum() == 16 and mask[:16].all()
    assert np.isnan(run.open("line").loss.values[16:]).all()
    calls = count_calls(f, "evaluate")
    resumed = line(f, a, b, steps=41, store=run)
    assert sum(calls) == 25  # only the missing points
    assert resumed.attrs["resumed_cells"] == 16 and resumed.done.values.all()
    for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(resumed[k].values, full[k].values)
        np.testing.assert_array_equal(run.open("line")[k].values, full[k].values)


def test_center_cell_only_where_the_grid_has_one(data, tmp_path):
    f = landscape(data)
    own = f.evaluate(f.origin)["loss"].item()
    odd = plane(f, span=0.5, steps=5, store=tmp_path, name="odd")
    assert odd.attrs["center_index"] == [2, 2] and center_index(odd) == (2, 2)
    assert center_value(odd) == odd.loss.values[2, 2] == pytest.approx(own, rel=1e-5)
    even = plane(f, span=0.5, steps=4, store=tmp_path, name="even")
    assert even.attrs["center_index"] is None and center_value(even) is None
    assert center_value(RunDir(tmp_path).open("even")) is None  # also as stored
    assert center_value(RunDir(tmp_path).open("odd"), "accuracy") == odd.accuracy.values[2, 2]
    # asymmetric ranges: the centre is wherever both coordinates are 0
    wide = plane(f, span=(-1.0, 2.0, -0.5, 0.5), steps=(4, 3))
    assert center_index(wide) == (1, 1) and center_value(wide) == pytest.approx(own, rel=1e-5)
    assert center_value(plane(f, span=(0.25, 1.0, -0.5, 0.5), steps=3)) is None
    # lines: t = 0 is the centre (the start)
    d = random_directions(mlp(), n=1, seed=0)[0]
    assert center_value(line(f, f.origin, f.origin + d, steps=5)) == pytest.approx(own, rel=1e-12)
    assert center_value(line(f, f.origin, f.origin + d, steps=4, extent=(0.25, 1.0))) is None
    # a centre cell not yet computed is NaN, not a neighbour's value
    with pytest.raises(Stop):
        plane(f, span=0.5, steps=5, store=tmp_path, name="cut", progress=stop_after(5))
    assert np.isnan(center_value(RunDir(tmp_path).open("cut")))


def test_interpolation_ends_are_each_models_own_values(data):
    X, y = data
    test = (X[40:], y[40:])
    a = train_briefly(mlp(seed=0), X.cpu(), y.cpu()).to(DEVICE)
    b = train_briefly(mlp(seed=1), X.cpu(), y.cpu()).to(DEVICE)
    fa = Landscape(a, (X[:40], y[:40]), test=test, bn="eval", device=DEVICE)
    fb = Landscape(b, (X[:40], y[:40]), test=test, bn="eval", device=DEVICE)
    ta, tb = ParamSpace(a).vector(a).to(DEVICE), ParamSpace(b).vector(b).to(DEVICE)
    ds = line(fa, ta, tb, steps=5, extent=(-0.5, 1.5))
    own_a, own_b = fa.evaluate(fa.origin), fb.evaluate(fb.origin)
    for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
        assert ds[k].sel(t=0.0).item() == pytest.approx(own_a[k].item(), rel=1e-6, abs=1e-9)
        assert ds[k].sel(t=1.0).item() == pytest.approx(own_b[k].item(), rel=1e-6, abs=1e-9)
    assert ds.loss.sel(t=0.5).item() > max(own_a["loss"].item(), own_b["loss"].item())
    assert ds.attrs["bn"] == "eval" and ds.attrs["has_batch_norm"] is False


def test_interpolation_with_batch_norm_says_which_statistics(data):
    X, y = data
    a = train_briefly(mlp(seed=0, bn=True), X.cpu(), y.cpu()).to(DEVICE)
    b = train_briefly(mlp(seed=1, bn=True), X.cpu(), y.cpu()).to(DEVICE)
    ta, tb = ParamSpace(a).vector(a).to(DEVICE), ParamSpace(b).vector(b).to(DEVICE)
    fa = Landscape(a, data, bn="recompute", device=DEVICE)
    ds = line(fa, ta, tb, steps=3, extent=(0.0, 1.0))
    assert ds.attrs["bn"] == "recompute" and "re-estimated" in ds.attrs["bn_statistics"]
    # recomputed statistics depend on the point alone: the end is model b's own recompute loss
    own_b = Landscape(b, data, bn="recompute", device=DEVICE).evaluate(tb)["loss"].item()
    assert ds.loss.sel(t=1.0).item() == pytest.approx(own_b, rel=1e-5)
    eval_line = line(Landscape(a, data, bn="eval", device=DEVICE), ta, tb, steps=3, extent=(0.0, 1.0))
    assert "not interpolated" in eval_line.attrs["bn_statistics"]

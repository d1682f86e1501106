"""Line and path grids hold t = 0 and t = 1 exactly (issue 19, item 2)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.cli import app
from lossatlas.connectivity import barrier_stats, connect
from lossatlas.grids import line_axis

from helpers import blobs, mlp, train_briefly

torch.set_num_threads(1)


@pytest.mark.parametrize("lo, hi, steps", [(-0.5, 1.5, 9), (-0.5, 1.5, 41), (-0.5, 1.5, 101), (0.0, 1.0, 61),
                                           (-1.0, 1.0, 7), (-1.0, 1.5, 6), (-0.37, 1.5, 188)])
def test_line_axis_holds_both_ends_exactly(lo, hi, steps):
    t = line_axis(lo, hi, steps)
    assert t.size == steps and t[0] == lo and t[-1] == hi
    assert 0.0 in t.tolist() and 1.0 in t.tolist()  # exact equality, not nearness
    np.testing.assert_allclose(np.diff(t), (hi - lo) / (steps - 1), rtol=1e-9)


@pytest.mark.parametrize("lo, hi, steps, hint", [(-0.5, 1.5, 11, "steps=9 or steps=13"),
                                                 (-0.5, 1.5, 40, "steps=37 or steps=41"),
                                                 (-1.0, 1.5, 5, "steps=6"),
                                                 (-0.5, 0.5, 4, "steps=3 or steps=5")])
def test_line_axis_refuses_steps_that_miss_an_end_and_names_those_that_work(lo, hi, steps, hint):
    with pytest.raises(InputError, match="puts no point at t = 0") as err:
        line_axis(lo, hi, steps)
    assert hint in str(err.value)
    for n in (int(s) for s in hint.replace("steps=", "").split(" or ")):
        assert 0.0 in line_axis(lo, hi, n).tolist()  # the counts it names do work


def test_line_axis_only_asks_for_the_ends_inside_the_extent():
    assert line_axis(0.2, 0.8, 3).tolist() == [0.2, 0.5, 0.8]
    assert 0.0 in line_axis(-1.0, 0.5, 4).tolist()


def test_line_refuses_a_grid_without_the_two_models():
    X, y = blobs(n=40)
    f = la.Landscape(mlp(), (X, y))
    end = f.origin + 0.1
    # before: steps=11 on (-0.5, 1.5) sampled t = -0.5, -0.3, ..., 1.5, never 0 nor 1 (the
    # nearest points were t = -0.1 and 0.9), so neither model was evaluated
    with pytest.raises(InputError, match="steps=9 or steps=13"):
        la.line(f, None, end, steps=11, extent=(-0.5, 1.5))
    ds = la.line(f, None, end, steps=9, extent=(-0.5, 1.5))
    assert float(ds.loss.sel(t=0.0)) == pytest.approx(float(f.evaluate(f.origin[None])["loss"][0]), rel=1e-6)
    assert float(ds.loss.sel(t=1.0)) == pytest.approx(float(f.evaluate(end[None])["loss"][0]), rel=1e-6)


def test_path_grids_hold_both_ends():
    X, y = blobs(n=40)
    a, b = train_briefly(mlp(seed=0), X, y, steps=20), train_briefly(mlp(seed=1), X, y, steps=20)
    f = la.Landscape(a, (X, y))
    ds = connect(f, la.ParamSpace(a).vector(a), la.ParamSpace(b).vector(b), method="linear", points=7)
    assert ds.t.values[0] == 0.0 and ds.t.values[-1] == 1.0
    assert ds.attrs["barrier"] == pytest.approx(barrier_stats(ds.t.values, ds.loss.values)["barrier"])


def _two_runs(tmp_path):
    runner = CliRunner()
    for name, seed in (("a", 0), ("b", 1)):
        r = runner.invoke(app, ["train", "--model", "mlp", "--data", "digits", "--subset", "300", "--epochs", "2",
                                "--init-seed", str(seed), "--device", "cpu", "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    return runner


def test_interpolate_refuses_steps_that_miss_the_models_and_reports_the_barrier_inside_them(tmp_path):
    runner = _two_runs(tmp_path)
    base = ["interpolate", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu", "--out", str(tmp_path / "i")]
    # before: exit code 0, and a line through t = -0.5, -0.3, ..., 1.5 with neither model on it
    r = runner.invoke(app, [*base, "--steps", "11"])
    # the command line names its own flag, not the library keyword
    assert r.exit_code == 2 and "--steps 9 or --steps 13" in " ".join(r.output.split())
    r = runner.invoke(app, [*base, "--steps", "11", "--extent", "0.2,1"])
    assert r.exit_code == 2 and "both models" in " ".join(r.output.split())
    r = runner.invoke(app, [*base, "--steps", "9"])
    assert r.exit_code == 0, r.output
    run = la.RunDir(tmp_path / "i")
    ds, summary = run.open("interpolation"), run.summary()["interpolation"]
    inside = ds.sel(t=slice(0.0, 1.0))
    want = barrier_stats(inside.t.values, inside.loss.values)
    assert summary["barrier"] == pytest.approx(want["barrier"])
    assert summary["saddle_height"] == pytest.approx(want["saddle_height"])
    assert summary["ends"]["loss"] == [float(ds.loss.sel(t=0.0)), float(ds.loss.sel(t=1.0))]
    # before: the summary held only "max_loss", the highest loss of the whole line, t = -0.5 and
    # 1.5 included (the height of extrapolated points), and printed it as "highest on the line"
    assert "max_loss" not in summary
    assert "barrier" in " ".join(r.output.split())

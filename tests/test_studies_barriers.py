"""The study ``barriers`` (Draxler et al.: linear, Bezier and AutoNEB paths between independent
minima, against width) in its quick settings: every stage runs and leaves its products, figures,
finite numbers and report, the paths end at the minima, and a rerun reuses everything."""

import json
import math

import pytest

from helpers import DEVICE

WIDTHS = (2, 4)
MINIMA = [f"w{w}-s{s}" for w in WIDTHS for s in (0, 1)]
PAIRS = [f"pair-w{w}-s0-s1" for w in WIDTHS]
METHODS = ("linear", "bezier", "neb")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, png_only):
    from lossatlas.studies import run_study
    from lossatlas.studies.barriers import QUICK

    assert QUICK.widths == WIDTHS and QUICK.seeds == (0, 1)
    out = tmp_path_factory.mktemp("study-barriers")
    return out, run_study("barriers", out, quick=True, device=DEVICE)


def test_products_figures_and_report(quick_study):
    out, _ = quick_study
    for name in MINIMA:
        assert (out / name / "trajectory.zarr").is_dir(), name
        assert (out / name / "model.pt").is_file(), name
    for pair in PAIRS:
        for method in METHODS:
            assert (out / pair / f"connect_{method}.zarr").is_dir(), (pair, method)
        assert (out / pair / "figures" / "connectivity.png").is_file(), pair
    assert (out / "figures" / "barriers_vs_width.png").is_file()
    html = (out / "report.html").read_text()
    assert "w2-s0" in html and PAIRS[0] in html


def test_summary_has_finite_barriers_for_every_pair_and_method(quick_study):
    out, summary = quick_study
    assert json.loads((out / "summary.json").read_text())["pairs"].keys() == summary["pairs"].keys()
    assert set(summary["minima"]) == set(MINIMA) and set(summary["pairs"]) == set(PAIRS)
    for pair, row in summary["pairs"].items():
        for method in METHODS:
            for key in ("barrier", "test_barrier", "saddle_loss", "max_test_error"):
                assert math.isfinite(row[method][key]), (pair, method, key)
            # the largest rise above the chord between the ends: at least the saddle above the
            # higher end, at most the highest loss above the lower end, never negative
            lo, hi = sorted(row[method]["ends_loss"])
            r = row[method]
            assert r["saddle_loss"] - lo + 1e-9 >= r["barrier"] >= max(0.0, r["above_higher_end"]) - 1e-9
    assert set(summary["widths"]) == {str(w) for w in WIDTHS}
    for entry in summary["widths"].values():
        for method in METHODS:
            assert entry[method]["pairs"] == 1
            assert entry[method]["max"] >= entry[method]["mean"] >= entry[method]["min"]
    assert set(summary["findings"]["shrinks_with_width"]) == set(METHODS)
    assert summary["barriers"]["timings"] and summary["barriers"]["total"]["wall_s"] > 0


def test_the_paths_end_at_the_minima(quick_study):
    """Every path (the trained Bezier curve and the AutoNEB chain too) starts and ends at the two
    minima: its end losses equal the minima's own, evaluated at their weights."""
    _, summary = quick_study
    minima = summary["minima"]
    for row in summary["pairs"].values():
        want = [minima[row["a"]]["loss"], minima[row["b"]]["loss"]]
        want_err = [minima[row["a"]]["test_error"], minima[row["b"]]["test_error"]]
        for method in METHODS:
            assert row[method]["ends_loss"] == pytest.approx(want, rel=1e-4, abs=1e-6), method
            assert row[method]["ends_test_error"] == pytest.approx(want_err, abs=1e-9), method


def test_a_rerun_reuses_the_minima_and_the_paths(quick_study):
    """A second run trains nothing and connects nothing: the minima's trajectories and the paths'
    stores keep their chunks (only consolidated metadata may be rewritten), the numbers stay."""
    out, summary = quick_study
    from lossatlas.studies import run_study

    def chunks():
        stores = [out / n / "trajectory.zarr" for n in MINIMA]
        stores += [out / p / f"connect_{m}.zarr" for p in PAIRS for m in METHODS]
        return {p: p.stat().st_mtime_ns for s in stores for p in s.rglob("*") if p.is_file() and p.name != "zarr.json"}

    before = chunks()
    again = run_study("barriers", out, quick=True, device=DEVICE)
    assert before and chunks() == before
    assert again["pairs"] == summary["pairs"]
    assert all(v["wall_s"] < 5 for k, v in again["barriers"]["timings"].items() if k.startswith("connect_"))


def test_a_path_of_other_settings_is_refused(quick_study):
    """A stored path whose recorded settings differ is refused by name, not silently reused."""
    out, _ = quick_study
    import dataclasses

    from lossatlas._errors import StoreMismatchError
    from lossatlas.studies.barriers import QUICK, run

    other = dataclasses.replace(QUICK, bezier_steps=QUICK.bezier_steps + 1)
    with pytest.raises(StoreMismatchError, match="steps"):
        run(out, device=DEVICE, settings=other)

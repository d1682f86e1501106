"""The study ``batch`` (Li et al.'s small vs large batch, sharpness, barriers) in its quick settings:
every stage runs and leaves its products, figures, summary numbers and report."""

import math

import pytest

from helpers import DEVICE


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, png_only):
    from lossatlas.studies import run_study

    out = tmp_path_factory.mktemp("study-batch")
    return out, run_study("batch", out, quick=True, device=DEVICE)


def test_products_figures_and_report(quick_study):
    out, _ = quick_study
    for name in ("sb-wd0", "lb-wd0", "sb-wd0.0005", "lb-wd0.0005", "sb-wd0-init1"):
        assert (out / name / "trajectory.zarr").is_dir(), name
        assert (out / name / "model.pt").is_file(), name
        assert (out / name / "hessian.zarr").is_dir(), name
    for name in ("sb-wd0", "lb-wd0", "sb-wd0.0005", "lb-wd0.0005"):
        assert (out / name / "slice.zarr").is_dir(), name
    for pair in ("pair-wd0", "pair-wd0.0005"):
        assert (out / pair / "interpolation.zarr").is_dir(), pair
    for pair in ("pair-seeds", "pair-wd0"):
        for method in ("linear", "bezier", "neb"):
            assert (out / pair / f"connect_{method}.zarr").is_dir(), (pair, method)
    assert (out / "sharpness.zarr").is_dir()
    for fig in ("interpolation", "slices", "weights"):
        assert (out / "figures" / f"{fig}.png").is_file(), fig
    html = (out / "report.html").read_text()
    assert "sb-wd0" in html and "pair-seeds" in html


def test_summary_has_the_numbers(quick_study):
    out, summary = quick_study
    import json

    assert json.loads((out / "summary.json").read_text())["minima"].keys() == summary["minima"].keys()
    rows = summary["minima"]
    assert set(rows) == {"sb-wd0", "lb-wd0", "sb-wd0.0005", "lb-wd0.0005", "sb-wd0-init1"}
    assert rows["sb-wd0"]["batch_size"] == 50 and rows["lb-wd0"]["batch_size"] == 400
    assert rows["lb-wd0.0005"]["weight_decay"] == 5e-4
    for name, row in rows.items():
        for key in ("test_error", "top_hessian_eigenvalue", "mean_rise", "basin_volume", "weights_norm",
                    "adaptive_sharpness"):
            assert math.isfinite(row[key]), (name, key)
        assert 0 <= row["test_error"] <= 1 and 0 <= row["basin_volume"] <= 1
        assert row["sharpness"] and all(math.isfinite(v) for v in row["sharpness"].values())
    for pair in ("pair-seeds", "pair-wd0"):
        barriers = summary["barriers"][pair]
        assert {"linear", "bezier", "neb"} <= set(barriers)
        # the largest rise above the chord between the ends: never negative (the old measure,
        # highest loss minus the mean of the ends, went down to minus half the gap of the ends)
        assert all(math.isfinite(barriers[k]) and barriers[k] >= 0 for k in ("linear", "bezier", "neb"))
    assert set(summary["findings"]["weight_norms"]) == {"wd0", "wd0.0005"}
    assert "adaptive_sharpness" in summary["findings"]["spearman_with_test_error"]
    assert summary["batch"]["timings"] and summary["batch"]["total"]["wall_s"] > 0


def test_a_rerun_reuses_the_minima(quick_study):
    """A second training of a stored minimum trains nothing again: its trajectory's chunks are
    not rewritten (only the consolidated metadata is) and it comes back with the same metrics."""
    out, summary = quick_study
    from lossatlas.studies.batch import QUICK, specs
    from lossatlas.studies.common import train_minimum

    def chunks():
        store = out / "sb-wd0" / "trajectory.zarr"
        return {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file() and p.name != "zarr.json"}

    before = chunks()
    m = train_minimum(out, specs(QUICK, DEVICE)["sb-wd0"], DEVICE, progress=False)
    assert before and chunks() == before
    assert m.final == pytest.approx({k: summary["minima"]["sb-wd0"][k] for k in m.final})

"""The minima study (Horoi et al.'s good, bad and memorization minima) in quick mode: every product,
figure and summary number, and the retraining-shape measure against runs of known shape."""

import json
import math

import numpy as np
import pytest
import xarray as xr
from helpers import DEVICE

from lossatlas.studies import STUDIES, run_study
from lossatlas.studies.minima import QUICK_SETTINGS, retraining_shape

# Five tiny minima, their J&R sets, embeddings, grid and naive samples and two reports: about
# 30 s of CPU; on a loaded shared machine the wall time can be longer.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def study(tmp_path_factory, png_only):
    out = tmp_path_factory.mktemp("minima") / "study"
    summary = run_study("minima", out, quick=True, device=str(DEVICE))
    return out, summary


def _in(x, lo, hi):
    return isinstance(x, float) and math.isfinite(x) and lo <= x <= hi


def test_registered():
    assert STUDIES["minima"] == "minima"


def test_every_minimum_of_both_initializations(study):
    out, summary = study
    s = QUICK_SETTINGS["demo"]
    n = s.jr_seeds * len(s.jr_step_sizes) * (s.jr_epochs + 1)
    assert set(summary["minima"]) == {"init0", "init1"}
    assert set(summary["minima"]["init0"]) == {"good", "bad", "memorization"}
    assert set(summary["minima"]["init1"]) == {"good", "bad"}
    for tag, rows in summary["minima"].items():
        for name, row in rows.items():
            assert row["jr_points"] == n
            assert row["total_persistence_d0"] >= 0 and math.isfinite(row["total_persistence_d0"])
            assert row["total_persistence_d1"] >= 0 and math.isfinite(row["total_persistence_d1"])
            assert _in(row["train_accuracy"], 0, 1) and _in(row["test_accuracy"], 0, 1)
            assert row["return_ratio"] > 0 and math.isfinite(row["return_ratio"])
            assert _in(row["outward_fraction"], 0, 1) and _in(row["cosine_outward_fraction"], 0, 1)
            assert row["cosine_return_ratio"] > 0 and math.isfinite(row["cosine_return_ratio"])
            assert set(row["embedding_scores"]) == set(s.methods)
            for scores in row["embedding_scores"].values():
                assert _in(scores["DeMAP"], -1, 1) and _in(scores["continuity"], 0, 1)
            jump = xr.open_zarr(out / (name if tag == "init0" else f"{name}-{tag}") / "jump.zarr")
            assert jump.sizes["point"] == n
    # the second initialization is another network: its weights differ from the first's
    a = xr.open_zarr(out / "good" / "trajectory.zarr").weights.isel(point=0).values
    b = xr.open_zarr(out / "good-init1" / "trajectory.zarr").weights.isel(point=0).values
    assert a.shape == b.shape and not np.allclose(a, b)


def test_retraining_travel_is_reported(study):
    _, summary = study
    s = QUICK_SETTINGS["demo"]
    travel = summary["study"]["retraining"]
    assert travel["steps"] == s.jr_steps()
    assert travel["steps_x_lr"] == pytest.approx(s.jr_steps() * s.jr_lr)
    assert travel["paper_steps_x_lr"] == pytest.approx(15.6)
    # Each minimum records its training's final rate and the retraining's (before: neither): this
    # study keeps the earlier protocol, lr 0.05 = 100 x the final 0.0005 (x0.1 twice).
    for rows in summary["minima"].values():
        for row in rows.values():
            assert row["final_lr"] == pytest.approx(s.lr * 0.01) and row["jr_lr"] == s.jr_lr == 0.05
            assert row["jr_batch_size"] == s.batch_size and row["jr_epochs"] == s.jr_epochs
            assert row["jr_lr_rule"] == "the settings' jr_lr"


def test_patterns_are_booleans_per_initialization(study):
    _, summary = study
    for tag in ("init0", "init1"):
        p = summary["patterns"][tag]
        for key in ("persistence_good_below_bad", "good_returns_closer_than_bad", "good_less_outward_than_bad",
                    "good_returns_closer_than_bad_cosine"):
            assert isinstance(p[key], bool)
        assert set(p["best_demap_method"].values()) <= set(QUICK_SETTINGS["demo"].methods)
    for key, value in summary["held_on_both_inits"].items():
        assert value == all(summary["patterns"][t][key] for t in ("init0", "init1"))


def test_grid_and_naive_samples_match_the_jr_set(study):
    out, summary = study
    n = summary["minima"]["init0"]["good"]["jr_points"]
    for kind in ("grid", "naive"):
        row = summary["sampling"][kind]
        assert row["points"] == n
        assert _in(row["phate_demap"], -1, 1)
        assert row["loss_min"] <= row["loss_median"] <= row["loss_max"]
        ds = xr.open_zarr(out / "good" / f"{kind}.zarr")
        assert ds.sizes["point"] == n and np.isfinite(ds.loss.values).all()
        emb = xr.open_zarr(out / "good" / f"embedding_{kind}.zarr")
        assert list(emb.method.values) == ["phate"] and emb.embedding.shape == (1, n, 2)
        assert np.isfinite(emb.embedding.values).all()
    assert summary["sampling"]["jr"]["points"] == n


def test_figures_summary_and_reports(study):
    out, summary = study
    for name in ("phate_minima", "phate_minima_loss", "phate_sampling", "persistence_init0", "persistence_init1"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["minima"] == summary["minima"]
    page = (out / "report.html").read_text()
    assert "embedding_grid" in page and "embedding_naive" in page and "memorization" in page
    assert "good-init1" in page and "bad-init1" in page  # the second initialization's runs, in the same report
    for name in ("good-init1", "bad-init1"):
        assert (out / name / "embedding.zarr").is_dir() and (out / name / "topology.zarr").is_dir()
        assert json.loads((out / name / "summary.json").read_text())["train"]["settings"]["init_seed"] == 1


def test_retraining_shape_of_known_runs():
    # A minimum at (1, 0, 0) and two runs: one shrinks straight back (Euclidean distances 1, 0.5,
    # 0.25: return ratio 0.25, never farther than its jump), one goes out to twice its jump
    # distance and ends at 1.5 times it (2, 4, 3).
    theta = np.array([1.0, 0, 0])
    paths = {0: [[1, 1, 0], [1, 0.5, 0], [1, 0.25, 0]], 1: [[1, 0, 2], [1, 0, 4], [1, 0, 3]]}
    w = np.array([p for s in (0, 1) for p in paths[s]], float)
    ds = xr.Dataset({"weights": (("point", "param"), w)},
                    coords={"seed": ("point", [0, 0, 0, 1, 1, 1]), "step_size": ("point", [1.0] * 6),
                            "epoch": ("point", [0, 1, 2, 0, 1, 2])})
    shape = retraining_shape(ds, theta)
    assert shape["runs"] == 2
    assert shape["return_ratio"] == pytest.approx((0.25 + 1.5) / 2)
    assert shape["outward_fraction"] == pytest.approx(0.5)
    assert shape["by_step_size"]["1"]["outward_fraction"] == pytest.approx(0.5)

    def cos_d(y, z):  # 1 - cos to (1, 0, 0) of (1, y, z)
        return 1 - 1 / math.sqrt(1 + y * y + z * z)

    ratio0 = cos_d(0.25, 0) / cos_d(1, 0)
    ratio1 = cos_d(0, 3) / cos_d(0, 2)
    assert shape["cosine_return_ratio"] == pytest.approx((ratio0 + ratio1) / 2)
    assert shape["cosine_outward_fraction"] == pytest.approx(0.5)
    assert shape["settled_return_ratio"] == pytest.approx((0.25 / 0.5 + 3 / 4) / 2)


def _newest(path):
    # the chunks (the metadata is rewritten when a finished product's attrs are refreshed)
    return max(p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")


def test_a_rerun_reuses_the_minima_and_samples(study):
    # Fails on a trainer that refuses its own finished run on a rerun (the demo's train_minimum
    # compared a record holding data_fingerprint: None with the stored source without it).
    out, summary = study
    stored = {p: _newest(out / p) for p in ("good/trajectory.zarr", "good/jump.zarr", "good/grid.zarr",
                                            "bad-init1/trajectory.zarr", "bad-init1/jump.zarr")}
    again = run_study("minima", out, quick=True, device=str(DEVICE))
    assert {p: _newest(out / p) for p in stored} == stored  # nothing retrained or resampled
    for tag, rows in summary["minima"].items():
        for name, row in rows.items():
            for key in ("train_accuracy", "test_loss", "return_ratio", "cosine_return_ratio", "jr_points"):
                assert again["minima"][tag][name][key] == row[key]

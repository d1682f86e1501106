"""The minima-protocol study (Horoi et al. at their protocol) in quick mode: every minimum retrained
at its own final learning rate for a quarter of its epochs, with the record of it; the sensitivity
sets on the same directions at the rates they name; persistence under both filtrations; resuming
and refusing; and the J&R default the studies share (the run's final rate, not the demo's 0.05)."""

import dataclasses
import json
import math

import numpy as np
import pytest
import xarray as xr
from helpers import DEVICE

from lossatlas import StoreMismatchError
from lossatlas.demo import FULL as DEMO_FULL
from lossatlas.demo import DemoSettings
from lossatlas.demo.analyses import retraining_of
from lossatlas.studies import STUDIES, run_study
from lossatlas.studies._protocol_stages import minimum_spec, rate_of
from lossatlas.studies.common import train_minimum
from lossatlas.studies.minima_protocol import FULL, QUICK, run

# Five tiny batch-norm ResNets, nine J&R sets and their embeddings: about 30 s of CPU.
pytestmark = pytest.mark.timeout(900)

NAMES = {"init0": {"good", "bad", "memorization"}, "init1": {"good", "bad"}}


@pytest.fixture(scope="module")
def study(tmp_path_factory, png_only):
    out = tmp_path_factory.mktemp("protocol") / "study"
    summary = run_study("minima-protocol", out, quick=True, device=str(DEVICE))
    return out, summary


def _newest(path):
    return max(p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")


def test_registered_and_full_settings_follow_the_papers():
    assert STUDIES["minima-protocol"] == "minima_protocol"
    assert not any(name.startswith("-") or name.startswith("_") for name in STUDIES)  # its helper modules are no studies
    # batch norm, SGD 0.9 at 0.1 with x0.1 steps, 200 epochs, final rate 1e-3, retrained at it
    assert (FULL.lr, FULL.momentum, FULL.good_epochs, FULL.jr_lr) == (0.1, 0.9, 200, None)
    assert FULL.milestones_of("good") == (100, 150) and FULL.jr_epochs == 20
    spec = minimum_spec(FULL, "good", 0, "cpu")
    assert spec.train.final_lr() == pytest.approx(1e-3)
    assert spec.source.augment and spec.train.weight_decay == 5e-4
    assert minimum_spec(FULL, "bad", 1, "cpu").name == "bad-init1"
    mem = minimum_spec(FULL, "memorization", 0, "cpu")
    assert mem.source.random_labels == 1.0 and mem.train.weight_decay == 0 and not mem.source.augment


def test_every_minimum_is_retrained_at_its_final_rate_and_records_it(study):
    out, summary = study
    n = QUICK.jr_seeds * len(QUICK.jr_step_sizes) * (1 + 1)  # a quarter of 4 epochs: 1
    assert {tag: set(rows) for tag, rows in summary["minima"].items()} == NAMES
    for tag, rows in summary["minima"].items():
        for name, row in rows.items():
            # milestones (2, 3) of 4 epochs: 0.1 -> 0.01 -> 0.001
            assert row["final_lr"] == pytest.approx(1e-3) and row["jr_lr"] == row["final_lr"]
            assert row["jr_batch_size"] == QUICK.batch_size and row["jr_epochs"] == 1 and row["train_epochs"] == 4
            assert 0 <= row["train_accuracy"] <= 1 and row["fits"] == (row["train_accuracy"] >= 0.99)
            jump = xr.open_zarr(out / (name if tag == "init0" else f"{name}-{tag}") / "jump.zarr")
            assert jump.sizes["point"] == n == row["jr_points"]
            trained = json.loads(jump.attrs["train"])
            assert trained["lr"] == pytest.approx(1e-3) and trained["batch_size"] == QUICK.batch_size
            assert trained["weight_decay"] == (5e-4 if name == "good" else 0.0) and trained["augment"] == (name == "good")
            assert row["distance_at_jump"] > 0 and math.isfinite(row["distance_farthest"])
            assert row["distance_farthest"] >= max(row["distance_at_jump"], row["distance_retrained"]) - 1e-9
            assert set(row["embedding_scores"]) == set(QUICK.methods)


def test_persistence_under_both_filtrations(study):
    _, summary = study
    for rows in summary["minima"].values():
        for row in rows.values():
            g, f = row["persistence_graph"], row["persistence_flag"]
            # D0 is the same under both; the flag complex only fills cycles, so D1 can only shrink
            assert g["total_persistence_d0"] == pytest.approx(f["total_persistence_d0"])
            assert g["components"] == f["components"] >= 1 and g["essential_d0"] == g["components"]
            assert f["total_persistence_d1"] <= g["total_persistence_d1"] + 1e-12
            assert g["capped_total_persistence_d0"] >= g["total_persistence_d0"]
            assert g["common_cap"] >= g["cap"] - 1e-9  # the common cap is the largest loss of all sets


def test_sensitivity_sets_share_directions_and_take_the_rates_they_name(study):
    out, summary = study
    sens = summary["sensitivity"]
    assert set(sens) == set(QUICK.sensitivity_minima)
    for name, by_rate in sens.items():
        assert list(by_rate) == list(QUICK.sensitivity_rates)
        final = by_rate["final"]["final_lr"]
        assert [by_rate[k]["jr_lr"] for k in by_rate] == pytest.approx([final, 10 * final, QUICK.lr])
        base = xr.open_zarr(out / name / "jump.zarr")
        for product in ("jump_lr-10x", "jump_lr-initial"):
            other = xr.open_zarr(out / name / f"{product}.zarr")
            jumps = base.epoch.values == 0
            # the same directions and seeds: identical jump points, retrained apart
            np.testing.assert_array_equal(other.weights.values[jumps], base.weights.values[jumps])
            assert not np.array_equal(other.weights.values[~jumps], base.weights.values[~jumps])
    assert summary["sensitivity_table"].count("\n") == 1 + sum(len(v) for v in sens.values())
    assert rate_of("10x final", 0.001, 0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        rate_of("twice", 0.001, 0.1)


def test_figures_timings_and_report(study):
    out, summary = study
    for name in summary["minima_protocol"]["figures"]:
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert {"phate_sensitivity", "persistence_init0_graph", "persistence_init1_flag"} <= set(
        summary["minima_protocol"]["figures"])
    timings = summary["minima_protocol"]["timings"]
    assert {"train_good", "jump_bad-init1", "embedding_memorization", "topology_good",
            "sensitivity_bad_initial"} <= set(timings)
    assert all(v["cpu_s"] >= 0 for v in timings.values())
    assert (out / "report.html").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["sensitivity"] == summary["sensitivity"]


def test_a_rerun_reuses_and_a_changed_setting_is_refused(study):
    out, summary = study
    stored = {p: _newest(out / p) for p in ("good/trajectory.zarr", "good/jump.zarr", "bad/jump_lr-initial.zarr",
                                            "bad-init1/jump.zarr")}
    again = run_study("minima-protocol", out, quick=True, device=str(DEVICE))
    assert {p: _newest(out / p) for p in stored} == stored  # nothing retrained or resampled
    for tag, rows in summary["minima"].items():
        for name, row in rows.items():
            assert again["minima"][tag][name]["return_ratio"] == row["return_ratio"]
    with pytest.raises(StoreMismatchError, match="epochs"):
        run(out, device=str(DEVICE), settings=dataclasses.replace(QUICK, jr_epochs=2))
    assert {p: _newest(out / p) for p in stored} == stored


def test_studies_retrain_at_the_runs_final_rate_by_default(study):
    # Before: DemoSettings().jr_lr was 0.05 for 10 epochs, the demo's *initial* rate whatever the
    # run's schedule; now None: the run's final rate, for a quarter of its epochs.
    out, _ = study
    assert DemoSettings().jr_lr is None and DemoSettings().jr_epochs is None
    m = train_minimum(out, minimum_spec(QUICK, "good", 0, str(DEVICE)), DEVICE)  # the stored run, reused
    r = retraining_of(m, DemoSettings())
    assert r["jr_lr"] == r["final_lr"] == pytest.approx(1e-3) and r["jr_epochs"] == 1
    assert r["retrain"] == dict(optimizer="sgd", lr=r["jr_lr"], momentum=0.9, batch_size=50, weight_decay=5e-4,
                                augment=True)
    # the demo and the old minima study keep the earlier protocol, pinned and said so
    earlier = retraining_of(m, DEMO_FULL)
    assert (earlier["jr_lr"], earlier["jr_epochs"], earlier["jr_lr_rule"]) == (0.05, 10, "the settings' jr_lr")


def test_distances_of_known_runs():
    import torch

    from lossatlas.studies._protocol_stages import distances

    # A minimum at the origin; run A goes 2 -> 1 -> 0.5 from it, run B 1 -> 3 -> 2 (farthest 3).
    w = np.array([[2, 0], [1, 0], [0.5, 0], [0, 1], [0, 3], [0, 2]], float)
    ds = xr.Dataset({"weights": (("point", "param"), w), "loss": ("point", [4.0, 2, 1, 6, 5, 3])},
                    coords={"seed": ("point", [0, 0, 0, 1, 1, 1]), "step_size": ("point", [1.0] * 6),
                            "epoch": ("point", [0, 1, 2, 0, 1, 2])})
    d = distances(ds, torch.zeros(2))
    assert d["distance_at_jump"] == pytest.approx(1.5) and d["distance_retrained"] == pytest.approx(1.25)
    assert d["distance_farthest"] == pytest.approx(2.5)  # (2 + 3) / 2
    assert d["jump_loss_mean"] == pytest.approx(5.0) and d["retrained_loss_mean"] == pytest.approx(2.0)

"""The study ``table1`` (Horoi et al. Table 1 and Fig. 3B: the sweep, then the prediction) in its
quick settings: it runs end to end, its summary holds every cell of the table, and a rerun (or a
study started from a finished sweep) trains and fits nothing."""

import json
import math

import pytest

from helpers import DEVICE

FEATURES = ("jr", "naive", "grid", "scrambled_jr")
TASKS = ("generalization", "weight_decay", "augmentation")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, png_only):
    from lossatlas.studies import run_study

    out = tmp_path_factory.mktemp("study-table1")
    return out, run_study("table1", out, quick=True, device=DEVICE)


def _nothing_trained_nor_fitted(monkeypatch):
    from lossatlas.sweep import driver, table

    monkeypatch.setattr(driver, "sample_network", lambda *a, **k: pytest.fail("trained a stored network"))
    monkeypatch.setattr(table, "predict", lambda *a, **k: pytest.fail("refit a stored cell"))
    monkeypatch.setattr(table, "permutation_test", lambda *a, **k: pytest.fail("reran the permutation test"))


def test_products_and_report(quick_study):
    out, _ = quick_study
    for name in ("sweep", "prediction", "permutation"):
        assert (out / f"{name}.zarr").is_dir(), name
    assert (out / "config" / "sweep.yaml").is_file() and (out / "config" / "table1.yaml").is_file()
    assert (out / "figures" / "persistence_vs_test_loss.png").is_file()
    html = (out / "report.html").read_text()
    assert "Prediction" in html


def test_summary_has_every_cell_of_the_table(quick_study):
    out, summary = quick_study
    t1 = summary["table1"]
    assert json.loads((out / "summary.json").read_text())["table1"]["table"] == t1["table"]
    assert t1["networks"] == 12 and t1["networks_trained_now"] == 12
    assert t1["cells_computed_now"] == 2 * len(FEATURES) * len(TASKS)  # both protocols
    for f in FEATURES:
        for task in TASKS:
            cell = t1["table"][f][task]
            assert 0 <= cell["mean"] <= 1 and math.isfinite(cell["sem"]), (f, task)
    assert t1["chance"] == pytest.approx({"generalization": 0.2, "weight_decay": 0.5, "augmentation": 0.5})
    for task in TASKS:
        assert 0 < t1["permutation"][task]["pvalue"] <= 1, task
    assert t1["spearman"]["networks"] == 12 and "d0_vs_test_loss" in t1["spearman"]
    assert "J&R sampling" in t1["text"] and t1["paper"]["jr"]["generalization"] == 39.2
    assert t1["timings"]["sweep"]["wall_s"] > 0 and "predict" in t1["timings"]


def test_a_rerun_trains_and_fits_nothing(quick_study, monkeypatch):
    out, summary = quick_study
    from lossatlas.studies import run_study

    _nothing_trained_nor_fitted(monkeypatch)
    again = run_study("table1", out, quick=True, device=DEVICE)["table1"]
    assert again["networks_trained_now"] == 0 and again["cells_computed_now"] == 0
    assert again["table"] == summary["table1"]["table"]
    assert again["permutation"] == summary["table1"]["permutation"]


def test_a_study_starts_from_a_finished_sweep_of_the_same_settings(quick_study, tmp_path, monkeypatch):
    """As the full study starts from the committed store: the stores are copied in, then only
    read back; a finished sweep of other settings is not taken."""
    out, summary = quick_study
    import dataclasses

    from lossatlas.studies.table1 import QUICK, run, start_from_store
    from lossatlas.store import RunDir

    _nothing_trained_nor_fitted(monkeypatch)
    got = run(tmp_path / "fresh", device=DEVICE, settings=dataclasses.replace(QUICK, start_from=str(out)))["table1"]
    assert got["started_from"] == str(out)
    assert got["networks_trained_now"] == 0 and got["cells_computed_now"] == 0
    assert got["table"] == summary["table1"]["table"]
    other = dataclasses.replace(QUICK, sweep={**QUICK.sweep, "epochs": 3}).config(str(DEVICE))
    assert start_from_store(RunDir(tmp_path / "other"), out, other) == []

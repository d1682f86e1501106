"""The optimizers study (SGD vs SGD+momentum vs Adam from five initializations) in quick mode, and
its figure of trajectories with the initializations as stars."""

import math

import numpy as np
import pytest
import xarray as xr
from helpers import DEVICE

from lossatlas.plot.optimizers import STAR_GID, plot_optimizer_panel
from lossatlas.studies import STUDIES, run_study
from lossatlas.studies.optimizers import OPTIMIZERS, QUICK_SETTINGS

# 15 tiny training runs, four embeddings and a report: about 25 s of CPU; longer on a loaded machine.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def study(tmp_path_factory, png_only):
    out = tmp_path_factory.mktemp("optimizers") / "study"
    return out, run_study("optimizers", out, quick=True, device=str(DEVICE))


def _stars(fig):
    return [sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == STAR_GID) for ax in fig.axes]


def test_registered():
    assert STUDIES["optimizers"] == "optimizers"


def test_all_fifteen_trajectories_are_embedded(study):
    out, summary = study
    cfg = QUICK_SETTINGS
    per_run = cfg["epochs"] + 1  # a snapshot at the start and after every epoch
    runs = len(cfg["seeds"]) * len(OPTIMIZERS)
    e = summary["embedding"]
    assert e["trajectories"] == runs == 15
    assert e["points"] == runs * per_run
    assert e["stars"] == [15] * len(cfg["methods"])
    emb = xr.open_zarr(out / "embedding_trajectories.zarr")
    assert list(emb.method.values) == list(cfg["methods"])
    assert emb.embedding.shape == (len(cfg["methods"]), runs * per_run, 2)
    assert np.isfinite(emb.embedding.values).all()
    assert len(np.unique(emb.run.values)) == 15 and len(np.unique(emb.optimizer.values)) == 3
    for scores in e["scores"].values():
        assert -1 <= scores["DeMAP"] <= 1 and 0 <= scores["continuity"] <= 1
    assert e["adam_alone"]["points"] == len(cfg["seeds"]) * per_run
    for value in e["final_points_silhouette"].values():
        assert -1 <= value <= 1
    assert set(e["distance_from_start_spearman"]) == set(cfg["methods"])
    alone = e["adam_alone"]["distance_from_start_spearman"]
    for value in [*e["distance_from_start_spearman"].values(), *alone.values()]:
        assert -1 <= value <= 1


def test_each_optimizer_from_the_same_five_initializations(study):
    out, summary = study
    assert set(summary["optimizers"]) == {"SGD", "SGD+momentum", "Adam"}
    for row in summary["optimizers"].values():
        assert row["runs"] == 5
        assert row["distance"] > 0 and row["path_length"] >= row["distance"] * (1 - 1e-6)
        assert 0 <= row["test_accuracy"] <= 1 and math.isfinite(row["train_loss"])
    for seed in QUICK_SETTINGS["seeds"]:
        first = [xr.open_zarr(out / f"seed{seed}" / f"trajectory_{k}.zarr").weights.isel(point=0).values
                 for k in OPTIMIZERS]
        assert all(np.array_equal(first[0], w) for w in first[1:])  # one initialization, three optimizers
    a = xr.open_zarr(out / "seed0" / "trajectory_sgd.zarr").weights.isel(point=0).values
    b = xr.open_zarr(out / "seed1" / "trajectory_sgd.zarr").weights.isel(point=0).values
    assert not np.allclose(a, b)
    losses = xr.open_zarr(out / "trajectories.zarr")
    assert "weights" not in losses and losses.sizes["point"] == summary["embedding"]["points"]


def test_figures_and_report(study):
    out, _ = study
    for name in ("optimizers_panel", "optimizers_phate", "adam_phate"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert "embedding_trajectories" in page and "seed4" in page


def test_panel_draws_one_star_and_one_line_per_run():
    rng = np.random.default_rng(0)
    runs = [(o, s) for o in ("sgd", "adam") for s in range(3)]
    n = 4
    samples = xr.Dataset(coords={"optimizer": ("point", [o for o, _ in runs for _ in range(n)]),
                                 "run": ("point", [f"{o}/{s}" for o, s in runs for _ in range(n)]),
                                 "step": ("point", [i for _ in runs for i in range(n)])})
    embs = {"PHATE": rng.normal(size=(len(runs) * n, 2)), "PCA": rng.normal(size=(len(runs) * n, 2))}
    fig = plot_optimizer_panel(embs, samples, scores={"PHATE": {"DeMAP": 0.5}})
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(axes) == 2
    assert _stars(fig)[:2] == [6, 6]
    assert all(len(ax.lines) == 6 for ax in axes)
    assert "DeMAP 0.50" in axes[0].get_title()
    # the star sits on each run's first step
    stars = next(c for c in axes[0].collections if c.get_gid() == STAR_GID).get_offsets()
    assert np.allclose(np.sort(np.asarray(stars), axis=0), np.sort(embs["PHATE"][::n], axis=0))


def _chunk_times(path):
    # the chunks only: the metadata is rewritten when a finished product's attrs are refreshed
    return {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"}


def test_a_rerun_reuses_the_trajectories(study):
    # Fails on a source check that compares a record holding data_fingerprint: None with the
    # stored source (which records the fingerprint): the rerun was refused.
    out, summary = study
    before = _chunk_times(out / "seed0" / "trajectory_adam.zarr")
    again = run_study("optimizers", out, quick=True, device=str(DEVICE))
    after = _chunk_times(out / "seed0" / "trajectory_adam.zarr")
    assert after == before and len(before) > 0  # no chunk rewritten: nothing retrained
    assert again["optimizers"] == summary["optimizers"]
    assert again["embedding"]["stars"] == summary["embedding"]["stars"]

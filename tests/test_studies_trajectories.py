"""The trajectories study (Li et al. section 7: optimizer paths on PCA directions) in quick mode:
the explained variance, the projected paths, the planes, the figures and a resuming rerun."""

import json

import numpy as np
import pytest
import xarray as xr
from helpers import DEVICE

from lossatlas.studies import STUDIES, run_study
from lossatlas.studies.trajectories import QUICK_SETTINGS

# Two tiny training runs and two 5 x 5 planes: about 20 s of CPU (most of it torch's first imports).
pytestmark = pytest.mark.timeout(600)

NAMES = [f"batch{b}" for b in QUICK_SETTINGS["batch_sizes"]]


@pytest.fixture(scope="module")
def study(tmp_path_factory, png_only):
    out = tmp_path_factory.mktemp("trajectories") / "study"
    return out, run_study("trajectories", out, quick=True, device=str(DEVICE))


def test_registered():
    assert STUDIES["trajectories"] == "trajectories"


def test_explained_variance_is_a_share(study):
    out, summary = study
    assert sorted(summary["paths"]) == sorted(NAMES)
    for name, row in summary["paths"].items():
        ratios = np.asarray(row["explained_variance"])
        assert ratios.shape == (2,)
        assert np.all((ratios > 0) & (ratios <= 1)) and ratios.sum() <= 1 + 1e-9
        assert ratios[0] >= ratios[1]  # principal directions come in order
        assert row["explained_total"] == pytest.approx(ratios.sum())
        assert summary["comparison"]["explained_total"][name] == pytest.approx(ratios.sum())
        plane = xr.open_zarr(out / name / "trajectory_plane.zarr")
        assert np.allclose(plane.attrs["explained"], ratios)


def test_one_projected_point_per_snapshot(study):
    out, summary = study
    for name in NAMES:
        traj = xr.open_zarr(out / name / "trajectory.zarr")
        n = traj.sizes["point"]
        assert n == QUICK_SETTINGS["epochs"] + 1  # the initialization and every epoch
        path = xr.open_zarr(out / name / "trajectory_path.zarr")
        assert path.pca.shape == path.random.shape == (n, 2)
        assert np.isfinite(path.pca.values).all() and np.isfinite(path.random.values).all()
        np.testing.assert_allclose(path.epoch.values, traj.epoch.values)
        row = summary["paths"][name]
        assert row["path_points"] == row["snapshots"] == n
        # the final weights are the plane's centre: the path ends at the origin
        np.testing.assert_allclose(path.pca.values[-1], 0.0, atol=1e-6)
        # Li et al. Fig. 8: two random directions see almost nothing of the path
        assert max(row["random_extent"]) < max(row["pca_extent"])


def test_planes_figures_and_report(study):
    out, summary = study
    steps = QUICK_SETTINGS["plane_steps"]
    for name in NAMES:
        plane = xr.open_zarr(out / name / "trajectory_plane.zarr")
        assert plane.loss.shape == (steps, steps) and np.isfinite(plane.loss.values).all()
        assert summary["paths"][name]["plane_points"] == steps * steps
        for fig in ("trajectory_pca", "trajectory_random"):
            assert (out / name / "figures" / f"{fig}.png").stat().st_size > 5_000
    assert json.loads((out / "summary.json").read_text())["paths"] == summary["paths"]
    page = (out / "report.html").read_text()
    assert all(name in page for name in NAMES)
    assert summary["study"]["total"]["cpu_s"] > 0


def _chunk_times(path):
    return {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"}


def test_a_rerun_reuses_runs_and_planes(study):
    out, summary = study
    watched = [out / NAMES[0] / "trajectory.zarr", out / NAMES[0] / "trajectory_plane.zarr"]
    before = [_chunk_times(p) for p in watched]
    again = run_study("trajectories", out, quick=True, device=str(DEVICE))
    assert [_chunk_times(p) for p in watched] == before and all(before)
    for name in NAMES:
        assert again["paths"][name]["explained_variance"] == summary["paths"][name]["explained_variance"]

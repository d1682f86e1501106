"""The study ``skip-width`` (Li et al. Sec. 6: skip connections and width) in its quick settings:
every network, plane and convexity map is stored, the figures and the report are written, the
numbers are finite, and a rerun reuses everything."""

import math

import numpy as np
import pytest

from helpers import DEVICE

NETWORKS = ("resnet8", "resnet8-noshort", "resnet14", "resnet14-noshort", "resnet14-noshort-lr0.01", "resnet8-w2")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, png_only):
    from lossatlas.studies import run_study

    out = tmp_path_factory.mktemp("study-skip-width")
    return out, run_study("skip-width", out, quick=True, device=DEVICE)


def test_every_network_has_its_plane_map_and_figures(quick_study):
    out, summary = quick_study
    assert set(summary["networks"]) == set(NETWORKS)
    for name in NETWORKS:
        for product in ("trajectory.zarr", "surface.zarr", "convexity.zarr", "model.pt"):
            assert (out / name / product).exists(), (name, product)
    for fig in ("depth_surfaces", "depth_convexity", "width_surfaces", "width_convexity"):
        assert (out / "figures" / f"{fig}.png").is_file(), fig
    html = (out / "report.html").read_text()
    assert "resnet14-noshort" in html


def test_numbers_are_finite_and_the_networks_are_what_they_say(quick_study):
    _, summary = quick_study
    rows = summary["networks"]
    assert rows["resnet8-noshort"]["shortcut"] is False and rows["resnet8"]["shortcut"] is True
    assert rows["resnet14"]["depth"] == 14 and rows["resnet8-w2"]["width"] == 2
    # the deep noshort network also at Li et al.'s smaller learning rate
    from lossatlas.store import RunDir

    out, _ = quick_study
    lrs = {n: RunDir(out / n).read_config("train")["train"]["lr"] for n in ("resnet14-noshort", "resnet14-noshort-lr0.01")}
    assert lrs == {"resnet14-noshort": 0.1, "resnet14-noshort-lr0.01": 0.01}
    assert set(summary["findings"]["skip_connections"]["resnet14"]["test_error"]) == {"shortcut", "noshort", "noshort_lr0.01"}
    # the same depth with and without shortcuts has the same parameters (option A adds none);
    # width 2 has about 4x as many
    assert rows["resnet8"]["parameters"] == rows["resnet8-noshort"]["parameters"]
    assert 3 < rows["resnet8-w2"]["parameters"] / rows["resnet8"]["parameters"] < 4.5
    for name, row in rows.items():
        assert 0 <= row["test_error"] <= 1
        assert 0 <= row["nonconvex_share"] <= 1 and 0 <= row["nonconvex_share_inner"] <= 1, name
        assert math.isfinite(row["convexity_inner_mean_ratio"]), name
        assert math.isfinite(row["convexity_mean_ratio"]) and row["convexity_mean_ratio"] >= 0, name
        c = row["convexity_center"]
        assert c["lambda_max"] >= c["lambda_min"] and c["ratio"] == pytest.approx(abs(c["lambda_min"] / c["lambda_max"]))
    f = summary["findings"]
    assert set(f["skip_connections"]) == {"resnet8", "resnet14"}
    assert len(f["width"]["test_error"]["values"]) == 2


def test_a_rerun_reuses_every_product(quick_study, monkeypatch):
    out, summary = quick_study
    from lossatlas.studies import run_study, skip_width

    def refuse(*a, **k):
        raise AssertionError("a rerun must reuse the stored convexity maps")

    monkeypatch.setattr(skip_width, "convexity_map", refuse)
    again = run_study("skip-width", out, quick=True, device=DEVICE)
    for name in NETWORKS:
        assert again["networks"][name]["convexity_mean_ratio"] == summary["networks"][name]["convexity_mean_ratio"]
        assert again["networks"][name]["test_error"] == summary["networks"][name]["test_error"]


def test_nonconvex_share_reads_the_sign_of_the_curvature():
    from lossatlas.studies.skip_width import nonconvex_share

    x = np.linspace(-1, 1, 21)
    h = x[1] - x[0]
    assert nonconvex_share(np.add.outer(x**2, 3 * x**2), h) == 0.0
    assert nonconvex_share(np.add.outer(x**2, -(x**2)), h) == 1.0  # a saddle everywhere
    # a ridge along x = 0 (|x| is flat but kinked, cos has negative curvature near 0)
    ridge = np.add.outer(np.cos(3 * x), x**2)
    share = nonconvex_share(ridge, h)
    assert 0.2 < share < 0.8
    z = np.add.outer(x**2, x**2)
    z[10, 10] = np.nan  # NaN cells and their neighbours are left out, not counted
    assert nonconvex_share(z, h) == 0.0

"""The study ``alignment`` (barriers before and after permutation alignment, against width) in its
quick settings: every stage runs and leaves its products and figures, an aligned path ends at
the same loss as the unaligned one (the aligned copy computes the same function), the recorded
alignment is refused when it changes, and a rerun reuses every path."""

import json
import math

import pytest

from helpers import DEVICE

FAMILIES = {"mlp": (4,), "resnet": (2,), "smallcnn": (2,)}
PAIRS = [f"{fam}-pair-w{w}-s0-s1" for fam, widths in FAMILIES.items() for w in widths]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, png_only):
    from lossatlas.studies import run_study
    from lossatlas.studies.alignment import QUICK

    assert QUICK.mlp_widths == FAMILIES["mlp"] and QUICK.resnet_channels == FAMILIES["resnet"]
    assert QUICK.cnn_widths == FAMILIES["smallcnn"] and QUICK.seeds == (0, 1)
    out = tmp_path_factory.mktemp("study-alignment")
    return out, run_study("alignment", out, quick=True, device=DEVICE)


def test_products_figures_and_summary(quick_study):
    import lossatlas as la

    out, summary = quick_study
    assert set(summary["pairs"]) == set(PAIRS)
    assert json.loads((out / "summary.json").read_text())["pairs"].keys() == summary["pairs"].keys()
    for pair, row in summary["pairs"].items():
        methods = ("linear", "bezier") if row["family"] != "smallcnn" else ("linear",)
        assert set(row["paths"]) == set(methods)
        assert set(row["paths"]["linear"]) == {"none", "weights", "activations"}
        run = la.RunDir(out / pair)
        for method in methods:
            for variant, r in row["paths"][method].items():
                assert math.isfinite(r["barrier"]) and r["barrier"] >= 0, (pair, method, variant)
                # Both paths end at b or at b's aligned copy: the same function, the same loss.
                assert r["ends_loss"][1] == pytest.approx(row["paths"][method]["none"]["ends_loss"][1], rel=1e-4)
                assert run.exists(f"connect_{method}_{variant}")
        assert (out / pair / "figures" / "connectivity.png").is_file()
    assert (out / "figures" / "alignment_vs_width.png").is_file()
    assert set(summary["findings"]) == set(FAMILIES)
    assert set(summary["widths"]["mlp"]) == {"4"}


def test_rerun_reuses_every_path_and_a_changed_alignment_is_refused(quick_study):
    import lossatlas as la
    from lossatlas.studies import run_study

    out, summary = quick_study
    again = run_study("alignment", out, quick=True, device=DEVICE)
    for pair, row in summary["pairs"].items():
        assert again["pairs"][pair]["paths"] == {
            m: {v: {**r, "align_s": again["pairs"][pair]["paths"][m][v]["align_s"]} for v, r in p.items()}
            for m, p in row["paths"].items()}
    # The stored weight-matched line records its permutation: another one is refused.
    run = la.RunDir(out / PAIRS[0])
    with pytest.raises(la.StoreMismatchError, match="alignment"):
        run.check("connect_linear_weights", {"alignment": {"method": "weights", "fingerprint": "0" * 16}}, partial=True)

"""Ctrl-C on a long command: it says what was kept and how to go on, exits with 130, and the
same command run again resumes."""

import re

import pytest
from typer.testing import CliRunner

import lossatlas.progress as progress
from lossatlas.cli import app

runner = CliRunner()
SMALL = ("--model", "mlp", "--data", "digits", "--subset", 200, "--device", "cpu")


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    r.text = " ".join(r.output.split())  # rich may wrap long lines
    return r


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Press Ctrl-C once ``n`` units of the next progress bar are done (from inside the work)."""
    def arm(n):
        counting = progress._counting

        def interrupting(advance, total, description):
            counted = counting(advance, total, description)

            def advance_then_stop(k=1):
                counted(k)
                if progress.LAST["done"] >= n:
                    monkeypatch.setattr(progress, "_counting", counting)  # once
                    raise KeyboardInterrupt

            return advance_then_stop

        monkeypatch.setattr(progress, "_counting", interrupting)

    return arm


def test_ctrl_c_on_surface_says_what_was_kept_and_the_rerun_resumes(tmp_path, ctrl_c_after):
    out = tmp_path / "run"
    args = ("surface", *SMALL, "--steps", 3, "--train-epochs", 0, "--strategy", "loop", "--workers", 1, "--out", out)
    ctrl_c_after(4)
    r = invoke(*args)
    # old: a KeyboardInterrupt traceback and exit code 1
    assert r.exit_code == 130, r.text
    done = re.search(r"interrupted during plane 3x3: (\d) of 9 done", r.text)
    assert done and 4 <= int(done[1]) < 9, r.text
    assert f"stored in {out}" in r.text and "run the same command again to resume" in r.text
    r = invoke(*args)
    assert r.exit_code == 0, r.text
    assert f"resumed: {done[1]} of 9 cells done" in r.text


def test_ctrl_c_on_train_and_the_rerun_says_where_it_resumed(tmp_path, ctrl_c_after):
    out = tmp_path / "run"
    args = ("train", *SMALL, "--epochs", 4, "--batch-size", 50, "--out", out)
    ctrl_c_after(2)
    r = invoke(*args)
    assert r.exit_code == 130, r.text
    assert "interrupted during train 1 run: 2 of 4 done" in r.text and "run the same command again to resume" in r.text
    r = invoke(*args)
    assert r.exit_code == 0, r.text
    assert "resumed from epoch 2 of 4" in r.text  # old: nothing said


def test_topology_shows_its_stages_and_ctrl_c_names_the_stage(tmp_path, ctrl_c_after):
    # old: topology showed nothing while PHATE and the persistence ran (issue 20), and Ctrl-C
    # named no stage
    run = tmp_path / "run"
    assert invoke("train", *SMALL, "--epochs", 2, "--out", run).exit_code == 0
    assert invoke("jump", run, "--seeds", 2, "--step-sizes", "0.5,1", "--epochs", 1).exit_code == 0
    ctrl_c_after(1)  # once PHATE is done
    r = invoke("topology", run, "--k", 4)
    assert r.exit_code == 130, r.text
    assert re.search(r"interrupted during topology of \d+ jump samples: 1 of 3 done", r.text), r.text
    assert "start it over" in r.text and not (run / "topology.zarr").exists()
    r = invoke("topology", run, "--k", 4)
    assert r.exit_code == 0 and (run / "topology.zarr").exists(), r.text

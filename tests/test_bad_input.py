"""Bad input through the command line: each is refused with an error that names the fix, before
work starts, and nothing already computed is lost."""

import socket
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from lossatlas.cli import app
from test_execute import write_slowpkg

runner = CliRunner()
SMALL = ["--data", "digits", "--subset", "200", "--device", "cpu"]
MLP = ["--model", "mlp", *SMALL]
PLANE = ["--steps", "3", "--train-epochs", "0", "--strategy", "loop"]


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    r.text = " ".join(r.output.split())  # rich may wrap long lines
    return r


@pytest.fixture
def userpkg(tmp_path, monkeypatch):
    write_slowpkg(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("slowpkg", None)
    import slowpkg

    return slowpkg


def test_malformed_train_config_names_the_field(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model: mlp\ndata: digits\nlr: fast\nepochs: 1\n")
    r = invoke("train", "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "lr" in r.text and "fast" in r.text
    assert not (tmp_path / "run").exists()


def test_malformed_source_of_a_run_names_the_field(tmp_path):
    run = tmp_path / "run"
    (run / "config").mkdir(parents=True)
    (run / "config" / "source.yaml").write_text("model: mlp\ndata: digits\nsubset: many\n")
    r = invoke("surface", run, *PLANE)
    assert r.exit_code == 2 and "subset" in r.text and "many" in r.text


def test_model_factory_that_cannot_be_imported(tmp_path):
    r = invoke("surface", "--model", "no_such_package.nets:make", *SMALL, *PLANE, "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert "cannot import the model factory 'no_such_package.nets:make'" in r.text and "Check the module path" in r.text


def test_checkpoint_of_another_architecture_lists_the_mismatched_keys(tmp_path, userpkg):
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).state_dict(), tmp_path / "other.pt")
    r = invoke("surface", "--model", "slowpkg:make", "--checkpoint", tmp_path / "other.pt", *SMALL, *PLANE,
               "--out", tmp_path / "run")
    assert r.exit_code == 2 and "does not match the model" in r.text
    assert "net.1.weight" in r.text and "1.weight" in r.text and "Check that the model factory" in r.text


class _Payload:
    """Unpickling this runs code: it would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_that_needs_unpickling_code_is_refused_and_its_code_never_runs(tmp_path, userpkg):
    marker = tmp_path / "pwned.txt"
    torch.save({"state_dict": userpkg.make().state_dict(), "extra": _Payload(marker)}, tmp_path / "evil.pt")
    assert not marker.exists()
    r = invoke("surface", "--model", "slowpkg:make", "--checkpoint", tmp_path / "evil.pt", *SMALL, *PLANE,
               "--out", tmp_path / "run")
    assert r.exit_code == 2 and "weights_only=True" in r.text and "Save plain tensors" in r.text
    assert not marker.exists()  # the pickled code never ran


def test_nan_or_inf_in_the_weights(tmp_path, userpkg):
    state = userpkg.make().state_dict()
    state["net.1.weight"][0, 0] = float("nan")
    state["net.3.bias"][1] = float("inf")
    torch.save(state, tmp_path / "nan.pt")
    for cmd in (["surface", *PLANE], ["jump", "--epochs", "0", "--seeds", "1"]):
        r = invoke(*cmd, "--model", "slowpkg:make", "--checkpoint", tmp_path / "nan.pt", *SMALL, "--out", tmp_path / cmd[0])
        assert r.exit_code == 2, r.output
        assert "NaN or infinite weights" in r.text and "net.1.weight" in r.text and "net.3.bias" in r.text
        assert "earlier, finite epoch" in r.text
        assert not (tmp_path / cmd[0] / "surface.zarr").exists() and not (tmp_path / cmd[0] / "jump.zarr").exists()


def test_empty_or_mismatched_data(tmp_path):
    torch.save({"X": torch.randn(10, 64), "y": torch.arange(9) % 10}, tmp_path / "mismatched.pt")
    torch.save({"X": torch.zeros(0, 64), "y": torch.zeros(0, dtype=torch.long)}, tmp_path / "empty.pt")
    for name in ("mismatched", "empty"):
        r = invoke("surface", "--model", "mlp", "--data", tmp_path / f"{name}.pt", *PLANE, "--device", "cpu",
                   "--out", tmp_path / name)
        assert r.exit_code == 2, r.output
        assert "X and y must be non-empty and of equal length" in r.text


def test_grid_that_will_not_fit_in_memory_is_estimated_before_any_work(tmp_path):
    r = invoke("surface", *MLP, "--steps", 2_000_000, "--train-epochs", "0", "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert "2000000 x 2000000 cells needs about" in r.text and "GiB" in r.text and "use fewer steps" in r.text
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_in_memory_sampling_that_will_not_fit_advises_a_store():
    from lossatlas.jump import grid_sample, naive_sample
    from lossatlas.landscape import Landscape
    from lossatlas.sources import Source

    net, d, dev = Source(model="mlp", data="digits", subset=200, device="cpu").build()
    f = Landscape(net, d.train, device=dev)
    from lossatlas._errors import InputError

    with pytest.raises(InputError, match="give store= to stream them to disk"):
        naive_sample(f, n_points=4 * 10**8, step_sizes=(1.0,) * 4)
    with pytest.raises(InputError, match="give store= to stream them to disk"):
        grid_sample(f, n_points=4 * 10**8)


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r = invoke("surface", *MLP, *PLANE, "--out", blocker / "run")
    assert r.exit_code == 2 and "cannot create the output directory" in r.text and "is a file" in r.text


def test_scheduler_address_that_does_not_answer(tmp_path, monkeypatch):
    import lossatlas.execute.cluster as cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2.0)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = invoke("surface", *MLP, *PLANE, "--scheduler", f"tcp://127.0.0.1:{port}", "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 2 s" in r.text and "check the address" in r.text


def test_dask_and_scheduler_are_checked_before_work(tmp_path):
    r = invoke("surface", *MLP, *PLANE, "--dask", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "give one of them" in r.text
    r = invoke("jump", *MLP, "--dask", "0", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "--dask takes a positive number" in r.text
    r = invoke("hessian", *MLP, "--dask", "2", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "give --map too" in r.text
    assert not any((tmp_path / n).exists() for n in "abc")


def test_run_directory_written_by_a_newer_lossatlas_is_refused_and_kept(tmp_path):
    run = tmp_path / "run"
    assert invoke("surface", *MLP, *PLANE, "--out", run).exit_code == 0
    from lossatlas.store.version import VERSION_FILE, installed_version

    assert installed_version() in (run / VERSION_FILE).read_text()
    before = xr.open_zarr(run / "surface.zarr").load()
    (run / VERSION_FILE).write_text("lossatlas_version: 99.0.0\n")
    for cmd in (["surface", run, *PLANE, "--replace"], ["jump", run, "--epochs", "0"], ["hessian", run]):
        r = invoke(*cmd)
        assert r.exit_code == 2, r.output
        assert "written by lossatlas 99.0.0, newer than the installed" in r.text and "Upgrade lossatlas" in r.text
    after = xr.open_zarr(run / "surface.zarr").load()
    xr.testing.assert_identical(before, after)  # nothing computed was lost, not even with --replace


def test_diverged_retraining_is_recorded_and_flagged_not_fatal(tmp_path):
    r = invoke("jump", "--model", "mlp", *SMALL, "--seeds", "1", "--step-sizes", "1.0", "--epochs", "2",
               "--lr", "1e12", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ds = xr.open_zarr(tmp_path / "run" / "jump.zarr")
    bad = int((~np.isfinite(ds.loss.values)).sum())
    assert bad >= 1 and summary["sampling_jump"]["nonfinite"] == bad
    assert "NaN or infinite loss" in r.text

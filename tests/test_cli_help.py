"""Help and interfaces through the command line: flags shown as flags, every option explained
with its default, models given as checkpoints, the loss as an option, and messages in the
command line's words."""

import pytest
import torch
import typer
from typer.testing import CliRunner

from lossatlas.cli import app
from test_cli_rundir import PLANE, _mlp_checkpoint, _pt_data, invoke, snapshot

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_and_every_option_with_its_default(command):
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "<bool>" not in r.output  # old: "--replace <bool>", "--help <bool>"
    assert "[[" not in r.output  # old: "surface [OPTIONS] [[RUN]]"
    cmd = typer.main.get_command(app).commands[command]
    for p in cmd.params:
        if p.param_type_name != "option" or p.name == "help":
            continue
        assert p.help, f"{command} {p.opts[0]} says nothing"  # old: train --lr, --epochs, ... had no help
        if p.default is None and not p.is_flag:
            assert "default" in p.help or "needed unless" in p.help, f"{command} {p.opts[0]}: no default said"


def test_sharpness_and_connect_take_checkpoints_and_the_loss(tmp_path):
    data = _pt_data(tmp_path / "d.pt")
    a, b = _mlp_checkpoint(tmp_path / "a.pt", data, 0), _mlp_checkpoint(tmp_path / "b.pt", data, 1)
    src = ("--model", "mlp", "--data", data, "--device", "cpu")
    # old: "a.pt is not a run directory" (sharpness, connect took run directories only)
    r = invoke("connect", a, b, *src, "--points", 5, "--loss", "nll", "--out", tmp_path / "c")
    assert r.exit_code == 0, r.text
    import xarray as xr

    path = xr.open_zarr(tmp_path / "c" / "connect_linear.zarr")
    assert "nll" in path.attrs["command"]
    r = invoke("sharpness", a, b, *src, "--subspace", 0, "--directions", 2, "--eps", "1e-3", "--out", tmp_path / "s")
    assert r.exit_code == 0, r.text
    assert "sharpness and flatness of 2 minima" in r.text
    r = invoke("sharpness", a, b, *src, "--subspace", 0, "--directions", 2, "--eps", "1e-3", "--seed", 1,
               "--out", tmp_path / "s")
    assert r.exit_code == 2 and "seed: 0 stored, 1 asked" in r.text and "--replace" in r.text
    r = invoke("connect", a, b, *src, "--points", 5, "--loss", "hinge", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "--loss takes one of" in r.text and "cross_entropy" in r.text


def test_library_keywords_become_the_commands_options(tmp_path):
    # old: "bn='recompute' needs strategy='loop'" (Python keywords on the command line)
    from lossatlas.sources import Source

    src = Source(model="resnet20", data="digits", subset=50)
    torch.save(src.build_model(src.build_data()).state_dict(), tmp_path / "r20.pt")
    r = invoke("surface", "--model", "resnet20", "--data", "digits", "--subset", 50, "--checkpoint", tmp_path / "r20.pt",
               "--dims", 1, "--steps", 3, "--bn", "recompute", "--strategy", "vmap", "--device", "cpu", "--out", tmp_path / "r")
    assert r.exit_code == 2, r.text
    assert "--bn recompute needs --strategy loop" in r.text and "bn='recompute'" not in r.text
    assert not (tmp_path / "r").exists()  # refused after the source was recorded: undone
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--samples", 100000, *PLANE, "--dims", 2,
               "--out", tmp_path / "r")
    assert r.exit_code == 2 and "leave out --samples" in r.text and "samples=None" not in r.text


def test_named_surfaces_side_by_side_and_a_directions_file_of_other_settings(tmp_path):
    data = _pt_data(tmp_path / "d.pt")
    ck = _mlp_checkpoint(tmp_path / "ck.pt", data)
    base = ("surface", "--model", "mlp", "--data", data, "--checkpoint", ck, *PLANE, "--out", tmp_path / "run")
    assert invoke(*base).exit_code == 0
    r = invoke(*base, "--seed", 1)
    assert r.exit_code == 2 and "seed: 0 stored, 1 asked" in r.text and "--name" in r.text
    r = invoke(*base, "--seed", 1, "--name", "seed1")
    assert r.exit_code == 0, r.text
    assert (tmp_path / "run" / "line.zarr").is_dir() and (tmp_path / "run" / "line_seed1.zarr").is_dir()
    assert any(p.name.startswith("line_seed1") for p in (tmp_path / "run" / "figures").iterdir())
    dirs = tmp_path / "dirs.pt"
    assert invoke(*base, "--name", "shared", "--directions", dirs, "--seed", 2).exit_code == 0
    before = snapshot(tmp_path / "run")
    r = invoke(*base, "--name", "other", "--directions", dirs, "--seed", 3, "--norm", "layer")
    # old: the file's seed-2 filter-normalized directions were used silently under seed 3, layer
    assert r.exit_code == 2, r.text
    assert f"directions: norm filter stored in {dirs}, norm layer asked" in r.text and "seed 2 stored" in r.text
    assert "--norm filter --seed 2" in r.text
    assert snapshot(tmp_path / "run") == before

"""The run directory through the command line: a refused command leaves --out as it found it, a
run records absolute paths and its checkpoint's content, and no product made with other settings
is replaced without --replace."""

import os

import pytest
import torch
from typer.testing import CliRunner

from lossatlas.cli import app

runner = CliRunner()
PLANE = ("--dims", 1, "--steps", 3, "--train-epochs", 0, "--strategy", "loop", "--device", "cpu")


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    r.text = " ".join(r.output.split())  # rich may wrap long lines
    return r


def snapshot(path):
    """Every file under ``path`` with its bytes (the directory as a user finds it)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _pt_data(path, n=60, n_test=20):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n + n_test) % 10
    X = torch.randn(10, 64, generator=gen)[y] + 0.5 * torch.randn(n + n_test, 64, generator=gen)
    torch.save({"X": X[:n], "y": y[:n], "X_test": X[n:], "y_test": y[n:]}, path)
    return path


def _mlp_checkpoint(path, data, seed=0):
    from lossatlas.sources import Source

    src = Source(model="mlp", data=str(data), init_seed=seed)
    torch.save(src.build_model(src.build_data()).state_dict(), path)
    return path


@pytest.mark.parametrize("bad", [("--model", "mlpp"), ("--subset", 100000)])
def test_a_refused_command_leaves_out_as_it_found_it(tmp_path, bad):
    # Old code: the typo wrote config/source.yaml first, and the corrected command was refused
    # with "records another source (model: mlpp there, mlp now)".
    data = _pt_data(tmp_path / "d.pt")
    out = tmp_path / "run"
    good = {"--model": "mlp", "--data": data, "--subset": 40}
    args = [a for k, v in {**good, bad[0]: bad[1]}.items() for a in (k, v)]
    r = invoke("surface", *args, *PLANE, "--out", out)
    assert r.exit_code == 2, r.text
    assert not out.exists()  # old: out/config/source.yaml existed
    ok = [a for k, v in good.items() for a in (k, v)]
    r = invoke("surface", *ok, *PLANE, "--out", out)
    assert r.exit_code == 0, r.text
    # A refusal on an existing run leaves every file of it byte for byte.
    before = snapshot(out)
    r = invoke("surface", *args, *PLANE, "--seed", 3, "--out", out)
    assert r.exit_code == 2
    assert snapshot(out) == before
    r = invoke("surface", *ok, *PLANE, "--out", out)
    assert r.exit_code == 0, r.text


def test_a_bare_command_says_what_it_needs_instead_of_training(tmp_path):
    r = invoke("surface", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "needs a model and its data" in r.text and "--model" in r.text and "--data" in r.text
    assert not (tmp_path / "run").exists()  # old: trained an mlp on digits for 20 epochs
    r = invoke("train", "--data", "digits", "--out", tmp_path / "t")
    assert r.exit_code == 2 and "--model" in r.text and not (tmp_path / "t").exists()


def test_a_run_with_relative_paths_works_from_another_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    _pt_data(work / "mydata.pt")
    _mlp_checkpoint(work / "ck.pt", work / "mydata.pt")
    monkeypatch.chdir(work)
    r = invoke("surface", "--model", "mlp", "--data", "mydata.pt", "--checkpoint", "ck.pt", *PLANE, "--out", "run")
    assert r.exit_code == 0, r.text
    import yaml

    src = yaml.safe_load((work / "run" / "config" / "source.yaml").read_text())
    assert src["data"] == str(work / "mydata.pt") and src["checkpoint"] == str(work / "ck.pt")  # old: "mydata.pt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = invoke("surface", work / "run", *PLANE, "--dims", 2)
    # old: "the data must be one of [...]... got 'mydata.pt'"
    assert r.exit_code == 0, r.text


def test_an_overwritten_checkpoint_is_refused_by_every_command_on_the_run(tmp_path):
    data = _pt_data(tmp_path / "d.pt")
    ck = _mlp_checkpoint(tmp_path / "ck.pt", data)
    run = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", "--data", data, "--checkpoint", ck, *PLANE, "--out", run)
    assert r.exit_code == 0, r.text
    _mlp_checkpoint(ck, data, seed=1)  # other weights under the same name
    for cmd in (["hessian", run, "--top", 1, "--no-smallest", "--trace-samples", 0, "--no-density"],
                ["surface", run, *PLANE],
                ["surface", "--model", "mlp", "--data", data, "--checkpoint", ck, *PLANE, "--out", run]):
        before = snapshot(run)
        r = invoke(*cmd)
        # old: hessian measured the new weights under the old run (exit 0)
        assert r.exit_code == 2, (cmd[0], r.text)
        assert f"the checkpoint {ck} was overwritten" in r.text
        assert snapshot(run) == before


def test_a_refusal_after_training_keeps_the_trained_model_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    base = ("surface", "--model", "mlp", "--data", "digits", "--subset", 60, "--dims", 2, "--steps", 3,
            "--train-epochs", 1, "--device", "cpu", "--out", out)
    r = invoke(*base, "--samples", 1000)  # refused once the Landscape is built, after training
    assert r.exit_code == 2 and "leave out --samples" in r.text
    assert (out / "model.pt").is_file() and (out / "config" / "source.yaml").is_file()
    assert not (out / "config" / "surface.yaml").exists() and (out / "config" / "train.yaml").is_file()
    r = invoke(*base)
    assert r.exit_code == 0 and "no checkpoint: training" not in r.text  # the trained model is reused


def test_missing_files_say_file_not_found(tmp_path):
    r = invoke("surface", "--model", "mlp", "--data", tmp_path / "nope.pt", *PLANE, "--out", tmp_path / "r")
    assert r.exit_code == 2 and f"data file not found: {tmp_path / 'nope.pt'}" in r.text  # old: "must be one of [...]"
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--checkpoint", tmp_path / "nope.pt", *PLANE,
               "--out", tmp_path / "r")
    assert r.exit_code == 2 and "file not found" in r.text


def test_numpy_arrays_in_a_pt_file_get_one_line_saying_to_save_tensors(tmp_path):
    import numpy as np

    torch.save({"X": np.zeros((20, 64), np.float32), "y": np.arange(20) % 10}, tmp_path / "np.pt")
    r = invoke("surface", "--model", "mlp", "--data", tmp_path / "np.pt", *PLANE, "--out", tmp_path / "r")
    assert r.exit_code == 2 and "NumPy arrays" in r.text and "torch.as_tensor" in r.text
    assert "WeightsUnpickler" not in r.text and "add_safe_globals" not in r.text  # old: torch's 10-line message


@pytest.fixture(scope="module")
def jump_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("jr") / "run"
    r = invoke("jump", "--model", "mlp", "--data", "digits", "--subset", 100, "--device", "cpu", "--seeds", 2,
               "--step-sizes", "0.5,1", "--epochs", 2, "--out", out)
    assert r.exit_code == 0, r.text
    return out


def test_embed_refuses_other_settings_without_replace_and_names_keep_both(jump_run):
    base = ("embed", jump_run, "--method", "pca,random")
    r = invoke(*base)
    assert r.exit_code == 0, r.text
    assert "embedding 12 points" in r.text  # progress (old: nothing shown)
    first = snapshot(jump_run / "embedding.zarr")
    r = invoke(*base, "--seed", 3)
    # old: exit 0, embedding.zarr and its figures overwritten with seed 3
    assert r.exit_code == 2 and "seed: 0 stored, 3 asked" in r.text and "--replace" in r.text and "--name" in r.text
    assert snapshot(jump_run / "embedding.zarr") == first
    r = invoke(*base, "--seed", 3, "--name", "seed3")
    assert r.exit_code == 0, r.text
    assert (jump_run / "embedding_seed3.zarr").is_dir() and snapshot(jump_run / "embedding.zarr") == first
    assert (jump_run / "figures" / "embedding_jump_seed3.png").is_file()
    r = invoke(*base, "--seed", 3, "--replace")
    assert r.exit_code == 0 and snapshot(jump_run / "embedding.zarr") != first


def test_library_warnings_reach_the_user_reworded_with_the_settings_used(jump_run, monkeypatch):
    import warnings

    import lossatlas.embedding as E

    real = E.embed

    def warns(*a, **k):
        warnings.warn("Graph is disconnected with 2 connected components. This may indicate a problem "
                      "/site-packages/phate/graph.py knn (currently 5)")
        return real(*a, **k)

    monkeypatch.setattr(E, "embed", warns)
    r = invoke("embed", jump_run, "--method", "pca", "--name", "warned")
    assert r.exit_code == 0, r.text
    assert "falls apart into separate pieces" in r.text and "lossatlas used: PHATE with knn 5" in r.text
    assert "site-packages" not in r.text and "currently 5" not in r.text  # old: the raw warning with its path


def test_trajectory_takes_checkpoints_saved_along_a_users_training(tmp_path):
    # old: `trajectory` took only a run directory ("RUN"), so checkpoints saved by a user's own
    # training loop could not be drawn as a path (issue 20)
    from lossatlas.sources import Source

    data = _pt_data(tmp_path / "d.pt")
    src = Source(model="mlp", data=str(data), init_seed=0)
    model = src.build_model(src.build_data())
    d = torch.load(data, weights_only=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    files, vectors = [], []
    for epoch in range(4):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(d["X"]), d["y"]).backward()
            opt.step()
        files.append(tmp_path / f"epoch{epoch}.pt")
        torch.save(model.state_dict(), files[-1])
        vectors.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    out = tmp_path / "path"
    flags = ("--model", "mlp", "--data", data, "--device", "cpu")
    r = invoke("trajectory", *files, *flags, "--steps", 3, "--out", out)
    assert r.exit_code == 0, r.text
    import lossatlas as la

    t = la.RunDir(out).open("trajectory")
    assert t.sizes["point"] == 4  # one point a checkpoint, in the order given
    for i, v in enumerate(vectors):
        assert torch.equal(torch.as_tensor(t.weights.values[i]), v)
    assert 0 < la.RunDir(out).summary()["trajectory"]["explained_total"] <= 1
    assert (out / "figures" / "trajectory_pca.png").exists()
    # the same files again: reused; other files: refused without --replace; too few or missing: said
    assert invoke("trajectory", *files, *flags, "--steps", 3, "--out", out).exit_code == 0
    r = invoke("trajectory", *files[::-1], *flags, "--steps", 3, "--out", out)
    assert r.exit_code == 2 and "checkpoints" in r.text, r.text
    r = invoke("trajectory", *files[:2], *flags, "--out", tmp_path / "two")
    assert r.exit_code == 2 and "at least 3 checkpoints" in r.text and not (tmp_path / "two").exists()
    r = invoke("trajectory", *files[:2], tmp_path / "nope.pt", *flags, "--out", tmp_path / "three")
    assert r.exit_code == 2 and "file not found" in r.text and not (tmp_path / "three").exists()

import sys
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

import lossatlas as la
from lossatlas.cli import app

runner = CliRunner()


class Result:
    def __init__(self, r):
        self.exit_code = r.exit_code
        self.output = " ".join(r.output.split())  # rich may wrap long lines


def invoke(*args):
    return Result(runner.invoke(app, [str(a) for a in args]))


def test_surface_on_builtin_model_trains_first_and_writes_plane(tmp_path):
    out = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--subset", 300, "--steps", 5,
               "--train-epochs", 2, "--out", out)
    assert r.exit_code == 0, r.output
    ds = xr.open_zarr(out / "surface.zarr", consolidated=False)
    assert ds.loss.dims == ("x", "y") and ds.loss.shape == (5, 5) and bool(ds.done.all())
    assert (out / "figures" / "surface_contour.png").stat().st_size > 0
    assert (out / "figures" / "surface_contour.pdf").exists()
    assert (out / "config.yaml").exists() and (out / "model.pt").exists()
    cfg = la.RunDir(out).read_config()
    assert cfg["surface"]["steps"] == 5 and cfg["source"]["model"] == "mlp"
    # the checkpoint written above is loadable as a user checkpoint, giving the same center loss
    r2 = invoke("surface", "--model", "mlp", "--data", "digits", "--subset", 300, "--steps", 5,
                "--checkpoint", out / "model.pt", "--dims", 1, "--out", tmp_path / "line")
    assert r2.exit_code == 0, r2.output
    line = xr.open_zarr(tmp_path / "line" / "line.zarr", consolidated=False)
    assert float(line.loss.sel(t=0.0)) == pytest.approx(float(ds.loss.sel(x=0.0, y=0.0)), rel=1e-6)
    # the same plane evaluated by two worker threads, without compiling: the same values
    r3 = invoke("surface", "--model", "mlp", "--data", "digits", "--subset", 300, "--steps", 5,
                "--checkpoint", out / "model.pt", "--workers", 2, "--compile", "no", "--out", tmp_path / "w2")
    assert r3.exit_code == 0, r3.output
    w2 = xr.open_zarr(tmp_path / "w2" / "surface.zarr", consolidated=False)
    np.testing.assert_allclose(w2.loss.values, ds.loss.values, rtol=1e-6)
    assert la.RunDir(tmp_path / "w2").read_config()["surface"]["workers"] == "2"


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers must be"),
    (["--workers", "two"], "--workers must be"),
    (["--compile", "maybe"], "--compile must be"),
    (["--compile", "yes", "--workers", "2"], "one compiled worker"),
    (["--strategy", "vmap", "--workers", "2"], "--strategy loop"),
])
def test_surface_speed_flags_are_checked_before_any_work(tmp_path, flags, message):
    out = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--steps", 5, *flags, "--out", out)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (out / "model.pt").exists()  # refused before training


def test_user_factory_and_mismatched_checkpoint_names_keys(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make(hidden=8):
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("userpkg", None)
    sys.modules.pop("userpkg.nets", None)
    from userpkg.nets import make

    torch.save(make().state_dict(), tmp_path / "good.pt")
    r = invoke("surface", "--model", "userpkg.nets:make", "--checkpoint", tmp_path / "good.pt", "--data", "digits",
               "--subset", 200, "--steps", 3, "--out", tmp_path / "ok")
    assert r.exit_code == 0, r.output
    torch.save(make(hidden=9).state_dict(), tmp_path / "bad.pt")
    r = invoke("surface", "--model", "userpkg.nets:make", "--checkpoint", tmp_path / "bad.pt", "--data", "digits",
               "--steps", 3, "--out", tmp_path / "bad")
    assert r.exit_code == 2
    assert "does not match" in r.output and "1.weight" in r.output
    state = make().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["3.bias"]
    torch.save(state, tmp_path / "keys.pt")
    r = invoke("surface", "--model", "userpkg.nets:make", "--checkpoint", tmp_path / "keys.pt", "--data", "digits",
               "--steps", 3, "--out", tmp_path / "keys")
    assert r.exit_code == 2 and "3.bias" in r.output and "extra.weight" in r.output


def test_bad_options_fail_before_work(tmp_path):
    for args, msg in [
        (("--steps", 1), "steps"),
        (("--norm", "filters"), "normalization"),
        (("--bn", "train"), "batch-norm"),
        (("--dims", 3), "--dims"),
        (("--data", "imagenet"), "--data must be"),
        (("--model", "resnet7"), "resnet"),
    ]:
        r = invoke("surface", "--out", tmp_path / "x", "--train-epochs", 0, *args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, (args, r.output)


def test_train_trajectory_jump_embed_pipeline(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model: mlp\ndata: digits\nsubset: 300\nepochs: 4\nbatch_size: 50\nlr: 0.1\n"
                   "schedule: step\nmilestones: [2]\nweight_decay: 0.0005\n")
    r = invoke("train", "--config", cfg, "--epochs", 5, "--out", out)  # the flag overrides the file
    assert r.exit_code == 0, r.output
    t = la.RunDir(out).open("trajectory")
    assert t.sizes["point"] == 6 and t.attrs["lr_drops"] == [2]
    r = invoke("trajectory", out, "--steps", 5)
    assert r.exit_code == 0, r.output
    s = la.RunDir(out).summary()
    assert 0 < s["trajectory"]["explained_total"] <= 1
    assert (out / "figures" / "trajectory_pca.png").exists() and (out / "figures" / "trajectory_random.png").exists()
    r = invoke("jump", out, "--seeds", 2, "--step-sizes", "0.5,1.0", "--epochs", 2, "--batch-size", 50,
               "--sampling", "all")
    assert r.exit_code == 0, r.output
    run = la.RunDir(out)
    sizes = {k: run.open(k, load=False).sizes["point"] for k in ("jump", "grid", "naive")}
    assert sizes == {"jump": 12, "grid": 12, "naive": 12}
    r = invoke("embed", out, "--method", "pca,tsne")
    assert r.exit_code == 0, r.output
    emb = run.open("embedding")
    assert emb.embedding.shape == (2, 12, 2)
    assert (out / "figures" / "embedding_jump.png").exists()
    r = invoke("train", "--config", cfg, "--optimizer", "rmsprop", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "unknown optimizer" in r.output


def test_demo_quick_runs_every_step(tmp_path):
    # The README's main job (`make demo` runs it without --quick): every stage must run through.
    out = tmp_path / "demo"
    r = invoke("demo", "--quick", "--out", out)
    assert r.exit_code == 0, r.output
    assert "done:" in r.output
    for store in ("trajectory", "surface", "trajectory_plane", "jump", "embedding"):
        assert (out / f"{store}.zarr").is_dir(), store
    for fig in ("surface_contour", "trajectory_pca", "embedding_jump"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 0, fig
    emb = xr.open_zarr(out / "embedding.zarr", consolidated=False)
    assert [str(m) for m in emb["method"].values] == ["phate", "tsne", "umap", "pca"]
    assert np.isfinite(emb["embedding"].values).all()


def test_surface_of_other_settings_is_refused_or_replaced(tmp_path):
    out = tmp_path / "run"
    base = ["surface", "--model", "mlp", "--data", "digits", "--subset", 300, "--train-epochs", 1, "--out", out]
    assert invoke(*base, "--steps", 5).exit_code == 0
    r = invoke(*base, "--steps", 6)
    assert r.exit_code == 2 and "different plane" in r.output and "--replace" in r.output
    assert xr.open_zarr(out / "surface.zarr", consolidated=False).loss.shape == (5, 5)  # kept
    r = invoke(*base, "--steps", 6, "--replace")
    assert r.exit_code == 0, r.output
    assert xr.open_zarr(out / "surface.zarr", consolidated=False).loss.shape == (6, 6)

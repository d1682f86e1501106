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
        self.stdout = " ".join(r.stdout.split())
        self.stderr = " ".join(r.stderr.split())


def invoke(*args):
    return Result(runner.invoke(app, [str(a) for a in args]))


SMALL = ("--data", "digits", "--subset", 300)


def test_surface_on_builtin_model_trains_first_and_writes_plane(tmp_path):
    out = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", *SMALL, "--steps", 5, "--train-epochs", 2, "--out", out)
    assert r.exit_code == 0, r.output
    ds = xr.open_zarr(out / "surface.zarr", consolidated=False)
    assert ds.loss.dims == ("x", "y") and ds.loss.shape == (5, 5) and bool(ds.done.all())
    assert (out / "figures" / "surface_contour.png").stat().st_size > 0
    assert (out / "figures" / "surface_contour.pdf").exists()
    assert (out / "model.pt").exists()
    # every command ends by rebuilding the run's self-contained report
    assert "plotly" in (out / "report.html").read_text()
    run = la.RunDir(out)
    assert run.read_config("surface")["surface"]["steps"] == 5 and run.read_source()["model"] == "mlp"
    # the checkpoint written above is loadable as a user checkpoint, giving the same center loss
    r2 = invoke("surface", "--model", "mlp", *SMALL, "--steps", 5, "--checkpoint", out / "model.pt", "--dims", 1,
                "--out", tmp_path / "line")
    assert r2.exit_code == 0, r2.output
    line = xr.open_zarr(tmp_path / "line" / "line.zarr", consolidated=False)
    assert float(line.loss.sel(t=0.0)) == pytest.approx(float(ds.loss.sel(x=0.0, y=0.0)), rel=1e-6)
    # the same plane evaluated by two worker threads, without compiling: the same values
    r3 = invoke("surface", "--model", "mlp", *SMALL, "--steps", 5, "--checkpoint", out / "model.pt",
                "--workers", 2, "--compile", "no", "--out", tmp_path / "w2")
    assert r3.exit_code == 0, r3.output
    w2 = xr.open_zarr(tmp_path / "w2" / "surface.zarr", consolidated=False)
    np.testing.assert_allclose(w2.loss.values, ds.loss.values, rtol=1e-6)
    assert la.RunDir(tmp_path / "w2").read_config("surface")["surface"]["workers"] == "2"


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers must be"),
    (["--workers", "two"], "--workers must be"),
    (["--compile", "maybe"], "--compile must be"),
    (["--compile", "yes", "--workers", "2"], "one compiled worker"),
    (["--strategy", "vmap", "--workers", "2"], "--strategy loop"),
    (["--bn", "train"], "batch-norm"),
    (["--span", "-1"], "--span must be positive"),
    (["--samples", "0"], "--samples must be"),
    (["--batch-size", "0"], "--batch-size must be a positive number"),
    (["--strategy", "fast"], "strategy"),
    (["--xrange", "1,0"], "--xrange"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
])
def test_surface_options_are_checked_before_any_work(tmp_path, flags, message):
    out = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--steps", 5, *flags, "--out", out)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (out / "model.pt").exists()  # refused before training
    assert "error:" in r.stderr and "error:" not in r.stdout  # errors go to stderr


def _userpkg(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make(hidden=8, seed=0):
            gen = torch.Generator().manual_seed(seed)
            net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            return net
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in ("userpkg", "userpkg.nets"):
        sys.modules.pop(m, None)
    from userpkg.nets import make

    return make


def _pt_data(path, n=120, n_test=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n + n_test) % 10
    X = torch.randn(10, 64, generator=gen)[y] + 0.5 * torch.randn(n + n_test, 64, generator=gen)
    torch.save({"X": X[:n], "y": y[:n], "X_test": X[n:], "y_test": y[n:]}, path)
    return path


def test_user_factory_and_mismatched_checkpoint_names_keys(tmp_path, monkeypatch):
    make = _userpkg(tmp_path, monkeypatch)
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
    r = invoke("surface", "--model", "userpkg.nowhere:make", "--data", "digits", "--out", tmp_path / "imp")
    assert r.exit_code == 2 and "cannot import" in r.output


def test_every_model_command_on_a_user_model_and_pt_file_without_train(tmp_path, monkeypatch):
    make = _userpkg(tmp_path, monkeypatch)
    data = _pt_data(tmp_path / "mydata.pt")
    torch.save(make(seed=0).state_dict(), tmp_path / "a.pt")
    torch.save(make(seed=1).state_dict(), tmp_path / "b.pt")
    user = ("--model", "userpkg.nets:make", "--data", data)
    r = invoke("surface", *user, "--checkpoint", tmp_path / "a.pt", "--steps", 3, "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    r = invoke("jump", *user, "--checkpoint", tmp_path / "a.pt", "--seeds", 2, "--step-sizes", "0.5", "--epochs", 2,
               "--sampling", "all", "--out", tmp_path / "mine")
    assert r.exit_code == 0, r.output
    assert "documented J&R defaults" in r.output  # no run: the defaults are printed as such
    jump = la.RunDir(tmp_path / "mine").open("jump", load=False)
    assert jump.sizes["point"] == 6 and la.RunDir(tmp_path / "mine").open("naive", load=False).sizes["point"] == 6
    r = invoke("embed", tmp_path / "mine", "--method", "pca")
    assert r.exit_code == 0, r.output
    r = invoke("interpolate", tmp_path / "a.pt", tmp_path / "b.pt", *user, "--steps", 5, "--out", tmp_path / "i")
    assert r.exit_code == 0, r.output
    r = invoke("train", *user, "--epochs", 2, "--batch-size", 40, "--out", tmp_path / "t")
    assert r.exit_code == 0, r.output
    r = invoke("trajectory", tmp_path / "t", "--steps", 3)
    assert r.exit_code == 0, r.output
    # the run directory recorded the user's source: later commands rebuild it from there
    assert la.RunDir(tmp_path / "t").read_source()["model"] == "userpkg.nets:make"


def test_pt_data_options_apply(tmp_path):
    data = _pt_data(tmp_path / "d.pt", n=120)
    r = invoke("train", "--model", "mlp", "--data", data, "--subset", 50, "--epochs", 1, "--out", tmp_path / "t")
    assert r.exit_code == 0, r.output
    assert la.RunDir(tmp_path / "t").summary()["train"]["data"]["train_size"] == 50


def test_commands_on_a_run_keep_their_own_configs_and_the_runs_split(tmp_path):
    out = tmp_path / "run"
    r = invoke("train", "--model", "mlp", *SMALL, "--epochs", 3, "--out", out)
    assert r.exit_code == 0, r.output
    run = la.RunDir(out)
    train_cfg = (out / "config" / "train.yaml").read_text()
    # --seed picks directions only: the centre (the run's final weights on the run's split) is
    # the same point whatever the seed; the old code re-split the data with it (a leak)
    assert invoke("surface", out, "--steps", 3, "--seed", 3, "--out", tmp_path / "s3").exit_code == 0
    assert invoke("surface", out, "--steps", 3, "--seed", 0).exit_code == 0
    c0 = la.RunDir(out).summary()["surface"]["center_loss"]
    c3 = la.RunDir(tmp_path / "s3").summary()["surface"]["center_loss"]
    assert c0 == pytest.approx(c3, rel=1e-6)
    final = float(run.open("trajectory").loss.values[-1])
    assert c0 == pytest.approx(final, rel=1e-4)  # exactly the training split
    assert (out / "config" / "train.yaml").read_text() == train_cfg  # not overwritten
    assert invoke("trajectory", out, "--steps", 3).exit_code == 0
    assert invoke("jump", out, "--seeds", 2, "--step-sizes", "1", "--epochs", 2).exit_code == 0
    assert invoke("embed", out, "--method", "pca").exit_code == 0
    assert sorted(p.stem for p in (out / "config").iterdir()) == ["embed", "jump", "source", "surface", "train", "trajectory"]
    # a run directory already records its source: source options beside it are refused
    r = invoke("surface", out, "--model", "smallcnn")
    assert r.exit_code == 2 and "already records its model and data" in r.output
    # an --out that records another source is refused rather than mixed
    r = invoke("surface", "--model", "mlp", "--data", "digits", "--subset", 200, "--train-epochs", 0, "--out", out)
    assert r.exit_code == 2 and "records another source" in r.output


def test_train_config_precedence_and_checks(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"model: mlp\ndata: digits\nsubset: 200\nepochs: 1\nout: {tmp_path / 'from_yaml'}\n")
    r = invoke("train", "--config", cfg, "--out", tmp_path / "from_flag")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "from_flag" / "trajectory.zarr").exists() and not (tmp_path / "from_yaml").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: mlp\ndata: digits\nensemble: vmap\n")
    r = invoke("train", "--config", bad, "--out", tmp_path / "b")
    assert r.exit_code == 2 and "unknown settings ['ensemble']" in r.output
    typed = tmp_path / "typed.yaml"
    typed.write_text("model: mlp\ndata: digits\nlr: '0.1'\n")
    r = invoke("train", "--config", typed, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "lr must be float, got '0.1'" in r.output and "Traceback" not in r.output
    r = invoke("train", "--config", cfg, "--optimizer", "rmsprop", "--out", tmp_path / "d")
    assert r.exit_code == 2 and "optimizer" in r.output


def test_jump_defaults_come_from_a_step_schedule_run(tmp_path):
    out = tmp_path / "run"
    r = invoke("train", "--model", "mlp", *SMALL, "--epochs", 4, "--lr", 0.1, "--momentum", 0.8, "--weight-decay", 5e-4,
               "--batch-size", 50, "--schedule", "step", "--milestones", "2,3", "--out", out)
    assert r.exit_code == 0, r.output
    r = invoke("jump", out, "--seeds", 1, "--step-sizes", "0.5", "--epochs", 1)
    assert r.exit_code == 0, r.output
    used = la.RunDir(out).open("jump", load=False).attrs["train"]
    used = used if isinstance(used, dict) else __import__("json").loads(used)
    assert used["lr"] == pytest.approx(1e-3) and used["momentum"] == 0.8 and used["batch_size"] == 50
    assert used["weight_decay"] == 5e-4 and used["optimizer"] == "sgd"
    assert "lr=0.001" in r.output and "final learning rate" in r.output
    # explicit flags override
    r = invoke("jump", out, "--seeds", 1, "--step-sizes", "0.5", "--epochs", 1, "--lr", 0.01, "--replace")
    assert r.exit_code == 0, r.output
    used = la.RunDir(out).open("jump", load=False).attrs["train"]
    used = used if isinstance(used, dict) else __import__("json").loads(used)
    assert used["lr"] == pytest.approx(0.01)


def test_interpolation_ends_are_each_models_own_loss(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 0), (b, 1)):
        r = invoke("train", "--model", "mlp", *SMALL, "--epochs", 2, "--init-seed", seed, "--out", out)
        assert r.exit_code == 0, r.output
    r = invoke("interpolate", a, b, "--steps", 5, "--extent", "0,1", "--out", tmp_path / "i")
    assert r.exit_code == 0, r.output
    ds = la.RunDir(tmp_path / "i").open("interpolation")
    assert ds.loss.dims == ("t",) and "test_loss" in ds
    for run, t in ((a, 0.0), (b, 1.0)):
        own = float(la.RunDir(run).open("trajectory").loss.values[-1])
        assert float(ds.loss.sel(t=t)) == pytest.approx(own, rel=1e-4)
    assert (tmp_path / "i" / "figures" / "interpolation.png").exists()


def test_directions_file_and_asymmetric_ranges(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "--model", "mlp", *SMALL, "--epochs", 1, "--out", out).exit_code == 0
    dirs = tmp_path / "dirs.pt"
    r = invoke("surface", out, "--steps", 3, "--directions", dirs, "--xrange", "-0.5,1", "--yrange", "-1,0.25")
    assert r.exit_code == 0, r.output
    assert dirs.exists() and "directions saved" in r.output
    ds = la.RunDir(out).open("surface")
    assert float(ds.x.min()) == -0.5 and float(ds.x.max()) == 1.0 and float(ds.y.max()) == 0.25
    r = invoke("surface", out, "--steps", 3, "--directions", dirs, "--out", tmp_path / "again")
    assert r.exit_code == 0 and "directions read" in r.output
    again = la.RunDir(tmp_path / "again").open("surface")
    assert list(ds.attrs["direction_fingerprints"]) == list(again.attrs["direction_fingerprints"])


def test_even_steps_report_no_centre(tmp_path):
    out = tmp_path / "run"
    r = invoke("surface", "--model", "mlp", *SMALL, "--steps", 4, "--train-epochs", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert la.RunDir(out).summary()["surface"]["center_loss"] is None and "no centre" in r.output


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


def test_surface_of_other_settings_is_refused_or_replaced(tmp_path):
    out = tmp_path / "run"
    base = ["surface", "--model", "mlp", *SMALL, "--train-epochs", 1, "--out", out]
    assert invoke(*base, "--steps", 5).exit_code == 0
    r = invoke(*base, "--steps", 6)
    assert r.exit_code == 2 and "other settings" in r.output and "--replace" in r.output and "replace=True" not in r.output
    assert xr.open_zarr(out / "surface.zarr", consolidated=False).loss.shape == (5, 5)  # kept
    r = invoke(*base, "--steps", 6, "--replace")
    assert r.exit_code == 0, r.output
    assert xr.open_zarr(out / "surface.zarr", consolidated=False).loss.shape == (6, 6)


def test_batch_size_is_the_evaluation_batch_and_a_stored_plane_keeps_its_own(tmp_path):
    out = tmp_path / "run"
    base = ["surface", "--model", "smallcnn", *SMALL, "--train-epochs", 1, "--steps", 3, "--out", out]
    assert invoke(*base).exit_code == 0
    default = xr.open_zarr(out / "surface.zarr", consolidated=False).loss.values
    r = invoke(*base, "--batch-size", 64)  # another batching of the same data: refused, said in words
    assert r.exit_code == 2 and "--batch-size" in r.output and "--replace" in r.output, r.output
    r = invoke(*base, "--batch-size", 64, "--replace")
    assert r.exit_code == 0, r.output
    from lossatlas.store import RunDir

    assert RunDir(out, create=False).read_config("surface")["surface"]["batch_size"] == 64
    np.testing.assert_allclose(xr.open_zarr(out / "surface.zarr", consolidated=False).loss.values, default, rtol=1e-5)
    for cmd in (["hessian", out, "--top", 1, "--trace-samples", 0, "--no-density", "--no-smallest"],
                ["sharpness", out, "--subspace", 0, "--directions", 2, "--adaptive-rho", 0, "--out", tmp_path / "s"]):
        r = invoke(*cmd, "--batch-size", 0)
        assert r.exit_code == 2 and "--batch-size must be a positive number" in r.output, r.output
    r = invoke("hessian", out, "--top", 1, "--trace-samples", 0, "--no-density", "--no-smallest", "--batch-size", 100)
    assert r.exit_code == 0, r.output


def test_bad_options_fail_before_work(tmp_path):
    for args, msg in [
        (("--steps", 1), "steps"),
        (("--norm", "filters"), "normalization"),
        (("--dims", 3), "--dims"),
        (("--data", "imagenet"), "--data must be"),
        (("--model", "resnet7"), "resnet"),
    ]:
        source = [a for k, v in (("--model", "mlp"), ("--data", "digits")) if k not in args for a in (k, v)]
        r = invoke("surface", *source, "--out", tmp_path / "x", "--train-epochs", 0, *args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, (args, r.output)


def test_measure_commands_on_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 0), (b, 1)):
        r = invoke("train", "--model", "mlp", *SMALL, "--epochs", 3, "--init-seed", seed, "--out", out)
        assert r.exit_code == 0, r.output
    r = invoke("hessian", a, "--top", 2, "--trace-samples", 5, "--map", "--map-steps", 2, "--samples", 100)
    assert r.exit_code == 0, r.output
    h = la.RunDir(a).summary()["hessian"]
    assert len(h["top_eigenvalues"]) == 2 and h["top_eigenvalues"][0] >= h["top_eigenvalues"][1] > h["min_eigenvalue"]
    assert (a / "figures" / "spectral_density.png").exists() and (a / "figures" / "convexity_map.png").exists()
    # The GGN beside the Hessian (issue 23): its own product, positive semi-definite, Hutch++ trace.
    r = invoke("hessian", a, "--curvature", "ggn", "--top", 2, "--trace-samples", 12, "--trace-method", "hutch++",
               "--samples", 100)
    assert r.exit_code == 0, r.output
    g = la.RunDir(a).summary()["ggn"]
    assert min(g["top_eigenvalues"]) > 0 and g["trace"] >= g["top_eigenvalues"][0] * 0.5 and g["trace_method"] == "hutch++"
    assert "min_eigenvalue" not in g  # no --smallest by default: a PSD matrix has none below 0
    assert la.RunDir(a).open("ggn").attrs["curvature"] == "ggn"
    assert la.RunDir(a).summary()["hessian"] == h  # the Hessian's product is left as it was
    for bad, msg in ((("--curvature", "ggn", "--density"), "the Hessian's"), (("--curvature", "kfac"), "--curvature"),
                     (("--trace-method", "hutch"), "--trace-method")):
        r = invoke("hessian", a, *bad)
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
    r = invoke("sharpness", a, b, "--eps", "1e-3", "--subspace", 5, "--directions", 3, "--samples", 100,
               "--out", tmp_path / "sh")
    assert r.exit_code == 0, r.output
    assert set(la.RunDir(tmp_path / "sh").summary()["sharpness"]) == {"a", "b"}
    assert all(row["adaptive_sharpness"] > 0 for row in la.RunDir(tmp_path / "sh").summary()["sharpness"].values())
    r = invoke("connect", a, b, "--method", "linear", "--points", 5, "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output
    ds = la.RunDir(tmp_path / "c").open("connect_linear")
    # the largest rise above the chord between the ends (was: highest loss minus the mean of the ends)
    t, loss = ds.t.values, ds.loss.values
    assert ds.attrs["barrier"] == pytest.approx(max(0.0, np.max(loss - ((1 - t) * loss[0] + t * loss[-1]))))
    assert "saddle" in r.output and "saddle_heights" in la.RunDir(tmp_path / "c").summary()["connect"]
    r = invoke("jump", a, "--seeds", 2, "--step-sizes", "0.5,1", "--epochs", 3)
    assert r.exit_code == 0, r.output
    r = invoke("topology", a, "--k", 4)
    assert r.exit_code == 0, r.output
    t = la.RunDir(a).open("topology")
    assert t["d0"].shape[1] == 2 and np.isinf(t["d0"].values[:, 1]).sum() >= 1  # one essential component at least
    topo = la.RunDir(a).summary()["topology"]
    assert "total_persistence" in topo and topo["components"] >= 1 and "capped_total_persistence_d0" in topo
    assert "component" in r.output  # the components are printed beside the totals

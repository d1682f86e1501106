"""J&R, grid and naive sampling in a store: recorded settings, refusal of other settings, reuse,
resume and replace; grid and naive weights streamed block by block, never all in memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

import lossatlas.jump as jump
from lossatlas._errors import StoreMismatchError
from lossatlas.jump import grid_sample, jump_retrain, naive_sample
from lossatlas.landscape import Landscape
from lossatlas.store import RunDir, read_attr
from lossatlas.store.settings import said

from helpers import DEVICE, blobs, mlp, Stop, stop_after


@pytest.fixture(scope="module")
def data():
    X, y = blobs(n=48)
    return X.to(DEVICE), y.to(DEVICE)


BASE = dict(seeds=[0], step_sizes=[1.0], epochs=1, batch_size=16, lr=0.01, device=DEVICE)


def assert_refused(call, setting):
    with pytest.raises(StoreMismatchError, match="replace=True") as err:
        call()
    keys = [d[0] for d in err.value.diffs]
    assert any(k == setting or k.startswith(setting + ".") for k in keys), (setting, keys)
    # each difference in words: "seeds: [0] stored, [1] asked", or what a fingerprint pins
    for key, old, new in err.value.diffs:
        assert said(key, old, new) in str(err.value)


def test_jump_refuses_each_changed_setting_reuses_and_replaces(data, tmp_path, monkeypatch):
    X, y = data
    model = mlp().to(DEVICE)
    run = RunDir(tmp_path)
    first = jump_retrain(model, data, store=run, **BASE)
    assert first.sizes["point"] == 2
    other = mlp(seed=3).to(DEVICE)
    changes = [
        ("center_fingerprint", dict(model=other)),
        ("seeds", dict(seeds=[1])),
        ("step_sizes", dict(step_sizes=[0.5])),
        ("train.epochs", dict(epochs=2)),
        ("train.lr", dict(lr=0.02)),
        ("train.momentum", dict(momentum=0.5)),
        ("train.batch_size", dict(batch_size=8)),
        ("train.weight_decay", dict(weight_decay=1e-4)),
        ("train.optimizer", dict(optimizer="adam")),
        ("train.nesterov", dict(nesterov=True)),
        ("norm", dict(norm="layer")),
        ("ignore", dict(ignore=None)),
        ("train_seed", dict(train_seed=1)),
        ("data", dict(data=(X + 0.5, y))),
        ("data", dict(test=(X[:8], y[:8]))),
    ]
    for setting, change in changes:
        kw = {**BASE, "model": model, "data": data, **change}
        assert_refused(lambda: jump_retrain(kw.pop("model"), kw.pop("data"), store=run, **kw), setting)

    def no_training(*a, **k):
        raise AssertionError("a finished jump store with the same settings must be reused")

    monkeypatch.setattr(jump, "train", no_training)
    again = jump_retrain(model, data, store=run, **BASE)
    np.testing.assert_array_equal(again.weights.values, first.weights.values)
    monkeypatch.undo()
    # The defect of issue 8: other seeds, step sizes and epochs returned the first call's 2 points.
    bigger = dict(BASE, seeds=[0, 1], step_sizes=[0.5, 1.0], epochs=2)
    with pytest.raises(StoreMismatchError):
        jump_retrain(model, data, store=run, **bigger)
    redone = jump_retrain(model, data, store=run, replace=True, **bigger)
    assert redone.sizes["point"] == 12 and run.open("jump").sizes["point"] == 12
    plain = jump_retrain(model, data, **bigger)
    key = ["run", "epoch"]
    np.testing.assert_allclose(redone.sortby(key).weights.values, plain.sortby(key).weights.values, atol=1e-6)
    assert read_attr(run.open("jump", load=False), "settings")["train"]["epochs"] == 2


def test_interrupted_jump_resumes_its_runs_and_refuses_other_settings(data, tmp_path):
    model = mlp().to(DEVICE)
    run = RunDir(tmp_path)
    kw = dict(BASE, seeds=[0, 1])
    with pytest.raises(Stop):
        jump_retrain(model, data, store=run, progress=stop_after(1), **kw)  # one of two runs done
    assert not read_attr(run.open("jump", load=False), "complete")
    assert_refused(lambda: jump_retrain(model, data, store=run, **dict(kw, lr=0.05)), "train.lr")
    assert run.open("jump.runs/run-0000").sizes["point"] == 2  # the finished run is kept
    resumed = jump_retrain(model, data, store=run, **kw)
    assert resumed.sizes["point"] == 4 and read_attr(resumed, "complete")
    assert not (tmp_path / "jump.runs").exists()
    plain = jump_retrain(model, data, **kw)
    key = ["run", "epoch"]
    np.testing.assert_allclose(resumed.sortby(key).weights.values, plain.sortby(key).weights.values, atol=1e-6)


def landscape(data, model=None, **kw):
    kw.setdefault("samples", 40)
    return Landscape((model or mlp()).to(DEVICE), data, device=DEVICE, **kw)


@pytest.mark.parametrize("sampler", ["grid", "naive"])
def test_grid_and_naive_refuse_each_changed_setting_resume_and_replace(data, tmp_path, sampler):
    X, y = data
    f = landscape(data)
    run = RunDir(tmp_path)
    if sampler == "grid":
        sample, kw = grid_sample, dict(n_points=40, span=1.0)  # blocks of 32 and 8 points
        own = [("span", dict(span=0.5)), ("n_points", dict(n_points=38))]
    else:
        sample, kw = naive_sample, dict(n_points=12, step_sizes=(0.5, 1.0))
        own = [("step_sizes", dict(step_sizes=(0.25, 1.0))), ("n_points", dict(n_points=10))]
    plain = sample(f, **kw)
    with pytest.raises(Stop):
        sample(f, store=run, progress=stop_after(1), **kw)
    done = run.done_mask(sampler)
    n = kw["n_points"]
    assert 0 < done.sum() < n
    calls = []
    method = "evaluate_span" if sampler == "grid" else "evaluate"  # naive: a few points per direction
    original = getattr(f, method)
    setattr(f, method, lambda *a: calls.append(len(a[-1])) or original(*a))
    resumed = sample(f, store=run, **kw)  # only the missing points
    assert sum(calls) == n - done.sum() and resumed.done.values.all()
    for k in ("weights", "loss", "accuracy", "step_size"):
        np.testing.assert_allclose(resumed[k].values, plain[k].values, rtol=1e-6, atol=1e-7)
    calls.clear()
    sample(f, store=run, **kw)  # complete: reused
    assert calls == []
    changes = own + [
        ("center_fingerprint", dict(center=f.origin + 0.01)),
        ("seed", dict(seed=1)),
        ("norm", dict(norm="layer")),
        ("ignore", dict(ignore=None)),
    ]
    for setting, change in changes:
        assert_refused(lambda: sample(f, store=run, **{**kw, **change}), setting)
    for setting, g in [("bn", landscape(data, bn="batch")), ("samples", landscape(data, samples=30)),
                       ("data_fingerprint", landscape(data, seed=2)), ("loss", landscape(data, loss="nll")),
                       ("values", landscape(data, test=(X[:44], y[:44])))]:
        assert_refused(lambda: sample(g, store=run, **kw), setting)
    redone = sample(f, store=run, replace=True, **{**kw, "seed": 1})
    np.testing.assert_allclose(redone.loss.values, sample(f, **{**kw, "seed": 1}).loss.values, rtol=1e-6)
    assert read_attr(run.open(sampler, load=False), "settings")["seed"] == 1


def wide_mlp():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))


@pytest.mark.parametrize("sampler", ["grid", "naive"])
def test_stored_grid_and_naive_never_hold_all_weights(data, tmp_path, monkeypatch, sampler):
    f = Landscape(wide_mlp().to(DEVICE), data, device=DEVICE)
    # grid: blocks of 8 points here (of 32 by default), 8 blocks; naive: 6 directions of 4 step sizes
    n, block = (64, 8) if sampler == "grid" else (24, 4)
    monkeypatch.setattr(jump, "point_block", lambda f, limit=None: min(block, limit or block))
    full_bytes = n * f.space.size * 4  # all weights as float32: 18 and 7 MB
    writes, saved = [], []
    orig_write, orig_save = RunDir.write_cells, RunDir.save
    monkeypatch.setattr(RunDir, "write_cells", lambda self, name, values, region: (
        writes.append(values["weights"].shape[0]), orig_write(self, name, values, region))[1])
    monkeypatch.setattr(RunDir, "save", lambda self, name, ds, *a, **k: (
        saved.append(ds.sizes.get("point", 0)), orig_save(self, name, ds, *a, **k))[1])
    sample = grid_sample if sampler == "grid" else naive_sample
    sample(f, n_points=8, store=tmp_path / "warm")  # imports (dask, zarr codecs) outside the measurement
    writes.clear()
    tracemalloc.start()
    try:
        ds = sample(f, n_points=n, store=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full_bytes / 3, (peak, full_bytes)
    assert saved == [] and writes == [block] * (n // block)
    assert ds.weights.chunks is not None  # returned lazily, read from the store
    monkeypatch.undo()
    plain = sample(f, n_points=n)
    np.testing.assert_allclose(ds.weights[:8].values, plain.weights.values[:8], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ds.loss.values, plain.loss.values, rtol=1e-6)

"""A training store records every setting that changes its values, refuses a rerun with other
settings (naming each difference), and resumes or reuses a rerun with the same ones."""

import numpy as np
import pytest
import torch

from helpers import DEVICE, clusters
from lossatlas._errors import StoreMismatchError
from lossatlas.models import build
from lossatlas.space import ParamSpace
from lossatlas.store import RunDir, read_attr
from lossatlas.training import train


def data(n=48, seed=0):
    return clusters(n, (16,), seed=seed)


def mlp(seed=0):
    return build("mlp", (16,), 4, seed=seed, hidden=(8,)).to(DEVICE)


BASE = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.0, epochs=2, batch_size=16, seed=0)


def never(done, total):
    raise AssertionError("no training was expected")


@pytest.mark.parametrize("change, key", [
    (dict(lr=0.1), "train.lr"),
    (dict(epochs=3), "train.epochs"),
    (dict(seed=1), "seeds"),
    (dict(batch_size=8), "train.batch_size"),
    (dict(optimizer="adam"), "train.optimizer"),
    (dict(weight_decay=1e-4), "train.weight_decay"),
    (dict(momentum=0.5), "train.momentum"),
    (dict(schedule="cosine"), "train.schedule"),
    (dict(data=data(seed=1)), "data.fingerprint"),
    (dict(model=1), "init"),
    (dict(run_coords={"step_size": [0.5]}), "run_coords"),
])
def test_rerun_with_another_setting_is_refused(tmp_path, change, key):
    train(mlp(0), data(), store=tmp_path, device=DEVICE, **BASE)
    change = dict(change)
    init_seed = change.pop("model", 0)
    d = change.pop("data", data())
    with pytest.raises(StoreMismatchError, match=key) as err:
        train(mlp(init_seed), d, store=tmp_path, device=DEVICE, progress=never, **{**BASE, **change})
    assert "replace=True" in str(err.value) and "--" not in str(err.value)
    # replace=True trains afresh with the new settings
    run = train(mlp(init_seed), d, store=tmp_path, device=DEVICE, replace=True, **{**BASE, **change})
    assert run.trajectory.sizes["point"] == run.config.epochs + 1


def test_augmentation_and_label_noise_are_recorded_settings(tmp_path):
    import lossatlas as la

    d = la.load_data("digits", subset=64, test_subset=16, augment=True)
    m = lambda: build("mlp", d.input_shape, d.num_classes, seed=0, hidden=(8,)).to(DEVICE)  # noqa: E731
    kw = dict(BASE, epochs=1, store=tmp_path, device=DEVICE)
    train(m(), d, **kw)
    with pytest.raises(StoreMismatchError, match="data.augment"):
        train(m(), d, augment=False, progress=never, **kw)
    noisy = la.load_data("digits", subset=64, test_subset=16, augment=True, random_labels=0.5)
    with pytest.raises(StoreMismatchError, match="data.random_labels"):
        train(m(), noisy, progress=never, **kw)


def test_same_settings_reuse_a_finished_run(tmp_path):
    first = mlp(0)
    a = train(first, data(), store=tmp_path, device=DEVICE, **BASE).trajectory.load()
    again = mlp(0)
    b = train(again, data(), store=tmp_path, device=DEVICE, progress=never, **BASE).trajectory.load()
    np.testing.assert_array_equal(a.weights.values, b.weights.values)
    # the model comes back trained: the final weights are loaded from the checkpoint
    assert torch.equal(ParamSpace(first).vector(first), ParamSpace(again).vector(again))


def test_recorded_settings_final_lr_and_train_attrs(tmp_path):
    cfg = dict(BASE, epochs=4, schedule="step", milestones=(2, 3), gamma=0.5, nesterov=True)
    t = train(mlp(0), data(), store=tmp_path, device=DEVICE, **cfg).trajectory
    assert t.attrs["final_lr"] == pytest.approx(0.05 * 0.25)
    train_attrs = read_attr(t, "train")
    assert train_attrs["optimizer"] == "sgd" and train_attrs["nesterov"] is True
    assert train_attrs["batch_size"] == 16 and train_attrs["weight_decay"] == 0.0 and train_attrs["augment"] is True
    settings = read_attr(t, "settings")
    assert settings["seeds"] == [0] and settings["train"]["milestones"] == [2, 3]
    assert set(settings) >= {"train", "seeds", "init", "data", "run_coords", "ensemble", "device"}
    assert RunDir(tmp_path).check("trajectory", settings)


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    run = RunDir(tmp_path)
    train(mlp(0), data(), store=run, device=DEVICE, **BASE)
    state = run.load_state("trajectory")
    state["settings"]["seeds"] = [7]
    run.save_state("trajectory", state)
    with pytest.raises(StoreMismatchError, match="seeds"):
        train(mlp(0), data(), store=run, device=DEVICE, progress=never, **BASE)
    redone = train(mlp(0), data(), store=run, device=DEVICE, replace=True, **BASE)
    assert redone.trajectory.sizes["point"] == 3

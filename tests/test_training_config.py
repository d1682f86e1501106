"""Training settings, devices, modes and the progress helper."""

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from helpers import DEVICE, clusters
from lossatlas._errors import InputError
from lossatlas.models import build
from lossatlas.progress import progress_bar
from lossatlas.space import ParamSpace
from lossatlas.training import TrainConfig, train


def data(n=48, seed=0):
    return clusters(n, (16,), seed=seed)


def mlp(seed=0):
    return build("mlp", (16,), 4, seed=seed, hidden=(8,))


def test_config_parses_enums_and_names_bad_fields():
    assert TrainConfig(optimizer="SGD", schedule="Cosine").validate().optimizer == "sgd"
    with pytest.raises(InputError, match=r"unknown optimizer 'rmsprop'; choose one of \['sgd', 'adam'\]"):
        TrainConfig(optimizer="rmsprop").validate()
    with pytest.raises(InputError, match="lr must be a number, got '0.1'"):
        TrainConfig(lr="0.1").validate()
    with pytest.raises(InputError, match="epochs must be an integer"):
        TrainConfig(epochs=2.5).validate()
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        TrainConfig(batch_size=0).validate()


def test_final_lr_follows_the_schedule():
    assert TrainConfig(lr=0.1, epochs=300, schedule="step", milestones=(150, 225)).validate().final_lr() == pytest.approx(1e-3)
    assert TrainConfig(lr=0.1, epochs=10).validate().final_lr() == 0.1
    cos = TrainConfig(lr=0.1, epochs=4, schedule="cosine").validate()
    assert cos.final_lr() == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 3 / 4)))


def test_progress_bar_forms(capsys):
    seen = []
    with progress_bar(lambda d, t: seen.append((d, t)), 5, "x") as advance:
        advance(2)
        advance(3)
    assert seen == [(2, 5), (5, 5)]
    with progress_bar(False, 5, "x") as advance:
        advance(5)  # nothing happens
    with progress_bar(True, 2, "a rich bar") as advance:
        advance(2)
    assert "a rich bar" in capsys.readouterr().out


def test_device_argument_and_model_left_where_it_was():
    X, y = data()
    on_cpu = mlp(0)
    there = mlp(0).to(DEVICE)
    kw = dict(lr=0.05, epochs=2, batch_size=16, seed=1)
    train(on_cpu, (X, y), device=DEVICE, **kw)
    train(there, (X.to(DEVICE), y.to(DEVICE)), **kw)  # device=None: the model's
    assert next(on_cpu.parameters()).device.type == "cpu"
    assert torch.allclose(ParamSpace(on_cpu).vector(on_cpu), ParamSpace(there).vector(there).cpu(), atol=1e-6)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            train(mlp(0), (X, y), device="cuda", **kw)
    with pytest.raises(InputError, match="unknown device"):
        train(mlp(0), (X, y), device="gpu0", **kw)


class _CountTo(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_training_data_move_to_the_device_once():
    X, y = data()
    test = data(16, seed=1)
    model = mlp(0).to(DEVICE)
    counter = _CountTo()
    with counter:
        train(model, (X, y), test=test, lr=0.05, epochs=3, batch_size=4, device=DEVICE)
    # 36 batches and 4 snapshots of two splits: moved per batch, this would count over 80
    assert counter.calls <= 4


def test_modes_come_back_as_they_were():
    m = mlp(0)
    m.eval()
    m.net[1].train()  # a mix of modes
    before = [x.training for x in m.modules()]
    train(m, data(), lr=0.05, epochs=1, batch_size=16, device=DEVICE)
    assert [x.training for x in m.modules()] == before


def test_nan_losses_are_recorded_and_flagged():
    run = train(mlp(0), data(), lr=1e12, momentum=0.9, epochs=3, batch_size=16, device=DEVICE)
    t = run.trajectory
    assert t.sizes["point"] == 4 and t.attrs["n_nonfinite"] >= 1
    assert not np.isfinite(t.loss.values[-1])


def test_package_and_function_do_not_clash():
    import importlib

    import lossatlas as la

    module = importlib.import_module("lossatlas.training")
    assert la.train is module.train and callable(la.train)
    import lossatlas.training as T

    assert T.__name__ == "lossatlas.training" and T.TrainConfig is la.TrainConfig

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.models import build
from lossatlas.space import ParamSpace

from helpers import clusters


def data(n=120, seed=0):
    return clusters(n, (1, 8, 8), seed=seed)


def cnn(seed, bn=True):
    return build("smallcnn", (1, 8, 8), 4, seed=seed, channels=(4, 8), hidden=16, batch_norm=bn)


def test_ensemble_equals_sequential_runs():
    X, y = data()
    test = data(40, seed=1)
    common = dict(lr=0.05, momentum=0.9, weight_decay=5e-4, epochs=3, batch_size=32, test=test,
                  schedule="step", milestones=(2,), gamma=0.1)
    ens = [cnn(s) for s in range(3)]
    seq = [cnn(s) for s in range(3)]
    a = la.train(ens, (X, y), seed=[10, 11, 12], ensemble="vmap", **common)
    b = la.train(seq, (X, y), seed=[10, 11, 12], ensemble="sequential", **common)
    ta = a.trajectory.sortby(["run", "epoch"])
    tb = b.trajectory
    assert ta.sizes["point"] == tb.sizes["point"] == 3 * 4  # epochs 0..3 for each of 3 runs
    np.testing.assert_allclose(ta.weights.values, tb.weights.values, atol=2e-5)
    np.testing.assert_allclose(ta.loss.values, tb.loss.values, rtol=1e-4)
    np.testing.assert_allclose(ta.test_accuracy.values, tb.test_accuracy.values)
    for m1, m2 in zip(ens, seq):  # models trained in place, buffers included
        for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
            assert torch.allclose(v1.float(), v2.float(), atol=2e-5), k


def test_trajectory_records_every_epoch_and_schedule():
    X, y = data()
    model = cnn(0, bn=False)
    run = la.train(model, (X, y), lr=0.1, epochs=4, batch_size=40, schedule="step", milestones=(2, 3), gamma=0.5,
                   seed=1, every_steps=1)
    t = run.trajectory
    spe = 3  # 120 samples / 40
    assert t.sizes["point"] == 1 + 4 * spe
    np.testing.assert_allclose(t.epoch.values[:4], [0, 1 / 3, 2 / 3, 1.0])
    assert t.attrs["lr_drops"] == [2, 3]
    lr_by_epoch = {int(np.ceil(e)) - 1: lr for e, lr in zip(t.epoch.values[1:], t.lr.values[1:])}
    assert lr_by_epoch == {0: 0.1, 1: 0.1, 2: 0.05, 3: 0.025}
    # the last snapshot is the model as it is now, and its loss is the loss of those weights
    np.testing.assert_array_equal(t.weights.values[-1], ParamSpace(model).vector(model).numpy())
    f = la.Landscape(model, (X, y))
    assert t.loss.values[-1] == pytest.approx(f.evaluate(f.origin)["loss"].item(), rel=1e-5)
    assert t.loss.values[-1] < t.loss.values[0]


@pytest.mark.parametrize("opt", [dict(optimizer="sgd", momentum=0.0), dict(optimizer="sgd", nesterov=True),
                                 dict(optimizer="adam", lr=1e-2)])
def test_optimizers_reduce_the_loss_and_match_torch(opt):
    X, y = data()
    model = cnn(0, bn=False)
    ref = cnn(0, bn=False)
    kwargs = {"lr": 0.05, "epochs": 2, "batch_size": 120, **opt}  # full batch: data order is irrelevant
    run = la.train(model, (X, y), seed=0, **kwargs)
    assert run.trajectory.loss.values[-1] < run.trajectory.loss.values[0]
    o = opt.get("optimizer", "sgd")
    if o == "sgd":
        torch_opt = torch.optim.SGD(ref.parameters(), lr=kwargs["lr"], momentum=opt.get("momentum", 0.9),
                                    nesterov=opt.get("nesterov", False))
    else:
        torch_opt = torch.optim.Adam(ref.parameters(), lr=kwargs["lr"])
    ref.train()
    for _ in range(2):
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(X), y).backward()
        torch_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_seeds_make_runs_reproducible_including_dropout():
    X, y = data()

    def run(seed):
        m = build("mlp", (1, 8, 8), 4, seed=0, hidden=(16,))
        net = torch.nn.Sequential(m, torch.nn.Dropout(0.3))
        state = torch.get_rng_state()
        la.train(net, (X, y), lr=0.05, epochs=2, batch_size=16, seed=seed)
        assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
        return ParamSpace(net).vector(net)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_augmentation_and_data_object():
    d = la.load_data("digits", subset=200, test_subset=50, augment=True)
    m1, m2 = (build("smallcnn", d.input_shape, d.num_classes, seed=0) for _ in range(2))
    a = la.train(m1, d, lr=0.05, epochs=1, batch_size=50, seed=0)
    b = la.train(m2, d, lr=0.05, epochs=1, batch_size=50, seed=0, augment=False)
    assert "test_loss" in a.trajectory and a.trajectory.attrs["dataset"] == "digits"
    assert a.trajectory.attrs["data_fingerprint"] == d.fingerprint
    assert not np.allclose(a.trajectory.weights.values[-1], b.trajectory.weights.values[-1])


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_resumed_run_continues_from_last_snapshot(tmp_path, mode):
    X, y = data()
    kwargs = dict(lr=0.05, epochs=4, batch_size=32, schedule="cosine", ensemble=mode)
    full = la.train([cnn(0), cnn(1)], (X, y), seed=[5, 6], **kwargs)

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def stop_after_two(done, total):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Stop

    with pytest.raises(Stop):
        la.train([cnn(0), cnn(1)], (X, y), seed=[5, 6], store=tmp_path, progress=stop_after_two, **kwargs)
    models = [cnn(0), cnn(1)]  # the same initial weights, as a user rerunning the command has
    resumed = la.train(models, (X, y), seed=[5, 6], store=tmp_path, **kwargs)
    t = resumed.trajectory.load()
    key = ["run", "epoch"]
    np.testing.assert_allclose(t.sortby(key).weights.values, full.trajectory.sortby(key).weights.values, atol=1e-6)
    assert t.sizes["point"] == 2 * 5
    back = la.RunDir(tmp_path).open("trajectory")
    assert back.sizes["point"] == 10 and back.weights.dtype == np.float32
    assert back.attrs["kind"] == "trajectory" and back.attrs["lr_drops"] == []  # attrs survive appends


def test_bad_input():
    X, y = data()
    with pytest.raises(InputError, match="unknown optimizer"):
        la.train(cnn(0), (X, y), optimizer="rmsprop")
    with pytest.raises(InputError, match="milestones"):
        la.train(cnn(0), (X, y), schedule="step")
    with pytest.raises(InputError, match="share one architecture"):
        la.train([cnn(0), build("mlp", (1, 8, 8), 4)], (X, y), seed=[0, 1])
    with pytest.raises(InputError, match="unknown training options"):
        la.train(cnn(0), (X, y), epochz=3)
    with pytest.raises(InputError, match="differ in length"):
        la.train(cnn(0), (X, y[:-1]))


def test_la_train_stays_the_function_after_submodule_imports():
    import importlib

    importlib.import_module("lossatlas.training")
    importlib.import_module("lossatlas.jump")  # imports lossatlas.training internally
    assert callable(la.train) and la.train.__name__ == "train"

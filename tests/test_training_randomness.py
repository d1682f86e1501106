"""A run's randomness is its own: the same weights alone, in threads, as a vmap ensemble member and
after a resume, dropout included; torch's global generators are neither seeded nor advanced."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from helpers import DEVICE, clusters
from lossatlas.models import build
from lossatlas.space import ParamSpace
from lossatlas.training import RandomStream, RunGenerators, train


def data(n=48, seed=0):
    return clusters(n, (1, 8, 8), seed=seed)


def net(seed, bn=True):
    """Dropout of three kinds around a small CNN (seeded init: no global RNG)."""
    cnn = build("smallcnn", (1, 8, 8), 4, seed=seed, channels=(4, 8), hidden=16, batch_norm=bn)
    return nn.Sequential(nn.Dropout2d(0.2), cnn, nn.AlphaDropout(0.1), nn.Dropout(0.3)).to(DEVICE)


KW = dict(lr=0.05, momentum=0.9, epochs=2, batch_size=8, device=DEVICE)


def weights(m):
    return ParamSpace(m).vector(m)


def same(a, b):
    """Bit-identical on the CPU; on a GPU, whose convolution kernels need not be deterministic run to
    run, within a tolerance far below what one different dropout mask changes."""
    return torch.equal(a, b) if DEVICE.type == "cpu" else torch.allclose(a, b, atol=1e-5)


def run_one(seed, **kw):
    m = net(0)
    train(m, data(), seed=seed, **{**KW, **kw})
    return weights(m)


def test_dropout_draws_from_the_run_generator_and_changes_the_run():
    # Without the stream the masks would differ run to run; with it the run's seed decides them.
    assert same(run_one(3), run_one(3))
    assert not torch.allclose(run_one(3), run_one(4), atol=1e-3)


def test_threads_give_the_sequential_weights_with_dropout():
    seq = [run_one(s) for s in (3, 4)]
    with ThreadPoolExecutor(2) as ex:  # two trainings at once, each with its own masks
        threaded = list(ex.map(run_one, (3, 4)))
    for a, b in zip(seq, threaded):
        assert same(a, b)


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_global_generators_untouched(mode):
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(DEVICE) if DEVICE.type == "cuda" else None
    train([net(0), net(1)], data(), seed=[3, 4], ensemble=mode, **KW)
    assert torch.equal(cpu, torch.get_rng_state())
    if cuda is not None:
        assert torch.equal(cuda, torch.cuda.get_rng_state(DEVICE))


def test_vmap_ensemble_equals_sequential_with_dropout():
    X, y = data()
    test = data(40, seed=1)
    a, b = [net(0), net(1)], [net(0), net(1)]
    ra = train(a, (X, y), seed=[3, 4], ensemble="vmap", test=test, **KW)
    rb = train(b, (X, y), seed=[3, 4], ensemble="sequential", test=test, **KW)
    ta, tb = ra.trajectory.sortby(["run", "epoch"]), rb.trajectory
    np.testing.assert_allclose(ta.weights.values, tb.weights.values, atol=2e-5)
    np.testing.assert_allclose(ta.loss.values, tb.loss.values, rtol=1e-4)
    for m1, m2 in zip(a, b):
        assert torch.allclose(weights(m1), weights(m2), atol=2e-5)


def test_vmap_ensemble_trains_in_train_mode_after_a_mid_epoch_snapshot():
    # The snapshot evaluates in eval mode; the rest of the epoch must train in train mode again
    # (batch statistics, dropout on), as the sequential run does.
    kw = dict(KW, every_steps=2)
    a = train([net(0), net(1)], data(), seed=[3, 4], ensemble="vmap", **kw).trajectory.sortby(["run", "epoch"])
    b = train([net(0), net(1)], data(), seed=[3, 4], ensemble="sequential", **kw).trajectory
    assert a.sizes["point"] == 2 * (1 + 2 * 6 // 2)
    np.testing.assert_allclose(a.weights.values, b.weights.values, atol=2e-5)


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_resume_after_interruption_is_identical_with_dropout(tmp_path, mode):
    kw = dict(KW, epochs=3, ensemble=mode)
    full = [net(0), net(1)]
    train(full, data(), seed=[3, 4], **kw)

    class Stop(Exception):
        pass

    def stop(done, total):
        if done == 2 * (2 if mode == "vmap" else 1):  # after 2 epochs (vmap: of both models)
            raise Stop

    with pytest.raises(Stop):
        train([net(0), net(1)], data(), seed=[3, 4], store=tmp_path, progress=stop, **kw)
    resumed = [net(0), net(1)]
    t = train(resumed, data(), seed=[3, 4], store=tmp_path, **kw).trajectory
    assert t.sizes["point"] == 2 * 4
    for a, b in zip(full, resumed):
        if mode == "sequential":
            assert same(weights(a), weights(b))
        else:
            assert torch.allclose(weights(a), weights(b), atol=1e-6)


def test_sequential_list_resumes_inside_its_second_model(tmp_path):
    # Interrupted while the second model trains: the first model's points and the second's
    # finished epochs are kept, and the resumed run equals an uninterrupted one.
    kw = dict(KW, ensemble="sequential")
    full = train([net(0), net(1)], data(), seed=[3, 4], **kw).trajectory

    class Stop(Exception):
        pass

    def stop(done, total):
        if done == 3:  # model 0 finished (2 epochs), model 1 one epoch in
            raise Stop

    with pytest.raises(Stop):
        train([net(0), net(1)], data(), seed=[3, 4], store=tmp_path, progress=stop, **kw)
    calls = []
    t = train([net(0), net(1)], data(), seed=[3, 4], store=tmp_path, progress=lambda d, n: calls.append(d), **kw).trajectory
    assert calls == [1]  # only model 1's last epoch was left
    assert same(torch.as_tensor(t.weights.values), torch.as_tensor(full.weights.values))
    np.testing.assert_array_equal(t.run.values, full.run.values)


def test_random_draws_outside_dropout_use_the_run_generator():
    class Noisy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x + 0.1 * torch.randn_like(x) if self.training else x)

    def run(seed):
        m = Noisy(build("mlp", (1, 8, 8), 4, seed=0, hidden=(16,))).to(DEVICE)
        state = torch.get_rng_state()
        train(m, data(), seed=seed, **KW)
        assert torch.equal(state, torch.get_rng_state())
        return weights(m)

    assert same(run(5), run(5))
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(run, (5, 6))
    assert same(a, run(5)) and same(b, run(6))


def test_vmap_ensemble_refuses_other_random_draws():
    from lossatlas._errors import InputError

    class Noisy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x + torch.rand_like(x))

    models = [Noisy(build("mlp", (1, 8, 8), 4, seed=s, hidden=(8,))).to(DEVICE) for s in (0, 1)]
    with pytest.raises(InputError, match="ensemble='sequential'"):
        train(models, data(), seed=[0, 1], ensemble="vmap", **KW)


def test_stream_masks_match_torch_dropout_semantics():
    gens = RunGenerators(0, DEVICE)
    x = torch.ones(64, 16, 4, 4, device=DEVICE)
    with RandomStream(gens.dropout):
        y = nn.functional.dropout(x, 0.25, training=True)
        z = nn.functional.dropout2d(x, 0.5, training=True)
        same = nn.functional.dropout(x, 0.25, training=False)
        x2 = torch.ones(8, 8, device=DEVICE)
        in_place = nn.Dropout(0.5, inplace=True)(x2)
    assert set(torch.unique(y).tolist()) <= {0.0, float(torch.tensor(1 / 0.75))}
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.02
    per_channel = z.reshape(64, 16, -1)
    assert bool(((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all())  # whole channels
    assert same is x
    assert in_place is x2 and bool((x2 == 0).any()) and bool((x2 == 2).any())
    state = RunGenerators(0, DEVICE).dropout.get_state()
    assert not torch.equal(state, gens.dropout.get_state())  # the masks came from the run's generator

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.models import build
from lossatlas.space import ParamSpace, random_directions


@pytest.fixture(scope="module")
def minimum():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 4
    X = torch.randn(4, 1, 8, 8, generator=gen)[y] + 0.7 * torch.randn(96, 1, 8, 8, generator=gen)
    model = build("smallcnn", (1, 8, 8), 4, seed=0, channels=(4, 8), hidden=16)
    la.train(model, (X, y), lr=0.1, epochs=5, batch_size=32)
    return model, (X, y)


def test_jump_points_are_step_size_times_filter_normalized_direction(minimum):
    model, data = minimum
    space = ParamSpace(model)
    theta0 = space.vector(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = la.jump_retrain(model, data, seeds=[3, 7], step_sizes=[0.25, 1.0], epochs=2, batch_size=32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched
    assert s.sizes["point"] == 2 * 2 * 3
    jumps = s.sel(point=s.epoch.values == 0)
    assert jumps.sizes["point"] == 4
    for p in range(4):
        seed, c = int(jumps.seed[p]), float(jumps.step_size[p])
        (v,) = random_directions(model, n=1, seed=seed)
        delta = torch.from_numpy(jumps.weights.values[p]) - theta0
        assert torch.allclose(delta, c * v, atol=1e-6)
        # per filter: ||delta_i|| = c * ||theta0_i|| for every weight filter; biases and BN untouched
        for e, dn, wn in zip(space.entries, space.filter_norms(delta), space.filter_norms(theta0)):
            if len(e.shape) >= 2:
                assert torch.allclose(dn, c * wn, rtol=1e-4, atol=1e-6), e.name
            else:
                assert dn.item() == 0.0
    # epoch 0 is the jump point itself: its recorded loss is the loss there
    f = la.Landscape(model, data)
    first = jumps.weights.values[0]
    assert jumps.loss.values[0] == pytest.approx(f.evaluate(torch.from_numpy(first))["loss"].item(), rel=1e-5)
    # retraining moves the weights from the jump point
    later = s.sel(point=(s.run.values == 0) & (s.epoch.values == 2))
    assert not np.allclose(later.weights.values[0], first)


def test_store_executor_and_resume(minimum, tmp_path):
    model, data = minimum
    kwargs = dict(seeds=[0, 1], step_sizes=[0.5, 1.0], epochs=2, batch_size=32)
    plain = la.jump_retrain(model, data, **kwargs)
    with ThreadPoolExecutor(2) as ex:
        stored = la.jump_retrain(model, data, store=tmp_path, executor=ex, **kwargs)
    key = ["run", "epoch"]
    np.testing.assert_allclose(stored.sortby(key).weights.values, plain.sortby(key).weights.values, atol=1e-6)
    assert (tmp_path / "jump.zarr").exists() and not (tmp_path / "jump.runs").exists()
    again = la.jump_retrain(model, data, store=tmp_path, **kwargs)  # complete: read back, not rerun
    assert again.attrs["complete"]


def test_grid_and_naive_give_requested_number_of_points(minimum):
    model, data = minimum
    f = la.Landscape(model, data)
    g = la.grid_sample(f, n_points=40, span=1.0, seed=0)
    n = la.naive_sample(f, n_points=40, step_sizes=(0.25, 0.5, 0.75, 1.0), seed=0)
    assert g.sizes["point"] == n.sizes["point"] == 40
    assert not ((g.gx == 0) & (g.gy == 0) & (g.gz == 0)).any()  # the optimum itself is excluded
    assert len(np.unique(g.gx.values)) <= 5  # points lie on the grid (5 per axis for 40 points)
    # naive points: center + c * d_k, the directions of naive sampling's own stream of the seed
    from lossatlas.static_sampling import sampler_directions

    d = sampler_directions(f.space, f.origin, "naive", 10, "filter", "biasbn", 0)
    k = 7
    np.testing.assert_allclose(n.weights.values[k], (f.origin + n.step_size.values[k] * d[int(n.direction[k])]).numpy(), atol=1e-6)
    assert n.loss.values[k] == pytest.approx(f.evaluate(torch.from_numpy(n.weights.values[k]))["loss"].item(), rel=1e-5)
    with pytest.raises(InputError, match="multiple"):
        la.naive_sample(f, n_points=41)


def test_bad_input_fails_before_any_run(minimum):
    model, data = minimum
    with pytest.raises(InputError, match="unknown optimizer"):
        la.jump_retrain(model, data, optimizer="lbfgs")
    with pytest.raises(InputError, match="positive"):
        la.jump_retrain(model, data, step_sizes=(0.5, -1))
    with pytest.raises(InputError, match="distinct"):
        la.jump_retrain(model, data, seeds=[1, 1])


def test_vmapped_runs_match_sequential_runs(minimum, tmp_path):
    """ensemble="vmap" trains all runs at once; each member is the run it would be alone (up to
    float rounding), in the same run-by-run order, in memory and through a store."""
    model, data = minimum
    kwargs = dict(seeds=[0, 1], step_sizes=[0.5, 1.0], epochs=2, batch_size=32)
    seq = la.jump_retrain(model, data, **kwargs)
    vm = la.jump_retrain(model, data, ensemble="vmap", **kwargs)
    stored = la.jump_retrain(model, data, ensemble="vmap", store=tmp_path, **kwargs)
    for other in (vm, stored):
        for c in ("run", "epoch", "seed", "step_size"):
            np.testing.assert_array_equal(other[c].values, seq[c].values)
        np.testing.assert_allclose(other.weights.values, seq.weights.values, atol=1e-5)
        np.testing.assert_allclose(other.loss.values, seq.loss.values, rtol=1e-4, atol=1e-6)
    # the mode is a recorded setting: a sequential request does not reuse the vmapped store
    with pytest.raises(la.StoreMismatchError, match="ensemble"):
        la.jump_retrain(model, data, store=tmp_path, **kwargs)
    with pytest.raises(InputError, match="ensemble"):
        la.jump_retrain(model, data, ensemble="threads", **kwargs)


def test_jump_retrain_takes_a_dataloader_as_train_and_landscape_do():
    # old: InputError "training data must be an (X, y) pair of tensors or a lossatlas.data.Data"
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 6, generator=gen), torch.arange(40) % 3
    model = torch.nn.Sequential(torch.nn.Linear(6, 3))
    kwargs = dict(seeds=[0], step_sizes=[0.5], epochs=1, batch_size=20)
    from_pair = la.jump_retrain(model, (X, y), **kwargs)
    loader = DataLoader(TensorDataset(X, y), batch_size=7, shuffle=True)
    from_loader = la.jump_retrain(model, loader, **kwargs)
    assert torch.equal(torch.as_tensor(from_pair.weights.values), torch.as_tensor(from_loader.weights.values))
    assert from_pair.loss.values.tolist() == from_loader.loss.values.tolist()

"""Retained gradient graphs (Landscape.retained): every product at one point is one backward pass
on graphs built once, with the same values as products taken from scratch."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from helpers import DEVICE
from lossatlas.curvature import hessian_eigenvalues, spectral_density
from lossatlas.landscape import Landscape
from lossatlas.landscape import derivatives


class CountingNet(nn.Module):
    """A small CNN with batch norm that counts its forward passes (across deep copies)."""

    forwards = 0

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1).double()
        self.bn = nn.BatchNorm2d(3).double()
        self.fc = nn.Linear(3 * 16, 4).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            self.bn.running_mean.copy_(torch.randn(3, generator=g, dtype=torch.float64) * 0.1)
            self.bn.running_var.copy_(1 + torch.rand(3, generator=g, dtype=torch.float64))

    def forward(self, x):
        CountingNet.forwards += 1
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


def problem(bn="eval", n=30, batch_size=10):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=g)
    f = Landscape(CountingNet(), (X, y), device=DEVICE, bn=bn, batch_size=batch_size)
    v = torch.randn(f.space.size, generator=g, dtype=torch.float64).to(f.origin.device)
    return f, v


@pytest.mark.parametrize("bn", ["eval", "batch", "recompute"])
def test_products_on_retained_graphs_equal_products_from_scratch(bn):
    f, v = problem(bn)
    theta = f.origin + 0.01 * v
    plain = f.hvp(theta, v)
    with f.retained(theta) as graphs:
        assert graphs.kept == 3 and graphs.bytes_per_batch > 0
        kept = [f.hvp(theta, v), f.hvp(theta.clone(), v)]  # the same point, another tensor
        other = f.hvp(f.origin, v)  # another point: taken from scratch
    assert graphs.kept == 3 and graphs.graphs == []  # released on leaving, the count kept
    for hv in kept:
        torch.testing.assert_close(hv, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(other, f.hvp(f.origin, v), rtol=1e-12, atol=1e-12)
    assert not torch.equal(other, plain)


def test_batches_beyond_the_budget_are_recomputed_at_each_product():
    f, v = problem()
    plain = f.hvp(f.origin, v)
    with f.retained(f.origin) as graphs:
        per = graphs.bytes_per_batch
    for budget, kept in [(int(1.5 * per), 1), (2 * per, 2), (per - 1, 0), (0, 0)]:
        with f.retained(f.origin, budget=budget) as graphs:
            assert graphs.kept == kept
            torch.testing.assert_close(f.hvp(f.origin, v), plain, rtol=1e-12, atol=1e-12)


def test_measured_bytes_grow_with_the_batch():
    small, _ = problem(n=8, batch_size=8)
    large, _ = problem(n=64, batch_size=64)
    with small.retained(small.origin) as a, large.retained(large.origin) as b:
        assert b.bytes_per_batch > 4 * a.bytes_per_batch


def test_measured_bytes_leave_out_the_point_and_the_data_held_anyway():
    X = torch.randn(1000, 5, dtype=torch.float64)
    t = torch.randn(5, dtype=torch.float64, requires_grad=True)

    def loss():
        return (X @ t).pow(2).sum()

    _, without = derivatives._measured_gradient(loss, t, (X,))
    _, counted = derivatives._measured_gradient(loss, t, ())
    assert without < X.numel() * 8 / 2  # X @ t (1000 doubles) and the gradient, not X
    assert counted >= without + X.numel() * 8


def test_eigenvalues_run_the_model_once_per_batch_not_once_per_product(monkeypatch):
    f, _ = problem()
    CountingNet.forwards = 0
    result = hessian_eigenvalues(f, k=2, return_vectors=True)
    assert result.products > 4
    assert CountingNet.forwards == 3  # three batches, graphs built once (was products x 3)
    monkeypatch.setattr(derivatives, "RETAIN_FRACTION", 0.0)
    CountingNet.forwards = 0
    plain = hessian_eigenvalues(f, k=2, return_vectors=True)
    assert CountingNet.forwards == 3 * plain.products
    np.testing.assert_allclose(result.values.numpy(), plain.values.numpy(), rtol=1e-9)


def test_spectral_density_uses_retained_graphs_with_the_same_result(monkeypatch):
    f, _ = problem()
    CountingNet.forwards = 0
    kept = spectral_density(f, iterations=8, runs=2, seed=3)
    assert CountingNet.forwards == 3
    monkeypatch.setattr(derivatives, "RETAIN_FRACTION", 0.0)
    plain = spectral_density(f, iterations=8, runs=2, seed=3)
    np.testing.assert_allclose(kept["nodes"].values, plain["nodes"].values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kept["density"].values, plain["density"].values, rtol=1e-6, atol=1e-9)


def test_a_landscape_pickles_and_retains_after_unpickling():
    f, v = problem()
    g = pickle.loads(pickle.dumps(f))
    with g.retained(g.origin) as graphs:
        assert graphs.kept == 3
        torch.testing.assert_close(g.hvp(g.origin, v), f.hvp(f.origin, v), rtol=1e-12, atol=1e-12)


def test_the_budget_on_cuda_comes_from_the_device_free_memory(monkeypatch):
    from lossatlas import memory

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: asked.append(d) or (3 << 30, 80 << 30))
    assert memory.device_free_memory("cuda:0") == 3 << 30
    assert asked == [torch.device("cuda:0")]
    monkeypatch.setattr(memory, "available_memory", lambda: 5 << 30)
    assert memory.device_free_memory("cpu") == 5 << 30  # the CPU's MemAvailable, never the GPU's


def test_the_default_budget_is_a_quarter_of_the_free_memory(monkeypatch):
    from lossatlas import memory

    f, v = problem()
    with f.retained(f.origin) as graphs:
        per = graphs.bytes_per_batch
    monkeypatch.setattr(memory, "device_free_memory", lambda device: 4 * per + 3)  # a quarter: one batch
    with f.retained(f.origin) as graphs:
        assert graphs.kept == 1 and graphs.budget == per

"""Adaptive sharpness: invariant to ReLU layer rescaling where the plain ball is not; exact on a
quadratic; seeded and refused bad input."""

import copy
import math

import pytest
import torch
from torch import nn

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape
from lossatlas.sharpness import adaptive_sharpness


def rescaled(model, a):
    """Layer 1 times a, layer 3 (after the ReLU) times 1/a: the same function."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m[1].weight.mul_(a)
        m[1].bias.mul_(a)
        m[3].weight.div_(a)
    return m


def test_adaptive_sharpness_is_invariant_to_relu_rescaling_and_the_plain_ball_is_not():
    X, y = blobs(n=64, d_in=8, classes=3)
    model = train_briefly(mlp(d_in=8, hidden=6, classes=3).double(), X.double(), y, steps=40)
    f = Landscape(model, (X.double(), y), device=DEVICE)
    g = Landscape(rescaled(model, 4.0), (X.double(), y), device=DEVICE)
    assert float(f.evaluate(f.origin)["loss"][0]) == pytest.approx(float(g.evaluate(g.origin)["loss"][0]), rel=1e-12)
    for kind, p in (("worst", 2), ("worst", "inf"), ("average", 2)):
        a = adaptive_sharpness(f, rho=0.1, kind=kind, p=p, samples=48, steps=8)
        b = adaptive_sharpness(g, rho=0.1, kind=kind, p=p, samples=48, steps=8)
        assert a > 0 and b == pytest.approx(a, rel=1e-9), (kind, p)
        plain_a = adaptive_sharpness(f, rho=0.1, kind=kind, p=p, adaptive=False, samples=48, steps=8)
        plain_b = adaptive_sharpness(g, rho=0.1, kind=kind, p=p, adaptive=False, samples=48, steps=8)
        assert abs(plain_b - plain_a) > 0.2 * abs(plain_a), (kind, p)


class Quadratic(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


def test_worst_case_in_the_plain_ball_of_a_quadratic_is_half_lambda_max_rho_squared():
    h = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)

    def loss(out, target):
        return 0.5 * ((out - target) ** 2 * h).sum(1).mean()

    f = Landscape(Quadratic([0.0, 0.0, 0.0]), (torch.zeros(1, 1), torch.zeros(1, 3, dtype=torch.float64)),
                  loss=loss, device=DEVICE)
    rho = 0.2
    got = adaptive_sharpness(f, rho=rho, adaptive=False, steps=60, samples=None)
    assert got == pytest.approx(0.5 * 3.0 * rho ** 2, rel=1e-3)
    # the inf-ball's worst corner: 0.5 * sum(h) rho^2
    assert adaptive_sharpness(f, rho=rho, p="inf", adaptive=False, steps=30) == pytest.approx(0.5 * 4.5 * rho ** 2, rel=1e-9)
    # average: E[0.5 sum h z^2] = 0.5 sum(h) rho^2, within Monte-Carlo error
    avg = adaptive_sharpness(f, rho=rho, kind="average", adaptive=False, steps=400)
    assert avg == pytest.approx(0.5 * 4.5 * rho ** 2, rel=0.15)
    # adaptive at w = 0: nothing can move
    assert adaptive_sharpness(f, rho=rho) == 0.0


def test_seeded_and_refusals():
    X, y = blobs(n=64, d_in=8, classes=3)
    f = Landscape(mlp(d_in=8, hidden=6, classes=3), (X, y), device=DEVICE)
    a = adaptive_sharpness(f, rho=0.05, samples=32, steps=3, seed=1)
    assert adaptive_sharpness(f, rho=0.05, samples=32, steps=3, seed=1) == a
    assert adaptive_sharpness(f, rho=0.05, samples=32, steps=3, seed=2) != a
    for bad in (dict(rho=0), dict(kind="best"), dict(p=1), dict(samples=0), dict(adaptive="yes")):
        with pytest.raises(InputError):
            adaptive_sharpness(f, **bad)
    assert math.isfinite(adaptive_sharpness(f, rho=0.05, p=math.inf, samples=16, steps=2))

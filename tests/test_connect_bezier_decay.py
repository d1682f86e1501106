"""The Bezier curve's weight decay is Garipov et al.'s: 0.5 wd ||phi(t)||^2 at the sampled t
(their l2_regularizer of the curve point), not a decay of the bend (issue 19, item 7)."""

import pytest
import torch
import torch.nn.functional as F

from helpers import DEVICE, blobs, mlp
from lossatlas.connectivity import bezier_curve
from lossatlas.connectivity.bezier import bezier_point
from lossatlas.curvature.operators import generator_for
from lossatlas.landscape import Landscape
from lossatlas.space import ParamSpace


def test_one_step_follows_the_gradient_of_loss_plus_half_wd_norm_of_the_curve_point():
    X, y = blobs(n=48, d_in=6, seed=0)
    model = mlp(seed=0, d_in=6, hidden=5).to(DEVICE)
    space = ParamSpace(model)
    a = space.vector(model).to(DEVICE)
    b = a + 0.5 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    f = Landscape(model, (X, y), device=DEVICE)
    lr, wd = 0.1, 0.3
    ds = bezier_curve(f, a, b, steps=1, lr=lr, momentum=0.0, weight_decay=wd, points=3, seed=0)
    assert ds.attrs["settings"]["weight_decay_on"] == "curve_point"

    # The same step from the formula, by autograd: t is the seed's first draw, c starts at the midpoint.
    t = float(torch.rand((), generator=generator_for(0, a.device), device=a.device))
    c = (0.5 * (a + b)).clone().requires_grad_(True)
    phi = bezier_point(a, c, b, t)
    out = torch.func.functional_call(model, space.unflatten(phi), (X.to(DEVICE),))
    objective = F.cross_entropy(out, y.to(DEVICE)) + 0.5 * wd * phi.pow(2).sum()
    (grad_c,) = torch.autograd.grad(objective, c)
    expected = (c - lr * grad_c).detach().cpu().numpy()
    got = ds["bend"].values
    # Before: the decay acted on the bend (grad wd * c, not 2 t (1 - t) wd phi(t)); the bend was
    # 0.0166 away (max abs) from this step.
    assert got == pytest.approx(expected, abs=1e-5)

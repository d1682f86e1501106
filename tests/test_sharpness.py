"""Sharpness and flatness measures against analytic answers and invariances."""

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape
from lossatlas.sharpness import basin_volume, compare_minima, epsilon_sharpness, loss_rise, plane_volume
from lossatlas.space import ParamSpace, make_directions


class Quadratic(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(c, dtype=torch.float64).clone())

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


def quadratic(h, c, offset=0.0):
    """f(w) = offset + 0.5 sum_i h_i (w_i - c_i)^2, with the model sitting at its minimum c."""
    h = torch.as_tensor(h, dtype=torch.float64)
    c = torch.as_tensor(c, dtype=torch.float64)

    def loss(out, target):
        return offset + 0.5 * ((out - target) ** 2 * h.to(out.device)).sum(1).mean()

    f = Landscape(Quadratic(c), (torch.zeros(1, 1, dtype=torch.float64), c.unsqueeze(0)), loss=loss, device=DEVICE)
    return f, h, c


def test_epsilon_sharpness_of_a_quadratic_is_the_box_maximum():
    f, h, c = quadratic([5.0, 2.0, 1.0, 0.5, 3.0], [0.3, -2.0, 1.5, 0.0, -0.7], offset=0.2)
    for eps in (1e-3, 5e-4):
        half = eps * (c.abs() + 1)  # Keskar et al.'s box at x = c with A = I
        box_max = 0.2 + 0.5 * float((h * half**2).sum())  # a convex quadratic peaks at a corner
        expected = 100 * (box_max - 0.2) / (1 + 0.2)
        assert epsilon_sharpness(f, eps=eps) == pytest.approx(expected, rel=1e-6)


def test_epsilon_sharpness_in_a_subspace_ends_at_a_corner_of_the_papers_box():
    f, h, c = quadratic([5.0, 2.0, 1.0, 0.5, 3.0, 4.0], [0.3, -2.0, 1.5, 0.0, -0.7, 1.0])
    eps, p, seed = 1e-2, 3, 4
    phi = epsilon_sharpness(f, eps=eps, subspace=p, seed=seed, maxiter=50)
    # Rebuild the same A (the first draw of the seeded generator) and the paper's box in z.
    gen = torch.Generator(device=f.origin.device).manual_seed(seed)
    A = torch.randn(6, p, generator=gen, dtype=torch.float64, device=f.origin.device).cpu()
    half = eps * (torch.linalg.pinv(A) @ c).abs() + eps
    M = A.T @ torch.diag(h) @ A
    corners = [100 * 0.5 * float(z @ M @ z) for z in
               (torch.tensor(s, dtype=torch.float64) * half for s in itertools.product((-1, 1), repeat=p))]
    # A maximum of a convex function over a box lies at a corner; L-BFGS-B finds one of them.
    assert phi <= max(corners) * (1 + 1e-6)
    assert min(abs(phi - v) / v for v in corners) < 1e-6
    assert epsilon_sharpness(f, eps=eps / 2, subspace=p, seed=seed, maxiter=50) < phi


def test_loss_rise_is_the_quadratic_form_and_basin_volume_counts_directions():
    f, h, c = quadratic([4.0, 1.0, 0.25], [1.0, -1.0, 2.0])
    dirs = torch.stack(make_directions(f.space, f.origin, 8, norm="none", ignore=None, seed=5))
    r = 0.3
    expected = 0.5 * r**2 * (dirs**2 * h.to(dirs.device)).sum(1)
    out = loss_rise(f, radius=r, directions=8, norm="none", ignore=None, seed=5)
    assert np.allclose(out["rises"], expected.cpu().numpy(), rtol=1e-10)
    assert out["mean"] == pytest.approx(float(expected.mean())) and out["max"] == pytest.approx(float(expected.max()))
    threshold = float(expected.median())
    share = basin_volume(f, threshold=threshold, radius=r, directions=8, norm="none", ignore=None, seed=5)
    assert share == pytest.approx(float((expected <= threshold).double().mean()))
    assert basin_volume(f, threshold=1e9, radius=r, norm="none", ignore=None) == 1.0
    assert basin_volume(f, threshold=1e-12, radius=r, norm="none", ignore=None) == 0.0


def test_filter_normalized_loss_rise_ignores_relu_rescaling():
    X, y = blobs(n=48, d_in=8, seed=2)
    model = train_briefly(mlp(seed=3, d_in=8, hidden=6), X, y, steps=60)
    scaled = copy.deepcopy(model)
    with torch.no_grad():  # layer 1 (weights and bias) times 4, layer 2 weights / 4: the same function
        scaled[1].weight.mul_(4.0)
        scaled[1].bias.mul_(4.0)
        scaled[3].weight.div_(4.0)
    f = Landscape(model, (X, y), device=DEVICE)
    g = Landscape(scaled, (X, y), device=DEVICE)
    assert float(f.evaluate(f.origin)["loss"][0]) == pytest.approx(float(g.evaluate(g.origin)["loss"][0]), rel=1e-5)
    a = loss_rise(f, radius=0.5, directions=6, seed=1)
    b = loss_rise(g, radius=0.5, directions=6, seed=1)
    assert np.allclose(a["rises"], b["rises"], rtol=1e-3, atol=1e-6)
    # Without normalization the rescaled minimum looks different.
    c = loss_rise(f, radius=0.5, directions=6, seed=1, norm="none")
    d = loss_rise(g, radius=0.5, directions=6, seed=1, norm="none")
    assert not np.allclose(c["rises"], d["rises"], rtol=1e-2)


def test_plane_volume_and_bad_input():
    import xarray as xr

    x = np.linspace(-1, 1, 5)
    ds = xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, x**2))}, coords={"x": x, "y": x})
    assert plane_volume(ds, threshold=0.5) == pytest.approx(np.mean(np.add.outer(x**2, x**2) <= 0.5))
    with pytest.raises(InputError, match="no 'accuracy'"):
        plane_volume(ds, variable="accuracy")
    f, _, _ = quadratic([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(InputError, match="eps"):
        epsilon_sharpness(f, eps=0)
    with pytest.raises(InputError, match="subspace"):
        epsilon_sharpness(f, subspace=5)


def test_compare_minima_table():
    X, y = blobs(n=48, d_in=8, seed=0)
    Xt, yt = blobs(n=32, d_in=8, seed=9)
    models = {name: train_briefly(mlp(seed=s, d_in=8, hidden=6), X, y, steps=steps)
              for name, s, steps in (("long", 0, 120), ("short", 1, 30))}
    before = {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}
    f = Landscape(models["long"], (X, y), test=(Xt, yt), device=DEVICE)
    minima = {k: ParamSpace(m).vector(m) for k, m in models.items()}
    table = compare_minima(f, minima, subspace=5, directions=3, maxiter=2, eigenvalues=2)
    assert list(table["minimum"].values) == ["long", "short"]
    assert table["sharpness"].dims == ("minimum", "eps", "space") and table["sharpness"].shape == (2, 2, 2)
    assert np.isfinite(table["sharpness"].values).all() and (table["sharpness"].values >= 0).all()
    # Keskar's measure grows with the box: eps 1e-3 above eps 5e-4.
    assert (table["sharpness"].sel(eps=1e-3).values >= table["sharpness"].sel(eps=5e-4).values).all()
    for var in ("loss", "accuracy", "test_loss", "test_error", "weight_norm", "mean_rise", "max_rise", "basin_volume"):
        assert table[var].dims == ("minimum",), var
    assert table["lambda"].shape == (2, 2) and (table["lambda"].values[:, 0] >= table["lambda"].values[:, 1]).all()
    assert table.attrs["settings"]["eps"] == [1e-3, 5e-4]
    for k, m in models.items():
        assert all(torch.equal(before[k][n], t) for n, t in m.state_dict().items())

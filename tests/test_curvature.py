"""Curvature: eigenvalues, trace, spectral density and convexity map against exact answers."""

import copy
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.curvature import (
    ConvergenceWarning,
    HessianOperator,
    convexity_map,
    dense_hessian,
    hessian_eigenvalues,
    hessian_trace,
    spectral_density,
)
from lossatlas.landscape import Landscape
from lossatlas.space import ParamSpace


class Quadratic(nn.Module):
    """f(w) = 0.5 * sum_i h_i (w_i - c_i)^2 through a loss on the model's output: Hessian diag(h)."""

    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


def quadratic(h, c=None):
    h = torch.as_tensor(h, dtype=torch.float64)
    c = torch.zeros_like(h) if c is None else torch.as_tensor(c, dtype=torch.float64)
    model = Quadratic(h.numel())

    def loss(out, target):
        return 0.5 * ((out - target) ** 2 * h.to(out.device)).sum(1).mean()

    X, y = torch.zeros(1, 1, dtype=torch.float64), c.unsqueeze(0)
    return Landscape(model, (X, y), loss=loss, device=DEVICE), h


def regression(P=12, N=200, seed=0):
    """Linear least squares: the Hessian of mean((Xw - y)^2) is 2 X^T X / N, exactly."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, P, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, P, dtype=torch.float64)
    y = torch.randn(N, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(P, 1, bias=False).double()
    return Landscape(model, (X, y), loss="mse", device=DEVICE), 2 * X.T @ X / N


def test_eigenvalues_of_a_regression_match_the_exact_hessian_both_solvers():
    f, H = regression()
    exact = torch.linalg.eigvalsh(H)  # ascending
    for method in ("lanczos", "arpack"):
        top = hessian_eigenvalues(f, k=5, method=method)
        assert torch.allclose(top, exact.flip(0)[:5], rtol=1e-8)
        both = hessian_eigenvalues(f, k=2, which="both", method=method)
        assert torch.allclose(both, torch.cat([exact.flip(0)[:2], exact[:2].flip(0)]), rtol=1e-6)
    assert torch.allclose(dense_hessian(f), H, atol=1e-12)


def test_most_negative_eigenvalue_of_an_indefinite_quadratic_and_repeated_eigenvalues():
    h = [7.0, 3.0, 3.0, 1.0, 1.0, 0.5, -0.25, -2.0]
    f, _ = quadratic(h)
    for method in ("lanczos", "arpack"):
        low = hessian_eigenvalues(f, k=2, which="smallest", method=method)
        assert torch.allclose(low, torch.tensor([-0.25, -2.0], dtype=torch.float64), atol=1e-8)
    # A single Krylov space holds one copy of a repeated eigenvalue; the restart finds the other.
    res = hessian_eigenvalues(f, k=3, return_vectors=True)
    assert torch.allclose(res.values, torch.tensor([7.0, 3.0, 3.0], dtype=torch.float64), atol=1e-8)
    assert res.converged and res.vectors.shape == (3, len(h))
    gram = res.vectors.double() @ res.vectors.double().T
    assert torch.allclose(gram, torch.eye(3, dtype=torch.float64), atol=1e-8)
    # Positive definite: the shifted operator's largest magnitude is on the upper end, which the
    # solvers must not mistake for the lower one.
    f, _ = quadratic([5.0, 4.0, 3.0, 2.5, 2.0])
    for method in ("lanczos", "arpack"):
        assert float(hessian_eigenvalues(f, which="smallest", method=method)[0]) == pytest.approx(2.0, abs=1e-8)


def test_trace_and_density_of_a_diagonal_quadratic():
    h = [6.0] * 2 + [2.0] * 5 + [0.5] * 9
    f, H = quadratic(h)
    est = hessian_trace(f, samples=10, seed=3, return_error=True)
    # Rademacher v: v^T diag(h) v = sum(h) for every v, so the estimate is exact.
    assert est.value == pytest.approx(sum(h)) and est.stderr == pytest.approx(0.0, abs=1e-9)
    assert hessian_trace(f, samples=4) == pytest.approx(sum(h))
    ds = spectral_density(f, seed=1)
    nodes = ds["nodes"].values[0]
    weights = ds["weights"].values[0]
    finite = np.isfinite(nodes)
    # Three distinct eigenvalues: Lanczos ends after three steps with the exact measure.
    assert finite.sum() == 3
    assert np.allclose(np.sort(nodes[finite]), [0.5, 2.0, 6.0], atol=1e-10)
    assert np.allclose(weights[finite][np.argsort(nodes[finite])], [9 / 16, 5 / 16, 2 / 16], atol=1e-10)
    assert ds.attrs["mass"] == pytest.approx(1.0, abs=1e-4)
    grid, dens = ds["eigenvalue"].values, ds["density"].values
    peaks = grid[1:-1][(dens[1:-1] > dens[:-2]) & (dens[1:-1] >= dens[2:])]
    assert np.allclose(np.sort(peaks), [0.5, 2.0, 6.0], atol=2 * (grid[1] - grid[0]))
    assert ds.attrs["variance"] == pytest.approx(1e-5 * 5.5)  # PyHessian: 1e-5 * max(1, range)


def test_mlp_top_eigenvalue_matches_dense_hessian_and_pyhessian():
    X, y = blobs(n=64, d_in=8, seed=0)
    model = train_briefly(mlp(seed=0, d_in=8, hidden=8), X, y, steps=80)
    before = copy.deepcopy(model.state_dict())
    f = Landscape(model, (X, y), device=DEVICE)
    space = ParamSpace(model)
    names = [e.name for e in space.entries]

    def loss(flat):
        params = dict(zip(names, space.split(flat)))
        out = torch.func.functional_call(model, params, (X,))
        return nn.functional.cross_entropy(out, y)

    theta = space.vector(model)
    H = torch.autograd.functional.hessian(loss, theta, vectorize=True).double()
    exact = torch.linalg.eigvalsh(0.5 * (H + H.T))
    top = hessian_eigenvalues(f, k=3, tol=1e-4)
    assert torch.allclose(top, exact.flip(0)[:3], rtol=1e-3)
    lo_hi = hessian_eigenvalues(f, which="both", tol=1e-3)
    assert float(lo_hi[0]) == pytest.approx(float(exact[-1]), rel=1e-3)
    assert float(lo_hi[1]) == pytest.approx(float(exact[0]), abs=1e-3 * float(exact[-1]))

    est = hessian_trace(f, samples=30, seed=0, return_error=True)
    assert abs(est.value - float(torch.trace(H))) < 3 * est.stderr

    import pyhessian  # installed in the project's environment; it runs on torch 2.13 (eigenvalues)

    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(0)  # PyHessian draws its start vectors from the global generator
        warnings.simplefilter("ignore", UserWarning)  # its backward(create_graph=True) warns
        hc = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        ref, _ = hc.eigenvalues(maxIter=200, tol=1e-6, top_n=1)
    assert float(top[0]) == pytest.approx(ref[0], rel=1e-2)
    # The user's model is untouched.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not model.training


def test_convexity_map_of_a_quadratic_in_threads_equals_in_process():
    f, _ = quadratic([4.0, 1.0, -1.0, 0.5])
    g = torch.Generator().manual_seed(0)
    dirs = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(2)]
    ds = convexity_map(f, None, dirs, span=1.0, steps=3, tol=1e-6)
    assert ds["ratio"].dims == ("x", "y") and ds["ratio"].shape == (3, 3)
    assert np.allclose(ds["lambda_max"].values, 4.0) and np.allclose(ds["lambda_min"].values, -1.0)
    assert np.allclose(ds["ratio"].values, 0.25) and ds.attrs["nan_cells"] == 0
    calls = []
    with ThreadPoolExecutor(2) as pool:
        par = convexity_map(f, None, dirs, span=1.0, steps=3, tol=1e-6, executor=pool,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (9, 9) and len(calls) == 9
    assert np.array_equal(par["ratio"].values, ds["ratio"].values)
    assert ds.attrs["settings"] == par.attrs["settings"]
    assert ds.attrs["settings"]["tol"] == 1e-6 and ds.attrs["settings"]["method"] == "lanczos"


def test_convexity_map_refuses_an_unknown_solver_option_before_any_cell():
    """The solver options are one set (CELL_SOLVER): a misspelt one is named, with the known ones."""
    f, _ = quadratic([4.0, 1.0])
    dirs = [torch.eye(2, dtype=torch.float64)[0], torch.eye(2, dtype=torch.float64)[1]]
    calls = []
    with pytest.raises(InputError, match=r"does not take \['tolerance'\].*'ignore', 'maxiter'"):
        convexity_map(f, None, dirs, steps=3, tolerance=1e-6, progress=lambda d, t: calls.append(d))
    assert calls == []


class _NanLandscape:
    """A landscape whose loss is NaN everywhere (a diverged point)."""

    def __init__(self):
        model = nn.Linear(3, 1)
        self.space = ParamSpace(model)
        self.origin = self.space.vector(model)

    def hvp(self, theta, v, split="train"):
        return torch.full_like(theta, math.nan)


def test_nan_hessian_is_flagged_not_fatal():
    f = _NanLandscape()
    with pytest.warns(RuntimeWarning, match="not finite"):
        values = hessian_eigenvalues(f, k=2)
    assert values.shape == (2,) and torch.isnan(values).all()
    with pytest.warns(RuntimeWarning, match="not finite"):
        ds = spectral_density(f, iterations=3)
    assert ds.attrs["nan_runs"] == 1 and np.isnan(ds["density"].values).all()


def test_bad_input_and_nonconvergence():
    f, _ = regression(P=30)
    with pytest.raises(InputError, match="spectrum end"):
        hessian_eigenvalues(f, which="middle")
    with pytest.raises(InputError, match="at most 30"):
        hessian_eigenvalues(f, k=31)
    with pytest.raises(InputError, match="theta"):
        hessian_eigenvalues(f, torch.zeros(5))
    with pytest.raises(InputError, match="split"):
        HessianOperator(f, split="test")
    with pytest.warns(ConvergenceWarning, match="maxiter"):
        hessian_eigenvalues(f, k=3, tol=1e-12, maxiter=4)
    seen = []
    hessian_eigenvalues(f, k=1, maxiter=25, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (25, 25) and seen[0] == (1, 25)  # the bar completes when the run converges early


def test_seeded_and_restricted():
    X, y = blobs(n=32, d_in=8, seed=1)
    f = Landscape(mlp(seed=1, d_in=8, hidden=6), (X, y), device=DEVICE)
    a = hessian_trace(f, samples=5, seed=7)
    assert a == hessian_trace(f, samples=5, seed=7) and a != hessian_trace(f, samples=5, seed=8)
    op = HessianOperator(f, ignore="biasbn")
    keep = f.space.mask("biasbn")
    assert op.size == int(keep.sum()) < f.space.size
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(0))
    full = torch.zeros(f.space.size)
    full[keep] = v
    assert torch.allclose(op.matvec(v), f.hvp(f.origin, full)[keep])


def test_density_and_convexity_figures(tmp_path):
    from lossatlas.plot.curvature import plot_convexity_map, plot_spectral_density

    f, _ = quadratic([4.0, 1.0, -1.0, 0.5])
    fig = plot_spectral_density(spectral_density(f, bins=200), path=tmp_path / "density")
    assert fig.axes[0].get_yscale() == "log" and (tmp_path / "density.png").exists()
    ds = convexity_map(f, None, [torch.eye(4, dtype=torch.float64)[0], torch.eye(4, dtype=torch.float64)[1]],
                       steps=3, tol=1e-6)
    ds["ratio"][0, 0] = np.nan  # a diverged cell is masked and counted, not dropped silently
    fig = plot_convexity_map(ds, path=tmp_path / "convexity")
    mesh = fig.axes[0].collections[0]
    assert mesh.get_clim() == (0.0, 0.5) and "1 cell diverged" in fig.axes[0].get_title()
    assert (tmp_path / "convexity.pdf").exists()

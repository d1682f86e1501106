"""Curvature products (Hessian, GGN, empirical Fisher), the LinearOperator, and their eigenvalues
and traces against dense oracles built independently on tiny float64 models."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.curvature import curvature_operator, dense_hessian, hessian_eigenvalues, hessian_trace
from lossatlas.landscape import Landscape


def tiny(loss="cross_entropy", classes=3, n=30, batch_size=15, bn=False, mode="eval"):
    X, y = blobs(n=n, d_in=5, classes=classes)
    X = X.double()
    model = mlp(d_in=5, hidden=4, classes=classes, bn=bn).double()
    if loss == "mse":
        y = torch.nn.functional.one_hot(y, classes).double()
    model.eval()
    return model, X, y, Landscape(model, (X, y), loss=loss, bn=mode, batch_size=batch_size, device=DEVICE)


def dense_oracles(model, X, y, f, loss):
    """The GGN and empirical Fisher from the full Jacobian and per-sample gradients (dense)."""
    names = [n for n, _ in model.named_parameters()]
    theta = f.origin.cpu()

    def out(flat):
        return functional_call(model, dict(zip(names, f.space.split(flat))), (X,))

    o = out(theta)
    N, C = o.shape
    J = jacrev(out)(theta).reshape(N * C, -1)
    if loss == "cross_entropy":
        p = torch.softmax(o, 1)
        H_out = torch.block_diag(*[torch.diag(q) - torch.outer(q, q) for q in p])
        per = lambda t, i: nn.functional.cross_entropy(out(t)[i:i + 1], y[i:i + 1])  # noqa: E731
    else:  # mse averaged over the C outputs of a sample: per-sample Hessian 2/C I
        H_out = torch.eye(N * C, dtype=torch.float64) * 2 / C
        per = lambda t, i: ((out(t)[i] - y[i]) ** 2).mean()  # noqa: E731
    G = J.T @ H_out @ J / N
    g = torch.stack([grad(per)(theta, i) for i in range(N)])
    return G, g.T @ g / N


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_and_fisher_products_eigenvalues_and_traces_match_dense_oracles(loss):
    model, X, y, f = tiny(loss)
    before = copy.deepcopy(model.state_dict())
    G, F = dense_oracles(model, X, y, f, loss)
    P = f.space.size
    V = torch.randn(5, P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, M in (("ggn", G), ("fisher", F)):
        assert torch.allclose(f.products(f.origin, V, curvature=name).cpu(), V @ M, atol=1e-12), name
        exact = torch.linalg.eigvalsh(M).flip(0)
        top = hessian_eigenvalues(f, k=3, curvature=name, tol=1e-8)
        assert torch.allclose(top, exact[:3], rtol=1e-8, atol=1e-12), name
        # a sketch of P vectors spans the whole space: Hutch++ with 3P products is exact
        est = hessian_trace(f, samples=3 * P, method="hutch++", curvature=name, block=P, return_error=True)
        assert est.value == pytest.approx(float(torch.trace(M)), rel=1e-9), name
        hutch = hessian_trace(f, samples=200, curvature=name, seed=1, block=100, return_error=True)
        assert abs(hutch.value - float(torch.trace(M))) < 4 * hutch.stderr, name
    # the GGN of a convex loss is positive semi-definite, the Hessian of this network is not
    assert float(torch.linalg.eigvalsh(G)[0]) > -1e-12
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_hessian_block_products_equal_single_products_both_modes():
    _, _, _, f = tiny()
    V = torch.randn(4, f.space.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    one = torch.stack([f.hvp(f.origin, v) for v in V])
    for mode in ("reverse", "forward"):
        assert torch.allclose(f.products(f.origin, V, mode=mode), one, atol=1e-13)


def test_linear_operator_matvec_and_matmat_against_the_dense_hessian():
    _, _, _, f = tiny()
    H = dense_hessian(f).numpy()
    op = curvature_operator(f, f.origin)
    rng = np.random.default_rng(0)
    x, X = rng.standard_normal(f.space.size), rng.standard_normal((f.space.size, 3))
    assert op.shape == H.shape and op.dtype == np.float64
    assert np.allclose(op.matvec(x), H @ x, atol=1e-13)
    assert np.allclose(op.matmat(X), H @ X, atol=1e-13)
    assert np.allclose(op @ X, H @ X, atol=1e-13)
    assert op.curvature.calls == 1 + 3 + 3
    from scipy.sparse.linalg import eigsh

    top = eigsh(curvature_operator(f, curvature="ggn"), k=2, which="LA", return_eigenvectors=False)
    assert np.allclose(np.sort(top)[::-1], hessian_eigenvalues(f, k=2, curvature="ggn", tol=1e-9).numpy(), rtol=1e-7)


def test_refusals_before_any_work():
    _, _, _, f = tiny(bn=True, mode="batch")
    with pytest.raises(InputError, match="curvature"):
        curvature_operator(f, curvature="newton")
    with pytest.raises(InputError, match="mode"):
        curvature_operator(f, mode="sideways")
    with pytest.raises(InputError, match="per-sample"):
        curvature_operator(f, curvature="fisher").matvec(np.ones(f.space.size))
    # the GGN is defined with batch statistics (the Jacobian of the whole batch's outputs)
    assert np.isfinite(curvature_operator(f, curvature="ggn").matvec(np.ones(f.space.size))).all()


def test_fisher_of_a_trained_cnn_with_dict_free_batches_runs_per_sample():
    X, y = blobs(n=40, d_in=16)
    model = train_briefly(mlp(), X, y, steps=20)
    f = Landscape(model, (X, y), device=DEVICE)
    lam = hessian_eigenvalues(f, k=1, curvature="fisher")
    tr = hessian_trace(f, samples=30, method="xtrace", curvature="fisher")
    assert 0 < float(lam[0]) <= tr * 1.5

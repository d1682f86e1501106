"""Spectra per parameter group equal the eigenvalues and traces of the dense Hessian's diagonal blocks."""

import pytest
import torch

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas._errors import InputError
from lossatlas.curvature import block_spectra, dense_hessian, group_masks, parameter_groups
from lossatlas.landscape import Landscape


@pytest.fixture(scope="module")
def landscape():
    X, y = blobs(n=40, d_in=6, classes=3)
    model = train_briefly(mlp(d_in=6, hidden=5, classes=3).double(), X.double(), y, steps=30)
    return Landscape(model, (X.double(), y), device=DEVICE)


def test_block_eigenvalues_and_traces_equal_the_dense_diagonal_blocks(landscape):
    f = landscape
    H = dense_hessian(f)
    groups = {"first": ["1.*"], "hidden+head": ["3.weight", "5.*"], "biases": ["*.bias"]}
    ds = block_spectra(f, groups=groups, k=2, trace_samples=400, tol=1e-8, block=100)
    masks = group_masks(f.space, groups)
    for g in groups:
        m = masks[g]
        block = H[m][:, m]
        exact = torch.linalg.eigvalsh(block).flip(0)[:2].numpy()
        assert ds["eigenvalue"].sel(group=g).values == pytest.approx(exact, rel=1e-7, abs=1e-10)
        assert int(ds["size"].sel(group=g)) == int(m.sum())
        tr, se = float(ds["trace"].sel(group=g)), float(ds["trace_stderr"].sel(group=g))
        assert abs(tr - float(torch.trace(block))) < 4 * se
    assert bool(ds["converged"].all())
    assert ds.attrs["members"]["biases"] == ["1.bias", "3.bias", "5.bias"]


def test_layer_groups_cover_the_parameters_and_bad_groups_are_refused(landscape):
    f = landscape
    assert parameter_groups(f.space, "layer") == {"1": ["1.weight", "1.bias"], "3": ["3.weight", "3.bias"],
                                                  "5": ["5.weight", "5.bias"]}
    assert len(parameter_groups(f.space, "param")) == 6
    assert list(parameter_groups(f.space, ["1.*", "5.weight"])) == ["1.*", "5.weight"]
    with pytest.raises(InputError, match="matches no parameter"):
        parameter_groups(f.space, {"x": ["conv*"]})
    with pytest.raises(InputError, match="groups"):
        parameter_groups(f.space, "blocks")


def test_block_spectra_figure(landscape, tmp_path):
    from lossatlas.plot import plot_block_spectra

    ds = block_spectra(landscape, k=2, trace_samples=8, maxiter=30)
    fig = plot_block_spectra(ds, path=tmp_path / "blocks")
    assert (tmp_path / "blocks.png").exists() and len(fig.axes) == 2

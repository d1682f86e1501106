"""Hessian directions are eigenvectors (scaled as a whole), and draw a plane."""

import copy

import pytest
import torch

from helpers import DEVICE, blobs, mlp, train_briefly
from lossatlas.curvature import dense_hessian, hessian_directions
from lossatlas.landscape import Landscape


def test_hessian_directions_are_eigenvectors_scaled_as_a_whole():
    X, y = blobs(n=40, d_in=6, classes=3)
    model = train_briefly(mlp(d_in=6, hidden=5, classes=3).double(), X.double(), y, steps=30)
    before = copy.deepcopy(model.state_dict())
    f = Landscape(model, (X.double(), y), device=DEVICE)
    H = dense_hessian(f)
    vals, vecs = torch.linalg.eigh(H)
    dirs = hessian_directions(f, n=2)
    assert dirs.scale == pytest.approx(float(f.origin.norm()), rel=1e-12)
    for i, d in enumerate(dirs):
        assert float(d.norm()) == pytest.approx(dirs.scale, rel=1e-10)
        # H d = lambda d: still an eigenvector after the scaling
        assert torch.allclose(H @ d, vals[-1 - i] * d, atol=1e-7 * dirs.scale * float(vals[-1]))
        assert abs(float(d @ vecs[:, -1 - i])) == pytest.approx(dirs.scale, rel=1e-7)
    assert float(dirs[0] @ dirs[1]) == pytest.approx(0.0, abs=1e-8 * dirs.scale ** 2)
    assert dirs.settings["eigenvalues"][0] == pytest.approx(float(vals[-1]), rel=1e-9)
    unit = hessian_directions(f, n=1, scale="unit", ignore="biasbn")
    assert float(unit[0].norm()) == pytest.approx(1.0) and float(unit[0][f.space.mask("biasbn").logical_not()].abs().max()) == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_surface_command_draws_the_plane_on_hessian_directions(tmp_path):
    import lossatlas as la
    from lossatlas.cli.common import resolve_source
    from lossatlas.cli.measures import _landscape
    from test_cli import SMALL, invoke

    out = tmp_path / "run"
    assert invoke("train", "--model", "mlp", *SMALL, "--epochs", 2, "--out", out).exit_code == 0
    r = invoke("surface", out, "--steps", 3, "--directions", "hessian")
    assert r.exit_code == 0, r.output
    assert "Hessian directions" in r.output
    ds = la.RunDir(out).open("surface")
    assert ds.attrs["directions"] == "hessian" and ds.attrs["ignore"] == "biasbn"
    lam, scale = ds.attrs["eigenvalues"], ds.attrs["scale"]
    assert lam[0] >= lam[1] > 0 and ds.attrs["direction_norms"] == pytest.approx([scale, scale], rel=1e-5)
    # the plane's axes are the run's top eigenvectors (weights only), each scaled by the same number
    src, _ = resolve_source(out, {}, "cpu")
    f = _landscape(src, "eval", None)[3]
    dirs = hessian_directions(f, n=2, ignore="biasbn")
    assert ds.attrs["direction_fingerprints"] == [f.space.fingerprint(d) for d in dirs]
    for d, value in zip(dirs, lam):
        hd = f.hvp(f.origin, d) * f.space.mask("biasbn")
        assert torch.allclose(hd, value * d, atol=1e-3 * value * scale)

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.decomposition import PCA

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.models import build
from lossatlas.trajectory import pca_directions, project


def synthetic(n=30, p=500, seed=0):
    rng = np.random.default_rng(seed)
    W = np.cumsum(rng.normal(size=(n, p)) * np.linspace(2, 0.1, p), axis=0).astype(np.float32)
    return xr.Dataset({"weights": (("point", "param"), W)}, coords={"epoch": ("point", np.arange(n))})


def test_explained_variance_equals_scikit_learn_pca(monkeypatch):
    traj = synthetic()
    W = traj.weights.values.astype(np.float64)
    M = W - W[-1]
    ref = PCA(n_components=3).fit(M)
    monkeypatch.setattr("lossatlas.trajectory._BLOCK_BYTES", 30 * 8 * 64)  # many column blocks
    dirs, ratios = pca_directions(traj, n=3)
    np.testing.assert_allclose(ratios, ref.explained_variance_ratio_, rtol=1e-6)
    for d, comp in zip(dirs, ref.components_):
        assert abs(abs(np.dot(d, comp)) - 1) < 1e-5  # same direction up to sign
        assert np.linalg.norm(d) == pytest.approx(1, abs=1e-5)
    xy = project(traj, W[-1], dirs[:2])
    np.testing.assert_allclose(np.abs(xy), np.abs(ref.transform(M)[:, :2] + ref.mean_ @ ref.components_[:2].T), atol=1e-3)
    assert xy[0, 0] < 0  # sign convention: the path starts at negative x


def test_zarr_backed_trajectory_streams_the_same(tmp_path):
    traj = synthetic()
    traj.chunk({"point": 4}).to_zarr(tmp_path / "t.zarr", consolidated=False)
    lazy = xr.open_zarr(tmp_path / "t.zarr", consolidated=False)
    a, ra = pca_directions(traj, 2)
    b, rb = pca_directions(lazy, 2)
    np.testing.assert_allclose(ra, rb)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_projection_least_squares_on_non_orthogonal_directions():
    rng = np.random.default_rng(1)
    d0, d1 = rng.normal(size=50), rng.normal(size=50)
    d1 = d1 + 0.8 * d0  # strongly overlapping
    coords = rng.normal(size=(7, 2))
    center = rng.normal(size=50)
    W = center + coords @ np.stack([d0, d1])
    np.testing.assert_allclose(project(W, center, [d0, d1]), coords, atol=1e-9)


def test_pca_on_a_training_run_and_errors():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    X = torch.randn(4, 1, 8, 8, generator=gen)[y] + 0.7 * torch.randn(64, 1, 8, 8, generator=gen)
    m = build("smallcnn", (1, 8, 8), 4, seed=0, channels=(4, 8), hidden=16)
    run = la.train(m, (X, y), lr=0.1, epochs=6, batch_size=16)
    dirs, ratio = la.pca_directions(run.trajectory, n=2)
    assert 0 < ratio[1] <= ratio[0] < 1 and ratio.sum() <= 1
    f = la.Landscape(m, (X, y))
    ds = la.plane(f, run.final, dirs, span=1.0, steps=3)
    assert np.isfinite(ds.loss.values).all()
    with pytest.raises(InputError, match="snapshot"):
        pca_directions(synthetic(n=1), 1)
    bad = synthetic()
    bad.weights.values[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pca_directions(bad, 2)


def test_final_must_have_one_entry_per_parameter():
    # The old code broadcast a wrong-sized reference into a bare numpy ValueError (or sliced it).
    with pytest.raises(InputError, match="final must have 500 entries"):
        pca_directions(synthetic(), 2, final=np.zeros(3))
    dirs, _ = pca_directions(synthetic(), 2, final=np.zeros(500))  # any reference: same directions
    np.testing.assert_allclose(dirs[0], pca_directions(synthetic(), 2)[0][0], atol=1e-7)

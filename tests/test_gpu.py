"""lossatlas on a GPU, each computation compared with the same one on the CPU (issue 25).

Marked ``gpu`` and skipped without CUDA: ``python -m pytest -m gpu`` on a CUDA machine, or
``python bench/gpu_check.py`` (these tests, then the GPU benchmark). Tolerances: float32 (GPU
kernels sum in another order than the CPU's, rtol 1e-4 on losses); TF32 within its documented
error (10-bit mantissa, about 1e-3 relative per product; rtol 1e-2 on a loss). Random draws on a
CUDA generator follow another stream than the CPU's, so directions are drawn on the CPU and passed,
and the seeded estimators are compared with exact values, not with the CPU's draws.

``LOSSATLAS_GPU_TEST_DEVICE=cpu`` runs the same tests with the CPU standing in for the GPU (a
check of the tests themselves on machines without one).
"""

import os

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas.landscape import Landscape
from lossatlas.landscape.vmap import MAX_CHUNK
from lossatlas.space import ParamSpace

from helpers import blobs, clusters, cnn, mlp, train_briefly

GPU = torch.device(os.environ.get("LOSSATLAS_GPU_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(GPU.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FP32 = dict(rtol=1e-4, atol=1e-5)
TF32 = dict(rtol=1e-2, atol=1e-3)


@pytest.fixture(scope="module")
def conv():
    """A small trained CNN with batch norm on 8x8 images, and its data."""
    X, y = blobs(n=96, d_in=64, image=True, seed=0)
    model = train_briefly(cnn(seed=0), X, y, steps=30, lr=0.05)
    return model, (X, y)


def dirs_of(model, n=2, seed=0):
    return la.random_directions(model, n=n, seed=seed)  # drawn on the CPU: the same on every device


def points(model, n=5, seed=0):
    space = ParamSpace(model)
    theta = space.vector(model)
    d = dirs_of(model, 2, seed)
    a = torch.linspace(-0.8, 0.8, n)
    return torch.stack([theta + float(s) * d[0] + float(t) * d[1] for s, t in zip(a, a.flip(0))])


def close(a, b, tol=FP32):
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k].cpu()), np.asarray(b[k].cpu()), err_msg=k, **tol)


def test_loop_engine_equals_cpu(conv):
    model, data = conv
    pts = points(model)
    gpu = Landscape(model, data, strategy="loop", device=GPU)
    assert gpu.origin.device.type == GPU.type and (gpu.workers == 1 or GPU.type == "cpu")
    close(gpu.evaluate(pts), Landscape(model, data, strategy="loop", device=CPU).evaluate(pts))


def test_vmap_engine_with_chunks_sized_from_free_memory_equals_cpu(conv):
    model, data = conv
    pts = points(model, n=9)
    gpu = Landscape(model, data, device=GPU)  # strategy="auto": vmap on an accelerator
    if GPU.type == "cuda":
        assert gpu.strategy.value == "vmap"
    vm = Landscape(model, data, strategy="vmap", device=GPU)
    assert 1 <= vm.chunk <= MAX_CHUNK
    ref = Landscape(model, data, strategy="loop", device=CPU).evaluate(pts)
    close(vm.evaluate(pts), ref)
    close(gpu.evaluate(pts), ref)
    small = Landscape(model, data, strategy="vmap", chunk=2, device=GPU)  # several chunks
    close(small.evaluate(pts), ref)


def test_compiled_loop_equals_cpu(conv):
    model, data = conv
    pts = points(model)
    gpu = Landscape(model, data, strategy="loop", compile=True, workers=1, device=GPU)
    close(gpu.evaluate(pts), Landscape(model, data, strategy="loop", compile=False, device=CPU).evaluate(pts))


def test_plane_with_first_layer_tables_equals_cpu():
    # An MLP on 64 inputs: the first layer's span tables serve the plane's points.
    X, y = blobs(n=120, d_in=64, seed=1)
    model = train_briefly(mlp(d_in=64, hidden=32), X, y, steps=40)
    d = dirs_of(model)
    gpu = Landscape(model, (X, y), strategy="loop", device=GPU)
    cpu = Landscape(model, (X, y), strategy="loop", device=CPU)
    a = la.plane(gpu, dirs=d, steps=5)
    b = la.plane(cpu, dirs=d, steps=5)
    np.testing.assert_allclose(a.loss.values, b.loss.values, **FP32)
    np.testing.assert_array_equal(a.accuracy.values, b.accuracy.values)
    assert gpu._tables.cache is not None  # the tables were built on the device and passed their check


def test_grad_and_hvp_equal_cpu(conv):
    model, data = conv
    gpu = Landscape(model, data, bn="eval", device=GPU)
    cpu = Landscape(model, data, bn="eval", device=CPU)
    theta = cpu.origin
    v = dirs_of(model, 1, seed=3)[0]
    lg, gg = gpu.grad(theta.to(GPU))
    lc, gc = cpu.grad(theta)
    assert lg == pytest.approx(lc, rel=1e-5)
    np.testing.assert_allclose(gg.cpu().numpy(), gc.numpy(), rtol=1e-3, atol=1e-5 * float(gc.abs().max()))
    hg = gpu.hvp(theta.to(GPU), v.to(GPU))
    hc = cpu.hvp(theta, v)
    np.testing.assert_allclose(hg.cpu().numpy(), hc.numpy(), rtol=1e-3, atol=1e-4 * float(hc.abs().max()))


@pytest.mark.parametrize("tf32", [False, True])
def test_plane_and_line_with_and_without_tf32_equal_cpu(conv, tf32):
    model, data = conv
    d = dirs_of(model)
    tol = TF32 if tf32 else FP32
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    gpu = Landscape(model, data, device=GPU, tf32=tf32)
    cpu = Landscape(model, data, device=CPU)
    a, b = la.plane(gpu, dirs=d, steps=5), la.plane(cpu, dirs=d, steps=5)
    np.testing.assert_allclose(a.loss.values, b.loss.values, **tol)
    assert a.attrs["center_fingerprint"] == b.attrs["center_fingerprint"]
    end = cpu.origin + 0.5 * d[0]
    la_, lb = la.line(gpu, None, end.to(GPU), steps=9), la.line(cpu, None, end, steps=9)
    np.testing.assert_allclose(la_.loss.values, lb.loss.values, **tol)
    # TF32 was on only inside the calls.
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved


def small_cnn(seed):
    from lossatlas.models import build

    return build("smallcnn", (1, 8, 8), 4, seed=seed, channels=(4, 8), hidden=16, batch_norm=True)


def test_train_full_batch_equals_cpu():
    # Full-batch SGD: the data order (drawn on the device's generator) does not change the step.
    X, y = clusters(64, (1, 8, 8), seed=0)
    kw = dict(lr=0.05, momentum=0.9, epochs=3, batch_size=64, seed=0, ensemble="sequential")
    g, c = small_cnn(0), small_cnn(0)
    rg = la.train(g, (X, y), device=GPU, **kw)
    rc = la.train(c, (X, y), device=CPU, **kw)
    np.testing.assert_allclose(rg.trajectory.loss.values, rc.trajectory.loss.values, rtol=1e-4)
    np.testing.assert_allclose(rg.trajectory.weights.values, rc.trajectory.weights.values, atol=1e-4)


def test_jump_retrain_vmap_ensemble_equals_sequential_and_cpu_losses():
    X, y = clusters(64, (1, 8, 8), seed=1)
    model = small_cnn(1)
    kw = dict(seeds=[0, 1], step_sizes=[0.5, 1.0], epochs=2, lr=0.05, batch_size=64, device=GPU)
    ens = la.jump_retrain(model, (X, y), ensemble="vmap", **kw)
    seq = la.jump_retrain(model, (X, y), ensemble="sequential", **kw)
    np.testing.assert_allclose(ens.loss.values, seq.loss.values, rtol=1e-4)
    np.testing.assert_allclose(ens.weights.values, seq.weights.values, atol=1e-4)
    # Each seed's jumps lie on one line from the centre, at distances in the ratio of their steps.
    theta = ParamSpace(model).vector(model).numpy()
    w = np.asarray(seq.weights.values)
    first = (seq.epoch.values == 0)
    for seed in (0, 1):
        at = {float(s): w[first & (seq.seed.values == seed) & (seq.step_size.values == s)][0] - theta for s in (0.5, 1.0)}
        np.testing.assert_allclose(at[1.0], 2 * at[0.5], rtol=1e-4, atol=1e-6)


def test_hessian_eigenvalues_and_trace_against_the_cpu_and_the_exact_trace():
    X, y = blobs(n=80, d_in=8, seed=2)
    model = train_briefly(mlp(d_in=8, hidden=8), X, y, steps=100)
    gpu = Landscape(model, (X, y), device=GPU)
    cpu = Landscape(model, (X, y), device=CPU)
    eg = np.sort(np.asarray(la.hessian_eigenvalues(gpu, k=3, tol=1e-6, seed=0)))
    ec = np.sort(np.asarray(la.hessian_eigenvalues(cpu, k=3, tol=1e-6, seed=0)))
    np.testing.assert_allclose(eg, ec, rtol=1e-3)
    n = cpu.space.size
    exact = sum(float(cpu.hvp(cpu.origin, torch.eye(n)[i])[i]) for i in range(n))
    est = la.hessian_trace(gpu, samples=200, seed=0, return_error=True)
    assert abs(est.value - exact) <= 5 * est.stderr + 1e-3 * abs(exact), (est, exact)


def test_connect_linear_equals_cpu():
    X, y = blobs(n=96, d_in=8, seed=0)
    a_m, b_m = (train_briefly(mlp(seed=s, d_in=8, hidden=8), X, y, steps=100, lr=0.2) for s in (1, 2))
    a, b = (ParamSpace(m).vector(m) for m in (a_m, b_m))
    gpu = Landscape(a_m, (X, y), device=GPU)
    cpu = Landscape(a_m, (X, y), device=CPU)
    pg = la.connect(gpu, a.to(GPU), b.to(GPU), points=11)
    pc = la.connect(cpu, a, b, points=11)
    np.testing.assert_allclose(pg.loss.values, pc.loss.values, **FP32)
    assert pg.attrs["barrier"] == pytest.approx(pc.attrs["barrier"], rel=1e-4, abs=1e-5)


def test_cli_surface_on_the_gpu_equals_the_same_plane_on_the_cpu(tmp_path):
    import xarray as xr
    from typer.testing import CliRunner

    from lossatlas.cli import app

    small = ["--model", "mlp", "--data", "digits", "--subset", "300", "--steps", "5"]
    r = CliRunner().invoke(app, ["surface", *small, "--train-epochs", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "cpu")])
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "cpu" / "model.pt"
    r = CliRunner().invoke(app, ["surface", *small, "--checkpoint", str(ckpt), "--device", str(GPU),
                                 "--out", str(tmp_path / "gpu")])
    assert r.exit_code == 0, r.output
    ds = xr.open_zarr(tmp_path / "gpu" / "surface.zarr", consolidated=False).load()
    assert ds.done.values.all()
    # The same plane on the CPU, along the directions the GPU run drew and stored.
    from lossatlas.sources import Source

    model, data, _ = Source(model="mlp", data="digits", subset=300, checkpoint=str(ckpt), device="cpu").build()
    f = Landscape(model, data.train, test=data.test, device=CPU)
    dirs = [torch.as_tensor(ds.directions.values[k]) for k in range(2)]
    ref = la.plane(f, dirs=dirs, steps=5)
    np.testing.assert_allclose(ds.loss.values, ref.loss.values, **FP32)

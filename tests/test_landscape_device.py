"""Landscape's device path (issue 9 item 3): device choice and refusals, everything on the device,
TF32 set only inside calls, vmap chunks sized from memory and probed before any grid, the
data fingerprinted once."""

import threading

import pytest
import torch
from torch import nn

import lossatlas.landscape.devices as D
import lossatlas.landscape.objective as O
import lossatlas.landscape.vmap as V
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape, float32_precision, resolve_device
from lossatlas.space import random_directions

from helpers import DEVICE, blobs, cnn, mlp


class _Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def test_devices_this_machine_lacks_are_refused_before_any_work():
    X, y = blobs(n=20)
    model = _Counting()
    bad = ["tpu", "cuda:99"]
    if not torch.cuda.is_available():
        bad += ["cuda", "cuda:0"]
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        bad.append("mps")
    for device in bad:
        with pytest.raises(InputError, match="device") as err:
            Landscape(model, (X, y), device=device)
        assert "cpu" in str(err.value)  # says what to use instead
    assert model.calls == 0
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None, model) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_model_copy_data_and_points_live_on_the_device_and_the_model_is_untouched():
    X, y = blobs(n=40, d_in=64, image=True)
    model = cnn(bn=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    f = Landscape(model, (X, y), device=DEVICE, test=(X[:10], y[:10]))
    assert f.device == resolve_device(DEVICE)
    assert f.origin.device.type == DEVICE.type
    assert all(p.device.type == DEVICE.type for p in f._module.parameters())
    assert all(b[0].device.type == DEVICE.type for s in f.splits for b in s.batches)
    out = f.evaluate(torch.stack([f.origin.cpu(), f.origin.cpu()]))  # points from anywhere
    assert all(v.device.type == "cpu" and v.dtype == torch.float64 for v in out.values())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters()) and model.training


def test_float32_precision_sets_tf32_only_inside_and_serializes_conflicting_calls():
    cuda = torch.device("cuda")  # the switches exist on any build; the scope only flips them
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
        with float32_precision(cuda, tf32=False):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            with float32_precision(cuda, tf32=False):  # reentrant for the same setting
                pass
            with pytest.raises(InputError, match="tf32"):
                with float32_precision(cuda, tf32=True):
                    pass
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)
        with float32_precision(torch.device("cpu"), tf32=True):  # a no-op off CUDA
            assert not torch.backends.cuda.matmul.allow_tf32
        order = []
        inside, release = threading.Event(), threading.Event()

        def hold():
            with float32_precision(cuda, tf32=True):
                order.append(("true", torch.backends.cuda.matmul.allow_tf32))
                inside.set()
                release.wait(10)
            order.append("true done")

        def other():
            with float32_precision(cuda, tf32=False):
                order.append(("false", torch.backends.cuda.matmul.allow_tf32))

        a = threading.Thread(target=hold)
        a.start()
        assert inside.wait(10)
        b = threading.Thread(target=other)
        b.start()
        b.join(0.3)
        assert b.is_alive()  # waits for the TF32 call to end
        release.set()
        a.join(10)
        b.join(10)
        assert order == [("true", True), "true done", ("false", False)]
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    with pytest.raises(InputError, match="tf32 must be"):
        Landscape(mlp(), blobs(n=10), tf32="yes")


def test_vmap_chunk_is_sized_from_the_memory_budget(monkeypatch):
    X, y = blobs(n=64, d_in=64, image=True)
    model = cnn(bn=True)
    loop = Landscape(model, (X, y), strategy="loop", device=DEVICE)
    d = random_directions(model, n=1, seed=0)[0].to(loop.device)
    pts = torch.stack([loop.origin + a * d for a in torch.linspace(-1, 1, 7).tolist()])
    want = loop.evaluate(pts)
    auto = Landscape(model, (X, y), strategy="vmap", device=DEVICE)
    assert 1 <= auto.chunk <= V.MAX_CHUNK
    if DEVICE.type == "cpu":
        monkeypatch.setattr(V, "CPU_BUDGET_BYTES", 1)
        assert Landscape(model, (X, y), strategy="vmap").chunk == 1
        monkeypatch.setattr(V, "CPU_BUDGET_BYTES", 1 << 40)
        monkeypatch.setattr(V, "MAX_CHUNK", 5)
        assert Landscape(model, (X, y), strategy="vmap").chunk == 5
    fixed = Landscape(model, (X, y), strategy="vmap", chunk=3, device=DEVICE)
    assert fixed.chunk == 3
    for f in (auto, fixed):
        got = f.evaluate(pts)
        for k in want:
            assert torch.allclose(got[k], want[k], rtol=1e-5, atol=1e-6), k
    with pytest.raises(InputError, match="chunk must be"):
        Landscape(model, (X, y), strategy="vmap", chunk=0)


class _NotVmappable(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        out = self.body(x)
        if out.sum().item() > 1e9:  # data-dependent control flow: vmap cannot transform it
            out = out * 0
        return out


def test_vmap_probe_refuses_at_construction_and_auto_falls_back_to_the_loop(monkeypatch):
    X, y = blobs(n=30)
    with pytest.raises(InputError, match="torch.vmap"):
        Landscape(_NotVmappable(), (X, y), strategy="vmap", device=DEVICE)
    # strategy="auto" takes vmap off the CPU; pretend this device is such a one.
    monkeypatch.setattr(D, "prefers_vmap", lambda device: True)
    assert Landscape(mlp(), (X, y), device=DEVICE).strategy.value == "vmap"
    with pytest.warns(RuntimeWarning, match="vmap"):
        f = Landscape(_NotVmappable(), (X, y), device=DEVICE)
    assert f.strategy.value == "loop" and f.evaluate(f.origin)["loss"].isfinite().all()
    r = Landscape(mlp(bn=True), (X, y), bn="recompute", device=DEVICE)
    assert r.strategy.value == "loop"
    with pytest.raises(InputError, match="recompute"):
        Landscape(mlp(bn=True), (X, y), bn="recompute", strategy="vmap", device=DEVICE)


def test_data_fingerprint_is_computed_once_at_construction(monkeypatch):
    X, y = blobs(n=50)
    calls = []
    real = O._hash
    monkeypatch.setattr(O, "_hash", lambda *a: calls.append(1) or real(*a))
    f = Landscape(mlp(), (X, y), test=(X[:10], y[:10]), device=DEVICE)
    assert len(calls) == 1
    first = f.fingerprint
    f.evaluate(f.origin)
    assert f.fingerprint == first and len(calls) == 1 and "fingerprint" in vars(f)
    same = Landscape(mlp(seed=1), (X, y), test=(X[:10], y[:10]), device=DEVICE)
    assert same.fingerprint == first  # the data and settings, not the weights
    assert Landscape(mlp(), (X, y), device=DEVICE).fingerprint != first
    assert Landscape(mlp(), (X, y), test=(X[:10], y[:10]), loss="nll", device=DEVICE).fingerprint != first

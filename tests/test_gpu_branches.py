"""Every CUDA-specific branch, exercised on the CPU (issue 25): the device queries are injected,
so a mistake in them is caught here and not on the first GPU. The same computations on a real
GPU are in tests/test_gpu.py (marked ``gpu``)."""

import pytest
import torch

import lossatlas.landscape.objective as O
import lossatlas.landscape.vmap as V
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape
from lossatlas.landscape.devices import choose_engines

from helpers import blobs, cnn, mlp

CUDA = torch.device("cuda")  # a device object only: nothing is allocated on it here
CPU = torch.device("cpu")
MiB = 1 << 20


def test_chunk_from_measured_peaks_and_free_memory():
    # 2 MiB a point, 1 MiB fixed; half of 40 MiB free, less the fixed MiB, holds 9 points.
    assert V.chunk_from_peaks(3 * MiB, 5 * MiB, 40 * MiB) == 9
    assert V.chunk_from_peaks(3 * MiB, 5 * MiB, 10 * MiB) == 2
    # The fixed cost alone exceeds the budget: still one point a chunk, never zero.
    assert V.chunk_from_peaks(300 * MiB, 301 * MiB, 100 * MiB) == 1
    # A second point that costs nothing measurable: capped, not infinite.
    assert V.chunk_from_peaks(4 * MiB, 4 * MiB, 80 << 30) == V.MAX_CHUNK
    assert V.chunk_from_peaks(1 * MiB, 2 * MiB, 80 << 30) == V.MAX_CHUNK


class FakeCudaMemory:
    """Stands in for torch.cuda's memory queries: ``peaks`` above ``base`` for the runs of one
    and of two points, ``free`` bytes free; records the order of the calls."""

    def __init__(self, base, peaks, free):
        self.base, self.peaks, self.free_bytes, self.calls, self.runs = base, list(peaks), free, [], 0

    def synchronize(self):
        self.calls.append("sync")

    def allocated(self):
        self.calls.append("allocated")
        return self.base

    def reset_peak(self):
        self.calls.append("reset")
        self.runs += 1

    def peak(self):
        self.calls.append("peak")
        return self.base + self.peaks[self.runs - 1]

    def free(self):
        self.calls.append("free")
        return self.free_bytes


def test_vmap_chunk_on_cuda_measures_one_and_two_points_against_free_memory():
    X, y = blobs(n=40, d_in=64, image=True)
    f = Landscape(cnn(), (X, y), strategy="vmap", chunk=3)
    engine, split = f._vmap, f.splits[0]
    pair = torch.stack([f.origin, f.origin])
    batches = []
    real = engine._batch
    engine._batch = lambda chunk, b, t: batches.append(chunk.shape[0]) or real(chunk, b, t)
    mem = FakeCudaMemory(base=7 * MiB, peaks=[3 * MiB, 5 * MiB], free=40 * MiB)
    assert engine._size(pair, split.batches[0], split.targets[0], memory=mem) == 9
    assert batches == [1, 2]  # one point, then two, each between a peak reset and a sync
    assert mem.calls == ["sync", "allocated", "reset", "sync", "peak", "reset", "sync", "peak", "free"]
    # A nearly full GPU: one point a chunk.
    mem = FakeCudaMemory(base=0, peaks=[3 * MiB, 5 * MiB], free=4 * MiB)
    assert engine._size(pair, split.batches[0], split.targets[0], memory=mem) == 1
    # Off CUDA (no memory queries), the estimate from module outputs is used instead.
    assert 1 <= engine._size(pair, split.batches[0], split.targets[0]) <= V.MAX_CHUNK


def test_cuda_memory_queries_name_the_device(monkeypatch):
    import torch.cuda as C

    seen = []
    for name, ret in (("synchronize", None), ("memory_allocated", 1), ("reset_peak_memory_stats", None),
                      ("max_memory_allocated", 2), ("mem_get_info", (3, 4))):
        monkeypatch.setattr(C, name, lambda dev, name=name, ret=ret: seen.append((name, dev)) or ret)
    mem = V.CudaMemory(torch.device("cuda", 1))
    mem.synchronize()
    assert (mem.allocated(), mem.peak(), mem.free()) == (1, 2, 3)  # free, not total
    mem.reset_peak()
    assert {dev for _, dev in seen} == {torch.device("cuda", 1)} and len(seen) == 5


def test_engines_chosen_for_cuda_and_cpu():
    # CUDA: vmap, never compiled by default, one worker, glibc's allocator left alone.
    gpu = choose_engines(CUDA, has_conv=True, threads=16)
    assert (gpu.strategy, gpu.compile, gpu.workers, gpu.tune_allocator) == ("vmap", False, 1, False)
    assert choose_engines(CUDA, recompute=True, has_conv=True).strategy == "loop"  # statistics point by point
    loop = choose_engines(CUDA, "loop", has_conv=True, threads=16)
    assert (loop.compile, loop.workers) == (False, 1)  # compile="auto" and threads are CPU-only
    assert choose_engines(CUDA, "loop", compile=True).compile is True
    # CPU: the loop, threads for convolutional models, "auto" compile for a single worker.
    cpu = choose_engines(CPU, has_conv=True, threads=2)
    assert (cpu.strategy, cpu.compile, cpu.workers, cpu.tune_allocator) == ("loop", False, 2, True)
    assert choose_engines(CPU, has_conv=True, threads=1).compile == "auto"
    assert choose_engines(CPU, has_conv=False, threads=2).workers == 1
    assert choose_engines(torch.device("mps"), has_conv=True).strategy == "vmap"
    with pytest.raises(InputError, match="recompute"):
        choose_engines(CUDA, "vmap", recompute=True)
    with pytest.raises(InputError, match="workers > 1"):
        choose_engines(CUDA, "vmap", workers=2)


def test_every_call_asks_for_the_landscapes_tf32_setting(monkeypatch):
    # On CUDA, float32_precision flips the TF32 switches (tests/test_landscape_device.py); here:
    # every evaluation, gradient and Hessian-vector product enters it with the Landscape's own
    # setting, and a TF32 vmap probe allows TF32's documented error (1e-2 relative, not 1e-4).
    X, y = blobs(n=40)
    seen = []
    real = O.float32_precision

    def recording(device, tf32):
        seen.append(tf32)
        return real(device, tf32)

    monkeypatch.setattr(O, "float32_precision", recording)
    for tf32 in (True, False):
        seen.clear()
        f = Landscape(mlp(), (X, y), tf32=tf32, strategy="vmap", chunk=2)
        assert f._vmap.rtol == (1e-2 if tf32 else 1e-4)
        f.evaluate(torch.stack([f.origin, f.origin]))
        f.grad(f.origin)
        f.hvp(f.origin, torch.ones_like(f.origin))
        assert len(seen) >= 4 and set(seen) == {tf32}


class RecordingGenerator:
    """Records the device a generator is asked for; hands back a CPU generator."""

    devices = []

    def __new__(cls, device="cpu"):
        cls.devices.append(torch.device(device))
        return REAL_GENERATOR()


REAL_GENERATOR = torch.Generator


def test_generators_are_built_on_the_device_they_draw_for(monkeypatch):
    from lossatlas.curvature.operators import generator_for
    from lossatlas.space import gaussian
    from lossatlas.training.randomness import RunGenerators

    RecordingGenerator.devices = []
    monkeypatch.setattr(torch, "Generator", RecordingGenerator)
    generator_for(3, CUDA)
    RunGenerators(0, torch.device("cuda", 1))
    assert RecordingGenerator.devices[0] == CUDA
    assert set(RecordingGenerator.devices[1:]) == {torch.device("cuda", 1)} and len(RecordingGenerator.devices) > 2
    drawn = []
    real_randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, device=None, **kw: drawn.append(device) or real_randn(*a, **kw))
    RecordingGenerator.devices = []
    gaussian(10, seed=1, device="cuda")
    assert RecordingGenerator.devices == [CUDA] and drawn == [CUDA]  # drawn there, not copied there

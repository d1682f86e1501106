"""Helpers shared by the benchmarks in ``bench/``.

Benchmarks are plain scripts: they measure lossatlas and its references in the same run, on the
same machine, and print ratios; they never assert on time. Each reference runs the way its users
run it, in its own process with default settings: a benchmark script re-runs itself with
``--child ...`` and reads one JSON line back (:func:`run_child`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2  # the reference machine has 2 cores; every process of a benchmark pins this
RESULT_PREFIX = "BENCH-RESULT "


def pin_threads(n: int = THREADS) -> None:
    torch.set_num_threads(n)


def digits(image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits, pixels standardized (one mean and std over all pixels).

    ``image=True`` gives ``[N, 1, 8, 8]`` (for a CNN), otherwise ``[N, 64]``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    X = (X - X.mean()) / X.std()
    y = torch.tensor(d.target, dtype=torch.int64)
    return (X.reshape(-1, 1, 8, 8) if image else X), y


def synchronize(device) -> None:
    """Wait for the device's queued work (timings on a GPU must not stop at a kernel launch)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_gflops(n: int = 2048, seconds: float = 2.0, device="cpu", tf32: bool = False) -> float:
    """Float32 ``n x n @ n x n`` matmul throughput, in GFLOP/s (best repetition).

    The best repetition estimates what the machine can do; the median would mostly measure how
    busy it is. On CUDA ``tf32`` picks TF32 or full float32 for the measurement (torch's switch
    is restored afterwards); on a CPU it has no effect.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)
    saved = torch.backends.cuda.matmul.allow_tf32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        torch.mm(a, b, out=out)  # warm-up: thread pool, page faults of `out`, cuBLAS handles
        synchronize(device)
        best = float("inf")
        start = time.perf_counter()
        reps = 0
        while reps < 3 or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            torch.mm(a, b, out=out)
            synchronize(device)
            best = min(best, time.perf_counter() - t)
            reps += 1
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * n**3 / best / 1e9


def forward_flops(model: torch.nn.Module, X: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` over ``X`` (matmuls and convolutions, counted by
    ``torch.utils.flop_counter``; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(X)
    return int(counter.get_total_flops())


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_child(script: Path, args: list[str], timeout: float = 3600) -> dict:
    """Run ``python script --child ... args`` in a fresh process; return the JSON it reports.

    The child inherits the environment untouched (no allocator or thread variables are added),
    so each reference runs with its defaults.
    """
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"{' '.join(cmd)} reported no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def report(result: dict) -> None:
    """What a child prints for :func:`run_child`: one JSON line."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def best_of(runs: list[dict], key: str = "seconds") -> dict:
    """The repetition with the smallest ``key`` (repetitions under load only add time)."""
    return min(runs, key=lambda r: r[key])


def table(rows: list[list], header: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def median(xs) -> float:
    return float(statistics.median(xs))


def max_rel_diff(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)))

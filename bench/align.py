"""Permutation alignment of two independently initialized networks: ``la.align`` on ResNet-20.

Two ResNet-20s (He et al., built-in, full width: 16/32/64 channels, CIFAR-10 shape, 0.27M
parameters) from different seeds; the target is weight matching in under 10 s on a CPU. Times,
best of ``--repeats``:

- trace: ``torch.fx`` trace, shape propagation and the permutation groups (done for both models);
- weights: ``la.align(..., method="weights")`` in full (trace, coordinate descent, the copy);
- activations: ``la.align(..., method="activations")`` on ``--samples`` random CIFAR-shaped inputs;
- reference, measured in the same run: one forward and backward pass of ResNet-20 on a batch of
  128 CIFAR-shaped inputs (a unit every reader knows), and the ratio of each time to it.

Also ``--model wrn-16-4`` (or any built-in name) for a wider network. Prints the sweeps weight
matching took and the groups it found. Plain Python, no timed assertions.

    flock /tmp/bench.lock python bench/align.py [--model resnet20] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, pin_threads, table  # noqa: E402


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    pin_threads(args.threads)

    import lossatlas as la
    from lossatlas.alignment import find_groups, find_permutation, trace_model
    from lossatlas.models import build, count_parameters

    shape = (3, 32, 32)
    a = build(args.model, input_shape=shape, num_classes=10, seed=0)
    b = build(args.model, input_shape=shape, num_classes=10, seed=1)
    X = torch.randn(args.samples, *shape, generator=torch.Generator().manual_seed(0))

    def one_trace():
        shapes = {n: tuple(t.shape) for n, t in b.state_dict().items()}
        return find_groups(trace_model(b, X[:2]), shapes)

    t_trace, spec = _best(one_trace, args.repeats)
    t_weights, _ = _best(lambda: la.align(a, b, method="weights"), args.repeats)
    perm = find_permutation(a, b, method="weights")
    t_acts, _ = _best(lambda: la.align(a, b, method="activations", data=X), args.repeats)

    batch = torch.randn(128, *shape, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(128) % 10

    def step():
        b.zero_grad()
        torch.nn.functional.cross_entropy(b(batch), labels).backward()

    t_step, _ = _best(step, args.repeats)
    b.zero_grad(set_to_none=True)

    print(f"{args.model}: {count_parameters(a):,} parameters, {len(spec.groups)} permutation groups "
          f"(sizes {[g.size for g in spec.groups]}), weight matching converged in {perm.sweeps} sweeps; "
          f"{args.threads} threads, best of {args.repeats}, load average {load_average()}")
    rows = [["trace + groups (one model)", f"{t_trace:.3f} s", f"{t_trace / t_step:.2f}"],
            ["la.align, weights", f"{t_weights:.3f} s", f"{t_weights / t_step:.2f}"],
            [f"la.align, activations ({args.samples} inputs)", f"{t_acts:.3f} s", f"{t_acts / t_step:.2f}"],
            ["reference: one forward+backward, batch 128", f"{t_step:.3f} s", "1.00"]]
    print(table(rows, ["what", "time", "/ reference"]))
    print(f"weight matching: {t_weights:.2f} s, {t_weights / 10.0:.2f} of the 10 s target")


if __name__ == "__main__":
    main()

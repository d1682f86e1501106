"""Ensemble vs sequential retraining: 20 runs of the small CNN on scikit-learn digits, 10 epochs.

Plain Python; prints wall seconds of each way and their ratio (no timed assertions anywhere).
Both produce the same weights (tests/test_train.py checks it); the question is only which is
faster on this machine, which is what `train(..., ensemble="auto")` decides by device.

    python bench/train.py [--runs 20] [--epochs 10]
"""

from __future__ import annotations

import argparse
import time

import torch

import lossatlas as la
from lossatlas.models import build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = la.load_data("digits")
    seeds = list(range(args.runs))
    kwargs = dict(lr=0.05, momentum=0.9, epochs=args.epochs, batch_size=args.batch_size, seed=seeds)

    def models():
        return [build("smallcnn", data.input_shape, data.num_classes, seed=s) for s in seeds]

    # warm-up: first calls pay for allocator growth and vmap tracing
    la.train(models()[:2], data, **{**kwargs, "epochs": 1, "seed": seeds[:2]}, ensemble="vmap")
    la.train(models()[:2], data, **{**kwargs, "epochs": 1, "seed": seeds[:2]}, ensemble="sequential")
    times = {}
    for mode in ("sequential", "vmap"):
        ms = models()
        t0 = time.perf_counter()
        run = la.train(ms, data, ensemble=mode, **kwargs)
        times[mode] = time.perf_counter() - t0
        final = run.trajectory.sel(point=run.trajectory.epoch == args.epochs)
        print(f"{mode:>10}: {times[mode]:7.1f} s  ({args.runs} runs x {args.epochs} epochs, "
              f"mean final train loss {float(final.loss.mean()):.4f})")
    n_params = sum(p.numel() for p in models()[0].parameters())
    print(f"small CNN: {n_params} parameters; digits train split {data.train[0].shape[0]} samples; "
          f"batch {args.batch_size}; {torch.get_num_threads()} threads")
    print(f"ratio sequential / vmap ensemble: {times['sequential'] / times['vmap']:.2f}x "
          f"({'ensemble' if times['vmap'] < times['sequential'] else 'sequential'} is faster here)")


if __name__ == "__main__":
    main()

"""Ensemble vs sequential retraining: 20 runs of the small CNN on scikit-learn digits, 10 epochs.

Plain Python; prints wall seconds of each way and their ratio (no timed assertions anywhere).
Both produce the same weights (tests/test_train.py checks it); the question is only which is
faster on this machine, which is what `train(..., ensemble="auto")` decides by device.

``--recorder``: instead, the overhead of ``la.Recorder`` on a plain training loop of the same
small CNN (a snapshot every ``--every-steps`` steps and at every epoch's end, streamed to a
fresh run directory, closing included), against the same loop without recording; the two
alternate, best of ``--repeats`` each.

    python bench/train.py [--runs 20] [--epochs 10]
    python bench/train.py --recorder [--epochs 20] [--every-steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
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
    ap.add_argument("--recorder", action="store_true", help="measure the Recorder's overhead instead")
    ap.add_argument("--every-steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = la.load_data("digits")
    if args.recorder:
        recorder_overhead(data, args)
        return
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


def plain_loop(model, X, y, epochs: int, batch_size: int, rec=None) -> None:
    """SGD over shuffled batches (the order from a seeded generator), as a user writes it."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(X.shape[0], generator=gen)
        for b in range(0, X.shape[0], batch_size):
            idx = perm[b:b + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if rec is not None:
                rec.step(loss=loss)
        if rec is not None:
            rec.end_epoch()


class Timed:
    """Passes the loop's calls on to a recorder, adding up the time spent inside them."""

    def __init__(self, rec):
        self.rec, self.seconds = rec, 0.0

    def step(self, **metrics):
        t0 = time.perf_counter()
        self.rec.step(**metrics)
        self.seconds += time.perf_counter() - t0

    def end_epoch(self, **metrics):
        t0 = time.perf_counter()
        self.rec.end_epoch(**metrics)
        self.seconds += time.perf_counter() - t0


def recorder_overhead(data, args) -> None:
    X, y = data.train
    steps = args.epochs * -(-X.shape[0] // args.batch_size)
    inside: list[float] = []
    points = []

    def once(record: bool) -> float:
        model = build("smallcnn", data.input_shape, data.num_classes, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            if record:
                rec = la.Recorder(model, os.path.join(tmp, "run"), every_steps=args.every_steps)
                made = time.perf_counter() - t0
                timed = Timed(rec)
                plain_loop(model, X, y, args.epochs, args.batch_size, timed)
                t1 = time.perf_counter()
                rec.close()
                inside.append(made + timed.seconds + time.perf_counter() - t1)
            else:
                plain_loop(model, X, y, args.epochs, args.batch_size)
            seconds = time.perf_counter() - t0
            if record:
                points.append(la.RunDir(os.path.join(tmp, "run")).open("trajectory", load=False).sizes["point"])
        return seconds

    once(True), once(False)  # warm-up: imports, allocator growth
    inside.clear()
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for record in (False, True):
            times[record].append(once(record))
    n_params = sum(p.numel() for p in build("smallcnn", data.input_shape, data.num_classes, seed=0).parameters())
    best = {k: min(v) for k, v in times.items()}
    print(f"small CNN ({n_params} parameters) on digits ({X.shape[0]} samples), batch {args.batch_size}, "
          f"{args.epochs} epochs = {steps} steps, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    print(f"recording every {args.every_steps} steps and each epoch's end: {points[-1]} snapshots")
    print(f"plain loop: best {best[False]:.3f} s of {args.repeats} ({', '.join(f'{t:.3f}' for t in times[False])})")
    print(f"recorded  : best {best[True]:.3f} s of {args.repeats} ({', '.join(f'{t:.3f}' for t in times[True])})")
    print(f"ratio recorded / plain (best of each): {best[True] / best[False]:.3f}")
    print(f"time inside the recorder (making it, its calls, closing): best {min(inside):.3f} s, median "
          f"{sorted(inside)[len(inside) // 2]:.3f} s = {100 * min(inside) / best[False]:.1f} % (best) and "
          f"{100 * sorted(inside)[len(inside) // 2] / best[False]:.1f} % (median) of the plain loop's best")


if __name__ == "__main__":
    main()

"""Benchmark: a 31x31 loss plane on scikit-learn digits, lossatlas against its references.

Run with ``python bench/surface.py`` (``--help`` for options). Two models on all 1,797 digits:

- CNN: ``SmallCNN((1, 8, 8), 10, channels=(32, 64), hidden=64)`` (conv 1->32 and 32->64, 3x3,
  each followed by ReLU and 2x2 max-pooling, then 256->64->10; about 1.19 GFLOP per point over
  the data, 90% of it in the second convolution).
- cnn16: the same CNN at 16-32 channels (``channels=(16, 32)``): a thinner model, where a naive
  loop already runs at a larger share of the matmul peak, so the gain is smaller (the README
  states the range, not one ratio).
- MLP: ``MLP((64,), 10, hidden=(64, 64))`` on the flattened digits.
- wide (only with ``--models wide``): ``MLP((784,), 10, hidden=(100,))`` on the 4,000 training
  digits of ``mnist5k`` (real MNIST), the case where the first layer is nearly all the work.

Each model is trained briefly (seeded), then the plane is evaluated by three methods, each in its
own process (this script re-run with ``--child``), with its default settings:

- ``lossatlas``: ``la.plane(la.Landscape(model, (X, y)), center, dirs, span=1, steps=31)`` with
  the defaults: for the CNN two worker threads with one intra-op thread each
  (``workers="auto"``), eager, batches of 256, channels-last; for the MLP one worker, all data
  in one batch; ``plane`` goes through ``Landscape.evaluate_span``, which for the MLP starts
  every point from its first layer's precomputed responses (the CNN's first conv is too thin for
  that to pay, so it runs as before). Variants: for the CNN ``workers=1`` (one stream with two
  intra-op threads) and ``compile=True`` (one compiled worker, compiled in the first call); for
  the MLP ``workers=2`` and ``strategy="vmap"``; for both ``accuracy=False``, the loss alone,
  which is all that the naive loop and ``loss-landscapes`` compute (the other rows compute loss
  and accuracy);
- ``naive loop``: for each point, copy it into every ``p.data`` and call the model on all data
  under ``torch.no_grad()``;
- ``loss-landscapes``: ``loss_landscapes.random_plane(model, Loss(F.cross_entropy, X, y),
  distance=0.5, steps=31, normalization="filter")`` (distance 0.5 spans +-1 model norm per
  direction, like ``span=1`` with filter-normalized directions).

Times are warm: each process first evaluates once (timed apart as "first call"; for lossatlas
a 2x2 plane, which carries one-time imports and ``torch.compile`` when it is on), then the whole
plane is timed. lossatlas and
the naive loop use the same directions, and their values are compared. The float32 matmul
throughput of the machine (2048x2048 @ 2048x2048, 2 threads) is measured in the same run, before
and after, and each method's model FLOPs per second are given as a fraction of the best of the
two. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
SPAN = 1.0
LL_DISTANCE = 0.5  # loss-landscapes: each direction spans model_norm / distance in total


def make_model(name: str) -> torch.nn.Module:
    from lossatlas.models import MLP, SmallCNN

    if name == "cnn":
        return SmallCNN((1, 8, 8), 10, channels=(32, 64), hidden=64)
    if name == "cnn16":
        return SmallCNN((1, 8, 8), 10, channels=(16, 32), hidden=64)
    if name == "mlp":
        return MLP((64,), 10, hidden=(64, 64))
    if name == "wide":
        return MLP((784,), 10, hidden=(100,))
    raise ValueError(name)


def data_for(name: str):
    if name == "wide":
        import lossatlas as la

        X, y = la.load_data("mnist5k", seed=0).train  # 4,000 real MNIST digits, normalized
        return X.reshape(len(X), -1), y
    return C.digits(image=name.startswith("cnn"))


def train(model: torch.nn.Module, X, y, epochs: int = 5, seed: int = 0) -> None:
    """A few epochs of Adam, seeded, so that the plane is centred near a minimum."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def setup(path: Path, models: list[str]) -> dict:
    import lossatlas as la

    info = {}
    blob = {}
    for name in models:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = make_model(name)
        X, y = data_for(name)
        train(model, X, y)
        dirs = la.random_directions(model, n=2, norm="filter", ignore="biasbn", seed=0)
        blob[name] = {"state": model.state_dict(), "dirs": dirs}
        with torch.no_grad():
            out = model(X)
        info[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "flops": C.forward_flops(model, X),
            "center_loss": float(F.cross_entropy(out, y)),
            "center_accuracy": float((out.argmax(1) == y).float().mean()),
            "samples": len(y),
        }
    torch.save(blob, path)
    return info


def load(path: str, name: str):
    blob = torch.load(path, weights_only=True)[name]
    model = make_model(name)
    model.load_state_dict(blob["state"])
    model.eval()
    return model, blob["dirs"]


# -- the three methods, each run in its own process ---------------------------------------------

def child_lossatlas(name: str, path: str, steps: int, kwargs: dict) -> dict:
    import lossatlas as la

    model, dirs = load(path, name)
    X, y = data_for(name)
    t = time.perf_counter()
    f = la.Landscape(model, (X, y), **kwargs)
    build = time.perf_counter() - t
    t = time.perf_counter()
    # Warm-up: a 2x2 plane, so the first call also carries plane()'s one-time imports (xarray
    # looks up its chunk managers on first use, 0.3-0.4 s) and, with compile=True, compiling.
    la.plane(f, f.origin, dirs, span=SPAN, steps=2)
    first = time.perf_counter() - t
    t = time.perf_counter()
    ds = la.plane(f, f.origin, dirs, span=SPAN, steps=steps)
    seconds = time.perf_counter() - t
    # Private attributes, read for the report only.
    settings = {"strategy": f.strategy.value, "workers": f.workers, "batch_size": f.batch_size,
                "channels_last": getattr(f, "_channels_last", None), "compile": getattr(f, "_compile_mode", None),
                "compiled at the end": getattr(f, "_compile", None)}
    return {"seconds": seconds, "first": first, "build": build, "points": steps * steps,
            "loss": ds.loss.values.tolist(), "settings": settings}


def child_naive(name: str, path: str, steps: int) -> dict:
    model, (d0, d1) = load(path, name)
    X, y = data_for(name)
    params = list(model.parameters())
    center = torch.nn.utils.parameters_to_vector(params).detach().clone()
    xs = np.linspace(-SPAN, SPAN, steps)

    def loss_at(a: float, b: float) -> float:
        vec = center + a * d0 + b * d1
        i = 0
        for p in params:
            p.data.copy_(vec[i : i + p.numel()].view_as(p))
            i += p.numel()
        with torch.no_grad():
            return F.cross_entropy(model(X), y).item()

    t = time.perf_counter()
    loss_at(0.5, -0.5)
    first = time.perf_counter() - t
    t = time.perf_counter()
    grid = [[loss_at(a, b) for b in xs] for a in xs]
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "first": first, "points": steps * steps, "loss": grid}


def child_loss_landscapes(name: str, path: str, steps: int) -> dict:
    import loss_landscapes
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_wrapper import wrap_model

    model, _ = load(path, name)
    X, y = data_for(name)
    metric = Loss(F.cross_entropy, X, y)
    torch.manual_seed(0)  # random_plane draws its directions from the global generator
    t = time.perf_counter()
    metric(wrap_model(model))
    first = time.perf_counter() - t
    t = time.perf_counter()
    grid = loss_landscapes.random_plane(model, metric, distance=LL_DISTANCE, steps=steps, normalization="filter")
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "first": first, "points": steps * steps, "loss": np.asarray(grid).tolist()}


def child_main(args) -> None:
    C.pin_threads()
    if args.child == "lossatlas":
        out = child_lossatlas(args.model, args.setup, args.steps, json.loads(args.kwargs))
    elif args.child == "naive":
        out = child_naive(args.model, args.setup, args.steps)
    else:
        out = child_loss_landscapes(args.model, args.setup, args.steps)
    C.report(out)


# -- the parent: set up, run the children, print the table --------------------------------------

METHODS = {
    # label: (child, Landscape kwargs, models it runs on)
    "lossatlas": ("lossatlas", {}, ("cnn", "cnn16", "mlp", "wide")),
    "lossatlas workers=1": ("lossatlas", {"workers": 1}, ("cnn", "cnn16")),
    "lossatlas workers=2": ("lossatlas", {"workers": 2}, ("mlp",)),
    "lossatlas compile=True": ("lossatlas", {"compile": True}, ("cnn", "cnn16")),
    "lossatlas strategy=vmap": ("lossatlas", {"strategy": "vmap"}, ("mlp",)),
    "lossatlas accuracy=False": ("lossatlas", {"accuracy": False}, ("cnn", "cnn16", "mlp", "wide")),
    "naive loop": ("naive", {}, ("cnn", "cnn16", "mlp", "wide")),
    "loss-landscapes": ("loss-landscapes", {}, ("cnn", "cnn16", "mlp", "wide")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn,cnn16,mlp", help="comma-separated: cnn, cnn16, mlp, wide")
    parser.add_argument("--steps", default="31", help="grid points per axis; several, comma-separated (e.g. 13,31), "
                        "measure the per-point time of small and large grids side by side (default 31)")
    parser.add_argument("--repeat", type=int, default=1, help="run every method this many times, keep the best")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--child", choices=["lossatlas", "naive", "loss-landscapes"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.steps = int(args.steps)
        child_main(args)
        return
    grids = [int(v) for v in str(args.steps).split(",") if v.strip()]

    C.pin_threads()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {C.load_average()}", flush=True)
    peaks = [C.matmul_gflops()]
    print(f"matmul float32 2048^3: {peaks[0]:.0f} GFLOP/s", flush=True)

    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "setup.pt"
        info = setup(path, models)
        for name in models:
            print(f"{name}: {info[name]['params']} parameters, {info[name]['flops'] / 1e9:.3f} GFLOP per point "
                  f"(forward over {info[name]['samples']} samples), center loss {info[name]['center_loss']:.4f}, "
                  f"accuracy {info[name]['center_accuracy']:.3f}", flush=True)
        for rep in range(args.repeat):
            for name in models:
                for label in methods:
                    child, kwargs, applies = METHODS[label]
                    if name not in applies:
                        continue
                    for steps in grids:
                        r = C.run_child(SCRIPT, ["--child", child, "--model", name, "--setup", str(path),
                                                 "--steps", str(steps), "--kwargs", json.dumps(kwargs)])
                        r["steps"] = steps
                        results.setdefault((name, label, steps), []).append(r)
                        print(f"  [{rep + 1}/{args.repeat}] {name:5s} {label:24s} {steps}x{steps} {r['seconds']:8.2f} s "
                              f"({1000 * r['seconds'] / r['points']:.2f} ms/point; first call {r['first']:.2f} s)",
                              flush=True)
    peaks.append(C.matmul_gflops())
    peak = max(peaks)
    print(f"matmul float32 2048^3 after: {peaks[1]:.0f} GFLOP/s; load average {C.load_average()}")

    rows = []
    for name in models:
        for steps in grids:
            labels = [label for label in methods if (name, label, steps) in results]
            best = {label: C.best_of(results[(name, label, steps)]) for label in labels}
            ref = {k: best[k]["seconds"] for k in ("naive loop", "loss-landscapes") if k in best}
            for label in labels:
                r = best[label]
                pts = r["points"] / r["seconds"]
                rows.append([
                    name, label, f"{steps}x{steps}", f"{r['seconds']:.2f}", f"{1000 / pts:.2f}", f"{r['first']:.2f}",
                    f"{ref['naive loop'] / r['seconds']:.2f}x" if "naive loop" in ref else "-",
                    f"{ref['loss-landscapes'] / r['seconds']:.2f}x" if "loss-landscapes" in ref else "-",
                    f"{100 * info[name]['flops'] * pts / (peak * 1e9):.1f}%",
                ])
    print()
    print(f"planes of {', '.join(f'{g}x{g}' for g in grids)} points, all of each model's data; "
          f"matmul peak {peak:.0f} GFLOP/s (best of before/after); best of {args.repeat} run(s)")
    print(C.table(rows, ["model", "method", "grid", "seconds", "ms/point", "first call s", "vs naive",
                         "vs loss-landscapes", "% matmul peak"]))
    print("(% matmul peak counts each point's nominal forward FLOPs; lossatlas's first-layer tables skip\n"
          " much of them on MLPs, so above 100% means work avoided, not faster arithmetic)")
    print()
    for name in models:
        for label in methods:
            for steps in grids:
                if (name, label, steps) not in results:
                    continue
                r = C.best_of(results[(name, label, steps)])
                if "settings" in r:
                    line = f"{name} {label} {steps}x{steps}: {r['settings']}"
                    if (name, "naive loop", steps) in results:
                        naive = C.best_of(results[(name, "naive loop", steps)])
                        line += f"; max relative difference to the naive loop {C.max_rel_diff(r['loss'], naive['loss']):.1e}"
                    print(line)


if __name__ == "__main__":
    main()

"""Benchmark: lossatlas on a GPU (issue 9 item 4).

Run with ``python bench/gpu.py`` on a CUDA machine (``--help`` for options). Two measurements:

1. **A filter-normalized plane of ResNet-56** (``lossatlas.models.build("resnet56", (3, 32, 32),
   10)``, seeded) on synthetic CIFAR-10-shaped samples (the GPU machine has no CIFAR; the values
   do not matter for timing), in full float32 and in TF32. Methods:

   - ``lossatlas``: ``la.plane(la.Landscape(model, (X, y), device=..., tf32=...), ...)`` with
     the defaults (``strategy="auto"``: vmap over chunks of points sized from free memory), and
     with ``strategy="loop"`` (on the smaller grid, ``--loop-steps``);
   - ``Li et al.``: the loop of their ``plot_surface.py``: per point the weights are set
     parameter by parameter (``p.data = w + x * dx + y * dy``, as ``net_plotter.set_weights``),
     then ``evaluation.eval_loss``: a ``DataLoader`` of batch 128 over host tensors, each batch
     moved to the GPU, ``CrossEntropyLoss`` and ``loss.item() * batch_size`` summed per batch.
     It runs on the first ``--ref-points`` points of the same grid; its time for the whole grid
     is extrapolated from them (labelled so).

   Throughput is the model's forward FLOPs (``torch.utils.flop_counter``, 2 per multiply-add)
   times samples times points over the seconds, given as GFLOP/s and as a fraction of the matmul
   peak measured in the same run for that precision (an ``8192 x 8192`` ``torch.mm``).

2. **16 jump-and-retrain runs of WRN-16-2** (``"wrn-16-2"``): 4 filter-normalized directions x
   4 step sizes from one centre, each retrained for 2 epochs by ``la.train`` (SGD, lr 1e-3,
   momentum 0.9, batch 128), once as a vmap ensemble (``ensemble="vmap"``) and once one model
   after another (``ensemble="sequential"``).

3. **Hessian of ResNet-20** (``"resnet20"``, ``bn="eval"``) on synthetic samples: the top 5
   eigenvalues (Lanczos, ``tol`` 1e-3) and Hutchinson's trace (``--trace-samples`` vectors),
   with their times and values.

``--out FILE`` writes every number (each table row, the peaks, the settings) to one JSON file.
``bench/gpu_check.py`` runs the ``gpu`` tests and then these sections at sizes for a short lease.

The default sizes are meant to fit in 8 minutes on one H100: a 51x51 plane on 10,000 samples in
TF32, 11x11 in float32, J&R on 10,000 samples. The full task (a 51x51 plane on 50,000 samples,
32.5 PFLOP) is printed as the time computed from the measured throughput; ``--full`` runs it.
``--device cpu --tiny`` is a smoke check of this script on any machine (tiny sizes, numbers
meaningless). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

FULL_STEPS, FULL_SAMPLES = 51, 50_000
SPAN = 1.0


def synthetic(n: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10-shaped samples: standard normal pixels, uniform labels (seeded, on ``device``)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return X.to(device), y.to(device)


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def plane_model(name: str, device):
    from lossatlas.models import build

    return build(name, (3, 32, 32), 10, seed=0).to(device).eval()


# -- the plane -----------------------------------------------------------------------------------

def lossatlas_plane(model, X, y, dirs, steps: int, device, tf32: bool, **kwargs) -> dict:
    import lossatlas as la

    t = time.perf_counter()
    f = la.Landscape(model, (X, y), device=device, tf32=tf32, **kwargs)
    build = time.perf_counter() - t
    t = time.perf_counter()
    la.plane(f, f.origin, dirs, span=SPAN, steps=2)  # warm-up: kernels, cuDNN plans, imports
    first = time.perf_counter() - t
    t = time.perf_counter()
    ds = la.plane(f, f.origin, dirs, span=SPAN, steps=steps)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "first": first, "build": build, "points": steps * steps,
            "loss": np.asarray(ds.loss.values), "settings": {"strategy": f.strategy.value, "chunk": f.chunk,
                                                            "batch_size": f.batch_size, "workers": f.workers}}


def li_eval_loss(net, loader, device) -> tuple[float, float]:
    """``evaluation.eval_loss`` of Li et al.'s code, as it runs for CrossEntropyLoss."""
    criterion = torch.nn.CrossEntropyLoss()
    correct, total_loss, total = 0, 0.0, 0
    net.eval()
    with torch.no_grad():
        for inputs, targets in loader:
            batch_size = inputs.size(0)
            total += batch_size
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            total_loss += loss.item() * batch_size
            _, predicted = torch.max(outputs.data, 1)
            correct += predicted.eq(targets).sum().item()
    return total_loss / total, 100.0 * correct / total


def li_plane(model, X, y, dirs, steps: int, points: int, device, tf32: bool) -> dict:
    """Li et al.'s loop on the first ``points`` points of the ``steps x steps`` grid (row-major)."""
    from torch.utils.data import DataLoader, TensorDataset

    from lossatlas.space import ParamSpace

    set_tf32(tf32)
    net = copy.deepcopy(model).to(device)
    space = ParamSpace(net)
    weights = [p.data.clone() for p in net.parameters()]
    d0 = [t.to(device) for t in space.split(dirs[0].to(device))]
    d1 = [t.to(device) for t in space.split(dirs[1].to(device))]
    loader = DataLoader(TensorDataset(X.cpu(), y.cpu()), batch_size=128, shuffle=False)
    xs = np.linspace(-SPAN, SPAN, steps)
    cells = [(i, j) for i in range(steps) for j in range(steps)][:points]

    def at(a: float, b: float) -> float:
        for p, w, u, v in zip(net.parameters(), weights, d0, d1):  # net_plotter.set_weights
            p.data = w + u * a + v * b
        return li_eval_loss(net, loader, device)[0]

    at(0.0, 0.0)  # warm-up
    C.synchronize(device)
    t = time.perf_counter()
    losses = [at(xs[i], xs[j]) for i, j in cells]
    C.synchronize(device)
    return {"seconds": time.perf_counter() - t, "points": len(cells), "cells": cells, "loss": losses}


def plane_section(args, device, peaks) -> tuple[list[dict], float, float]:
    import lossatlas as la

    model = plane_model(args.plane_model, device)
    flops_per_sample = C.forward_flops(copy.deepcopy(model).cpu(), torch.zeros(2, 3, 32, 32)) / 2
    dirs = la.random_directions(model, n=2, norm="filter", ignore="biasbn", seed=0)
    rows = []
    for tf32, steps, samples in ((True, args.tf32_steps, args.tf32_samples), (False, args.fp32_steps, args.fp32_samples)):
        precision = "TF32" if tf32 else "fp32"
        X, y = synthetic(samples, seed=1, device=device)
        per_point = flops_per_sample * samples
        kw = {} if args.batch_size is None else {"batch_size": args.batch_size}
        runs = [("lossatlas", steps, lossatlas_plane(model, X, y, dirs, steps, device, tf32, **kw))]
        loop_steps = min(steps, args.loop_steps)
        runs.append(("lossatlas strategy=loop", loop_steps,
                     lossatlas_plane(model, X, y, dirs, loop_steps, device, tf32, strategy="loop", **kw)))
        ref = li_plane(model, X, y, dirs, steps, min(args.ref_points, steps * steps), device, tf32)
        runs.append(("Li et al. (extrapolated)", steps, ref))
        full = runs[0][2]["loss"]
        diff = C.max_rel_diff([full[i, j] for i, j in ref["cells"]], ref["loss"])
        for label, s, r in runs:
            gflops = per_point * r["points"] / r["seconds"] / 1e9
            grid_seconds = r["seconds"] / r["points"] * steps * steps
            rows.append({"precision": precision, "method": label, "grid": f"{s}x{s}", "samples": samples,
                         "measured points": r["points"], "seconds": r["seconds"], "grid seconds": grid_seconds,
                         "gflops": gflops, "peak": peaks[tf32], "first": r.get("first"), "build": r.get("build"),
                         "settings": r.get("settings"), "diff": diff if label.startswith("Li") else None})
        print(f"  {precision}: done ({time.perf_counter() - START:.0f} s so far)", flush=True)
    full_flops = flops_per_sample * FULL_SAMPLES * FULL_STEPS**2
    return rows, flops_per_sample, full_flops


# -- jump and retrain ------------------------------------------------------------------------------

def jr_section(args, device) -> dict:
    import lossatlas as la
    from lossatlas.models import build
    from lossatlas.space import ParamSpace

    set_tf32(args.train_tf32)
    center = build(args.jr_model, (3, 32, 32), 10, seed=0).to(device)
    space = ParamSpace(center)
    theta = space.vector(center)
    X, y = synthetic(args.train_samples, seed=2, device=device)
    seeds = list(range(args.directions))
    steps = [0.25, 0.5, 0.75, 1.0][: args.step_sizes]

    def jumped() -> list:
        models = []
        for s in seeds:
            d = la.random_directions(center, n=1, norm="filter", ignore="biasbn", seed=s)[0].to(device)
            for a in steps:
                m = copy.deepcopy(center)
                space.assign(m, theta + a * d)
                models.append(m)
        return models

    out = {}
    for mode in ("vmap", "sequential"):
        models = jumped()
        C.synchronize(device)
        t = time.perf_counter()
        run = la.train(models, (X, y), optimizer="sgd", lr=1e-3, momentum=0.9, epochs=args.epochs,
                       batch_size=args.train_batch, seed=list(range(len(models))), ensemble=mode)
        C.synchronize(device)
        out[mode] = {"seconds": time.perf_counter() - t, "runs": len(models), "model": args.jr_model,
                     "final": torch.stack([space.vector(m).detach() for m in models]),
                     "loss": float(np.nanmean(_final_losses(run)))}
        print(f"  J&R {mode}: {out[mode]['seconds']:.1f} s ({time.perf_counter() - START:.0f} s so far)", flush=True)
    out["max_weight_diff"] = float((out["vmap"]["final"] - out["sequential"]["final"]).abs().max())
    return out


def _final_losses(run) -> np.ndarray:
    ds = run.trajectory
    loss = np.asarray(ds["loss"].values, dtype=float)
    if "epoch" in ds.coords and "run" in ds.coords:
        last = np.asarray(ds["epoch"].values) == np.asarray(ds["epoch"].values).max()
        return loss[last]
    return loss[-1:]


# -- the Hessian -----------------------------------------------------------------------------------

def hessian_section(args, device) -> dict:
    import lossatlas as la
    from lossatlas.models import build

    model = build(args.hessian_model, (3, 32, 32), 10, seed=0).to(device).eval()
    X, y = synthetic(args.hessian_samples, seed=3, device=device)
    f = la.Landscape(model, (X, y), device=device, bn="eval")
    out = {"model": args.hessian_model, "samples": args.hessian_samples, "n_params": f.space.size,
           "trace_samples": args.trace_samples, "tol": 1e-3}
    C.synchronize(device)
    t = time.perf_counter()
    eig = la.hessian_eigenvalues(f, k=5, tol=1e-3, seed=0, maxiter=args.hessian_maxiter)
    C.synchronize(device)
    out["top5_seconds"], out["top5"] = time.perf_counter() - t, [float(v) for v in np.asarray(eig)]
    t = time.perf_counter()
    est = la.hessian_trace(f, samples=args.trace_samples, seed=0, return_error=True)
    C.synchronize(device)
    out["trace_seconds"], out["trace"], out["trace_stderr"] = time.perf_counter() - t, est.value, est.stderr
    print(f"  Hessian: top-5 {out['top5_seconds']:.1f} s, trace {out['trace_seconds']:.1f} s "
          f"({time.perf_counter() - START:.0f} s so far)", flush=True)
    return out


def report_hessian(out) -> None:
    print(f"\nHessian of {out['model']} ({out['n_params']:,} parameters) on {out['samples']:,} samples, bn=eval")
    print(C.table([["top-5 eigenvalues (Lanczos, tol 1e-3)", f"{out['top5_seconds']:.2f}",
                    ", ".join(f"{v:.4g}" for v in out["top5"])],
                   [f"trace (Hutchinson, {out['trace_samples']} vectors)", f"{out['trace_seconds']:.2f}",
                    f"{out['trace']:.4g} +- {out['trace_stderr']:.2g}"]],
                  ["measure", "seconds", "value"]))


# -- main ----------------------------------------------------------------------------------------

START = time.perf_counter()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu with --tiny (default cuda)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke check of the script")
    ap.add_argument("--full", action="store_true", help="run the full task: 51x51 on 50,000 samples in TF32")
    ap.add_argument("--tf32-steps", type=int, default=51)
    ap.add_argument("--tf32-samples", type=int, default=10_000)
    ap.add_argument("--fp32-steps", type=int, default=11)
    ap.add_argument("--fp32-samples", type=int, default=10_000)
    ap.add_argument("--loop-steps", type=int, default=11, help="grid of the strategy='loop' rows")
    ap.add_argument("--ref-points", type=int, default=12, help="points Li et al.'s loop is timed on")
    ap.add_argument("--batch-size", type=int, default=None, help="Landscape batch_size (default its own)")
    ap.add_argument("--train-samples", type=int, default=10_000)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--directions", type=int, default=4)
    ap.add_argument("--step-sizes", type=int, default=4, choices=range(1, 5))
    ap.add_argument("--train-tf32", action="store_true", help="train J&R in TF32 (default full float32)")
    ap.add_argument("--hessian-samples", type=int, default=5_000, help="samples of the ResNet-20 Hessian")
    ap.add_argument("--hessian-maxiter", type=int, default=None, help="Lanczos iterations at most (default its own)")
    ap.add_argument("--hessian-model", default="resnet20")
    ap.add_argument("--plane-model", default="resnet56")
    ap.add_argument("--jr-model", default="wrn-16-2")
    ap.add_argument("--trace-samples", type=int, default=100, help="Hutchinson vectors of the trace")
    ap.add_argument("--skip", default="", help="comma-separated: plane, jr, hessian")
    ap.add_argument("--out", default=None, help="write every number to this JSON file")
    return ap


def tiny(args) -> None:
    """Smoke sizes: every code path, numbers meaningless."""
    args.tf32_steps = args.fp32_steps = args.loop_steps = 2
    args.tf32_samples = args.fp32_samples = 8
    args.ref_points, args.train_samples, args.train_batch = 1, 16, 8
    args.epochs, args.directions, args.step_sizes = 1, 1, 2
    args.hessian_samples, args.trace_samples, args.hessian_maxiter = 8, 2, 10
    args.jr_model, args.hessian_model = "wrn-10-1", "resnet8"  # the same code paths, smaller models


def run(args) -> dict:
    """Run the sections ``args`` asks for; print their tables; return every number."""
    from lossatlas.landscape import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu":
        C.pin_threads()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}{', TINY smoke sizes' if args.tiny else ''}", flush=True)
    n = 8192 if device.type == "cuda" else 1024
    peaks = {tf32: C.matmul_gflops(n, 0.25 if args.tiny else 2.0, device, tf32) for tf32 in (True, False)}
    print(f"matmul {n}^3 peak: TF32 {peaks[True]:.0f} GFLOP/s, fp32 {peaks[False]:.0f} GFLOP/s", flush=True)
    results = {"device": name, "torch": torch.__version__, "tiny": bool(args.tiny), "load_average": C.load_average(),
               "args": vars(args), "matmul_peak_gflops": {"tf32": peaks[True], "fp32": peaks[False]}}
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if "plane" not in skip:
            rows, flops_per_sample, full_flops = plane_section(args, device, peaks)
            report_plane(rows, flops_per_sample, full_flops, args)
            results["plane"] = {"model": args.plane_model, "rows": [{k: v for k, v in r.items()} for r in rows],
                                "forward_flops_per_sample": flops_per_sample, "full_task_flops": full_flops}
        if "jr" not in skip:
            jr = jr_section(args, device)
            report_jr(jr, args)
            results["jr"] = {m: {k: v for k, v in jr[m].items() if k != "final"} for m in ("vmap", "sequential")}
            results["jr"]["max_weight_diff"] = jr["max_weight_diff"]
        if "hessian" not in skip:
            results["hessian"] = hessian_section(args, device)
            report_hessian(results["hessian"])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    results["seconds"] = time.perf_counter() - START
    return results


def write_json(results: dict, path) -> None:
    """``results`` as JSON (tensors and arrays as lists, other objects as text)."""
    import json

    def plain(v):
        if isinstance(v, torch.Tensor):
            return v.tolist()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return str(v)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1, default=plain))


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.tiny:
        tiny(args)
    if args.full:
        args.tf32_steps, args.tf32_samples = FULL_STEPS, FULL_SAMPLES
    if args.device == "cpu" and not args.tiny:
        ap.error("on a CPU only --tiny makes sense (the default sizes are sized for an H100)")
    results = run(args)
    if args.out:
        write_json(results, args.out)
    print(f"\ntotal {time.perf_counter() - START:.0f} s")


def report_plane(rows, flops_per_sample, full_flops, args) -> None:
    print(f"\nResNet-56 plane: {flops_per_sample / 1e6:.1f} MFLOP per sample (forward); full task "
          f"{FULL_STEPS}x{FULL_STEPS} on {FULL_SAMPLES:,} samples = {full_flops / 1e15:.1f} PFLOP")
    table = []
    for r in rows:
        table.append([r["precision"], r["method"], r["grid"], f"{r['samples']:,}", r["measured points"],
                      f"{r['seconds']:.2f}", f"{r['grid seconds']:.1f}", f"{r['gflops']:.0f}",
                      f"{100 * r['gflops'] / r['peak']:.1f}%", f"{full_flops / (r['gflops'] * 1e9):.0f}"])
    print(C.table(table, ["precision", "method", "grid", "samples", "points timed", "seconds",
                          "grid s (extrapolated for Li)", "GFLOP/s", "% of peak",
                          "full task s (computed from GFLOP/s)"]))
    for precision in ("TF32", "fp32"):
        sub = {r["method"]: r for r in rows if r["precision"] == precision}
        ours, ref = sub["lossatlas"], sub["Li et al. (extrapolated)"]
        print(f"{precision}: lossatlas {ref['grid seconds'] / ours['grid seconds']:.1f}x Li et al.'s loop on the "
              f"same grid; settings {ours['settings']}, first call {ours['first']:.2f} s, build {ours['build']:.2f} s; "
              f"loop settings {sub['lossatlas strategy=loop']['settings']}; max relative difference to Li et "
              f"al.'s values {ref['diff']:.1e}")
    tf = {r["method"]: r for r in rows if r["precision"] == "TF32"}["lossatlas"]
    print(f"Full task ({FULL_STEPS}x{FULL_STEPS}, {FULL_SAMPLES:,} samples) at lossatlas's measured TF32 throughput: "
          f"{full_flops / (tf['gflops'] * 1e9) / 60:.1f} min (computed from the measured GFLOP/s, not run"
          f"{'; --full ran it above' if args.full else '; --full runs it'})")


def report_jr(out, args) -> None:
    seq, ens = out["sequential"], out["vmap"]
    print(f"\nJ&R: {ens['runs']} retrains of {args.jr_model}, {args.epochs} epochs on {args.train_samples:,} samples, "
          f"batch {args.train_batch}, {'TF32' if args.train_tf32 else 'fp32'}")
    print(C.table([["sequential", f"{seq['seconds']:.1f}", f"{seq['loss']:.4f}"],
                   ["vmap ensemble", f"{ens['seconds']:.1f}", f"{ens['loss']:.4f}"]],
                  ["way", "seconds", "mean final train loss"]))
    print(f"ensemble {seq['seconds'] / ens['seconds']:.2f}x sequential; largest weight difference between the two "
          f"ways {out['max_weight_diff']:.1e}")


if __name__ == "__main__":
    main()

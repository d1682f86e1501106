"""Hessian eigenvalues and trace of the small CNN on scikit-learn digits: lossatlas vs PyHessian.

Both run over all of the training split, in the same batches (Landscape's evaluation batches,
256 samples), in one process with the same allocator settings (glibc thresholds as the Landscape
sets them) and thread count, at the same tolerance:

- top 1 and top 5: lossatlas's Lanczos (one run for all k) at ``tol`` against PyHessian's power
  iteration with deflation (one run per eigenvalue) at ``tol`` and its ``maxIter`` 100. The two
  tolerances are not the same test (PyHessian stops when the eigenvalue changes by less than
  ``tol`` relatively; Lanczos when every Ritz residual is under ``tol`` times its value, a
  stricter test), so the eigenvalues are printed too;
- the trace: Hutchinson with the same number of Rademacher samples each (PyHessian's early stop
  switched off), which compares the cost of a Hessian-vector product;
- hvp: one Hessian-vector product over all the data, lossatlas's two modes (``reverse``, the
  default double backward, and ``forward``, forward-over-reverse) against PyHessian's.

Plain Python; prints times, ratios (PyHessian / lossatlas: above 1 means lossatlas is faster),
the values and the Hessian-vector products used. No timed assertions anywhere.

    python bench/hessian.py [--epochs 5] [--tol 1e-3] [--samples 100] [--repeats 2] [--device cpu]
                            [--measures top-1,top-5,trace,hvp]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import torch
from torch import nn

from _common import load_average, pin_threads, synchronize, table


def timed(fn, device, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5, help="training epochs before measuring")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=100, help="Hutchinson samples")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs of each")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measures", default="top-1,top-5,trace,hvp", help="comma-separated subset to run")
    args = ap.parse_args()
    measures = [m.strip() for m in args.measures.split(",")]
    unknown = sorted(set(measures) - {"top-1", "top-5", "trace", "hvp"})
    if unknown:
        ap.error(f"unknown measures {unknown}; choose from top-1, top-5, trace, hvp")
    pin_threads(args.threads)
    device = torch.device(args.device)

    import pyhessian

    import lossatlas as la
    from lossatlas.curvature import hessian_eigenvalues, hessian_trace
    from lossatlas.landscape import Landscape, tune_allocator
    from lossatlas.models import build

    tune_allocator()  # the same glibc thresholds for both libraries, set once for the process
    data = la.load_data("digits")
    model = build("smallcnn", data.input_shape, data.num_classes, seed=0)
    la.train(model, data, epochs=args.epochs, lr=0.05, momentum=0.9, batch_size=128, seed=0)
    model = model.to(device).eval()
    f = Landscape(model, data.train, device=device)
    batches = [(x, y) for x, y in zip((b[0] for b in f.splits[0].batches), f.splits[0].targets)]
    n_params = f.space.size

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PyHessian's backward(create_graph=True)
        torch.manual_seed(0)  # PyHessian draws from the global generators
        ph = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=batches,
                               cuda=device.type == "cuda")

        # PyHessian draws its start vectors from the global generator: reseeded before each call,
        # every repeat does the same work (otherwise the number of power iterations varies from
        # run to run, 5 to 25 here, and the best of several times picks the luckiest start).
        def ph_top(k):
            torch.manual_seed(0)
            return ph.eigenvalues(maxIter=100, tol=args.tol, top_n=k)[0]

        def ph_trace():
            torch.manual_seed(0)
            return ph.trace(maxIter=args.samples, tol=0.0)  # tol 0: all samples, as lossatlas

        # Warm-up: torch.func's first transforms and the allocator's first growth.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warm-up stops at maxiter on purpose
            hessian_eigenvalues(f, k=1, tol=1e-1, maxiter=3)
        ph.eigenvalues(maxIter=2, tol=args.tol, top_n=1)

        rows, ratios = [], {}
        for k in [int(m[4:]) for m in measures if m.startswith("top-")]:
            t_la, res = timed(lambda: hessian_eigenvalues(f, k=k, tol=args.tol, return_vectors=True), device, args.repeats)
            calls = {"n": 0}
            inner = ph.dataloader_hv_product

            def counting(v):
                calls["n"] += 1
                return inner(v)

            ph.dataloader_hv_product = counting
            t_ph, ref = timed(lambda: ph_top(k), device, args.repeats)
            ph.dataloader_hv_product = inner
            ratios[f"top-{k}"] = t_ph / t_la
            rows.append([f"top-{k}", f"{t_la:.2f}", f"{t_ph:.2f}", f"{t_ph / t_la:.2f}x",
                         res.products, calls["n"] // args.repeats,
                         " ".join(f"{v:.4g}" for v in res.values.tolist()), " ".join(f"{v:.4g}" for v in ref)])
        if "trace" in measures:
            t_la, est = timed(lambda: hessian_trace(f, samples=args.samples, seed=0, return_error=True),
                              device, args.repeats)
            t_ph, ref = timed(ph_trace, device, args.repeats)
            ratios["trace"] = t_ph / t_la
            rows.append(["trace", f"{t_la:.2f}", f"{t_ph:.2f}", f"{t_ph / t_la:.2f}x", args.samples, len(ref),
                         f"{est.value:.4g} +- {est.stderr:.2g}", f"{np.mean(ref):.4g}"])

        if "hvp" in measures:
            v = torch.randn(n_params, generator=torch.Generator(device=device).manual_seed(1), device=device)
            vs = [p.reshape_as(q) for p, q in zip(torch.split(v, [q.numel() for q in ph.params]), ph.params)]
            t_ph, _ = timed(lambda: ph.dataloader_hv_product(vs), device, 5)
            for mode in ("reverse", "forward"):
                t_la, _ = timed(lambda: f.hvp(f.origin, v, mode=mode), device, 5)
                ratios[f"hvp-{mode}"] = t_ph / t_la
                rows.append([f"hvp ({mode})", f"{t_la:.3f}", f"{t_ph:.3f}", f"{t_ph / t_la:.2f}x", 1, 1, "", ""])

    print(f"small CNN ({n_params} parameters) on digits ({f.splits[0].n} training samples, "
          f"{len(batches)} batches), device {device}, {torch.get_num_threads()} threads, tol {args.tol}, "
          f"{args.epochs} training epochs; load average {load_average()}")
    print(table(rows, ["measure", "lossatlas s", "PyHessian s", "ratio", "HVPs la", "HVPs PyH",
                       "lossatlas values", "PyHessian values"]))
    targets = {"top-1": 1.0, "top-5": 3.0}
    print("targets: " + ", ".join(f"{m} ratio >= {targets[m]:g} (measured {ratios[m]:.2f}x)"
                                  for m in targets if m in ratios))


if __name__ == "__main__":
    main()

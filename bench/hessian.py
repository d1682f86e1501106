"""Hessian eigenvalues, trace and products: lossatlas against PyHessian, curvlinops and
hessian-eigenthings, side by side in one process, over the same batches (all of the data).

Three models: the small CNN trained on scikit-learn digits (``--model smallcnn``), a ResNet-20
on Fashion-MNIST-sized inputs (``--model resnet20``: 28x28x1 random images, ``--samples`` of
them, untrained; random data is enough for the time of a product, but its spectrum is not one
users meet) and the same ResNet-20 trained on real Fashion-MNIST (``--model resnet20-fmnist``:
``--train-samples`` images, ``--epochs`` epochs of SGD, the Hessian over the first
``--samples`` of them; the Debian package ``dataset-fashion-mnist``). Every measure runs each library in turn, repeated
``--repeats`` times interleaved, and keeps each one's best time (the machine may be shared):

- ``hvp``: one Hessian-vector product over all the data: lossatlas's two modes (``reverse``,
  double backward, the default; ``forward``, forward-over-reverse), its block product (8
  vectors in one pass, time per vector) and a product on retained gradient graphs (what its
  eigenvalue solvers take: ``Landscape.retained`` builds the graphs once, the build timed
  apart) against PyHessian's, curvlinops' (one vector and a
  block of 8) and hessian-eigenthings';
- ``top-1``, ``top-5``: time at the same tolerance (lossatlas's Lanczos, curvlinops through
  SciPy's ARPACK, PyHessian's power iteration with its ``maxIter`` 100; hessian-eigenthings'
  Lanczos runs a fixed number of steps: it gets as many as lossatlas took), and each one's
  largest relative error against a converged ARPACK reference (``tol`` 1e-10);
- ``trace``: the root-mean-square relative error over ``--seeds`` seeds at ``--trace-products``
  products each (lossatlas's Hutchinson, Hutch++ and XTrace, PyHessian's Hutchinson,
  curvlinops' and hessian-eigenthings' Hutch++), against a reference XTrace of
  ``--reference-products``; and at equal time: lossatlas's Hutch++ with as many (block)
  products as fit in PyHessian's Hutchinson time.

Plain Python; prints times, ratios (peer / lossatlas: above 1 means lossatlas is faster),
errors and products. No timed assertions anywhere.

    python bench/hessian.py [--model smallcnn|resnet20|resnet20-fmnist] [--epochs 5] [--samples 256] [--tol 1e-3]
                            [--repeats 3] [--seeds 4] [--trace-products 60] [--threads 1]
                            [--measures hvp,top-1,top-5,trace]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from _common import load_average, pin_threads, synchronize, table
from _hessian_peers import Peers


def _accuracy(run) -> str:
    t = run.trajectory
    return f"train accuracy {float(t.accuracy[-1]):.3f}, test {float(t.test_accuracy[-1]):.3f}"


def build_problem(args, device):
    import lossatlas as la
    from lossatlas.landscape import Landscape
    from lossatlas.models import build

    if args.model == "smallcnn":
        data = la.load_data("digits")
        model = build("smallcnn", data.input_shape, data.num_classes, seed=0)
        la.train(model, data, epochs=args.epochs, lr=0.05, momentum=0.9, batch_size=128, seed=0)
        f = Landscape(model.to(device).eval(), data.train, device=device)
        what = f"small CNN on digits ({args.epochs} training epochs)"
    elif args.model == "resnet20-fmnist":
        # A trained network on real images, where users measure curvature: the Hessian has a
        # few large outliers (about one per class) above a bulk, unlike the untrained network's
        # flat spectrum with large negative eigenvalues.
        data = la.load_data("fashion-mnist", subset=args.train_samples, test_subset=1000)
        model = build("resnet20", data.input_shape, data.num_classes, seed=0)
        t0 = time.perf_counter()
        hist = la.train(model, data, epochs=args.epochs, lr=0.05, momentum=0.9, weight_decay=5e-4,
                        batch_size=128, seed=0)
        X, y = data.train
        f = Landscape(model.to(device).eval(), (X[: args.samples], y[: args.samples]), device=device)
        what = (f"ResNet-20 trained on {len(X)} Fashion-MNIST images ({args.epochs} epochs, "
                f"{time.perf_counter() - t0:.0f} s; {_accuracy(hist)}), the Hessian over its first {args.samples}")
    else:
        g = torch.Generator().manual_seed(0)
        X = torch.randn(args.samples, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (args.samples,), generator=g)
        model = build("resnet20", (1, 28, 28), 10, seed=0).to(device).eval()
        f = Landscape(model, (X, y), device=device)
        what = "ResNet-20 on random 28x28x1 images (untrained)"
    batches = [(b[0], y) for b, y in zip(f.splits[0].batches, f.splits[0].targets)]
    return f, model, batches, what


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smallcnn", choices=["smallcnn", "resnet20", "resnet20-fmnist"])
    ap.add_argument("--epochs", type=int, default=5, help="training epochs (smallcnn, resnet20-fmnist)")
    ap.add_argument("--train-samples", type=int, default=2000, help="Fashion-MNIST training images (resnet20-fmnist)")
    ap.add_argument("--samples", type=int, default=256, help="images of the ResNet-20's Hessian (random ones for resnet20)")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs of each")
    ap.add_argument("--seeds", type=int, default=4, help="seeds of each trace estimator")
    ap.add_argument("--trace-products", type=int, default=60)
    ap.add_argument("--reference-products", type=int, default=400, help="products of the reference trace (XTrace)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--measures", default="hvp,top-1,top-5,trace", help="comma-separated subset to run")
    args = ap.parse_args()
    measures = [m.strip() for m in args.measures.split(",")]
    unknown = sorted(set(measures) - {"top-1", "top-5", "trace", "hvp"})
    if unknown:
        ap.error(f"unknown measures {unknown}; choose from top-1, top-5, trace, hvp")
    pin_threads(args.threads)
    device = torch.device(args.device)

    from lossatlas.curvature import curvature_operator, hessian_eigenvalues, hessian_trace
    from lossatlas.landscape import tune_allocator

    tune_allocator()  # the same glibc thresholds for every library, set once for the process
    f, model, batches, what = build_problem(args, device)
    peers = Peers(model, batches, device)
    P = f.space.size

    def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
        best, out = {k: float("inf") for k in fns}, {}
        for _ in range(repeats):
            for k, fn in fns.items():
                synchronize(device)
                t0 = time.perf_counter()
                out[k] = fn()
                synchronize(device)
                best[k] = min(best[k], time.perf_counter() - t0)
        return best, out

    # Warm-up: torch.func's first transforms, the allocator's first growth, each library once.
    v = torch.randn(P, generator=torch.Generator(device=device).manual_seed(1), device=device)
    V = torch.randn(8, P, generator=torch.Generator(device=device).manual_seed(2), device=device)
    f.hvp(f.origin, v), f.products(f.origin, V[:2]), peers.pyhessian_hvp(v), peers.curvlinops_hvp(v)
    peers.eigenthings_hvp(v)

    rows, ratios = [], {}
    header = ["measure", "library", "time", "time / lossatlas", "products", "rel. error"]
    print(f"{what}: {P} parameters, {f.splits[0].n} samples in {len(batches)} batches, device {device}, "
          f"{torch.get_num_threads()} threads, tol {args.tol}, best of {args.repeats}", flush=True)

    def flush(first: int) -> None:
        print(table(rows[first:], header), flush=True)

    if "hvp" in measures:
        t, _ = timed({
            "la reverse": lambda: f.hvp(f.origin, v),
            "la forward": lambda: f.hvp(f.origin, v, mode="forward"),
            "la block 8 reverse": lambda: f.products(f.origin, V),
            "la block 8 forward": lambda: f.products(f.origin, V, mode="forward"),
            "PyHessian": lambda: peers.pyhessian_hvp(v),
            "curvlinops": lambda: peers.curvlinops_hvp(v),
            "curvlinops block 8": lambda: peers.curvlinops_block(V),
            "hessian-eigenthings": lambda: peers.eigenthings_hvp(v),
        }, max(args.repeats, 3))
        t0 = time.perf_counter()
        with f.retained(f.origin) as kept:  # what the solvers do: graphs built once, then one backward a product
            t["la retained: build"] = time.perf_counter() - t0
            assert kept.kept == len(batches), "the bench's graphs did not fit in the memory budget"
            t.update(timed({"la retained: product": lambda: f.hvp(f.origin, v)}, max(args.repeats, 3))[0])
        for k in [k for k in t if "block" in k]:
            t[k] /= 8
        ours = min(t["la reverse"], t["la forward"])
        ours_block = min(t["la block 8 reverse"], t["la block 8 forward"])
        for k, s in t.items():
            rows.append(["hvp", k, f"{1e3 * s:.1f} ms", f"{s / ours:.2f}" if not k.startswith("la") else "", 1, ""])
        ratios["hvp vs curvlinops (one vector)"] = t["curvlinops"] / ours
        ratios["hvp vs curvlinops (block of 8)"] = t["curvlinops block 8"] / ours_block
        ratios["hvp vs PyHessian"] = t["PyHessian"] / ours
        ratios["hvp on retained graphs vs PyHessian"] = t["PyHessian"] / t["la retained: product"]
        ratios["hvp on retained graphs vs curvlinops (one vector)"] = t["curvlinops"] / t["la retained: product"]
        flush(0)

    top = [int(m[4:]) for m in measures if m.startswith("top-")]
    if top:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from scipy.sparse.linalg import eigsh

            ref = np.sort(eigsh(curvature_operator(f), k=max(top), which="LA", tol=1e-10,
                                return_eigenvectors=False))[::-1]
    for k in top:
        first = len(rows)
        res = hessian_eigenvalues(f, k=k, tol=args.tol, return_vectors=True)
        steps = max(res.products, k + 1)
        counts = {"lossatlas": res.products, "hessian-eigenthings": steps}
        for name, fn in (("PyHessian", peers.pyhessian_top), ("curvlinops", peers.curvlinops_top)):
            peers.count = 0
            fn(k, args.tol)
            counts[name] = peers.count
        t, out = timed({
            "lossatlas": lambda: hessian_eigenvalues(f, k=k, tol=args.tol).numpy(),
            "PyHessian": lambda: peers.pyhessian_top(k, args.tol),
            "curvlinops": lambda: peers.curvlinops_top(k, args.tol),
            "hessian-eigenthings": lambda: peers.eigenthings_top(k, steps, args.tol),
        }, args.repeats)
        for name, s in t.items():
            err = float(np.max(np.abs(np.asarray(out[name])[:k] - ref[:k]) / np.abs(ref[:k])))
            rows.append([f"top-{k}", name, f"{s:.2f} s", f"{s / t['lossatlas']:.2f}" if name != "lossatlas" else "",
                         counts[name], f"{err:.1e}"])
            if name != "lossatlas":
                ratios[f"top-{k} vs {name}"] = s / t["lossatlas"]
                ratios[f"top-{k} products, {name} / lossatlas"] = counts[name] / counts["lossatlas"]
        flush(first)

    if "trace" in measures:
        m = args.trace_products
        reference = hessian_trace(f, samples=args.reference_products, method="xtrace", seed=10_000, block=8,
                                  return_error=True)
        exact = reference.value
        seeds = range(args.seeds)
        estimators = {
            "la hutchinson": lambda s: hessian_trace(f, samples=m, seed=s),
            "la hutch++": lambda s: hessian_trace(f, samples=m, seed=s, method="hutch++"),
            "la xtrace": lambda s: hessian_trace(f, samples=m, seed=s, method="xtrace"),
            "PyHessian hutchinson": lambda s: peers.pyhessian_trace(m, s),
            "curvlinops hutch++": lambda s: peers.curvlinops_hutchpp(m, s),
            "hessian-eigenthings hutch++": lambda s: peers.eigenthings_hutchpp(m, s),
        }
        err, secs = {}, {}
        for name, fn in estimators.items():
            vals, best = [], float("inf")
            for s in seeds:
                t0 = time.perf_counter()
                vals.append(fn(s))
                best = min(best, time.perf_counter() - t0)
            err[name] = float(np.sqrt(np.mean((np.asarray(vals) - exact) ** 2)) / abs(exact))
            secs[name] = best
        for name in estimators:
            rows.append([f"trace ({m} products)", name, f"{secs[name]:.2f} s",
                         f"{secs[name] / secs['la hutch++']:.2f}" if not name.startswith("la") else "", m,
                         f"{err[name]:.1e}"])
        ratios["trace error at equal products, PyHessian / la hutch++"] = err["PyHessian hutchinson"] / err["la hutch++"]
        # Equal time: as many products (in blocks) as fit in PyHessian's Hutchinson time, for each of
        # lossatlas's two sketching estimators (which one wins depends on the spectrum).
        for method in ("hutch++", "xtrace"):
            per_product = secs[f"la {method}"] / m
            budget = max(3, int(secs["PyHessian hutchinson"] / per_product))
            vals, best = [], float("inf")
            for s in seeds:
                t0 = time.perf_counter()
                vals.append(hessian_trace(f, samples=budget, seed=s, method=method))
                best = min(best, time.perf_counter() - t0)
            e_eq = float(np.sqrt(np.mean((np.asarray(vals) - exact) ** 2)) / abs(exact))
            rows.append(["trace (equal time)", f"la {method}", f"{best:.2f} s",
                         f"{secs['PyHessian hutchinson'] / best:.2f}", budget, f"{e_eq:.1e}"])
            ratios[f"trace error at equal time, PyHessian / la {method}"] = err["PyHessian hutchinson"] / e_eq
        print(f"reference trace {exact:.6g} +- {reference.stderr:.2g} (XTrace, {args.reference_products} products)")

    print(f"{what}: {P} parameters, {f.splits[0].n} samples in {len(batches)} batches, device {device}, "
          f"{torch.get_num_threads()} threads, tol {args.tol}, best of {args.repeats}; load average "
          f"{load_average()} (a shared machine: ratios side by side, absolute times inflated)")
    print(table(rows, header))
    print("ratios (above 1: lossatlas is faster or more accurate):")
    for k, r in ratios.items():
        print(f"  {k}: {r:.2f}x")


if __name__ == "__main__":
    main()

"""Benchmark of lossatlas.embedding against the plain packages (phate, scikit-learn, umap-learn).

Two parts, each timed against a reference measured in the same run:

1. A jump-and-retrain sized set (640 points: 16 trajectories of 40 epochs from 16 jump points, 50k
   parameters, in memory): every method, lossatlas versus the plain package on the same array, with
   DeMAP and trajectory continuity of each embedding.
2. PHATE on 1,000 x 1,000,000 float32 weights (3.7 GiB) written to a zarr store first (chunks of 40
   points along "point"): lossatlas streaming from the store, lossatlas on the array in memory, and
   the plain ``phate.PHATE(knn_dist="cosine", mds_dist="cosine")`` on the array in memory. Each
   variant runs in its own subprocess, which reports its wall time and peak resident memory (VmHWM).

Run: ``python bench/embed.py`` (several minutes) or ``python bench/embed.py --small`` (1,000 x 100,000).
Timed assertions do not belong in tests; this only prints.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

GiB = 2**30


def synthetic_jump_retrain(n_jumps=16, epochs=40, n_params=50_000, rate=0.9, noise=0.02, seed=0,
                           dtype=np.float32):
    """Trajectories that jump away from a minimum and retrain back to it, like J&R sampling.

    Jump j lands at theta + s_j * v_j (v_j Gaussian with the norm of theta, s_j cycling through
    0.25..1); each epoch moves a fraction (1 - rate) back towards theta plus Gaussian noise.
    Returns weights [n_jumps * epochs, n_params], jump id and epoch per point.
    """
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n_params)
    steps = (0.25, 0.5, 0.75, 1.0)
    X = np.empty((n_jumps * epochs, n_params), dtype=dtype)
    for j in range(n_jumps):
        X[j * epochs:(j + 1) * epochs] = _trajectory(theta, steps[j % 4], rng, epochs, rate, noise)
    jump = np.repeat(np.arange(n_jumps), epochs)
    epoch = np.tile(np.arange(epochs), n_jumps)
    return X, jump, epoch


def _trajectory(theta, step, rng, epochs, rate, noise):
    v = rng.standard_normal(theta.shape[0])
    v *= np.linalg.norm(theta) / np.linalg.norm(v)
    out = np.empty((epochs, theta.shape[0]))
    x = theta + step * v
    for t in range(epochs):
        out[t] = x
        x = theta + (x - theta) * rate + noise * rng.standard_normal(theta.shape[0])
    return out


def write_store(path, n_points, n_params, chunk=40, seed=0):
    """Write J&R-like trajectories (one trajectory per chunk of 40 points) to a zarr store."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n_params)
    steps = (0.25, 0.5, 0.75, 1.0)
    for j, a in enumerate(range(0, n_points, chunk)):
        b = min(n_points, a + chunk)
        W = _trajectory(theta, steps[j % 4], rng, b - a, 0.9, 0.02).astype(np.float32)
        ds = xr.Dataset(
            {"weights": (("point", "param"), W)},
            coords={"point": np.arange(a, b), "run": ("point", np.full(b - a, j)),
                    "epoch": ("point", np.arange(b - a))},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if a == 0:
                ds.to_zarr(path, mode="w", encoding={"weights": {"chunks": (chunk, n_params)}})
            else:
                ds.to_zarr(path, append_dim="point")
        del W, ds


def peak_gib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GiB
    return float("nan")


def worker(variant, store):
    """Run one variant of the large PHATE benchmark; print one JSON line."""
    import xarray as xr

    warnings.simplefilter("ignore")
    import phate  # noqa: F401  (imports are not part of the timing)

    import lossatlas.embedding as E

    base = peak_gib()
    load = 0.0
    t0 = time.perf_counter()
    if variant == "lossatlas-stream":
        emb = E.PHATE(seed=0).fit(store).embedding_
    elif variant == "lossatlas-stream-1GiB":
        emb = E.PHATE(seed=0, max_memory=GiB).fit(store).embedding_
    else:
        ds = xr.open_zarr(store)
        X = ds["weights"].values
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        if variant == "lossatlas-memory":
            emb = E.PHATE(seed=0).fit(X).embedding_
        elif variant == "phate":
            emb = phate.PHATE(knn_dist="cosine", mds_dist="cosine", random_state=0, verbose=0,
                              n_jobs=1).fit_transform(X)
        else:
            raise SystemExit(f"unknown variant {variant}")
    seconds = time.perf_counter() - t0
    np.save(os.path.join(os.path.dirname(store), f"emb-{variant}.npy"), emb)
    print(json.dumps({"variant": variant, "seconds": seconds, "load": load, "peak": peak_gib(),
                      "base": base}))


def run_worker(variant, store):
    proc = subprocess.run([sys.executable, __file__, "--worker", variant, "--store", store],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit(f"worker {variant} failed")
    return json.loads(lines[-1])


def matmul_gflops():
    A = np.random.default_rng(0).standard_normal((1000, 8192))
    B = np.random.default_rng(1).standard_normal((250, 8192))
    A @ B.T
    t = time.perf_counter()
    for _ in range(5):
        A @ B.T
    return 5 * 2 * 1000 * 250 * 8192 / (time.perf_counter() - t) / 1e9


def part_small_set():
    warnings.simplefilter("ignore")
    import phate
    import umap
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.manifold import TSNE as SkTSNE

    import lossatlas.embedding as E

    X, jump, epoch = synthetic_jump_retrain()
    print(f"\n## J&R-sized set: {X.shape[0]} points x {X.shape[1]} params (float32, in memory)")
    # numba compiles umap's code on first use: warm up both paths so compilation is not timed
    warm = np.random.default_rng(0).random((40, 6)) + 0.1
    umap.UMAP(n_neighbors=5, metric="cosine", random_state=0).fit_transform(warm)
    E.UMAP(n_neighbors=5, seed=0).fit(warm)
    t = time.perf_counter()
    gram = E.Gram.from_samples(X)
    t_gram = time.perf_counter() - t
    print(f"Gram matrix (shared by every lossatlas method below): {t_gram:.2f} s")
    ours = {
        "phate": lambda: E.PHATE(seed=0).fit(gram).embedding_,
        "tsne": lambda: E.TSNE(seed=0).fit(gram).embedding_,
        "umap": lambda: E.UMAP(seed=0).fit(gram).embedding_,
        "pca": lambda: E.PCA().fit(gram).embedding_,
        "random": lambda: E.RandomProjection(seed=0).fit(X).embedding_,
    }
    plain = {
        "phate": lambda: phate.PHATE(knn_dist="cosine", mds_dist="cosine", random_state=0,
                                     verbose=0).fit_transform(X),
        "tsne": lambda: SkTSNE(metric="cosine", random_state=0).fit_transform(X),
        "umap": lambda: umap.UMAP(metric="cosine", random_state=0).fit_transform(X),
        "pca": lambda: SkPCA(2).fit_transform(X),
        "random": None,
    }
    print(f"{'method':8} {'lossatlas s':>11} {'(+gram)':>8} {'plain s':>8} {'ratio':>6} "
          f"{'DeMAP':>6} {'contin.':>7} {'plain DeMAP':>11} {'plain contin.':>13}")
    for name in ours:
        t = time.perf_counter()
        emb = ours[name]()
        t_ours = time.perf_counter() - t
        with_gram = t_ours + (t_gram if name != "random" else 0.0)
        dm = E.demap(gram, emb, metric="cosine")
        tc = E.trajectory_continuity(emb, jump, epoch, reference=gram, metric="cosine")
        if plain[name] is not None:
            t = time.perf_counter()
            ref = plain[name]()
            t_plain = time.perf_counter() - t
            rdm = E.demap(gram, ref, metric="cosine")
            rtc = E.trajectory_continuity(ref, jump, epoch, reference=gram, metric="cosine")
            print(f"{name:8} {t_ours:11.2f} {with_gram:8.2f} {t_plain:8.2f} {t_plain / with_gram:5.1f}x "
                  f"{dm:6.3f} {tc:7.3f} {rdm:11.3f} {rtc:13.3f}")
        else:
            print(f"{name:8} {t_ours:11.2f} {with_gram:8.2f} {'-':>8} {'-':>6} {dm:6.3f} {tc:7.3f}")
    print("(ratio = plain / (lossatlas + Gram); DeMAP and continuity against raw-weight cosine geodesics, k=5; "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)


def warm_memory(gib):
    """Touch ``gib`` GiB once in a throwaway process before timing anything.

    The reference machine is a VM whose memory is backed on first touch: a fresh GiB cost 3.7-4.4 s
    there, a GiB touched before 0.15 s. Without this, whichever variant first reaches memory never
    used since boot pays for it.
    """
    # every block stays alive, so gib distinct GiB get touched
    code = f"import numpy as np\nblocks = [np.ones(2**27) for _ in range({int(gib)})]\n"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t


def part_large(n_points, n_params, keep):
    weights_gib = n_points * n_params * 4 / GiB
    print(f"\n## PHATE on {n_points} x {n_params} float32 weights ({weights_gib:.2f} GiB) from zarr")
    tmp = tempfile.mkdtemp(prefix="lossatlas-bench-embed-")
    store = os.path.join(tmp, "weights.zarr")
    try:
        t = time.perf_counter()
        write_store(store, n_points, n_params)
        print(f"wrote the store in {time.perf_counter() - t:.1f} s ({store})")
        need = int(3 * weights_gib) + 2
        print(f"touched {need} GiB of memory once, before timing, in {warm_memory(need):.1f} s "
              "(the VM backs memory on first touch)", flush=True)
        variants = ("lossatlas-stream", "lossatlas-stream-1GiB", "lossatlas-memory", "phate")
        results = []
        for v in variants:
            results.append(run_worker(v, store))
            print(f"  {v}: done (load average {os.getloadavg()[0]:.1f})", flush=True)
        ref = next(r for r in results if r["variant"] == "phate")
        print(f"{'variant':21} {'load s':>7} {'fit s':>7} {'speed-up':>8} {'peak GiB':>9} "
              f"{'peak/weights':>12} {'vs phate mem':>12}")
        for r in results:
            print(f"{r['variant']:21} {r['load']:7.1f} {r['seconds']:7.1f} {ref['seconds'] / r['seconds']:7.1f}x "
                  f"{r['peak']:9.2f} {r['peak'] / weights_gib:12.2f} {r['peak'] / ref['peak']:11.2f}x")
        print("(peak = VmHWM of the variant's own process, including the interpreter and imports, "
              f"about {ref['base']:.2f} GiB; fit s of the stream variants includes reading the store; "
              "load s is xarray's .values of the store; lossatlas-stream holds at most a quarter of "
              "the available memory of weights (here all of them, read once), -1GiB at most 1 GiB)")
        from scipy.spatial import procrustes

        a = np.load(os.path.join(tmp, "emb-lossatlas-stream.npy"))
        b = np.load(os.path.join(tmp, "emb-lossatlas-memory.npy"))
        c = np.load(os.path.join(tmp, "emb-phate.npy"))
        print(f"embeddings agree: stream vs memory max |diff| = {np.abs(a - b).max():.2e}; "
              f"Procrustes disparity lossatlas vs plain phate = {procrustes(a, c)[2]:.3f} (phate takes "
              "randomized PCA scores; lossatlas exact ones)")
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="1,000 x 100,000 instead of 1,000 x 1,000,000")
    parser.add_argument("--skip-set", action="store_true", help="skip the J&R-sized comparison")
    parser.add_argument("--keep", action="store_true", help="keep the zarr store")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.store)
        return
    print(f"# lossatlas.embedding benchmark ({os.cpu_count()} CPUs; float64 matmul {matmul_gflops():.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)
    if not args.skip_set:
        part_small_set()
    part_large(1000, 100_000 if args.small else 1_000_000, args.keep)


if __name__ == "__main__":
    main()

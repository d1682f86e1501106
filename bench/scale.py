"""Benchmark: a 41x41 loss plane on a Dask LocalCluster against in-process, with the per-task
overhead and payload.

Run with ``python bench/scale.py`` (``--steps``, ``--model`` to change the plane). The model is
the built-in ``mlp`` on the scikit-learn digits (its seeded initialization: only the time
matters), rebuilt on every worker from its :class:`lossatlas.Source`. Rows are the tasks (41).

Measured, each plane after a warm-up (a 3x3 plane, so that every worker has built its Landscape
and the first-call costs are out of the timing):

- in-process with 2 intra-op threads, and with 1;
- 2 Dask workers of 1 thread each (``DaskExecutor(workers=2, threads=1)``);
- 1 Dask worker of 2 threads (the same cores as in-process: the difference is the overhead).

Per-task overhead = (1-worker time - in-process time) / tasks. Payload = pickled bytes of one
task as sent (coordinates and keys), and the bytes scattered once (centre and directions).
"""

from __future__ import annotations

import argparse
import json
import time


def timed_plane(f, steps, executor=None):
    from lossatlas.surface import plane

    t0 = time.perf_counter()
    ds = plane(f, steps=steps, executor=executor)
    return time.perf_counter() - t0, ds


def in_process(src, steps, threads):
    import torch

    from lossatlas.execute import build_landscape

    torch.set_num_threads(threads)
    model, data, device = src.build()
    f = build_landscape(model, data, device, {"strategy": "loop", "workers": 1})
    timed_plane(f, 3)
    seconds, ds = timed_plane(f, steps)
    return seconds, ds


def on_dask(src, steps, workers, threads):
    from lossatlas.execute import DaskExecutor

    t0 = time.perf_counter()
    with DaskExecutor(workers=workers, threads=threads) as ex:
        up = time.perf_counter() - t0
        f = ex.landscape(src, strategy="loop", workers=1)
        warm, _ = timed_plane(f, 3, ex)  # every worker builds its Landscape here
        before = ex.stats["tasks"]
        seconds, ds = timed_plane(f, steps, ex)
        stats = ex.stats
    return {"startup_s": up, "warmup_s": warm, "seconds": seconds, "tasks": stats["tasks"] - before,
            "payload_bytes": stats["payload_bytes_max"], "scattered_bytes": stats["scattered_bytes"]}, ds


def main() -> None:
    import numpy as np

    from lossatlas.sources import Source

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=41)
    p.add_argument("--model", default="mlp")
    args = p.parse_args()
    src = Source(model=args.model, data="digits", device="cpu")
    out = {"steps": args.steps, "model": args.model}
    out["in_process_2_threads_s"], ref = in_process(src, args.steps, 2)
    out["in_process_1_thread_s"], _ = in_process(src, args.steps, 1)
    two, ds2 = on_dask(src, args.steps, 2, 1)
    one, ds1 = on_dask(src, args.steps, 1, 2)
    out["dask_2_workers"], out["dask_1_worker"] = two, one
    for ds in (ds1, ds2):
        assert np.allclose(ds.loss.values, ref.loss.values, rtol=1e-5), "the cluster's plane differs"
    tasks = one["tasks"]
    out["overhead_per_task_ms"] = 1000 * (one["seconds"] - out["in_process_2_threads_s"]) / tasks
    out["speedup_2_workers_vs_in_process"] = out["in_process_2_threads_s"] / two["seconds"]
    print(f"{args.steps}x{args.steps} plane of {args.model} on digits, {tasks} tasks (rows)")
    print(f"  in-process, 2 threads      {out['in_process_2_threads_s']:7.2f} s")
    print(f"  in-process, 1 thread       {out['in_process_1_thread_s']:7.2f} s")
    print(f"  Dask, 2 workers x 1 thread {two['seconds']:7.2f} s  (cluster start {two['startup_s']:.1f} s, "
          f"warm-up {two['warmup_s']:.1f} s)")
    print(f"  Dask, 1 worker x 2 threads {one['seconds']:7.2f} s  (cluster start {one['startup_s']:.1f} s, "
          f"warm-up {one['warmup_s']:.1f} s)")
    print(f"  overhead per task {out['overhead_per_task_ms']:.1f} ms; payload {one['payload_bytes']} bytes per task, "
          f"{one['scattered_bytes']} bytes scattered once")
    print("BENCH-RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()

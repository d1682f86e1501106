"""Benchmark: scale-out where it pays: a plane whose points cost tens of milliseconds, in-process
against a Dask LocalCluster of 1 and of 2 workers.

    flock /tmp/bench.lock python bench/scale.py [--steps 12] [--repeats 4] [--model smallcnn]
                                                [--model-args '{"channels": [96, 192], "hidden": 64}']

The model is a built-in one on all 1,797 scikit-learn digits (its seeded initialization: only the
time matters), rebuilt on every worker from its :class:`lossatlas.Source`. The default, the small
CNN at 96-192 channels, costs over 50 ms a point in-process (the issue's threshold: users go to a
cluster for points that cost that or more; 64-128 channels cost 26-38 ms). One row of the grid is
one task.

Measured in three phases, one cluster each; in each phase the cluster's planes alternate with
in-process planes at the same thread count, so that every pair is measured in the same minute
(timings here drift 10-30 % from minute to minute: a cluster timed minutes after its reference
can differ by that much for no reason of its own). Each cluster first runs a 2x2 plane (every
worker builds its Landscape) and one full plane (the first is slower, in-process too), untimed;
then best of ``--repeats``, with the range printed:

- Dask, 1 worker of 1 thread against in-process at 1 thread (the same core: the difference is
  the overhead; target at most 5 %);
- Dask, 1 worker of 2 threads against in-process at 2 threads (the same, on both cores: the
  ``workers=1`` loop engine, one stream, as each Dask task runs);
- Dask, 2 workers of 1 thread against in-process at 1 thread (the scale-out, target at least
  1.7x on 2 idle cores); also against the 1-worker phase and against 2 intra-op threads, which
  it can beat only by what intra-op threads lose (about 2 / 1.7 = 1.2x on this model).

Per-task overhead = (1-worker time - in-process time) / tasks, at 1 thread. Payload = pickled bytes of one
task as sent, and the bytes scattered once. The load average is printed before and after (the
one after includes this benchmark's own work): on a
loaded machine the ratios mean little, and the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, table  # noqa: E402


def timed_plane(f, steps, executor=None):
    from lossatlas.surface import plane

    t0 = time.perf_counter()
    ds = plane(f, steps=steps, executor=executor)
    return time.perf_counter() - t0, ds


def compute_seconds(stream) -> float:
    """Seconds the workers spent computing tasks, from Dask's task stream."""
    return sum(part["stop"] - part["start"] for t in stream for part in t["startstops"] if part["action"] == "compute")


def local_landscape(src):
    from lossatlas.execute import build_landscape

    model, data, device = src.build()
    return build_landscape(model, data, device, {"strategy": "loop", "workers": 1, "compile": False})


def in_process_plane(f, steps, threads):
    import torch

    torch.set_num_threads(threads)
    return timed_plane(f, steps)


def phase(src, local, steps, workers, threads, local_threads, repeats):
    """One cluster, its planes interleaved with in-process planes at ``local_threads``.

    Timings on this machine drift 10-30 % from minute to minute: a cluster measured a few
    minutes after its in-process reference can differ by that much for no reason of its own.
    Alternating the two within the phase puts each pair in the same minute.
    """
    from distributed import get_task_stream

    from lossatlas.execute import DaskExecutor

    t0 = time.perf_counter()
    with DaskExecutor(workers=workers, threads=threads) as ex:
        up = time.perf_counter() - t0
        f = ex.landscape(src, strategy="loop", workers=1, compile=False)
        warm, _ = timed_plane(f, 2, ex)  # every worker builds its Landscape here
        timed_plane(f, steps, ex)  # and runs one full plane: its first is slower, as in-process
        in_process_plane(local, steps, local_threads)
        before, sent = ex.stats["tasks"], ex.stats["scattered_bytes"]
        runs, locals_, busy, ds = [], [], [], None
        for _ in range(repeats):
            with get_task_stream(ex.client) as stream:
                s, ds = timed_plane(f, steps, ex)
            runs.append(s)
            busy.append(compute_seconds(stream.data) / workers)
            locals_.append(in_process_plane(local, steps, local_threads)[0])
        stats = ex.stats
    return {"workers": workers, "threads": threads, "startup_s": up, "warmup_s": warm, "seconds": min(runs),
            "all_s": runs, "in_process_threads": local_threads, "in_process_s": min(locals_),
            "in_process_all_s": locals_, "tasks": (stats["tasks"] - before) // repeats,
            "payload_bytes": stats["payload_bytes_max"],
            "scattered_bytes": (stats["scattered_bytes"] - sent) // repeats,
            # The workers' own account: the share of each timed plane's wall time that no
            # worker spent computing (scheduling, transfers, the driver's work). Unlike the ratio
            # to the in-process plane, it does not move with the machine's speed.
            "idle_share": [1 - b / r for b, r in zip(busy, runs)]}, ds


def main() -> None:
    import numpy as np

    from lossatlas.sources import Source

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--model-args", default='{"channels": [96, 192], "hidden": 64}')
    args = p.parse_args()
    margs = json.loads(args.model_args)
    src = Source(model=args.model, model_args=margs, data="digits", device="cpu")
    out = {"steps": args.steps, "model": args.model, "model_args": margs, "repeats": args.repeats,
           "load_before": load_average(), "cpus": os.cpu_count()}
    local = local_landscape(src)
    in_process_plane(local, 2, 2)
    _, ref = in_process_plane(local, args.steps, 2)
    single, ds0 = phase(src, local, args.steps, 1, 1, 1, args.repeats)
    one, ds1 = phase(src, local, args.steps, 1, 2, 2, args.repeats)
    two, ds2 = phase(src, local, args.steps, 2, 1, 1, args.repeats)
    out["dask_1_worker_1_thread"], out["dask_1_worker"], out["dask_2_workers"] = single, one, two
    out["load_after"] = load_average()
    for ds in (ds0, ds1, ds2):
        assert np.allclose(ds.loss.values, ref.loss.values, rtol=1e-5), "the cluster's plane differs"
    points, tasks = args.steps**2, one["tasks"]
    base, base1 = one["in_process_s"], single["in_process_s"]
    out["in_process_2_threads_s"], out["in_process_1_thread_s"] = base, base1
    out["ms_per_point_in_process"] = 1000 * base / points
    out["overhead_1_worker_1_thread"] = single["seconds"] / base1 - 1
    out["overhead_1_worker"] = one["seconds"] / base - 1
    out["overhead_per_task_ms"] = 1000 * (single["seconds"] - base1) / tasks
    out["speedup_2_workers_vs_1_thread"] = two["in_process_s"] / two["seconds"]
    out["speedup_2_workers_vs_1"] = single["seconds"] / two["seconds"]
    out["speedup_2_workers"] = base / two["seconds"]

    def idle(phase):
        return f"{100 * min(phase['idle_share']):.1f}-{100 * max(phase['idle_share']):.1f}%"

    def spread(xs):
        return f"{min(xs):.2f}-{max(xs):.2f}"

    print(f"{args.steps}x{args.steps} plane of {args.model} {margs} on digits: {out['ms_per_point_in_process']:.0f} ms "
          f"a point in-process, {tasks} tasks (rows); best of {args.repeats}, each cluster's planes alternating "
          f"with in-process ones; load average {out['load_before']:.1f} before, {out['load_after']:.1f} after, on "
          f"{out['cpus']} CPUs")
    rows = [["Dask, 1 worker x 1 thread", f"{single['seconds']:.2f}", spread(single["all_s"]),
             f"{base1:.2f} ({spread(single['in_process_all_s'])}), 1 thread",
             f"{100 * out['overhead_1_worker_1_thread']:+.1f}% ({out['overhead_per_task_ms']:.0f} ms/task)",
             idle(single)],
            ["Dask, 1 worker x 2 threads", f"{one['seconds']:.2f}", spread(one["all_s"]),
             f"{base:.2f} ({spread(one['in_process_all_s'])}), 2 threads", f"{100 * out['overhead_1_worker']:+.1f}%",
             idle(one)],
            ["Dask, 2 workers x 1 thread", f"{two['seconds']:.2f}", spread(two["all_s"]),
             f"{two['in_process_s']:.2f} ({spread(two['in_process_all_s'])}), 1 thread",
             f"{out['speedup_2_workers_vs_1_thread']:.2f}x one core; {out['speedup_2_workers_vs_1']:.2f}x 1 worker x "
             f"1 thread, {out['speedup_2_workers']:.2f}x 2 threads (earlier phases)", idle(two)]]
    print(table(rows, ["cluster", "best s", "range s", "in-process alongside: best (range)", "vs in-process",
                       "not computing"]))
    print(f"cluster start {two['startup_s']:.1f} s, warm-up {two['warmup_s']:.1f} s (2 workers)")
    print(f"payload {one['payload_bytes']} bytes per task; {one['scattered_bytes']} bytes scattered per plane (centre "
          "and directions)")
    # The load after includes this benchmark's own two busy cores: only the load before it says
    # whether other work shared the machine.
    if (out["load_before"] or 0) > 1.0:
        print("NOTE: the machine was loaded by other work; the ratios are not those of idle cores")
    print("BENCH-RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()

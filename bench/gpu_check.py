"""The whole GPU check in one command, for a short lease on one GPU (issue 25).

    python bench/gpu_check.py --out results/gpu_check.json

1. the tests marked ``gpu`` (``pytest -m gpu``: each GPU computation against the CPU's);
2. ``bench/gpu.py`` at sizes that finish well within 8 minutes on one H100: a ResNet-56 plane in
   TF32 (31x31) and float32 (11x11) on 5,000 samples against Li et al.'s loop, with the share of
   the matmul peak measured in the same run; 8 jump-and-retrain runs of WRN-16-2 as a vmap
   ensemble and one after another; the top 5 Hessian eigenvalues and the trace of ResNet-20;
3. one short table last; every number in the JSON file ``--out``.

A section that fails is recorded (its error in the JSON, ``FAILED`` in the table) and the next
one runs, so a short lease still leaves every number it could measure. ``--device cpu --tiny`` is
the smoke mode (tiny sizes, meaningless numbers; the ``gpu`` tests skip without CUDA): it checks
this script on any machine. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import gpu  # noqa: E402

# Sizes for one H100 (the defaults of bench/gpu.py are for a longer run).
CHECK_SIZES = {"tf32_steps": 31, "tf32_samples": 5_000, "fp32_steps": 11, "fp32_samples": 5_000, "loop_steps": 5,
               "ref_points": 8, "train_samples": 5_000, "epochs": 1, "directions": 2, "step_sizes": 4,
               "hessian_samples": 2_000, "trace_samples": 30}


def run_gpu_tests(device: str, timeout: float) -> dict:
    """``pytest -m gpu`` in a fresh process; its counts from the JUnit XML report."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(C.ROOT / "src"), os.environ.get("PYTHONPATH")])))
    if device.startswith("cuda"):
        env["LOSSATLAS_GPU_TEST_DEVICE"] = device
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "gpu.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               f"--junitxml={xml}", "tests/test_gpu.py"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=str(C.ROOT), env=env, capture_output=True, text=True, timeout=timeout)
        out = {"returncode": proc.returncode, "seconds": time.perf_counter() - t,
               "tail": (proc.stdout + proc.stderr)[-3000:]}
        if xml.exists():
            suite = ET.parse(xml).getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
            out.update(counts)
            out["failed_tests"] = [c.get("name") for c in suite.iter("testcase")
                                   if c.find("failure") is not None or c.find("error") is not None]
    print(f"gpu tests: {out.get('passed', '?')} passed, {out.get('failures', 0) + out.get('errors', 0)} failed, "
          f"{out.get('skipped', 0)} skipped ({out['seconds']:.0f} s)", flush=True)
    return out


def summary(results: dict) -> list[list]:
    """The short table: one row per measured number that matters."""
    rows = []
    t = results.get("tests")
    if t is not None:
        rows.append(["gpu tests", f"{t.get('passed', '?')} passed / {t.get('tests', '?')}",
                     f"{t.get('failures', 0) + t.get('errors', 0)} failed, {t.get('skipped', 0)} skipped"])
    bench = results.get("bench", {})
    for section in ("tests", "plane", "jr", "hessian"):
        if section in results.get("failed_sections", {}):
            rows.append([section, "FAILED", results["failed_sections"][section].splitlines()[-1][:60]])
    plane = bench.get("plane")
    if plane:
        by = {(r["precision"], r["method"]): r for r in plane["rows"]}
        for precision in ("TF32", "fp32"):
            ours, li = by.get((precision, "lossatlas")), by.get((precision, "Li et al. (extrapolated)"))
            if ours and li:
                rows.append([f"{plane['model']} plane {precision} {ours['grid']}", f"{ours['grid seconds']:.1f} s",
                             f"{li['grid seconds'] / ours['grid seconds']:.1f}x Li et al.; "
                             f"{100 * ours['gflops'] / ours['peak']:.0f}% of matmul peak (Li "
                             f"{100 * li['gflops'] / li['peak']:.0f}%)"])
    jr = bench.get("jr")
    if jr:
        rows.append([f"J&R {jr['vmap']['model']} x{jr['vmap']['runs']}", f"{jr['vmap']['seconds']:.1f} s ensemble",
                     f"{jr['sequential']['seconds'] / jr['vmap']['seconds']:.2f}x sequential "
                     f"({jr['sequential']['seconds']:.1f} s)"])
    h = bench.get("hessian")
    if h:
        rows.append([f"{h['model']} Hessian top-5", f"{h['top5_seconds']:.1f} s", f"lambda_1 {h['top5'][0]:.4g}"])
        rows.append([f"{h['model']} trace ({h['trace_samples']} vectors)", f"{h['trace_seconds']:.1f} s",
                     f"{h['trace']:.4g} +- {h['trace_stderr']:.2g}"])
    rows.append(["total", f"{results['seconds']:.0f} s", results.get("device", "")])
    return rows


def main(argv=None, sizes: dict | None = None) -> int:
    """Run the check; ``sizes`` overrides bench/gpu.py's arguments (the test's smallest sizes).
    Returns the exit status: 1 when a section or a gpu test failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N; cpu only with --tiny")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: tiny sizes on any device")
    ap.add_argument("--out", default="results/gpu_check.json", help="the JSON file of every number")
    ap.add_argument("--skip", default="", help="comma-separated: tests, plane, jr, hessian")
    ap.add_argument("--test-timeout", type=float, default=300, help="seconds the gpu tests may take")
    args = ap.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        ap.error("on a CPU only --tiny makes sense (the sizes are for a GPU)")
    start = time.perf_counter()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    results: dict = {"command": " ".join(["bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]), "load_average": C.load_average(), "failed_sections": {}}
    if "tests" not in skip:
        try:
            results["tests"] = run_gpu_tests(args.device, args.test_timeout)
        except subprocess.TimeoutExpired:
            results["failed_sections"]["tests"] = f"the gpu tests took more than {args.test_timeout:.0f} s"
    bench_args = gpu.parser().parse_args(["--device", args.device])
    if args.tiny:
        gpu.tiny(bench_args)
    else:
        for k, v in CHECK_SIZES.items():
            setattr(bench_args, k, v)
    for k, v in (sizes or {}).items():
        setattr(bench_args, k, v)
    results["bench"] = {}
    for section in ("plane", "jr", "hessian"):  # one at a time: a failure loses only its own numbers
        if section in skip:
            continue
        bench_args.skip = ",".join(s for s in ("plane", "jr", "hessian") if s != section)
        try:
            got = gpu.run(bench_args)
        except Exception:  # noqa: BLE001 - recorded, and the next section runs
            results["failed_sections"][section] = traceback.format_exc()
            print(f"{section}: FAILED\n{traceback.format_exc()}", flush=True)
            continue
        if section in got:
            results["bench"][section] = got[section]
        for k in ("device", "torch", "matmul_peak_gflops"):
            results.setdefault(k, got.get(k))
    results["seconds"] = time.perf_counter() - start
    gpu.write_json(results, args.out)
    print(f"\nGPU check ({'TINY smoke sizes, numbers meaningless' if args.tiny else 'check sizes'}); "
          f"every number in {args.out}")
    print(C.table(summary(results), ["what", "time", "result"]))
    failed = results["failed_sections"] or (results.get("tests", {}).get("failures", 0)
                                            + results.get("tests", {}).get("errors", 0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""bench/gpu_check.py's smoke mode, at the smallest sizes (issue 25): every section runs on the
CPU, the JSON holds every number, the short table comes last. Nothing here is timed."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_check_smoke_mode_writes_every_number_and_the_table_last(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_check

    smallest = {"plane_model": "resnet8", "jr_model": "wrn-10-1", "hessian_model": "resnet8", "hessian_samples": 4,
                "hessian_maxiter": 10, "trace_samples": 1, "train_samples": 8, "train_batch": 4}
    out = tmp_path / "check.json"
    status = gpu_check.main(["--device", "cpu", "--tiny", "--skip", "tests", "--out", str(out)], sizes=smallest)
    assert status == 0
    got = json.loads(out.read_text())
    assert got["failed_sections"] == {}
    rows = {r["precision"] + " " + r["method"]: r for r in got["bench"]["plane"]["rows"]}
    assert set(rows) == {f"{p} {m}" for p in ("TF32", "fp32")
                         for m in ("lossatlas", "lossatlas strategy=loop", "Li et al. (extrapolated)")}
    for r in rows.values():
        assert r["seconds"] > 0 and r["gflops"] > 0 and r["peak"] > 0
    # the plane agrees with Li et al.'s loop at the points both evaluated
    assert rows["fp32 Li et al. (extrapolated)"]["diff"] < 1e-4
    assert got["bench"]["jr"]["vmap"]["runs"] == got["bench"]["jr"]["sequential"]["runs"] == 2
    assert got["bench"]["jr"]["max_weight_diff"] < 1e-4  # the ensemble trains what the sequence trains
    h = got["bench"]["hessian"]
    assert len(h["top5"]) == 5 and h["top5"][0] >= h["top5"][-1] and h["trace_seconds"] > 0
    text = capsys.readouterr().out
    last = text[text.rindex("GPU check"):]
    assert "resnet8 plane TF32 2x2" in last and "x Li et al." in last and "Hessian top-5" in last
    assert "total" in last.splitlines()[-1]
    sys.modules.pop("gpu_check", None)
    sys.modules.pop("gpu", None)


def test_failed_section_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu
    import gpu_check

    def broken(args, device):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(gpu, "jr_section", broken)
    out = tmp_path / "check.json"
    status = gpu_check.main(["--device", "cpu", "--tiny", "--skip", "tests,plane", "--out", str(out)],
                            sizes={"hessian_model": "resnet8", "hessian_samples": 4, "hessian_maxiter": 10,
                                   "trace_samples": 1})
    got = json.loads(out.read_text())
    assert status == 1 and "out of memory" in got["failed_sections"]["jr"]
    assert len(got["bench"]["hessian"]["top5"]) == 5  # measured after the failure
    rows = gpu_check.summary(got)
    assert ["jr", "FAILED"] == rows[0][:2]
    sys.modules.pop("gpu_check", None)
    sys.modules.pop("gpu", None)

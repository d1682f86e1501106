"""The driver SIGKILLed mid-run: `lossatlas surface --dask 2` killed while its plane is half
done, then the same command rerun computes only the missing cells and ends with the values of an
uninterrupted run."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

pytest.importorskip("distributed")

from lossatlas.cli import app  # noqa: E402
from lossatlas.store import RunDir  # noqa: E402
from test_execute import write_slowpkg  # noqa: E402

STEPS = 9
ARGS = ["surface", "--model", "slowpkg:make", "--data", "digits", "--subset", "200", "--steps", str(STEPS),
        "--train-epochs", "0", "--strategy", "loop", "--device", "cpu"]


def test_driver_killed_mid_run_resumes_only_the_missing_cells(tmp_path, monkeypatch):
    home = write_slowpkg(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lossatlas.cli", *ARGS, "--model-arg", "delay=0.02", "--dask", "2", "--out", str(run)]
    # Its own session, so that the driver and the cluster it started are killed together.
    proc = subprocess.Popen(cmd, cwd=home, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rows = STEPS * STEPS
    done = 0
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                done = int(RunDir(run).done_mask("surface").sum())
            except Exception:  # not laid out yet, or a chunk being written
                continue
            if done >= 2 * STEPS:
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0].decode()
    assert STEPS * 2 <= done < rows, (done, out[-2000:])
    stored = int(RunDir(run).done_mask("surface").sum())  # what the killed run left

    # The same command again (in this process, to count the evaluations).
    monkeypatch.chdir(home)
    monkeypatch.syspath_prepend(str(home))
    import lossatlas.surface as surface

    evaluated = []
    real = surface.evaluate_cells

    def counting(f, center, dirs, coords):
        evaluated.append(len(coords))
        return real(f, center, dirs, coords)

    monkeypatch.setattr(surface, "evaluate_cells", counting)
    again = [*ARGS, "--model-arg", "delay=0.02", "--out", str(run)]
    r = CliRunner().invoke(app, again)
    assert r.exit_code == 0, r.output
    assert f"resumed: {stored} of {rows} cells done" in " ".join(r.output.split())
    assert sum(evaluated) == rows - stored

    # An uninterrupted run gives the same values.
    # (no delay: the same weights, as the factory's seed makes them)
    r = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "whole")])
    assert r.exit_code == 0, r.output
    a = xr.open_zarr(run / "surface.zarr").load()
    b = xr.open_zarr(tmp_path / "whole" / "surface.zarr").load()
    assert a.done.values.all()
    np.testing.assert_allclose(a.loss.values, b.loss.values, rtol=1e-6)
    np.testing.assert_array_equal(a.accuracy.values, b.accuracy.values)

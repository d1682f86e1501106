"""Correctness of Landscape's speed options: compiled loop, allocator tuning, default batches.

Speed itself is measured in bench/surface.py, never asserted here.
"""

import pickle
import subprocess
import sys

import pytest
import torch

import lossatlas.landscape.compiled as L
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape, tune_allocator
from lossatlas.space import random_directions

from helpers import blobs, cnn, mlp


def _points(f, model, n=5):
    d = random_directions(model, n=2, seed=3)
    coords = [(0.0, 0.0), (0.4, -0.3), (-1.0, 0.5), (0.2, 0.9), (1.0, 1.0)][:n]
    return torch.stack([f.origin + a * d[0] + b * d[1] for a, b in coords])


def test_compiled_loop_matches_eager_and_does_not_recompile_per_point(monkeypatch):
    from torch._dynamo.utils import counters

    X, y = blobs(n=40, d_in=64, image=True)
    model = cnn(bn=True)
    kw = dict(batch_size=16)  # 40 = 16 + 16 + 8: full batches and a shorter last one
    eager = Landscape(model, (X, y), compile=False, **kw)
    compiled = Landscape(model, (X, y), compile=True, **kw)
    pts = _points(eager, model)
    a = eager.evaluate(pts)
    b = compiled.evaluate(pts[:2])
    graphs = counters["stats"]["unique_graphs"]
    b = {k: torch.cat([b[k], v]) for k, v in compiled.evaluate(pts[2:]).items()}
    assert counters["stats"]["unique_graphs"] == graphs  # new parameter values: no new graphs
    assert a.keys() == b.keys() == {"loss", "accuracy"}
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k

    # compile="auto" starts eager and switches once enough time went into eager evaluation.
    monkeypatch.setattr(L, "COMPILE_AFTER_SECONDS", 0.0)
    auto = Landscape(model, (X, y), workers=1, **kw)
    assert auto._compile_mode == "auto" and not auto._compile
    c = auto.evaluate(pts)
    assert auto._compile
    for k in a:
        assert torch.allclose(a[k], c[k], rtol=1e-5, atol=1e-6), k
    # A pickled copy drops the compiled graphs and still agrees.
    d = pickle.loads(pickle.dumps(auto)).evaluate(pts)
    for k in a:
        assert torch.allclose(a[k], d[k], rtol=1e-5, atol=1e-6), k


def test_compile_auto_applies_to_single_worker_conv_models_on_cpu_loop_only():
    X, y = blobs(n=30, d_in=64, image=True)
    assert Landscape(cnn(), (X, y), workers=1)._compile_mode == "auto"
    # Several eager workers were measured as fast as one compiled worker: no compiling then.
    torch.set_num_threads(2)
    default = Landscape(cnn(), (X, y))
    assert default.workers == 2 and default._compile_mode is False
    assert Landscape(cnn(), (X, y), strategy="vmap")._compile_mode is False
    Xf, yf = blobs(n=30)
    assert Landscape(mlp(), (Xf, yf))._compile_mode is False
    assert Landscape(mlp(), (Xf, yf), compile=True)._compile_mode is True
    with pytest.raises(InputError, match="compile must be"):
        Landscape(mlp(), (Xf, yf), compile="always")


def test_default_batch_sizes():
    X, y = blobs(n=300, d_in=64, image=True)
    assert Landscape(cnn(), (X, y)).batch_size == 256
    assert Landscape(cnn(), (X, y), batch_size=100).batch_size == 100
    Xf, yf = blobs(n=300)
    assert Landscape(mlp(), (Xf, yf)).batch_size is None  # all data in one batch


def test_tune_allocator_is_idempotent_and_optional():
    first = tune_allocator()
    assert isinstance(first, bool)
    assert tune_allocator() is first
    X, y = blobs(n=30)
    f = Landscape(mlp(), (X, y), tune_allocator=False)
    g = Landscape(mlp(), (X, y))
    assert torch.equal(f.evaluate(f.origin)["loss"], g.evaluate(g.origin)["loss"])


def test_tune_allocator_opt_out_by_environment():
    # A fresh process: the setting is process-wide and one-way.
    code = """
import os
from lossatlas.landscape import tune_allocator
os.environ["LOSSATLAS_TUNE_ALLOCATOR"] = "0"
off = tune_allocator()
del os.environ["LOSSATLAS_TUNE_ALLOCATOR"]
os.environ["MALLOC_TRIM_THRESHOLD_"] = "1000000"
user = tune_allocator()
print(off, user)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_tune_allocator_raises_thresholds_that_dask_set_not_the_user():
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker; that is not the user's
    # choice and must not keep the thresholds low (old code: False, 2.4x the CPU per forward).
    code = """
import os
from lossatlas.execute.worker import dask_thresholds
from lossatlas.landscape import tune_allocator
os.environ["MALLOC_TRIM_THRESHOLD_"] = "1000"
user = tune_allocator(not_chosen=dask_thresholds())
os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
dask = tune_allocator(not_chosen=dask_thresholds())
print(user, dask, dask_thresholds())
"""
    pytest.importorskip("distributed")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = ["False", "True"] if sys.platform.startswith("linux") else ["False", "False"]
    assert out.stdout.split()[:2] == expected, out.stdout
    assert "MALLOC_TRIM_THRESHOLD_" in out.stdout

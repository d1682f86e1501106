import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

# `make test` runs the suite on two pytest-xdist workers (one per core), each with one torch
# thread; a plain `pytest` run uses both cores in one process.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _pin_threads():
    # Some libraries (numba through umap, phate) change the thread count; pin it for every test.
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(scope="module")
def png_only():
    """Figures as PNG only, for the tests of whole studies and the demo, which check products and
    numbers, not PDFs (the PDFs took about half of their figure time). Plot tests keep both."""
    from lossatlas.plot.save import FORMATS_ENV

    old = os.environ.get(FORMATS_ENV)
    os.environ[FORMATS_ENV] = "png"
    yield
    if old is None:
        os.environ.pop(FORMATS_ENV, None)
    else:
        os.environ[FORMATS_ENV] = old

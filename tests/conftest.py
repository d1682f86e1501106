import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _pin_threads():
    # Some libraries (numba through umap, phate) change the thread count; pin it for every test.
    torch.set_num_threads(2)
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

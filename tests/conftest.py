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

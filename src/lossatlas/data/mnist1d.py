"""MNIST-1D (Greydanus): generated locally by the ``mnist1d`` package and cached as ``.npz``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .._errors import missing_extra, require
from ..store import atomic_save_npz, fingerprint
from .bundled import DIGIT_CLASSES
from .container import RawData

__all__ = ["CACHE_ENV", "MNIST1D_KEYS", "default_cache_dir", "read_mnist1d"]

CACHE_ENV = "LOSSATLAS_CACHE_DIR"

MNIST1D_KEYS = (
    "num_samples", "template_len", "padding", "scale_coeff", "max_translation",
    "corr_noise_scale", "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length", "seed",
)


def default_cache_dir() -> Path:
    """``$LOSSATLAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/lossatlas``, else ``~/.cache/lossatlas``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lossatlas"


def _cache_path(cache_dir: Path, overrides: Mapping) -> tuple[Path, str]:
    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        raise missing_extra("mnist1d", "datasets") from None
    # The package's defaults are a function of its version, so (version, overrides) identifies
    # the generated data without importing the package (about 1.5 s) on a cache hit.
    key = fingerprint({"mnist1d": version, "overrides": dict(overrides)})
    return cache_dir / f"mnist1d-{key}.npz", version


class _ArgsView:
    """Attribute access to a dict, as ``mnist1d`` expects of its args."""

    def __init__(self, d: Mapping) -> None:
        self.__dict__.update(d)


def _generate(overrides: Mapping) -> tuple[np.ndarray, np.ndarray, int, dict]:
    import mnist1d.data as m1d

    args = m1d.get_dataset_args(as_dict=True)
    args.update(overrides)
    args.pop("url", None)  # only used for downloading, which lossatlas never does
    # make_dataset seeds NumPy's and Python's global generators; put them back afterwards so that
    # loading data never changes the caller's randomness.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        ds = m1d.make_dataset(_ArgsView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([np.asarray(ds["x"]), np.asarray(ds["x_test"])])
    y = np.concatenate([np.asarray(ds["y"]), np.asarray(ds["y_test"])]).astype(np.int64)
    return x, y, int(len(ds["y"])), args


def _save_cache(path: Path, x: np.ndarray, y: np.ndarray, n_train: int, args: dict) -> None:
    try:
        atomic_save_npz(path, x=x, y=y, n_train=np.int64(n_train), args=np.array(json.dumps(args, sort_keys=True)))
    except OSError as exc:
        # The data are in memory already: a cache that cannot be written costs a regeneration, not the run.
        warnings.warn(f"could not cache MNIST-1D in {path.parent} ({exc}); it will be regenerated next time")


def read_mnist1d(root: Path | None, overrides: Mapping, test_fraction: float | None) -> RawData:
    """MNIST-1D signals ``1x40`` with the package's own split (or its rule at ``test_fraction``).

    Parameters
    ----------
    root : Path, optional
        The cache directory (default :func:`default_cache_dir`).
    overrides : dict
        Overrides of the generation arguments (keys in ``MNIST1D_KEYS``).
    test_fraction : float, optional
        Held-out fraction; the samples are already shuffled, so the split takes the last ones.

    Examples
    --------
    >>> read_mnist1d(None, {"num_samples": 500}, None).x_train.shape   # doctest: +SKIP
    (400, 1, 40)
    """
    cache_dir = root if root is not None else default_cache_dir()
    path, version = _cache_path(cache_dir, overrides)
    loaded = None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                loaded = (z["x"], z["y"].astype(np.int64), int(z["n_train"]), json.loads(str(z["args"])))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            loaded = None  # a damaged cache is regenerated, never trusted
    cache_hit = loaded is not None
    if loaded is None:
        loaded = _generate(overrides)
        _save_cache(path, *loaded)
    x, y, n_train, args = loaded
    if test_fraction is not None:
        # Same rule as the package's own split (train_split = 1 - test_fraction): the generated
        # samples are already shuffled, and their generation does not depend on the split.
        n_train = int(len(y) * (1.0 - test_fraction))
    require(
        0 < n_train < len(y),
        f"mnist1d: test_fraction={test_fraction} leaves an empty train or test set of {len(y)} samples",
    )
    x = x.astype(np.float64, copy=False)[:, None, :]
    args = dict(args, train_split=n_train / len(y))  # record the split actually used
    return RawData(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], 1.0, 10, list(DIGIT_CLASSES),
        f"mnist1d {version} (generated locally)",
        extra={"mnist1d_args": args, "cache_file": str(path), "cache_hit": cache_hit,
               "mnist1d_split": "package" if test_fraction is None else "package rule, test_fraction"},
    )

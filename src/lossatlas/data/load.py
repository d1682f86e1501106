"""The entry points: :func:`load_data` for built-in data sets, :func:`load_any` for any data spec,
:func:`load_recorded` to rebuild exactly the data a run recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .._errors import InputError, require
from .augment import transform_from_spec
from .bundled import DIGIT_CLASSES, read_digits, read_mnist5k
from .cifar import read_cifar10, read_cifar100
from .container import Data, RawData
from .factory import load_factory
from .idx import FASHION_CLASSES, read_idx_dataset
from .mnist1d import MNIST1D_KEYS, read_mnist1d
from .prepare import check_options, prepare
from .split import parse_normalization
from .tensors import load_tensors

__all__ = [
    "DATASETS",
    "DEFAULT_TEST_FRACTION",
    "FASHION_MNIST_ROOT",
    "canonical_name",
    "load_any",
    "load_data",
    "load_recorded",
]

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist1d",
    "mnist5k",
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
)

# The one place that defines the defaults the API, config and CLI share.
DEFAULT_TEST_FRACTION = 0.2
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "mnist-1d": "mnist1d",
    "mnist_1d": "mnist1d",
}
_OFFICIAL_SPLIT = ("fashion-mnist", "mnist", "cifar10", "cifar100")
_CHANNELS = {"digits": 1, "mnist1d": 1, "mnist5k": 1, "fashion-mnist": 1, "mnist": 1, "cifar10": 3, "cifar100": 3}
_FASHION_HOW = (
    "install the Debian package (`sudo apt-get install dataset-fashion-mnist`, files in "
    f"{FASHION_MNIST_ROOT}) or download the four files from "
    "https://github.com/zalandoresearch/fashion-mnist and pass root= their directory"
)
_MNIST_HOW = ("get the four files of the MNIST database (https://yann.lecun.com/exdb/mnist/ or a mirror) "
              "and pass root= their directory")


def canonical_name(name: str) -> str | None:
    """The built-in data set ``name`` stands for (case and common spellings aside), or None.

    Examples
    --------
    >>> canonical_name("CIFAR-10")
    'cifar10'
    """
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


def _dataset_key(name: Any) -> str:
    require(isinstance(name, str), f"dataset name must be a string, one of {', '.join(DATASETS)}")
    key = canonical_name(name)
    require(key is not None, f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def _validate(key: str, root: Any, test_fraction: Any, normalization: Any, label_mode: Any,
              mnist1d_args: Any) -> Path | None:
    require(
        test_fraction is None or key not in _OFFICIAL_SPLIT,
        f"{key} has an official test set, so test_fraction does not apply; leave it None "
        "(use test_subset=N to evaluate on fewer test samples)",
    )
    if normalization is not None:
        parse_normalization(normalization, _CHANNELS[key])
    if label_mode is not None:
        require(key == "cifar100", f"label_mode applies to cifar100 only; leave it None for {key}")
        require(label_mode in ("fine", "coarse"), f"label_mode must be 'fine' (100 classes) or 'coarse' (20), got {label_mode!r}")
    if mnist1d_args is not None:
        require(key == "mnist1d", f"mnist1d_args applies to mnist1d only; leave it None for {key}")
        require(isinstance(mnist1d_args, Mapping), f"mnist1d_args must be a dict, got {type(mnist1d_args).__name__}")
        unknown = sorted(set(mnist1d_args) - set(MNIST1D_KEYS))
        require(not unknown, f"unknown mnist1d_args {unknown}; known: {', '.join(MNIST1D_KEYS)}")
        try:
            json.dumps(dict(mnist1d_args), sort_keys=True)
        except TypeError:
            raise InputError("mnist1d_args must hold plain numbers, booleans and lists") from None

    if root is not None:
        require(isinstance(root, (str, os.PathLike)), f"root must be a path, got {type(root).__name__}")
        root = Path(root).expanduser()
    if key == "fashion-mnist" and root is None:
        root = FASHION_MNIST_ROOT
    if key in ("mnist", "cifar10", "cifar100"):
        require(
            root is not None,
            f"{key} needs root=: the directory holding its files "
            + ("(the four MNIST IDX files)" if key == "mnist" else
               f"({'cifar-10-batches-py' if key == 'cifar10' else 'cifar-100-python'} or its parent)"),
        )
    if key in _OFFICIAL_SPLIT:
        if key == "fashion-mnist" and not root.is_dir():
            raise InputError(f"fashion-mnist: the directory {root} does not exist; {_FASHION_HOW}")
        require(root.is_dir(), f"{key}: root {root} is not an existing directory")
    return root


def _read(key: str, root: Path | None, label_mode: str | None, mnist1d_args: Mapping | None,
          test_fraction: float | None) -> RawData:
    if key == "digits":
        return read_digits()
    if key == "mnist5k":
        return read_mnist5k()
    if key == "mnist1d":
        return read_mnist1d(root, dict(mnist1d_args or {}), test_fraction)
    if key == "fashion-mnist":
        return read_idx_dataset(key, root, ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist"),
                                _FASHION_HOW, list(FASHION_CLASSES))
    if key == "mnist":
        return read_idx_dataset(key, root, ("mnist", "MNIST/raw", "MNIST"), _MNIST_HOW, list(DIGIT_CLASSES))
    if key == "cifar10":
        return read_cifar10(root)
    return read_cifar100(root, label_mode or "fine")


def load_data(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    test_fraction: float | None = None,
    normalize: bool = True,
    normalization: Any = None,
    augment: bool | Callable = False,
    random_labels: float = 0.0,
    subset: int | None = None,
    test_subset: int | None = None,
    dtype: torch.dtype = torch.float32,
    label_mode: str | None = None,
    mnist1d_args: Mapping | None = None,
) -> Data:
    """Load a built-in dataset as tensors with a seeded split, normalization and provenance.

    Parameters
    ----------
    name : str
        One of ``DATASETS``: "digits", "mnist1d", "mnist5k", "fashion-mnist", "mnist",
        "cifar10", "cifar100".
    root : path, optional
        Where the files are: the dataset directory itself or its parent holding the standard
        subdirectory (``fashion-mnist``, ``MNIST/raw``, ``cifar-10-batches-py``,
        ``cifar-100-python``). Required for "mnist", "cifar10" and "cifar100"; Fashion-MNIST
        defaults to ``/usr/share/datasets/fashion-mnist`` (Debian package
        ``dataset-fashion-mnist``). For "mnist1d" it is the cache directory (default
        ``$LOSSATLAS_CACHE_DIR`` or ``~/.cache/lossatlas``). Unused by "digits" and "mnist5k".
        Only files under ``root`` are read; see :mod:`lossatlas.data.cifar` on CIFAR pickles.
    seed : int
        The data seed: the split, the subsets and the random labels (independent streams).
    test_fraction : float, optional
        Held-out fraction for datasets without an official test set: a stratified split
        (scikit-learn's ``StratifiedShuffleSplit``, default 0.2) for "digits" and "mnist5k"; for
        "mnist1d" it replaces the package's own 80/20 split by the same rule. Not allowed for
        datasets with an official test set.
    normalize : bool
        Standardize each channel with the mean and std of the returned training set. Pixels
        are first scaled to [0, 1].
    normalization : (mean, std), optional
        Standardize with these statistics instead (numbers or one per channel), for example the
        ones a run recorded in ``Data.describe()["args"]["normalization"]``, so that a command
        re-evaluating the run uses exactly the run's statistics.
    augment : bool or callable
        True sets ``Data.augment`` to the dataset's transform: ``RandomCropFlip(pad=4,
        flip=True)`` for Fashion-MNIST and CIFAR; ``RandomCropFlip(pad=4, flip=False)`` for
        MNIST and mnist5k, and ``pad=1, flip=False`` for the 8x8 digits (a mirrored digit is
        another symbol); ``RandomShift1D(max_shift=4, mode="circular")`` for MNIST-1D. A
        callable is used as given. The stored tensors are never augmented.
    random_labels : float
        Fraction in [0, 1] of training samples (seeded) whose labels are replaced by labels
        drawn uniformly from all classes; test labels are untouched.
    subset, test_subset : int, optional
        Keep a seeded stratified subset of this many training (test) samples.
    dtype : torch.dtype
        Floating dtype of the inputs.
    label_mode : {"fine", "coarse"}, optional
        CIFAR-100 labels: 100 fine classes (default) or 20 superclasses.
    mnist1d_args : dict, optional
        Overrides of the MNIST-1D generation arguments (e.g. ``{"num_samples": 10000}``).

    Returns
    -------
    Data
        ``describe()["args"]`` records every argument, the normalization statistics as applied
        included; :func:`load_recorded` rebuilds the same tensors from it.

    Raises
    ------
    InputError
        For an unknown name, missing or malformed files, or out-of-range options, with a
        message saying how to fix it.

    Examples
    --------
    >>> data = load_data("digits", seed=0, subset=500, augment=True)
    >>> X, y = data.train
    >>> X.shape, data.num_classes, data.input_shape
    (torch.Size([500, 1, 8, 8]), 10, (1, 8, 8))
    >>> batch = data.augment(X[:32], torch.Generator().manual_seed(0))
    """
    key = _dataset_key(name)
    check_options(seed=seed, test_fraction=test_fraction, normalize=normalize, normalization=normalization,
                  augment=augment, random_labels=random_labels, subset=subset, test_subset=test_subset,
                  dtype=dtype)
    root_path = _validate(key, root, test_fraction, normalization, label_mode, mnist1d_args)
    seed = int(seed)
    raw = _read(key, root_path, label_mode, mnist1d_args, test_fraction)
    split_fraction = test_fraction
    if raw.x_test is None and split_fraction is None:
        split_fraction = DEFAULT_TEST_FRACTION
    args = {
        "loader": "load_data", "name": key,
        # Absolute, so that a later command run from another directory reads the same files.
        "root": None if root is None else str(Path(root).expanduser().resolve()),
        "seed": seed, "test_fraction": test_fraction, "normalize": normalize,
        "random_labels": float(random_labels), "subset": subset, "test_subset": test_subset,
        "dtype": str(dtype).replace("torch.", ""), "label_mode": label_mode,
        "mnist1d_args": None if mnist1d_args is None else dict(mnist1d_args),
    }
    return prepare(
        raw, name=key, seed=seed, test_fraction=split_fraction,
        split="package" if key == "mnist1d" else "official", normalize=normalize,
        normalization=normalization, augment=augment, augment_name=key, random_labels=float(random_labels),
        subset=subset, test_subset=test_subset, dtype=dtype, args=args,
    )


def load_any(spec: str | os.PathLike, root: str | os.PathLike | None = None, **options: Any) -> Data:
    """Data from any spec: a built-in name (:func:`load_data`), a ``.pt``/``.pth`` file
    (:func:`~lossatlas.data.load_tensors`) or ``package.module:factory``
    (:func:`~lossatlas.data.load_factory`), with the same options for all three.

    Examples
    --------
    >>> load_any("digits", subset=100).train[0].shape
    torch.Size([100, 1, 8, 8])
    """
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    require(text is not None, f"data must be a built-in name, a .pt file or package.module:factory, got {spec!r}")
    if canonical_name(text) is not None:
        return load_data(text, root, **options)
    path = Path(text).expanduser()
    if path.suffix in (".pt", ".pth") or path.is_file():
        require(root is None, "root applies to built-in data sets only; give the .pt file's own path")
        return load_tensors(path, **options)
    if ":" in text:
        require(root is None, "root applies to built-in data sets only; pass a factory's paths in factory_args")
        return load_factory(text, **options)
    raise InputError(
        f"unknown data {text!r}: give one of {', '.join(DATASETS)}, a .pt file saved with "
        "torch.save({'X': X, 'y': y, 'X_test': ..., 'y_test': ...}), or package.module:factory"
    )


def load_recorded(recorded: Mapping, *, verify: bool = True, **overrides: Any) -> Data:
    """Rebuild exactly the data described by ``Data.describe()`` (or its ``"args"``).

    Same loader, files, split seed, split, subsets, label noise and augmentation, and the
    recorded normalization statistics rather than freshly computed ones.

    Parameters
    ----------
    recorded : dict
        ``Data.describe()`` as a run stored it, or only its ``"args"``.
    verify : bool
        Check the rebuilt tensors' fingerprint against the recorded one.
    **overrides
        Arguments to change, e.g. ``augment=`` a user's own transform, which a record cannot
        rebuild (one that changes the tensors, such as ``subset``, needs ``verify=False``).

    Raises
    ------
    InputError
        For a record without arguments, or data whose fingerprint differs (the files changed).

    Examples
    --------
    >>> d = load_data("digits", subset=100, seed=3)
    >>> load_recorded(d.describe()).fingerprint == d.fingerprint
    True
    """
    require(isinstance(recorded, Mapping), f"recorded must be Data.describe() as a dict, got {type(recorded).__name__}")
    args = dict(recorded.get("args", recorded))
    require("loader" in args, "the record holds no loader arguments (data described before lossatlas recorded "
                              "them); load the data again with its original options")
    loader = args.pop("loader")
    if isinstance(args.get("augment"), (Mapping, str)):
        args["augment"] = overrides.pop("augment") if "augment" in overrides else transform_from_spec(args["augment"])
    if isinstance(args.get("dtype"), str):
        args["dtype"] = getattr(torch, args["dtype"])
    if args.get("normalization") is not None:
        args["normalization"] = tuple(args["normalization"])
    args.update(overrides)
    if loader == "load_data":
        data = load_data(args.pop("name"), args.pop("root"), **args)
    elif loader == "load_tensors":
        data = load_tensors(args.pop("path"), **args)
    elif loader == "load_factory":
        data = load_factory(args.pop("spec"), **args)
    else:
        raise InputError(f"unknown loader {loader!r} in the data record")
    expected = recorded.get("fingerprint")
    if verify and expected and data.fingerprint != expected:
        raise InputError(
            f"the data rebuilt from the record ({data.name}) have fingerprint {data.fingerprint}, but the "
            f"record says {expected}: the files changed since. Restore them, or load the data afresh "
            "(a new split) with verify=False"
        )
    return data

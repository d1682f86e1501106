"""A user's own tensors: a ``.pt`` file of ``{"X", "y", "X_test", "y_test"}``, with the same options as built-in data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .._errors import InputError, require
from .container import Data, RawData
from .prepare import check_options, prepare

__all__ = ["load_tensors", "prepare_user_data", "raw_from_arrays"]


def _tensor(value: Any, label: str, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise InputError(f"{where}: {label} must be a tensor or a NumPy array, got {type(value).__name__}")


def raw_from_arrays(x: Any, y: Any, x_test: Any = None, y_test: Any = None, *, where: str,
                    source: str | None = None) -> RawData:
    """Check a user's ``(X, y[, X_test, y_test])`` and wrap them as :class:`RawData` (values as given).

    Integer labels give ``num_classes = max label + 1`` over both sets; other targets (floats,
    several per sample) give 0 classes, and then subsets are plain seeded draws, not stratified.

    ``where`` names the arrays in messages; ``source`` (default ``where``) is recorded as their origin.

    Raises
    ------
    InputError
        For missing, empty or mismatched arrays, naming ``where``.

    Examples
    --------
    >>> raw = raw_from_arrays(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]), where="example")
    >>> raw.num_classes, raw.x_test is None
    (3, True)
    """
    x, y = _tensor(x, "X", where), _tensor(y, "y", where)
    require(x.dim() >= 1 and y.dim() >= 1 and x.shape[0] == y.shape[0] and x.shape[0] > 0,
            f"{where}: X and y must be non-empty and of equal length, got X {list(x.shape)} and y {list(y.shape)}")
    require((x_test is None) == (y_test is None),
            f"{where}: give both X_test and y_test, or neither (then there is no test set unless "
            "test_fraction= holds one out)")
    if x_test is not None:
        x_test, y_test = _tensor(x_test, "X_test", where), _tensor(y_test, "y_test", where)
        require(x_test.dim() >= 1 and y_test.dim() >= 1 and x_test.shape[0] == y_test.shape[0],
                f"{where}: X_test and y_test must be of equal length, got {list(x_test.shape)} and {list(y_test.shape)}")
        require(tuple(x_test.shape[1:]) == tuple(x.shape[1:]) and tuple(y_test.shape[1:]) == tuple(y.shape[1:]),
                f"{where}: test samples have shape {list(x_test.shape[1:])} (labels {list(y_test.shape[1:])}) "
                f"but training samples {list(x.shape[1:])} (labels {list(y.shape[1:])})")
    classes = 0
    if not y.is_floating_point() and not y.is_complex() and y.dim() == 1:
        top = int(y.max())
        if y_test is not None and y_test.numel():
            top = max(top, int(y_test.max()))
        low = min(int(y.min()), int(y_test.min()) if y_test is not None and y_test.numel() else 0)
        require(low >= 0, f"{where}: integer labels must be class indices >= 0; the smallest is {low}")
        classes = top + 1
    return RawData(x, y, x_test, y_test, 1.0, classes, [str(i) for i in range(classes)], source or where)


def load_tensors(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    test_fraction: float | None = None,
    normalize: bool = False,
    normalization: Any = None,
    augment: bool | Callable = False,
    random_labels: float = 0.0,
    subset: int | None = None,
    test_subset: int | None = None,
    dtype: torch.dtype | None = None,
) -> Data:
    """A user's own data saved with ``torch.save({"X": ..., "y": ..., "X_test": ..., "y_test": ...})``.

    Read with ``torch.load(..., weights_only=True)``. The options mean what they mean for
    :func:`~lossatlas.data.load_data`, so ``subset``, ``random_labels`` and ``augment`` apply to
    ``.pt`` data exactly as to built-in data, and are recorded in ``Data.describe()``.

    Parameters
    ----------
    path : path
        The ``.pt`` file; the test pair is optional.
    seed : int
        The data seed of the split, the subsets and the random labels (independent streams).
    test_fraction : float, optional
        Without a test pair in the file, hold out this fraction by a seeded stratified split
        (without it, the test split is empty). Not allowed when the file has a test pair.
    normalize : bool
        Standardize each channel (dim 1) with the training set's statistics; by default the
        tensors are used as given.
    normalization : (mean, std), optional
        The statistics to standardize with instead (e.g. a run's recorded ones); needs ``normalize=True``.
    augment : bool or callable
        True: ``RandomCropFlip(pad=4, flip=False)`` for images ``[N, C, H, W]`` (``pad=1`` under 16
        pixels; never a flip, which may change a class), ``RandomShift1D(max_shift=4)`` for signals
        ``[N, C, L]``; a callable ``t(x, generator)`` is used as given.
    random_labels : float
        Fraction of training labels redrawn uniformly from all classes (integer labels only).
    subset, test_subset : int, optional
        Seeded stratified subsets of the training and test sets.
    dtype : torch.dtype, optional
        Floating dtype of the inputs; None keeps the stored dtype (integer token ids stay integers).

    Returns
    -------
    Data

    Examples
    --------
    >>> torch.save({"X": X, "y": y}, "mydata.pt")                                # doctest: +SKIP
    >>> data = load_tensors("mydata.pt", subset=500, random_labels=0.2, seed=1)  # doctest: +SKIP
    """
    options = dict(seed=seed, test_fraction=test_fraction, normalize=normalize, normalization=normalization,
                   augment=augment, random_labels=random_labels, subset=subset, test_subset=test_subset, dtype=dtype)
    check_options(**options, dtype_optional=True)
    require(isinstance(path, (str, os.PathLike)), f"path must be a file path, got {type(path).__name__}")
    path = Path(path).expanduser()
    require(path.is_file(), f"data file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        from ..store.files import torch_load_failure

        raise InputError(torch_load_failure(path, exc, "Save a dict of tensors with torch.save")) from exc
    require(
        isinstance(obj, Mapping) and "X" in obj and "y" in obj,
        f"{path} must hold a dict with tensors 'X' and 'y' (and optionally 'X_test', 'y_test')",
    )
    raw = raw_from_arrays(obj["X"], obj["y"], obj.get("X_test"), obj.get("y_test"), where=str(path))
    return prepare_user_data(raw, name=path.stem, record={"loader": "load_tensors", "path": str(path.resolve())},
                             **options)


def prepare_user_data(raw: RawData, *, name: str, record: dict, seed: int, test_fraction: float | None,
                      normalize: bool, normalization: Any, augment: bool | Callable, random_labels: float,
                      subset: int | None, test_subset: int | None, dtype: torch.dtype | None) -> Data:
    """The pipeline for a user's own arrays (a file or a factory), ``record`` naming the loader.

    Examples
    --------
    >>> raw = raw_from_arrays(torch.randn(8, 2), torch.arange(8) % 2, where="example")
    >>> prepare_user_data(raw, name="example", record={"loader": "example"}, seed=0, test_fraction=0.25,
    ...                   normalize=False, normalization=None, augment=False, random_labels=0.0,
    ...                   subset=None, test_subset=None, dtype=None).test[0].shape
    torch.Size([2, 2])
    """
    require(test_fraction is None or raw.x_test is None,
            f"{name} has a test set (X_test, y_test), so test_fraction does not apply; leave it None "
            "(use test_subset=N to evaluate on fewer test samples)")
    args = {**record, "seed": int(seed), "test_fraction": test_fraction, "normalize": normalize,
            "random_labels": float(random_labels), "subset": subset, "test_subset": test_subset,
            "dtype": None if dtype is None else str(dtype).replace("torch.", "")}
    return prepare(raw, name=name, seed=int(seed), test_fraction=test_fraction, split="given",
                   normalize=normalize, normalization=normalization, augment=augment, augment_name=None,
                   random_labels=float(random_labels), subset=subset, test_subset=test_subset, dtype=dtype,
                   args=args)


def user_data_options(**options: Any) -> dict:
    """:func:`load_tensors`' keyword options with its defaults, for other loaders of a user's own
    data (:func:`~lossatlas.data.load_factory`), so that one signature defines them; an unknown
    option is refused with the known ones listed."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(load_tensors).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(defaults))
    require(not unknown, f"unknown data options {unknown}; known: {sorted(defaults)}")
    return {**defaults, **options}

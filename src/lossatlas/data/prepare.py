"""The one pipeline from raw arrays to a :class:`Data`, shared by every loader.

Built-in data sets, ``.pt`` files and a user's factory all go through :func:`prepare`, so split,
subsets, scaling, normalization, label noise and augmentation mean the same whatever the source,
and :func:`check_options` refuses the same bad options with the same messages, before any file
is read.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .._errors import InputError, positive_int, require
from ..store import fingerprint, json_safe
from .augment import default_transform, transform_spec
from .container import Data, RawData, as_array
from .split import (
    STREAM_LABELS,
    STREAM_SPLIT,
    STREAM_SUBSET,
    STREAM_TEST_SUBSET,
    channel_stats,
    parse_normalization,
    randomize_labels,
    stratified_choice,
    stratified_split,
    stream_rng,
    stream_seed,
    take,
)

__all__ = ["check_options", "prepare"]


def _is_fraction(v: Any) -> bool:
    return isinstance(v, (float, int)) and not isinstance(v, bool)


def check_options(*, seed: Any, test_fraction: Any, normalize: Any, normalization: Any, augment: Any,
                  random_labels: Any, subset: Any, test_subset: Any, dtype: Any,
                  dtype_optional: bool = False) -> None:
    """Refuse bad common options with an :class:`InputError` that says how to fix them.

    Examples
    --------
    >>> check_options(seed=0, test_fraction=None, normalize=True, normalization=None, augment=False,
    ...               random_labels=0.0, subset=None, test_subset=None, dtype=torch.float32)
    """
    positive_int("seed", seed, minimum=0)
    if test_fraction is not None:
        require(
            _is_fraction(test_fraction) and 0.0 < test_fraction < 1.0,
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}",
        )
    require(isinstance(normalize, bool), f"normalize must be True or False, got {normalize!r}")
    if normalization is not None:
        require(normalize, "normalization=(mean, std) gives the statistics that normalize=True applies; "
                           "pass normalize=True with it, or leave normalization None")
        parse_normalization(normalization)
    require(
        isinstance(augment, bool) or callable(augment),
        f"augment must be True, False or a transform t(x, generator), got {augment!r}",
    )
    require(
        _is_fraction(random_labels) and 0.0 <= random_labels <= 1.0,
        f"random_labels is the fraction of training labels to randomize and must lie in [0, 1], "
        f"got {random_labels!r}",
    )
    for label, v in (("subset", subset), ("test_subset", test_subset)):
        if v is not None:
            try:
                positive_int(label, v)
            except InputError:
                raise InputError(f"{label} must be None (all samples) or a positive integer number of "
                                 f"samples, got {v!r}") from None
    require(
        (dtype is None and dtype_optional) or (isinstance(dtype, torch.dtype) and dtype.is_floating_point),
        f"dtype must be a floating torch dtype such as torch.float32"
        f"{' (or None: as stored)' if dtype_optional else ''}, got {dtype!r}",
    )


def _split(raw: RawData, seed: int, test_fraction: float | None, split: str, info: dict):
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_test is not None:
        info.update(split=split, test_fraction=None if test_fraction is None else float(test_fraction))
        return x_train, y_train, x_test, y_test
    if test_fraction is None:  # a user's data without a test set and no split asked for
        info.update(split="none", test_fraction=None)
        return x_train, y_train, x_train[:0], y_train[:0]
    n = int(y_train.shape[0])
    n_test = int(round(test_fraction * n))
    require(
        0 < n_test < n,
        f"test_fraction={test_fraction} gives {n_test} test samples out of {n}; choose a "
        "fraction that leaves both sets non-empty",
    )
    train_idx, test_idx, stratified = stratified_split(y_train, n_test, stream_seed(seed, STREAM_SPLIT))
    info.update(split="stratified" if stratified else "shuffled", test_fraction=float(test_fraction))
    return take(x_train, train_idx), take(y_train, train_idx), take(x_train, test_idx), take(y_train, test_idx)


def _as_float(x: Any, work: torch.dtype) -> torch.Tensor:
    """A fresh tensor of ``x`` in ``work`` (never a view of the caller's arrays: it is scaled in place)."""
    if isinstance(x, torch.Tensor):
        return x.to(work, copy=True)
    # NumPy converts first: it also handles the big-endian arrays of IDX files, which torch cannot.
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).astype(np.float64 if work == torch.float64 else np.float32)))


def _labels(y: Any) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y
    a = np.asarray(y)
    return torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iub" else a)


def prepare(raw: RawData, *, name: str, seed: int, test_fraction: float | None, split: str,
            normalize: bool, normalization: Any, augment: bool | Callable, augment_name: str | None,
            random_labels: float, subset: int | None, test_subset: int | None,
            dtype: torch.dtype | None, args: dict) -> Data:
    """Split, subset, scale, normalize, relabel and wrap ``raw`` as a :class:`Data`.

    Parameters
    ----------
    raw : RawData
        The arrays as read. Without a test set, ``test_fraction`` of the samples are held out by a
        seeded stratified split (none when it is None).
    name : str
        The data set's name (in messages and ``Data.name``).
    seed : int
        The data seed: split, subsets and random labels draw from independent streams of it.
    split : str
        What to record as the split when ``raw`` has a test set ("official", "package", "given").
    normalize, normalization
        Standardize each channel, with the training set's statistics or the given ``(mean, std)``.
    augment, augment_name
        True chooses :func:`~lossatlas.data.augment.default_transform` for ``augment_name``.
    random_labels, subset, test_subset, dtype
        As in :func:`lossatlas.data.load_data`; ``dtype=None`` keeps the stored dtype when nothing
        needs floats.
    args : dict
        The loader's own arguments; the normalization statistics and augmentation are added, and
        the whole is kept as ``Data.args``.

    Returns
    -------
    Data

    Examples
    --------
    >>> raw = RawData(np.random.default_rng(0).random((20, 1, 4)), np.arange(20) % 2, None, None,
    ...               1.0, 2, ["a", "b"], "example")
    >>> d = prepare(raw, name="example", seed=0, test_fraction=0.25, split="given", normalize=True,
    ...             normalization=None, augment=False, augment_name=None, random_labels=0.0,
    ...             subset=None, test_subset=None, dtype=torch.float32, args={})
    >>> len(d.train[1]), len(d.test[1])
    (15, 5)
    """
    info: dict[str, Any] = {"source": raw.source, "seed": seed}
    x_train, y_train, x_test, y_test = _split(raw, seed, test_fraction, split, info)

    for label, n, part, y in (("subset", subset, "training", y_train), ("test_subset", test_subset, "test", y_test)):
        available = int(y.shape[0])
        require(
            n is None or n <= available,
            f"{label}={n} is larger than the {part} set of {name} ({available} samples); use "
            f"{label} <= {available} or None",
        )
    for label, n, stream in (("subset", subset, STREAM_SUBSET), ("test_subset", test_subset, STREAM_TEST_SUBSET)):
        info[label] = None if n is None else int(n)
        if n is None:
            continue
        y = y_train if label == "subset" else y_test
        idx, stratified = stratified_choice(y, int(n), stream_seed(seed, stream))
        info[f"{label}_stratified"] = stratified
        if label == "subset":
            x_train, y_train = take(x_train, idx), take(y_train, idx)
        else:
            x_test, y_test = take(x_test, idx), take(y_test, idx)

    needs_float = dtype is not None or normalize or raw.scale != 1.0
    if needs_float:
        stored = x_train.dtype if isinstance(x_train, torch.Tensor) else None
        out = dtype or (stored if stored is not None and stored.is_floating_point else torch.float32)
        # Work in float64 only when asked for; float32 halves the memory of the large image sets.
        work = torch.float64 if out == torch.float64 else torch.float32
        x_train, x_test = _as_float(x_train, work), _as_float(x_test, work)
        if raw.scale != 1.0:
            x_train /= raw.scale
            x_test /= raw.scale
    else:
        x_train, x_test = torch.as_tensor(x_train), torch.as_tensor(x_test)
        out = work = x_train.dtype
    channels = int(x_train.shape[1]) if x_train.dim() >= 2 else 1
    stats_dtype = out if out.is_floating_point else torch.float32
    if normalize:
        if normalization is not None:
            mean, std = parse_normalization(normalization, channels)
        else:
            require(x_train.shape[0] > 0, f"{name}: no training samples to compute normalization statistics from")
            mean, std = channel_stats(x_train)
        mean_w, std_w = mean.to(work), std.to(work)
        shape = (1, channels) + (1,) * (x_train.dim() - 2)
        for x in (x_train, x_test):
            x -= mean_w.to(x.device).reshape(shape)
            x /= std_w.to(x.device).reshape(shape)
        # The statistics exactly as applied, so that passing them back rebuilds the same tensors.
        args["normalization"] = [mean_w.double().tolist(), std_w.double().tolist()]
        info["normalization"] = "given" if normalization is not None else "training set"
    else:
        mean, std = torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
        args["normalization"] = None
    info.update(normalized=normalize, pixel_scale=float(raw.scale))

    y_train, y_test = _labels(y_train), _labels(y_test)
    true_y = y_train
    info["random_labels_requested"] = float(random_labels)
    if random_labels > 0:
        labels = as_array(true_y)
        require(
            raw.num_classes > 0 and labels.ndim == 1 and labels.dtype.kind in "iu",
            f"random_labels needs class labels (a 1-D integer y); {name} has y of dtype "
            f"{true_y.dtype} and shape {list(true_y.shape)}",
        )
        noisy, count = randomize_labels(labels.astype(np.int64), float(random_labels), raw.num_classes,
                                        stream_rng(seed, STREAM_LABELS))
        y_train = torch.as_tensor(noisy, device=true_y.device).to(true_y.dtype)
        info["random_labels_count"] = count
    else:
        y_train = true_y.clone()
    n = int(true_y.shape[0])
    info["labels_changed_fraction"] = float((y_train != true_y).double().mean()) if n else 0.0

    input_shape = tuple(int(s) for s in x_train.shape[1:])
    transform = default_transform(augment_name, input_shape) if augment is True else (augment or None)
    info["augment"] = None if transform is None else repr(transform)
    args["augment"] = augment if isinstance(augment, bool) else transform_spec(augment)
    info["classes"] = list(raw.classes)
    info["dtype"] = str(out).replace("torch.", "")
    info.update(raw.extra)

    x_train, x_test = x_train.to(out), x_test.to(out)
    return Data(
        name=name,
        train=(x_train, y_train),
        test=(x_test, y_test),
        num_classes=raw.num_classes,
        input_shape=input_shape,
        mean=mean.to(stats_dtype),
        std=std.to(stats_dtype),
        augment=transform,
        true_train_y=true_y,
        info=json_safe(info),
        fingerprint=fingerprint(x_train, y_train, x_test, y_test),
        args=args,
    )

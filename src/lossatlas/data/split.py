"""Seeded splits and subsets (scikit-learn's stratified shuffle split), normalization, label noise.

Every random choice draws from its own stream, derived from the data seed and a stream number, so
that changing one option (a subset size, say) does not change the other choices (which samples
get random labels) beyond what the option itself implies. Nothing draws from a global generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._errors import InputError, require
from .container import as_array

__all__ = [
    "STREAM_LABELS",
    "STREAM_SPLIT",
    "STREAM_SUBSET",
    "STREAM_TEST_SUBSET",
    "can_stratify",
    "channel_stats",
    "parse_normalization",
    "randomize_labels",
    "stratified_choice",
    "stratified_split",
    "stream_rng",
    "stream_seed",
    "take",
]

STREAM_SPLIT, STREAM_SUBSET, STREAM_TEST_SUBSET, STREAM_LABELS = range(4)


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """The NumPy generator of one purpose (``STREAM_*``) under the data seed ``seed``."""
    return np.random.default_rng([seed, stream])


def stream_seed(seed: int, stream: int) -> int:
    """An integer seed for scikit-learn's ``random_state``, derived like :func:`stream_rng`."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def take(values: Any, idx: np.ndarray) -> Any:
    """``values[idx]`` for a NumPy array or a tensor (on any device)."""
    if isinstance(values, torch.Tensor):
        return values[torch.as_tensor(idx, dtype=torch.long, device=values.device)]
    return values[idx]


def _class_labels(y: Any) -> np.ndarray | None:
    """``y`` as a 1-D integer array when it holds class indices, else None (regression targets...)."""
    a = as_array(y)
    if a.ndim != 1 or a.dtype.kind not in "iub":
        return None
    return a


def can_stratify(y: Any, n_train: int, n_test: int) -> bool:
    """Whether scikit-learn's stratified split applies: class labels, every class at least twice,
    and both parts large enough to hold every class."""
    labels = _class_labels(y)
    if labels is None or len(labels) == 0:
        return False
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= 2 and n_train >= len(counts) and n_test >= len(counts))


def stratified_split(y: Any, n_test: int, random_state: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Shuffled train and test indices of ``y`` with ``n_test`` test samples, and whether the split
    is stratified.

    Each class contributes its share of the test set within one sample (scikit-learn's
    ``StratifiedShuffleSplit``). Where stratification cannot apply (targets that are not class
    indices, a class with one sample, or fewer samples than classes in a part) the split is a
    plain seeded shuffle.

    Examples
    --------
    >>> train, test, stratified = stratified_split(np.repeat(np.arange(3), 10), 6, random_state=0)
    >>> len(train), len(test), stratified
    (24, 6, True)
    """
    n = int(y.shape[0])
    require(0 < n_test < n, f"a split of {n} samples needs between 1 and {n - 1} test samples, got {n_test}")
    if can_stratify(y, n - n_test, n_test):
        from sklearn.model_selection import StratifiedShuffleSplit

        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_test, train_size=n - n_test,
                                          random_state=random_state)
        train, test = next(splitter.split(np.zeros((n, 1)), _class_labels(y)))
        return train.astype(np.int64), test.astype(np.int64), True
    order = np.random.default_rng(random_state).permutation(n)
    return order[n_test:], order[:n_test], False


def stratified_choice(y: Any, k: int, random_state: int) -> tuple[np.ndarray, bool]:
    """``k`` shuffled indices of ``y``, each class in proportion to its frequency where possible
    (see :func:`stratified_split`), and whether the choice is stratified.

    Examples
    --------
    >>> idx, stratified = stratified_choice(np.repeat(np.arange(2), 50), 10, random_state=0)
    >>> np.bincount(np.repeat(np.arange(2), 50)[idx]).tolist(), stratified
    ([5, 5], True)
    """
    n = int(y.shape[0])
    if k >= n:
        return np.random.default_rng(random_state).permutation(n), _class_labels(y) is not None
    chosen, _, stratified = stratified_split(y, n - k, random_state)
    return chosen, stratified


def channel_stats(x: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of ``x`` [N, C, ...], accumulated in float64.

    Chunked so that a float64 copy of a large set (CIFAR: 1.2 GB) is never made. A constant
    channel gets std 1 (centred but unscaled) instead of a division by zero.

    Examples
    --------
    >>> mean, std = channel_stats(torch.ones(4, 2, 3))
    >>> mean.tolist(), std.tolist()
    ([1.0, 1.0], [1.0, 1.0])
    """
    n, c = x.shape[:2]
    dims = (0,) + tuple(range(2, x.dim()))
    count = n * math.prod(x.shape[2:])
    shape = (1, c) + (1,) * (x.dim() - 2)
    total = torch.zeros(c, dtype=torch.float64, device=x.device)
    for i in range(0, n, chunk):
        total += x[i : i + chunk].double().sum(dim=dims)
    mean = total / max(count, 1)
    sq = torch.zeros(c, dtype=torch.float64, device=x.device)
    for i in range(0, n, chunk):
        sq += ((x[i : i + chunk].double() - mean.reshape(shape)) ** 2).sum(dim=dims)
    std = torch.sqrt(sq / max(count, 1))
    std[~(std > 0)] = 1.0
    return mean.cpu(), std.cpu()


def parse_normalization(normalization: Any, channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` given by a user or read from a record, as float64 tensors of ``channels``.

    Each may be a number (every channel) or one number per channel; every std must be positive.

    Raises
    ------
    InputError
        For anything else, with the expected form.

    Examples
    --------
    >>> parse_normalization((0.5, [0.25]), channels=1)
    (tensor([0.5000], dtype=torch.float64), tensor([0.2500], dtype=torch.float64))
    """
    form = "normalization must be a pair (mean, std), each a number or one number per channel"
    if not (isinstance(normalization, (tuple, list)) and len(normalization) == 2):
        raise InputError(f"{form}, got {normalization!r}")
    parts = []
    for label, value in zip(("mean", "std"), normalization):
        try:
            t = torch.as_tensor(value, dtype=torch.float64).reshape(-1).cpu()
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{form}; its {label} is {value!r}") from None
        require(t.numel() >= 1 and bool(torch.isfinite(t).all()), f"{form}; its {label} {value!r} is not finite")
        if channels is not None:
            require(t.numel() in (1, channels),
                    f"normalization {label} has {t.numel()} values but the data have {channels} channel(s)")
            t = t.expand(channels).clone()
        parts.append(t)
    require(bool((parts[1] > 0).all()), f"normalization std must be positive, got {parts[1].tolist()}")
    return parts[0], parts[1]


def randomize_labels(y: np.ndarray, fraction: float, num_classes: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A copy of ``y`` with ``round(fraction * len(y))`` labels (chosen at random) redrawn uniformly
    from all classes, as in Zhang et al. (a redrawn label may equal the true one); and that count.

    Examples
    --------
    >>> noisy, k = randomize_labels(np.zeros(10, np.int64), 0.5, 10, np.random.default_rng(0))
    >>> k
    5
    """
    k = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=k, replace=False)
    noisy = y.copy()
    noisy[idx] = rng.integers(0, num_classes, size=k)
    return noisy, k

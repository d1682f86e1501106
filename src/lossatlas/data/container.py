"""The containers: :class:`RawData` as a format reader returns it, :class:`Data` ready for a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..store import json_safe

__all__ = ["Data", "RawData"]


@dataclass
class RawData:
    """Arrays as a file stores them, before splitting, subsets, scaling and normalization.

    Attributes
    ----------
    x_train, y_train : ndarray or Tensor
        Samples ``[N, C, ...]`` and labels ``[N]`` (class indices, or any targets for a user's data).
    x_test, y_test : ndarray or Tensor or None
        The official (or the user's) test set; None when a split is to be drawn.
    scale : float
        Raw values divided by ``scale`` lie in [0, 1] (1.0 for data that are already real-valued).
    num_classes : int
        Number of classes; 0 for targets that are not class indices.
    classes : list of str
        Class names.
    source : str
        Where the arrays came from (a file, a directory, a package).
    extra : dict
        Format-specific provenance merged into ``Data.info``.
    """

    x_train: Any
    y_train: Any
    x_test: Any | None
    y_test: Any | None
    scale: float
    num_classes: int
    classes: list[str]
    source: str
    extra: dict = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class Data:
    """A dataset ready for training: tensors, normalization, labels and provenance.

    Attributes
    ----------
    name : str
        Canonical dataset name (one of ``DATASETS``), or the file or factory it came from.
    train, test : tuple of Tensor
        ``(X, y)``: ``X`` float ``[N, *input_shape]``, ``y`` int64 ``[N]``. ``train`` holds the
        labels used for training (random ones when ``random_labels > 0``).
    num_classes : int
    input_shape : tuple of int
        Shape of one sample, without the batch dimension.
    mean, std : Tensor
        Per-channel normalization that was applied (``X = (raw - mean) / std``, raw pixels in
        [0, 1]); zeros and ones when ``normalize=False``.
    augment : callable or None
        Transform ``t(x, generator)`` for trainers to apply per batch, or None.
    true_train_y : Tensor
        The true training labels (equal to ``train[1]`` when no labels were randomized).
    info : dict
        JSON-serializable provenance: source, split, seeds, sizes, label noise, class names.
    fingerprint : str
        16 hex characters of :func:`lossatlas.store.fingerprint` over the final train and test tensors.
    args : dict
        The loader and the exact keyword arguments that rebuild these tensors, normalization
        statistics included (see :func:`lossatlas.data.load_recorded`).
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    input_shape: tuple[int, ...]
    mean: torch.Tensor
    std: torch.Tensor
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    true_train_y: torch.Tensor
    info: dict = field(default_factory=dict)
    fingerprint: str = ""
    args: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """A plain, JSON- and YAML-serializable summary for configs, provenance and reports.

        ``describe()["args"]`` holds everything needed to rebuild exactly these tensors (the
        loader, data set, root, split seed, split, subsets, label noise, augmentation and the
        normalization statistics as applied); :func:`lossatlas.data.load_recorded` takes the
        whole summary back and checks the fingerprint.

        Examples
        --------
        >>> from lossatlas.data import load_data
        >>> d = load_data("digits", subset=100)
        >>> sorted(d.describe())[:3]
        ['args', 'augment', 'fingerprint']
        """
        return {
            "name": self.name,
            "train_size": int(self.train[0].shape[0]),
            "test_size": int(self.test[0].shape[0]),
            "num_classes": int(self.num_classes),
            "input_shape": [int(s) for s in self.input_shape],
            "fingerprint": self.fingerprint,
            "mean": [float(v) for v in self.mean.double().tolist()],
            "std": [float(v) for v in self.std.double().tolist()],
            "augment": None if self.augment is None else repr(self.augment),
            "info": json_safe(self.info),
            "args": json_safe(self.args),
        }

    def __repr__(self) -> str:
        return (
            f"Data(name={self.name!r}, train={self.train[0].shape[0]}, test={self.test[0].shape[0]}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape}, "
            f"augment={self.augment!r}, fingerprint={self.fingerprint!r})"
        )


def as_array(values: Any) -> np.ndarray:
    """``values`` (an array or a CPU or device tensor) as a NumPy array, for index arithmetic."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)

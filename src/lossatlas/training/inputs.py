"""The training data adapter: a ``lossatlas.data.Data`` or ``(X, y)`` tensors as one checked
:class:`TrainData`, fingerprinted once and moved to the training device once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .._errors import InputError, require
from ..store import fingerprint


@dataclass
class TrainData:
    """Checked training data.

    Attributes
    ----------
    X, y : Tensor
        Inputs and targets of the training set.
    test : (Tensor, Tensor) or None
    augment : callable or None
        ``augment(x, generator)`` applied per batch (when the run's ``augment`` is on).
    fingerprint : str
        The content hash of the train (and test) tensors, labels included (so random labels count).
    info : dict
        Provenance: dataset name and its label-noise setting.
    """

    X: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor] | None
    augment: Callable | None
    fingerprint: str
    info: dict = field(default_factory=dict)

    def to(self, device: torch.device) -> "TrainData":
        """The same data on ``device``: moved once here, so that no batch crosses from the host."""
        test = None if self.test is None else (self.test[0].to(device), self.test[1].to(device))
        return replace(self, X=self.X.to(device), y=self.y.to(device), test=test)

    def settings(self, augment: bool) -> dict:
        """What of the data changes a run's values: its fingerprint, the augmentation applied and
        the label noise it was made with (recorded in the store's settings)."""
        return {
            "fingerprint": self.fingerprint,
            "augment": repr(self.augment) if augment and self.augment is not None else None,
            "random_labels": self.info.get("random_labels"),
        }


def as_train_data(data, test=None, augment=None) -> TrainData:
    """Accept a ``lossatlas.data.Data``, an ``(X, y)`` pair or a DataLoader (plus an optional test
    pair or loader), the forms :class:`~lossatlas.Landscape` takes.

    Parameters
    ----------
    data : Data, (Tensor, Tensor) or torch.utils.data.DataLoader
        A ``Data`` brings its test split, augmentation and fingerprint along. A DataLoader is read
        once, in its dataset's order (:func:`lossatlas.data.factory.read_loader`); training draws
        its own batches from it with its own seed and batch size.
    test : (Tensor, Tensor) or DataLoader, optional
        Overrides the ``Data``'s test split.
    augment : callable, optional
        Overrides the ``Data``'s augmentation.

    Examples
    --------
    >>> td = as_train_data((torch.randn(8, 3), torch.arange(8) % 2))
    >>> td.X.shape, td.test
    (torch.Size([8, 3]), None)
    """
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader) or isinstance(test, DataLoader):
        from ..data.factory import read_loader

        if isinstance(data, DataLoader):
            data = read_loader(data, "the training DataLoader")
        if isinstance(test, DataLoader):
            test = read_loader(test, "the test DataLoader")
    if hasattr(data, "train") and hasattr(data, "test"):  # lossatlas.data.Data
        X, y = data.train
        own_test = test is None
        test = data.test if own_test else test
        augment = augment if augment is not None else getattr(data, "augment", None)
        fp = getattr(data, "fingerprint", None) or fingerprint(X, y, *(data.test or ()))
        if not own_test:
            fp = fingerprint(fp, *test)
        extra = getattr(data, "info", None) or {}
        info = {"dataset": getattr(data, "name", "data"), "random_labels": extra.get("random_labels_requested", 0.0)}
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        X, y = data
        if test is not None:
            require(isinstance(test, (tuple, list)) and len(test) == 2 and all(isinstance(t, torch.Tensor) for t in test),
                    "test must be an (X, y) pair of tensors")
        fp = fingerprint(X, y, *(test or ()))
        info = {"dataset": "tensors", "random_labels": None}
    else:
        raise InputError(
            "training data must be an (X, y) pair of tensors, a DataLoader or a lossatlas.data.Data "
            f"(from la.load_data), got {type(data).__name__}"
        )
    require(X.shape[0] == y.shape[0], f"inputs and targets differ in length: {X.shape[0]} vs {y.shape[0]}")
    require(X.shape[0] > 0, "the training set is empty")
    if test is not None:
        require(len(test) == 2 and test[0].shape[0] == test[1].shape[0], "test must be an (X, y) pair of equal length")
        if test[0].shape[0] == 0:
            test = None  # a dataset without a test split
    for what, t in (("inputs", X),) + ((("test inputs", test[0]),) if test is not None else ()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise InputError(f"the {what} hold NaN or infinite values")
    return TrainData(X, y, None if test is None else tuple(test), augment, fp, info)

"""Where a model and its data come from, as a typed config of plain values.

A :class:`Source` names a model factory (a built-in name or ``package.module:factory``) with its
arguments and checkpoint, a data set (built-in, a ``.pt`` file or ``package.module:factory``) with
its root, split seed, subsets, augmentation and label noise, and a device. It holds plain values
only, so it is written into a run directory (``config/source.yaml``), read back by every later
command on that run, and rebuilt anywhere: in the command line, in a script, on a Dask worker.

Rebuilding the data of a run checks its fingerprint against the one the run recorded, so a
command on a run directory evaluates on exactly the split the run was trained on.

Examples
--------
>>> src = Source(model="mlp", data="digits", data_seed=0)
>>> data = src.build_data()
>>> model = src.build_model(data)
>>> src.resolve_device()
device(type='cpu')
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ._errors import InputError, require
from .importer import import_object, user_path  # import_object: re-exported, its old home
from .typed import from_mapping

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


@dataclass
class Source:
    """A model, its checkpoint, a data set and a device, as plain values.

    Attributes
    ----------
    model : str
        Built-in name (``mlp``, ``smallcnn``, ``resnet56``, ...) or ``package.module:factory``.
    model_args : dict
        Keyword arguments of the model factory.
    checkpoint : str or None
        A state dict file (``torch.load(weights_only=True)`` or ``.safetensors``).
    init_seed : int
        Initialization seed of built-in models.
    data : str
        Built-in data set, a ``.pt`` file of ``{"X", "y", "X_test", "y_test"}`` tensors, or
        ``package.module:factory`` returning a DataLoader, ``(X, y)`` or ``(X, y, X_test, y_test)``.
    data_root : str or None
        Directory of the data set's files.
    data_seed : int
        Seed of the train/test split and of subsets (never the seed of directions).
    subset, test_subset : int or None
        Seeded subsets of the training and test splits.
    augment : bool
    random_labels : float
        Fraction of training labels replaced at random.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    data_fingerprint : str or None
        The fingerprint of the data the run was made with; a rebuild that differs is refused.
    checkpoint_sha256 : str or None
        The SHA-256 of the checkpoint file's content when the run was made; a file that was
        overwritten since is refused, naming the checkpoint (see :func:`file_sha256`).
    code_dir : str or None
        A directory put first on the import path for ``package.module:factory`` specs (the working
        directory the run was made in), so the run's factories import from anywhere.
    """

    model: str = "mlp"
    model_args: dict = field(default_factory=dict)
    checkpoint: Optional[str] = None
    init_seed: int = 0
    data: str = "digits"
    data_root: Optional[str] = None
    data_seed: int = 0
    subset: Optional[int] = None
    test_subset: Optional[int] = None
    augment: bool = False
    random_labels: float = 0.0
    device: str = "auto"
    data_fingerprint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    code_dir: Optional[str] = None

    # -- plain values ---------------------------------------------------------------------
    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], where: str = "source") -> "Source":
        """A Source from plain values, each checked (a wrong type names the field)."""
        require(isinstance(mapping, Mapping), f"{where} must be a mapping of settings")
        src = from_mapping(cls, dict(mapping), where)
        src.validate()
        return src

    def replace(self, **changes: Any) -> "Source":
        if "checkpoint" in changes and "checkpoint_sha256" not in changes:
            changes["checkpoint_sha256"] = None  # the recorded hash is of the old file
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Source":
        """Check the values that need no import or file access; raises InputError."""
        require(bool(self.model), "the model must be a built-in name or package.module:factory")
        require(bool(self.data), "the data must be a built-in data set, a .pt file or package.module:factory")
        require(0.0 <= self.random_labels <= 1.0, f"random_labels must be in [0, 1], got {self.random_labels}")
        for name in ("subset", "test_subset"):
            v = getattr(self, name)
            require(v is None or v >= 1, f"{name} must be a positive number of samples, got {v}")
        resolve_device(self.device, check=False)
        return self

    # -- building ---------------------------------------------------------------------------
    def resolve_device(self):
        return resolve_device(self.device)

    def build_data(self):
        """The data set (a :class:`lossatlas.data.Data`), checked against ``data_fingerprint``.

        Built once per Source: a second call returns the same object (a command checks that its
        source builds before it writes anything, then uses what it built).
        """
        cached = self.__dict__.get("_built_data")
        if cached is not None and cached[0] == self.as_dict():
            return cached[1]
        d = self._build_data()
        self.__dict__["_built_data"] = (self.as_dict(), d)
        return d

    def _build_data(self):
        from . import data as D

        options = dict(seed=self.data_seed, subset=self.subset, test_subset=self.test_subset,
                       augment=self.augment, random_labels=self.random_labels)
        if self.data in D.DATASETS:
            d = D.load_data(self.data, self.data_root, **options)
        elif ":" in self.data and not Path(self.data).exists():
            user_path(self.code_dir)
            d = D.load_factory(self.data, **options)
        else:
            path = Path(self.data).expanduser()
            looks_like_a_file = bool(path.suffix) or "/" in self.data or os.sep in self.data
            require(not looks_like_a_file or path.exists(), f"data file not found: {path}")
            require(path.suffix in (".pt", ".pth") and path.is_file(),
                    f"the data must be one of {sorted(D.DATASETS)}, a .pt file saved with "
                    "torch.save({'X': X, 'y': y, 'X_test': ..., 'y_test': ...}), or package.module:factory; "
                    f"got {self.data!r}")
            d = D.load_tensors(path, **options)
        if self.data_fingerprint is not None and d.fingerprint != self.data_fingerprint:
            raise InputError(
                f"the data rebuilt from {self.data!r} (split seed {self.data_seed}, subset {self.subset}) has "
                f"fingerprint {d.fingerprint}, but the run was made with {self.data_fingerprint}: the files "
                "changed, or another split was asked for. Evaluate on the run's own data, or start a new run"
            )
        return d

    def build_model(self, data=None):
        """The model (in eval mode) on CPU, with the checkpoint loaded; move it with ``.to(device)``."""
        from torch import nn

        from .models import build, load_checkpoint

        if ":" in self.model:
            user_path(self.code_dir)
            factory = import_object(self.model, "model factory")
            try:
                model = factory(**self.model_args)
            except TypeError as exc:
                raise InputError(f"the model factory {self.model} refused its arguments {self.model_args}: {exc}") from exc
            require(isinstance(model, nn.Module), f"{self.model} returned {type(model).__name__}, not an nn.Module")
        else:
            require(data is not None, "a built-in model needs the data set for its input shape and classes")
            model = build(self.model, data.input_shape, data.num_classes, seed=self.init_seed, **self.model_args)
        if self.checkpoint:
            self.check_checkpoint()
            load_checkpoint(model, self.checkpoint)
        model.eval()
        return model

    def check_checkpoint(self) -> None:
        """Refuse a checkpoint file that is missing, or whose content is no longer what the run
        recorded (``checkpoint_sha256``): the file was overwritten after the run was made."""
        if not self.checkpoint:
            return
        path = Path(self.checkpoint).expanduser()
        require(path.is_file(), f"checkpoint file not found: {path}")
        if self.checkpoint_sha256 is not None and file_sha256(path) != self.checkpoint_sha256:
            raise InputError(
                f"the checkpoint {path} was overwritten after this run was made (its content differs from "
                "the file the run recorded), so the run's results do not describe it. Restore the file, "
                "or start a new run directory for the new weights")

    def build(self):
        """``(model, data, device)``, the model moved to the device."""
        device = self.resolve_device()
        d = self.build_data()
        return self.build_model(d).to(device), d, device


def file_sha256(path) -> str:
    """The SHA-256 of a file's content (hex), read in blocks.

    Examples
    --------
    >>> file_sha256("model.pt")[:12]   # doctest: +SKIP
    '3f1c0a9be2d4'
    """
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_device(device: Any = "auto", check: bool = True):
    """``device`` as a ``torch.device``: ``auto`` is CUDA when available, else the CPU.

    The name is checked first without importing torch (``check=False`` stops there, for config
    validation); the machine check is :func:`lossatlas.landscape.devices.resolve_device`, the
    one that the landscape and training use too. A device this machine does not have is refused
    with the reason, before any work.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    text = str(device if device is not None else "auto").strip().lower()
    kind, _, index = text.partition(":")
    require(kind in ("auto", "cpu", "cuda", "mps") and (not index or (kind == "cuda" and index.isdigit())),
            f"unknown device {device!r}; choose one of {list(DEVICES)}")
    if not check:
        return None
    from .landscape.devices import resolve_device as checked_device  # the one device check

    return checked_device(text)

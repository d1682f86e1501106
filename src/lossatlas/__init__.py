"""lossatlas: sample, draw and measure the loss landscapes of PyTorch models.

Examples
--------
>>> import lossatlas as la
>>> f = la.Landscape(model, (X, y), loss="cross_entropy", bn="eval")
>>> ds = la.plane(f, f.origin, la.random_directions(model, n=2, seed=0), span=1.0, steps=31)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names and the module that defines each; modules load on first use, so that
# `import lossatlas` stays cheap and optional extras (phate, umap, gudhi, dask) load only if used.
_EXPORTS = {
    "ParamSpace": "space",
    "random_directions": "space",
    "make_directions": "space",
    "normalize_direction": "space",
    "direction_between": "space",
    "cosine": "space",
    "RunDir": "store",
    "Landscape": "landscape",
    "line": "surface",
    "plane": "surface",
    "train": "train",
    "Run": "train",
    "pca_directions": "trajectory",
    "project": "trajectory",
    "jump_retrain": "jump",
    "grid_sample": "jump",
    "naive_sample": "jump",
    "PHATE": "embed",
    "TSNE": "embed",
    "UMAP": "embed",
    "PCA": "embed",
    "RandomProjection": "embed",
    "demap": "embed",
    "trajectory_continuity": "embed",
    "load_data": "data",
    "InputError": "_errors",
}

_SUBMODULES = {
    "space", "store", "landscape", "surface", "jump", "trajectory", "embed", "plot", "data",
    "models", "cli",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


# `train` is both a module and its main function. Importing the submodule anywhere would set the
# package attribute to the module, so the function is bound here, once, after that import.
from .train import train  # noqa: E402

globals()["train"] = train


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lossatlas' has no attribute {name!r}")


def __dir__():
    return __all__

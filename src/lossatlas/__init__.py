"""lossatlas: sample, draw and measure the loss landscapes of PyTorch models.

``import lossatlas`` is cheap: every public name below loads its module on first use, so that
torch, xarray, matplotlib, scikit-learn and the optional extras (phate, umap, gudhi, dask) load
only when something needs them.

Examples
--------
>>> import lossatlas as la
>>> f = la.Landscape(model, (X, y), loss="cross_entropy", bn="eval")
>>> ds = la.plane(f, f.origin, la.random_directions(model, n=2, seed=0), span=1.0, steps=31)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names and the module that defines each. No module shares a name with a function
# (`training` not `train`, `connectivity` not `connect`): importing a submodule sets the
# package attribute of its name, which would hide the function.
_EXPORTS = {
    "ParamSpace": "space",
    "random_directions": "space",
    "make_directions": "space",
    "normalize_direction": "space",
    "direction_between": "space",
    "cosine": "space",
    "RunDir": "store",
    "InputError": "_errors",
    "StoreMismatchError": "_errors",
    "Source": "sources",
    "Landscape": "landscape",
    "line": "surface",
    "plane": "surface",
    "train": "training",
    "Run": "training",
    "TrainConfig": "training",
    "Recorder": "recording",
    "jump_retrain": "jump",
    "grid_sample": "jump",
    "naive_sample": "jump",
    "hessian_eigenvalues": "curvature",
    "hessian_trace": "curvature",
    "spectral_density": "curvature",
    "convexity_map": "curvature",
    "hessian_directions": "curvature",
    "curvature_operator": "curvature",
    "block_spectra": "curvature",
    "connect": "connectivity",
    "align": "alignment",
    "pca_directions": "trajectory",
    "project": "trajectory",
    "PHATE": "embedding",
    "TSNE": "embedding",
    "UMAP": "embedding",
    "PCA": "embedding",
    "RandomProjection": "embedding",
    "demap": "embedding",
    "trajectory_continuity": "embedding",
    "embed": "embedding",
    "persistence": "topology",
    "total_persistence": "topology",
    "persistence_totals": "topology",
    "DisconnectedGraphWarning": "topology",
    "predict": "prediction",
    "run_sweep": "sweep",
    "predict_sweep": "sweep",
    "run_study": "studies",
    "load_data": "data",
    "build_report": "report",
    "DaskExecutor": "execute",
    "WorkerLostError": "execute",
}

_SUBMODULES = {
    "space", "store", "sources", "landscape", "grids", "lines", "surface", "training", "jump", "curvature",
    "sharpness", "connectivity", "alignment", "trajectory", "embedding", "topology", "diagrams", "prediction", "plot",
    "report", "data",
    "models", "execute", "demo", "studies", "sweep", "cli", "recording", "integrations",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES - set(_EXPORTS))


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lossatlas' has no attribute {name!r}")


def __dir__():
    return __all__

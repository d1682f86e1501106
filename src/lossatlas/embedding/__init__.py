"""Floor 4 (analysis): embeddings of sampled weights (PHATE, t-SNE, UMAP, PCA, a random plane)
and the scores of how well they keep trajectories.

Pure NumPy/SciPy/scikit-learn on weight samples: an array ``[n_points, n_params]``, an
``xarray`` Dataset/DataArray ``weights (point, param)`` (possibly zarr backed) or a zarr path.
Every method but the random plane works from the streamed Gram matrix of the points.

Modules: ``methods`` (names of methods and metrics), ``resources`` (memory and thread budgets),
``inputs`` (sample adapters, the zarr fast path), ``gram`` (the streamed Gram matrix and the Gram
PCA), ``base`` (the estimator conventions), ``phate``, ``tsne``, ``umap``, ``pca`` (PCA and the
random plane), ``scores`` (DeMAP, trajectory continuity, kNN geodesics), ``tree`` (synthetic
tree), ``driver`` (:func:`embed` and :func:`make_estimator`).
"""

from .base import EmbeddingEstimator
from .driver import ESTIMATORS, embed, make_estimator
from .gram import Gram, GramPCA, gram_matrix, pca_from_gram
from .methods import METHODS, Method, Metric
from .pca import PCA, RandomProjection
from .phate import PHATE
from .scores import demap, trajectory_continuity
from .tree import make_tree
from .tsne import TSNE
from .umap import UMAP

__all__ = [
    "ESTIMATORS",
    "METHODS",
    "PCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "EmbeddingEstimator",
    "Gram",
    "GramPCA",
    "Method",
    "Metric",
    "RandomProjection",
    "demap",
    "embed",
    "gram_matrix",
    "make_estimator",
    "make_tree",
    "pca_from_gram",
    "trajectory_continuity",
]

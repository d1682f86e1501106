"""PHATE (Moon et al. 2019) on weight samples, from the streamed Gram matrix.

Which cosine PHATE sees. Horoi et al. describe cosine distance on the weights. The ``phate`` package
they use, given ``knn_dist="cosine"`` and raw data, first projects the data on its first
``n_pca=100`` principal components (centring it) and takes cosines between those scores: angles
seen from the mean of the samples, not from the origin of weight space. The two geometries differ.
On synthetic jump-and-retrain data (16 trajectories x 40 epochs, 50k parameters, see
``bench/embed.py``) the centred version kept trajectories far better (trajectory continuity
0.93-0.98 against 0.43-0.47 for raw-weight cosine; DeMAP 0.49-0.55 against 0.40-0.45), so
:class:`PHATE` defaults to ``distances="pca"``: what the package does, with exact rather than
randomized PCA, computed from the streamed Gram matrix. ``distances="centered"`` keeps every
component and ``distances="weights"`` uses the raw-weight cosine.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.spatial.distance import pdist, squareform

from lossatlas._errors import missing_extra, positive_int, require

from .base import EmbeddingEstimator
from .gram import Gram, pca_from_gram
from .methods import Metric, parse_metric

__all__ = ["PHATE"]


class PHATE(EmbeddingEstimator):
    """PHATE (Moon et al. 2019) with cosine distances, as Horoi et al. use it on weights.

    Wraps the ``phate`` package; the weights are reduced once, streamed, to their Gram matrix. The
    kNN graph is built from

    - ``distances="pca"`` (default): the first ``n_pca`` exact principal-component scores of the
      centred weights, compared with ``metric``: what ``phate.PHATE(knn_dist=metric)`` does with the
      raw data;
    - ``distances="centered"``: the same with every component (exact distances of centred weights);
    - ``distances="weights"``: exact ``metric`` distances between the raw weight vectors (cosine seen
      from the origin of weight space), passed as ``knn_dist="precomputed_distance"``.

    On synthetic jump-and-retrain trajectories the centred variants keep trajectories much better
    than raw-weight cosine (see the module docstring). ``phate`` always receives the full distance
    matrix (``knn_dist="precomputed_distance"``). Metric MDS of the diffusion potential uses
    ``mds_metric``.

    Parameters
    ----------
    n_components : int
    metric : {"cosine", "euclidean"}
        Distance between points for the kNN graph.
    mds_metric : {"cosine", "euclidean"}
        Distance between rows of the diffusion potential for metric MDS.
    knn, decay, t, gamma, n_landmark, mds_solver : as in ``phate.PHATE``
    n_pca : int
        Principal components kept with ``distances="pca"``.
    distances : {"pca", "centered", "weights"}
    seed : int
    n_jobs : int
    chunk, max_memory : streaming settings, see :meth:`Gram.from_samples`
    verbose : int

    Attributes
    ----------
    embedding_ : ndarray [n, n_components]
    potential_ : ndarray [n, m]
        Diffusion potential (m = n, or the number of landmarks when n > n_landmark).
    t_ : int
        The diffusion time used (the knee of the von Neumann entropy when ``t="auto"``).

    Examples
    --------
    >>> from lossatlas.embedding import make_tree
    >>> X, branch, pos = make_tree(n_branches=3, points_per_branch=40, n_dims=20, seed=0)
    >>> PHATE(metric="euclidean").fit(X).embedding_.shape
    (120, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        metric: str = "cosine",
        mds_metric: str = "cosine",
        knn: int = 5,
        decay: float | None = 40,
        t: int | str = "auto",
        n_pca: int = 100,
        gamma: float = 1,
        seed: int = 0,
        n_jobs: int = 1,
        distances: str = "pca",
        n_landmark: int | None = 2000,
        mds_solver: str = "sgd",
        chunk: int | None = None,
        max_memory: int | None = None,
        verbose: int = 0,
    ):
        self.n_components = n_components
        self.metric = metric
        self.mds_metric = mds_metric
        self.knn = knn
        self.decay = decay
        self.t = t
        self.n_pca = n_pca
        self.gamma = gamma
        self.seed = seed
        self.n_jobs = n_jobs
        self.distances = distances
        self.n_landmark = n_landmark
        self.mds_solver = mds_solver
        self.chunk = chunk
        self.max_memory = max_memory
        self.verbose = verbose

    def validate(self) -> None:
        super().validate()
        parse_metric(self.mds_metric)
        positive_int("knn", self.knn)
        positive_int("n_pca", self.n_pca)
        require(self.decay is None or (isinstance(self.decay, numbers.Real) and self.decay > 0),
                f"decay must be a positive number or None, got {self.decay!r}")
        require(self.t == "auto" or (isinstance(self.t, numbers.Integral) and self.t >= 1),
                f"t must be 'auto' or a positive integer, got {self.t!r}")
        require(isinstance(self.gamma, numbers.Real) and -1 <= self.gamma <= 1,
                f"gamma must lie in [-1, 1] (1: log potential, 0: square root), got {self.gamma!r}")
        require(self.distances in ("pca", "centered", "weights"),
                "distances must be 'pca' (first n_pca scores of the centred weights), 'centered' (all "
                f"of them) or 'weights' (raw weight vectors), got {self.distances!r}")
        require(self.mds_solver in ("sgd", "smacof"), f"mds_solver must be 'sgd' or 'smacof', got {self.mds_solver!r}")
        require(self.n_landmark is None or (isinstance(self.n_landmark, numbers.Integral) and self.n_landmark >= 2),
                f"n_landmark must be None or an integer >= 2, got {self.n_landmark!r}")

    def check_n_points(self, n: int) -> None:
        super().check_n_points(n)
        require(
            n >= self.knn + 1,
            f"PHATE with knn={self.knn} needs at least knn + 1 = {self.knn + 1} points, got {n}; "
            f"lower knn (e.g. knn={max(1, n - 1)}) or sample more points",
        )

    def fit_gram(self, gram: Gram) -> PHATE:
        try:
            import phate
        except ImportError:
            raise missing_extra("phate", "embed") from None
        metric = parse_metric(self.metric)
        if self.distances == "pca":
            scores = pca_from_gram(gram, min(self.n_pca, gram.n)).scores
            if metric is Metric.COSINE:
                zero = np.flatnonzero(~(np.abs(scores).max(axis=1) > 0)).tolist()
                require(not zero, f"points {zero[:20]} equal the mean of the samples, so their centred "
                                  "cosine distance is undefined; use distances='weights' or metric='euclidean'")
            data = squareform(pdist(scores, metric.value))
        else:
            data = gram.distances(metric, centered=self.distances == "centered")
        # The graph is always built from a full distance matrix (phate's exact kernel). Besides being
        # exact, this avoids graphtools' kNN search, which with cosine on nearly equidistant points
        # (iid high-dimensional samples) returns a graph without edges.
        op = phate.PHATE(
            n_components=self.n_components,
            knn=self.knn,
            decay=self.decay,
            n_landmark=self.n_landmark,
            t=self.t,
            gamma=self.gamma,
            n_pca=None,
            mds_solver=self.mds_solver,
            knn_dist="precomputed_distance",
            mds_dist=parse_metric(self.mds_metric).value,
            mds="metric",
            n_jobs=self.n_jobs,
            random_state=self.seed,
            verbose=self.verbose,
        )
        with _phate_warnings_as_python_warnings():
            embedding = op.fit_transform(data)
        self.embedding_ = np.asarray(embedding, dtype=np.float64)
        self.potential_ = np.asarray(op.diff_potential)
        self.t_ = int(op.optimal_t if self.t == "auto" else self.t)
        self.n_points_ = gram.n
        return self


class _phate_warnings_as_python_warnings:
    """Turn phate's logged warnings (printed to stdout by tasklogger) into RuntimeWarnings.

    Callers can then filter them like any warning, and printed output stays clean.
    """

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("graphtools")  # the logger phate and graphtools share

        def to_warning(record):
            if record.levelno >= logging.WARNING:
                warnings.warn(f"phate: {record.getMessage().strip()}", RuntimeWarning, stacklevel=2)
                return False
            return True

        self.filter = to_warning
        self.logger.addFilter(self.filter)
        return self

    def __exit__(self, *exc):
        self.logger.removeFilter(self.filter)
        return False

"""Predicting a network's generalization (or training settings) from values sampled around its minimum.

Horoi et al. (IDA 2022, section 4.2, Table 1) train 11 simple classifiers, untuned and the same for
every feature set, on the sampled train losses and accuracies of many networks, and compare the
mean accuracy of 10-fold cross-validation across feature sets (J&R, grid, naive, scrambled J&R)
and against chance. This module holds that experiment's statistics: the classifiers, the
cross-validation, chance, a permutation test, the quintile generalization classes and the
scrambled control.

Floor 4 (analysis): NumPy, SciPy and scikit-learn only.
"""

from __future__ import annotations

import numbers
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._errors import InputError, positive_int, require

__all__ = [
    "CLASSIFIERS",
    "chance_level",
    "classifiers",
    "permutation_test",
    "predict",
    "quintile_classes",
    "scramble",
]

#: Names of the 11 classifiers of :func:`predict`, in the order they run.
CLASSIFIERS = (
    "logistic_regression",
    "linear_svm",
    "rbf_svm",
    "knn",
    "decision_tree",
    "random_forest",
    "extra_trees",
    "gradient_boosting",
    "adaboost",
    "gaussian_nb",
    "lda",
)


def classifiers(seed: int = 0) -> dict[str, Any]:
    """The 11 untuned classifiers, each a pipeline that standardizes the features first.

    scikit-learn defaults throughout, except ``max_iter=1000`` for logistic regression (its default
    100 stops early on standardized high-dimensional features) and ``random_state=seed`` for the
    randomized ones. Standardizing inside the pipeline fits the scaler on each training fold only.
    Gradient boosting is the classic one: the histogram variant's default leaf size (20) leaves it
    unable to split on a few dozen networks. It looks at ``sqrt(n_features)`` features per split, as
    the random forests do: with all 1280 features it took 21.6 s per fit (one thread, 108 networks,
    5 classes; all other classifiers together about 3 s), which made a Table 1 of 12 cells x 10
    folds cost most of an hour.

    =====================  =====================================================
    ``logistic_regression``  ``LogisticRegression(max_iter=1000)``
    ``linear_svm``           ``SVC(kernel="linear")``
    ``rbf_svm``              ``SVC(kernel="rbf")``
    ``knn``                  ``KNeighborsClassifier()`` (5 neighbours)
    ``decision_tree``        ``DecisionTreeClassifier``
    ``random_forest``        ``RandomForestClassifier`` (100 trees)
    ``extra_trees``          ``ExtraTreesClassifier`` (100 trees)
    ``gradient_boosting``    ``GradientBoostingClassifier(max_features="sqrt")``
    ``adaboost``             ``AdaBoostClassifier``
    ``gaussian_nb``          ``GaussianNB()``
    ``lda``                  ``LinearDiscriminantAnalysis()``
    =====================  =====================================================

    Examples
    --------
    >>> sorted(classifiers(seed=0)) == sorted(CLASSIFIERS)
    True
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import (AdaBoostClassifier, ExtraTreesClassifier, GradientBoostingClassifier,
                                  RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    seed = _seed(seed)
    models = {
        "logistic_regression": LogisticRegression(max_iter=1000),
        "linear_svm": SVC(kernel="linear"),
        "rbf_svm": SVC(kernel="rbf"),
        "knn": KNeighborsClassifier(),
        "decision_tree": DecisionTreeClassifier(random_state=seed),
        "random_forest": RandomForestClassifier(random_state=seed),
        "extra_trees": ExtraTreesClassifier(random_state=seed),
        "gradient_boosting": GradientBoostingClassifier(max_features="sqrt", random_state=seed),
        "adaboost": AdaBoostClassifier(random_state=seed),
        "gaussian_nb": GaussianNB(),
        "lda": LinearDiscriminantAnalysis(),
    }
    return {name: make_pipeline(StandardScaler(), models[name]) for name in CLASSIFIERS}


def _seed(seed: Any) -> int:
    require(isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= int(seed) < 2**32,
            f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _as_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "dims") and hasattr(x, "values"):  # xarray DataArray
        x = x.values
    return np.asarray(x)


def _features(features: Any) -> np.ndarray:
    X = _as_numpy(features)
    if X.ndim == 1:
        X = X[:, None]
    require(X.ndim == 2, f"features must be a 2-D array [n_networks, n_features], got shape {X.shape}")
    require(X.dtype.kind in "fiub", f"features must be real numbers, got dtype {X.dtype}")
    X = X.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    require(bad.size == 0, f"features of {bad.size} network(s) contain NaN or inf (rows {bad[:20].tolist()}); "
                           "drop those networks or replace the values (e.g. np.nan_to_num) first")
    return X


def _labels(labels: Any, n: int | None = None) -> np.ndarray:
    y = _as_numpy(labels)
    require(y.ndim == 1, f"labels must be 1-D (one per network), got shape {y.shape}")
    require(n is None or y.shape[0] == n, f"labels has {y.shape[0]} entries but features has {n} rows")
    if y.dtype.kind == "f":
        require(not np.isnan(y).any(), "labels contain NaN; drop those networks first")
    classes = np.unique(y)
    require(classes.size >= 2, f"labels need at least 2 classes, got {classes.size}")
    return y


def _groups(groups: Any, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    g = _as_numpy(groups)
    require(g.ndim == 1, f"groups must be 1-D (one label per network), got shape {g.shape}")
    require(g.shape[0] == n, f"groups has {g.shape[0]} entries but features has {n} rows")
    if g.dtype.kind == "f":
        require(not np.isnan(g).any(), "groups contain NaN; give every network a group")
    return g


def _folds(folds: Any, y: np.ndarray, seed: int, groups: np.ndarray | None = None):
    """The splitter: stratified k-fold (the paper's protocol), or with ``groups`` scikit-learn's
    ``StratifiedGroupKFold``, which keeps each group in one fold and balances the classes as far as
    the groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    folds = positive_int("folds", folds, minimum=2)
    require(folds <= y.shape[0], f"folds={folds} is more than the {y.shape[0]} networks; lower folds")
    if groups is not None:
        n_groups = np.unique(groups).size
        require(folds <= n_groups, f"folds={folds} is more than the {n_groups} groups; lower folds (each group "
                                   "stays in one fold)")
        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, counts = np.unique(y, return_counts=True)
    require(counts.max() >= folds, f"folds={folds} needs a class with at least {folds} members, the largest has "
                                   f"{counts.max()}; lower folds")
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


@contextmanager
def _quiet_untuned():
    """Untuned defaults meet small, wide data: non-converged solvers and collinear features for LDA are
    expected here and would repeat once per fold and classifier; the fits are kept as they are."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Variables are collinear")
        yield


def predict(features: Any, labels: Any, folds: int = 10, seed: int = 0,
            n_jobs: int | None = None, names: Any = None, groups: Any = None) -> dict[str, Any]:
    """Mean cross-validated accuracy of the 11 untuned classifiers of :func:`classifiers`.

    Each classifier (logistic regression, linear SVM, RBF SVM, 5-nearest neighbours, decision tree,
    random forest, extra trees, gradient boosting, AdaBoost, Gaussian naive Bayes, linear
    discriminant analysis; features standardized inside each pipeline) is scored by stratified
    ``folds``-fold cross-validation, shuffled with ``seed``, with the same splits for all of them.

    With ``groups``, the folds keep each group whole (scikit-learn's ``StratifiedGroupKFold``): a
    network is never scored by classifiers trained on a member of its own group. Networks that
    differ in nothing but a setting that barely changes them (near-twins) leak their features
    across plain stratified folds: a twin with another label sits in the training fold. Grouping
    the networks that share every setting but the one predicted removes that.

    Parameters
    ----------
    features : array [n_networks, n_features]
        E.g. each network's sampled train losses and accuracies.
    labels : array [n_networks]
        Classes, e.g. :func:`quintile_classes` of the test loss, or the weight decay.
    folds : int
        Number of folds (the paper uses 10).
    seed : int
        Seeds the splits and the randomized classifiers.
    n_jobs : int, optional
        Folds evaluated in parallel (scikit-learn's ``n_jobs``).
    names : sequence of str, optional
        A subset of :data:`CLASSIFIERS` (default all 11), e.g. the fast ones for a first look.
    groups : array [n_networks], optional
        A group label per network; each group is kept in one fold (``None``: plain stratified
        folds, Horoi et al.'s protocol). Needs at least ``folds`` groups.

    Returns
    -------
    dict with ``"protocol"`` (``"stratified"`` or ``"grouped"``), ``"mean"`` (mean over classifiers of their mean fold accuracy, a fraction), ``"sem"``
    (standard error of that mean over the 11 classifiers) and ``"classifiers"`` (name -> mean
    accuracy).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = y[:, None] + 0.3 * rng.normal(size=(40, 3))
    >>> predict(X, y, folds=5)["mean"] > 0.9
    True
    >>> predict(X, y, folds=5, groups=np.arange(40) // 2)["protocol"]
    'grouped'
    """
    from sklearn.model_selection import cross_val_score

    X = _features(features)
    y = _labels(labels, X.shape[0])
    g = _groups(groups, X.shape[0])
    seed = _seed(seed)
    cv = _folds(folds, y, seed, g)
    chosen = list(CLASSIFIERS) if names is None else [str(n) for n in names]
    unknown = sorted(set(chosen) - set(CLASSIFIERS))
    require(not unknown and len(chosen) >= 2, f"names must be at least 2 of {list(CLASSIFIERS)}; unknown: {unknown}")
    scores = {}
    with _quiet_untuned():
        for name, model in classifiers(seed).items():
            if name not in chosen:
                continue
            scores[name] = float(np.mean(cross_val_score(model, X, y, cv=cv, groups=g, scoring="accuracy",
                                                         n_jobs=n_jobs)))
    acc = np.array(list(scores.values()))
    return {"protocol": "stratified" if g is None else "grouped", "mean": float(acc.mean()), "sem": float(acc.std(ddof=1) / np.sqrt(acc.size)), "classifiers": scores}


def chance_level(labels: Any, kind: str = "uniform") -> float:
    """Chance accuracy for ``labels``.

    ``kind="uniform"``: 1 / number of classes, the "theoretical random" row of Horoi et al.'s
    Table 1. ``kind="majority"``: the fraction of the largest class (what always guessing it scores).

    Examples
    --------
    >>> chance_level([0, 0, 1, 2, 3])
    0.25
    >>> chance_level([0, 0, 1, 2, 3], kind="majority")
    0.4
    """
    y = _labels(labels)
    _, counts = np.unique(y, return_counts=True)
    if kind == "uniform":
        return 1.0 / counts.size
    if kind == "majority":
        return float(counts.max() / counts.sum())
    raise InputError(f"unknown kind {kind!r}; choose one of ['uniform', 'majority']")


def permutation_test(features: Any, labels: Any, classifier: str = "logistic_regression",
                     n_permutations: int = 100, folds: int = 10, seed: int = 0,
                     n_jobs: int | None = None, groups: Any = None) -> dict[str, Any]:
    """Permutation test of one classifier's cross-validated accuracy (scikit-learn's
    ``permutation_test_score``): how often labels shuffled at random score as well.

    Parameters
    ----------
    features, labels, folds, seed, n_jobs
        As :func:`predict`; ``seed`` also draws the permutations.
    groups : array [n_networks], optional
        As :func:`predict`: the folds keep each group whole. The labels are still permuted across
        all networks (the splits are fixed once from the true labels and groups).
    classifier : str
        One of :data:`CLASSIFIERS`.
    n_permutations : int

    Returns
    -------
    dict with ``"classifier"``, ``"accuracy"`` (on the true labels), ``"permutation_scores"``
    (array [n_permutations]) and ``"pvalue"`` ((1 + #permutations scoring at least as well) /
    (1 + n_permutations)).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = y[:, None] + 0.3 * rng.normal(size=(40, 3))
    >>> permutation_test(X, y, n_permutations=20, folds=5)["pvalue"] < 0.1
    True
    """
    from sklearn.model_selection import permutation_test_score

    require(classifier in CLASSIFIERS, f"unknown classifier {classifier!r}; choose one of {list(CLASSIFIERS)}")
    X = _features(features)
    y = _labels(labels, X.shape[0])
    seed = _seed(seed)
    n_permutations = positive_int("n_permutations", n_permutations)
    g = _groups(groups, X.shape[0])
    cv = _folds(folds, y, seed, g)
    if g is not None:
        # Fixed grouped splits; permutation_test_score's own groups= would permute within groups.
        cv = list(cv.split(X, y, g))
    with _quiet_untuned():
        score, perm, pvalue = permutation_test_score(
            classifiers(seed)[classifier], X, y, cv=cv, n_permutations=n_permutations,
            random_state=seed, scoring="accuracy", n_jobs=n_jobs)
    return {"classifier": classifier, "accuracy": float(score), "permutation_scores": np.asarray(perm),
            "pvalue": float(pvalue)}


def quintile_classes(test_loss: Any, n: int = 5) -> np.ndarray:
    """Generalization classes by quantiles of the test loss at the optimum (Horoi et al. section 4.2).

    Class 0 holds the ~1/n of networks with the lowest test loss (the paper's class 1), class
    ``n - 1`` the highest. Classes come from ranks, so their sizes differ by at most one (ties share
    the class of their average rank).

    Examples
    --------
    >>> quintile_classes([0.9, 0.1, 0.5, 0.3, 0.7], n=5).tolist()
    [4, 0, 2, 1, 3]
    """
    from scipy.stats import rankdata

    x = _as_numpy(test_loss)
    require(x.ndim == 1, f"test_loss must be 1-D (one per network), got shape {x.shape}")
    require(x.dtype.kind in "fiu", f"test_loss must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    bad = np.flatnonzero(np.isnan(x))
    require(bad.size == 0, f"test_loss is NaN for networks {bad[:20].tolist()}; drop them before ranking")
    n = positive_int("n", n, minimum=2)
    require(x.size >= n, f"{x.size} networks cannot fill n={n} classes; lower n")
    ranks = rankdata(x, method="average") - 1.0  # 0 .. N-1
    return np.minimum((ranks * n / x.size).astype(np.int64), n - 1)


def scramble(features: Any, seed: int = 0) -> np.ndarray:
    """The scrambled control of Horoi et al.'s Table 1: each feature (column) shuffled across networks
    independently, which keeps every feature's distribution and breaks its link to the network.

    Examples
    --------
    >>> X = np.arange(12.0).reshape(4, 3)
    >>> sorted(scramble(X, seed=1)[:, 0]) == sorted(X[:, 0])
    True
    """
    X = _features(features)
    rng = np.random.default_rng(_seed(seed))
    return rng.permuted(X, axis=0)

"""Tests of lossatlas.prediction: above chance on features that carry the class, near chance on the
scrambled control, the returned statistics, quintile classes, chance, the permutation test, errors."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lossatlas._errors import InputError
from lossatlas.prediction import CLASSIFIERS, chance_level, permutation_test, predict, quintile_classes, scramble


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _networks(n=60, informative=4, noise=16, seed=0):
    """n 'networks' in 3 classes; the first features are shifted by the class, the rest are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, informative + noise))
    X[:, :informative] += 2.0 * y[:, None]
    return X, y


def test_predict_is_well_above_chance_on_features_that_carry_the_class_and_near_it_when_scrambled():
    X, y = _networks(n=45, noise=10)
    chance = chance_level(y)
    assert chance == pytest.approx(1 / 3)
    import lossatlas as la

    good = la.predict(X, y, folds=3, seed=0)
    assert set(good) == {"protocol", "mean", "sem", "classifiers"} and good["protocol"] == "stratified"
    assert list(good["classifiers"]) == list(CLASSIFIERS) and len(CLASSIFIERS) == 11
    acc = np.array(list(good["classifiers"].values()))
    assert good["mean"] == pytest.approx(acc.mean())
    assert good["sem"] == pytest.approx(acc.std(ddof=1) / np.sqrt(11))
    assert good["mean"] > 0.75 and acc.min() > chance + 0.15

    scrambled = predict(scramble(X, seed=1), y, folds=3, seed=0)
    assert abs(scrambled["mean"] - chance) < 0.12
    assert good["mean"] - scrambled["mean"] > 0.4


def test_randomness_comes_from_the_seed_only():
    from lossatlas.prediction import classifiers

    for name, pipe in classifiers(seed=5).items():
        model = pipe[-1]
        assert pipe[0].__class__.__name__ == "StandardScaler"  # scaling is fitted inside each fold
        if "random_state" in model.get_params():
            assert model.random_state in (5, None), name
    X, y = _networks(n=12, noise=2)
    runs = [permutation_test(X, y, classifier="decision_tree", n_permutations=3, folds=2, seed=1) for _ in range(2)]
    assert runs[0]["accuracy"] == runs[1]["accuracy"]
    np.testing.assert_array_equal(runs[0]["permutation_scores"], runs[1]["permutation_scores"])


def test_scramble_keeps_each_feature_distribution_and_breaks_rows():
    X, _ = _networks()
    S = scramble(X, seed=3)
    np.testing.assert_array_equal(np.sort(S, axis=0), np.sort(X, axis=0))
    assert not np.array_equal(S, X)
    # columns are shuffled independently, not as whole rows
    rows = {tuple(r) for r in X}
    assert sum(tuple(r) in rows for r in S) < 3
    np.testing.assert_array_equal(scramble(X, seed=3), S)


def test_quintile_classes_rank_the_test_loss():
    rng = np.random.default_rng(0)
    loss = rng.random(108)
    c = quintile_classes(loss)
    assert sorted(np.bincount(c).tolist()) == [21, 21, 22, 22, 22]
    # lower test loss, lower class, everywhere
    order = np.argsort(loss)
    assert np.all(np.diff(c[order]) >= 0) and c[order[0]] == 0 and c[order[-1]] == 4
    assert quintile_classes([0.9, 0.1, 0.5, 0.3, 0.7]).tolist() == [4, 0, 2, 1, 3]
    assert quintile_classes([1.0, 1.0, 2.0, 2.0], n=2).tolist() == [0, 0, 1, 1]  # ties share a class
    with pytest.raises(InputError, match="NaN"):
        quintile_classes([0.1, np.nan, 0.3, 0.2, 0.5])


def test_chance_levels():
    assert chance_level(["a", "b", "b", "c"]) == pytest.approx(1 / 3)
    assert chance_level(["a", "b", "b", "c"], kind="majority") == pytest.approx(0.5)
    with pytest.raises(InputError, match="majority"):
        chance_level([0, 1], kind="best")


def test_permutation_test_separates_signal_from_noise():
    X, y = _networks(n=45, noise=4)
    real = permutation_test(X, y, n_permutations=19, folds=3, seed=0)
    assert real["classifier"] == "logistic_regression" and real["permutation_scores"].shape == (19,)
    assert real["accuracy"] > 0.8 and real["pvalue"] == pytest.approx(1 / 20)
    noise = permutation_test(scramble(X, seed=2), y, n_permutations=19, folds=3, seed=0)
    assert noise["pvalue"] > 0.1
    with pytest.raises(InputError, match="unknown classifier"):
        permutation_test(X, y, classifier="xgboost")


def test_bad_input_is_refused_before_any_fit():
    X, y = _networks(n=20)
    with pytest.raises(InputError, match="labels has 19"):
        predict(X, y[:-1])
    with pytest.raises(InputError, match="at least 2 classes"):
        predict(X, np.zeros(20))
    with pytest.raises(InputError, match="NaN or inf"):
        predict(np.where(np.eye(20, 20, dtype=bool), np.nan, X), y)
    with pytest.raises(InputError, match="folds"):
        predict(X, y, folds=1)
    with pytest.raises(InputError, match="lower folds"):
        predict(X, y, folds=25)
    with pytest.raises(InputError, match="seed"):
        predict(X, y, seed=-1)


def _twins(groups=40, members=3, classes=4, dim=20, seed=0):
    """Near-identical 'networks' in groups (e.g. sweep siblings that differ only in a weight decay
    that barely changes them), each group's label drawn at random: the features identify the group,
    and nothing generalizes from one group to another."""
    rng = np.random.default_rng(seed)
    group_label = rng.permutation(np.arange(groups) % classes)
    centres = rng.normal(size=(groups, dim))
    g = np.repeat(np.arange(groups), members)
    X = centres[g] + 0.01 * rng.normal(size=(g.size, dim))
    return X, group_label[g], g


def test_grouped_folds_remove_the_leak_between_twins():
    X, y, g = _twins()
    fast = ("logistic_regression", "linear_svm", "decision_tree")  # fast, and they remember what they saw
    leaky = predict(X, y, folds=5, names=fast)
    # Before: predict() had no groups= (TypeError: unexpected keyword argument 'groups'); its only
    # protocol, stratified folds, scores these twins 0.94 against chance 0.25.
    grouped = predict(X, y, folds=5, names=fast, groups=g)
    assert leaky["protocol"] == "stratified" and grouped["protocol"] == "grouped"
    assert leaky["mean"] > 0.9  # a held-out network's twin, same label, sits in the training fold
    assert abs(grouped["mean"] - chance_level(y)) < 0.15
    # the splits keep every group in one fold: no test network has a twin in training
    from lossatlas.prediction import _folds

    for train, test in _folds(5, y, 0, g).split(X, y, g):
        assert not set(g[train]) & set(g[test])
    perm = permutation_test(X, y, classifier="linear_svm", n_permutations=9, folds=5, groups=g)
    assert perm["pvalue"] > 0.1  # nothing to find once the twins are kept apart
    leak = permutation_test(X, y, classifier="linear_svm", n_permutations=9, folds=5)
    assert leak["pvalue"] == pytest.approx(0.1) and leak["accuracy"] > 0.9


def test_groups_are_checked():
    X, y, g = _twins(groups=8)
    with pytest.raises(InputError, match="groups has 23"):
        predict(X, y, groups=g[:-1])
    with pytest.raises(InputError, match="10 is more than the 8 groups"):
        predict(X, y, folds=10, groups=g)

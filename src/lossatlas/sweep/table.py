"""Predicting generalization from a sweep's samples (``lossatlas predict SWEEP``): Horoi et al.
(2022) Table 1, and the total persistence against test loss of their Fig. 3B.

Three tasks, labelled from the sweep: the generalization class (quintiles of the test loss at the
optimum, 5 classes), the weight decay, and augmentation on or off. Four feature sets: the train
losses and accuracies of the J&R, grid and naive samples, and the J&R features scrambled (each
column shuffled across networks). Each cell of the table is the mean +- standard error over the
11 classifiers of :func:`lossatlas.prediction.predict` (10-fold stratified cross-validation); a
permutation test (``permutation_test_score``) checks the J&R cell of each task. Cells are stored
one by one in ``prediction.zarr`` (the classic gradient boosting takes minutes per cell on 1280
features), so an interrupted prediction resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from .._errors import require
from ..prediction import CLASSIFIERS, chance_level, permutation_test, predict, quintile_classes, scramble
from ..progress import progress_bar
from ..store import DONE, RunDir, fingerprint, provenance
from .driver import load_sweep

__all__ = ["FEATURES", "TASKS", "labels_of", "predict_sweep", "table_text", "features_table"]

#: Feature sets, in the order of the paper's table (bottom row first there).
FEATURES = ("jr", "naive", "grid", "scrambled_jr")
#: Prediction tasks.
TASKS = ("generalization", "weight_decay", "augmentation")
_TITLES = {"jr": "J&R sampling, retrain loss and accuracy", "naive": "Naive sampling, train loss and accuracy",
           "grid": "Grid sampling, train loss and accuracy", "scrambled_jr": "Scrambled J&R loss and accuracy",
           "chance": "Theoretical random (1/#classes)"}
_TASK_TITLES = {"generalization": "5 class gen.", "weight_decay": "Weight decay", "augmentation": "Data aug."}
#: The paper's Table 1 (percent), for the side-by-side text.
PAPER = {"chance": (20.0, 33.3, 50.0), "scrambled_jr": (20.7, 38.9, 52.7), "grid": (30.1, 51.1, 62.3),
         "naive": (31.8, 55.7, 67.6), "jr": (39.2, 58.2, 72.1)}


def labels_of(sweep: xr.Dataset) -> dict[str, np.ndarray]:
    """The three tasks' labels of each network: quintile class of test loss (0 lowest), the index of
    its weight decay, and augmentation (0/1)."""
    wd = np.asarray(sweep["weight_decay"].values, float)
    return {"generalization": quintile_classes(sweep["test_loss"].values, n=5),
            "weight_decay": np.searchsorted(np.unique(wd), wd),
            "augmentation": np.asarray(sweep["augment"].values).astype(int)}


def features_table(sweep: xr.Dataset, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The feature sets [n_networks, n_features] and, per set, how many non-finite values (diverged
    points) were replaced by that set's largest finite value (a diverged loss is a high loss; an
    accuracy of NaN is the lowest)."""
    out, replaced = {}, {}
    for s in ("jr", "grid", "naive"):
        X = np.asarray(sweep[f"{s}_features"].values, np.float64)
        bad = ~np.isfinite(X)
        replaced[s] = int(bad.sum())
        if bad.any():
            half = X.shape[1] // 2
            loss, acc = X[:, :half], X[:, half:]
            top = np.nanmax(np.where(np.isfinite(loss), loss, np.nan)) if np.isfinite(loss).any() else 1e6
            loss[~np.isfinite(loss)] = top
            acc[~np.isfinite(acc)] = 0.0
        out[s] = X
    out["scrambled_jr"] = scramble(out["jr"], seed=seed)
    replaced["scrambled_jr"] = replaced["jr"]
    return out, replaced


def _layout(settings: dict) -> xr.Dataset:
    nf, nt, nc = len(FEATURES), len(TASKS), len(CLASSIFIERS)
    data = {"mean": (("features", "task"), np.full((nf, nt), np.nan)),
            "sem": (("features", "task"), np.full((nf, nt), np.nan)),
            "classifier_accuracy": (("features", "task", "classifier"), np.full((nf, nt, nc), np.nan)),
            DONE: (("features", "task"), np.zeros((nf, nt), bool))}
    coords = {"features": list(FEATURES), "task": list(TASKS), "classifier": list(CLASSIFIERS)}
    return xr.Dataset(data, coords=coords, attrs={**provenance(), "kind": "prediction", "settings": settings})


def predict_sweep(out, folds: int = 10, seed: int = 0, permutations: int = 100, replace: bool = False,
                  progress: bool | Callable = False, partial: bool = False, n_jobs: int | None = None,
                  names=None, permutation_classifier: str = "linear_svm") -> dict:
    """Table 1 of a finished sweep: every feature set on every task, plus chance, a permutation
    test of the J&R features and the Spearman correlation of total persistence with test loss.

    Parameters
    ----------
    out : path or RunDir
        The sweep's run directory.
    folds, seed
        As :func:`lossatlas.prediction.predict` (seed also scrambles the control features).
    permutations : int
        Label permutations of the test (0: none).
    partial : bool
        Allow a sweep with networks still to train (its finished ones only); else refused.
    names : sequence of str, optional
        A subset of the 11 classifiers (default all: the paper's table).
    permutation_classifier : str
        The classifier of the permutation test: the linear SVM by default, one of the fast ones
        (0.13 s per fit on 58 networks x 1280 features, against 0.87 s for logistic regression,
        whose 100 permutations x 10 folds took 15 minutes per task).

    Returns
    -------
    dict: ``"table"`` (features -> task -> {"mean", "sem"}), ``"chance"`` (task -> 1/#classes),
    ``"permutation"`` (task -> {"accuracy", "pvalue", "classifier"}), ``"spearman"`` (D0 total
    persistence against test loss), ``"networks"`` and ``"replaced"`` (non-finite values per set).

    Examples
    --------
    >>> res = predict_sweep("runs/sweep-mnist1d-mlp")         # doctest: +SKIP
    >>> print(table_text(res))                                 # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    run = out if isinstance(out, RunDir) else RunDir(Path(out), create=False)
    sweep = load_sweep(run, complete=not partial)
    n = sweep.sizes["network"]
    require(n >= 2 * folds, f"{n} finished networks are too few for {folds}-fold cross-validation of 5 classes; "
            "finish the sweep or lower folds")
    labels = labels_of(sweep)
    feats, replaced = features_table(sweep, seed)
    chosen = list(CLASSIFIERS) if names is None else [c for c in CLASSIFIERS if c in set(names)]
    settings = {"kind": "prediction", "folds": int(folds), "seed": int(seed), "classifiers": chosen,
                "networks": [int(i) for i in sweep["network"].values],
                "features_fingerprint": fingerprint({k: v for k, v in feats.items()}),
                "labels_fingerprint": fingerprint(labels)}
    if run.check("prediction", settings, replace):
        done = run.done_mask("prediction")
    else:
        run.create_grid("prediction", _layout(settings), chunks={"features": 1, "task": 1})
        done = np.zeros((len(FEATURES), len(TASKS)), bool)
    # An axis the sweep holds one value of (e.g. no augmentation) is no task: its cells stay NaN.
    tasks = [t for t in TASKS if np.unique(labels[t]).size >= 2]
    cells = [(i, j) for i in range(len(FEATURES)) for j in range(len(TASKS)) if not done[i, j] and TASKS[j] in tasks]
    with progress_bar(progress, len(cells) + (len(tasks) if permutations else 0),
                      f"predict: {len(cells)} cells of {len(chosen)} classifiers x {folds} folds") as advance:
        for i, j in cells:
            res = predict(feats[FEATURES[i]], labels[TASKS[j]], folds=folds, seed=seed, n_jobs=n_jobs,
                          names=names)
            acc = np.asarray([res["classifiers"].get(c, np.nan) for c in CLASSIFIERS])
            run.write_cells("prediction", {"mean": np.array([[res["mean"]]]), "sem": np.array([[res["sem"]]]),
                                           "classifier_accuracy": acc[None, None]},
                            (slice(i, i + 1), slice(j, j + 1)))
            advance(1)
        perm = {}
        if permutations:
            require(permutation_classifier in CLASSIFIERS,
                    f"unknown permutation_classifier {permutation_classifier!r}; choose one of {list(CLASSIFIERS)}")
            psettings = {**settings, "permutations": int(permutations), "classifier": permutation_classifier}
            stored = run.open("permutation") if run.check("permutation", psettings, replace) else None
            if stored is not None:
                perm = {t: {"classifier": permutation_classifier, "accuracy": float(stored["accuracy"].sel(task=t)),
                            "pvalue": float(stored["pvalue"].sel(task=t))} for t in tasks}
                advance(len(tasks))
            else:
                scores = []
                for t in tasks:
                    p = permutation_test(feats["jr"], labels[t], classifier=permutation_classifier,
                                         n_permutations=permutations, folds=folds, seed=seed, n_jobs=n_jobs)
                    perm[t] = {k: p[k] for k in ("classifier", "accuracy", "pvalue")}
                    scores.append(p["permutation_scores"])
                    advance(1)
                run.save("permutation", xr.Dataset(
                    {"accuracy": ("task", [perm[t]["accuracy"] for t in tasks]),
                     "pvalue": ("task", [perm[t]["pvalue"] for t in tasks]),
                     "permutation_scores": (("task", "permutation"), np.asarray(scores))},
                    coords={"task": tasks}, attrs={**provenance(), "settings": psettings}))
    ds = run.open("prediction")
    table = {f: {t: {"mean": float(ds["mean"].sel(features=f, task=t)), "sem": float(ds["sem"].sel(features=f, task=t)),
                     "classifiers": {c: v for c, v in zip(CLASSIFIERS, ds["classifier_accuracy"].sel(features=f, task=t).values.tolist())
                                     if c in chosen}}
                 for t in TASKS} for f in FEATURES}
    tp, tl = np.asarray(sweep["tp_d0"].values), np.asarray(sweep["test_loss"].values)
    ok = np.isfinite(tp) & np.isfinite(tl)
    rho, p_rho = spearmanr(tp[ok], tl[ok])
    result = {"table": table, "chance": {t: chance_level(labels[t]) if t in tasks else float("nan") for t in TASKS},
              "permutation": perm,
              "spearman": {"d0_vs_test_loss": float(rho), "pvalue": float(p_rho), "networks": int(ok.sum())},
              "networks": int(n), "replaced": replaced, "folds": int(folds), "seed": int(seed)}
    run.update_summary(prediction={k: v for k, v in result.items()})
    _figure(run, sweep)
    return result


def _figure(run: RunDir, sweep: xr.Dataset) -> None:
    """Fig. 3B: D0 total persistence against test loss at the optimum, coloured by weight decay."""
    from ..plot.topology import plot_persistence_vs_test_loss

    plot_persistence_vs_test_loss(sweep["tp_d0"].values, sweep["test_loss"].values, color=sweep["weight_decay"].values,
                                  color_label="weight decay", path=run.figures / "persistence_vs_test_loss",
                                  title="Total persistence (D0) of the J&R samples vs test loss")


def table_text(result: dict) -> str:
    """The table as text, percent (mean +- standard error over the 11 classifiers), beside the paper's."""
    head = f"{'Features':<44}" + "".join(f"{_TASK_TITLES[t]:>16}" for t in TASKS) + "   paper"
    lines = [head, "-" * len(head)]
    chance = result["chance"]
    lines.append(f"{_TITLES['chance']:<44}" + "".join(f"{100 * chance[t]:>16.1f}" for t in TASKS)
                 + "   " + " / ".join(f"{v:.1f}" for v in PAPER["chance"]))
    for f in ("scrambled_jr", "grid", "naive", "jr"):
        row = result["table"][f]
        cells = "".join(f"{100 * row[t]['mean']:>9.1f} ± {100 * row[t]['sem']:<4.1f}" for t in TASKS)
        lines.append(f"{_TITLES[f]:<44}{cells}   " + " / ".join(f"{v:.1f}" for v in PAPER[f]))
    if result.get("permutation"):
        which = next(iter(result["permutation"].values()))["classifier"].replace("_", " ")
        lines.append(f"permutation test of the J&R features ({which}): " + "; ".join(
            f"{_TASK_TITLES[t]} {100 * p['accuracy']:.1f}%, p = {p['pvalue']:.3f}" for t, p in result["permutation"].items()))
    s = result["spearman"]
    lines.append(f"Spearman(total persistence D0, test loss) = {s['d0_vs_test_loss']:.3f} (p = {s['pvalue']:.2g}, "
                 f"{s['networks']} networks)")
    return "\n".join(lines)

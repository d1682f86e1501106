"""Predicting generalization from a sweep's samples (``lossatlas predict SWEEP``): Horoi et al.
(2022) Table 1, and the total persistence against test loss of their Fig. 3B.

Three tasks, labelled from the sweep: the generalization class (quintiles of the test loss at the
optimum, 5 classes), the weight decay, and augmentation on or off. Four feature sets: the train
losses and accuracies of the J&R, grid and naive samples, and the J&R features scrambled (each
column shuffled across networks). Each cell of the table is the mean +- standard error over the
11 classifiers of :func:`lossatlas.prediction.predict`; a permutation test
(``permutation_test_score``) checks the J&R cell of each task. Cells are stored one by one in
``prediction.zarr`` (the classic gradient boosting takes minutes per cell on 1280 features), so an
interrupted prediction resumes.

Two cross-validation protocols (:data:`PROTOCOLS`, the store's ``protocol`` dimension): ``paper``,
Horoi et al.'s stratified 10-fold, and ``grouped``, whose folds keep sibling networks together:
the networks sharing every sweep setting except the one the task predicts (:data:`GROUP_AXES`).
Siblings that differ only in a setting that barely changes them (weight decay 0 and 1e-4) are
near-twins, and under the paper's protocol a held-out network's twin sits in the training fold.
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
from .driver import PROTOCOL_TITLES, load_sweep, retraining_protocol

__all__ = ["FEATURES", "GROUP_AXES", "PROTOCOLS", "TASKS", "groups_of", "labels_of", "predict_sweep", "table_text",
           "features_table"]

#: Feature sets, in the order of the paper's table (bottom row first there).
FEATURES = ("jr", "naive", "grid", "scrambled_jr")
#: Prediction tasks.
TASKS = ("generalization", "weight_decay", "augmentation")
#: Cross-validation protocols: Horoi et al.'s stratified folds, and folds that keep siblings together.
PROTOCOLS = ("paper", "grouped")
#: Under the grouped protocol, the sweep axes a group shares, per task: every axis but the one
#: predicted; for generalization, the architecture (depth, width) and the optimizer's settings
#: (batch size; learning rate and momentum are one value per sweep), so that networks differing
#: only in a regularizer (weight decay, augmentation) are never split across folds.
GROUP_AXES = {"generalization": ("depth", "width", "batch_size"),
              "weight_decay": ("depth", "width", "batch_size", "augment"),
              "augmentation": ("depth", "width", "batch_size", "weight_decay")}
_PROTOCOL_TITLES = {"paper": "paper's protocol: stratified folds",
                    "grouped": "grouped folds: siblings (networks differing only in the predicted setting) kept together"}
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


def groups_of(sweep: xr.Dataset) -> dict[str, np.ndarray]:
    """Each task's group of every network under the grouped protocol: networks with equal values on
    the task's :data:`GROUP_AXES` share a group (numbered in order of first appearance)."""
    out = {}
    for task, axes in GROUP_AXES.items():
        keys = list(zip(*(np.asarray(sweep[a].values).tolist() for a in axes)))
        first = {}
        out[task] = np.asarray([first.setdefault(k, len(first)) for k in keys], np.int64)
    return out


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
    npr, nf, nt, nc = len(PROTOCOLS), len(FEATURES), len(TASKS), len(CLASSIFIERS)
    cell = ("protocol", "features", "task")
    data = {"mean": (cell, np.full((npr, nf, nt), np.nan)),
            "sem": (cell, np.full((npr, nf, nt), np.nan)),
            "classifier_accuracy": (cell + ("classifier",), np.full((npr, nf, nt, nc), np.nan)),
            DONE: (cell, np.zeros((npr, nf, nt), bool))}
    coords = {"protocol": list(PROTOCOLS), "features": list(FEATURES), "task": list(TASKS),
              "classifier": list(CLASSIFIERS)}
    return xr.Dataset(data, coords=coords, attrs={**provenance(), "kind": "prediction", "settings": settings})


def predict_sweep(out, folds: int = 10, seed: int = 0, permutations: int = 100, replace: bool = False,
                  progress: bool | Callable = False, partial: bool = False, n_jobs: int | None = None,
                  names=None, permutation_classifier: str = "linear_svm") -> dict:
    """Table 1 of a finished sweep under both protocols (:data:`PROTOCOLS`): every feature set on
    every task, plus chance, a permutation test of the J&R features and the Spearman correlation
    of total persistence with test loss.

    Parameters
    ----------
    out : path or RunDir
        The sweep's run directory.
    folds, seed
        As :func:`lossatlas.prediction.predict` (seed also scrambles the control features). A task
        with fewer groups than ``folds`` has no grouped cells (NaN, listed in ``"skipped"``).
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
    dict: ``"protocols"`` (protocol -> {``"table"``: features -> task -> {"mean", "sem",
    "classifiers"}, ``"permutation"``: task -> {"accuracy", "pvalue", "classifier"}}), with
    ``"table"`` and ``"permutation"`` the paper's protocol's; ``"group_axes"``, ``"groups"`` (task
    -> number of groups), ``"skipped"`` (grouped tasks with too few groups), ``"chance"`` (task ->
    1/#classes), ``"spearman"`` (D0 total persistence against test loss), ``"networks"`` and
    ``"replaced"`` (non-finite values per set), ``"retraining_protocol"`` (a key of
    :data:`~lossatlas.sweep.driver.PROTOCOL_TITLES`: ``"earlier"`` for a sweep stored before J&R
    retrained at each network's final learning rate) and ``"train_accuracy"`` (median and
    minimum over the networks: whether the minima fit their training data).

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
    groups = groups_of(sweep)
    feats, replaced = features_table(sweep, seed)
    chosen = list(CLASSIFIERS) if names is None else [c for c in CLASSIFIERS if c in set(names)]
    settings = {"kind": "prediction", "folds": int(folds), "seed": int(seed), "classifiers": chosen,
                "protocols": list(PROTOCOLS), "group_axes": {t: list(a) for t, a in GROUP_AXES.items()},
                "networks": [int(i) for i in sweep["network"].values],
                "features_fingerprint": fingerprint({k: v for k, v in feats.items()}),
                "labels_fingerprint": fingerprint(labels), "groups_fingerprint": fingerprint(groups)}
    shape = (len(PROTOCOLS), len(FEATURES), len(TASKS))
    if run.check("prediction", settings, replace):
        done = run.done_mask("prediction")
    else:
        run.create_grid("prediction", _layout(settings), chunks={"protocol": 1, "features": 1, "task": 1})
        done = np.zeros(shape, bool)
    # An axis the sweep holds one value of (e.g. no augmentation) is no task: its cells stay NaN.
    tasks = [t for t in TASKS if np.unique(labels[t]).size >= 2]
    n_groups = {t: int(np.unique(groups[t]).size) for t in TASKS}
    skipped = [t for t in tasks if n_groups[t] < folds]
    runs = {"paper": tasks, "grouped": [t for t in tasks if t not in skipped]}
    cells = [(k, i, j) for k, p in enumerate(PROTOCOLS) for i in range(len(FEATURES)) for j in range(len(TASKS))
             if not done[k, i, j] and TASKS[j] in runs[p]]
    n_perm = sum(len(runs[p]) for p in PROTOCOLS) if permutations else 0
    with progress_bar(progress, len(cells) + n_perm,
                      f"predict: {len(cells)} cells of {len(chosen)} classifiers x {folds} folds") as advance:
        for k, i, j in cells:
            task = TASKS[j]
            res = predict(feats[FEATURES[i]], labels[task], folds=folds, seed=seed, n_jobs=n_jobs, names=names,
                          groups=groups[task] if PROTOCOLS[k] == "grouped" else None)
            acc = np.asarray([res["classifiers"].get(c, np.nan) for c in CLASSIFIERS])
            run.write_cells("prediction", {"mean": np.array([[[res["mean"]]]]), "sem": np.array([[[res["sem"]]]]),
                                           "classifier_accuracy": acc[None, None, None]},
                            (slice(k, k + 1), slice(i, i + 1), slice(j, j + 1)))
            advance(1)
        perm = {p: {} for p in PROTOCOLS}
        if permutations:
            require(permutation_classifier in CLASSIFIERS,
                    f"unknown permutation_classifier {permutation_classifier!r}; choose one of {list(CLASSIFIERS)}")
            psettings = {**settings, "permutations": int(permutations), "classifier": permutation_classifier}
            stored = run.open("permutation") if run.check("permutation", psettings, replace) else None
            if stored is not None:
                for p in PROTOCOLS:
                    perm[p] = {t: {"classifier": permutation_classifier,
                                   "accuracy": float(stored["accuracy"].sel(protocol=p, task=t)),
                                   "pvalue": float(stored["pvalue"].sel(protocol=p, task=t))} for t in runs[p]}
                advance(n_perm)
            else:
                nan = np.full((len(PROTOCOLS), len(tasks)), np.nan)
                acc, pval = nan.copy(), nan.copy()
                scores = np.full((len(PROTOCOLS), len(tasks), permutations), np.nan)
                for k, p in enumerate(PROTOCOLS):
                    for j, t in enumerate(tasks):
                        if t not in runs[p]:
                            continue
                        r = permutation_test(feats["jr"], labels[t], classifier=permutation_classifier,
                                             n_permutations=permutations, folds=folds, seed=seed, n_jobs=n_jobs,
                                             groups=groups[t] if p == "grouped" else None)
                        perm[p][t] = {key: r[key] for key in ("classifier", "accuracy", "pvalue")}
                        acc[k, j], pval[k, j], scores[k, j] = r["accuracy"], r["pvalue"], r["permutation_scores"]
                        advance(1)
                run.save("permutation", xr.Dataset(
                    {"accuracy": (("protocol", "task"), acc), "pvalue": (("protocol", "task"), pval),
                     "permutation_scores": (("protocol", "task", "permutation"), scores)},
                    coords={"protocol": list(PROTOCOLS), "task": tasks}, attrs={**provenance(), "settings": psettings}))
    ds = run.open("prediction")

    def cells_of(p):
        sel = ds.sel(protocol=p)
        return {f: {t: {"mean": float(sel["mean"].sel(features=f, task=t)), "sem": float(sel["sem"].sel(features=f, task=t)),
                        "classifiers": {c: v for c, v in zip(CLASSIFIERS, sel["classifier_accuracy"].sel(features=f, task=t).values.tolist())
                                        if c in chosen}}
                    for t in TASKS} for f in FEATURES}

    protocols = {p: {"table": cells_of(p), "permutation": perm[p]} for p in PROTOCOLS}
    tp, tl = np.asarray(sweep["tp_d0"].values), np.asarray(sweep["test_loss"].values)
    ok = np.isfinite(tp) & np.isfinite(tl)
    rho, p_rho = spearmanr(tp[ok], tl[ok])
    spearman = {"d0_vs_test_loss": float(rho), "pvalue": float(p_rho), "networks": int(ok.sum())}
    if "tp_d0_capped" in sweep:  # (absent from sweeps stored before it was recorded)
        capped = np.asarray(sweep["tp_d0_capped"].values)
        okc = np.isfinite(capped) & np.isfinite(tl)
        rc, pc = spearmanr(capped[okc], tl[okc])
        spearman.update(d0_capped_vs_test_loss=float(rc), capped_pvalue=float(pc))
    result = {"table": protocols["paper"]["table"], "permutation": protocols["paper"]["permutation"],
              "protocols": protocols, "group_axes": {t: list(a) for t, a in GROUP_AXES.items()},
              "groups": n_groups, "skipped": skipped,
              "chance": {t: chance_level(labels[t]) if t in tasks else float("nan") for t in TASKS},
              "spearman": spearman,
              "networks": int(n), "replaced": replaced, "folds": int(folds), "seed": int(seed),
              "retraining_protocol": retraining_protocol(sweep),
              "train_accuracy": {"median": float(np.median(sweep["train_accuracy"].values)),
                                 "min": float(np.min(sweep["train_accuracy"].values))}}
    run.update_summary(prediction={k: v for k, v in result.items()})
    _figure(run, sweep)
    return result


def _figure(run: RunDir, sweep: xr.Dataset) -> None:
    """Fig. 3B: D0 total persistence against test loss at the optimum, coloured by weight decay."""
    from ..plot.topology import plot_persistence_vs_test_loss

    plot_persistence_vs_test_loss(sweep["tp_d0"].values, sweep["test_loss"].values, color=sweep["weight_decay"].values,
                                  color_label="weight decay", path=run.figures / "persistence_vs_test_loss",
                                  title="Total persistence (D0) of the J&R samples vs test loss")
    if "tp_d0_capped" in sweep:
        plot_persistence_vs_test_loss(sweep["tp_d0_capped"].values, sweep["test_loss"].values,
                                      color=sweep["weight_decay"].values, color_label="weight decay",
                                      path=run.figures / "persistence_capped_vs_test_loss",
                                      title="Total persistence (D0, essential classes capped) vs test loss")


def table_text(result: dict) -> str:
    """The table as text, percent (mean +- standard error over the 11 classifiers), beside the
    paper's: one block per protocol (a result of one protocol, without ``"protocols"``, as one)."""
    head = f"{'Features':<44}" + "".join(f"{_TASK_TITLES[t]:>16}" for t in TASKS) + "   paper"
    chance = result["chance"]
    protocols = result.get("protocols") or {"paper": {"table": result["table"], "permutation": result.get("permutation")}}
    lines = []
    if "retraining_protocol" in result:
        acc = result["train_accuracy"]
        lines.append(f"{PROTOCOL_TITLES.get(result['retraining_protocol'], result['retraining_protocol'])}; "
                     f"train accuracy at the minima: median {acc['median']:.3f}, min {acc['min']:.3f}")
    for p, block in protocols.items():
        if p == "grouped":
            axes = result.get("group_axes", GROUP_AXES)
            lines.append("")
            lines.append(f"{_PROTOCOL_TITLES[p]}; groups share: " + "; ".join(
                f"{_TASK_TITLES[t]} {', '.join(a)} ({result.get('groups', {}).get(t, '?')} groups)"
                for t, a in axes.items()))
        else:
            lines.append(_PROTOCOL_TITLES.get(p, p))
        lines += [head, "-" * len(head)]
        lines.append(f"{_TITLES['chance']:<44}" + "".join(f"{100 * chance[t]:>16.1f}" for t in TASKS)
                     + "   " + " / ".join(f"{v:.1f}" for v in PAPER["chance"]))
        for f in ("scrambled_jr", "grid", "naive", "jr"):
            row = block["table"][f]
            cells = "".join(f"{100 * row[t]['mean']:>9.1f} ± {100 * row[t]['sem']:<4.1f}" for t in TASKS)
            lines.append(f"{_TITLES[f]:<44}{cells}   " + " / ".join(f"{v:.1f}" for v in PAPER[f]))
        if block.get("permutation"):
            which = next(iter(block["permutation"].values()))["classifier"].replace("_", " ")
            lines.append(f"permutation test of the J&R features ({which}): " + "; ".join(
                f"{_TASK_TITLES[t]} {100 * q['accuracy']:.1f}%, p = {q['pvalue']:.3f}" for t, q in block["permutation"].items()))
    if result.get("skipped"):
        lines.append(f"grouped protocol: fewer groups than folds for {', '.join(result['skipped'])} (no cells)")
    s = result["spearman"]
    lines.append(f"Spearman(total persistence D0, test loss) = {s['d0_vs_test_loss']:.3f} (p = {s['pvalue']:.2g}, "
                 f"{s['networks']} networks)")
    if "d0_capped_vs_test_loss" in s:
        lines.append(f"Spearman(total persistence D0 with essential classes capped, test loss) = "
                     f"{s['d0_capped_vs_test_loss']:.3f} (p = {s['capped_pvalue']:.2g})")
    return "\n".join(lines)

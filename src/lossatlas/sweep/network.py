"""One network of a sweep, from initialization to its features: the task an executor runs.

:func:`sample_network` trains the network, measures it at its minimum, draws the J&R, grid and
naive samples of equal size around it (their weights held by the task only, dropped when it
returns its small results), and computes the total persistence of the J&R set. It
takes plain values (the config as a dict and the network's index), so a Dask worker rebuilds
everything itself: the per-task payload is the config, about a kilobyte.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
import numpy as np

from .._errors import require
from ..demo.minima import has_batch_norm
from ..embedding import PHATE
from ..jump import grid_sample, jump_retrain, naive_sample
from ..landscape import Landscape
from ..diagrams import persistence_totals
from ..topology import DisconnectedGraphWarning, persistence
from ..training import train
from .config import read_sweep_config

__all__ = ["FEATURE_SETS", "features_of", "sample_network"]

#: The samplers whose train loss and accuracy are a network's features (Horoi et al. Table 1).
FEATURE_SETS = ("jr", "grid", "naive")


@functools.lru_cache(maxsize=4)
def _data(source_items: tuple):
    """The data set, built once per process (a worker serves many networks of one data set)."""
    from ..sources import Source

    return Source(**dict(source_items)).build_data()


def _data_key(src) -> tuple:
    d = src.as_dict()
    keep = ("data", "data_root", "data_seed", "subset", "test_subset", "augment", "random_labels")
    return tuple((k, d[k]) for k in keep)


def features_of(samples) -> np.ndarray:
    """Train loss then train accuracy of every sampled point, in the samples' order, as one row."""
    return np.concatenate([np.asarray(samples["loss"].values, np.float64),
                           np.asarray(samples["accuracy"].values, np.float64)])


def _nonfinite(samples) -> int:
    return int((~np.isfinite(np.asarray(samples["loss"].values))).sum())


def _topology(jr, k: int) -> dict:
    """Total persistence (p = 2) of D0 and D1 of the J&R set's loss filtration on the kNN graph of
    PHATE's potential: over the finite pairs (``tp_d0``, ``tp_d1``), and for D0 also with each
    essential class (one per component of the kNN graph) ended at the largest J&R loss
    (``tp_d0_capped``, the authors' graph filtration with essential classes capped; D0 is the same
    for the graph and the flag complex). Diverged points (non-finite loss) are left out of the
    embedding, and counted."""
    keep = np.isfinite(np.asarray(jr["loss"].values))
    pts = jr.isel(point=np.flatnonzero(keep)) if not keep.all() else jr
    if pts.sizes["point"] <= k:
        return {"tp_d0": float("nan"), "tp_d1": float("nan"), "tp_d0_capped": float("nan"),
                "knn_components": 0, "embedded": int(pts.sizes["point"]), "phate_components": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = PHATE(metric="cosine", seed=0).fit(pts)
    # phate warns when its kNN graph falls apart: kept as a number (1: connected), not printed
    # once per network
    parts = [re.search(r"disconnected with (\d+) connected", str(w.message)) for w in caught]
    components = max([int(m.group(1)) for m in parts if m] or [1])
    with warnings.catch_warnings():
        # a kNN graph in pieces is recorded (knn_components) and answered by the capped total
        warnings.simplefilter("ignore", DisconnectedGraphWarning)
        diagrams = persistence(fit, values=pts["loss"], k=k)
    totals = persistence_totals(diagrams, p=2)
    return {"tp_d0": float(totals["total_persistence_d0"]), "tp_d1": float(totals["total_persistence_d1"]),
            "tp_d0_capped": float(totals["capped_total_persistence_d0"]), "knn_components": int(totals["components"]),
            "embedded": int(pts.sizes["point"]), "phate_components": components}


def sample_network(config: dict, index: int) -> dict:
    """Train network ``index`` of the sweep ``config`` and sample around its minimum.

    Parameters
    ----------
    config : dict
        The sweep's settings (:meth:`SweepConfig.as_dict`).
    index : int
        The network's place in :meth:`SweepConfig.networks`.

    Returns
    -------
    dict of plain values and 1-D arrays: the network's axes, its train and test loss and accuracy
    at the minimum, ``{jr,grid,naive}_features`` (train loss then accuracy of each sampled point),
    the total persistence of the J&R set (``tp_d0``, ``tp_d1``), counts of non-finite losses,
    and the seconds of each stage.

    Examples
    --------
    >>> row = sample_network(cfg.as_dict(), 0)        # doctest: +SKIP
    >>> row["jr_features"].shape                        # 2 x the J&R points
    """
    cfg = read_sweep_config(config)
    net = cfg.networks()[int(index)]
    j = cfg.jump
    src = cfg.source(net)
    dev = src.resolve_device()
    data = _data(_data_key(src))
    seconds = {}
    t = time.perf_counter()
    model = src.build_model(data).to(dev)
    tc = cfg.train_config(net.batch_size, net.weight_decay)
    opts = {k: v for k, v in tc.as_dict().items()
            if k not in ("optimizer", "lr", "momentum", "weight_decay", "epochs", "batch_size", "seed")}
    train(model, data, optimizer=tc.optimizer, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay,
          epochs=tc.epochs, batch_size=tc.batch_size, seed=tc.seed, device=dev, **opts)
    seconds["train"] = time.perf_counter() - t
    plan = cfg.retraining(net)
    # the store records the plan before any network trains: it must be what this network is
    require(has_batch_norm(model) == plan["batch_norm"] and tc.final_lr() == plan["final_lr"],
            f"network {net.index}: the built model or its schedule differs from the recorded plan {plan}")
    bn = "recompute" if plan["batch_norm"] else "eval"
    X, y = data.test
    f = Landscape(model, data.train, test=(X, y), bn=bn, device=dev)
    at_min = {k: float(v[0]) for k, v in f.evaluate(f.origin.unsqueeze(0)).items()}

    t = time.perf_counter()
    # "with the original optimizer": the training's SGD, its weight decay and augmentation (the
    # network's data carries it), at the plan's learning rate, momentum, epochs and batch size
    samples = jump_retrain(model, data, seeds=j.seeds, step_sizes=j.step_sizes, epochs=plan["jr_epochs"],
                           optimizer=tc.optimizer, lr=plan["jr_lr"], momentum=plan["jr_momentum"],
                           batch_size=plan["jr_batch_size"], weight_decay=plan["jr_weight_decay"],
                           augment=plan["jr_augment"], nesterov=tc.nesterov, ensemble=j.ensemble, device=dev)
    retrained = samples.isel(point=np.flatnonzero(samples["epoch"].values > 0))
    seconds["jump_retrain"] = time.perf_counter() - t
    t = time.perf_counter()
    n = cfg.n_points()
    f_train = Landscape(model, data.train, bn=bn, device=dev)
    # seed 0 for both: each static sampler draws from its own stream of it (lossatlas.static_sampling)
    grid = grid_sample(f_train, n_points=n, span=j.grid_span, seed=0)
    naive = naive_sample(f_train, n_points=n, step_sizes=j.naive_step_sizes, seed=0)
    seconds["grid_naive"] = time.perf_counter() - t
    t = time.perf_counter()
    topo = _topology(samples, j.topology_k)
    seconds["topology"] = time.perf_counter() - t
    return {
        "index": net.index, **net.axes(),
        "n_params": int(f.space.size),
        "train_loss": at_min["loss"], "train_accuracy": at_min["accuracy"],
        "test_loss": at_min["test_loss"], "test_accuracy": at_min["test_accuracy"],
        "jr_features": features_of(retrained), "grid_features": features_of(grid), "naive_features": features_of(naive),
        "jr_nonfinite": _nonfinite(retrained), "grid_nonfinite": _nonfinite(grid), "naive_nonfinite": _nonfinite(naive),
        **topo,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }

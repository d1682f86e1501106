"""The demo's analyses of one minimum, each stored in the minimum's run directory.

``surface.zarr`` (a filter-normalized plane), ``trajectory_plane.zarr`` (loss contours on the
training path's PCA directions), ``jump.zarr`` (jump and retrain), ``embedding.zarr`` (PHATE,
t-SNE, UMAP and PCA with their scores) and ``topology.zarr`` (persistence diagrams of the J&R
samples), with the figures of each in ``figures/``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import plot
from ..embedding import PHATE, embed
from ..jump import jump_retrain
from ..surface import center_value, plane
from ..topology import persistence, persistence_totals
from ..trajectory import pca_directions, project, select_run
from .minima import Minimum
from .settings import DemoSettings

__all__ = ["embedding_stage", "jump_stage", "retraining_of", "retraining_record", "scores_of", "surface_stage", "topology_stage", "trajectory_stage"]


def surface_stage(m: Minimum, s: DemoSettings, replace: bool = False) -> dict:
    """A 2-D surface on two random filter-normalized directions (Li et al.), same seed for all minima."""
    ds = plane(m.landscape, m.theta, None, span=s.surface_span, steps=s.surface_steps, seed=0, store=m.run,
               name="surface", progress=True, replace=replace,
               attrs={"directions": "random", "norm": "filter", "ignore": "biasbn", "seed": 0})
    if s.surface_figures == "all":
        plot.plot_surface_set(ds, m.run.figures, prefix="surface")
    else:  # the quick settings: the contours alone (the 3-D views cost most of the stage)
        plot.plot_contour(ds, path=m.run.figures / "surface_contour", title=f"{m.name} minimum")
    out = {"points": int(ds.loss.size), "center_loss": center_value(ds, "loss"),
           "min_loss": float(ds.loss.min()), "max_loss": float(ds.loss.max())}
    m.run.update_summary(surface=out)
    return out


def trajectory_stage(m: Minimum, s: DemoSettings, replace: bool = False) -> dict:
    """The training path on its two PCA directions over the loss contours (Li et al. Fig. 9)."""
    traj = select_run(m.run.open("trajectory", load=False))
    final = traj.weights.isel(point=-1).values
    dirs, ratios = pca_directions(traj, n=2)
    xy = project(traj, final, dirs)
    ext = np.abs(xy).max(0) * 1.25 + 1e-12
    ds = plane(m.landscape, final, dirs, span=(-ext[0], ext[0], -ext[1], ext[1]), steps=s.trajectory_steps,
               store=m.run, name="trajectory_plane", progress=True, replace=replace,
               attrs={"directions": "pca", "explained": ratios.tolist()})
    plot.plot_trajectory(xy, traj.epoch.values, explained=ratios, lr_drops=[int(e) for e in traj.attrs.get("lr_drops", [])],
                         plane=ds, path=m.run.figures / "trajectory_pca",
                         title=f"{m.name} minimum: the training path on its PCA directions")
    out = {"explained_variance": ratios.tolist(), "explained_total": float(ratios.sum()),
           "snapshots": int(traj.sizes["point"])}
    m.run.update_summary(trajectory=out)
    return out


def retraining_of(m: Minimum, s: DemoSettings, lr: float | None = None) -> dict:
    """How J&R retrains around minimum ``m``: "with the original optimizer" (Horoi et al.).

    The optimizer, momentum (and Nesterov), weight decay and batch size of the minimum's recorded
    training (``config/train.yaml``) and the augmentation of its source, at ``lr``, else
    ``s.jr_lr``, else the training's final learning rate (after its schedule, as ``lossatlas jump``
    defaults to); for ``s.jr_epochs`` epochs, else a quarter of the training's epochs.

    Returns
    -------
    dict
        ``retrain`` (the keyword arguments of :func:`lossatlas.jump_retrain`, ``augment``
        included), ``epochs``, and the record of the minimum: ``final_lr``, ``jr_lr``,
        ``jr_batch_size``, ``jr_epochs``, ``train_epochs``, ``train_accuracy`` and ``jr_lr_rule``.

    Examples
    --------
    >>> r = retraining_of(minimum, DemoSettings())   # doctest: +SKIP
    >>> r["jr_lr"] == r["final_lr"]                  # doctest: +SKIP
    True
    """
    from ..training import TrainConfig

    cfg = TrainConfig.recorded(m.run)
    retrain = cfg.original_optimizer(augment=bool(m.source.augment))
    final = retrain["lr"]
    chosen = lr if lr is not None else s.jr_lr
    rule = "given" if lr is not None else ("the final learning rate" if s.jr_lr is None else "the settings' jr_lr")
    epochs = s.jr_epochs if s.jr_epochs is not None else max(1, cfg.epochs // 4)
    retrain["lr"] = float(final if chosen is None else chosen)
    return {"retrain": retrain, "epochs": int(epochs), "final_lr": float(final), "jr_lr": retrain["lr"],
            "jr_batch_size": int(cfg.batch_size), "jr_epochs": int(epochs), "train_epochs": int(cfg.epochs),
            "train_accuracy": float(m.final.get("accuracy", float("nan"))), "jr_lr_rule": rule}


def retraining_record(m: Minimum, s: DemoSettings, lr: float | None = None) -> dict:
    """What a study records of :func:`retraining_of` per minimum: everything but the keyword
    arguments and the epochs (``final_lr``, ``jr_lr``, ``jr_batch_size``, ``jr_epochs``, ...)."""
    return {k: v for k, v in retraining_of(m, s, lr).items() if k not in ("retrain", "epochs")}


def jump_stage(m: Minimum, s: DemoSettings, replace: bool = False, lr: float | None = None,
               name: str = "jump") -> xr.Dataset:
    """Jump and retrain (Horoi et al.) around ``m`` as :func:`retraining_of` says (the minimum's
    own optimizer, weight decay, batch size and augmentation; by default at its final learning
    rate), into the product ``name`` of its run directory; the retraining is recorded in its
    summary (``sampling_jump``, or ``sampling_NAME``)."""
    r = retraining_of(m, s, lr)
    retrain, epochs = r["retrain"], r["epochs"]
    record = {k: v for k, v in r.items() if k not in ("retrain", "epochs")}
    travel = s.jr_travel(retrain["lr"], epochs)
    m.run.write_config(name, {"source": m.source.as_dict(), "seeds": s.jr_seeds, "step_sizes": list(s.jr_step_sizes),
                              "epochs": epochs, "retrain": retrain, "travel": travel, "sampling": "jr", "seed": 0,
                              **record})
    options = dict(retrain)
    augment = options.pop("augment")
    samples = jump_retrain(m.model, m.data, seeds=range(s.jr_seeds), step_sizes=s.jr_step_sizes, epochs=epochs,
                           store=m.run, name=name, progress=True, replace=replace, augment=augment, train_seed=0,
                           device=m.theta.device, **options)
    jumps, ends = samples.epoch.values == 0, samples.epoch.values == epochs
    key = "sampling_jump" if name == "jump" else f"sampling_{name}"
    m.run.update_summary(**{key: {"points": int(samples.sizes["point"]), "retrain": retrain, "travel": travel, **record,
                                  "jump_loss_mean": float(np.nanmean(samples.loss.values[jumps])),
                                  "retrained_loss_mean": float(np.nanmean(samples.loss.values[ends]))}})
    return samples


def scores_of(emb: xr.Dataset) -> dict:
    """``{method: {"DeMAP": .., "continuity": ..}}`` from an embedding's attrs."""
    return {str(k): {label: float(emb.attrs[f"{k}_{key}"]) for key, label in (("demap", "DeMAP"), ("continuity", "continuity"))
                     if f"{k}_{key}" in emb.attrs} for k in emb.method.values}


def embedding_stage(m: Minimum, s: DemoSettings, samples: xr.Dataset) -> dict:
    """PHATE (cosine), t-SNE, UMAP and PCA of the J&R samples, with DeMAP and continuity."""
    n = samples.sizes["point"]
    options = {"tsne": {"perplexity": float(min(30, max(2, (n - 1) // 3)))},
               "umap": {"n_neighbors": int(min(15, max(2, n - 1)))}}
    emb = embed(samples, methods=s.methods, seed=0, options={k: v for k, v in options.items() if k in s.methods})
    m.run.save("embedding", emb)
    meta = samples.drop_vars("weights").load()
    arrays = {str(k): emb.embedding.sel({"method": k}).values for k in emb.method.values}  # not sel(method=): a keyword of sel
    sc = scores_of(emb)
    epochs = int(np.max(samples.epoch.values)) if n else 0
    title = (f"{m.name} minimum: J&R, {s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps, "
             f"{epochs} retraining epochs")
    plot.plot_embedding_panel(arrays, meta, scores=sc, path=m.run.figures / "embedding_jump", title=title)
    plot.plot_embedding_panel(arrays, meta, scores=sc, color="loss", path=m.run.figures / "embedding_jump_loss",
                              title=f"{title}; colour: log loss")
    m.run.update_summary(embedding_jump={"scores": sc, "points": int(n)})
    return sc


def topology_stage(m: Minimum, s: DemoSettings, samples: xr.Dataset) -> tuple[dict, PHATE, dict]:
    """Persistence of the loss filtration on the kNN graph of PHATE's potential (Horoi et al. 2022)."""
    fit = PHATE(metric="cosine", seed=0).fit(samples)
    k = min(s.topology_k, samples.sizes["point"] - 1)
    diagrams = persistence(fit, values="loss", samples=samples, k=k)
    every = persistence_totals(diagrams, p=2)  # components, finite pairs and capped totals beside each total
    totals = {int(d): float(every[f"total_persistence_d{d}"]) for d in diagrams}
    parts = {f"d{d}": ((f"pair{d}", "bd"), np.asarray(diagrams[d], float).reshape(-1, 2)) for d in diagrams}
    ds = xr.Dataset(parts, coords={"bd": ["birth", "death"]},
                    attrs={"settings": {"source": "jump", "k": k, "values": "loss", "complex": "flag", "seed": 0},
                           **every})
    m.run.save("topology", ds)
    plot.plot_persistence_diagrams({m.name: diagrams}, p=2, path=m.run.figures / "persistence")
    m.run.update_summary(topology={"total_persistence": totals, **every, "k": k, "values": "loss", "complex": "flag"})
    return diagrams, fit, totals

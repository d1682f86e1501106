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
from .minima import MINIMA, Minimum
from .settings import DemoSettings

__all__ = ["embedding_stage", "jump_stage", "scores_of", "surface_stage", "topology_stage", "trajectory_stage"]


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


def jump_stage(m: Minimum, s: DemoSettings, replace: bool = False) -> xr.Dataset:
    """Jump and retrain (Horoi et al.) with the minimum's own weight decay and augmentation, at
    the learning rate that makes steps x lr travel as far as the paper's retraining."""
    kind = MINIMA[m.name]
    retrain = dict(optimizer="sgd", lr=s.jr_lr, momentum=s.momentum, batch_size=s.batch_size,
                   weight_decay=kind["weight_decay"], augment=kind["augment"])
    m.run.write_config("jump", {"source": m.source.as_dict(), "seeds": s.jr_seeds, "step_sizes": list(s.jr_step_sizes),
                                "epochs": s.jr_epochs, "retrain": retrain, "travel": s.jr_travel(), "sampling": "jr",
                                "seed": 0})
    options = dict(retrain)
    augment = options.pop("augment")
    samples = jump_retrain(m.model, m.data, seeds=range(s.jr_seeds), step_sizes=s.jr_step_sizes, epochs=s.jr_epochs,
                           store=m.run, progress=True, replace=replace, augment=augment, train_seed=0,
                           device=m.theta.device, **options)
    jumps, ends = samples.epoch.values == 0, samples.epoch.values == s.jr_epochs
    m.run.update_summary(sampling_jump={"points": int(samples.sizes["point"]), "retrain": retrain,
                                        "travel": s.jr_travel(),
                                        "jump_loss_mean": float(np.nanmean(samples.loss.values[jumps])),
                                        "retrained_loss_mean": float(np.nanmean(samples.loss.values[ends]))})
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
    title = (f"{m.name} minimum: J&R, {s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps, "
             f"{s.jr_epochs} retraining epochs")
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

"""``lossatlas trajectory`` (the optimizer's path on PCA directions) and ``lossatlas embed``
(PHATE, t-SNE, UMAP and PCA of weight samples)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from .._errors import require
from .common import (DataOpt, DataRootOpt, DataSeedOpt, DeviceOpt, LossOpt, ModelArgOpt, ModelOpt, ReplaceOpt, SubsetOpt,
                     BatchSizeOpt, check_batch_size, console, loss_for, record_fingerprint, reported, resolve_source, source_flags, write_report)
from .guard import using
from .products import NameOpt, claim, product, store

KNN = 5  # neighbours of PHATE's graph and of the preservation scores
RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="run directory")]


def trajectory(
    paths: Annotated[List[Path], typer.Argument(metavar="RUN | CHECKPOINT...", help="a run directory, or three or "
                                                "more checkpoint files saved along one training run, in order (with "
                                                "--model and --data)")],
    out: Optional[Path] = typer.Option(None, help="run directory for a path given as checkpoint files (default "
                                                  "runs/trajectory)"),
    device: DeviceOpt = "auto",
    steps: int = typer.Option(25, help="grid points per axis of the loss contours"),
    margin: float = typer.Option(0.25, help="extra room around the path, as a fraction of its extent"),
    samples: Optional[int] = typer.Option(None, help="evaluate the contours on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    seed: int = typer.Option(0, help="seed of the random directions of the comparison plot"),
    bn: str = typer.Option("eval", help="batch norm: eval, batch, recompute"),
    replace: ReplaceOpt = False, loss: LossOpt = None,
    model: ModelOpt = None, model_arg: ModelArgOpt = None, data: DataOpt = None, data_root: DataRootOpt = None,
    data_seed: DataSeedOpt = None, subset: SubsetOpt = None,
):
    """The optimizer's path on PCA directions over loss contours (Li et al. Fig. 9), and on random ones (Fig. 8).

    A run recorded from your own training (la.Recorder) without a source takes --model and --data once;
    checkpoint files saved by your own training become a run in --out (their order is the path's)."""
    with reported():
        import numpy as np

        from .. import plot
        from .._errors import parse_enum
        from ..landscape import BatchNormMode, Landscape
        from ..space import random_directions
        from ..surface import plane
        from ..trajectory import pca_directions, project, select_run

        require(steps >= 2 and margin >= 0, "--steps must be >= 2 and --margin >= 0")
        parse_enum(BatchNormMode, bn, "batch-norm mode (--bn)")
        check_batch_size(batch_size)
        from .recorded import adopt_source, record_checkpoints

        flags = source_flags(model, model_arg, None, data, data_root, data_seed, subset)
        if len(paths) == 1 and Path(paths[0]).is_dir():
            require(out is None, "--out is for a path given as checkpoint files; a run directory keeps its own results")
            run_path = paths[0]
        else:
            run_path = record_checkpoints(paths, flags, device, out or Path("runs/trajectory"), replace)
            flags = {}
        flags = adopt_source(run_path, flags, device)
        src, run = resolve_source(run_path, flags, device)
        loss = loss_for(run, loss)
        require(run.exists("trajectory"), f"{run.zarr_path('trajectory')} does not exist; train with `lossatlas train --out {run.path}` first")
        dev = src.resolve_device()
        run.write_config("trajectory", {"steps": steps, "margin": margin, "samples": samples, "seed": seed, "bn": bn,
                                        "device": str(dev), "batch_size": batch_size})
        d = src.build_data()
        record_fingerprint(run, d)
        net = src.build_model(d).to(dev)
        traj = select_run(run.open("trajectory", load=False))
        final = traj.weights.isel(point=-1).values
        dirs, ratios = pca_directions(traj, n=2)
        xy = project(traj, final, dirs)
        ext = np.abs(xy).max(0) * (1 + margin) + 1e-12
        f = Landscape(net, d.train, bn=bn, samples=samples, seed=src.data_seed, device=dev, loss=loss, batch_size=batch_size)
        ds = plane(f, final, dirs, span=(-ext[0], ext[0], -ext[1], ext[1]), steps=steps, store=run,
                   name="trajectory_plane", progress=True, replace=replace,
                   attrs={"directions": "pca", "explained": ratios.tolist()})
        lr_drops = [int(e) for e in traj.attrs.get("lr_drops", [])]
        epochs = traj.epoch.values
        plot.plot_trajectory(xy, epochs, explained=ratios, lr_drops=lr_drops, plane=ds, path=run.figures / "trajectory_pca",
                             title=f"{src.model} on {d.name}: PCA directions")
        rand = random_directions(net, n=2, seed=seed)
        xy_r = project(traj, final, [r.cpu().numpy() for r in rand])
        plot.plot_trajectory(xy_r, epochs, explained=None, lr_drops=lr_drops, path=run.figures / "trajectory_random",
                             title="the same path on two random directions")
        run.update_summary(trajectory={"explained_variance": ratios.tolist(), "explained_total": float(ratios.sum()),
                                       "snapshots": int(traj.sizes["point"]),
                                       "random_extent": np.abs(xy_r).max(0).tolist(), "pca_extent": np.abs(xy).max(0).tolist()})
        console.print(f"PCA directions capture {100 * ratios[0]:.1f}% + {100 * ratios[1]:.1f}% = {100 * ratios.sum():.1f}% of the variance")
        console.print(f"wrote {run.zarr_path('trajectory_plane')} and figures in {run.figures}")
        write_report(run)


def scores(emb) -> dict:
    """Per-method scores from the embedding's attrs (``{method}_demap``, ``{method}_continuity``)."""
    return {
        str(m): {label: float(emb.attrs[f"{m}_{key}"])
                 for key, label in (("demap", "DeMAP"), ("continuity", "continuity")) if f"{m}_{key}" in emb.attrs}
        for m in emb.method.values
    }


def embed(
    run_path: RunArg,
    method: str = typer.Option("phate,tsne,umap,pca", help="comma-separated: phate, tsne, umap, pca, random"),
    source: str = typer.Option("jump", help="which samples: jump, grid, naive or trajectory"),
    dims: int = typer.Option(2, help="2 or 3 components"),
    seed: int = typer.Option(0, help="seed of every method's randomness (PHATE, t-SNE, UMAP, random projection)"),
    name: NameOpt = None,
    replace: ReplaceOpt = False,
):
    """Embed weight samples with PHATE (cosine), t-SNE, UMAP and PCA side by side, with preservation scores."""
    with reported():
        from rich.table import Table

        from .. import plot
        from ..embedding import embed as embed_samples
        from ..store import RunDir

        run = RunDir(run_path, create=False)
        require(source in ("jump", "grid", "naive", "trajectory"), f"--source must be jump, grid, naive or trajectory, got {source!r}")
        require(dims in (2, 3), f"--dims must be 2 or 3, got {dims}")
        require(run.exists(source), f"{run.zarr_path(source)} does not exist; run `lossatlas jump {run_path}` first")
        methods = [m.strip() for m in method.split(",") if m.strip()]
        kind = "embedding" if source == "jump" else f"embedding_{source}"
        stored_as = product(kind, name)
        samples = run.open(source, load=False)
        n = samples.sizes["point"]
        # Small sample sets: keep t-SNE's perplexity and UMAP's neighbourhood below the point count.
        options = {k: v for k, v in {"tsne": {"perplexity": float(min(30, max(2, (n - 1) // 3)))},
                                     "umap": {"n_neighbors": int(min(15, max(2, n - 1)))}}.items() if k in methods}
        settings = {"method": methods, "source": source, "dims": dims, "seed": seed, "knn": KNN, "points": n,
                    "options": options}
        claim(run, stored_as, settings, replace)  # another --method or --seed does not overwrite silently
        run.write_config(f"embed_{name}" if name else "embed", settings)
        using(f"PHATE with knn {KNN} on cosine distances of the {n} {source} samples, seed {seed}"
              + "".join(f"; {k} {v}" for o in options.values() for k, v in o.items()))
        t0 = time.perf_counter()
        emb = embed_samples(samples, methods=methods, n_components=dims, seed=seed, knn=KNN,
                            options=options, progress=True)
        seconds = time.perf_counter() - t0
        store(run, stored_as, emb, settings)
        meta = samples.drop_vars("weights").load()
        arrays = {m: emb.embedding.sel({"method": m}).values for m in emb.method.values}
        sc = scores(emb)
        figure = stored_as.replace("embedding", f"embedding_{source}", 1) if source == "jump" else stored_as
        plot.plot_embedding_panel(arrays, meta, scores=sc, path=run.figures / figure)
        if "loss" in meta:  # a recorded trajectory holds only the metrics its loop gave
            plot.plot_embedding_panel(arrays, meta, scores=sc, color="loss", path=run.figures / f"{figure}_loss")
        run.update_summary(**{figure: {"seconds": seconds, "scores": sc, "settings": settings}})
        table = Table(title=f"embeddings of {n} points ({seconds:.1f} s)")
        table.add_column("method")
        keys = sorted({k for v in sc.values() for k in v})
        for k in keys:
            table.add_column(k)
        for m, s in sc.items():
            table.add_row(m, *(f"{s.get(k, float('nan')):.3f}" for k in keys))
        console.print(table)
        console.print(f"wrote {run.zarr_path(stored_as)} and figures {figure}*.png in {run.figures}")
        write_report(run)

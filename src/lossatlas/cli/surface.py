"""``lossatlas surface`` (Li et al.'s 1-D and 2-D plots) and ``lossatlas interpolate`` (their
1-D interpolation between two minima)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from .._errors import require
from .alignment import aligned_endpoint, align_method, report_alignment
from .common import (CheckpointOpt, DaskOpt, DataOpt, DataRootOpt, DataSeedOpt, DeviceOpt, ModelArgOpt, ModelOpt,
                     ReplaceOpt, SchedulerOpt, SubsetOpt, check_executor, console, executor, open_out, pair,
                     record_fingerprint, reported, resolve_source, source_flags, write_report, auto_batch_norm,
                     LossOpt, endpoint_source, loss_for, BatchSizeOpt, check_batch_size)
from .figures import ColorRangeOpt, FigSizeOpt, FontSizeOpt, LevelsOpt, figure_options
from .products import NameOpt, claim_attrs, product

COMPILE = {"auto": "auto", "yes": True, "no": False}


def _speed_options(workers: str, compile: str, strategy: str):
    from ..landscape import Strategy
    from .._errors import parse_enum

    require(workers == "auto" or (workers.isdigit() and int(workers) >= 1),
            f"--workers must be 'auto' or a positive integer, got {workers!r}")
    workers_v = workers if workers == "auto" else int(workers)
    require(compile in COMPILE, f"--compile must be auto, yes or no, got {compile!r}")
    compile_v = COMPILE[compile]
    several = workers_v not in ("auto", 1)
    require(not (several and compile_v is True), "--compile yes runs one compiled worker: drop --workers or pass --workers 1")
    require(not (several and strategy == "vmap"), "--workers above 1 needs --strategy loop (or auto on a CPU)")
    parse_enum(Strategy, strategy, "evaluation strategy (--strategy)")
    return workers_v, compile_v


def _directions(path: Optional[Path], net, n: int, norm: str, ignore, seed: int, device):
    """Directions read from ``path`` when it exists (checked against the model), else drawn
    with ``seed`` (and saved to ``path`` when one is given)."""
    from ..space import ParamSpace, random_directions
    from ..store import read_directions, write_directions

    space = ParamSpace(net)
    if path is not None and Path(path).exists():
        dirs, meta = read_directions(path, names=space.names, size=space.size)
        require(len(dirs) >= n, f"{path} holds {len(dirs)} directions; {n} are needed")
        asked = {"norm": norm, "ignore": ignore if ignore is not None else "none", "seed": seed}
        diffs = [(k, meta[k], v) for k, v in asked.items() if k in meta and str(meta[k]) != str(v)]
        require(not diffs, f"directions: {'; '.join(f'{k} {old} stored in {path}, {k} {new} asked' for k, old, new in diffs)}. "
                f"Give {' '.join(f'--{k} {old}' for k, old, _ in diffs)} to use the file, or another --directions "
                "file (or none) to draw directions with these settings")
        console.print(f"directions read from {path} ({meta.get('norm', '?')}-normalized, seed {meta.get('seed', '?')})")
        return [d.to(device) for d in dirs[:n]], {**meta, "directions_file": str(path)}
    dirs = random_directions(net, n=n, norm=norm, ignore=ignore, seed=seed)
    meta = {"directions": "random", "norm": norm, "ignore": ignore if ignore is not None else "none", "seed": seed}
    if path is not None:
        write_directions(path, dirs, names=space.names, **meta)
        console.print(f"directions saved to {path}")
    return dirs, meta


def surface(
    run_path: Annotated[Optional[Path], typer.Argument(metavar="RUN", help="a run directory: its model, final weights and data split")] = None,
    model: ModelOpt = None, model_arg: ModelArgOpt = None, checkpoint: CheckpointOpt = None, data: DataOpt = None,
    data_root: DataRootOpt = None, data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    dims: int = typer.Option(2, help="1: a line along one random direction; 2: a plane"),
    steps: int = typer.Option(31, help="grid points per axis (odd: the centre is a grid point); 31 for a quick first "
                                       "look, where the API's plane() takes 51"),
    span: float = typer.Option(1.0, help="coordinates run over [-span, span]"),
    xrange: Optional[str] = typer.Option(None, help="xmin,xmax, overriding --span along x (default: -span,span)"),
    yrange: Optional[str] = typer.Option(None, help="ymin,ymax, overriding --span along y (default: -span,span)"),
    norm: str = typer.Option("filter", help="direction normalization: filter, layer, model, none"),
    ignore: str = typer.Option("biasbn", help="biasbn (zero biases and BN weights) or none"),
    bn: str = typer.Option("eval", help="batch norm: eval (the stored running statistics, as Li et al. and the API), "
                                        "batch or recompute (re-estimated at every point); interpolate defaults to auto"),
    samples: Optional[int] = typer.Option(None, help="evaluate on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    seed: int = typer.Option(0, help="seed of the random directions (only)"),
    directions: Optional[Path] = typer.Option(None, help="directions file: read if it exists, else written, to reuse across "
                                                  "minima (default: new directions, not saved); or 'hessian': the top "
                                                  "Hessian eigenvectors, scaled as a whole"),
    train_epochs: int = typer.Option(20, help="when no checkpoint is given, train the model this long first"),
    strategy: str = typer.Option("auto", help="auto, loop or vmap"),
    workers: str = typer.Option("auto", help="threads sharing out the points (loop strategy): auto or a number"),
    compile: str = typer.Option("auto", "--compile", help="torch.compile the loop: auto, yes or no"),
    tf32: bool = typer.Option(False, "--tf32", help="allow TF32 matmuls on CUDA (faster, ~1e-3 relative error)"),
    fig_size: FigSizeOpt = None, font_size: FontSizeOpt = None, levels: LevelsOpt = None,
    color_range: ColorRangeOpt = None,
    replace: ReplaceOpt = False, name: NameOpt = None, loss: LossOpt = None,
    dask: DaskOpt = None, scheduler: SchedulerOpt = None,
    out: Optional[Path] = typer.Option(None, help="run directory (default RUN, else runs/surface)"),
):
    """A 1-D or 2-D loss surface around a model (Li et al.): surface.zarr or line.zarr, and figures/."""
    with reported():
        from .._errors import parse_enum
        from ..landscape import BatchNormMode
        from ..space import parse_ignore, parse_norm
        from ..surface import grid_axes

        # Every option is checked before any data is loaded or any training starts.
        require(dims in (1, 2), f"--dims must be 1 or 2, got {dims}")
        require(steps >= 2, f"--steps must be at least 2, got {steps}")
        require(span > 0, f"--span must be positive, got {span}")
        xr_, yr_ = pair(xrange, "--xrange"), pair(yrange, "--yrange")
        parse_norm(norm)
        ignore_v = None if ignore == "none" else ignore
        parse_ignore(ignore_v)
        parse_enum(BatchNormMode, bn, "batch-norm mode (--bn)")
        require(samples is None or samples >= 1, f"--samples must be a positive number of samples, got {samples}")
        require(train_epochs >= 0, f"--train-epochs must be >= 0, got {train_epochs}")
        check_batch_size(batch_size)
        workers_v, compile_v = _speed_options(workers, compile, strategy)
        figure = figure_options(fig_size, font_size, levels, color_range)
        check_executor(dask, scheduler)
        bounds = (*(xr_ or (-span, span)), *(yr_ or (-span, span)))
        if dims == 2:
            grid_axes(bounds, steps)  # refuses a grid that would not fit in memory
        else:
            from ..grids import line_axis

            line_axis(bounds[0], bounds[1], steps)  # a slice holds its centre (t = 0) and t = 1 exactly
        stored_as = product("surface" if dims == 2 else "line", name)
        if loss is not None:
            loss_for(None, loss)
        target = out or run_path or Path("runs/surface")
        src, _ = resolve_source(run_path, source_flags(model, model_arg, checkpoint, data, data_root, data_seed, subset), device)
        dev = src.resolve_device()
        run = open_out(target, src)
        loss = loss_for(run, loss)
        settings = dict(dims=dims, steps=steps, span=span, xrange=xr_, yrange=yr_, norm=norm, ignore=ignore, bn=bn,
                        samples=samples, seed=seed, directions=str(directions) if directions else None,
                        train_epochs=train_epochs, strategy=strategy, workers=workers, compile=compile, tf32=tf32,
                        device=str(dev), name=name, loss=loss, batch_size=batch_size)
        run.write_config(f"surface_{name}" if name else "surface", {"source": src.as_dict(), "surface": settings})

        with executor(dask, scheduler) as ex:
            _surface_work(run, src, dev, ex, dims=dims, steps=steps, bounds=bounds, norm=norm, ignore_v=ignore_v,
                          bn=bn, samples=samples, seed=seed, directions=directions, train_epochs=train_epochs,
                          strategy=strategy, workers_v=workers_v, compile_v=compile_v, tf32=tf32, replace=replace,
                          name=stored_as, loss=loss, figure=figure, batch_size=batch_size)


def _surface_work(run, src, dev, ex, *, dims, steps, bounds, norm, ignore_v, bn, samples, seed, directions,
                  train_epochs, strategy, workers_v, compile_v, tf32, replace, name, loss, figure=None, batch_size=None):
    """The work of `surface` once every option is checked (tasks on ``ex`` when it is a cluster)."""
    from .. import plot
    from ..execute import build_landscape, check_weights, landscape_handle
    from ..surface import center_value, line, plane
    from .pretrain import landscape_flags

    with reported():
        d = src.build_data()
        record_fingerprint(run, d)
        net = src.build_model(d).to(dev)
        check_weights(net, f"the checkpoint {src.checkpoint}" if src.checkpoint else "the model")
        if not src.checkpoint and not (run.path / "model.pt").exists():
            from ..store import write_checkpoint
            from .pretrain import train_first

            train_first(run, src, net, d, dev, train_epochs, loss)
            write_checkpoint(run.path / "model.pt", net.state_dict(), source=src.as_dict())
        elif not src.checkpoint:
            from ..models import load_checkpoint

            load_checkpoint(net, run.path / "model.pt")
            check_weights(net, f"the checkpoint {run.path / 'model.pt'}")
        hessian = directions is not None and str(directions) == "hessian"
        if not hessian:
            dirs, how = _directions(directions, net, dims, norm, ignore_v, seed, dev)
            claim_attrs(run, name, how, replace)  # another --seed or --norm is named in words
        options = dict(bn=bn, samples=samples, seed=src.data_seed, strategy=strategy, workers=workers_v,
                       compile=compile_v, tf32=tf32, loss=loss, batch_size=batch_size)
        f = build_landscape(net, d, dev, options)
        if hessian:
            dirs, how = _hessian_directions(f, dims, ignore_v)
            claim_attrs(run, name, how, replace)
        if ex is not None:  # workers rebuild this Landscape from the source, with the run's final weights
            ex.share(f, landscape_handle(src if src.checkpoint else src.replace(checkpoint=str(run.path / "model.pt")),
                                         d, f, options))
        t0 = time.perf_counter()
        if dims == 2:
            ds = plane(f, f.origin, dirs, span=bounds, steps=steps, store=run, name=name, progress=True,
                       replace=replace, attrs=how, executor=ex)
        else:
            ds = line(f, f.origin, f.origin + dirs[0], steps=steps, extent=bounds[:2], store=run, name=name,
                      progress=True, replace=replace, attrs=how, executor=ex)
        _say_resumed(ds)
        seconds = time.perf_counter() - t0
        figures = plot.plot_surface_set(ds, run.figures, prefix=name, options=figure)
        center = center_value(ds, "loss")
        key = "surface" if name in ("surface", "line") else name
        run.update_summary(**{key: {"seconds": seconds, "points": int(ds.loss.size), "center_loss": center,
                                    "min_loss": float(ds.loss.min()), "max_loss": float(ds.loss.max()),
                                    "nonfinite": int(ds.attrs.get("n_nonfinite", 0)), "loss": loss}})
        where = f"loss at the center {center:.4g}" if center is not None else "the grid has no centre point (even --steps)"
        console.print(f"{int(ds.loss.size)} points in {seconds:.1f} s; {where}")
        flags = landscape_flags(ds, getattr(d, "num_classes", None))
        for line_ in flags:
            console.print(f"[bold yellow]warning:[/] {line_}")
        if flags:
            run.update_summary(surface_warnings=flags)
        console.print(f"wrote {run.zarr_path(name)} and {len(figures)} figures in {run.figures}")
        write_report(run)


def _hessian_directions(f, dims: int, ignore):
    """The plane's axes along the top Hessian eigenvectors (kept eigenvectors: scaled as a whole)."""
    from ..curvature import hessian_directions

    dirs = hessian_directions(f, f.origin, n=dims, ignore=ignore)
    console.print(f"Hessian directions: eigenvalues {', '.join(f'{float(v):.4g}' for v in dirs.eigenvalues)}, "
                  f"each scaled to norm {dirs.scale:.4g} (the weights' norm)")
    how = {k: v for k, v in dirs.settings.items() if k not in ("theta", "landscape")}
    return list(dirs), {**how, "ignore": ignore if ignore is not None else "none"}


def _say_resumed(ds) -> None:
    """The line a resumed plane or line prints: how many of its cells an earlier run had done."""
    if "resumed_cells" in ds.attrs:
        console.print(f"resumed: {ds.attrs['resumed_cells']} of {int(ds.loss.size)} cells done")


def interpolate(
    a: Annotated[Path, typer.Argument(help="first model: a run directory or a checkpoint")],
    b: Annotated[Path, typer.Argument(help="second model: a run directory or a checkpoint")],
    model: ModelOpt = None, model_arg: ModelArgOpt = None, data: DataOpt = None, data_root: DataRootOpt = None,
    data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    extent: str = typer.Option("-0.5,1.5", help="tmin,tmax of theta_a + t (theta_b - theta_a)"),
    steps: int = typer.Option(101, help="points along the line; they must land on t=0 and t=1 (e.g. 41 or 101 on -0.5,1.5)"),
    bn: str = typer.Option("auto", help="batch norm: auto (recompute when the model has BN: points between two minima are "
                                        "far from either, where stored statistics mislead), eval, batch, recompute"),
    samples: Optional[int] = typer.Option(None, help="evaluate on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    replace: ReplaceOpt = False, name: NameOpt = None, loss: LossOpt = None,
    dask: DaskOpt = None, scheduler: SchedulerOpt = None,
    out: Path = typer.Option(Path("runs/interpolate"), help="run directory"),
    align: str = typer.Option("none", help="also draw the line to b with its hidden units permuted to match a: "
                                           "none, weights or activations (interpolation_aligned.zarr)"),
):
    """Loss and accuracy on the straight line between two minima (Li et al. Figs. 2-3): interpolation.zarr."""
    with reported():
        from .. import plot
        from .._errors import parse_enum
        from ..connectivity.barrier import barrier_stats
        from ..execute import build_landscape, landscape_handle
        from ..landscape import BatchNormMode
        from ..grids import line_axis
        from ..space import ParamSpace
        from ..surface import line

        ext = pair(extent, "--extent")
        require(steps >= 2, f"--steps must be at least 2, got {steps}")
        require(ext[0] <= 0 and ext[1] >= 1, f"--extent must hold both models (t = 0 and t = 1), got {ext[0]:g},{ext[1]:g}")
        line_axis(ext[0], ext[1], steps)  # refuses, before any work, a grid without t = 0 and t = 1
        if bn != "auto":
            parse_enum(BatchNormMode, bn, "batch-norm mode (--bn)")
        require(samples is None or samples >= 1, f"--samples must be a positive number of samples, got {samples}")
        check_batch_size(batch_size)
        check_executor(dask, scheduler)
        align_v = align_method(align)
        stored_as = product("interpolation", name)
        if loss is not None:
            loss_for(None, loss)
        flags = source_flags(model, model_arg, None, data, data_root, data_seed, subset)
        src_a, label_a = endpoint_source(a, flags, device)
        src_b, label_b = endpoint_source(b, flags, device)
        dev = src_a.resolve_device()
        run = open_out(out, src_a)
        d = src_a.build_data()
        net_a, net_b = src_a.build_model(d).to(dev), src_b.build_model(d).to(dev)
        space = ParamSpace(net_a)
        net_b_space = ParamSpace(net_b)
        require(space == net_b_space, f"{a} and {b} have different parameters; interpolation needs one architecture")
        bn_v = auto_batch_norm(bn, net_a)
        loss = loss_for(run, loss)
        run.write_config(f"interpolate_{name}" if name else "interpolate",
                         {"a": str(a), "b": str(b), "source_a": src_a.as_dict(), "source_b": src_b.as_dict(),
                          "extent": ext, "steps": steps, "bn": bn_v, "samples": samples, "loss": loss,
                          "batch_size": batch_size})
        options = dict(bn=bn_v, samples=samples, seed=src_a.data_seed, loss=loss, batch_size=batch_size)
        theta_a, theta_b = space.vector(net_a), net_b_space.vector(net_b)
        aligned = aligned_endpoint(net_a, net_b, align_v, d, dev) if align_v else None  # refusals before any work
        with executor(dask, scheduler) as ex:
            f = build_landscape(net_a, d, dev, options)
            if ex is not None:  # workers rebuild model a's Landscape from its source, once each
                ex.share(f, landscape_handle(src_a, d, f, options))
            ds = line(f, theta_a, theta_b, steps=steps, extent=ext, store=run, name=stored_as, progress=True,
                      replace=replace, attrs={"label_a": label_a, "label_b": label_b}, executor=ex)
            if aligned is not None:
                ds_aligned = line(f, theta_a, space.vector(aligned[0]), steps=steps, extent=ext, store=run,
                                  name=f"{stored_as}_aligned", replace=replace, settings={"alignment": aligned[1]},
                                  attrs={"label_a": label_a, "label_b": f"{label_b} aligned"}, executor=ex)
        _say_resumed(ds)
        stats = ds.attrs["bn_statistics"]  # `line` says which statistics it used
        plot.plot_interpolation(ds, path=run.figures / stored_as, title=f"{label_a} (t=0) to {label_b} (t=1)")
        ends = {k: [float(ds[k].sel(t=t)) for t in (0.0, 1.0)] for k in ds.data_vars if k != "done"}
        # the barrier and the saddle over t in [0, 1] only: extrapolated points are no barrier
        between = {f"{p}{k}": v for p in ("", "test_") if f"{p}loss" in ds
                   for k, v in barrier_stats(ds.t.values, ds[f"{p}loss"].values).items()
                   if k in ("barrier", "saddle_height", "saddle_t")}
        run.update_summary(**{stored_as: {"ends": ends, **between, "max_loss_in_0_1": float(ds.loss.sel(t=slice(0, 1)).max()),
                                          "bn": stats, "loss": loss}})
        console.print(f"loss at t=0: {ends['loss'][0]:.4g}, t=1: {ends['loss'][1]:.4g}; between them (t in [0, 1]) "
                      f"barrier {between['barrier']:.4g} (largest rise above the chord between the ends), saddle "
                      f"{between['saddle_height']:.4g} above the higher end ({stats})")
        if aligned is not None:
            report_alignment(run, {"line": (ds, ds_aligned)}, aligned[1], stored_as)
        console.print(f"wrote {run.zarr_path(stored_as)} and figures in {run.figures}")
        write_report(run)

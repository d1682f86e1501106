"""``lossatlas hessian``, ``sharpness``, ``connect`` (curvature, flatness and mode connectivity)
and ``topology`` (persistent homology of J&R samples)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from .._errors import require
from .alignment import align_method, aligned_endpoint, report_alignment
from .guard import using
from .products import NameOpt, claim, product, store, weights
from .common import (CheckpointOpt, DaskOpt, DataOpt, DataRootOpt, DataSeedOpt, DeviceOpt, ModelArgOpt, ModelOpt,
                     ReplaceOpt, SchedulerOpt, SubsetOpt, check_executor, console, executor, floats, open_out,
                     record_fingerprint, reported, resolve_source, source_flags, write_report, auto_batch_norm,
                     LossOpt, endpoint_source, loss_for, BatchSizeOpt, check_batch_size, with_batch_size)

RunOpt = Annotated[Optional[Path], typer.Argument(metavar="RUN", help="a run directory: its model, final weights and data split")]


def _landscape(src, bn: str, samples: Optional[int], ex=None, loss: str = "cross_entropy",
               batch_size: Optional[int] = None):
    """Model, data, device and the Landscape of one source (batch norm 'auto': recompute if any);
    with a cluster executor ``ex``, the Landscape is shared (workers rebuild it from ``src``)."""
    from ..execute import build_landscape, check_weights, landscape_handle

    dev = src.resolve_device()
    d = src.build_data()
    net = src.build_model(d).to(dev)
    check_weights(net, f"the checkpoint {src.checkpoint}" if src.checkpoint else "the model")
    options = dict(bn=auto_batch_norm(bn, net), samples=samples, seed=src.data_seed, loss=loss, batch_size=batch_size)
    f = build_landscape(net, d, dev, options)
    if ex is not None:
        ex.share(f, landscape_handle(src, d, f, options))
    return net, d, dev, f


def _check_versions(*paths) -> None:
    """Refuse, before any work, a run directory written by a newer lossatlas."""
    from ..store.version import check_run_version

    for p in paths:
        if p is not None and Path(p).is_dir():
            check_run_version(p)


_HESSIAN_KEYS = {"hessian": ("curvature", "top", "smallest", "trace_samples", "trace_method", "samples", "bn", "tol",
                             "seed", "loss"),
                 "spectral_density": ("samples", "bn", "seed", "loss"),
                 "convexity": ("map_steps", "span", "samples", "bn", "tol", "seed", "loss")}


#: The matrices `hessian` measures (``--curvature``); each is its own product (hessian.zarr,
#: ggn.zarr, fisher.zarr), so that one run holds them side by side.
CURVATURES = ("hessian", "ggn", "fisher")
TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")


def _made_with(kind: str, settings: dict, src) -> dict:
    """The settings that change the values of one of `hessian`'s products, with the weights."""
    keys = _HESSIAN_KEYS["hessian" if kind in CURVATURES else kind] + ("batch_size",)
    return {**{k: settings[k] for k in keys if k in settings}, **weights(src)}


def hessian(
    run_path: RunOpt = None,
    model: ModelOpt = None, model_arg: ModelArgOpt = None, checkpoint: CheckpointOpt = None, data: DataOpt = None,
    data_root: DataRootOpt = None, data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    curvature: str = typer.Option("hessian", help="the matrix: hessian, ggn (generalized Gauss-Newton J^T H J) or "
                                                  "fisher (empirical Fisher); ggn and fisher are stored beside the "
                                                  "Hessian as ggn.zarr and fisher.zarr"),
    top: int = typer.Option(5, help="largest eigenvalues (one Lanczos run for all)"),
    smallest: Optional[bool] = typer.Option(None, "--smallest/--no-smallest", help="also the most negative eigenvalue "
                                            "(default: on for the Hessian; ggn and fisher have none below 0)"),
    trace_samples: int = typer.Option(100, help="matrix-vector products of the trace estimate (0: skip)"),
    trace_method: str = typer.Option("hutchinson", help="trace estimator: hutchinson, hutch++ or xtrace (lower error "
                                                        "for the same products)"),
    density: Optional[bool] = typer.Option(None, "--density/--no-density", help="the Hessian's spectral density by "
                                           "stochastic Lanczos quadrature (default: on with --curvature hessian)"),
    map: bool = typer.Option(False, "--map", help="Li et al.'s convexity map |lambda_min/lambda_max| on a plane"),
    map_steps: int = typer.Option(7, help="grid points per axis of the convexity map"),
    span: float = typer.Option(1.0, help="the map's coordinates run over [-span, span]"),
    samples: Optional[int] = typer.Option(None, help="curvature on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    bn: str = typer.Option("eval", help="batch norm: eval, batch, recompute"),
    tol: float = typer.Option(1e-3, help="relative tolerance of the eigenvalues"),
    seed: int = typer.Option(0, help="seed of the start vectors and the map's directions"),
    replace: ReplaceOpt = False, loss: LossOpt = None,
    dask: DaskOpt = None, scheduler: SchedulerOpt = None,
    out: Optional[Path] = typer.Option(None, help="run directory (default RUN, else runs/hessian)"),
):
    """Hessian (or GGN, Fisher) eigenvalues, trace and spectral density at a minimum (and the convexity map): hessian.zarr."""
    with reported():
        curvature = curvature.strip().lower()
        trace_method = trace_method.strip().lower()
        require(curvature in CURVATURES, f"--curvature must be one of {', '.join(CURVATURES)}, got {curvature!r}")
        require(trace_method in TRACE_METHODS, f"--trace-method must be one of {', '.join(TRACE_METHODS)}, "
                f"got {trace_method!r}")
        hessian_only = curvature == "hessian"
        require(hessian_only or not (density or map), f"the spectral density and the convexity map are the Hessian's: "
                f"drop --density and --map with --curvature {curvature}, or run them with --curvature hessian")
        smallest = hessian_only if smallest is None else smallest
        density = hessian_only if density is None else density
        require(top >= 1 and trace_samples >= 0 and map_steps >= 2 and span > 0 and tol > 0,
                "--top must be >= 1, --trace-samples >= 0, --map-steps >= 2, --span and --tol > 0")
        check_batch_size(batch_size)
        check_executor(dask, scheduler)
        require(map or (dask is None and scheduler is None), "--dask and --scheduler share out the cells of the "
                "convexity map: give --map too (the other measures run in this process)")
        target = out or run_path or Path("runs/hessian")
        if loss is not None:
            loss_for(None, loss)
        src, _ = resolve_source(run_path, source_flags(model, model_arg, checkpoint, data, data_root, data_seed, subset), device)
        run = open_out(target, src)
        settings = dict(curvature=curvature, top=top, smallest=smallest, trace_samples=trace_samples,
                        trace_method=trace_method, density=density, map=map,
                        map_steps=map_steps, span=span, samples=samples, bn=bn, tol=tol, seed=seed,
                        loss=loss_for(run, loss))
        settings = with_batch_size(settings, batch_size)
        for kind, on in ((curvature, True), ("spectral_density", density), ("convexity", map)):
            if on:  # none is overwritten with other settings
                claim(run, kind, _made_with(kind, settings, src), replace)
        run.write_config("hessian", {"source": src.as_dict(), "hessian": settings})
        with executor(dask, scheduler) as ex:
            _hessian_work(run, src, settings, ex, top=top, smallest=smallest, trace_samples=trace_samples,
                          density=density, map=map, map_steps=map_steps, span=span, samples=samples, bn=bn, tol=tol,
                          seed=seed)


def _hessian_work(run, src, settings, ex, *, top, smallest, trace_samples, density, map, map_steps, span, samples,
                  bn, tol, seed):
    """The work of `hessian` once every option is checked (the map's cells on ``ex`` when given)."""
    import numpy as np
    import xarray as xr

    from .. import plot
    from ..curvature import convexity_map, hessian_eigenvalues, hessian_trace, spectral_density
    from ..space import random_directions

    with reported():
        net, d, dev, f = _landscape(src, bn, samples, ex, loss=settings["loss"], batch_size=settings.get("batch_size"))
        record_fingerprint(run, d)
        kind = settings["curvature"]
        top_v = hessian_eigenvalues(f, k=top, tol=tol, seed=seed, curvature=kind, progress=True).numpy()
        result = {"top_eigenvalues": top_v.tolist()}
        if smallest:
            low = hessian_eigenvalues(f, k=1, which="smallest", tol=tol, seed=seed, curvature=kind,
                                      progress=True).numpy()
            result["min_eigenvalue"] = float(low[-1])
            result["ratio"] = float(abs(low[-1] / top_v[0])) if top_v[0] != 0 else float("nan")
        if trace_samples:
            est = hessian_trace(f, samples=trace_samples, seed=seed, method=settings["trace_method"], curvature=kind,
                                return_error=True, progress=True)
            result["trace"], result["trace_stderr"] = float(est.value), float(est.stderr)
            result["trace_method"] = settings["trace_method"]
        ds = xr.Dataset({"eigenvalue": (("k",), top_v)}, coords={"k": np.arange(1, top + 1)},
                        attrs={"settings": {**settings, "data_fingerprint": f.fingerprint,
                                            "center_fingerprint": f.space.fingerprint(f.origin)}, **result})
        ds.attrs["curvature"] = kind
        store(run, kind, ds, _made_with(kind, settings, src))
        if density:
            dens = spectral_density(f, seed=seed, progress=True)
            store(run, "spectral_density", dens, _made_with("spectral_density", settings, src))
            plot.plot_spectral_density(dens, path=run.figures / "spectral_density")
        if map:
            dirs = random_directions(net, n=2, seed=seed)
            cmap = convexity_map(f, f.origin, dirs, span=span, steps=map_steps, seed=seed, progress=True, executor=ex)
            store(run, "convexity", cmap, _made_with("convexity", settings, src))
            plot.plot_convexity_map(cmap, path=run.figures / "convexity_map")
            result["convexity_max_ratio"] = float(np.nanmax(cmap["ratio"].values))
        run.update_summary(**{kind: result})
        name = {"hessian": "Hessian", "ggn": "GGN", "fisher": "Fisher"}[kind]
        console.print(f"{name}: top eigenvalues {', '.join(f'{v:.4g}' for v in top_v)}"
                      + (f"; {'most negative' if kind == 'hessian' else 'smallest'} {result['min_eigenvalue']:.4g} (|min/max| {result['ratio']:.3g})" if smallest else "")
                      + (f"; trace {result['trace']:.4g} +- {result['trace_stderr']:.2g}" if trace_samples else ""))
        console.print(f"wrote {run.zarr_path(kind)} and figures in {run.figures}")
        write_report(run)


def sharpness(
    runs: Annotated[List[Path], typer.Argument(metavar="RUN...", help="the minima to compare: run directories, or "
                                                "checkpoint files with --model and --data")],
    model: ModelOpt = None, model_arg: ModelArgOpt = None, data: DataOpt = None, data_root: DataRootOpt = None,
    data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    eps: str = typer.Option("1e-3,5e-4", help="box half-widths of Keskar et al.'s sharpness"),
    subspace: int = typer.Option(100, help="dimension of the random subspace (0: full space only)"),
    radius: float = typer.Option(0.25, help="radius of the loss rise along filter-normalized directions"),
    directions: int = typer.Option(20, help="random directions for the loss rise and the basin volume"),
    threshold: float = typer.Option(0.1, help="loss rise above the minimum's own loss under which a direction counts "
                                              "as inside the basin (basin volume and radius)"),
    level: Optional[float] = typer.Option(None, help="an absolute loss level for the basin instead of a rise (default: "
                                                     "none, a rise; a level favours the minimum with the lowest own loss)"),
    max_radius: float = typer.Option(1.0, help="farthest distance searched along each direction for the basin radius"),
    samples: Optional[int] = typer.Option(None, help="evaluate on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    seed: int = typer.Option(0, help="seed of the directions and the subspace"),
    adaptive_rho: float = typer.Option(0.05, help="radius of the adaptive sharpness (worst case, |theta|-scaled "
                                                   "l2 ball, Andriushchenko et al. 2023; 0: skip it)"),
    loss: LossOpt = None, replace: ReplaceOpt = False,
    out: Path = typer.Option(Path("runs/sharpness"), help="directory of the comparison"),
):
    """One table of sharpness and flatness measures for several minima, with their test error: sharpness.zarr."""
    with reported():
        from rich.table import Table

        from ..basin import basin_settings
        from ..sharpness import compare_minima
        from ..store import RunDir

        require(len(runs) >= 1, "give at least one run directory")
        _check_versions(out)  # the runs are checked as their sources are read
        epsilons = floats(eps, "--eps")
        require(epsilons and all(e > 0 for e in epsilons), "--eps takes positive numbers")
        basin_settings(threshold, level)  # a rise must be positive: refused before any work
        require(max_radius > 0, f"--max-radius must be positive, got {max_radius}")
        require(adaptive_rho >= 0, f"--adaptive-rho must be >= 0, got {adaptive_rho}")
        check_batch_size(batch_size)
        flags = source_flags(model, model_arg, None, data, data_root, data_seed, subset)
        sources = [endpoint_source(r, flags, device) for r in runs]
        names = [label for _, label in sources]
        require(len(set(names)) == len(names), f"the minima must have distinct names, got {names}")
        loss = loss_for(RunDir(runs[0], create=False) if Path(runs[0]).is_dir() else None, loss)
        settings = {"minima": {n: weights(src) for n, (src, _) in zip(names, sources)}, "eps": epsilons,
                    "subspace": subspace, "radius": radius, "directions": directions, "threshold": threshold,
                    "level": level, "max_radius": max_radius, "samples": samples, "seed": seed, "loss": loss,
                    "adaptive_rho": adaptive_rho}
        settings = with_batch_size(settings, batch_size)
        if Path(out).is_dir():
            claim(RunDir(out, create=False), "sharpness", settings, replace)
        landscapes, minima = {}, {}
        for name, (src, _) in zip(names, sources):
            _, _, _, f = _landscape(src, "eval", samples, loss=loss, batch_size=batch_size)
            landscapes[name], minima[name] = f, f.origin
        target = RunDir(out)
        target.write_config("sharpness", {"runs": [str(Path(r).resolve()) for r in runs], **settings})
        table_ds = compare_minima(landscapes, minima, eps=epsilons, subspace=subspace or None, radius=radius,
                                  directions=directions, threshold=threshold, level=level, max_radius=max_radius,
                                  seed=seed, progress=True)
        if adaptive_rho > 0:
            from ..sharpness import adaptive_sharpness

            table_ds["adaptive_sharpness"] = ("minimum", [adaptive_sharpness(landscapes[n], minima[n], rho=adaptive_rho,
                                                                             seed=seed) for n in names])
        table_ds.attrs["settings"] = {**table_ds.attrs["settings"], "adaptive_rho": adaptive_rho}
        store(target, "sharpness", table_ds, settings)
        rows = {}
        table = Table(title=f"sharpness and flatness of {len(runs)} minima")
        columns = [v for v in table_ds.data_vars if set(table_ds[v].dims) <= {"minimum"}]
        table.add_column("minimum")
        for v in columns:
            table.add_column(v.replace("_", " "))
        sharp = table_ds["sharpness"] if "sharpness" in table_ds else None
        if sharp is not None:
            for e in sharp["eps"].values:
                for s in sharp["space"].values:
                    table.add_column(f"sharpness eps={e:g} ({s})")
        for i, name in enumerate(table_ds["minimum"].values):
            cells = [f"{float(table_ds[v].values[i]):.4g}" for v in columns]
            if sharp is not None:
                cells += [f"{float(x):.4g}" for x in sharp.isel(minimum=i).values.reshape(-1)]
            table.add_row(str(name), *cells)
            rows[str(name)] = dict(zip(columns, (float(table_ds[v].values[i]) for v in columns)))
        console.print(table)
        basin = table_ds.attrs["settings"]
        how = (f"loss at most {basin['level']:g} (an absolute level)" if basin["basin_measure"] == "absolute"
               else f"loss rise at most {basin['threshold']:g} above the minimum's own")
        console.print(f"basin volume: share of {directions} filter-normalized directions with a {how} at radius "
                      f"{radius:g}; basin radius: mean (std) distance at which it is first exceeded (Huang et al. "
                      f"2019), searched up to {max_radius:g}; censored: rays still inside there")
        target.update_summary(sharpness=rows, sharpness_basin={k: basin[k] for k in ("basin_measure", "threshold", "level",
                                                                                     "max_radius")})
        console.print(f"wrote {target.zarr_path('sharpness')}")
        write_report(target)


def connect(
    a: Annotated[Path, typer.Argument(help="first minimum: a run directory, or a checkpoint with --model and --data")],
    b: Annotated[Path, typer.Argument(help="second minimum: a run directory, or a checkpoint with --model and --data")],
    model: ModelOpt = None, model_arg: ModelArgOpt = None, data: DataOpt = None, data_root: DataRootOpt = None,
    data_seed: DataSeedOpt = None, subset: SubsetOpt = None, device: DeviceOpt = "auto",
    method: str = typer.Option("linear", help="linear, bezier or neb (comma-separated for several)"),
    points: int = typer.Option(41, help="points at which each path is evaluated"),
    samples: Optional[int] = typer.Option(None, help="evaluate on a seeded subset of N training samples (default: all of them)"),
    batch_size: BatchSizeOpt = None,
    seed: int = typer.Option(0, help="seed of the curve's training"),
    loss: LossOpt = None, replace: ReplaceOpt = False, name: NameOpt = None,
    out: Path = typer.Option(Path("runs/connect"), help="directory of the paths"),
    align: str = typer.Option("none", help="also connect a to b with b's hidden units permuted to match a: "
                                           "none, weights or activations (connect_<method>_aligned.zarr)"),
):
    """Paths between two minima (linear, Bezier, AutoNEB) and their barriers: connect_<method>.zarr."""
    with reported():
        from .. import plot
        from ..connectivity import connect as connect_minima

        methods = [m.strip() for m in method.split(",") if m.strip()]
        require(methods and all(m in ("linear", "bezier", "neb") for m in methods),
                f"--method takes linear, bezier or neb, got {method!r}")
        require(points >= 3, f"--points must be at least 3, got {points}")
        check_batch_size(batch_size)
        align_v = align_method(align)
        flags = source_flags(model, model_arg, None, data, data_root, data_seed, subset)
        (src_a, label_a), (src_b, label_b) = endpoint_source(a, flags, device), endpoint_source(b, flags, device)
        stored = {m: product(f"connect_{m}", name) for m in methods}
        run = open_out(out, src_a)
        loss = loss_for(run, loss)
        settings = with_batch_size({"a": weights(src_a), "b": weights(src_b), "points": points, "samples": samples,
                                    "seed": seed, "loss": loss}, batch_size)
        for m in methods:
            claim(run, stored[m], {**settings, "method": m}, replace)
        run.write_config(f"connect_{name}" if name else "connect", {"a": str(a), "b": str(b), "method": methods, **settings})
        net_a, d, dev, f = _landscape(src_a, "auto", samples, loss=loss, batch_size=batch_size)
        net_b = src_b.build_model(d).to(dev)
        theta_b = f.space.vector(net_b)
        paths, barriers, saddles, pairs = {}, {}, {}, {}
        aligned = aligned_endpoint(net_a, net_b, align_v, d, dev) if align_v else None  # refusals before any work
        theta_aligned = f.space.vector(aligned[0]) if aligned else None
        if aligned is not None:
            for m in methods:
                claim(run, f"{stored[m]}_aligned", {**settings, "method": m, "alignment": aligned[1]}, replace)
        for m in methods:
            options = {"points": points} if m == "linear" else {"seed": seed, "model": net_a, "data": d.train}
            if m == "bezier":
                options["points"] = points
            ds = connect_minima(f, f.origin, theta_b, method=m, progress=True, **options)
            store(run, stored[m], ds, {**settings, "method": m})
            paths[m], barriers[m] = ds, float(ds.attrs["barrier"])
            saddles[m] = float(ds.attrs["saddle_height"])
            if aligned is not None:
                ds_al = connect_minima(f, f.origin, theta_aligned, method=m, progress=True, **options)
                ds_al.attrs["settings"] = {**dict(ds_al.attrs.get("settings", {})), "alignment": aligned[1]}
                store(run, f"{stored[m]}_aligned", ds_al, {**settings, "method": m, "alignment": aligned[1]})
                pairs[m] = (ds, ds_al)
                paths[f"{m}, aligned"] = ds_al
            console.print(f"{m}: barrier {barriers[m]:.4g} (largest rise above the chord between the ends), "
                          f"saddle {saddles[m]:.4g} above the higher end")
        plot.plot_connectivity(paths, path=run.figures / product("connectivity", name), title=f"{label_a} to {label_b}")
        run.update_summary(**{product("connect", name): {"barriers": barriers, "saddle_heights": saddles}})
        if aligned is not None:
            report_alignment(run, pairs, aligned[1], product("connect", name))
        console.print(f"wrote {', '.join(str(run.zarr_path(stored[m])) for m in methods)} and figures in {run.figures}")
        write_report(run)


def topology(
    run_path: Annotated[Path, typer.Argument(metavar="RUN", help="run directory holding jump.zarr")],
    source: str = typer.Option("jump", help="which samples: jump, grid or naive"),
    k: int = typer.Option(20, help="neighbours of the kNN graph on the PHATE potential"),
    values: str = typer.Option("loss", help="the filtration's values: loss or test_loss"),
    complex: str = typer.Option("flag", help="flag (triangles fill cycles) or graph (vertices and edges only)"),
    p: float = typer.Option(2.0, help="exponent of the total persistence"),
    seed: int = typer.Option(0, help="seed of PHATE"),
    replace: ReplaceOpt = False,
):
    """Persistence diagrams and total persistence of the sampled landscape (Horoi et al. 2022): topology.zarr."""
    with reported():
        import warnings

        import numpy as np
        import xarray as xr

        from .. import plot
        from ..embedding import PHATE
        from ..progress import progress_bar
        from ..store import RunDir
        from ..topology import DisconnectedGraphWarning, persistence, persistence_totals, totals_text

        _check_versions(run_path)
        run = RunDir(run_path, create=False)
        require(run.exists(source), f"{run.zarr_path(source)} does not exist; run `lossatlas jump {run_path}` first")
        require(k >= 1 and p > 0, "--k must be >= 1 and --p > 0")
        made_with = {"source": source, "k": k, "values": values, "complex": complex, "seed": seed}
        claim(run, "topology", made_with, replace)
        run.write_config("topology", {"source": source, "k": k, "values": values, "complex": complex, "p": p, "seed": seed})
        samples = run.open(source, load=False)
        require(values in samples, f"{run.zarr_path(source)} has no {values!r}; choose one of {sorted(map(str, samples.data_vars))}")
        using(f"PHATE on cosine distances with knn 5, seed {seed}; a kNN graph of k {min(k, samples.sizes['point'] - 1)} "
              f"on its potential; {samples.sizes['point']} {source} samples")
        # Three stages, each seconds to minutes on thousands of samples: PHATE, the persistence of
        # the kNN graph, the figures (an interrupted run says which one it was in).
        with progress_bar(True, 3, f"topology of {samples.sizes['point']} {source} samples") as advance:
            emb = PHATE(metric="cosine", seed=seed).fit(samples)
            advance(1)
            with warnings.catch_warnings(record=True) as caught:  # said once below, in words, not as a Python warning
                warnings.simplefilter("always", DisconnectedGraphWarning)
                diagrams = persistence(emb, values=values, samples=samples, k=min(k, samples.sizes["point"] - 1),
                                       complex=complex)
            advance(1)
            every = persistence_totals(diagrams, p=p)
            plot.plot_persistence_diagrams({run.path.name: diagrams}, p=p, path=run.figures / "persistence")
            plot.plot_knn_graph(emb, values, k=min(k, samples.sizes["point"] - 1), samples=samples,
                                path=run.figures / "knn_graph")
            advance(1)
        for w in caught:
            if issubclass(w.category, DisconnectedGraphWarning):
                console.print(f"[yellow]warning:[/] {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        totals = {int(dim): float(every[f"total_persistence_d{dim}"]) for dim in diagrams}
        parts = {f"d{dim}": ((f"pair{dim}", "bd"), np.asarray(diagrams[dim], float).reshape(-1, 2)) for dim in diagrams}
        ds = xr.Dataset(parts, coords={"bd": ["birth", "death"]},
                        attrs={"settings": {"source": source, "k": k, "values": values, "complex": complex, "seed": seed},
                               **{key: v for key, v in every.items()}})
        store(run, "topology", ds, made_with)
        run.update_summary(topology={"total_persistence": totals, **every, "k": k, "values": values, "complex": complex})
        console.print(f"total persistence (p={p:g}): {totals_text(every)}")
        console.print(f"wrote {run.zarr_path('topology')} and figures in {run.figures}")
        write_report(run)

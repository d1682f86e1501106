"""Figures of curvature and connectivity: the Hessian's spectral density (PyHessian's log-scale
plot), Li et al.'s convexity heat map of ``|lambda_min / lambda_max|`` (0 to 0.5), and the loss
along paths between minima with their barriers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .._errors import require
from .save import finish
from .style import count_notes, palette, plane_axis_labels, require_var, styled, title_with_notes

__all__ = ["draw_convexity", "plot_block_spectra", "plot_connectivity", "plot_convexity_map", "plot_spectral_density"]


@styled
def plot_spectral_density(ds, path=None, title: str | None = None, log: bool = True) -> Figure:
    """The Hessian's eigenvalue density from :func:`lossatlas.curvature.spectral_density`.

    Parameters
    ----------
    ds : xarray.Dataset
        ``density`` over ``eigenvalue``.
    path : str or Path, optional
        Where to write the PNG and PDF.
    title : str, optional
    log : bool
        Log-scale density (PyHessian's figure; the outliers are orders of magnitude rarer than
        the bulk). A floor of 1e-7 keeps the empty stretches on the axes.

    Example
    -------
    >>> fig = plot_spectral_density(spectral_density(f), path="figures/density")   # doctest: +SKIP
    """
    require_var(ds, "density", "spectral density")
    x = np.asarray(ds["eigenvalue"].values, dtype=float)
    y = np.asarray(ds["density"].values, dtype=float)
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    bad = int((~np.isfinite(y)).sum())
    ax.plot(x, np.where(np.isfinite(y), y + (1e-7 if log else 0.0), np.nan), color="tab:blue")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)" if log else "density")
    runs = ds.sizes.get("run", 1)
    iters = ds.attrs.get("settings", {}).get("iterations")
    label = f"SLQ, {runs} run{'s' if runs != 1 else ''}" + (f", {iters} iterations" if iters else "")
    ax.set_title(title_with_notes(title or "Hessian eigenvalue density", title_with_notes(label, count_notes(bad, what="point"))))
    return finish(fig, path)


@styled
def plot_block_spectra(ds, path=None, title: str | None = None) -> Figure:
    """Top eigenvalues and traces per parameter group from :func:`lossatlas.curvature.block_spectra`.

    Left: each group's top eigenvalues (one marker per rank, log scale when all are positive).
    Right: each group's trace with its standard error (when the dataset has traces).

    Example
    -------
    >>> fig = plot_block_spectra(block_spectra(f, k=3, trace_samples=50), path="figures/blocks")  # doctest: +SKIP
    """
    require_var(ds, "eigenvalue", "block spectra")
    groups = [str(g) for g in ds["group"].values]
    vals = np.asarray(ds["eigenvalue"].values, dtype=float)
    has_trace = "trace" in ds
    fig = Figure(figsize=(4.0 + 0.35 * len(groups) * (2 if has_trace else 1), 3.4), layout="constrained")
    axes = fig.subplots(1, 2 if has_trace else 1, squeeze=False)[0]
    x = np.arange(len(groups))
    colors = palette(vals.shape[1])
    for r in range(vals.shape[1]):
        axes[0].scatter(x, vals[:, r], color=colors[r], label=f"rank {r + 1}", zorder=3)
    finite = vals[np.isfinite(vals)]
    if finite.size and np.all(finite > 0):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("eigenvalue")
    axes[0].legend(fontsize="small")
    curvature = ds.attrs.get("settings", {}).get("curvature", "hessian")
    bad = int((~np.isfinite(vals)).sum())
    axes[0].set_title(title_with_notes(title or f"top eigenvalues per group ({curvature})",
                                       count_notes(bad, what="eigenvalue")))
    if has_trace:
        tr = np.asarray(ds["trace"].values, dtype=float)
        se = np.asarray(ds["trace_stderr"].values, dtype=float)
        axes[1].bar(x, tr, yerr=np.nan_to_num(se), color="tab:blue", alpha=0.8, capsize=3)
        axes[1].set_ylabel("trace")
        axes[1].set_title("trace per group (+- standard error)")
    for ax in axes:
        ax.set_xticks(x, groups, rotation=45 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
        ax.set_xlabel("parameter group")
    return finish(fig, path)


def draw_convexity(ax, ds, vmax: float = 0.5):
    """Draw a convexity map's ``ratio`` on ``ax`` (colour 0 to ``vmax``, non-finite cells as grey
    crosses); return the mesh (for a colour bar) and the count of non-finite cells."""
    require_var(ds, "ratio", "convexity map")
    x = np.asarray(ds["x"].values, dtype=float)
    y = np.asarray(ds["y"].values, dtype=float)
    ratio = np.asarray(ds["ratio"].transpose("x", "y").values, dtype=float)
    bad = ~np.isfinite(ratio)
    # ratio[i, j] is at (x[i], y[j]); pcolormesh wants rows along y.
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(ratio.T), cmap="viridis", vmin=0.0, vmax=vmax,
                         shading="nearest")
    if bad.any():
        ii, jj = np.nonzero(bad)
        ax.scatter(x[ii], y[jj], marker="x", s=14, color="0.45", linewidths=0.9)
    xlabel, ylabel = plane_axis_labels(ds.attrs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal")
    return mesh, int(bad.sum())


@styled
def plot_convexity_map(ds, path=None, title: str | None = None, vmax: float = 0.5) -> Figure:
    """Li et al.'s heat map of ``|lambda_min / lambda_max|`` over a plane (0: locally convex).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`lossatlas.curvature.convexity_map`: ``ratio`` over ``("x", "y")``.
    path : str or Path, optional
    title : str, optional
    vmax : float
        Top of the colour scale (Li et al.: 0.5; larger ratios take its colour).

    Example
    -------
    >>> fig = plot_convexity_map(convexity_map(f, None, dirs), path="figures/convexity")   # doctest: +SKIP
    """
    require(vmax > 0, f"vmax must be positive, got {vmax}")
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    mesh, bad = draw_convexity(ax, ds, vmax)
    fig.colorbar(mesh, ax=ax, label=r"$|\lambda_{min} / \lambda_{max}|$", extend="max")
    ax.set_title(title_with_notes(title or "Hessian convexity", count_notes(bad)))
    return finish(fig, path)


@styled
def plot_connectivity(paths, path=None, title: str | None = None, variable: str = "loss",
                      log: bool = False) -> Figure:
    """Loss (or another variable) along paths between two minima, each with its barrier (the
    largest rise above the chord between the ends, :func:`lossatlas.connectivity.barrier_stats`).

    Parameters
    ----------
    paths : xarray.Dataset or mapping of label -> Dataset
        From :func:`lossatlas.connectivity.connect` (dim ``t``); test values, when present, are dashed.
    path : str or Path, optional
    title : str, optional
    variable : str
        ``"loss"`` or ``"accuracy"`` (the test counterpart is drawn beside it).
    log : bool
        Log scale for the values.

    Example
    -------
    >>> fig = plot_connectivity({m: connect(f, a, b, method=m) for m in ("linear", "bezier")})   # doctest: +SKIP
    """
    if not isinstance(paths, Mapping):
        paths = {paths.attrs.get("method", "path"): paths}
    require(len(paths) > 0, "give at least one path")
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    from ..connectivity.barrier import path_barriers

    diverged = 0
    for color, (label, ds) in zip(palette(len(paths)), paths.items()):
        require("t" in ds.dims, f"path {label!r} has no dim 't'; got {tuple(ds.dims)}")
        require_var(ds, variable, "path")
        got = path_barriers(ds) if "loss" in ds.data_vars else {}  # recomputed for a path stored before
        t = np.asarray(ds["t"].values, dtype=float)
        scale = 100.0 if "acc" in variable else 1.0
        for name, style in ((variable, "-"), (f"test_{variable}", "--")):
            if name not in ds.data_vars:
                continue
            v = np.asarray(ds[name].values, dtype=float)
            diverged += int((~np.isfinite(v)).sum())
            barrier = got.get("barrier" if name == "loss" else "test_barrier") if "loss" in name else None
            text = f"{label}" + (" (test)" if name.startswith("test_") else "")
            if barrier is not None and np.isfinite(barrier):
                text += f", barrier {barrier:.3g}"
            ax.plot(t, np.where(np.isfinite(v), v * scale, np.nan), linestyle=style, color=color, label=text)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("position on the path t")
    ax.set_ylabel("accuracy (%)" if "acc" in variable else variable.replace("_", " "))
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    ax.set_title(title_with_notes(title or "paths between minima", count_notes(diverged, what="point")))
    return finish(fig, path)

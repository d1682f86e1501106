"""The command line's standard set of figures for a plane or a line."""

from __future__ import annotations

from pathlib import Path

from .._errors import require
from .lines import plot_line
from .planes import plot_contour, plot_heatmap, plot_surface3d
from .save import save_figure

__all__ = ["plot_surface_set"]


def plot_surface_set(ds, outdir, prefix: str = "surface", options=None) -> list[Path]:
    """Write the standard figures of a plane or a line into ``outdir`` and return their paths.

    For a plane: ``{prefix}_contour``, ``{prefix}_heatmap``, ``{prefix}_surface3d``,
    ``{prefix}_surface3d_log`` and, when present, ``{prefix}_test_loss_contour``; for a line:
    ``{prefix}_line``. Each as PNG and PDF. ``options`` (:class:`~lossatlas.plot.FigureOptions`):
    figure size, font size, levels and colour range of the plane figures.

    Example
    -------
    >>> plot_surface_set(ds, "run/figures")   # doctest: +SKIP
    """
    outdir = Path(outdir)
    written: list[Path] = []
    if "t" in ds.dims:
        fig = plot_line(ds)
        written += save_figure(fig, outdir / f"{prefix}_line")
        return written
    require("x" in ds.dims and "y" in ds.dims,
            f"expected a plane (dims 'x', 'y') or a line (dim 't'); got dims {tuple(ds.dims)}")
    jobs = [
        ("contour", plot_contour, {"var": "loss"}),
        ("heatmap", plot_heatmap, {"var": "loss"}),
        ("surface3d", plot_surface3d, {"var": "loss"}),
        ("surface3d_log", plot_surface3d, {"var": "loss", "log": True}),
    ]
    if "test_loss" in ds.data_vars:
        jobs.append(("test_loss_contour", plot_contour, {"var": "test_loss"}))
    for name, fn, kwargs in jobs:
        fig = fn(ds, **kwargs, options=options)
        written += save_figure(fig, outdir / f"{prefix}_{name}")
    return written

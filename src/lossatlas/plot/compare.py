"""Minima side by side (Li et al. Figs. 5 and 6): one contour panel per minimum, every panel on the
same contour levels and the same colour range, with one colorbar for them all, so that a wider
basin reads as wider at a glance."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .._errors import require
from .planes import Plane, declutter_labels, default_levels, draw_contour, square_axes
from .save import finish
from .style import FigureOptions, plane_axis_labels, styled, title_with_notes

__all__ = ["shared_levels", "plot_compare"]


def shared_levels(planes: Mapping[str, object], var: str = "loss", n: int = 12) -> tuple[tuple[float, ...], tuple[float, float]]:
    """Contour levels and a colour range (both in the variable's units) that suit every plane.

    The levels crowd near the lowest minimum, as :func:`default_levels` does for one plane, and run
    to the 95 % quantile of all the planes' finite values together; the colour range spans from
    the lowest value to the highest level. Accuracies are fractions.

    Example
    -------
    >>> levels, vrange = shared_levels({"SB": ds_sb, "LB": ds_lb})   # doctest: +SKIP
    """
    values = [Plane(ds, var, log=False).finite for ds in planes.values()]
    pooled = np.concatenate(values + [np.zeros(0)])
    levels = default_levels(pooled, n=n)
    require(levels.size > 0, f"no two distinct finite values of {var!r} in the planes: nothing to contour")
    scale = 100.0 if "acc" in var else 1.0
    lo = float(pooled.min()) / scale
    return tuple(float(v) / scale for v in levels), (lo, float(levels[-1]) / scale)


@styled
def plot_compare(planes: Mapping[str, object], var: str = "loss", path=None, title: str | None = None,
                 subtitles: Mapping[str, str] | None = None, options: FigureOptions | None = None) -> Figure:
    """Contours of several minima side by side on shared levels and one colour range.

    Parameters
    ----------
    planes : dict name -> xarray.Dataset
        One plane per minimum (dims ``x``, ``y``), each around its own minimum; the panels keep
        this order.
    var : str
        The variable drawn (``loss``, ``test_loss``, ...).
    path, title
        Where to save (PNG and PDF), and a figure title.
    subtitles : dict name -> str, optional
        A second line under each panel's name (e.g. "test accuracy 91.2 %").
    options : FigureOptions, optional
        Figure size and font size; ``levels`` and ``vrange`` replace the shared ones computed
        from all the planes (:func:`shared_levels`).

    Example
    -------
    >>> fig = plot_compare({"SGD, batch 128": ds_sb, "SGD, batch 8192": ds_lb}, path="figures/compare")   # doctest: +SKIP
    """
    require(isinstance(planes, Mapping) and len(planes) > 0, "give the planes as a dict name -> plane Dataset")
    opts = options or FigureOptions()
    levels, vrange = opts.levels, opts.vrange
    if levels is None or vrange is None:
        auto_levels, auto_range = shared_levels(planes, var)
        levels = levels if levels is not None else auto_levels
        vrange = vrange if vrange is not None else auto_range
    n = len(planes)
    fig = Figure(figsize=opts.figsize((3.2 * n + 0.9, 3.4)), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    sets, mappable = [], None
    for ax, (name, ds) in zip(axes, planes.items()):
        plane = Plane(ds, var, log=False)
        cs = draw_contour(ax, plane, levels, vrange=vrange, linewidths=0.9, label_size=opts.label_size())
        sets.append(cs)
        mappable = mappable or cs
        ax.plot([0], [0], marker="*", color="black", markersize=8, linestyle="none", zorder=4)
        xlabel, ylabel = plane_axis_labels(ds.attrs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if ax is axes[0] else "")
        square_axes(ax, plane.x, plane.y)
        head = name + (f"\n{subtitles[name]}" if subtitles and name in subtitles else "")
        ax.set_title(title_with_notes(head, plane.notes))
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), label=Plane(next(iter(planes.values())), var, False).label,
                     shrink=0.9, format="{x:.3g}")
    else:
        fig.text(0.5, 0.02, f"no panel has finite {var} values within the shared levels", ha="center", color="0.3")
    if title:
        fig.suptitle(title)
    declutter_labels(fig, sets)
    return finish(fig, path)

"""Figures of a plane (dims ``x``, ``y``): contours, a heatmap and a 3-D surface, with their levels.

Cells not yet computed (``done`` false) are gaps; computed cells that are NaN or inf are counted as
diverged, masked (contours, surfaces) or grey (heatmap), marked, and reported in the title.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .._errors import require
from .save import finish
from .style import (FigureOptions, cmap_for, count_notes, is_accuracy, join_notes, log10_positive, plane_axis_labels,
                    require_var, styled, title_with_notes, var_label)

__all__ = ["Plane", "default_levels", "declutter_labels", "draw_contour", "plot_contour", "plot_heatmap",
           "plot_surface3d", "square_axes"]


class Plane:
    """A plane's variable laid out for drawing: ``z[j, i]`` is at (x[i], y[j]) (rows = y).

    Cells not computed (``done`` false) and diverged cells (NaN/inf) are NaN in ``z`` and masked in
    ``masked``; ``diverged``, ``missing`` and ``notes`` count them for the title.

    Example
    -------
    >>> Plane(ds, "loss", log=False).notes   # doctest: +SKIP
    '3 cells diverged (masked)'
    """

    def __init__(self, ds, var: str, log: bool):
        require(
            "x" in ds.dims and "y" in ds.dims,
            f"expected a plane Dataset with dims ('x', 'y'); got dims {tuple(ds.dims)} "
            "(for a line with dim 't' use plot_line)",
        )
        require_var(ds, var, "plane")
        self.var, self.log = var, log
        self.x = np.asarray(ds["x"].values, dtype=float)
        self.y = np.asarray(ds["y"].values, dtype=float)
        # The data are stored (x, y); drawing functions want rows along y, hence the transpose.
        raw = np.asarray(ds[var].transpose("x", "y").values, dtype=float)
        if "done" in ds.data_vars:
            done = np.asarray(ds["done"].transpose("x", "y").values, dtype=bool)
        else:
            done = np.ones(raw.shape, dtype=bool)
        self.diverged_mask = (done & ~np.isfinite(raw)).T
        self.diverged = int(self.diverged_mask.sum())
        self.missing = int((~done).sum())
        values = np.where(done & np.isfinite(raw), raw, np.nan)
        if is_accuracy(var):
            values = 100.0 * values
        if log:
            values = log10_positive(values)
        self.z = values.T
        self.masked = np.ma.masked_invalid(self.z)
        self.finite = self.z[np.isfinite(self.z)]
        self.center_diverged = self._center_diverged(raw, done)

    def _center_diverged(self, raw, done) -> bool:
        """Whether the plane's centre (0, 0) is a grid cell that was computed and is NaN or inf."""
        if not (len(self.x) and len(self.y)):
            return False
        i, j = int(np.argmin(np.abs(self.x))), int(np.argmin(np.abs(self.y)))
        tol = 1e-9 * max(np.ptp(self.x), np.ptp(self.y), 1.0)
        at_center = abs(self.x[i]) <= tol and abs(self.y[j]) <= tol
        return bool(at_center and done[i, j] and not np.isfinite(raw[i, j]))

    @property
    def label(self) -> str:
        return var_label(self.var, self.log)

    @property
    def notes(self) -> str:
        """What the figure must say about its data: diverged and missing cells, a diverged centre,
        nothing finite at all."""
        degenerate = ""
        if self.center_diverged:
            degenerate = f"centre diverged ({self.label} NaN/inf)"
        elif self.finite.size == 0 and self.diverged:
            degenerate = "every computed cell diverged"
        return join_notes(degenerate, count_notes(self.diverged, self.missing))

    def to_plot_units(self, levels) -> np.ndarray:
        levels = np.asarray(levels, dtype=float)
        if is_accuracy(self.var):
            levels = levels * 100.0
        if self.log:
            levels = np.log10(levels[levels > 0])
        return levels

    def range_to_plot_units(self, vrange) -> tuple[float, float]:
        """A colour range (low, high) in the variable's units, in the units drawn."""
        vals = np.asarray(vrange, dtype=float) * (100.0 if is_accuracy(self.var) else 1.0)
        if self.log:
            vals = np.log10(np.maximum(vals, 1e-300))
        return float(vals[0]), float(vals[1])


def default_levels(values: np.ndarray, n: int = 12, log: bool = False) -> np.ndarray:
    """Contour levels dense near the minimum and sparse towards the 95 % quantile (Li et al.).

    On a log scale the levels are evenly spaced (geometric in the loss itself); so are they when
    the values span two decades or more.

    Example
    -------
    >>> default_levels(np.linspace(0, 10, 101))[:3]   # doctest: +SKIP
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.array([])
    lo = float(finite.min())
    hi = float(np.quantile(finite, 0.95))
    if hi <= lo:
        hi = float(finite.max())
    if hi <= lo:
        return np.array([])
    if log:
        return np.linspace(lo, hi, n + 1)[1:]
    if lo > 0 and hi / lo >= 100:
        # Several decades (a plane reaching far from a minimum, as the PCA plane of a whole
        # trajectory does): geometric levels, so the basin keeps its contours instead of all
        # of them crowding the walls a thousand times higher.
        return np.geomspace(lo, hi, n + 1)[1:]
    ratio = 20.0
    return lo + (hi - lo) * (np.geomspace(1.0, 1.0 + ratio, n + 1)[1:] - 1.0) / ratio


def _level_formatter(plane: Plane):
    def fmt(v):
        return f"{10.0**v:.3g}" if plane.log else f"{v:.3g}"

    return fmt


def square_axes(ax, x, y) -> None:
    """Equal units on both axes when the plane's two ranges are comparable."""
    # Equal units when both directions span comparable ranges (the usual symmetric plane).
    xr, yr = np.ptp(x) if len(x) > 1 else 0, np.ptp(y) if len(y) > 1 else 0
    if xr > 0 and yr > 0 and 0.5 <= xr / yr <= 2:
        ax.set_aspect("equal", adjustable="box")


def draw_contour(ax, plane: Plane, levels=None, cmap=None, label_levels=True, linewidths=1.0, vrange=None,
                 label_size: float = 7.0):
    """Draw the plane's labelled contour lines on ``ax``; return the ContourSet or None.

    ``levels`` and ``vrange`` (the colour range) are in the variable's units; labels sit on a light
    box over their line, and :func:`declutter_labels` removes those that would collide.
    """
    lv = default_levels(plane.finite, log=plane.log) if levels is None else plane.to_plot_units(levels)
    lv = np.unique(lv[np.isfinite(lv)]) if len(lv) else lv
    if plane.finite.size == 0 or len(lv) == 0 or len(plane.x) < 2 or len(plane.y) < 2:
        why = "no finite values to contour" if plane.finite.size == 0 else "no contour level within the values"
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlim(plane.x.min(), plane.x.max()) if len(plane.x) else None
        ax.set_ylim(plane.y.min(), plane.y.max()) if len(plane.y) else None
        return None
    norm = None
    if vrange is not None:
        norm = Normalize(*plane.range_to_plot_units(vrange))
    cs = ax.contour(plane.x, plane.y, plane.masked, levels=lv, cmap=cmap or cmap_for(plane.var),
                    linewidths=linewidths, norm=norm)
    if label_levels and len(cs.levels):
        texts = ax.clabel(cs, inline=False, fontsize=label_size, fmt=_level_formatter(plane))
        for t in texts:
            t.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.4})
    return cs


def declutter_labels(fig, contour_sets) -> int:
    """Remove contour labels that overlap an earlier label (in level order) or leave their axes.

    The figure is laid out once (Agg) so that the labels' extents are the ones that will be saved.
    Returns how many labels were removed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    sets = [cs for cs in contour_sets if cs is not None and getattr(cs, "labelTexts", None)]
    if not sets:
        return 0
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = canvas.get_renderer()
    removed = 0
    for cs in sets:
        box = cs.axes.get_window_extent(renderer)
        kept = []
        for text in list(cs.labelTexts):
            ext = text.get_window_extent(renderer).expanded(1.1, 1.2)
            inside = box.contains(ext.x0, ext.y0) and box.contains(ext.x1, ext.y1)
            if inside and not any(ext.overlaps(k) for k in kept):
                kept.append(ext)
                continue
            text.remove()
            cs.labelTexts.remove(text)
            removed += 1
    return removed


def _draw_diverged(ax, plane: Plane) -> None:
    if plane.diverged:
        X, Y = np.meshgrid(plane.x, plane.y)
        ax.scatter(X[plane.diverged_mask], Y[plane.diverged_mask], marker="x", s=10,
                   linewidths=0.8, color="0.55", zorder=3, label=f"diverged ({plane.diverged})")


def _plane_axes_labels(ax, ds) -> None:
    xlabel, ylabel = plane_axis_labels(ds.attrs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


@styled
def plot_contour(ds, var: str = "loss", levels=None, log: bool = False, path=None,
                 title: str | None = None, center_marker: bool = True,
                 options: FigureOptions | None = None) -> Figure:
    """Contour lines of a plane with labelled levels and a colorbar naming the loss, as Li et al.

    Parameters
    ----------
    ds : xarray.Dataset
        A plane: dims ``("x", "y")``, ``ds[var][i, j]`` at ``center + x[i] d0 + y[j] d1``; an
        optional bool ``done`` marks computed cells (others are drawn as gaps). NaN/inf cells in
        computed cells are counted as diverged, masked, and reported in the title; a diverged
        centre is said so in the title.
    var : str
        The variable to draw (``loss``, ``accuracy``, ``test_loss``, ...); accuracies are in %.
    levels : array-like, optional
        Levels in the variable's units (a fraction for accuracies). By default 12 levels spaced
        geometrically from the minimum to the 95 % quantile, so they crowd near the minimum.
        ``options.levels`` is used when this is not given.
    log : bool
        Contour log10 of the values (labels still show the values themselves).
    path : str or Path, optional
        Where to write the PNG and PDF.
    title : str, optional
        Defaults to ``ds.attrs["title"]`` or the variable's name.
    center_marker : bool
        Mark the plane's center (0, 0).
    options : FigureOptions, optional
        Figure size, font size, shared levels and colour range (for a paper's panels).

    Example
    -------
    >>> fig = plot_contour(la.plane(f, f.origin, dirs), path="figures/contour")   # doctest: +SKIP
    """
    opts = options or FigureOptions()
    plane = Plane(ds, var, log)
    fig = Figure(figsize=opts.figsize((4.8, 3.9)), layout="constrained")
    ax = fig.add_subplot()
    cs = draw_contour(ax, plane, levels if levels is not None else opts.levels, vrange=opts.vrange,
                      label_size=opts.label_size())
    if cs is not None:
        fig.colorbar(cs, ax=ax, label=plane.label, shrink=0.9, format="{x:.3g}")
    _draw_diverged(ax, plane)
    if center_marker:
        ax.plot([0], [0], marker="*", color="black", markersize=9, linestyle="none",
                label="center", zorder=4)
    _plane_axes_labels(ax, ds)
    square_axes(ax, plane.x, plane.y)
    if plane.diverged:
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(title_with_notes(base, plane.notes))
    declutter_labels(fig, [cs])
    return finish(fig, path)


@styled
def plot_heatmap(ds, var: str = "loss", log: bool = False, path=None, title: str | None = None,
                 vmax_quantile: float | None = None, center_marker: bool = True,
                 options: FigureOptions | None = None) -> Figure:
    """A plane as a filled map (pcolormesh, x horizontal, y vertical) with a labelled colorbar.

    Cells not yet computed (``done`` false) are left blank; diverged cells (NaN/inf) are grey and
    counted in the title.

    Parameters
    ----------
    ds : xarray.Dataset
        A plane, as in :func:`plot_contour`.
    var, log, path, title, center_marker
        As in :func:`plot_contour`.
    vmax_quantile : float, optional
        Clip the colour scale at this quantile of the finite values (e.g. 0.95) so a few huge
        values do not wash out the basin.

    Example
    -------
    >>> fig = plot_heatmap(ds, log=True, path="figures/heatmap")   # doctest: +SKIP
    """
    opts = options or FigureOptions()
    plane = Plane(ds, var, log)
    fig = Figure(figsize=opts.figsize((4.6, 3.9)), layout="constrained")
    ax = fig.add_subplot()
    vmin = vmax = None
    if opts.vrange is not None:
        vmin, vmax = plane.range_to_plot_units(opts.vrange)
    elif plane.finite.size:
        vmin = float(plane.finite.min())
        vmax = float(np.quantile(plane.finite, vmax_quantile) if vmax_quantile else plane.finite.max())
    if plane.finite.size == 0:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", color="0.3")
    if plane.diverged:
        ax.pcolormesh(plane.x, plane.y, np.ma.masked_where(~plane.diverged_mask, plane.diverged_mask),
                      shading="nearest", cmap=LinearSegmentedColormap.from_list("g", ["0.7", "0.7"]),
                      rasterized=True)
    mesh = ax.pcolormesh(plane.x, plane.y, plane.masked, shading="nearest", cmap=cmap_for(var),
                         vmin=vmin, vmax=vmax, rasterized=True)
    fig.colorbar(mesh, ax=ax, label=plane.label, extend="max" if vmax_quantile else "neither")
    handles = []
    if plane.diverged:
        handles.append(Patch(color="0.7", label=f"diverged ({plane.diverged})"))
    if center_marker:
        (h,) = ax.plot([0], [0], marker="*", color="white", markeredgecolor="black", markersize=10,
                       linestyle="none", label="center")
        handles.append(h)
    if plane.diverged:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    _plane_axes_labels(ax, ds)
    square_axes(ax, plane.x, plane.y)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(title_with_notes(base, plane.notes))
    return finish(fig, path)


@styled
def plot_surface3d(ds, var: str = "loss", log: bool = False, path=None, title: str | None = None,
                   elev: float = 35.0, azim: float = -60.0, options: FigureOptions | None = None) -> Figure:
    """A plane as a 3-D surface (mpl_toolkits.mplot3d), coloured by height, with a colorbar.

    Gaps (not computed) and diverged cells are left out of the surface; the title counts them.

    Parameters
    ----------
    ds : xarray.Dataset
        A plane, as in :func:`plot_contour`.
    var, path, title
        As in :func:`plot_contour`.
    log : bool
        Plot log10 of the values on the z axis (shows the basin and the walls together).
    elev, azim : float
        The viewing angles.
    options : FigureOptions, optional
        Figure size, font size and a colour range shared with other figures.

    Example
    -------
    >>> fig = plot_surface3d(ds, log=True)   # doctest: +SKIP
    """
    opts = options or FigureOptions()
    plane = Plane(ds, var, log)
    fig = Figure(figsize=opts.figsize((5.0, 4.2)), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(plane.x, plane.y)
    if plane.finite.size and plane.z.shape[0] > 1 and plane.z.shape[1] > 1:
        lo_hi = (plane.range_to_plot_units(opts.vrange) if opts.vrange is not None
                 else (float(plane.finite.min()), float(plane.finite.max())))
        norm = Normalize(*lo_hi)
        surf = ax.plot_surface(X, Y, plane.z, cmap=cmap_for(var), norm=norm,
                               rcount=min(plane.z.shape[0], 101), ccount=min(plane.z.shape[1], 101),
                               linewidth=0, antialiased=True, rasterized=True)
        fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.08, label=plane.label)
    else:
        ax.text2D(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center")
    _plane_axes_labels(ax, ds)
    ax.set_zlabel(plane.label)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.zaxis.set_major_locator(MaxNLocator(5))
    ax.view_init(elev=elev, azim=azim)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(title_with_notes(base, plane.notes))
    return finish(fig, path)

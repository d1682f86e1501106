"""Static, paper-ready figures of sampled loss landscapes (matplotlib).

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, nothing is shown)
inside a local style context, so the caller's ``rcParams`` are never changed. Each returns the figure
and, when ``path`` is given, also writes it as PNG (200 dpi) and vector PDF through
:func:`save_figure`.

The inputs are the xarray Datasets of the samplers (lines with dim ``t``; planes with dims ``x``,
``y``; samples with dim ``point``) and the NumPy arrays of the analysis modules (embeddings,
projections, persistence diagrams).

Example
-------
>>> import numpy as np, xarray as xr
>>> import lossatlas.plot as lp
>>> x = np.linspace(-1, 1, 21)
>>> ds = xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, 2 * x**2))}, coords={"x": x, "y": x})
>>> fig = lp.plot_contour(ds)                        # doctest: +SKIP
>>> paths = lp.plot_surface_set(ds, "run/figures")   # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ._errors import require

__all__ = [
    "STYLE",
    "save_figure",
    "plot_line",
    "plot_contour",
    "plot_heatmap",
    "plot_surface3d",
    "plot_surface_set",
    "plot_trajectory",
    "plot_embedding",
    "plot_embedding_panel",
    "plot_optimizer_trajectories",
    "plot_persistence",
]

#: The style applied (locally, through ``rc_context``) while building and saving every figure.
#: TrueType fonts in the PDF (fonttype 42) keep the text editable in vector editors.
STYLE: dict[str, object] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "axes.linewidth": 0.8,
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}

#: One colormap per kind of quantity, used by every figure so loss always looks the same.
CMAPS = {"loss": "viridis", "accuracy": "cividis", "epoch": "plasma", "step_size": "plasma"}

PNG_DPI = 200
LOSS_COLOR = "tab:blue"
ACCURACY_COLOR = "tab:red"
LR_DROP_COLOR = "red"
_FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff")

_VAR_LABELS = {
    "loss": "train loss",
    "accuracy": "train accuracy (%)",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy (%)",
}


def _styled(fn):
    """Run ``fn`` inside the local style, so nothing leaks into the caller's rcParams."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------------------
# saving


@_styled
def save_figure(fig: Figure, path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` once per format next to ``path`` and return the written paths.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Target path; its suffix, if any, is replaced by each format's. Parent folders are created.
    formats : sequence of str
        File formats, by default PNG (200 dpi) and PDF (vector).

    Returns
    -------
    list of Path, in the order of ``formats``.

    Example
    -------
    >>> save_figure(fig, "figures/contour.png")   # doctest: +SKIP
    [PosixPath('figures/contour.png'), PosixPath('figures/contour.pdf')]
    """
    if isinstance(formats, str):
        formats = (formats,)
    formats = [f.lower().lstrip(".") for f in formats]
    unknown = [f for f in formats if f not in _FORMATS]
    require(not unknown, f"unknown figure format(s) {unknown}; use some of {list(_FORMATS)}")
    require(len(formats) > 0, "formats is empty; pass e.g. formats=('png', 'pdf')")
    stem = Path(path)
    if stem.suffix:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(target, format=fmt, dpi=PNG_DPI)
        written.append(target)
    return written


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------------------
# small helpers


def _is_accuracy(var: str) -> bool:
    return "acc" in var


def _var_label(var: str, log: bool = False) -> str:
    label = _VAR_LABELS.get(var, var.replace("_", " "))
    return f"log$_{{10}}$ {label}" if log else label


def _cmap_for(var: str) -> str:
    return CMAPS["accuracy"] if _is_accuracy(var) else CMAPS["loss"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _log10_positive(values: np.ndarray) -> np.ndarray:
    """log10 of finite values; zeros (an exact fit) go to the smallest positive value, not -inf."""
    out = np.array(values, dtype=float)
    finite = np.isfinite(out)
    positive = finite & (out > 0)
    floor = out[positive].min() if positive.any() else 1e-12
    out[finite] = np.log10(np.maximum(out[finite], floor))
    return out


def _require_var(ds, var: str, kind: str) -> None:
    require(
        var in ds.data_vars,
        f"the {kind} has no variable {var!r}; it has {sorted(map(str, ds.data_vars))}",
    )


def _notes(diverged: int = 0, missing: int = 0, what: str = "cell") -> str:
    parts = []
    if diverged:
        parts.append(f"{_plural(diverged, what)} diverged (masked)")
    if missing:
        parts.append(f"{_plural(missing, what)} not computed")
    return "; ".join(parts)


def _title_with_notes(title: str | None, notes: str) -> str:
    if not notes:
        return title or ""
    return f"{title}\n{notes}" if title else notes


# --------------------------------------------------------------------------------------------------
# planes


class _Plane:
    """A plane's variable laid out for drawing: ``z[j, i]`` is at (x[i], y[j]) (rows = y)."""

    def __init__(self, ds, var: str, log: bool):
        require(
            "x" in ds.dims and "y" in ds.dims,
            f"expected a plane Dataset with dims ('x', 'y'); got dims {tuple(ds.dims)} "
            "(for a line with dim 't' use plot_line)",
        )
        _require_var(ds, var, "plane")
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
        if _is_accuracy(var):
            values = 100.0 * values
        if log:
            values = _log10_positive(values)
        self.z = values.T
        self.masked = np.ma.masked_invalid(self.z)
        self.finite = self.z[np.isfinite(self.z)]

    @property
    def label(self) -> str:
        return _var_label(self.var, self.log)

    @property
    def notes(self) -> str:
        return _notes(self.diverged, self.missing)

    def to_plot_units(self, levels) -> np.ndarray:
        levels = np.asarray(levels, dtype=float)
        if _is_accuracy(self.var):
            levels = levels * 100.0
        if self.log:
            levels = np.log10(levels[levels > 0])
        return levels


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


def _level_formatter(plane: _Plane):
    def fmt(v):
        return f"{10.0**v:.3g}" if plane.log else f"{v:.3g}"

    return fmt


def _square(ax, x, y) -> None:
    # Equal units when both directions span comparable ranges (the usual symmetric plane).
    xr, yr = np.ptp(x) if len(x) > 1 else 0, np.ptp(y) if len(y) > 1 else 0
    if xr > 0 and yr > 0 and 0.5 <= xr / yr <= 2:
        ax.set_aspect("equal", adjustable="box")


def _draw_contour(ax, plane: _Plane, levels=None, cmap=None, label_levels=True, linewidths=1.0):
    """Draw the plane's labelled contour lines on ``ax``; return the ContourSet or None."""
    lv = default_levels(plane.finite, log=plane.log) if levels is None else plane.to_plot_units(levels)
    lv = np.unique(lv[np.isfinite(lv)]) if len(lv) else lv
    if plane.finite.size == 0 or len(lv) == 0 or len(plane.x) < 2 or len(plane.y) < 2:
        ax.text(0.5, 0.5, "no finite values to contour", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
        ax.set_xlim(plane.x.min(), plane.x.max()) if len(plane.x) else None
        ax.set_ylim(plane.y.min(), plane.y.max()) if len(plane.y) else None
        return None
    cs = ax.contour(plane.x, plane.y, plane.masked, levels=lv, cmap=cmap or _cmap_for(plane.var),
                    linewidths=linewidths)
    if label_levels and len(cs.levels):
        ax.clabel(cs, inline=True, fontsize=7, fmt=_level_formatter(plane))
    return cs


def _draw_diverged(ax, plane: _Plane) -> None:
    if plane.diverged:
        X, Y = np.meshgrid(plane.x, plane.y)
        ax.scatter(X[plane.diverged_mask], Y[plane.diverged_mask], marker="x", s=10,
                   linewidths=0.8, color="0.55", zorder=3, label=f"diverged ({plane.diverged})")


def _plane_axes_labels(ax, ds) -> None:
    ax.set_xlabel(ds.attrs.get("xlabel", "direction 1 (x)"))
    ax.set_ylabel(ds.attrs.get("ylabel", "direction 2 (y)"))


@_styled
def plot_contour(ds, var: str = "loss", levels=None, log: bool = False, path=None,
                 title: str | None = None, center_marker: bool = True) -> Figure:
    """Contour lines of a plane with labelled levels, in the style of Li et al.

    Parameters
    ----------
    ds : xarray.Dataset
        A plane: dims ``("x", "y")``, ``ds[var][i, j]`` at ``center + x[i] d0 + y[j] d1``; an
        optional bool ``done`` marks computed cells (others are drawn as gaps). NaN/inf cells in
        computed cells are counted as diverged, masked, and reported in the title.
    var : str
        The variable to draw (``loss``, ``accuracy``, ``test_loss``, ...); accuracies are in %.
    levels : array-like, optional
        Levels in the variable's units (a fraction for accuracies). By default 12 levels spaced
        geometrically from the minimum to the 95 % quantile, so they crowd near the minimum.
    log : bool
        Contour log10 of the values (labels still show the values themselves).
    path : str or Path, optional
        Where to write the PNG and PDF.
    title : str, optional
        Defaults to ``ds.attrs["title"]`` or the variable's name.
    center_marker : bool
        Mark the plane's center (0, 0).

    Example
    -------
    >>> fig = plot_contour(la.plane(f, f.origin, dirs), path="figures/contour")   # doctest: +SKIP
    """
    plane = _Plane(ds, var, log)
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    _draw_contour(ax, plane, levels)
    _draw_diverged(ax, plane)
    if center_marker:
        ax.plot([0], [0], marker="*", color="black", markersize=9, linestyle="none",
                label="center", zorder=4)
    _plane_axes_labels(ax, ds)
    _square(ax, plane.x, plane.y)
    if plane.diverged:
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(_title_with_notes(base, plane.notes))
    return _finish(fig, path)


@_styled
def plot_heatmap(ds, var: str = "loss", log: bool = False, path=None, title: str | None = None,
                 vmax_quantile: float | None = None, center_marker: bool = True) -> Figure:
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
    plane = _Plane(ds, var, log)
    fig = Figure(figsize=(4.6, 3.9), layout="constrained")
    ax = fig.add_subplot()
    vmin = vmax = None
    if plane.finite.size:
        vmin = float(plane.finite.min())
        vmax = float(np.quantile(plane.finite, vmax_quantile) if vmax_quantile else plane.finite.max())
    if plane.diverged:
        ax.pcolormesh(plane.x, plane.y, np.ma.masked_where(~plane.diverged_mask, plane.diverged_mask),
                      shading="nearest", cmap=LinearSegmentedColormap.from_list("g", ["0.7", "0.7"]),
                      rasterized=True)
    mesh = ax.pcolormesh(plane.x, plane.y, plane.masked, shading="nearest", cmap=_cmap_for(var),
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
    _square(ax, plane.x, plane.y)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(_title_with_notes(base, plane.notes))
    return _finish(fig, path)


@_styled
def plot_surface3d(ds, var: str = "loss", log: bool = False, path=None, title: str | None = None,
                   elev: float = 35.0, azim: float = -60.0) -> Figure:
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

    Example
    -------
    >>> fig = plot_surface3d(ds, log=True)   # doctest: +SKIP
    """
    plane = _Plane(ds, var, log)
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(plane.x, plane.y)
    if plane.finite.size and plane.z.shape[0] > 1 and plane.z.shape[1] > 1:
        norm = Normalize(float(plane.finite.min()), float(plane.finite.max()))
        surf = ax.plot_surface(X, Y, plane.z, cmap=_cmap_for(var), norm=norm,
                               rcount=min(plane.z.shape[0], 101), ccount=min(plane.z.shape[1], 101),
                               linewidth=0, antialiased=True, rasterized=True)
        fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.08, label=plane.label)
    else:
        ax.text2D(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center")
    ax.set_xlabel(ds.attrs.get("xlabel", "direction 1 (x)"))
    ax.set_ylabel(ds.attrs.get("ylabel", "direction 2 (y)"))
    ax.set_zlabel(plane.label)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.zaxis.set_major_locator(MaxNLocator(5))
    ax.view_init(elev=elev, azim=azim)
    base = title if title is not None else ds.attrs.get("title", plane.label)
    ax.set_title(_title_with_notes(base, plane.notes))
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------------
# lines


@_styled
def plot_line(ds, path=None, title: str | None = None, log: bool = False) -> Figure:
    """1-D interpolation plot: loss on the left axis, accuracy (%) on the right (Li et al. Fig. 2).

    Train values are solid, test values dashed; loss is blue and accuracy red. If the Dataset's
    attrs hold ``label_start`` / ``label_end``, the points t = 0 and t = 1 are marked with them.

    Parameters
    ----------
    ds : xarray.Dataset
        A line: dim ``t``; ``loss`` and optionally ``accuracy``, ``test_loss``, ``test_accuracy``.
    path : str or Path, optional
        Where to write the PNG and PDF.
    title : str, optional
        Defaults to ``ds.attrs["title"]``.
    log : bool
        Log scale for the loss axis.

    Example
    -------
    >>> fig = plot_line(la.line(f, theta_small, theta_large), path="figures/interp")   # doctest: +SKIP
    """
    require("t" in ds.dims, f"expected a line Dataset with dim 't'; got dims {tuple(ds.dims)}")
    _require_var(ds, "loss", "line")
    t = np.asarray(ds["t"].values, dtype=float)
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    handles = []
    diverged = 0

    def values(name, scale=1.0):
        nonlocal diverged
        v = np.asarray(ds[name].values, dtype=float)
        diverged = max(diverged, int((~np.isfinite(v)).sum()))
        return np.where(np.isfinite(v), v * scale, np.nan)

    for name, style in (("loss", "-"), ("test_loss", "--")):
        if name in ds.data_vars:
            (h,) = ax.plot(t, values(name), linestyle=style, color=LOSS_COLOR, label=_var_label(name))
            handles.append(h)
    ax.set_ylabel("loss", color=LOSS_COLOR)
    ax.tick_params(axis="y", colors=LOSS_COLOR)
    if log:
        ax.set_yscale("log")
    accs = [n for n in ("accuracy", "test_accuracy") if n in ds.data_vars]
    if accs:
        ax2 = ax.twinx()
        for name in accs:
            style = "--" if name.startswith("test") else "-"
            (h,) = ax2.plot(t, values(name, 100.0), linestyle=style, color=ACCURACY_COLOR,
                            label=_var_label(name))
            handles.append(h)
        ax2.set_ylabel("accuracy (%)", color=ACCURACY_COLOR)
        ax2.tick_params(axis="y", colors=ACCURACY_COLOR)
        ax2.set_ylim(-2, 102)
    for tick, key in ((0.0, "label_start"), (1.0, "label_end")):
        label = ds.attrs.get(key)
        if label and len(t) and t.min() <= tick <= t.max():
            ax.axvline(tick, color="0.6", linewidth=0.8, linestyle=":")
            ax.annotate(str(label), xy=(tick, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=8)
    ax.set_xlabel(ds.attrs.get("xlabel", "interpolation coefficient t"))
    if len(t):
        ax.set_xlim(t.min(), t.max())
    # Below the axes: inside, it would cover one of the curves whatever the corner.
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    base = title if title is not None else ds.attrs.get("title")
    has_marks = any(ds.attrs.get(k) for k in ("label_start", "label_end"))
    full = _title_with_notes(base, _notes(diverged, what="point"))
    if full:
        ax.set_title(full, pad=14 if has_marks else 6)
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------------
# the CLI's bundle


def plot_surface_set(ds, outdir, prefix: str = "surface") -> list[Path]:
    """Write the standard figures of a plane or a line into ``outdir`` and return their paths.

    For a plane: ``{prefix}_contour``, ``{prefix}_heatmap``, ``{prefix}_surface3d``,
    ``{prefix}_surface3d_log`` and, when present, ``{prefix}_test_loss_contour``; for a line:
    ``{prefix}_line``. Each as PNG and PDF.

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
        fig = fn(ds, **kwargs)
        written += save_figure(fig, outdir / f"{prefix}_{name}")
    return written


# --------------------------------------------------------------------------------------------------
# trajectories on PCA (or random) directions


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _drop_indices(epochs: np.ndarray, lr_drops) -> list[int]:
    """The snapshot for each learning-rate drop: the exact epoch if recorded, else the nearest."""
    out = []
    if len(epochs) == 0:
        return out
    for e in np.atleast_1d(np.asarray(lr_drops, dtype=float)).ravel():
        e = float(e)
        if e < epochs.min() or e > epochs.max():
            continue
        exact = np.flatnonzero(np.isclose(epochs, e))
        i = int(exact[0]) if exact.size else int(np.argmin(np.abs(epochs - e)))
        if i not in out:
            out.append(i)
    return out


@_styled
def plot_trajectory(coords, epochs, explained=None, lr_drops=(), plane=None, path=None,
                    title: str | None = None, var: str = "loss", log: bool = False) -> Figure:
    """An optimizer's path projected on two directions, over the loss contours (Li et al. Fig. 9).

    Parameters
    ----------
    coords : array [n, 2]
        The snapshots projected on the two directions (in the plane's x/y coordinates).
    epochs : array [n]
        The epoch of each snapshot.
    explained : pair of float, optional
        Variance ratios of the two PCA directions (fractions); they label the axes as
        "1st PCA component: 62.30 %". Without them the axes read "direction 1/2".
    lr_drops : sequence of epochs
        Epochs where the learning rate dropped; their snapshots are drawn as red dots.
    plane : xarray.Dataset, optional
        The loss plane around the final point spanned by the same directions; drawn as contours.
    path, title
        As elsewhere.
    var, log
        The plane variable to contour and whether on a log scale.

    Example
    -------
    >>> dirs, ratio = la.pca_directions(run.trajectory)             # doctest: +SKIP
    >>> plot_trajectory(xy, run.trajectory.epoch, ratio, run.trajectory.attrs["lr_drops"])  # doctest: +SKIP
    """
    coords = np.asarray(coords, dtype=float)
    require(coords.ndim == 2 and coords.shape[1] == 2,
            f"coords must have shape [n_points, 2]; got {coords.shape}")
    epochs = np.asarray(epochs, dtype=float).ravel()
    require(len(epochs) == len(coords),
            f"epochs has {len(epochs)} entries but coords has {len(coords)} points; pass one epoch "
            "per snapshot")
    if explained is not None:
        explained = np.asarray(explained, dtype=float).ravel()
        require(len(explained) == 2, f"explained must hold 2 ratios; got {len(explained)}")
        require(np.all((explained >= 0) & (explained <= 1)),
                f"explained must be variance ratios in [0, 1]; got {explained.tolist()}")
    fig = Figure(figsize=(4.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    notes = ""
    if plane is not None:
        pl = _Plane(plane, var, log)
        _draw_contour(ax, pl, linewidths=0.9)
        notes = pl.notes
    ax.plot(coords[:, 0], coords[:, 1], color=LOSS_COLOR, linewidth=1.0, zorder=3)
    ax.scatter(coords[:, 0], coords[:, 1], s=12, color=LOSS_COLOR, zorder=4, label="snapshots")
    drops = _drop_indices(epochs, lr_drops)
    if drops:
        ax.scatter(coords[drops, 0], coords[drops, 1], s=28, color=LR_DROP_COLOR, zorder=5,
                   edgecolors="darkred", linewidths=0.5, label="learning-rate drop")
    if len(coords):
        ax.scatter(coords[:1, 0], coords[:1, 1], marker="s", s=40, facecolors="white",
                   edgecolors="black", zorder=6, label=f"start (epoch {epochs[0]:g})")
        ax.scatter(coords[-1:, 0], coords[-1:, 1], marker="*", s=110, color="black", zorder=6,
                   label=f"end (epoch {epochs[-1]:g})")
    if explained is not None:
        ax.set_xlabel(f"1st PCA component: {100 * explained[0]:.2f} %")
        ax.set_ylabel(f"2nd PCA component: {100 * explained[1]:.2f} %")
    else:
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    full = _title_with_notes(title, notes)
    if full:
        ax.set_title(full)
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------------
# embeddings of samples (Horoi et al.)


def _coord(samples, name: str):
    if samples is None:
        return None
    if name in samples.coords or name in samples.data_vars:
        return np.asarray(samples[name].values)
    return None


def _check_embedding(embedding, samples) -> np.ndarray:
    emb = np.asarray(embedding, dtype=float)
    require(emb.ndim == 2 and emb.shape[1] in (2, 3),
            f"embedding must have shape [n_points, 2] or [n_points, 3]; got {emb.shape}")
    if samples is not None:
        require("point" in samples.dims,
                f"samples must be a Dataset with dim 'point'; got dims {tuple(samples.dims)}")
        n = samples.sizes["point"]
        require(n == len(emb),
                f"embedding has {len(emb)} rows but samples has {n} points; they must be aligned")
    return emb


def _mix(color, other, amount: float):
    c, o = np.array(to_rgb(color)), np.array(to_rgb(other))
    return tuple((1 - amount) * c + amount * o)


def _ramp(color) -> LinearSegmentedColormap:
    """Light to dark in one hue: early retraining epochs pale, late ones deep (Horoi et al.)."""
    return LinearSegmentedColormap.from_list(
        "ramp", [_mix(color, "white", 0.8), to_rgb(color), _mix(color, "black", 0.45)])


def _palette(n: int):
    base = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [base(i % base.N) for i in range(n)]


def _sorted_unique(values):
    values = np.asarray(values)
    return list(dict.fromkeys(values[np.argsort(values, kind="stable")].tolist()))


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def _scatter(ax, emb, mask, **kwargs):
    if emb.shape[1] == 3:
        return ax.scatter(emb[mask, 0], emb[mask, 1], emb[mask, 2], **kwargs)
    return ax.scatter(emb[mask, 0], emb[mask, 1], **kwargs)


class _EmbeddingArt:
    """What one embedding panel needs shared with the figure: legend handles and a mappable."""

    def __init__(self):
        self.handles: list = []
        self.mappable = None
        self.cbar_label = ""
        self.notes = ""


def _draw_embedding(ax, emb, samples, color: str) -> _EmbeddingArt:
    art = _EmbeddingArt()
    n = len(emb)
    epoch = _coord(samples, "epoch")
    seed = _coord(samples, "seed")
    step = _coord(samples, "step_size")
    run = _coord(samples, "run")
    loss = _coord(samples, "loss")
    jump = (epoch == 0) if epoch is not None else np.zeros(n, dtype=bool)
    rest = ~jump
    base_size = 10 if n > 2000 else 16

    if color == "trajectory" and seed is None:
        # Without seeds there are no jump directions to colour; fall back to time, then runs.
        color = "epoch" if epoch is not None else ("run" if run is not None else "index")

    def diamonds(face, label=None, **kw):
        if jump.any():
            return _scatter(ax, emb, jump, marker="D", s=34, c=face, edgecolors="black",
                            linewidths=0.6, zorder=5, label=label, **kw)
        return None

    if color == "trajectory":
        seeds = _sorted_unique(seed)
        colors = _palette(len(seeds))
        later = epoch[rest].astype(float) if epoch is not None else np.zeros(rest.sum())
        e_lo, e_hi = (later.min(), later.max()) if later.size else (0.0, 1.0)
        for s, c in zip(seeds, colors):
            m = rest & (seed == s)
            if not m.any():
                continue
            if epoch is not None and e_hi > e_lo:
                frac = 0.15 + 0.85 * (epoch[m].astype(float) - e_lo) / (e_hi - e_lo)
            else:
                frac = np.full(m.sum(), 0.6)
            _scatter(ax, emb, m, s=base_size, c=_ramp(c)(frac), linewidths=0, zorder=3)
            art.handles.append(Line2D([], [], marker="o", linestyle="none", color=c,
                                      label=f"seed {_fmt(s)}"))
        if jump.any():
            if step is not None:
                steps = _sorted_unique(step[jump])
                scolors = mpl.colormaps[CMAPS["step_size"]](np.linspace(0.05, 0.85, max(len(steps), 1)))
                lut = {s: scolors[i] for i, s in enumerate(steps)}
                diamonds([lut[s] for s in step[jump].tolist()])
                for s in steps:
                    art.handles.append(Line2D([], [], marker="D", linestyle="none", color=lut[s],
                                              markeredgecolor="black", label=f"step size {_fmt(s)}"))
            else:
                diamonds("white")
                art.handles.append(Line2D([], [], marker="D", linestyle="none", color="white",
                                          markeredgecolor="black", label="jump point"))
        if epoch is not None and later.size and e_hi > e_lo:
            art.mappable = ScalarMappable(
                norm=Normalize(e_lo, e_hi), cmap=_ramp("0.35"))
            art.cbar_label = "retraining epoch"
        return art

    if color == "loss":
        require(loss is not None, "color='loss' needs a 'loss' variable in samples")
        lv = np.asarray(loss, dtype=float)
        ok = np.isfinite(lv)
        logl = _log10_positive(lv)
        finite = logl[ok]
        norm = Normalize(finite.min(), finite.max()) if finite.size else Normalize(0, 1)
        cmap = mpl.colormaps[CMAPS["loss"]]
        m = rest & ok
        _scatter(ax, emb, m, s=base_size, c=logl[m], cmap=cmap, norm=norm, linewidths=0, zorder=3)
        if jump.any():
            mj = jump & ok
            if mj.any():
                _scatter(ax, emb, mj, marker="D", s=34, c=logl[mj], cmap=cmap, norm=norm,
                         edgecolors="black", linewidths=0.6, zorder=5)
            art.handles.append(Line2D([], [], marker="D", linestyle="none", color="white",
                                      markeredgecolor="black", label="jump point"))
        if (~ok).any():
            _scatter(ax, emb, ~ok, marker="x", s=16, color="0.5", linewidths=0.8, zorder=4)
            art.handles.append(Line2D([], [], marker="x", linestyle="none", color="0.5",
                                      label=f"diverged ({int((~ok).sum())})"))
            art.notes = f"{_plural(int((~ok).sum()), 'point')} diverged"
        art.mappable = ScalarMappable(norm=norm, cmap=cmap)
        art.cbar_label = _var_label("loss", log=True)
        return art

    if color in ("step_size", "run", "index") or (color == "epoch" and epoch is None):
        if color == "epoch":
            color = "index"
        values = {"step_size": step, "run": run}.get(color)
        require(color == "index" or values is not None,
                f"color={color!r} needs a {color!r} coordinate in samples; it has "
                f"{sorted(map(str, samples.coords)) if samples is not None else []}")
        if values is None:
            values = np.arange(n)
        cats = _sorted_unique(values)
        if color == "index" or len(cats) > 20:
            index = {c: i for i, c in enumerate(cats)}
            v = (np.array([index[c] for c in np.asarray(values).tolist()], dtype=float)
                 if color == "run" else np.asarray(values, dtype=float))
            norm = Normalize(np.min(v), np.max(v) if np.max(v) > np.min(v) else np.min(v) + 1)
            cmap = mpl.colormaps[CMAPS["epoch"]]
            _scatter(ax, emb, rest, s=base_size, c=v[rest], cmap=cmap, norm=norm, linewidths=0)
            diamonds(cmap(norm(v[jump])) if jump.any() else "white")
            art.mappable = ScalarMappable(norm=norm, cmap=cmap)
            art.cbar_label = {"index": "sample index", "run": "run"}.get(color, color.replace("_", " "))
        else:
            pal = (mpl.colormaps[CMAPS["step_size"]](np.linspace(0.05, 0.85, len(cats)))
                   if color == "step_size" else _palette(len(cats)))
            lut = {c: pal[i] for i, c in enumerate(cats)}
            cols = [lut[c] for c in np.asarray(values).tolist()]
            cols = np.array([to_rgb(c) for c in cols]) if len(cols) else np.zeros((0, 3))
            _scatter(ax, emb, rest, s=base_size, c=cols[rest], linewidths=0, zorder=3)
            diamonds(cols[jump] if jump.any() else "white")
            name = color.replace("_", " ")
            art.handles += [Line2D([], [], marker="o", linestyle="none", color=lut[c],
                                   label=f"{name} {_fmt(c)}") for c in cats]
        if jump.any():
            art.handles.append(Line2D([], [], marker="D", linestyle="none", color="white",
                                      markeredgecolor="black", label="jump point"))
        return art

    require(color == "epoch",
            f"unknown color {color!r}; use 'trajectory', 'loss', 'step_size', 'epoch' or 'run'")
    ev = epoch.astype(float)
    norm = Normalize(ev.min(), ev.max() if ev.max() > ev.min() else ev.min() + 1)
    cmap = mpl.colormaps[CMAPS["epoch"]]
    _scatter(ax, emb, rest, s=base_size, c=ev[rest], cmap=cmap, norm=norm, linewidths=0, zorder=3)
    if jump.any():
        diamonds(cmap(norm(ev[jump])))
        art.handles.append(Line2D([], [], marker="D", linestyle="none", color="white",
                                  markeredgecolor="black", label="jump point (epoch 0)"))
    art.mappable = ScalarMappable(norm=norm, cmap=cmap)
    art.cbar_label = "epoch"
    return art


def _style_embedding_axes(ax, method: str | None, dims: int) -> None:
    # Embedding coordinates have no units; ticks would only suggest they do.
    name = method or "dimension"
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    if dims == 3:
        ax.set_zticks([])
        ax.set_zlabel(f"{name} 3")


@_styled
def plot_embedding(embedding, samples, color: str = "trajectory", path=None,
                   title: str | None = None, ax=None, method: str | None = None) -> Figure:
    """Scatter an embedding of sampled points in the style of Horoi et al. (Fig. 2-3).

    Parameters
    ----------
    embedding : array [n, 2] or [n, 3]
        Coordinates aligned with ``samples``' points (e.g. ``PHATE().fit(samples).embedding_``).
    samples : xarray.Dataset
        Dim ``point``; uses the ``loss`` variable and the ``seed``, ``step_size``, ``epoch``, ``run``
        coordinates when present. Jump points (epoch 0) are always diamonds.
    color : {"trajectory", "loss", "step_size", "epoch", "run"}
        ``trajectory``: one hue per seed (jump direction), pale early and deep late in retraining,
        jump points coloured by step size. ``loss``: every point by log10 loss with a colorbar.
        Without seeds, ``trajectory`` falls back to ``epoch`` (or ``run``).
    path, title
        As elsewhere.
    ax : matplotlib Axes, optional
        Draw into this axes (2-D, or 3-D for a 3-column embedding) instead of a new figure; then
        legend and colorbar are attached to it as well.
    method : str, optional
        Embedding name for the axis labels ("PHATE 1", ...).

    Example
    -------
    >>> emb = la.PHATE(metric="cosine").fit(samples).embedding_      # doctest: +SKIP
    >>> plot_embedding(emb, samples, color="loss", path="figures/phate_loss")   # doctest: +SKIP
    """
    emb = _check_embedding(embedding, samples)
    if ax is None:
        fig = Figure(figsize=(5.4, 4.2), layout="constrained")
        ax = fig.add_subplot(projection="3d" if emb.shape[1] == 3 else None)
    else:
        fig = ax.figure
    art = _draw_embedding(ax, emb, samples, color)
    _style_embedding_axes(ax, method, emb.shape[1])
    if art.mappable is not None:
        fig.colorbar(art.mappable, ax=ax, label=art.cbar_label, shrink=0.85)
    if art.handles:
        ax.legend(handles=art.handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, frameon=False)
    full = _title_with_notes(title, art.notes)
    if full:
        ax.set_title(full)
    return _finish(fig, path)


def _format_scores(scores) -> str:
    if not scores:
        return ""
    parts = []
    for k, v in scores.items():
        try:
            parts.append(f"{k} {float(v):.2f}")
        except (TypeError, ValueError):
            parts.append(f"{k} {v}")
    return " · ".join(parts)


@_styled
def plot_embedding_panel(embeddings: Mapping[str, np.ndarray], samples,
                         scores: Mapping[str, Mapping[str, float]] | None = None,
                         color: str = "trajectory", path=None, title: str | None = None) -> Figure:
    """Several embeddings of the same samples side by side (Horoi et al. Fig. 1).

    Parameters
    ----------
    embeddings : dict of method name -> array [n, 2]
        E.g. ``{"PHATE": ..., "t-SNE": ..., "UMAP": ..., "PCA": ...}``, drawn in this order.
    samples : xarray.Dataset
        As in :func:`plot_embedding`.
    scores : dict of method name -> dict of score name -> value, optional
        Written under each method's name, e.g. ``{"PHATE": {"DeMAP": 0.83}}``.
    color, path, title
        As in :func:`plot_embedding`; legend and colorbar are shared by the row.

    Example
    -------
    >>> plot_embedding_panel({"PHATE": e1, "UMAP": e2}, samples, {"PHATE": {"DeMAP": .8}})  # doctest: +SKIP
    """
    require(len(embeddings) > 0, "embeddings is empty; pass a dict like {'PHATE': array [n, 2]}")
    scores = scores or {}
    n = len(embeddings)
    fig = Figure(figsize=(2.9 * n + 1.6, 3.3), layout="constrained")
    axes = []
    art = None
    for i, (name, embedding) in enumerate(embeddings.items()):
        emb = _check_embedding(embedding, samples)
        ax = fig.add_subplot(1, n, i + 1, projection="3d" if emb.shape[1] == 3 else None)
        art = _draw_embedding(ax, emb, samples, color)
        _style_embedding_axes(ax, None, emb.shape[1])
        ax.set_xlabel(f"{name} 1")
        ax.set_ylabel(f"{name} 2")
        line = _format_scores(scores.get(name))
        ax.set_title(f"{name}\n{line}" if line else name)
        axes.append(ax)
    if art is not None and art.mappable is not None:
        fig.colorbar(art.mappable, ax=axes, label=art.cbar_label, shrink=0.85)
    if art is not None and art.handles:
        fig.legend(handles=art.handles, loc="outside right upper", frameon=False)
    full = _title_with_notes(title, art.notes if art else "")
    if full:
        fig.suptitle(full)
    return _finish(fig, path)


@_styled
def plot_optimizer_trajectories(embedding, samples, group: str = "optimizer", path=None,
                                title: str | None = None, method: str | None = None) -> Figure:
    """Trajectories of several optimizers in one embedding (Horoi et al. Fig. 4).

    One colour per value of ``group``; each run (coord ``run``, else the group value with ``seed``)
    is a line through its points in epoch order, starting at a gold star and ending at a filled
    circle.

    Parameters
    ----------
    embedding : array [n, 2]
        Aligned with ``samples``' points.
    samples : xarray.Dataset
        Dim ``point`` with coords ``group`` (e.g. ``optimizer``: "sgd", "sgd+momentum", "adam"),
        ``epoch`` and ``run`` or ``seed``.
    group : str
        The coordinate that sets the colour (``"optimizer"`` or ``"run"``).
    path, title, method
        As in :func:`plot_embedding`.

    Example
    -------
    >>> plot_optimizer_trajectories(emb, samples, group="optimizer", path="figures/optim")  # doctest: +SKIP
    """
    emb = _check_embedding(embedding, samples)
    require(emb.shape[1] == 2, f"plot_optimizer_trajectories draws 2-D embeddings; got {emb.shape}")
    groups = _coord(samples, group)
    require(groups is not None,
            f"samples has no coordinate {group!r}; it has {sorted(map(str, samples.coords))}")
    run = _coord(samples, "run")
    if run is None:
        seed = _coord(samples, "seed")
        run = (np.array([f"{g}|{s}" for g, s in zip(groups.tolist(), seed.tolist())])
               if seed is not None else groups)
    epoch = _coord(samples, "epoch")
    order_key = epoch.astype(float) if epoch is not None else np.arange(len(emb), dtype=float)

    fig = Figure(figsize=(5.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    cats = _sorted_unique(groups)
    lut = dict(zip(cats, _palette(len(cats))))
    starts, ends = [], []
    for r in _sorted_unique(run):
        idx = np.flatnonzero(run == r)
        idx = idx[np.argsort(order_key[idx], kind="stable")]
        c = lut[groups[idx[0]]]
        ax.plot(emb[idx, 0], emb[idx, 1], color=c, linewidth=1.0, alpha=0.85, zorder=2)
        ax.scatter(emb[idx, 0], emb[idx, 1], s=8, color=c, linewidths=0, zorder=3)
        starts.append(idx[0])
        ends.append((idx[-1], c))
    if ends:
        ax.scatter(emb[[i for i, _ in ends], 0], emb[[i for i, _ in ends], 1], s=46,
                   c=[c for _, c in ends], edgecolors="black", linewidths=0.7, zorder=5)
    if starts:
        ax.scatter(emb[starts, 0], emb[starts, 1], marker="*", s=170, color="gold",
                   edgecolors="black", linewidths=0.7, zorder=6)
    handles = [Line2D([], [], color=lut[g], marker="o", markersize=4, label=_fmt(g)) for g in cats]
    handles += [
        Line2D([], [], marker="*", linestyle="none", markersize=11, color="gold",
               markeredgecolor="black", label="initialization"),
        Line2D([], [], marker="o", linestyle="none", markersize=6, color="0.6",
               markeredgecolor="black", label="final"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              frameon=False, title=group.replace("_", " "))
    _style_embedding_axes(ax, method, 2)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------------
# topology


@_styled
def plot_persistence(diagrams: Mapping[int, np.ndarray], path=None, title: str | None = None) -> Figure:
    """A persistence diagram: birth against death per homology dimension, with the diagonal.

    Infinite deaths (classes that never die) sit on a dashed top line labelled "inf".

    Parameters
    ----------
    diagrams : dict of dimension -> array [m, 2]
        Pairs (birth, death) per dimension, e.g. ``la.persistence(...)``.
    path, title
        As elsewhere.

    Example
    -------
    >>> plot_persistence(la.persistence(emb, values=samples["loss"]), path="figures/pd")  # doctest: +SKIP
    """
    dgms = {}
    for dim, pairs in diagrams.items():
        arr = np.asarray(pairs, dtype=float)
        arr = arr.reshape(-1, 2) if arr.size else np.zeros((0, 2))
        dgms[int(dim)] = arr
    finite_vals = np.concatenate(
        [a[np.isfinite(a)] for a in dgms.values()] + [np.zeros(0)])
    if finite_vals.size:
        lo, hi = float(finite_vals.min()), float(finite_vals.max())
    else:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    inf_y = hi + 0.1 * span
    pad = 0.05 * span
    fig = Figure(figsize=(4.0, 3.9), layout="constrained")
    ax = fig.add_subplot()
    markers = ["o", "^", "s", "D", "v", "P"]
    any_inf = False
    for k, dim in enumerate(sorted(dgms)):
        arr = dgms[dim]
        births = arr[:, 0]
        deaths = np.where(np.isposinf(arr[:, 1]), inf_y, arr[:, 1])
        any_inf |= bool(np.isposinf(arr[:, 1]).any())
        ax.scatter(births, deaths, marker=markers[k % len(markers)], s=22, color=f"C{k}",
                   edgecolors="black", linewidths=0.3, alpha=0.85, zorder=3,
                   label=f"H$_{dim}$ ({len(arr)})")
    ax.plot([lo - pad, inf_y + pad], [lo - pad, inf_y + pad], color="0.4", linewidth=0.8, zorder=1)
    ax.set_xlim(lo - pad, inf_y + pad)
    ax.set_ylim(lo - pad, inf_y + pad)
    if any_inf:
        ax.axhline(inf_y, color="0.4", linestyle="--", linewidth=0.8, zorder=1)
        # Keep the finite ticks that do not collide with the inf line, then add it.
        ticks = [t for t in ax.get_yticks() if lo - pad <= t <= hi + 0.04 * span]
        step = np.min(np.diff(ticks)) if len(ticks) > 1 else 1.0
        decimals = max(0, int(-np.floor(np.log10(step)))) if step > 0 else 0
        ax.set_yticks(ticks + [inf_y], [f"{t:.{decimals}f}" for t in ticks] + ["inf"])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("birth")
    ax.set_ylabel("death")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return _finish(fig, path)

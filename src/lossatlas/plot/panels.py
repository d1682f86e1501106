"""Figures of several panels side by side, as the papers lay them out: 1-D lines (Li et al.
Figs. 2 and 4), weight histograms (Fig. 3), and grids of planes, contours or convexity maps, with a
label above each panel (Figs. 5-6: one network per panel, its test error in the title).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .curvature import draw_convexity
from .planes import Plane, declutter_labels, draw_contour, square_axes
from .save import finish
from .style import count_notes, styled, title_with_notes

__all__ = ["plot_line_grid", "plot_plane_grid", "plot_weight_histograms"]


def _figure(rows: int, cols: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _grid(panels, width: float, height: float):
    """A figure with one axes per panel (rows of ``(title, data)``, ragged rows padded with hidden
    axes) and the list of ``(axes, title, data)`` to draw."""
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = _figure(rows, cols, width, height)
    cells = []
    for i, row in enumerate(panels):
        for j in range(cols):
            if j < len(row):
                cells.append((axes[i][j], *row[j]))
            else:
                axes[i][j].set_visible(False)
    return fig, cells


@styled
def plot_line_grid(panels: Sequence[Sequence[tuple[str, object]]], path=None, title: str | None = None,
                   xlabel: str = "alpha"):
    """1-D lines as Li et al. draw them (Figs. 2 and 4): loss on the left axis (blue), accuracy
    on the right (red), train solid and test dashed; ``panels[row][col] = (title, dataset)`` with
    datasets over ``t`` as :func:`lossatlas.line` returns them. Non-finite losses are counted in
    the panel title.

    Examples
    --------
    >>> plot_line_grid([[("SB", ds_sb), ("LB", ds_lb)]], path="figures/slices")   # doctest: +SKIP
    """
    fig, cells = _grid(panels, 3.6, 2.8)
    for ax, name, ds in cells:
        t = np.asarray(ds.t.values, float)
        twin = ax.twinx()
        bad = 0
        for var, style in (("loss", "-"), ("test_loss", "--")):
            if var in ds:
                v = np.asarray(ds[var].values, float)
                bad += int((~np.isfinite(v)).sum())
                ax.plot(t, v, style, color="tab:blue", label=var.replace("_", " "))
        for var, style in (("accuracy", "-"), ("test_accuracy", "--")):
            if var in ds:
                twin.plot(t, 100 * np.asarray(ds[var].values, float), style, color="tab:red")
        ax.set_title(name + (f" ({bad} non-finite)" if bad else ""), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss", color="tab:blue")
        twin.set_ylabel("accuracy (%)", color="tab:red")
        twin.set_ylim(0, 100)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


@styled
def plot_weight_histograms(groups: Sequence[tuple[str, Mapping[str, np.ndarray]]], path=None,
                           title: str | None = None, bins: int = 100):
    """Histograms of weights (Li et al. Fig. 3): one panel per group (e.g. per weight decay), one
    outline per minimum, each labelled with its weights' L2 norm.

    Examples
    --------
    >>> plot_weight_histograms([("WD=0", {"SB": w1, "LB": w2})], path="figures/weights")   # doctest: +SKIP
    """
    fig, axes = _figure(1, len(groups), 4.0, 3.0)
    for ax, (name, values) in zip(axes[0], groups):
        everything = np.concatenate([np.asarray(v, float) for v in values.values()])
        lim = float(np.quantile(np.abs(everything), 0.999)) or 1.0
        edges = np.linspace(-lim, lim, bins + 1)
        for label, v in values.items():
            v = np.asarray(v, float)
            ax.hist(v, bins=edges, histtype="step", label=f"{label} (|w| = {np.linalg.norm(v):.1f})")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("weight value")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("count")
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


@styled
def plot_plane_grid(panels: Sequence[Sequence[tuple[str, object]]], kind: str = "contour", path=None,
                    title: str | None = None, var: str = "loss", vmax: float = 0.5):
    """Planes side by side: ``panels[row][col] = (title, dataset)``; ``kind="contour"`` draws each
    plane's loss contours (levels of its own, crowded near its minimum, as Li et al.'s Fig. 5),
    ``kind="convexity"`` the ``|lambda_min / lambda_max|`` heat maps of
    :func:`lossatlas.curvature.convexity_map` on one colour scale from 0 to ``vmax`` (their Fig. 7).
    Diverged and missing cells are counted in each panel's title.

    Examples
    --------
    >>> plot_plane_grid([[("ResNet-20", s20), ("ResNet-20-noshort", n20)]], path="figures/surfaces")   # doctest: +SKIP
    """
    if kind not in ("contour", "convexity"):
        raise ValueError(f"kind must be 'contour' or 'convexity', got {kind!r}")
    fig, cells = _grid(panels, 3.8 if kind == "contour" else 3.3, 3.2 if kind == "contour" else 3.0)
    mesh, drawn, sets = None, [], []
    for ax, name, ds in cells:
        if kind == "contour":
            plane = Plane(ds, var, log=False)
            cs = draw_contour(ax, plane, linewidths=0.8)
            sets.append(cs)
            if cs is not None:  # levels of its own per panel, so a colourbar each
                fig.colorbar(cs, ax=ax, shrink=0.8, label=plane.label, format="{x:.3g}")
            ax.plot([0], [0], marker="*", color="black", markersize=7, linestyle="none")
            square_axes(ax, plane.x, plane.y)
            notes = plane.notes
        else:
            mesh, bad = draw_convexity(ax, ds, vmax)
            notes = count_notes(bad)
        ax.set_title(title_with_notes(name, notes), fontsize=9)
        ax.tick_params(labelsize=7)
        drawn.append(ax)
    if mesh is not None:
        fig.colorbar(mesh, ax=drawn, extend="max", shrink=0.8, label=r"$|\lambda_{min} / \lambda_{max}|$")
    if title:
        fig.suptitle(title, fontsize=10)
    declutter_labels(fig, sets)
    return finish(fig, path)

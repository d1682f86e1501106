"""Figures of the topology of sampled landscapes (Horoi et al. 2022, Fig. 3).

- :func:`plot_persistence_diagrams`: D0 and D1 of several minima side by side, each panel titled
  with its total persistence (Fig. 3A, bottom row);
- :func:`plot_knn_graph`: a PHATE embedding with the edges of the kNN graph the filtration runs
  on, points coloured by loss (Fig. 3A, top row);
- :func:`plot_minima_topology`: both rows together, one column per minimum (Fig. 3A);
- :func:`plot_persistence_vs_test_loss`: total persistence against test loss at the optimum over
  many networks, coloured by e.g. weight decay, with the Spearman correlation (Fig. 3B).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._errors import require
from ..topology import graph_persistence, knn_graph, potential_of, total_persistence, vertex_values
from .save import save_figure
from .style import cmap_for, fmt_value, log10_positive, palette, plural, sorted_unique, styled, title_with_notes, var_label

__all__ = ["plot_knn_graph", "plot_minima_topology", "plot_persistence_diagrams", "plot_persistence_vs_test_loss"]

_DIM_STYLE = {0: dict(marker="o", color="C0"), 1: dict(marker="^", color="C3")}


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _named(items, what: str) -> dict[str, Any]:
    """``items`` as an ordered name -> item dict (a sequence gets names "minimum 1", ...)."""
    if isinstance(items, Mapping):
        out = {str(k): v for k, v in items.items()}
    else:
        require(isinstance(items, Sequence) and not isinstance(items, str), f"give the {what} as a dict name -> item or a list")
        out = {f"minimum {i + 1}": v for i, v in enumerate(items)}
    require(len(out) > 0, f"no {what} to draw")
    return out


def _as_diagrams(d, name: str) -> dict[int, np.ndarray]:
    require(isinstance(d, Mapping), f"the diagrams of {name!r} must be a dict {{0: array, 1: array}}, as persistence() returns")
    out = {}
    for dim in (0, 1):
        arr = np.asarray(d.get(dim, np.zeros((0, 2))), dtype=float)
        require(arr.size == 0 or (arr.ndim == 2 and arr.shape[1] == 2),
                f"the dimension-{dim} diagram of {name!r} must be an array [m, 2], got shape {arr.shape}")
        out[dim] = arr.reshape(-1, 2)
    return out


def _limits(diagrams: Sequence[dict[int, np.ndarray]]) -> tuple[float, float, float]:
    """Shared (low, high, inf line) of several diagrams, so that minima compare on one scale."""
    vals = np.concatenate([a[np.isfinite(a)] for d in diagrams for a in d.values()] + [np.zeros(0)])
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - 0.05 * span, hi, hi + 0.1 * span


def _draw_diagram(ax, diagram: dict[int, np.ndarray], dims: Sequence[int], limits, p: float,
                  components: int | None = None) -> str:
    """Birth against death for ``dims`` on ``ax``; essential classes on a dashed "inf" line. Returns
    the total persistence text of the dims drawn: a diagram without a finite pair is said to be
    empty (its 0 is no finding), and D0's total names the kNN graph's components when known."""
    lo, hi, inf_y = limits
    top = inf_y + (inf_y - lo) * 0.04
    ax.plot([lo, top], [lo, top], color="0.45", linewidth=0.8, zorder=1)
    any_inf = False
    parts = []
    for dim in dims:
        arr = diagram[dim]
        essential = np.isposinf(arr[:, 1])
        any_inf |= bool(essential.any())
        deaths = np.where(essential, inf_y, arr[:, 1])
        ax.scatter(arr[:, 0], deaths, s=20, edgecolors="black", linewidths=0.3, alpha=0.85, zorder=3,
                   label=f"D$_{dim}$ ({len(arr)})", **_DIM_STYLE[dim])
        text = f"pers(D$_{dim}$) = {total_persistence(arr, p=p):.3g}"
        if not np.isfinite(arr[:, 1]).any():
            text += " (no finite pair)"
        if dim == 0 and components is not None:
            text += f", {plural(int(components), 'component')}"
        parts.append(text)
    ax.set_xlim(lo, top)
    ax.set_ylim(lo, top)
    if not any(len(diagram[dim]) for dim in dims):
        # A degenerate result is said on the figure, not left as a blank panel.
        ax.text(0.5, 0.55, "empty diagram\n(no " + " or ".join(f"D$_{d}$" for d in dims) + " classes)",
                transform=ax.transAxes, ha="center", va="center", color="0.35")
    if any_inf:
        ax.axhline(inf_y, color="0.45", linestyle="--", linewidth=0.8, zorder=1)
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi + 0.04 * (inf_y - lo)]
        ax.set_yticks(ticks + [inf_y], [f"{t:g}" for t in ticks] + ["inf"])
        ax.set_ylim(lo, top)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("birth (loss)")
    ax.set_ylabel("death (loss)")
    return ", ".join(parts)


@styled
def plot_persistence_diagrams(diagrams, p: float = 2, separate: bool = True, path=None,
                              title: str | None = None) -> Figure:
    """Persistence diagrams of several minima side by side, titled with their total persistence.

    One column per minimum, on one shared scale. With ``separate=True`` D0 (top row) and D1 (bottom
    row) get their own panels; otherwise both share one panel per minimum. Essential classes sit on
    a dashed line labelled "inf"; total persistence counts the finite pairs
    (:func:`lossatlas.topology.total_persistence` with ``essential="drop"``), flagged "no finite
    pair" when there is none, with the kNN graph's components beside D0's total when the diagrams
    come from :func:`lossatlas.persistence`.

    Parameters
    ----------
    diagrams : dict name -> {0: array, 1: array}, or a list of them
        E.g. ``{"good": la.persistence(emb_good, ...), "bad": ..., "memorization": ...}``.
    p : float
        Exponent of the total persistence.
    separate : bool
    path, title
        Where to save (PNG and PDF), and a figure title.

    Example
    -------
    >>> fig = plot_persistence_diagrams({"good": d_good, "bad": d_bad})   # doctest: +SKIP
    """
    given = _named(diagrams, "diagrams")
    named = {k: _as_diagrams(v, k) for k, v in given.items()}
    components = {k: getattr(v, "components", None) for k, v in given.items()}
    limits = _limits(list(named.values()))
    # A dimension with no class in any minimum gets no row of empty panels; the figure says so.
    dims_shown = [d for d in (0, 1) if any(len(dg[d]) for dg in named.values())] or [0]
    empty = [d for d in (0, 1) if d not in dims_shown]
    rows = len(dims_shown) if separate else 1
    size = 2.9 if len(named) > 1 or rows > 1 else 3.4
    fig = Figure(figsize=(size * len(named) + 0.4, size * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, len(named), squeeze=False)
    for c, (name, d) in enumerate(named.items()):
        for r in range(rows):
            ax = axes[r, c]
            dims = (dims_shown[r],) if separate else (0, 1)
            text = _draw_diagram(ax, d, dims, limits, p, components[name])
            ax.set_title(f"{name}\n{text}" if r == 0 else text)
            if c > 0:
                ax.set_ylabel("")
            if r < rows - 1:
                ax.set_xlabel("")
            if c == len(named) - 1 or not separate:
                ax.legend(loc="lower right")
    if separate and empty:
        note = ", ".join(f"D{d}" for d in empty) + " empty in every diagram (no panel drawn)"
        title = title_with_notes(title, note)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _embedding_of(source, embedding) -> np.ndarray:
    emb = embedding if embedding is not None else getattr(source, "embedding_", None)
    require(emb is not None, "give embedding= (the 2-D coordinates) or a fitted PHATE, which holds embedding_")
    emb = np.asarray(emb, dtype=float)
    require(emb.ndim == 2 and emb.shape[1] >= 2, f"the embedding must be an array [n, 2], got shape {emb.shape}")
    return emb[:, :2]


def _value_name(values) -> str:
    if isinstance(values, str):
        return values
    if hasattr(values, "data_vars"):
        return "loss"
    return str(getattr(values, "name", None) or "loss")


def _draw_graph(ax, emb, adjacency, f, name: str, log: bool, fig, colorbar: bool = True) -> str:
    """Edges of ``adjacency`` under the points of ``emb`` coloured by ``f``; returns the notes."""
    import scipy.sparse as sp

    i, j = sp.triu(adjacency, k=1).nonzero()
    placed = np.isfinite(emb).all(axis=1)
    keep = placed[i] & placed[j]
    segments = np.stack([emb[i[keep]], emb[j[keep]]], axis=1)
    # Edges are context for the points, so they stay thin and light; many edges darken by overlap.
    ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.3, alpha=0.35, zorder=1))
    shown = log10_positive(f) if log else f
    good = placed & np.isfinite(shown)
    norm = Normalize(*(np.nanmin(shown[good]), np.nanmax(shown[good])) if good.any() else (0, 1))
    cmap = cmap_for(name)
    ax.scatter(emb[good, 0], emb[good, 1], c=shown[good], cmap=cmap, norm=norm, s=9, linewidths=0, zorder=3)
    diverged = placed & ~np.isfinite(f)
    if diverged.any():
        ax.scatter(emb[diverged, 0], emb[diverged, 1], marker="x", color="red", s=14, linewidths=0.8, zorder=4)
    if colorbar:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=var_label(name, log), shrink=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("PHATE 1")
    ax.set_ylabel("PHATE 2")
    ax.autoscale_view()
    notes = []
    if diverged.any():
        notes.append(f"{plural(int(diverged.sum()), 'point')} with NaN/inf {name} (x, not in the filtration)")
    if (~placed).any():
        notes.append(f"{plural(int((~placed).sum()), 'point')} with NaN/inf coordinates (not drawn)")
    return "; ".join(notes)


@styled
def plot_knn_graph(source, values: Any = "loss", k: int = 20, *, embedding=None, samples=None,
                   log: bool = True, path=None, title: str | None = None) -> Figure:
    """A PHATE embedding with the edges of the kNN graph that :func:`lossatlas.persistence` filters.

    The graph links each point to its ``k`` nearest points in potential distance (its edges can
    cross the 2-D picture where the potential sees points as near that the embedding draws apart).
    Points are coloured by ``values`` (log scale by default); points whose value is NaN or inf are
    marked with a red x and counted in the title.

    Parameters
    ----------
    source : fitted PHATE, or a potential array [n, m] (then give ``embedding``)
    values, samples
        As :func:`lossatlas.persistence` (default the train loss ``samples["loss"]``).
    k : int
    embedding : array [n, 2], optional
        Coordinates to draw, by default ``source.embedding_``.
    log : bool
        Colour by log10 of the values.
    path, title

    Example
    -------
    >>> fig = plot_knn_graph(emb, samples["loss"], k=20, path="figures/knn")   # doctest: +SKIP
    """
    emb = _embedding_of(source, embedding)
    n = potential_of(source).shape[0]
    require(emb.shape[0] == n, f"the embedding has {emb.shape[0]} points but the potential {n} rows")
    f = vertex_values(values, n, samples)
    adjacency = knn_graph(source, k)
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    notes = _draw_graph(ax, emb, adjacency, f, _value_name(values), log, fig)
    head = title if title is not None else f"kNN graph (k = {k}, {plural(int(adjacency.nnz // 2), 'edge')})"
    ax.set_title(title_with_notes(head, notes))
    return _finish(fig, path)


@styled
def plot_minima_topology(minima, k: int = 20, p: float = 2, complex: str = "flag", log: bool = True,
                         path=None, title: str | None = None) -> Figure:
    """Fig. 3A: per minimum, its embedding with the kNN graph (top) and its D0 and D1 (bottom).

    Parameters
    ----------
    minima : dict name -> (fitted PHATE, values) or (fitted PHATE, values, samples)
        E.g. ``{"good": (emb_good, samples_good["loss"]), "bad": (...), "memorization": (...)}``.
    k, complex
        As :func:`lossatlas.persistence`.
    p : float
        Exponent of the total persistence in the titles.
    log : bool
        Colour the embeddings by log10 of the values.
    path, title

    Example
    -------
    >>> fig = plot_minima_topology({"good": (emb_g, s_g["loss"]), "bad": (emb_b, s_b["loss"])})  # doctest: +SKIP
    """
    named = _named(minima, "minima")
    parts = {}
    for name, item in named.items():
        require(isinstance(item, (tuple, list)) and len(item) in (2, 3),
                f"minimum {name!r}: give (fitted PHATE, values) or (fitted PHATE, values, samples)")
        source, values = item[0], item[1]
        samples = item[2] if len(item) == 3 else None
        n = potential_of(source).shape[0]
        f = vertex_values(values, n, samples)
        graph = knn_graph(source, k)  # once: drawn and filtered
        parts[name] = (source, f, _value_name(values), graph, graph_persistence(graph, f, complex))
    limits = _limits([d for *_, d in parts.values()])
    fig = Figure(figsize=(3.3 * len(parts) + 0.4, 6.6), layout="constrained")
    axes = fig.subplots(2, len(parts), squeeze=False)
    for c, (name, (source, f, var, graph, diagrams)) in enumerate(parts.items()):
        notes = _draw_graph(axes[0, c], _embedding_of(source, None), graph, f, var, log, fig)
        axes[0, c].set_title(title_with_notes(name, notes))
        text = _draw_diagram(axes[1, c], diagrams, (0, 1), limits, p, getattr(diagrams, "components", None))
        axes[1, c].set_title(text.replace(", ", "\n"))
        axes[1, c].legend(loc="lower right")
        if c > 0:
            axes[1, c].set_ylabel("")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


@styled
def plot_persistence_vs_test_loss(total_persistence, test_loss, color=None, color_label: str = "weight decay",
                                  logx: bool = False, logy: bool = False, path=None,
                                  title: str | None = None) -> Figure:
    """Fig. 3B: total persistence of each network's J&R samples against its test loss at the optimum.

    The title gives Spearman's rank correlation (SciPy) over the networks drawn. Networks with a
    NaN/inf value are left out and counted in the title.

    Parameters
    ----------
    total_persistence, test_loss : arrays [n_networks]
    color : array [n_networks], optional
        A setting to colour by (e.g. each network's weight decay); each distinct value gets a colour.
    color_label : str
        Legend title for ``color``.
    logx, logy : bool
        Log axes (test loss, total persistence).
    path, title

    Example
    -------
    >>> fig = plot_persistence_vs_test_loss(pers, test_loss, color=weight_decay)   # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    tp = np.asarray(total_persistence, dtype=float).ravel()
    tl = np.asarray(test_loss, dtype=float).ravel()
    require(tp.shape == tl.shape, f"total_persistence has {tp.size} values but test_loss {tl.size}")
    groups = None if color is None else np.asarray(color).ravel()
    require(groups is None or groups.shape == tp.shape, f"color must have one value per network ({tp.size})")
    ok = np.isfinite(tp) & np.isfinite(tl)
    if logx:
        ok &= tl > 0
    if logy:
        ok &= tp > 0
    fig = Figure(figsize=(4.6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    if groups is None:
        ax.scatter(tl[ok], tp[ok], s=22, color="C0", edgecolors="black", linewidths=0.3)
    else:
        levels = sorted_unique(groups[ok])
        for level, col in zip(levels, palette(len(levels))):
            sel = ok & (groups == level)
            ax.scatter(tl[sel], tp[sel], s=22, color=col, edgecolors="black", linewidths=0.3)
        handles = [Line2D([], [], marker="o", linestyle="", color=col, markeredgecolor="black",
                          markeredgewidth=0.3) for col in palette(len(levels))]
        ax.legend(handles, [fmt_value(v) for v in levels], title=color_label, loc="best")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("test loss at the optimum")
    ax.set_ylabel("total persistence")
    n = int(ok.sum())
    if n >= 3 and np.ptp(tp[ok]) > 0 and np.ptp(tl[ok]) > 0:
        res = spearmanr(tl[ok], tp[ok])
        stat = f"Spearman $\\rho$ = {res.statistic:.2f} (p = {res.pvalue:.2g}, n = {n})"
    else:
        stat = f"Spearman $\\rho$ undefined (n = {n})"
    left = tp.size - n
    notes = f"{plural(left, 'network')} with NaN/inf values (not drawn)" if left else ""
    ax.set_title(title_with_notes(f"{title}\n{stat}" if title else stat, notes))
    return _finish(fig, path)

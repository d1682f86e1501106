"""Embeddings of sampled weights (Horoi et al.): one embedding, a panel of methods, optimizer paths.

Jump points (epoch 0) are diamonds. Points whose loss is NaN or inf (a diverged retraining) are
grey crosses whatever the colouring, never coloured as a finite value, and counted in the title
and the legend ("2 of 36 points diverged (NaN/inf loss)"); rows of the embedding that are not
finite cannot be drawn and are counted too.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._errors import require
from .save import finish
from .style import (
    CMAPS,
    fmt_value,
    join_notes,
    log10_positive,
    palette,
    plural,
    sorted_unique,
    styled,
    title_with_notes,
    unplaced_note,
    var_label,
)

__all__ = ["DIVERGED_COLOR", "RUN_PATH_STYLES", "diverged_points", "draw_run_paths", "plot_embedding", "plot_embedding_panel",
           "plot_optimizer_trajectories", "run_labels", "run_path_handles"]

#: Colour of the crosses that mark points whose loss is NaN or inf.
DIVERGED_COLOR = "0.45"


def _coord(samples, name: str):
    if samples is None:
        return None
    if name in samples.coords or name in samples.data_vars:
        return np.asarray(samples[name].values)
    return None


def diverged_points(samples, n: int) -> np.ndarray:
    """Mask of the points whose loss (``loss`` or ``test_loss``) is NaN or inf.

    Example
    -------
    >>> diverged_points(xr.Dataset({"loss": ("point", [0.1, np.nan])}), 2)
    array([False,  True])
    """
    bad = np.zeros(n, dtype=bool)
    for name in ("loss", "test_loss"):
        values = _coord(samples, name)
        if values is not None and np.shape(values) == (n,):
            bad |= ~np.isfinite(np.asarray(values, dtype=float))
    return bad


def _diverged_label(bad: np.ndarray) -> str:
    return f"{int(bad.sum())} of {plural(len(bad), 'point')} diverged (NaN/inf loss)"


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
    """The points of one panel: the finite-loss ones coloured by ``color``, the diverged ones as
    grey crosses (legend entry and title note)."""
    bad = diverged_points(samples, len(emb))
    art = _draw_finite(ax, emb, samples, color, ~bad)
    if bad.any():
        _scatter(ax, emb, bad, marker="x", s=18, color=DIVERGED_COLOR, linewidths=0.9, zorder=6)
        art.handles.append(Line2D([], [], marker="x", linestyle="none", color=DIVERGED_COLOR,
                                  label=_diverged_label(bad)))
        art.notes = f"{plural(int(bad.sum()), 'point')} diverged (NaN/inf loss)"
    return art


def _draw_finite(ax, emb, samples, color: str, keep: np.ndarray) -> _EmbeddingArt:
    """The points in ``keep`` (those with a finite loss), coloured by ``color``."""
    art = _EmbeddingArt()
    n = len(emb)
    epoch = _coord(samples, "epoch")
    seed = _coord(samples, "seed")
    step = _coord(samples, "step_size")
    run = _coord(samples, "run")
    loss = _coord(samples, "loss")
    first = (epoch == 0) if epoch is not None else np.zeros(n, dtype=bool)
    jump, rest = first & keep, ~first & keep
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
        seeds = sorted_unique(seed)
        colors = palette(len(seeds))
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
                                      label=f"seed {fmt_value(s)}"))
        if jump.any():
            if step is not None:
                steps = sorted_unique(step[jump])
                scolors = mpl.colormaps[CMAPS["step_size"]](np.linspace(0.05, 0.85, max(len(steps), 1)))
                lut = {s: scolors[i] for i, s in enumerate(steps)}
                diamonds([lut[s] for s in step[jump].tolist()])
                for s in steps:
                    art.handles.append(Line2D([], [], marker="D", linestyle="none", color=lut[s],
                                              markeredgecolor="black", label=f"step size {fmt_value(s)}"))
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
        logl = log10_positive(np.asarray(loss, dtype=float))
        finite = logl[keep]
        norm = Normalize(finite.min(), finite.max()) if finite.size else Normalize(0, 1)
        cmap = mpl.colormaps[CMAPS["loss"]]
        _scatter(ax, emb, rest, s=base_size, c=logl[rest], cmap=cmap, norm=norm, linewidths=0, zorder=3)
        if first.any():
            if jump.any():
                _scatter(ax, emb, jump, marker="D", s=34, c=logl[jump], cmap=cmap, norm=norm,
                         edgecolors="black", linewidths=0.6, zorder=5)
            art.handles.append(Line2D([], [], marker="D", linestyle="none", color="white",
                                      markeredgecolor="black", label="jump point"))
        art.mappable = ScalarMappable(norm=norm, cmap=cmap)
        art.cbar_label = var_label("loss", log=True)
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
        cats = sorted_unique(values)
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
                   if color == "step_size" else palette(len(cats)))
            lut = {c: pal[i] for i, c in enumerate(cats)}
            cols = [lut[c] for c in np.asarray(values).tolist()]
            cols = np.array([to_rgb(c) for c in cols]) if len(cols) else np.zeros((0, 3))
            _scatter(ax, emb, rest, s=base_size, c=cols[rest], linewidths=0, zorder=3)
            diamonds(cols[jump] if jump.any() else "white")
            name = color.replace("_", " ")
            art.handles += [Line2D([], [], marker="o", linestyle="none", color=lut[c],
                                   label=f"{name} {fmt_value(c)}") for c in cats]
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


@styled
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
    full = title_with_notes(title, join_notes(art.notes, unplaced_note(emb)))
    if full:
        ax.set_title(full)
    return finish(fig, path)


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


@styled
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
        line = join_notes(_format_scores(scores.get(name)), unplaced_note(emb))
        ax.set_title(f"{name}\n{line}" if line else name)
        axes.append(ax)
    if art is not None and art.mappable is not None:
        fig.colorbar(art.mappable, ax=axes, label=art.cbar_label, shrink=0.85)
    if art is not None and art.handles:
        fig.legend(handles=art.handles, loc="outside right upper", frameon=False)
    full = title_with_notes(title, art.notes if art else "")
    if full:
        fig.suptitle(full)
    return finish(fig, path)


#: Sizes of :func:`draw_run_paths`' artists: one embedding alone, and a panel's narrower axes.
RUN_PATH_STYLES = {
    "single": {"linewidth": 1.0, "alpha": 0.85, "point": 8, "end": 46, "star": 170, "edge": 0.7},
    "panel": {"linewidth": 0.9, "alpha": 0.8, "point": 6, "end": 36, "star": 150, "edge": 0.6},
}


def run_labels(samples, groups: np.ndarray) -> np.ndarray:
    """One label per point naming its run: the coordinate ``run``, else ``group|seed`` (the
    colour's value with the coordinate ``seed``), else the colour's value alone.

    Example
    -------
    >>> runs = run_labels(samples, np.asarray(samples["optimizer"].values))   # doctest: +SKIP
    """
    run = _coord(samples, "run")
    if run is not None:
        return run
    seed = _coord(samples, "seed")
    return np.array([f"{g}|{s}" for g, s in zip(groups.tolist(), seed.tolist())]) if seed is not None else groups


def draw_run_paths(ax, emb: np.ndarray, groups: np.ndarray, runs: np.ndarray, order: np.ndarray,
                   skip: np.ndarray | None = None, style: str = "single", star_gid: str | None = None) -> dict:
    """Draw each run as a line through its points in ``order``, in its group's colour, from a gold
    star (its first point) to a filled circle (its last); returns the colour of each group.

    Parameters
    ----------
    ax : matplotlib Axes
    emb : array [n, 2]
    groups, runs, order : arrays [n]
        The colour's value, the run and the position along the run of every point.
    skip : bool array [n], optional
        Points drawn by the line only (no dot), e.g. diverged ones marked otherwise.
    style : ``"single"`` or ``"panel"`` (the sizes of :data:`RUN_PATH_STYLES`)
    star_gid : str, optional (the ``gid`` of the stars' collection: one star per run)

    Example
    -------
    >>> lut = draw_run_paths(ax, emb, groups, runs, epochs)   # doctest: +SKIP
    >>> ax.legend(handles=run_path_handles(lut))             # doctest: +SKIP
    """
    st = RUN_PATH_STYLES[style]
    cats = sorted_unique(groups)
    lut = dict(zip(cats, palette(len(cats))))
    starts, ends = [], []
    for r in sorted_unique(runs):
        idx = np.flatnonzero(runs == r)
        idx = idx[np.argsort(order[idx], kind="stable")]
        c = lut[groups[idx[0]]]
        ax.plot(emb[idx, 0], emb[idx, 1], color=c, linewidth=st["linewidth"], alpha=st["alpha"], zorder=2)
        ok = idx if skip is None else idx[~skip[idx]]
        ax.scatter(emb[ok, 0], emb[ok, 1], s=st["point"], color=c, linewidths=0, zorder=3)
        starts.append(idx[0])
        ends.append((idx[-1], c))
    if ends:
        ax.scatter(emb[[i for i, _ in ends], 0], emb[[i for i, _ in ends], 1], s=st["end"],
                   c=[c for _, c in ends], edgecolors="black", linewidths=st["edge"], zorder=5)
    if starts:
        ax.scatter(emb[starts, 0], emb[starts, 1], marker="*", s=st["star"], color="gold",
                   edgecolors="black", linewidths=st["edge"], zorder=6, gid=star_gid)
    return lut


def run_path_handles(lut: Mapping) -> list:
    """Legend entries of :func:`draw_run_paths`: one per group, the initialization and the final point.

    Example
    -------
    >>> fig.legend(handles=run_path_handles(lut))   # doctest: +SKIP
    """
    handles = [Line2D([], [], color=c, marker="o", markersize=4, label=fmt_value(g)) for g, c in lut.items()]
    return handles + [
        Line2D([], [], marker="*", linestyle="none", markersize=11, color="gold",
               markeredgecolor="black", label="initialization"),
        Line2D([], [], marker="o", linestyle="none", markersize=6, color="0.6",
               markeredgecolor="black", label="final"),
    ]


@styled
def plot_optimizer_trajectories(embedding, samples, group: str = "optimizer", path=None,
                                title: str | None = None, method: str | None = None) -> Figure:
    """Trajectories of several optimizers in one embedding (Horoi et al. Fig. 4).

    One colour per value of ``group``; each run (coord ``run``, else the group value with ``seed``)
    is a line through its points in epoch order, starting at a gold star and ending at a filled
    circle. Points whose loss is NaN or inf are grey crosses, counted in the title and legend.

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
    run = run_labels(samples, groups)
    epoch = _coord(samples, "epoch")
    order_key = epoch.astype(float) if epoch is not None else np.arange(len(emb), dtype=float)
    bad = diverged_points(samples, len(emb))
    fig = Figure(figsize=(5.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    lut = draw_run_paths(ax, emb, groups, run, order_key, skip=bad)
    handles = run_path_handles(lut)
    note = ""
    if bad.any():  # on top of every other marker: a diverged start or end is seen as diverged
        ax.scatter(emb[bad, 0], emb[bad, 1], marker="x", s=22, color=DIVERGED_COLOR, linewidths=1.0, zorder=7)
        handles.append(Line2D([], [], marker="x", linestyle="none", color=DIVERGED_COLOR, label=_diverged_label(bad)))
        note = f"{plural(int(bad.sum()), 'point')} diverged (NaN/inf loss)"
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              frameon=False, title=group.replace("_", " "))
    _style_embedding_axes(ax, method, 2)
    full = title_with_notes(title, join_notes(note, unplaced_note(emb)))
    if full:
        ax.set_title(full)
    return finish(fig, path)

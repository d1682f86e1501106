"""Training trajectories of several optimizers in several embeddings side by side (Horoi et al.
Fig. 4): each run a line in its group's colour, from a gold star (the initialization) to a filled
circle (the final weights)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .._errors import require
from .embeddings import draw_run_paths, run_labels, run_path_handles
from .save import finish
from .style import join_notes, styled, title_with_notes, unplaced_note

__all__ = ["STAR_GID", "plot_optimizer_panel"]

#: The ``gid`` of the star markers (one per run in each panel): tests and callers can find them.
STAR_GID = "initializations"


def _values(samples, name: str):
    if name in samples.coords or name in samples.data_vars:
        return np.asarray(samples[name].values)
    return None


def _format_scores(scores: Mapping | None) -> str:
    return " · ".join(f"{k} {float(v):.2f}" for k, v in (scores or {}).items())


@styled
def plot_optimizer_panel(embeddings: Mapping[str, np.ndarray], samples, scores: Mapping | None = None,
                         group: str = "optimizer", path=None, title: str | None = None) -> Figure:
    """Trajectories of several runs in several embeddings of the same points, one panel each.

    Parameters
    ----------
    embeddings : dict method name -> array [n, 2]
        Aligned with ``samples``' points, drawn left to right in this order.
    samples : xarray.Dataset
        Dim ``point`` with the coordinate ``group`` (the colour), ``run`` (or ``seed``: one line
        per run) and ``step`` or ``epoch`` (the order along a run).
    scores : dict method name -> dict score name -> value, optional
        Written under each panel's name (e.g. DeMAP and continuity).
    group : str
        The coordinate that sets the colour.
    path, title
        As elsewhere: PNG and PDF next to ``path``.

    Returns
    -------
    matplotlib.figure.Figure
        Every panel has one star per run (``gid`` :data:`STAR_GID`) at the run's first point.

    Example
    -------
    >>> fig = plot_optimizer_panel({"PHATE": e1, "PCA": e2}, samples, group="optimizer")  # doctest: +SKIP
    """
    require(len(embeddings) > 0, "embeddings is empty; pass a dict like {'PHATE': array [n, 2]}")
    require("point" in samples.dims, f"samples must have dim 'point'; got {tuple(samples.dims)}")
    groups = _values(samples, group)
    require(groups is not None, f"samples has no coordinate {group!r}; it has {sorted(map(str, samples.coords))}")
    runs = run_labels(samples, groups)
    order = next((_values(samples, k) for k in ("step", "epoch") if _values(samples, k) is not None), None)
    order = np.asarray(order, float) if order is not None else np.arange(samples.sizes["point"], dtype=float)
    n = len(embeddings)
    fig = Figure(figsize=(3.4 * n + 1.8, 3.6), layout="constrained")
    for i, (name, emb) in enumerate(embeddings.items()):
        emb = np.asarray(emb, float)
        require(emb.shape == (samples.sizes["point"], 2),
                f"embedding {name!r} has shape {emb.shape}; expected ({samples.sizes['point']}, 2)")
        ax = fig.add_subplot(1, n, i + 1)
        lut = draw_run_paths(ax, emb, groups, runs, order, style="panel", star_gid=STAR_GID)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{name} 1")
        ax.set_ylabel(f"{name} 2")
        line = join_notes(_format_scores((scores or {}).get(name)), unplaced_note(emb))
        ax.set_title(f"{name}\n{line}" if line else name)
    handles = run_path_handles(lut)
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title=group.replace("_", " "))
    full = title_with_notes(title, "")
    if full:
        fig.suptitle(full)
    return finish(fig, path)

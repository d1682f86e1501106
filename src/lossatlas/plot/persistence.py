"""Persistence diagrams: birth against death per homology dimension."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .save import finish
from .style import styled

__all__ = ["plot_persistence"]


@styled
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
    if not any(len(a) for a in dgms.values()):
        ax.text(0.5, 0.55, "empty diagram (no classes)", transform=ax.transAxes, ha="center", va="center",
                color="0.35")
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("birth (loss)")
    ax.set_ylabel("death (loss)")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return finish(fig, path)

"""An optimizer's path projected on two (PCA or random) directions, over the loss contours (Li et al. Fig. 9)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .._errors import require
from .planes import Plane, declutter_labels, draw_contour
from .save import finish
from .style import LOSS_COLOR, LR_DROP_COLOR, join_notes, styled, title_with_notes, unplaced_note

__all__ = ["plot_trajectory"]


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


@styled
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
        "PC 1 (62.30 % of the variance)". Without them the axes read "direction 1/2".
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
    fig = Figure(figsize=(4.4 if plane is None else 5.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    notes, cs = "", None
    if plane is not None:
        pl = Plane(plane, var, log)
        cs = draw_contour(ax, pl, linewidths=0.9)
        if cs is not None:
            fig.colorbar(cs, ax=ax, label=pl.label, shrink=0.85)
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
        # Named as every plane figure names PCA axes, with Li et al.'s share of the variance.
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.2f} % of the variance)")
        ax.set_ylabel(f"PC 2 ({100 * explained[1]:.2f} % of the variance)")
    else:
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    full = title_with_notes(title, join_notes(notes, unplaced_note(coords, "snapshot")))
    if full:
        ax.set_title(full)
    declutter_labels(fig, [cs])
    return finish(fig, path)

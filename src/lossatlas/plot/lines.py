"""Figures of a line (dim ``t``): loss and accuracy along a path, and Li et al.'s interpolation
between two models (their Figs. 2-3), which is the same figure with the two models named.

Train values are solid and test values dashed; loss (blue) is on the left axis, accuracy (red,
in %) on the right. Points where a value is NaN or inf are marked with grey crosses along the
bottom of the axes and counted in the title.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .._errors import require
from .save import finish
from .style import (
    ACCURACY_COLOR,
    LOSS_COLOR,
    count_notes,
    join_notes,
    require_var,
    styled,
    title_with_notes,
    var_label,
)

__all__ = ["BN_NOTES", "bn_note", "plot_interpolation", "plot_line"]

#: What each batch-norm mode of :class:`~lossatlas.landscape.Landscape` means for a point between
#: two models, written under the title of :func:`plot_interpolation`.
BN_NOTES = {
    "eval": "batch norm: stored running statistics (bn='eval')",
    "recompute": "batch norm: statistics recomputed at every point (bn='recompute')",
    "batch": "batch norm: statistics of each evaluation batch (bn='batch')",
    "train": "batch norm: statistics of each evaluation batch (bn='train')",
}


def _draw_line(ds, *, log: bool, marks: tuple[str | None, str | None], notes: list[str],
               title: str | None) -> Figure:
    """The line figure: curves on twin axes, the points t = 0 and t = 1 marked with ``marks``."""
    require("t" in ds.dims, f"expected a line Dataset with dim 't'; got dims {tuple(ds.dims)}")
    require_var(ds, "loss", "line")
    t = np.asarray(ds["t"].values, dtype=float)
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    handles = []
    diverged = 0
    bad = np.zeros(len(t), dtype=bool)

    def values(name, scale=1.0):
        nonlocal diverged, bad
        v = np.asarray(ds[name].values, dtype=float)
        diverged = max(diverged, int((~np.isfinite(v)).sum()))
        bad = bad | ~np.isfinite(v)
        return np.where(np.isfinite(v), v * scale, np.nan)

    for name, style in (("loss", "-"), ("test_loss", "--")):
        if name in ds.data_vars:
            (h,) = ax.plot(t, values(name), linestyle=style, color=LOSS_COLOR, label=var_label(name))
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
                            label=var_label(name))
            handles.append(h)
        ax2.set_ylabel("accuracy (%)", color=ACCURACY_COLOR)
        ax2.tick_params(axis="y", colors=ACCURACY_COLOR)
        ax2.set_ylim(-2, 102)
    if bad.any():
        # Gaps in a curve are easy to miss; a cross under each point that has no value is not.
        handles.append(ax.scatter(t[bad], np.zeros(int(bad.sum())), transform=ax.get_xaxis_transform(),
                                  marker="x", s=18, color="0.45", linewidths=0.9, clip_on=False, zorder=5,
                                  label=f"diverged (NaN/inf) ({int(bad.sum())})"))
    for tick, label in zip((0.0, 1.0), marks):
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
    note = join_notes(count_notes(diverged, what="point"), *notes)
    full = title_with_notes(title, note)
    if full:
        ax.set_title(full, pad=14 if any(marks) else 6)
    return fig


@styled
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
    marks = (ds.attrs.get("label_start"), ds.attrs.get("label_end"))
    base = title if title is not None else ds.attrs.get("title")
    return finish(_draw_line(ds, log=log, marks=marks, notes=[], title=base), path)


def bn_note(bn) -> str:
    """The note saying which batch-norm statistics a line was evaluated with ("" for none)."""
    value = getattr(bn, "value", bn)  # a mode enum or its string
    key = "" if value is None else str(value).strip().lower()
    if key in ("", "none", "false"):
        return ""
    return BN_NOTES.get(key, f"batch norm: {value}")


@styled
def plot_interpolation(ds, path=None, title: str | None = None, log: bool = False) -> Figure:
    """Li et al.'s 1-D interpolation between two models (their Figs. 2-3; Goodfellow's linear path).

    The figure of :func:`plot_line`, with the two models named at t = 0 and t = 1 and, for a
    model with batch norm, a note saying which statistics were used: points between two minima
    have no running statistics of their own, so ``bn="recompute"`` is the honest choice.

    Parameters
    ----------
    ds : xarray.Dataset
        Dim ``t`` with ``loss``, ``accuracy`` and optionally ``test_loss``, ``test_accuracy``
        (train solid, test dashed; loss left, accuracy right). Attrs used: ``label_a`` and
        ``label_b`` (the models' names; ``label_start`` / ``label_end`` also work, else "A" and
        "B"), ``bn`` (the batch-norm mode; leave it out for a model without batch norm) and
        ``title``.
    path : str or Path, optional
        Where to write the PNG and PDF.
    title : str, optional
        Defaults to ``ds.attrs["title"]``, else "A (t = 0) to B (t = 1)".
    log : bool
        Log scale for the loss axis (Li et al. draw the loss so when it spans decades).

    Example
    -------
    >>> ds = xr.open_zarr("runs/ab/interpolation.zarr")                 # doctest: +SKIP
    >>> plot_interpolation(ds, path="runs/ab/figures/interpolation")    # doctest: +SKIP
    """
    a = ds.attrs.get("label_a") or ds.attrs.get("label_start") or "A"
    b = ds.attrs.get("label_b") or ds.attrs.get("label_end") or "B"
    if title is None:
        title = ds.attrs.get("title") or f"{a} (t = 0) to {b} (t = 1)"
    # `line` records the mode whatever the model; it only matters where there is batch norm.
    note = bn_note(ds.attrs.get("bn")) if ds.attrs.get("has_batch_norm", True) else ""
    return finish(_draw_line(ds, log=log, marks=(str(a), str(b)), notes=[note] if note else [], title=title), path)

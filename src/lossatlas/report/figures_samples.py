"""Interactive figures of sampled points: training curves, the trajectory on PCA directions, and
embeddings of weight samples (J&R runs animated over their retraining epochs).

The embedding figure is Horoi et al.'s: each retraining run a path from its jump point, an epoch
slider and play/pause buttons that grow the paths epoch by epoch (nothing plays on its own), and
buttons that colour the runs by step size, by seed, or every point by its (log) train loss.

Points whose loss is NaN or inf (a diverged retraining or training) are never coloured as a finite
value: they are grey crosses of their own trace, under every colouring, and the title says
"K of N points diverged (NaN/inf loss)".
"""

from __future__ import annotations

import base64
from typing import Mapping, Sequence

import numpy as np

from .figures_surface import finite_note, plane_values
from .page import TEMPLATE, fmt, label

__all__ = ["DIVERGED_MARKER", "diverged_note", "embedding_figure", "trajectory_figure", "training_figure"]

QUALITATIVE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
# Step sizes from short (light) to long (dark), as a sequential scale reads.
SEQUENTIAL = ["#fcbba1", "#fc9272", "#fb6a4a", "#ef3b2c", "#cb181d", "#a50f15", "#67000d"]
GREY = "rgba(140,140,140,0.55)"
# Frames beyond this many epochs are thinned (every k-th, always the last): the page stays small.
MAX_FRAMES = 60
#: The marker of points whose loss is NaN or inf.
DIVERGED_MARKER = {"symbol": "x", "size": 8, "color": "rgb(110,110,110)"}


def diverged_note(bad: np.ndarray, what: str = "points") -> str:
    """``": K of N points diverged (NaN/inf loss)"`` for a mask ``bad`` with K of N set, else "".

    Examples
    --------
    >>> diverged_note(np.array([True, False, False]))
    ': 1 of 3 points diverged (NaN/inf loss)'
    """
    k = int(np.count_nonzero(bad))
    return f": {k} of {np.size(bad)} {what} diverged (NaN/inf loss)" if k else ""


def _nonfinite(*arrays) -> np.ndarray:
    """Mask of the entries that are NaN or inf in any of ``arrays`` (None ones skipped)."""
    given = [np.asarray(a, float) for a in arrays if a is not None]
    return np.logical_or.reduce([~np.isfinite(a) for a in given]) if given else np.zeros(0, bool)


def training_figure(traj, title: str):
    """Loss and accuracy per snapshot of a training run; train solid, test dashed."""
    import plotly.graph_objects as go

    x = np.asarray(traj["epoch"].values, float) if "epoch" in traj.coords else np.arange(traj.sizes["point"])
    bad = _nonfinite(*(traj[v].values for v in ("loss", "test_loss") if v in traj))
    fig = go.Figure()
    for var, name, colour in (("loss", "train loss", "#1f4e9c"), ("test_loss", "test loss", "#1f4e9c"),
                              ("accuracy", "train accuracy", "#c2410c"), ("test_accuracy", "test accuracy", "#c2410c")):
        if var in traj:
            fig.add_trace(go.Scatter(x=x, y=np.asarray(traj[var].values, float), name=name, mode="lines+markers",
                                     yaxis="y2" if "accuracy" in var else "y",
                                     line={"color": colour, "dash": "dash" if var.startswith("test") else "solid"}))
    note = ""
    if bad.any():  # a diverged snapshot is a gap in the curves; a cross on the axis shows where
        fig.add_trace(go.Scatter(x=x[bad], y=np.zeros(int(bad.sum())), mode="markers", marker=DIVERGED_MARKER,
                                 name="diverged (NaN/inf loss)", hovertemplate="epoch %{x:g}: NaN/inf loss<extra></extra>"))
        note = diverged_note(bad, "snapshots")
    fig.update_layout(title={"text": label(title + note)}, xaxis={"title": {"text": "epoch"}},
                      yaxis={"title": {"text": "loss"}},
                      yaxis2={"title": {"text": "accuracy"}, "overlaying": "y", "side": "right", "range": [0, 1.02],
                              "showgrid": False},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def trajectory_figure(xy: np.ndarray, epochs: np.ndarray, explained: Sequence[float] | None, title: str,
                      plane=None, lr_drops: Sequence[int] = ()):
    """The optimizer's path in the plane of two directions, over the plane's loss contours.

    ``explained``: the share of the snapshots' variance along each direction (PCA), put in the
    title as Li et al. do; None for directions that are not principal components.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    note = ""
    if plane is not None and "loss" in plane:
        z = plane_values(plane, "loss")
        ok = z[np.isfinite(z)]
        logged = ok.size > 0 and bool((ok > 0).all())
        fig.add_trace(go.Contour(x=np.asarray(plane["x"].values, float), y=np.asarray(plane["y"].values, float),
                                 z=(np.log10(z) if logged else z).astype(np.float32), colorscale="Greys",
                                 reversescale=True, ncontours=25, opacity=0.8, name="log10 train loss" if logged else "train loss",
                                 colorbar={"title": {"text": "log10 loss" if logged else "loss"}, "x": 1.12},
                                 hovertemplate="x %{x:.3g}<br>y %{y:.3g}<br>%{z:.4g}<extra>loss</extra>"))
        note = finite_note(z)
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name="path",
                             line={"color": "#1f4e9c"},
                             marker={"color": epochs, "colorscale": "Plasma", "size": 7,
                                     "colorbar": {"title": {"text": "epoch"}}},
                             hovertemplate="epoch %{marker.color}<br>(%{x:.3g}, %{y:.3g})<extra></extra>"))
    fig.add_trace(go.Scatter(x=xy[:1, 0], y=xy[:1, 1], mode="markers", name="start",
                             marker={"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}}))
    fig.add_trace(go.Scatter(x=xy[-1:, 0], y=xy[-1:, 1], mode="markers", name="end (the minimum)",
                             marker={"symbol": "star", "size": 16, "color": "gold", "line": {"color": "black", "width": 1}}))
    drops = [i for i, e in enumerate(epochs) if int(round(float(e))) in {int(d) for d in lr_drops}]
    if drops:
        fig.add_trace(go.Scatter(x=xy[drops, 0], y=xy[drops, 1], mode="markers", name="learning-rate drop",
                                 marker={"symbol": "diamond", "size": 11, "color": "crimson"}))
    if explained is not None and len(explained) >= 2:
        head = (f"PCA directions: {100 * explained[0]:.1f}% and {100 * explained[1]:.1f}% of the variance "
                f"({100 * (explained[0] + explained[1]):.1f}% together)")
        xt, yt = f"PC 1 ({100 * explained[0]:.1f}%)", f"PC 2 ({100 * explained[1]:.1f}%)"
    else:
        head, xt, yt = "directions", "direction 1", "direction 2"
    fig.update_layout(title={"text": label(f"{title}: {head}{note}")}, xaxis={"title": {"text": label(xt)}},
                      yaxis={"title": {"text": label(yt)}}, legend={"orientation": "h", "y": -0.15})
    return fig


def _palette(values: np.ndarray, colours: Sequence[str], spread: bool) -> dict:
    """Value -> colour: ``colours`` in order, or (``spread``, or more values than colours) spread
    evenly over the sorted distinct values, so a sequential scale runs from end to end."""
    distinct = sorted(set(values.tolist()))
    if len(colours) >= len(distinct) and not spread:
        return {v: colours[i] for i, v in enumerate(distinct)}
    idx = np.linspace(0, len(colours) - 1, num=max(1, len(distinct))).round().astype(int)
    return {v: colours[i % len(colours)] for v, i in zip(distinct, idx)}


def _padded(v: np.ndarray) -> list | None:
    ok = v[np.isfinite(v)]
    if not ok.size:
        return None
    lo, hi = float(ok.min()), float(ok.max())
    pad = 0.06 * (hi - lo) if hi > lo else 1.0
    return [lo - pad, hi + pad]


def _log_loss(loss: np.ndarray) -> tuple[np.ndarray, str]:
    ok = loss[np.isfinite(loss)]
    if ok.size and (ok > 0).all():
        return np.log10(loss), "log10 train loss"
    return loss, "train loss"


def embedding_figure(coords: Mapping[str, np.ndarray], meta: Mapping[str, np.ndarray], title: str,
                     scores: Mapping[str, Mapping[str, float]] | None = None):
    """Embeddings of one set of samples, one panel per method.

    Parameters
    ----------
    coords : mapping of method name -> array [n_points, >=2]
    meta : mapping of per-point arrays: ``loss`` and, when the samples are J&R runs, ``epoch``,
        ``seed``, ``step_size`` and ``run`` (and ``optimizer`` for runs of several optimizers);
        with epochs and runs the figure is animated.
    scores : method -> {"DeMAP": ..., "continuity": ...} for the panel titles.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    methods = list(coords)
    n = next(iter(coords.values())).shape[0]
    loss = np.asarray(meta.get("loss", np.full(n, np.nan)), float)
    # Only a recorded loss can have diverged (without one there is nothing to flag).
    bad = _nonfinite(loss) if "loss" in meta else np.zeros(n, bool)
    shade, shade_name = _log_loss(loss)
    epoch = np.asarray(meta["epoch"], float) if "epoch" in meta else None
    step = np.asarray(meta["step_size"], float) if "step_size" in meta else None
    seed = np.asarray(meta["seed"]) if "seed" in meta else None
    optimizer = np.asarray(meta["optimizer"]).astype(str) if "optimizer" in meta else None
    if "run" in meta:
        run = np.asarray(meta["run"])
    elif seed is not None and step is not None:
        run = np.unique(np.stack([seed.astype(float), step]), axis=1, return_inverse=True)[1].reshape(-1)
    else:
        run = None
    animated = epoch is not None and run is not None and len(np.unique(epoch)) > 1

    cols = 2 if len(methods) > 1 else 1
    rows = -(-len(methods) // cols)
    subtitles = []
    for m in methods:
        sc = (scores or {}).get(m, {})
        extra = ", ".join(f"{k} {fmt(v)}" for k, v in sc.items())
        subtitles.append(label(f"{m.upper()}" + (f" ({extra})" if extra else "")))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=subtitles, horizontal_spacing=0.08, vertical_spacing=0.1)

    groups = [np.flatnonzero(run == r) for r in np.unique(run)] if run is not None else [np.arange(n)]
    if epoch is not None:
        groups = [g[np.argsort(epoch[g], kind="stable")] for g in groups]
    by_step = _palette(step, SEQUENTIAL, spread=True) if step is not None else None
    by_seed = _palette(seed, QUALITATIVE, spread=False) if seed is not None else None
    by_optimizer = _palette(optimizer, QUALITATIVE, spread=False) if optimizer is not None else None

    # Traces: per panel, one per run (a path from its jump point); colours come from the buttons.
    # Diverged points are gaps in the runs' paths and crosses of one more trace per panel.
    runs_traces, members, diverged_traces = [], [], []
    for i, m in enumerate(methods):
        xy = np.asarray(coords[m], float)
        shown = np.where(bad[:, None], np.nan, xy[:, :2])
        r, c = divmod(i, cols)
        for g in groups:
            fig.add_trace(go.Scatter(x=shown[g, 0], y=shown[g, 1], mode="lines+markers" if animated else "markers",
                                     line={"width": 1.5}, marker={"size": 6},
                                     customdata=np.stack([loss[g], epoch[g] if epoch is not None else np.zeros(len(g))], 1),
                                     hovertemplate="loss %{customdata[0]:.4g}<br>epoch %{customdata[1]:g}<extra></extra>",
                                     showlegend=False),
                          row=r + 1, col=c + 1)
            runs_traces.append(len(fig.data) - 1)
            members.append(g)
        if bad.any():
            fig.add_trace(go.Scatter(x=xy[bad, 0], y=xy[bad, 1], mode="markers", marker=DIVERGED_MARKER,
                                     name=label(f"diverged (NaN/inf loss): {int(bad.sum())} of {n} points"),
                                     legendgroup="diverged", showlegend=i == 0,
                                     customdata=epoch[bad] if epoch is not None else np.zeros(int(bad.sum())),
                                     hovertemplate="loss NaN/inf<br>epoch %{customdata:g}<extra></extra>"),
                          row=r + 1, col=c + 1)
            diverged_traces.append(len(fig.data) - 1)
        # Fixed ranges: the panels keep their scale while the animation adds points.
        fig.update_xaxes(showticklabels=False, range=_padded(xy[:, 0]), row=r + 1, col=c + 1)
        fig.update_yaxes(showticklabels=False, range=_padded(xy[:, 1]), row=r + 1, col=c + 1)

    n_per_panel = len(groups)
    buttons = []
    # Runs of several optimizers (the optimizer study's joint embedding) start coloured by optimizer.
    for key, values, pal, what in (("optimizer", optimizer, by_optimizer, "optimizer"),
                                   ("step size", step, by_step, "step size"), ("seed", seed, by_seed, "seed")):
        if values is None:
            continue
        colours, names, legend, lgroup = [], [], [], []
        seen = set()
        for j, g in enumerate(members):
            v = values[g[0]]
            colours.append(pal[v])
            names.append(label(f"{what} {fmt(v.item() if hasattr(v, 'item') else v)}"))
            lgroup.append(f"{key}-{v}")
            show = j < n_per_panel and v not in seen  # one legend entry per value, from the first panel
            if show:
                seen.add(v)
            legend.append(show)
        buttons.append(dict(label=f"colour: {key}", method="update",
                            args=[{"line.color": colours, "marker.color": colours, "marker.coloraxis": [None] * len(colours),
                                   "name": names, "legendgroup": lgroup, "showlegend": legend},
                                  {"coloraxis.showscale": False}, runs_traces]))
    k = len(runs_traces)
    # By loss: every point its (log) loss on one colour scale, the paths grey behind them.
    buttons.append(dict(label="colour: loss", method="update",
                        args=[{"line.color": [GREY] * k, "marker.color": [shade[g].astype(float).tolist() for g in members],
                               "marker.coloraxis": ["coloraxis"] * k, "showlegend": [False] * k},
                              {"coloraxis.showscale": True}, runs_traces]))
    # Start as the first button says.
    start = buttons[0]["args"][0]
    for j, idx in enumerate(runs_traces):
        fig.data[idx].update({key.replace(".", "_"): value[j] for key, value in start.items()})
    # The colour switch at the right, under the legend; play/pause and the slider below the panels.
    menus = [dict(type="buttons", direction="down", x=1.02, y=0.0, xanchor="left", yanchor="bottom",
                  showactive=True, buttons=buttons, pad={"l": 0, "b": 0})]
    layout = dict(title={"text": label(title + diverged_note(bad))}, coloraxis={"colorscale": "Viridis",
                  "showscale": len(buttons) == 1, "colorbar": {"title": {"text": label(shade_name)}, "len": 0.62, "y": 1.0, "yanchor": "top"}},
                  legend={"orientation": "v", "x": 1.02, "y": 1}, margin={"t": 80, "b": 90, "r": 170})
    if animated:
        frames, steps_ = _frames(epoch, runs_traces, members, coords, methods, bad, diverged_traces)
        play = dict(label="play", method="animate",
                    args=[[f["name"] for f in frames], {"frame": {"duration": 450, "redraw": False}, "fromcurrent": False,
                                                     "mode": "immediate", "transition": {"duration": 0}}])
        pause = dict(label="pause", method="animate",
                     args=[[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                    "transition": {"duration": 0}}])
        menus.append(dict(type="buttons", direction="right", x=0.0, y=-0.04, xanchor="left", yanchor="top",
                          showactive=False, buttons=[play, pause], pad={"r": 10, "t": 30}))
        layout["sliders"] = [dict(active=len(steps_) - 1, steps=steps_, x=0.12, len=0.88, y=-0.02, yanchor="top",
                                  currentvalue={"prefix": "retraining epoch ", "visible": True},
                                  pad={"t": 30, "b": 10})]
    layout["updatemenus"] = menus
    fig.update_layout(template=TEMPLATE, **layout)
    spec = fig.to_dict()
    if animated:
        spec["frames"] = frames
    return spec, 380 * rows + 200


def _typed(values: np.ndarray) -> dict:
    """A float32 array in plotly.js's typed-array form (base64), as plotly writes its own arrays."""
    return {"dtype": "f4", "bdata": base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode()}


def _frames(epoch, runs_traces, members, coords, methods, bad, diverged_traces):
    """One frame per retraining epoch: each path shown up to that epoch, later points as gaps;
    diverged points (``bad``, never on a path) as crosses of their panel's ``diverged_traces``.

    Plain dicts: thousands of validated frame traces would take seconds to build for nothing.
    """
    epochs = np.unique(epoch)
    if epochs.size > MAX_FRAMES:
        keep = np.unique(np.r_[np.linspace(0, epochs.size - 1, MAX_FRAMES).round().astype(int), epochs.size - 1])
        epochs = epochs[keep]
    per_panel = len(members) // len(methods)
    frames, steps = [], []
    for e in epochs:
        data, traces = [], []
        for i, m in enumerate(methods):
            xy = np.asarray(coords[m], float)
            for j in range(per_panel):
                g = members[i * per_panel + j]
                hide = (epoch[g] > e) | bad[g]
                data.append({"type": "scatter", "x": _typed(np.where(hide, np.nan, xy[g, 0])),
                             "y": _typed(np.where(hide, np.nan, xy[g, 1]))})
                traces.append(runs_traces[i * per_panel + j])
            if diverged_traces:
                xs = xy[bad]
                later = epoch[bad] > e
                data.append({"type": "scatter", "x": _typed(np.where(later, np.nan, xs[:, 0])),
                             "y": _typed(np.where(later, np.nan, xs[:, 1]))})
                traces.append(diverged_traces[i])
        name = f"epoch {e:g}"
        frames.append({"data": data, "traces": traces, "name": name})
        steps.append(dict(label=f"{e:g}", method="animate",
                          args=[[name], {"mode": "immediate", "frame": {"duration": 0, "redraw": False},
                                         "transition": {"duration": 0}}]))
    return frames, steps

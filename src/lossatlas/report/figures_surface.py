"""Interactive figures of planes and lines: 3-D surfaces, contours, 1-D curves, the convexity map.

Each function takes an xarray Dataset as the samplers store it (a plane: dims ``x``, ``y``; a
line: dim ``t``) and returns a :class:`plotly.graph_objects.Figure`. Non-finite values are left
as gaps (plotly draws none there) and counted in the title, never dropped silently.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .page import label

__all__ = ["METRICS", "line_figure", "lines_figure", "plane_figures", "ratio_figure", "finite_note"]

#: The stored variables drawn, train first, with the axis title of each.
METRICS = {"loss": "train loss", "test_loss": "test loss", "accuracy": "train accuracy",
           "test_accuracy": "test accuracy"}


def finite_note(values: np.ndarray) -> str:
    """`` (N non-finite points not drawn)`` when there are any, else nothing."""
    bad = int(np.size(values) - np.isfinite(values).sum())
    return f" ({bad} non-finite points not drawn)" if bad else ""


def plane_values(ds, var: str) -> np.ndarray:
    """``var`` as a [y, x] array (plotly's z is indexed row = y), NaN where a cell is not done."""
    z = np.asarray(ds[var].transpose("x", "y").values, dtype=float)
    if "done" in ds:
        z = np.where(np.asarray(ds["done"].transpose("x", "y").values, bool), z, np.nan)
    return z.T


def _axis_titles(ds) -> tuple[str, str]:
    from ..plot.style import plane_axis_labels  # one naming of plane axes for every figure

    return plane_axis_labels(ds.attrs)


def plane_figures(ds, title: str, log: bool = True) -> list:
    """A 3-D surface and a contour map of a plane's loss (and the test loss beside it when stored).

    ``log``: the surface's height is log10 of the loss when every finite value is positive (Li et
    al. draw log contours; a raw loss surface is one spike and a flat floor).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x, y = np.asarray(ds["x"].values, float), np.asarray(ds["y"].values, float)
    xt, yt = _axis_titles(ds)
    z = plane_values(ds, "loss")
    finite = z[np.isfinite(z)]
    use_log = log and finite.size > 0 and bool((finite > 0).all())
    height = np.log10(z) if use_log else z
    ztitle = "log10 train loss" if use_log else "train loss"
    surf = go.Figure(go.Surface(x=x, y=y, z=height.astype(np.float32), colorscale="Viridis",
                                colorbar={"title": {"text": label(ztitle)}},
                                contours={"z": {"show": True, "usecolormap": True, "project": {"z": True}}},
                                hovertemplate="x %{x:.3g}<br>y %{y:.3g}<br>" + label(ztitle) + " %{z:.4g}<extra></extra>"))
    surf.update_layout(title={"text": label(f"{title}: 3-D surface of the {ztitle}{finite_note(z)}")},
                       scene={"xaxis": {"title": {"text": label(xt)}}, "yaxis": {"title": {"text": label(yt)}},
                              "zaxis": {"title": {"text": label(ztitle)}}},
                       margin={"l": 10, "r": 10, "t": 50, "b": 10})
    panels = [v for v in ("loss", "test_loss", "accuracy", "test_accuracy") if v in ds]
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    cont = make_subplots(rows=rows, cols=cols, subplot_titles=[label(METRICS[v]) for v in panels],
                         horizontal_spacing=0.2, vertical_spacing=0.12)
    for i, var in enumerate(panels):
        zz = plane_values(ds, var)
        ok = zz[np.isfinite(zz)]
        logged = var.endswith("loss") and ok.size > 0 and bool((ok > 0).all())
        shown = np.log10(zz) if logged else zz
        name = ("log10 " if logged else "") + METRICS[var]
        r, c = divmod(i, cols)
        cont.add_trace(go.Contour(x=x, y=y, z=shown.astype(np.float32), colorscale="Viridis" if var.endswith("loss") else "Cividis",
                                  ncontours=25, name=label(name), colorbar=_colorbar(r, c, rows, cols, name),
                                  hovertemplate="x %{x:.3g}<br>y %{y:.3g}<br>" + label(name) + " %{z:.4g}<extra></extra>"),
                       row=r + 1, col=c + 1)
        cont.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker={"symbol": "x", "color": "red", "size": 9},
                                  name="centre", showlegend=False, hoverinfo="skip"), row=r + 1, col=c + 1)
        cont.update_xaxes(title_text=label(xt), row=r + 1, col=c + 1)
        cont.update_yaxes(title_text=label(yt), row=r + 1, col=c + 1)
    cont.update_layout(title={"text": label(f"{title}: contours (log10 of the losses){finite_note(z)}{_centre_note(ds)}")},
                       margin={"t": 70})
    if _centre_note(ds):
        surf.update_layout(title={"text": label(f"{title}: 3-D surface of the {ztitle}{finite_note(z)}{_centre_note(ds)}")})
    return [(surf, 520), (cont, 420 * rows)]


def _colorbar(r: int, c: int, rows: int, cols: int, name: str) -> dict:
    """A colorbar beside subplot (r, c) of a grid laid out by make_subplots' spacings above."""
    h_space, v_space = 0.2, 0.12
    width = (1 - h_space * (cols - 1)) / cols
    height = (1 - v_space * (rows - 1)) / rows
    x = c * (width + h_space) + width + 0.01
    top = 1 - r * (height + v_space)
    return {"title": {"text": label(name), "side": "right"}, "x": x, "xanchor": "left", "y": top - height / 2,
            "yanchor": "middle", "len": height, "thickness": 12}


def _centre_note(ds) -> str:
    """`` (the centre diverged: loss NaN)`` when the plane's centre cell was computed and is not finite."""
    from ..grids import center_value

    v = center_value(ds, "loss")
    return "" if v is None or np.isfinite(v) or ("done" in ds and not _centre_done(ds)) else " (the centre diverged: loss NaN/inf)"


def _centre_done(ds) -> bool:
    from ..grids import center_index

    idx = center_index(ds)
    return idx is not None and bool(ds["done"].values[idx])


def ratio_figure(ds, title: str):
    """Li et al.'s convexity map: |lambda_min / lambda_max| over a plane, as a heat map."""
    import plotly.graph_objects as go

    z = plane_values(ds, "ratio")
    fig = go.Figure(go.Heatmap(x=np.asarray(ds["x"].values, float), y=np.asarray(ds["y"].values, float),
                               z=z.astype(np.float32), colorscale="RdBu_r", zmin=0,
                               colorbar={"title": {"text": "|min/max|"}},
                               hovertemplate="x %{x:.3g}<br>y %{y:.3g}<br>|min/max| %{z:.3g}<extra></extra>"))
    fig.update_layout(title={"text": label(f"{title}: |lambda_min / lambda_max| (blue: convex){finite_note(z)}")},
                      xaxis={"title": {"text": label(_axis_titles(ds)[0])}},
                      yaxis={"title": {"text": label(_axis_titles(ds)[1])}})
    return fig


def line_figure(ds, title: str, xtitle: str = "t"):
    """Loss (left axis) and accuracy (right axis) along a line; train solid, test dashed."""
    import plotly.graph_objects as go

    t = np.asarray(ds["t"].values, float)
    fig = go.Figure()
    colours = {"loss": "#1f4e9c", "accuracy": "#c2410c"}
    for var, text in METRICS.items():
        if var not in ds:
            continue
        v = np.asarray(ds[var].values, float)
        if "done" in ds:
            v = np.where(np.asarray(ds["done"].values, bool), v, np.nan)
        acc = var.endswith("accuracy")
        fig.add_trace(go.Scatter(x=t, y=v, name=label(text), mode="lines+markers" if t.size <= 41 else "lines",
                                 yaxis="y2" if acc else "y",
                                 line={"color": colours["accuracy" if acc else "loss"],
                                       "dash": "dash" if var.startswith("test") else "solid"}))
    a = ds.attrs.get("label_a"), ds.attrs.get("label_b")
    names = f" ({a[0]} at t=0, {a[1]} at t=1)" if a[0] is not None and a[1] is not None else ""
    bad = finite_note(np.asarray(ds["loss"].values, float))
    fig.update_layout(title={"text": label(f"{title}{names}{bad}")},
                      xaxis={"title": {"text": label(xtitle)}},
                      yaxis={"title": {"text": "loss"}, "type": "log" if _positive(ds, "loss") else "linear"},
                      yaxis2={"title": {"text": "accuracy"}, "overlaying": "y", "side": "right", "range": [0, 1.02],
                              "showgrid": False},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _positive(ds, var: str) -> bool:
    v = np.asarray(ds[var].values, float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool((v > 0).all())


def lines_figure(paths: Mapping[str, object], title: str, barriers: Mapping[str, float] | None = None,
                 variables: Sequence[str] = ("loss", "test_loss")):
    """Several paths (e.g. linear, Bezier, AutoNEB between two minima) on one loss axis."""
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = ["#1f4e9c", "#c2410c", "#15803d", "#7e22ce", "#a16207"]
    for i, (name, ds) in enumerate(paths.items()):
        t = np.asarray(ds["t"].values, float)
        for var in variables:
            if var not in ds:
                continue
            b = (barriers or {}).get(name)
            extra = f", barrier {b:.4g}" if b is not None and var == "loss" else ""
            fig.add_trace(go.Scatter(x=t, y=np.asarray(ds[var].values, float), mode="lines+markers",
                                     name=label(f"{name}: {METRICS.get(var, var)}{extra}"),
                                     line={"color": palette[i % len(palette)],
                                           "dash": "dash" if var.startswith("test") else "solid"}))
    fig.update_layout(title={"text": label(title)}, xaxis={"title": {"text": "t (0: first minimum, 1: second)"}},
                      yaxis={"title": {"text": "loss"}}, legend={"orientation": "h", "y": -0.2})
    return fig

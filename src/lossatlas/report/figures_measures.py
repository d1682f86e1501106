"""Figures and tables of measurements: persistence diagrams, Hessian spectra, sharpness and
prediction tables.

Figures are plotly figures; tables come back as safe HTML (:func:`lossatlas.report.page.table`).
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np

from .page import fmt, label, mapping_table, table

__all__ = ["diagram_figure", "hessian_figure", "density_figure", "prediction_table", "sharpness_table",
           "nested_table"]


def diagram_figure(ds, title: str):
    """Persistence diagrams (birth against death) of every dimension stored as ``d0``, ``d1``, ...

    Classes that never die are drawn on a line above the highest finite death and said so.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    dims = sorted(int(v[1:]) for v in ds.data_vars if v[:1] == "d" and v[1:].isdigit())
    finite_all = [np.asarray(ds[f"d{d}"].values, float) for d in dims]
    vals = np.concatenate([a[np.isfinite(a)] for a in finite_all] + [np.zeros(1)])
    lo, hi = float(vals.min()), float(vals.max())
    top = hi + 0.08 * (hi - lo if hi > lo else 1.0)
    colours = ["#1f4e9c", "#c2410c", "#15803d", "#7e22ce"]
    totals = []
    for d, pairs in zip(dims, finite_all):
        pairs = pairs.reshape(-1, 2)
        key = f"total_persistence_d{d}"
        if key in ds.attrs:
            # an empty diagram's 0 is no finding; the capped total counts the essential classes
            empty = bool(ds.attrs.get(f"empty_d{d}", False))
            capped = ds.attrs.get(f"capped_total_persistence_d{d}")
            totals.append(f"D{d} " + ("no finite pair" if empty else fmt(float(ds.attrs[key])))
                          + (f", capped {fmt(float(capped))}" if capped is not None else ""))
        fin = np.isfinite(pairs[:, 1])
        fig.add_trace(go.Scatter(x=pairs[fin, 0], y=pairs[fin, 1], mode="markers", name=f"H{d} ({int(fin.sum())})",
                                 marker={"color": colours[d % 4], "size": 8, "opacity": 0.8},
                                 hovertemplate="birth %{x:.4g}<br>death %{y:.4g}<extra>H" + str(d) + "</extra>"))
        if (~fin).any():
            fig.add_trace(go.Scatter(x=pairs[~fin, 0], y=np.full(int((~fin).sum()), top), mode="markers",
                                     name=f"H{d} never dies ({int((~fin).sum())}, drawn at the top)",
                                     marker={"color": colours[d % 4], "symbol": "triangle-up", "size": 11}))
    fig.add_trace(go.Scatter(x=[lo, top], y=[lo, top], mode="lines", line={"color": "grey", "dash": "dot"},
                             name="birth = death", hoverinfo="skip"))
    if any(not np.isfinite(np.asarray(a, float).reshape(-1, 2)[:, 1]).all() for a in finite_all):
        # Classes that never die sit on a line marked "inf", as in the static figures.
        fig.add_hline(y=top, line={"color": "grey", "dash": "dash", "width": 1},
                      annotation_text="inf", annotation_position="right")
    comps = ds.attrs.get("components")
    totals += [f"kNN graph of {int(comps)} component{'s' if int(comps) != 1 else ''}"] if comps is not None else []
    empty = all(np.asarray(a).size == 0 for a in finite_all)
    head = f"{title}: persistence diagrams" + (f" (total persistence {'; '.join(totals)})" if totals else "")
    if empty:
        head += " (empty: no classes)"
    fig.update_layout(title={"text": label(head)}, xaxis={"title": {"text": "birth (loss)"}},
                      yaxis={"title": {"text": "death (loss)"}}, legend={"orientation": "h", "y": -0.2})
    return fig


def hessian_figure(ds, title: str):
    """The top eigenvalues of the Hessian (and the most negative one, when stored), by rank."""
    import plotly.graph_objects as go

    k = np.asarray(ds["k"].values, int)
    ev = np.asarray(ds["eigenvalue"].values, float)
    fig = go.Figure(go.Bar(x=[f"lambda {i}" for i in k], y=ev, name="largest", marker={"color": "#1f4e9c"},
                           hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    low = ds.attrs.get("min_eigenvalue")
    if isinstance(low, numbers.Real):
        fig.add_trace(go.Bar(x=["lambda min"], y=[float(low)], name="most negative", marker={"color": "#c2410c"},
                             hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    extra = []
    if isinstance(ds.attrs.get("ratio"), numbers.Real):
        extra.append(f"|min/max| {fmt(ds.attrs['ratio'])}")
    if isinstance(ds.attrs.get("trace"), numbers.Real):
        err = ds.attrs.get("trace_stderr")
        extra.append(f"trace {fmt(ds.attrs['trace'])}" + (f" +- {fmt(err)}" if isinstance(err, numbers.Real) else ""))
    fig.update_layout(title={"text": label(f"{title}: Hessian eigenvalues" + (f" ({'; '.join(extra)})" if extra else ""))},
                      yaxis={"title": {"text": "eigenvalue"}}, showlegend=low is not None)
    return fig


def density_figure(ds, title: str):
    """The Hessian's spectral density (stochastic Lanczos quadrature), on a log axis."""
    import plotly.graph_objects as go

    x = np.asarray(ds["eigenvalue"].values, float)
    y = np.asarray(ds["density"].values, float)
    if x.size > 2000:  # the stored grid is fine for analysis; 2000 points draw the same curve
        idx = np.unique(np.linspace(0, x.size - 1, 2000).round().astype(int))
        x, y = x[idx], y[idx]
    finite = y[np.isfinite(y)]
    peak = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    # The Gaussian kernels fall to 1e-40 between the Ritz values; eight decades show the shape.
    floor = peak * 1e-8
    fig = go.Figure(go.Scatter(x=x.astype(np.float32), y=np.maximum(y, floor).astype(np.float32), mode="lines",
                               line={"color": "#1f4e9c"}, name="density",
                               hovertemplate="eigenvalue %{x:.4g}<br>density %{y:.3g}<extra></extra>"))
    fig.update_layout(title={"text": label(f"{title}: spectral density of the Hessian")},
                      xaxis={"title": {"text": "eigenvalue"}}, yaxis={"title": {"text": "density (floor: 1e-8 of the peak)"}, "type": "log",
                                                                         "range": [np.log10(floor), np.log10(peak) + 0.3]})
    return fig


def _plain(v):
    """A coordinate label as a plain Python value (NumPy scalars and StringDType strings alike)."""
    return v.item() if hasattr(v, "item") else v


def sharpness_table(ds) -> str:
    """One row per minimum: every per-minimum measure, then each measure with more dimensions
    (sharpness per box size and space, the top eigenvalues per rank) one column per combination."""
    names = [str(_plain(m)) for m in ds["minimum"].values]
    header, cols = ["minimum"], []
    for var in ds.data_vars:
        da = ds[var]
        if "minimum" not in da.dims:
            continue
        da = da.transpose("minimum", ...)
        others = [d for d in da.dims if d != "minimum"]
        if not others:
            header.append(var.replace("_", " "))
            cols.append(np.asarray(da.values, float))
            continue
        shape = [da.sizes[d] for d in others]
        for idx in np.ndindex(*shape):
            where = dict(zip(others, idx))
            labels = [f"{d}={fmt(_plain(da[d].values[i])) if d in da.coords else i}" for d, i in where.items()]
            header.append(f"{var.replace('_', ' ')} ({', '.join(labels)})")
            cols.append(np.asarray(da.isel(where).values, float))
    rows = [[n] + [float(c[r]) for c in cols] for r, n in enumerate(names)]
    return table(header, rows)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (numbers.Number, str, bool))


def nested_table(data: Mapping, caption: str | None = None) -> str:
    """A mapping of rows (``{row: {column: value}}``) as one table; anything else as key/value."""
    rows = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if rows and len(rows) == len(data):
        flat = {k: {c: v for c, v in _flat(r).items() if _is_scalar(v) or isinstance(v, list)} for k, r in rows.items()}
        columns = list(dict.fromkeys(c for r in flat.values() for c in r))
        return table([""] + columns, [[k] + [r.get(c, "") for c in columns] for k, r in flat.items()], caption)
    return mapping_table(data, caption)


def _flat(mapping: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in mapping.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def prediction_table(entry: Any) -> str:
    """Horoi et al.'s Table 1 from the summary: per feature set, the mean accuracy of the
    classifiers, its standard error, and each classifier's accuracy."""
    if isinstance(entry, Mapping):
        return nested_table(entry)
    return table(("value",), [[entry]])

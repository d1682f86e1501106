"""The demo's comparisons between minima, stored at the top of the demo directory.

``interpolation.zarr`` (Li et al.'s 1-D interpolation from the good to the bad minimum),
``connect_linear.zarr`` and ``connect_bezier.zarr`` (the barrier between them on a straight line
and on a trained quadratic Bezier curve), ``sharpness.zarr`` (one table of sharpness, flatness
and the top Hessian eigenvalue for all three minima; each minimum's eigenvalue also goes to its
own ``hessian.zarr``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import plot
from ..connectivity import barrier_stats, connect, path_barriers
from ..sharpness import compare_minima
from ..store import RunDir
from ..surface import line
from .minima import Minimum, has_batch_norm
from .settings import DemoSettings

__all__ = ["connect_stage", "interpolation_stage", "sharpness_stage"]


def _bn_text(m: Minimum) -> str:
    return ("batch-norm statistics recomputed at every point on the training data" if has_batch_norm(m.model)
            else "no batch norm")


def interpolation_stage(top: RunDir, a: Minimum, b: Minimum, s: DemoSettings, replace: bool = False) -> dict:
    """Loss and accuracy on ``(1 - t) a + t b`` for t in [-0.5, 1.5], train and test data."""
    ds = line(a.landscape, a.theta, b.theta, steps=s.interpolation_steps, extent=(-0.5, 1.5), store=top,
              name="interpolation", progress=True, replace=replace,
              attrs={"label_a": a.name, "label_b": b.name, "bn_statistics": _bn_text(a)})
    plot.plot_interpolation(ds, path=top.figures / "interpolation",
                            title=f"{a.name} minimum (t=0) to {b.name} minimum (t=1)")
    ends = {k: [float(ds[k].sel(t=t)) for t in (0.0, 1.0)] for k in ds.data_vars if k != "done"}
    # over t in [0, 1] only: the extrapolated points beyond the two minima are no barrier
    stats = barrier_stats(ds.t.values, ds.loss.values)
    out = {"a": a.name, "b": b.name, "ends": ends, "barrier": stats["barrier"], "saddle_height": stats["saddle_height"],
           "bn": _bn_text(a)}
    top.update_summary(interpolation=out)
    return out


def path_request(a: Minimum, b: Minimum) -> dict:
    """The settings every stored path between ``a`` and ``b`` must record to be reused: its ends
    and the data of ``a``'s landscape (each method adds its own options)."""
    f = a.landscape
    return {"theta_a": f.space.fingerprint(a.theta), "theta_b": f.space.fingerprint(b.theta), "landscape": f.fingerprint}


def connect_stage(top: RunDir, a: Minimum, b: Minimum, s: DemoSettings, replace: bool = False) -> dict:
    """The barrier between two minima: linear path, and a Bezier curve when ``bezier_steps > 0``.

    ``barriers`` holds each path's barrier (the largest rise above the chord between the ends,
    :func:`lossatlas.connectivity.barrier_stats`), ``saddle_heights`` its highest loss above the
    higher end.

    A path stored in ``top`` for the same ends, data and options is reused; one of other settings
    is refused (``replace=True``: computed afresh)."""
    paths, barriers, saddles = {}, {}, {}
    ends = path_request(a, b)
    if top.check("connect_linear", {**ends, "points": s.connect_points}, replace, partial=True):
        ds = top.open("connect_linear")
    else:
        ds = connect(a.landscape, a.theta, b.theta, method="linear", points=s.connect_points)
        top.save("connect_linear", ds)
    paths["linear"] = ds
    if s.bezier_steps > 0:
        want = {**ends, "points": s.connect_points, "steps": s.bezier_steps, "seed": 0}
        if top.check("connect_bezier", want, replace, partial=True):
            ds = top.open("connect_bezier")
        else:
            ds = connect(a.landscape, a.theta, b.theta, method="bezier", model=a.model, data=a.data.train,
                         steps=s.bezier_steps, points=s.connect_points, seed=0, progress=True)
            top.save("connect_bezier", ds)
        paths["bezier"] = ds
    for method, path in paths.items():  # recomputed for a path stored under the old definition
        got = path_barriers(path)
        barriers[method], saddles[method] = got["barrier"], got["saddle_height"]
    plot.plot_connectivity(paths, path=top.figures / "connectivity", title=f"{a.name} to {b.name} minimum")
    out = {"a": a.name, "b": b.name, "barriers": barriers, "saddle_heights": saddles}
    top.update_summary(connect=out)
    return out


def sharpness_stage(top: RunDir, minima: dict[str, Minimum], s: DemoSettings) -> dict:
    """Keskar et al.'s epsilon-sharpness, loss rise, basin volume and radius (a rise above each
    minimum's own loss) and the top Hessian eigenvalue of
    every minimum, each on its own training data (the memorization minimum on its random labels)."""
    table = compare_minima({n: m.landscape for n, m in minima.items()}, {n: m.theta for n, m in minima.items()},
                           eps=s.sharpness_eps, subspace=s.sharpness_subspace, maxiter=s.sharpness_maxiter,
                           radius=s.rise_radius, directions=s.rise_directions, eigenvalues=1, seed=0, progress=True)
    top.save("sharpness", table)
    rows = {}
    for i, name in enumerate(str(v) for v in table.minimum.values):
        row = {v: float(table[v].values[i]) for v in table.data_vars if table[v].dims == ("minimum",)}
        sharp = table["sharpness"].isel(minimum=i)
        row["sharpness"] = {f"eps={float(e):g} {sp}": float(sharp.sel(eps=e, space=sp))
                            for e in sharp.eps.values for sp in sharp.space.values}
        row["top_hessian_eigenvalue"] = float(table["lambda"].values[i, 0])
        rows[name] = row
        m = minima[name]
        eig = xr.Dataset({"eigenvalue": (("k",), np.asarray([row["top_hessian_eigenvalue"]]))}, coords={"k": [1]},
                         attrs={"settings": {"top": 1, "seed": 0, "data_fingerprint": m.landscape.fingerprint,
                                             "center_fingerprint": m.landscape.space.fingerprint(m.theta)},
                                "top_eigenvalues": [row["top_hessian_eigenvalue"]]})
        m.run.save("hessian", eig)
        m.run.update_summary(hessian={"top_eigenvalues": [row["top_hessian_eigenvalue"]]})
    top.update_summary(sharpness=rows)
    return rows

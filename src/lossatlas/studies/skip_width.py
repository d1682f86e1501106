"""Li et al. (2018), Section 6: skip connections and width against the shape of the landscape.

Figs. 5-7 of Li et al.: the loss surfaces of ResNet-20/56/110 with and without skip connections
(the "noshort" networks) on CIFAR-10 turn from nearly convex to chaotic as a network without
shortcuts gets deeper, while with shortcuts they stay convex-looking; widening a network (their
Wide-ResNet-56 at k = 1, 2, 4, 8) makes the surface smoother and the minimum flatter; and the
convexity maps ``|lambda_min / lambda_max|`` show the chaotic surfaces to have large negative
curvature where the convex-looking ones have almost none. The test error falls along with it.

This study repeats it at a scale two CPU cores can carry. The networks are He et al.'s CIFAR
ResNets with option-A shortcuts (``lossatlas.models.ResNet``) at a quarter of the published width
(first stage ``channels`` = 4, so the stages have 4, 8 and 16 filters): ResNet-20 and ResNet-56,
each with and without skip connections, and ResNet-20 with shortcuts at width 1x, 2x and 4x (4x is
the published ResNet-20's 16-32-64). The data are Fashion-MNIST (Debian's
``dataset-fashion-mnist``) averaged to 14 x 14 pixels (:func:`fashion_mnist_14`), a seeded subset
of its training images and of its official test set. Every network starts from its own seeded
initialization and trains by SGD with momentum and weight decay under a step schedule (Li et
al.'s optimizer, at a small fraction of their 300 epochs). Li et al. trained their deep networks
without shortcuts at lr 0.01 instead of 0.1; ResNet-56-noshort is trained both ways.

Per network: a filter-normalized 2-D plane around the minimum (two Gaussian directions,
biases and batch-norm parameters left out, seed 0 for all; batch norm in eval mode, with the
running statistics of the minimum, as Li et al.'s code evaluates) on a seeded subset of the
training images; the convexity map on the same plane, coarser; and two numbers read off each,
over the whole plane and over its inner half (``|x|, |y| <= span / 2``, around the minimum): the
share of plane cells whose finite-difference Hessian has a negative eigenvalue (below minus
``1e-4 max|loss| / h^2``), and the mean of the convexity map's ratio.

Layout: one run per network, ``OUT/resnet20``, ``OUT/resnet20-noshort``, ``OUT/resnet56``,
``OUT/resnet56-noshort``, ``OUT/resnet56-noshort-lr0.01``, ``OUT/resnet20-w2``, ``OUT/resnet20-w4`` (``trajectory.zarr``,
``model.pt``, ``surface.zarr``, ``convexity.zarr``); ``OUT/figures/`` (``depth_surfaces``,
``depth_convexity``, ``width_surfaces``, ``width_convexity``), ``OUT/summary.json`` and
``OUT/report.html``. Resumable: a rerun reuses the trained networks, planes and maps of the same
settings and refuses those of other settings (``replace=True`` redoes them).

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("skip-width", "runs/study-skip-width")       # doctest: +SKIP
>>> summary["networks"]["resnet56-noshort"]["test_error"]             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..curvature import convexity_map
from ..curvature.convexity import cell_solver
from ..landscape import Landscape
from ..plot import plot_plane_grid
from ..sources import Source
from ..space import make_directions
from ..surface import plane
from ..training import TrainConfig
from . import common

__all__ = ["FULL", "QUICK", "TITLE", "SkipWidthSettings", "fashion_mnist_14", "nonconvex_share", "run", "specs"]

TITLE = "Li et al.: skip connections and width against the shape of the loss surface (ResNets, Fashion-MNIST)"


def fashion_mnist_14() -> dict:
    """Fashion-MNIST (Debian's files) averaged over 2 x 2 pixels to 14 x 14: a data factory
    (``Source(data="lossatlas.studies.skip_width:fashion_mnist_14")``) whose images cost a quarter
    of the full ones per layer.

    Examples
    --------
    >>> d = fashion_mnist_14()                       # doctest: +SKIP
    >>> tuple(d["X"].shape[1:])                      # doctest: +SKIP
    (1, 14, 14)
    """
    import torch.nn.functional as F

    from ..data import load_data

    full = load_data("fashion-mnist")
    (X, y), (Xt, yt) = full.train, full.test
    return {"X": F.avg_pool2d(X, 2), "y": y, "X_test": F.avg_pool2d(Xt, 2), "y_test": yt}


@dataclass(frozen=True)
class SkipWidthSettings(common.StudySettings):
    """Every setting of the study (plain values, recorded in ``config/study-skip-width.yaml``)."""

    data: str = "lossatlas.studies.skip_width:fashion_mnist_14"
    subset: int | None = 5000
    test_subset: int | None = 2000
    data_seed: int = 0
    init_seed: int = 0
    channels: int = 4
    depths: tuple = (20, 56)
    width_depth: int = 20
    widths: tuple = (1, 2, 4)
    lr: float = 0.1
    # Li et al. trained their deep networks without shortcuts (ResNet-56-noshort) at lr 0.01: a
    # noshort network of at least this depth is trained twice, at ``lr`` and at ``deep_noshort_lr``
    deep_noshort_lr: float | None = 0.01
    deep_noshort_from: int = 56
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 20
    surface_span: float = 1.0
    surface_steps: int = 21
    surface_samples: int | None = 1000
    map_steps: int = 5
    map_samples: int | None = 250
    map_tol: float = 1e-2
    direction_seed: int = 0


FULL = SkipWidthSettings()

#: Tests: ResNet-8 and -14 at 2 channels on scikit-learn's digits (8 x 8), two epochs, 5 x 5 planes
#: and 3 x 3 maps.
QUICK = SkipWidthSettings(data="digits", subset=300, test_subset=100, channels=2, depths=(8, 14), width_depth=8,
                          deep_noshort_from=14,
                          widths=(1, 2), epochs=2, batch_size=100, surface_steps=5, surface_samples=100, map_steps=3,
                          map_samples=60, map_tol=1e-1)


def network_name(depth: int, shortcut: bool, width: int, lr: float | None = None) -> str:
    return (f"resnet{depth}" + ("" if shortcut else "-noshort") + (f"-w{width}" if width != 1 else "")
            + (f"-lr{lr:g}" if lr is not None else ""))


def slow_variants(s: SkipWidthSettings) -> list[int]:
    """The depths whose noshort network is also trained at :attr:`SkipWidthSettings.deep_noshort_lr`."""
    return [d for d in s.depths if s.deep_noshort_lr is not None and d >= s.deep_noshort_from]


def specs(s: SkipWidthSettings, device: str) -> dict[str, common.MinimumSpec]:
    """The networks by sub-run name: every depth with and without shortcuts at width 1 (a deep
    noshort one also at Li et al.'s smaller lr, ``...-noshort-lr0.01``), then the width series of
    ``width_depth`` with shortcuts (width 1 is the same network as above)."""
    wanted = [(d, short, 1, None) for d in s.depths for short in (True, False)]
    wanted += [(d, False, 1, s.deep_noshort_lr) for d in slow_variants(s)]
    wanted += [(s.width_depth, True, w, None) for w in s.widths if (s.width_depth, True, w, None) not in wanted]
    out = {}
    for depth, short, width, lr in wanted:
        name = network_name(depth, short, width, lr)
        src = Source(model="resnet", model_args={"depth": depth, "shortcut": short, "width": width,
                                                 "channels": s.channels},
                     init_seed=s.init_seed, data=s.data, data_seed=s.data_seed, subset=s.subset,
                     test_subset=s.test_subset, device=device)
        cfg = TrainConfig(optimizer="sgd", lr=s.lr if lr is None else lr, momentum=s.momentum, weight_decay=s.weight_decay,
                          epochs=s.epochs, batch_size=s.batch_size, schedule="step",
                          milestones=(s.epochs // 2, (3 * s.epochs) // 4), gamma=0.1, seed=s.init_seed)
        out[name] = common.MinimumSpec(name, src, cfg)
    return out


def nonconvex_share(loss: np.ndarray, spacing: float, tol: float = 0.0) -> float:
    """The share of a plane's interior cells whose finite-difference 2 x 2 Hessian has an
    eigenvalue below ``-tol`` (a convex surface has none); NaN cells and their neighbours are
    left out.

    Examples
    --------
    >>> x = np.linspace(-1, 1, 11)
    >>> nonconvex_share(np.add.outer(x**2, x**2), x[1] - x[0])
    0.0
    >>> nonconvex_share(np.add.outer(x**2, -x**2), x[1] - x[0])
    1.0
    """
    z = np.asarray(loss, float)
    h2 = spacing * spacing
    dxx = (z[2:, 1:-1] - 2 * z[1:-1, 1:-1] + z[:-2, 1:-1]) / h2
    dyy = (z[1:-1, 2:] - 2 * z[1:-1, 1:-1] + z[1:-1, :-2]) / h2
    dxy = (z[2:, 2:] - z[2:, :-2] - z[:-2, 2:] + z[:-2, :-2]) / (4 * h2)
    # the smaller eigenvalue of [[dxx, dxy], [dxy, dyy]]
    low = 0.5 * (dxx + dyy) - np.sqrt(0.25 * (dxx - dyy) ** 2 + dxy**2)
    ok = np.isfinite(low)
    return float(np.mean(low[ok] < -tol)) if ok.any() else float("nan")


def _landscape(m, samples, seed: int) -> Landscape:
    """The minimum's training data (a seeded subset of ``samples``), batch norm in eval mode."""
    return Landscape(m.model, m.data.train, bn="eval", samples=samples, seed=seed, device=m.theta.device)


def geometry_stage(m, s: SkipWidthSettings, replace: bool) -> dict:
    """The filter-normalized plane and the convexity map of one network (stored in its run) and
    the numbers read off them."""
    f = _landscape(m, s.surface_samples, s.data_seed)
    dirs = make_directions(f.space, m.theta, n=2, norm="filter", ignore="biasbn", seed=s.direction_seed)
    surf = plane(f, m.theta, dirs, span=s.surface_span, steps=s.surface_steps, store=m.run, name="surface",
                 progress=True, replace=replace, attrs={"title": m.name, "samples": s.surface_samples})
    g = _landscape(m, s.map_samples, s.data_seed)
    settings = {"steps": s.map_steps, "span": s.surface_span, "samples": s.map_samples,
                "solver": cell_solver({"tol": s.map_tol}), "seed": s.direction_seed, "data_fingerprint": g.fingerprint,
                "center_fingerprint": g.space.fingerprint(m.theta),
                "directions": [g.space.fingerprint(d) for d in dirs]}
    if m.run.check("convexity", settings, replace):
        cmap = m.run.open("convexity")
    else:
        cmap = convexity_map(g, m.theta, dirs, span=s.surface_span, steps=s.map_steps, seed=s.direction_seed,
                             tol=s.map_tol, progress=True)
        cmap.attrs["settings"] = settings
        m.run.save("convexity", cmap)
        cmap = m.run.open("convexity")
    loss = np.asarray(surf["loss"].transpose("x", "y").values, float)
    x = np.asarray(surf["x"].values, float)
    h = float(x[1] - x[0])
    ratio = np.asarray(cmap["ratio"].transpose("x", "y").values, float)
    mx = np.asarray(cmap["x"].values, float)
    c = s.map_steps // 2
    center = {k: float(cmap[k].values[c, c]) for k in ("lambda_min", "lambda_max", "ratio")} if s.map_steps % 2 else {}
    # The inner half of the plane (|x|, |y| <= span / 2), where Li et al. read convex or chaotic
    # contours around the minimum; the surface keeps one more ring for the finite differences.
    half = s.surface_span / 2
    ring = np.abs(x) <= half + h * 1.001
    inner_loss = loss[np.ix_(ring, ring)]
    inner_map = np.abs(mx) <= half * 1.001

    def share(z):
        # curvature below -1e-4 max|z| / h^2 counts as negative (float32 rounding is far below it)
        return nonconvex_share(z, h, tol=1e-4 * float(np.nanmax(np.abs(z))) / h**2)

    out = {"nonconvex_share": share(loss), "nonconvex_share_inner": share(inner_loss),
           "surface_min": float(np.nanmin(loss)), "surface_center": float(loss[len(x) // 2, len(x) // 2]),
           "surface_max": float(np.nanmax(loss)),
           "convexity_mean_ratio": float(np.nanmean(ratio)), "convexity_max_ratio": float(np.nanmax(ratio)),
           "convexity_inner_mean_ratio": float(np.nanmean(ratio[np.ix_(inner_map, inner_map)])),
           "convexity_share_above_0.1": float(np.nanmean(ratio > 0.1)), "convexity_center": center,
           "diverged_cells": int((~np.isfinite(loss)).sum())}
    m.run.update_summary(skip_width=out)
    return {"surface": surf, "convexity": cmap, **out}


def _panel_title(name: str, row: dict) -> str:
    return f"{name}, test error {100 * row['test_error']:.1f}%"


@common.study_run('summary = run(Path("runs/study-skip-width"))',
                  'summary["networks"]["resnet56-noshort"]["nonconvex_share"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: SkipWidthSettings | None = None) -> dict:
    s = settings or (QUICK if quick else FULL)
    st = common.start_study(out, "study-skip-width", {"quick": quick, "device": device, "settings": s.as_dict()},
                            device=device, console=console)
    nets = specs(s, device)
    st.console.rule(f"[bold]1/3. train {len(nets)} ResNets")
    minima = {}
    for name, spec in nets.items():
        st.say(f"{name}: {spec.describe()}")
        with st.clock.stage(f"train_{name}"):
            minima[name] = m = common.train_minimum(out, spec, st.device, replace=replace)
        st.say(f"  train loss {m.final['loss']:.4g}, accuracy {m.final['accuracy']:.4f}; "
               f"test accuracy {m.final['test_accuracy']:.4f}")

    st.console.rule("[bold]2/3. filter-normalized planes and convexity maps")
    rows, geometry = {}, {}
    for name, m in minima.items():
        with st.clock.stage(f"geometry_{name}"), st.notices.catch(f"geometry {name}"):
            geometry[name] = g = geometry_stage(m, s, replace)
        params = int(sum(p.numel() for p in m.model.parameters()))
        spec = m.model.spec
        rows[name] = {**m.final, "test_error": 1 - m.final["test_accuracy"], "parameters": params,
                      "depth": spec["depth"], "shortcut": spec["shortcut"], "width": spec["width"],
                      **{k: v for k, v in g.items() if k not in ("surface", "convexity")}}
        st.say(f"{name}: non-convex share {g['nonconvex_share']:.3f} (inner half {g['nonconvex_share_inner']:.3f}), "
               f"mean |min/max| {g['convexity_mean_ratio']:.3f} (inner half {g['convexity_inner_mean_ratio']:.3f})")

    st.console.rule("[bold]3/3. figures, summary and report")

    def panel(name):
        return _panel_title(name, rows[name]), geometry[name]

    slow = slow_variants(s)
    depth_rows = [[panel(network_name(d, True, 1)), panel(network_name(d, False, 1))]
                  + ([panel(network_name(d, False, 1, s.deep_noshort_lr))] if d in slow else []) for d in s.depths]
    width_row = [[panel(network_name(s.width_depth, True, w)) for w in s.widths]]
    figures = st.top.figures
    for label, grid in (("depth", depth_rows), ("width", width_row)):
        plot_plane_grid([[(t, g["surface"]) for t, g in r] for r in grid], kind="contour",
                        path=figures / f"{label}_surfaces", title=f"training loss around each minimum ({label})")
        plot_plane_grid([[(t, g["convexity"]) for t, g in r] for r in grid], kind="convexity",
                        path=figures / f"{label}_convexity", title=r"$|\lambda_{min}/\lambda_{max}|$ on the same planes")
    summary = {"networks": rows, "findings": findings(rows, s),
               "skip_width": {"quick": quick, "device": str(st.device), "settings": s.as_dict()}}
    return common.finish_study(out, "skip_width", summary, st.clock, st.console)


#: The numbers the findings compare across networks.
MEASURES = ("test_error", "nonconvex_share", "nonconvex_share_inner", "convexity_mean_ratio", "convexity_inner_mean_ratio")


def findings(rows: dict, s: SkipWidthSettings) -> dict:
    """What the numbers say about Li et al.'s claims (computed, so the docs can quote them)."""
    out = {"skip_connections": {}, "width": {}}
    for d in s.depths:
        a, b = rows[network_name(d, True, 1)], rows[network_name(d, False, 1)]
        c = rows.get(network_name(d, False, 1, s.deep_noshort_lr)) if d in slow_variants(s) else None
        out["skip_connections"][f"resnet{d}"] = {
            k: {"shortcut": a[k], "noshort": b[k], **({f"noshort_lr{s.deep_noshort_lr:g}": c[k]} if c else {})}
            for k in MEASURES}
    series = [rows[network_name(s.width_depth, True, w)] for w in s.widths]
    for k in MEASURES:
        v = [r[k] for r in series]
        out["width"][k] = {"values": v, "falls_with_width": bool(np.all(np.diff(v) <= 0))}
    return out


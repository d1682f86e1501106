"""Tests for lossatlas.plot: files written, orientation of planes, styles and markers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lossatlas import plot as lp  # noqa: E402
from lossatlas._errors import InputError  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def close(*figs):
    for fig in figs:
        plt.close(fig)


# ------------------------------------------------------------------ fixtures


def make_plane(nx=21, ny=17, fn=None, test=True):
    x = np.linspace(-1.0, 1.0, nx)
    y = np.linspace(-0.8, 0.8, ny)
    X, Y = np.meshgrid(x, y, indexing="ij")  # (x, y) layout, like la.plane
    loss = fn(X, Y) if fn is not None else X**2 + 3 * Y**2 + 0.1
    data = {
        "loss": (("x", "y"), loss),
        "accuracy": (("x", "y"), np.clip(1 - loss / loss.max(), 0, 1)),
        "done": (("x", "y"), np.ones_like(loss, dtype=bool)),
    }
    if test:
        data["test_loss"] = (("x", "y"), loss * 1.2)
        data["test_accuracy"] = (("x", "y"), np.clip(0.9 - loss / loss.max(), 0, 1))
    return xr.Dataset(data, coords={"x": x, "y": y})


def make_line(test=True, n=41):
    t = np.linspace(-0.5, 1.5, n)
    data = {"loss": ("t", (t - 0.2) ** 2 + 0.05), "accuracy": ("t", np.clip(1 - (t - 0.2) ** 2, 0, 1))}
    if test:
        data["test_loss"] = ("t", (t - 0.25) ** 2 + 0.2)
        data["test_accuracy"] = ("t", np.clip(0.9 - (t - 0.25) ** 2, 0, 1))
    return xr.Dataset(data, coords={"t": t},
                      attrs={"title": "small vs large batch", "label_start": "small", "label_end": "large"})


def make_samples(n_seeds=3, steps=(0.25, 0.5), epochs=5, rng=None):
    rng = rng or np.random.default_rng(0)
    seed, step, epoch = [], [], []
    for s in range(n_seeds):
        for st in steps:
            for e in range(epochs + 1):
                seed.append(s)
                step.append(st)
                epoch.append(e)
    n = len(seed)
    loss = rng.uniform(0.01, 3.0, n)
    return xr.Dataset(
        {"loss": ("point", loss), "accuracy": ("point", rng.uniform(0, 1, n))},
        coords={"seed": ("point", seed), "step_size": ("point", step), "epoch": ("point", epoch),
                "run": ("point", np.repeat(np.arange(n // (epochs + 1)), epochs + 1))},
    )


def assert_written(paths):
    paths = list(paths)
    suffixes = sorted(p.suffix for p in paths)
    assert suffixes == [".pdf", ".png"]
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
        head = p.read_bytes()[:8]
        if p.suffix == ".png":
            assert head == PNG_MAGIC
        else:
            assert head.startswith(b"%PDF")


def scatter_collections(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def marker_vertices(marker):
    from matplotlib.markers import MarkerStyle

    ms = MarkerStyle(marker)
    return ms.get_path().transformed(ms.get_transform()).vertices


def collection_is_marker(coll, marker):
    paths = coll.get_paths()
    if not paths:
        return False
    want = marker_vertices(marker)
    got = paths[0].vertices
    return got.shape == want.shape and np.allclose(got, want)


# ------------------------------------------------------------------ saving


def test_save_figure_writes_png_and_pdf_replacing_suffix(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    paths = lp.save_figure(fig, tmp_path / "nested" / "dir" / "fig.png")
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert_written(paths)
    # PNG at 200 dpi: the default 6.4 x 4.8 inch figure (tight bbox) is well above 100-dpi size.
    import struct

    w, h = struct.unpack(">II", paths[0].read_bytes()[16:24])
    assert w > 900 and h > 600
    with pytest.raises(InputError):
        lp.save_figure(fig, tmp_path / "x", formats=("bmpx",))
    close(fig)


def test_rcparams_untouched(tmp_path):
    before = dict(mpl.rcParams)
    fig = lp.plot_contour(make_plane(), path=tmp_path / "c")
    assert dict(mpl.rcParams) == before
    close(fig)


# ------------------------------------------------------------------ planes


def x_only_plane():
    # loss depends on x only: iso-lines must be vertical, the map must vary left to right.
    return make_plane(nx=25, ny=11, fn=lambda X, Y: X**2 + 0 * Y, test=False)


def test_heatmap_orientation_x_is_horizontal():
    ds = x_only_plane()
    fig = lp.plot_heatmap(ds)
    ax = fig.axes[0]
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    arr = np.asarray(meshes[0].get_array()).reshape(ds.sizes["y"], ds.sizes["x"])
    # rows = y (constant down each column), columns = x (varies)
    assert np.allclose(arr, arr[0:1, :])
    assert np.allclose(arr[0], ds["x"].values ** 2)
    # colorbar with a label
    assert any(a.get_ylabel() == "train loss" for a in fig.axes[1:])
    close(fig)


def test_heatmap_orientation_catches_transposed_layout():
    # The same surface stored with y varying: the drawing must follow, proving we use the dims.
    ds = make_plane(nx=25, ny=11, fn=lambda X, Y: Y**2 + 0 * X, test=False)
    fig = lp.plot_heatmap(ds)
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    arr = np.asarray(mesh.get_array()).reshape(ds.sizes["y"], ds.sizes["x"])
    assert np.allclose(arr, arr[:, 0:1])
    close(fig)

    # And a Dataset whose variable is stored (y, x) is still drawn the same way.
    ds2 = x_only_plane()
    ds2["loss"] = ds2["loss"].transpose("y", "x")
    fig = lp.plot_heatmap(ds2)
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    arr = np.asarray(mesh.get_array()).reshape(ds2.sizes["y"], ds2.sizes["x"])
    assert np.allclose(arr, arr[0:1, :])
    close(fig)


def test_contour_orientation_lines_are_vertical():
    ds = x_only_plane()
    fig = lp.plot_contour(ds, levels=[0.1, 0.4])
    ax = fig.axes[0]
    cs = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(cs) == 1
    # Inline labels cut lines into pieces; every piece must still be vertical, at x = +-sqrt(level).
    for level, pieces in zip(cs[0].levels, cs[0].allsegs):
        pieces = [p for p in pieces if len(p)]
        assert pieces
        assert sum(np.ptp(p[:, 1]) for p in pieces) > 2 * 1.6 * 0.8  # both lines span most of y
        for p in pieces:
            assert np.ptp(p[:, 0]) < 1e-9  # vertical
            assert np.allclose(np.abs(p[:, 0]), np.sqrt(level), atol=0.01)
        assert {np.sign(p[0, 0]) for p in pieces} == {-1.0, 1.0}
    # labelled levels
    assert len(cs[0].labelTexts) > 0
    # center marker at (0, 0)
    centers = [ln for ln in ax.lines if ln.get_label() == "center"]
    assert centers and np.allclose(centers[0].get_xydata(), [[0, 0]])
    close(fig)


def test_default_levels_denser_near_minimum():
    ds = make_plane()
    lv = lp.default_levels(ds["loss"].values)
    gaps = np.diff(lv)
    assert np.all(gaps > 0) and gaps[0] < gaps[-1] / 5
    assert lv[0] > ds["loss"].values.min()
    fig = lp.plot_contour(ds)
    cs = [c for c in fig.axes[0].collections if isinstance(c, ContourSet)][0]
    assert len(cs.levels) >= 8
    close(fig)


def test_default_levels_reach_into_the_basin_over_decades():
    # A basin at loss ~0.01 inside walls up to 1e5 (a trajectory's PCA plane): levels must
    # resolve the basin, one per factor of the range.
    values = np.concatenate([np.full(50, 0.01), np.geomspace(0.02, 1e5, 200)])
    lv = lp.default_levels(values, n=12)
    assert len(lv) == 12 and np.all(np.diff(lv) > 0)
    assert lv[0] < 0.1 and lv[-1] == pytest.approx(np.quantile(values, 0.95))
    ratios = lv[1:] / lv[:-1]
    assert np.allclose(ratios, ratios[0])


def test_plane_with_nan_inf_and_not_done(tmp_path):
    ds = make_plane()
    loss = ds["loss"].values.copy()
    loss[0, 0] = np.nan
    loss[0, 1] = np.inf
    loss[1, 0] = np.nan
    done = np.ones_like(loss, dtype=bool)
    done[-5:, -4:] = False  # an unfinished block: NaN but not diverged
    loss[-5:, -4:] = np.nan
    ds["loss"] = (("x", "y"), loss)
    ds["done"] = (("x", "y"), done)
    for fn in (lp.plot_contour, lp.plot_heatmap, lp.plot_surface3d):
        fig = fn(ds, path=tmp_path / fn.__name__)
        title = fig.axes[0].get_title()
        assert "3 cells diverged" in title
        assert "20 cells not computed" in title
        close(fig)
        assert_written(tmp_path.glob(f"{fn.__name__}.*"))
    fig = lp.plot_heatmap(ds)
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][-1]
    arr = np.ma.asarray(mesh.get_array()).reshape(ds.sizes["y"], ds.sizes["x"])
    # gaps at not-done cells (x index -5.., y index -4..) -> rows y, cols x
    assert np.ma.getmaskarray(arr)[-4:, -5:].all()
    assert not np.ma.getmaskarray(arr)[5, 5]
    close(fig)


def test_plane_nothing_done_does_not_crash():
    ds = make_plane(test=False)
    ds["done"][:] = False
    ds["loss"][:] = np.nan
    for fn in (lp.plot_contour, lp.plot_heatmap, lp.plot_surface3d):
        fig = fn(ds)
        assert "cells not computed" in fig.axes[0].get_title()
        close(fig)


def test_log_plots_and_accuracy_in_percent():
    ds = make_plane()
    ds["loss"][10, 8] = 0.0  # an exact zero must not become -inf
    fig = lp.plot_heatmap(ds, log=True)
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    assert np.all(np.isfinite(np.ma.compressed(mesh.get_array())))
    assert "log" in fig.axes[1].get_ylabel()
    close(fig)
    fig = lp.plot_heatmap(ds, var="accuracy")
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    assert np.ma.max(mesh.get_array()) > 50  # percent, not fraction
    assert "%" in fig.axes[1].get_ylabel()
    close(fig)
    fig = lp.plot_contour(ds, log=True)
    assert any(isinstance(c, ContourSet) for c in fig.axes[0].collections)
    close(fig)
    with pytest.raises(InputError, match="no variable"):
        lp.plot_contour(ds, var="nope")


def test_surface3d_has_3d_axes_and_colorbar():
    fig = lp.plot_surface3d(make_plane(), log=True)
    assert fig.axes[0].name == "3d"
    assert "log" in fig.axes[0].get_zlabel()
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel()
    close(fig)


def test_plot_surface_set_plane_and_line(tmp_path):
    paths = lp.plot_surface_set(make_plane(), tmp_path / "figs", prefix="s")
    names = {p.name for p in paths}
    for stem in ("s_contour", "s_heatmap", "s_surface3d", "s_surface3d_log", "s_test_loss_contour"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert_written([p for p in paths if p.stem == stem])
    paths = lp.plot_surface_set(make_plane(test=False), tmp_path / "figs2")
    assert not any("test" in p.name for p in paths)
    paths = lp.plot_surface_set(make_line(), tmp_path / "line")
    assert {p.name for p in paths} == {"surface_line.png", "surface_line.pdf"}
    assert_written(paths)


# ------------------------------------------------------------------ lines


def test_line_twin_axes_train_solid_test_dashed(tmp_path):
    fig = lp.plot_line(make_line(), path=tmp_path / "line.pdf")
    assert_written(tmp_path.glob("line.*"))
    assert len(fig.axes) == 2
    ax, ax2 = fig.axes
    assert ax.get_xlabel() == "interpolation coefficient t"
    for a in (ax, ax2):
        assert len(a.lines) >= 2
        data_lines = [ln for ln in a.lines if not ln.get_label().startswith("_")]
        assert [ln.get_linestyle() for ln in data_lines] == ["-", "--"]
    # accuracy on the right axis in percent
    acc = [ln for ln in ax2.lines if ln.get_label() == "train accuracy (%)"][0]
    assert np.nanmax(acc.get_ydata()) > 50
    assert len(fig.legends) == 1
    assert len(fig.legends[0].get_texts()) == 4
    assert ax.get_title().startswith("small vs large batch")
    close(fig)


def test_line_without_test_vars_and_log():
    ds = make_line(test=False).drop_vars("accuracy")
    ds.attrs = {}
    ds["loss"][3] = np.inf
    fig = lp.plot_line(ds, log=True, title="interp")
    assert len(fig.axes) == 1
    assert fig.axes[0].get_yscale() == "log"
    assert [ln.get_linestyle() for ln in fig.axes[0].lines] == ["-"]
    assert "1 point diverged" in fig.axes[0].get_title()
    close(fig)
    fig = lp.plot_line(make_line(test=False))
    assert len(fig.axes) == 2 and all(len(a.lines) >= 1 for a in fig.axes)
    close(fig)
    with pytest.raises(InputError):
        lp.plot_line(make_plane())


# ------------------------------------------------------------------ trajectories


def test_trajectory_lr_drops_red_at_right_points(tmp_path):
    epochs = np.arange(0, 31, 2)
    coords = np.stack([np.linspace(-0.9, 0, len(epochs)), 0.3 * np.sin(epochs / 5.0)], axis=1)
    plane = make_plane(test=False)
    fig = lp.plot_trajectory(coords, epochs, explained=(0.623, 0.101), lr_drops=[10, 20, 99],
                             plane=plane, path=tmp_path / "traj", title="SGD")
    assert_written(tmp_path.glob("traj.*"))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PC 1 (62.30 % of the variance)"
    assert ax.get_ylabel() == "PC 2 (10.10 % of the variance)"
    drops = [c for c in scatter_collections(ax) if c.get_label() == "learning-rate drop"]
    assert len(drops) == 1
    np.testing.assert_allclose(drops[0].get_offsets(), coords[[5, 10]])
    face = drops[0].get_facecolor()
    assert np.allclose(face, to_rgba("red"))
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    labels = [c.get_label() for c in scatter_collections(ax)]
    assert any(lab.startswith("start") for lab in labels) and any(lab.startswith("end") for lab in labels)
    close(fig)


def test_trajectory_random_directions_and_bad_input():
    coords = np.random.default_rng(0).normal(size=(5, 2))
    fig = lp.plot_trajectory(coords, [0, 1, 2, 3, 4], lr_drops=[2.4])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "direction 1" and ax.get_ylabel() == "direction 2"
    drops = [c for c in scatter_collections(ax) if c.get_label() == "learning-rate drop"]
    np.testing.assert_allclose(drops[0].get_offsets(), coords[[2]])  # nearest snapshot
    close(fig)
    with pytest.raises(InputError):
        lp.plot_trajectory(coords, [0, 1, 2])
    with pytest.raises(InputError):
        lp.plot_trajectory(coords, range(5), explained=(62.3, 10.0))


# ------------------------------------------------------------------ embeddings


def test_embedding_trajectory_diamonds_for_jump_points(tmp_path):
    samples = make_samples()
    emb = np.random.default_rng(1).normal(size=(samples.sizes["point"], 2))
    fig = lp.plot_embedding(emb, samples, path=tmp_path / "emb", title="PHATE")
    assert_written(tmp_path.glob("emb.*"))
    ax = fig.axes[0]
    colls = scatter_collections(ax)
    diamonds = [c for c in colls if collection_is_marker(c, "D")]
    assert len(diamonds) == 1
    jump = samples["epoch"].values == 0
    np.testing.assert_allclose(diamonds[0].get_offsets(), emb[jump])
    # diamonds coloured by step size: two step sizes -> two distinct colours
    faces = np.unique(np.round(diamonds[0].get_facecolor(), 6), axis=0)
    assert len(faces) == 2
    # non-jump points: one collection per seed, lightness decreasing with epoch
    others = [c for c in colls if not collection_is_marker(c, "D")]
    assert len(others) == 3
    offsets = others[0].get_offsets()
    seed0 = (samples["seed"].values == 0) & ~jump
    np.testing.assert_allclose(offsets, emb[seed0])
    ep = samples["epoch"].values[seed0]
    lightness = others[0].get_facecolor()[:, :3].sum(axis=1)
    assert lightness[np.argmin(ep)] > lightness[np.argmax(ep)]
    # a colorbar explains the hue ramp, a legend names seeds and step sizes
    assert any(a.get_ylabel() == "retraining epoch" for a in fig.axes[1:])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "seed 0" in texts and "step size 0.25" in texts
    close(fig)


def test_embedding_loss_colors_and_fallbacks():
    samples = make_samples()
    loss = samples["loss"].values.copy()
    loss[4] = np.nan
    samples["loss"] = ("point", loss)
    emb = np.random.default_rng(2).normal(size=(samples.sizes["point"], 2))
    fig = lp.plot_embedding(emb, samples, color="loss")
    ax = fig.axes[0]
    assert any("log" in a.get_ylabel() and "loss" in a.get_ylabel() for a in fig.axes[1:])
    assert any(collection_is_marker(c, "D") for c in scatter_collections(ax))
    assert "1 point diverged" in ax.get_title()
    close(fig)
    for color in ("step_size", "epoch", "run"):
        fig = lp.plot_embedding(emb, samples, color=color)
        assert any(collection_is_marker(c, "D") for c in scatter_collections(fig.axes[0]))
        close(fig)
    # samples without seed / step_size: plain scatter coloured by epoch (or run)
    plain = samples.drop_vars(["seed", "step_size"])
    fig = lp.plot_embedding(emb, plain)
    assert any(a.get_ylabel() == "epoch" for a in fig.axes[1:])
    close(fig)
    plain = samples.drop_vars(["seed", "step_size", "epoch"])
    fig = lp.plot_embedding(emb, plain)
    assert not any(collection_is_marker(c, "D") for c in scatter_collections(fig.axes[0]))
    close(fig)
    # into a caller's axes, and a 3-D embedding
    outer = Figure()
    ax = outer.add_subplot()
    assert lp.plot_embedding(emb, samples, ax=ax) is outer
    close(outer)
    fig = lp.plot_embedding(np.random.default_rng(3).normal(size=(len(emb), 3)), samples)
    assert fig.axes[0].name == "3d"
    close(fig)
    with pytest.raises(InputError, match="aligned"):
        lp.plot_embedding(emb[:-1], samples)
    with pytest.raises(InputError, match="unknown color"):
        lp.plot_embedding(emb, samples, color="rainbow")


def test_embedding_panel_one_axes_per_method_with_scores(tmp_path):
    samples = make_samples()
    rng = np.random.default_rng(4)
    methods = ["PHATE", "t-SNE", "UMAP", "PCA"]
    embs = {m: rng.normal(size=(samples.sizes["point"], 2)) for m in methods}
    scores = {"PHATE": {"DeMAP": 0.834, "continuity": 0.91}, "PCA": {"DeMAP": 0.5}}
    fig = lp.plot_embedding_panel(embs, samples, scores, path=tmp_path / "panel")
    assert_written(tmp_path.glob("panel.*"))
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title().split("\n")[0] for a in panels] == methods
    assert panels[0].get_title() == "PHATE\nDeMAP 0.83 · continuity 0.91"
    assert panels[3].get_title() == "PCA\nDeMAP 0.50"
    assert panels[1].get_title() == "t-SNE"
    for a in panels:
        assert any(collection_is_marker(c, "D") for c in scatter_collections(a))
    assert len(fig.legends) == 1
    close(fig)
    fig = lp.plot_embedding_panel(embs, samples, color="loss")
    assert len([a for a in fig.axes if a.get_title()]) == 4
    close(fig)


def test_optimizer_trajectories(tmp_path):
    rng = np.random.default_rng(5)
    opts, runs, epochs, seeds = [], [], [], []
    r = 0
    for seed in range(2):
        for opt in ("sgd", "sgd+momentum", "adam"):
            for e in rng.permutation(6):  # shuffled: lines must follow epoch order
                opts.append(opt)
                runs.append(r)
                epochs.append(e)
                seeds.append(seed)
            r += 1
    samples = xr.Dataset({"loss": ("point", rng.uniform(size=len(opts)))},
                         coords={"optimizer": ("point", opts), "run": ("point", runs),
                                 "epoch": ("point", epochs), "seed": ("point", seeds)})
    emb = rng.normal(size=(len(opts), 2))
    fig = lp.plot_optimizer_trajectories(emb, samples, path=tmp_path / "opt")
    assert_written(tmp_path.glob("opt.*"))
    ax = fig.axes[0]
    assert len(ax.lines) == 6
    first = np.flatnonzero(np.array(runs) == 0)
    order = first[np.argsort(np.array(epochs)[first])]
    np.testing.assert_allclose(ax.lines[0].get_xydata(), emb[order])
    stars = [c for c in scatter_collections(ax) if collection_is_marker(c, "*")]
    assert len(stars) == 1 and len(stars[0].get_offsets()) == 6
    np.testing.assert_allclose(stars[0].get_offsets()[0], emb[order[0]])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"sgd", "sgd+momentum", "adam", "initialization", "final"} <= set(texts)
    # one colour per optimizer
    colors = {tuple(np.round(to_rgba(ln.get_color()), 4)) for ln in ax.lines}
    assert len(colors) == 3
    close(fig)
    fig = lp.plot_optimizer_trajectories(emb, samples, group="run")
    assert len({tuple(np.round(to_rgba(ln.get_color()), 4)) for ln in fig.axes[0].lines}) == 6
    close(fig)
    with pytest.raises(InputError, match="no coordinate"):
        lp.plot_optimizer_trajectories(emb, samples, group="lr")


# ------------------------------------------------------------------ persistence


def test_persistence_diagram(tmp_path):
    dgms = {0: np.array([[0.0, 0.5], [0.1, 0.3], [0.0, np.inf]]), 1: np.array([[0.4, 0.9]])}
    fig = lp.plot_persistence(dgms, path=tmp_path / "pd", title="J&R")
    assert_written(tmp_path.glob("pd.*"))
    ax = fig.axes[0]
    colls = scatter_collections(ax)
    assert len(colls) == 2
    assert collection_is_marker(colls[0], "o") and collection_is_marker(colls[1], "^")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "inf"
    inf_y = ax.get_yticks()[-1]
    assert inf_y > 0.9
    assert np.isclose(colls[0].get_offsets()[2, 1], inf_y)
    close(fig)
    fig = lp.plot_persistence({0: np.zeros((0, 2)), 1: []})
    close(fig)


# ------------------------------------------------------------------ interpolation (Li et al. Figs. 2-3)


def make_interpolation(bn="recompute", test=True):
    ds = make_line(test=test)
    ds.attrs = {"label_a": "batch 128", "label_b": "batch 8192"}
    if bn is not None:
        ds.attrs["bn"] = bn
    return ds


def test_interpolation_twin_axes_named_ends_and_bn_note(tmp_path):
    ds = make_interpolation()
    fig = lp.plot_interpolation(ds, path=tmp_path / "interp")
    assert_written(tmp_path.glob("interp.*"))
    ax, ax2 = fig.axes
    for a, var in ((ax, "loss"), (ax2, "accuracy")):
        data = [ln for ln in a.lines if not ln.get_label().startswith("_")]
        assert [ln.get_linestyle() for ln in data] == ["-", "--"]  # train solid, test dashed
        scale = 100.0 if var == "accuracy" else 1.0
        np.testing.assert_allclose(data[0].get_ydata(), scale * ds[var].values)
        np.testing.assert_allclose(data[1].get_ydata(), scale * ds[f"test_{var}"].values)
    assert ax.get_ylabel() == "loss" and ax2.get_ylabel() == "accuracy (%)"
    # The two models are named at t = 0 and t = 1.
    marks = {t.get_text(): t.xy[0] for t in ax.texts}
    assert marks == {"batch 128": 0.0, "batch 8192": 1.0}
    title = ax.get_title()
    assert title.startswith("batch 128 (t = 0) to batch 8192 (t = 1)")
    assert "recomputed at every point" in title and "bn='recompute'" in title
    close(fig)
    fig = lp.plot_interpolation(make_interpolation(bn="eval"), log=True, title="SB vs LB")
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_title() == "SB vs LB\nbatch norm: stored running statistics (bn='eval')"
    close(fig)


def test_interpolation_without_bn_test_data_or_names():
    ds = make_interpolation(bn=None, test=False)
    ds.attrs = {}
    fig = lp.plot_interpolation(ds)
    ax = fig.axes[0]
    assert "batch norm" not in ax.get_title() and {t.get_text() for t in ax.texts} == {"A", "B"}
    for a in fig.axes:
        assert [ln.get_linestyle() for ln in a.lines if not ln.get_label().startswith("_")] == ["-"]
    close(fig)
    # The same figure as plot_line (one drawing for both), only the marks and the note differ.
    ds = make_line()
    ds.attrs = {"label_start": "small", "label_end": "large"}
    a, b = lp.plot_line(ds), lp.plot_interpolation(ds)
    for x, y in zip(a.axes, b.axes):
        assert [ln.get_linestyle() for ln in x.lines] == [ln.get_linestyle() for ln in y.lines]
    assert {t.get_text() for t in b.axes[0].texts} == {"small", "large"}
    close(a, b)
    with pytest.raises(InputError, match="dim 't'"):
        lp.plot_interpolation(make_plane())


def test_line_marks_nonfinite_points():
    ds = make_interpolation()
    loss = ds["loss"].values.copy()
    loss[[5, 9]] = [np.nan, np.inf]
    ds["loss"] = ("t", loss)
    fig = lp.plot_interpolation(ds)
    ax = fig.axes[0]
    crosses = [c for c in scatter_collections(ax) if collection_is_marker(c, "x")]
    assert len(crosses) == 1
    np.testing.assert_allclose(crosses[0].get_offsets()[:, 0], ds["t"].values[[5, 9]])
    assert "2 points diverged" in ax.get_title() and "recomputed" in ax.get_title()
    assert any("diverged" in t.get_text() for t in fig.legends[0].get_texts())
    close(fig)


def test_nonfinite_coordinates_are_counted():
    samples = make_samples()
    emb = np.random.default_rng(6).normal(size=(samples.sizes["point"], 2))
    emb[3] = np.nan
    fig = lp.plot_embedding(emb, samples, title="PHATE")
    assert "1 point with NaN/inf coordinates (not drawn)" in fig.axes[0].get_title()
    close(fig)
    fig = lp.plot_embedding_panel({"PHATE": emb, "PCA": np.nan_to_num(emb)}, samples)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert "NaN/inf" in titles[0] and titles[1] == "PCA"
    close(fig)
    coords = np.stack([np.linspace(0, 1, 6), np.linspace(0, 1, 6)], axis=1)
    coords[-1] = np.inf
    fig = lp.plot_trajectory(coords, range(6))
    assert "1 snapshot with NaN/inf coordinates" in fig.axes[0].get_title()
    close(fig)


def test_interpolation_of_a_model_without_batch_norm_has_no_bn_note():
    # `line` records bn="eval" for every model; the note must follow `has_batch_norm`
    ds = make_interpolation(bn="eval")
    ds.attrs["has_batch_norm"] = False
    fig = lp.plot_interpolation(ds)
    assert "batch norm" not in fig.axes[0].get_title()
    close(fig)
    ds.attrs["has_batch_norm"] = True
    fig = lp.plot_interpolation(ds)
    assert "batch norm" in fig.axes[0].get_title()
    close(fig)


# ------------------------------------------------------------------ diverged (NaN/inf) losses


def diverged_samples():
    """J&R-like samples with a NaN and an inf loss (a diverged retraining), and their mask."""
    samples = make_samples()
    loss = samples["loss"].values.copy()
    bad = np.zeros(len(loss), dtype=bool)
    bad[[3, 20]] = True  # a retraining point and a jump point (epoch 0 of the fourth run)
    loss[3], loss[20] = np.nan, np.inf
    samples["loss"] = ("point", loss)
    assert samples["epoch"].values[18] == 0 and samples["epoch"].values[20] != 0
    return samples, bad


def offsets_of(collections):
    return np.concatenate([np.asarray(c.get_offsets()) for c in collections]) if collections else np.zeros((0, 2))


def assert_marked_as_diverged(ax, emb, bad):
    """The non-finite-loss points are grey crosses, and no other marker stands at them."""
    crosses = [c for c in scatter_collections(ax) if collection_is_marker(c, "x")]
    assert len(crosses) == 1
    np.testing.assert_allclose(crosses[0].get_offsets(), emb[bad])
    assert np.allclose(crosses[0].get_facecolor()[0][:3], to_rgba(lp.embeddings.DIVERGED_COLOR)[:3])
    others = offsets_of([c for c in scatter_collections(ax) if c is not crosses[0]])
    for point in emb[bad]:
        assert not np.isclose(others, point).all(axis=1).any(), "a diverged point is also drawn as a finite one"


@pytest.mark.parametrize("color", ["trajectory", "loss", "step_size", "epoch", "run"])
def test_embedding_marks_diverged_points_in_every_colouring(color):
    samples, bad = diverged_samples()
    n = samples.sizes["point"]
    emb = np.random.default_rng(8).normal(size=(n, 2))
    fig = lp.plot_embedding(emb, samples, color=color, title="J&R")
    ax = fig.axes[0]
    assert_marked_as_diverged(ax, emb, bad)
    assert "2 points diverged (NaN/inf loss)" in ax.get_title()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"2 of {n} points diverged (NaN/inf loss)" in texts
    close(fig)


def test_embedding_panel_and_optimizer_paths_flag_diverged_points():
    samples, bad = diverged_samples()
    n = samples.sizes["point"]
    emb = np.random.default_rng(9).normal(size=(n, 2))
    fig = lp.plot_embedding_panel({"PHATE": emb, "PCA": emb[:, ::-1].copy()}, samples)
    assert "2 points diverged (NaN/inf loss)" in fig.get_suptitle()
    assert f"2 of {n} points diverged (NaN/inf loss)" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert_marked_as_diverged(fig.axes[0], emb, bad)
    assert_marked_as_diverged(fig.axes[1], emb[:, ::-1], bad)
    close(fig)
    samples = samples.assign_coords(optimizer=("point", np.where(samples["seed"].values == 0, "sgd", "adam")))
    fig = lp.plot_optimizer_trajectories(emb, samples)
    ax = fig.axes[0]
    crosses = [c for c in scatter_collections(ax) if collection_is_marker(c, "x")]
    assert len(crosses) == 1
    np.testing.assert_allclose(crosses[0].get_offsets(), emb[bad])
    assert "2 points diverged (NaN/inf loss)" in ax.get_title()
    assert f"2 of {n} points diverged (NaN/inf loss)" in [t.get_text() for t in ax.get_legend().get_texts()]
    close(fig)


def test_all_finite_figures_show_no_diverged_flag():
    samples = make_samples()
    emb = np.random.default_rng(10).normal(size=(samples.sizes["point"], 2))
    figs = [lp.plot_embedding(emb, samples, color=c, title="J&R") for c in ("trajectory", "loss", "epoch")]
    figs.append(lp.plot_embedding_panel({"PHATE": emb}, samples))
    figs.append(lp.plot_optimizer_trajectories(emb, samples.assign_coords(optimizer=samples["seed"])))
    figs += [lp.plot_line(make_line()), lp.plot_interpolation(make_line()), lp.plot_contour(make_plane())]
    for fig in figs:
        texts = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
        texts += [t.get_text() for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if leg
                  for t in leg.get_texts()]
        assert not any("diverged" in t for t in texts), texts
        assert not any(collection_is_marker(c, "x") for ax in fig.axes for c in scatter_collections(ax))
        close(fig)


def test_line_and_plane_titles_say_when_losses_are_nan():
    ds = make_line()
    loss = ds["loss"].values.copy()
    loss[[2, 7, 8]] = np.nan
    ds["loss"] = ("t", loss)
    fig = lp.plot_line(ds)
    assert "3 points diverged" in fig.axes[0].get_title()
    crosses = [c for c in scatter_collections(fig.axes[0]) if collection_is_marker(c, "x")]
    np.testing.assert_allclose(crosses[0].get_offsets()[:, 0], ds["t"].values[[2, 7, 8]])
    close(fig)
    plane = make_plane()
    plane["loss"][3, 4] = np.nan
    fig = lp.plot_contour(plane)
    assert "1 cell diverged" in fig.axes[0].get_title()
    close(fig)


def test_figure_formats_follow_the_environment_setting(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lossatlas.plot.save import FORMATS_ENV, save_figure

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    monkeypatch.setenv(FORMATS_ENV, "png")
    assert [p.name for p in save_figure(fig, tmp_path / "a")] == ["a.png"]
    monkeypatch.setenv(FORMATS_ENV, "svg, png")
    assert [p.name for p in save_figure(fig, tmp_path / "b")] == ["b.svg", "b.png"]
    monkeypatch.delenv(FORMATS_ENV)
    assert [p.name for p in save_figure(fig, tmp_path / "c")] == ["c.png", "c.pdf"]
    assert [p.name for p in save_figure(fig, tmp_path / "d", formats=("pdf",))] == ["d.pdf"]

"""Plane figures a researcher would put in a paper: colourbars naming the loss, contour labels that
never collide, the same axis names in every figure, degenerate results said on the figure, figure
options (size, font, shared levels and colour range), minima side by side on shared levels, and a
readable persistence figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from lossatlas import plot as lp  # noqa: E402
from lossatlas._errors import InputError  # noqa: E402
from lossatlas.plot.planes import declutter_labels  # noqa: E402


def bowl(n=31, scale=1.0, attrs=None, fn=None):
    x = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    z = fn(X, Y) if fn else scale * (0.1 + X**2 + 3 * Y**2)
    return xr.Dataset({"loss": (("x", "y"), z), "test_loss": (("x", "y"), 1.1 * z)}, coords={"x": x, "y": x},
                      attrs=attrs or {})


def colorbar_labels(fig):
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def label_overlaps(fig) -> int:
    """Pairs of contour labels whose drawn boxes overlap, over every axes of ``fig``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    overlaps = 0
    for ax in fig.axes:
        for cs in [c for c in ax.collections if hasattr(c, "labelTexts")]:
            boxes = [t.get_window_extent(renderer) for t in cs.labelTexts]
            overlaps += sum(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i))
    return overlaps


def test_contour_has_a_colorbar_naming_the_loss():
    # Before: one axes, no colorbar (the levels could be read only off the inline labels).
    fig = lp.plot_contour(bowl(), title="my minimum")
    assert colorbar_labels(fig) == ["train loss"]
    fig = lp.plot_contour(bowl(), var="test_loss", log=True)
    assert colorbar_labels(fig) == ["log$_{10}$ test loss"]
    fig = lp.plot_trajectory(np.zeros((3, 2)), np.arange(3.0), plane=bowl(attrs={"directions": "pca"}))
    assert colorbar_labels(fig) == ["train loss"]


def test_contour_labels_never_collide():
    # A steep, narrow valley with many levels in a small figure: before, 85 pairs of labels overlapped.
    ds = bowl(fn=lambda X, Y: 0.01 + 40 * (Y - 0.3 * X) ** 2 + 0.2 * X**2)
    fig = lp.plot_contour(ds, levels=np.geomspace(0.012, 20, 30), options=lp.FigureOptions(size=(3.0, 2.6)))
    assert label_overlaps(fig) == 0
    cs = next(c for c in fig.axes[0].collections if hasattr(c, "labelTexts"))
    assert len(cs.labelTexts) >= 3  # decluttered, not emptied


def test_declutter_keeps_labels_that_do_not_collide():
    fig = lp.plot_contour(bowl(), levels=[0.5, 2.0])
    cs = next(c for c in fig.axes[0].collections if hasattr(c, "labelTexts"))
    assert declutter_labels(fig, [cs]) == 0 and len(cs.labelTexts) >= 2


def test_axes_are_named_alike_in_every_plane_figure():
    ds = bowl()
    conv = xr.Dataset({"ratio": (("x", "y"), np.abs(ds.loss.values) / 10)}, coords=ds.coords)
    figs = [lp.plot_contour(ds), lp.plot_heatmap(ds), lp.plot_surface3d(ds), lp.plot_convexity_map(conv),
            lp.plot_compare({"a": ds, "b": ds})]
    for fig in figs:
        # Before: "direction 1 (x)" in the contours, "x" in the convexity map.
        assert fig.axes[0].get_xlabel() == "direction 1", fig.axes[0].get_xlabel()
    assert lp.plot_contour(bowl(attrs={"directions": "pca"})).axes[0].get_ylabel() == "PC 2"


def test_a_diverged_centre_and_an_all_nan_plane_are_said_on_the_figure():
    ds = bowl(n=11)
    ds["loss"][5, 5] = np.nan
    title = lp.plot_contour(ds).axes[0].get_title()
    assert "centre diverged" in title and "1 cell diverged" in title
    ds["loss"][:] = np.nan
    for fig in (lp.plot_contour(ds), lp.plot_heatmap(ds)):
        texts = " ".join(t.get_text() for t in fig.axes[0].texts)
        assert "no finite values" in texts
        assert "centre diverged" in fig.axes[0].get_title()


def test_figure_options_set_size_fonts_levels_and_colour_range():
    opts = lp.FigureOptions(size=(3.0, 2.5), font_size=12, levels=(0.2, 0.5, 1.0), vrange=(0.0, 4.0))
    fig = lp.plot_contour(bowl(), options=opts)
    assert tuple(fig.get_size_inches()) == (3.0, 2.5)
    assert fig.axes[0].xaxis.label.get_fontsize() == 12
    cs = next(c for c in fig.axes[0].collections if hasattr(c, "levels"))
    assert np.allclose(cs.levels, [0.2, 0.5, 1.0])
    assert (cs.norm.vmin, cs.norm.vmax) == (0.0, 4.0)
    mesh = lp.plot_heatmap(bowl(), options=opts).axes[0].collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0.0, 4.0)
    import matplotlib as mpl

    assert mpl.rcParams["font.size"] != 12  # the caller's rcParams are untouched


@pytest.mark.parametrize("kwargs", [dict(size=(3.0,)), dict(size=(0.0, 3.0)), dict(font_size=0),
                                    dict(levels=()), dict(levels=(1.0, 1.0)), dict(vrange=(2.0, 1.0)),
                                    dict(vrange=(0.0, float("nan")))])
def test_figure_options_refuse_bad_values(kwargs):
    with pytest.raises(InputError):
        lp.FigureOptions(**kwargs)


def test_compare_puts_every_minimum_on_the_same_levels_and_colour_range():
    sharp, flat = bowl(scale=4.0), bowl(scale=0.5)
    fig = lp.plot_compare({"sharp": sharp, "flat": flat}, subtitles={"sharp": "test acc. 80 %"})
    sets = [next(c for c in ax.collections if hasattr(c, "levels")) for ax in fig.axes[:2]]
    assert np.allclose(sets[0].levels, sets[1].levels)
    assert (sets[0].norm.vmin, sets[0].norm.vmax) == (sets[1].norm.vmin, sets[1].norm.vmax)
    levels, vrange = lp.shared_levels({"sharp": sharp, "flat": flat})
    assert np.allclose(sets[0].levels, levels) and vrange[0] == pytest.approx(0.05)
    assert colorbar_labels(fig) == ["train loss"]  # one colorbar for all panels
    assert fig.axes[0].get_title() == "sharp\ntest acc. 80 %"
    # On shared levels the flat minimum draws the low contours the sharp one never reaches, and
    # the sharp one the high contours: what a reader compares at a glance.
    drawn = [[len(p) > 0 for p in cs.get_paths()] for cs in sets]
    assert drawn[1][0] and not drawn[0][0] and drawn[0][-1] and not drawn[1][-1]
    assert label_overlaps(fig) == 0


def test_persistence_figure_drops_an_empty_dimension_and_says_so():
    d = {"good": {0: np.array([[0.1, 0.3], [0.1, np.inf]]), 1: np.zeros((0, 2))},
         "bad": {0: np.array([[0.2, 0.5]]), 1: np.zeros((0, 2))}}
    fig = lp.plot_persistence_diagrams(d, title="J&R samples")
    # Before: a second row of two empty D1 panels (4 axes), the figure 6.4 inches tall.
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    assert fig.get_size_inches()[1] < 4
    assert "D1 empty in every diagram" in fig._suptitle.get_text()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[-1] == "inf"  # the class that never dies sits on a line marked inf


def test_an_empty_persistence_diagram_is_said_on_the_figure():
    fig = lp.plot_persistence_diagrams({"diverged": {0: np.zeros((0, 2)), 1: np.zeros((0, 2))}})
    assert "empty diagram" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_plane_grid_contours_carry_a_colourbar_each():
    # Before: no colourbar on any contour panel of the grid.
    fig = lp.plot_plane_grid([[("a", bowl()), ("b", bowl(scale=3.0))]])
    assert colorbar_labels(fig) == ["train loss", "train loss"]
    assert label_overlaps(fig) == 0
    fig = lp.plot_persistence({0: np.zeros((0, 2)), 1: np.zeros((0, 2))})
    assert "empty diagram" in " ".join(t.get_text() for t in fig.axes[0].texts)

"""The report opens with a short, readable summary (the minima and their measures, the barriers,
each explained in one line, any caveat the run recorded), its contour panels carry colourbars, and
it stays light: plotly.js inlined once, compressed, and inflated back to itself."""

import base64
import gzip
import json
import re

import numpy as np
import xarray as xr

from lossatlas.report import build_report
from lossatlas.report.overview import minima_rows
from lossatlas.report.products import scan
from lossatlas.store import RunDir

CAVEAT = "quick settings: the minima are too small to show the papers' findings (the good minimum tests at 51.6 %)"


def demo_like(path):
    """A run shaped as the demo leaves it: a ``minima`` summary, a caveat, paths with barriers."""
    run = RunDir(path)
    run.write_source({"model": "smallcnn", "data": "mnist1d"})
    minima = {name: {"train_loss": loss, "train_accuracy": 0.6, "test_loss": loss * 1.1, "test_accuracy": acc,
                     "top_hessian_eigenvalue": eig, "sharpness": {"eps=0.001 full": sh, "eps=0.0005 full": sh / 2},
                     "mean_rise": 0.25, "total_persistence_d0": 0.0123456, "total_persistence_d1": 0.0,
                     "embedding_scores": {"phate": {"DeMAP": 0.5}}, "run": str(path / name)}
              for name, loss, acc, eig, sh in (("good", 1.0963250579833985, 0.516, 12.3456, 0.4),
                                               ("bad", 0.8294743347167969, 0.518, 30.1, 0.9))}
    run.update_summary(minima=minima, caveat=CAVEAT, connect={"a": "good", "b": "bad", "barriers": {"linear": 0.3}})
    t = np.linspace(0, 1, 9)
    run.save("connect_linear", xr.Dataset({"loss": (("t",), 1.0 + 0.3 * np.sin(np.pi * t))}, coords={"t": t},
                                          attrs={"barrier": 0.3, "saddle_height": 0.2567}))
    x = np.linspace(-1, 1, 7)
    sub = RunDir(path / "good")
    sub.write_source({"model": "smallcnn", "data": "mnist1d"})
    sub.save("surface", xr.Dataset({"loss": (("x", "y"), 0.1 + np.add.outer(x**2, x**2)),
                                    "test_loss": (("x", "y"), 0.2 + np.add.outer(x**2, x**2))},
                                   coords={"x": x, "y": x}, attrs={"directions": "random"}))
    return run


def summary_html(page: str) -> str:
    start = page.index('<section id="summary">')
    return page[start:page.index("</section>", start)]


def test_the_summary_opens_with_the_minima_barriers_and_their_meanings(tmp_path):
    demo_like(tmp_path / "run")
    page = build_report(tmp_path / "run").read_text()
    summary = summary_html(page)
    # The caveat comes first, above the tables.
    assert summary.index("Read with care") < summary.index("The minima")
    assert "too small to show the papers&#x27; findings" in summary
    minima = re.search(r"<caption>The minima</caption>.*?</table>", summary).group(0)
    head = re.search(r"<thead><tr>(.*?)</tr>", minima).group(1)
    # A few minima: one column each, one row per measure with what it means beside it.
    assert re.findall(r"<th>(.*?)</th>", head) == ["measure", "good", "bad", "what it means"]
    rows = {r[0]: r[1:] for r in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", minima))
            if r}
    assert list(rows) == ["train loss", "train acc.", "test loss", "test acc.", "top Hessian eigenvalue",
                          "sharpness (eps=0.001 full)", "mean loss rise", "total persistence D0",
                          "total persistence D1"]
    # Rounded: three significant digits, accuracies in %.
    assert rows["train loss"][:2] == ["1.1", "0.829"] and rows["test acc."][:2] == ["51.6 %", "51.8 %"]
    assert rows["top Hessian eigenvalue"][:2] == ["12.3", "30.1"] and rows["total persistence D0"][0] == "0.0123"
    assert "1.0963250579833985" not in summary and "0.0123456" not in summary
    # Each measure explained in one line.
    assert rows["test acc."][2].startswith("share of held-out samples classified right")
    assert rows["top Hessian eigenvalue"][2].startswith("curvature along the sharpest direction")
    barriers = re.search(r"<caption>Barriers between minima</caption>.*?</table>", summary).group(0)
    assert "<td>linear</td><td>good and bad</td><td>0.3</td><td>0.257</td>" in barriers
    assert "<b>barrier</b>: the highest rise of the loss above the straight chord" in summary
    assert "<b>saddle height</b>" in summary
    # The raw values are still there, folded; the embedding scores are not a column.
    assert '<details class="recorded"><summary>All recorded values</summary>' in summary
    assert "embedding_scores" not in minima


def test_a_component_count_is_shown_when_a_run_records_one(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update_summary(train={"final": {"loss": 0.5, "test_accuracy": 0.9}},
                       topology={"total_persistence": {"0": 0.2, "1": 0.0}, "components": 3})
    rows = minima_rows([scan(run)])
    assert rows == {"run": {"train_loss": 0.5, "test_accuracy": 0.9, "total_persistence_d0": 0.2,
                            "total_persistence_d1": 0.0, "components": 3}}
    summary = summary_html(build_report(run.path).read_text())
    assert re.search(r"<td>kNN components</td><td>3</td>", summary)


def test_a_run_without_minima_or_paths_has_no_summary_tables(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update_summary(surface={"points": 9})
    summary = summary_html(build_report(run.path).read_text())
    assert "The minima" not in summary and "Barriers" not in summary and "Read with care" not in summary


def test_contour_panels_carry_colourbars(tmp_path):
    demo_like(tmp_path / "run")
    page = build_report(tmp_path / "run").read_text()
    figures = re.findall(r'Plotly\.newPlot\(\s*"(figure-\d+)",\s*(\[.*?\]),\s*\{', page, re.S)
    traces = [t for _, data in figures for t in json.loads(data) if t.get("type") == "contour"]
    # Before: every contour trace had showscale false and no colorbar.
    assert len(traces) == 2
    for t in traces:
        assert t.get("showscale", True) is not False
        assert t["colorbar"]["title"]["text"] in ("log10 train loss", "log10 test loss")
    assert traces[0]["colorbar"]["x"] != traces[1]["colorbar"]["x"]  # each beside its own panel


def test_plotly_is_inlined_once_compressed_and_inflates_to_itself(tmp_path):
    from plotly.offline import get_plotlyjs

    demo_like(tmp_path / "run")
    page = build_report(tmp_path / "run").read_text()
    packed = re.findall(r'const packed = "([A-Za-z0-9+/=]+)";', page)
    assert len(packed) == 1
    assert gzip.decompress(base64.b64decode(packed[0])).decode("utf-8") == get_plotlyjs()
    # The figures wait, inert, for it: no script runs plotly before it exists.
    assert page.count('<script type="text/plain" class="lossatlas-figure">') == page.count("Plotly.newPlot(")
    # Before: 4.85 MB for this run (plotly.js alone is 4.8 MB); now 1.99 MB.
    assert len(page.encode()) < 2_200_000


def test_many_minima_get_a_row_each_and_the_meanings_beneath(tmp_path):
    run = RunDir(tmp_path / "run")
    run.update_summary(minima={f"net{i}": {"train_loss": 0.1 * i, "test_accuracy": 0.5} for i in range(8)})
    summary = summary_html(build_report(run.path).read_text())
    minima = re.search(r"<caption>The minima</caption>.*?</table>", summary).group(0)
    assert re.findall(r"<th>(.*?)</th>", minima) == ["minimum", "train loss", "test acc."]
    assert "<td>net7</td><td>0.7</td><td>50.0 %</td>" in minima
    assert "<b>train loss</b>: the loss on the training data" in summary


def test_report_figures_say_a_diverged_centre_an_empty_diagram_and_mark_inf():
    from lossatlas.report.figures_measures import diagram_figure
    from lossatlas.report.figures_surface import plane_figures

    x = np.linspace(-1, 1, 5)
    z = 0.1 + np.add.outer(x**2, x**2)
    z[2, 2] = np.nan
    ds = xr.Dataset({"loss": (("x", "y"), z)}, coords={"x": x, "y": x})
    (surf, _), (cont, _) = plane_figures(ds, "run")
    # Before: only "(1 non-finite points not drawn)", not that the minimum itself diverged.
    assert "the centre diverged" in cont.layout.title.text and "the centre diverged" in surf.layout.title.text
    ds["loss"][2, 2] = 0.1
    assert "centre" not in plane_figures(ds, "run")[1][0].layout.title.text
    topo = xr.Dataset({"d0": (("pair0", "bd"), np.array([[0.1, 0.3], [0.1, np.inf]])),
                       "d1": (("pair1", "bd"), np.zeros((0, 2)))})
    fig = diagram_figure(topo, "run")
    assert [a.text for a in fig.layout.annotations] == ["inf"]
    empty = xr.Dataset({"d0": (("pair0", "bd"), np.zeros((0, 2))), "d1": (("pair1", "bd"), np.zeros((0, 2)))})
    assert "(empty: no classes)" in diagram_figure(empty, "run").layout.title.text

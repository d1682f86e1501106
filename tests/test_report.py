"""The HTML report: self-contained (one plotly.js, nothing remote), sections only for what the run
holds, every user-given string escaped, and the J&R animation (slider, play/pause, no auto-play,
a switch to colour by loss)."""

import base64
import re

import numpy as np
import pytest
import typer
import xarray as xr
from typer.testing import CliRunner

from lossatlas._errors import InputError
from lossatlas.cli import app
from lossatlas.cli.report import report
from lossatlas.report import build_report, esc, label
from lossatlas.report.figures_samples import embedding_figure
from lossatlas.store import RunDir

HOSTILE = "<script>alert(1)</script>\"&'"
NESTED = "<img src=x onerror=alert(2)>"
PLOTLY_SIGNATURE = re.compile(r"\*\s*plotly\.js v\d+\.\d+\.\d+")
TAG = re.compile(r"<(script|link|img|iframe|source|video|audio|embed|object|base|use|image)\b[^>]*>", re.I)


def _provenance():
    return {"lossatlas_version": "0.1.0", "torch_version": "2.13.0", "numpy_version": np.__version__,
            "python_version": "3.11.7", "device": "cpu", "created": "2026-12-01T00:00:00+00:00"}


def full_run(path, name=HOSTILE, nested=True):
    """A synthetic run holding one product of every kind the report draws, with ``name`` as the
    model, the data and in attrs, config values and summary keys (each must come out escaped)."""
    rng = np.random.default_rng(0)
    run = RunDir(path)
    run.write_source({"model": name, "data": name, "init_seed": 3, "data_seed": 4, "checkpoint": str(path)})
    run.write_config("train", {"train": {"seed": 5, "lr": 0.1, "note": name}, "device": "cpu"})
    x = np.linspace(-1, 1, 7)
    bowl = 0.1 + np.add.outer(x**2, 2 * x**2)
    plane = {"loss": (("x", "y"), bowl), "accuracy": (("x", "y"), 1 - bowl / 4),
             "test_loss": (("x", "y"), bowl * 1.2), "done": (("x", "y"), np.ones((7, 7), bool))}
    run.save("surface", xr.Dataset(plane, coords={"x": x, "y": x}, attrs={**_provenance(), "directions": "random"}))
    bowl_nan = bowl.copy()
    bowl_nan[0, 0] = np.nan
    t = np.linspace(-0.5, 1.5, 9)
    run.save("interpolation", xr.Dataset({"loss": (("t",), 0.1 + (t - 0.5) ** 2), "test_loss": (("t",), 0.2 + (t - 0.5) ** 2),
                                          "accuracy": (("t",), 0.9 - 0.1 * t**2)}, coords={"t": t},
                                         attrs={**_provenance(), "label_a": name, "label_b": "b"}))
    n_snap, p = 6, 20
    weights = np.cumsum(rng.normal(size=(n_snap, p)), 0).astype(np.float32)
    run.save("trajectory", xr.Dataset({"weights": (("point", "param"), weights),
                                       "loss": (("point",), np.linspace(2, 0.1, n_snap)),
                                       "test_loss": (("point",), np.linspace(2.1, 0.3, n_snap))},
                                      coords={"epoch": ("point", np.arange(n_snap, dtype=float))},
                                      attrs={**_provenance(), "lr_drops": [3]}))
    u, s, vt = np.linalg.svd(weights - weights.mean(0), full_matrices=False)
    run.save("trajectory_plane", xr.Dataset({"loss": (("x", "y"), bowl_nan), "directions": (("direction", "param"), vt[:2])},
                                            coords={"x": x * 5, "y": x * 5},
                                            attrs={**_provenance(), "directions": "pca", "explained": [0.7, 0.2]}))
    seeds, steps, epochs = [0, 1], [0.25, 1.0], [0, 1, 2, 3]
    grid = np.array([(se, st, ep) for se in seeds for st in steps for ep in epochs], float)
    n = len(grid)
    run_id = (grid[:, 0] * len(steps) + (grid[:, 1] == 1.0)).astype(int)
    coords = {"seed": ("point", grid[:, 0].astype(int)), "step_size": ("point", grid[:, 1]),
              "epoch": ("point", grid[:, 2]), "run": ("point", run_id)}
    loss = 0.1 + grid[:, 1] / (1 + grid[:, 2])
    run.save("jump", xr.Dataset({"weights": (("point", "param"), rng.normal(size=(n, p)).astype(np.float32)),
                                 "loss": (("point",), loss)}, coords=coords, attrs=_provenance()))
    methods = ["phate", "pca"]
    emb = rng.normal(size=(len(methods), n, 2))
    run.save("embedding", xr.Dataset({"embedding": (("method", "point", "component"), emb)},
                                     coords={"method": methods, "point": np.arange(n), "component": [0, 1],
                                             **coords},
                                     attrs={"phate_demap": 0.7, "phate_continuity": 0.4, "pca_demap": 0.9}))
    run.save("topology", xr.Dataset({"d0": (("pair0", "bd"), np.array([[0.1, 0.3], [0.1, np.inf]])),
                                     "d1": (("pair1", "bd"), np.array([[0.2, 0.25]]))}, coords={"bd": ["birth", "death"]},
                                    attrs={"total_persistence_d0": 0.04, "total_persistence_d1": 0.0025}))
    run.save("hessian", xr.Dataset({"eigenvalue": (("k",), np.array([3.0, 2.0]))}, coords={"k": [1, 2]},
                                   attrs={"top_eigenvalues": [3.0, 2.0], "min_eigenvalue": -0.1, "ratio": 0.033,
                                          "trace": 19.0, "trace_stderr": 2.0, "note": name}))
    ev = np.linspace(-1, 4, 300)
    run.save("spectral_density", xr.Dataset({"density": (("eigenvalue",), np.exp(-(ev - 1) ** 2 / 0.01))},
                                            coords={"eigenvalue": ev}))
    run.save("convexity", xr.Dataset({"ratio": (("x", "y"), np.abs(bowl) / 4)}, coords={"x": x, "y": x}))
    run.save("sharpness", xr.Dataset({"loss": (("minimum",), [0.1, 0.5]), "sharpness": (("minimum", "eps"), [[1.0, 0.5], [2.0, 1.0]])},
                                     coords={"minimum": [name, "other"], "eps": [1e-3, 5e-4]}))
    for method, bump in (("linear", 1.0), ("bezier", 0.2)):
        tt = np.linspace(0, 1, 5)
        run.save(f"connect_{method}", xr.Dataset({"loss": (("t",), 0.1 + bump * np.sin(np.pi * tt))}, coords={"t": tt},
                                                 attrs={"barrier": bump}))
    run.update_summary(train={"final": {"loss": 0.1}, name: 1.0},
                       prediction={"J&R": {"mean": 0.8, "sem": 0.02, "classifiers": {"knn": 0.75}},
                                   "grid": {"mean": 0.6, "sem": 0.03, "classifiers": {"knn": 0.55}}})
    if nested:
        sub = RunDir(path / NESTED)
        sub.write_source({"model": "mlp", "data": "digits"})
        sub.save("line", xr.Dataset({"loss": (("t",), 0.1 + t**2)}, coords={"t": t}, attrs=_provenance()))
    return run


def _outside_plotlyjs(page: str) -> str:
    """The page without the inlined plotly.js (its source names URLs it never loads: map tiles)."""
    start = PLOTLY_SIGNATURE.search(page).start()
    end = page.index("</script>", start)
    return page[:start] + page[end:]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    # A run directory whose path holds the hostile string (a '/' splits it across two folders).
    root = tmp_path_factory.mktemp("report") / "<script>alert(1)<" / "script>\"&'"
    root.mkdir(parents=True)
    full_run(root)
    path = build_report(root)
    return root, path.read_text()


def test_one_plotly_copy_and_nothing_remote(hostile):
    root, page = hostile
    assert (root / "report.html").is_file()
    assert len(PLOTLY_SIGNATURE.findall(page)) == 1, "plotly.js must be inlined exactly once"
    assert page.count("<script") == page.count("</script>")
    for tag in TAG.finditer(page):
        text = tag.group(0)
        assert not re.search(r"\b(src|href|srcset|data)\s*=", text, re.I), f"a tag that loads something: {text[:120]}"
    rest = _outside_plotlyjs(page)
    assert not re.search(r"https?://|//cdn|@import|url\(", rest), "the page (outside plotly.js) names a remote resource"
    assert re.findall(r'href="([^"]*)"', rest) and all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', rest))
    assert "MathJax.js" not in page and "cdn.plot.ly" not in rest


def test_every_section_of_a_full_run(hostile):
    _, page = hostile
    for title in ("Summary", "Training", "Surfaces", "Trajectories", "Embeddings", "Persistence diagrams",
                  "Hessian", "Sharpness", "Connectivity", "Prediction", "Provenance"):
        assert f"<h2>{title}</h2>" in page, title
    assert 'class="warn"' not in page, re.findall(r'<p class="warn">.*?</p>', page)
    assert "PCA directions: 70.0% and 20.0% of the variance" in page
    assert "(1 non-finite points not drawn)" in page  # the NaN cell of the trajectory plane is counted
    # Provenance: versions, the seeds of the configs, the device and the recorded source.
    for text in ("2.13.0", "3.11.7", "init_seed", "data_seed", "train.seed", "cpu", "config/source.yaml"):
        assert text in page, text
    # The prediction table: one row per feature set, the classifiers' accuracy as columns.
    assert "classifiers.knn" in page and "J&amp;R" in page


def test_hostile_names_are_escaped(hostile):
    _, page = hostile
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "alert(1)" in page and "onerror=alert(2)" in page  # the names are shown, as text
    assert esc(HOSTILE) in page  # in the HTML: the model, the data, the path, configs, tables
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # the nested run's heading
    # In the figures' JSON (titles, legends) the names are entities, which plotly draws as text.
    decoded = page
    for code, char in (("\\u003c", "<"), ("\\u003e", ">"), ("\\u002f", "/"), ('\\"', '"')):
        decoded = decoded.replace(code, char)
    assert label(HOSTILE) in decoded and "&lt;script&gt;alert(1)&lt;/script&gt;\"&amp;'" in decoded
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_escaping_helpers():
    assert esc(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;&#x27;"
    assert label("a $x$ <b>") == "a &#36;x&#36; &lt;b&gt;"
    assert label(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;\"&amp;'"  # plotly draws &quot; literally


def test_animation_slider_play_no_autoplay_and_loss_switch(hostile):
    _, page = hostile
    rest = _outside_plotlyjs(page)
    assert "Plotly.animate(" not in rest, "an animated figure must not play on its own"
    for text in ('"label":"play"', '"label":"pause"', '"sliders"', '"colour: loss"', '"colour: step size"',
                 '"colour: seed"', "retraining epoch "):
        assert text in rest, text


def test_embedding_figure_frames():
    rng = np.random.default_rng(1)
    epoch = np.tile(np.arange(3.0), 4)
    run = np.repeat(np.arange(4), 3)
    meta = {"epoch": epoch, "run": run, "seed": run // 2, "step_size": np.where(run % 2, 1.0, 0.5),
            "loss": rng.uniform(0.1, 1, 12)}
    fig, _ = embedding_figure({"phate": rng.normal(size=(12, 2)), "pca": rng.normal(size=(12, 2))}, meta, "t")
    frames, layout = fig["frames"], fig["layout"]
    assert [f["name"] for f in frames] == ["epoch 0", "epoch 1", "epoch 2"]
    slider = layout["sliders"][0]
    assert slider["active"] == 2 and len(slider["steps"]) == 3  # starts showing every epoch
    labels = [b["label"] for menu in layout["updatemenus"] for b in menu["buttons"]]
    assert labels == ["colour: step size", "colour: seed", "colour: loss", "play", "pause"]
    # Frame 0: each path shows only its jump point (later epochs are gaps); float32 typed arrays.
    x = np.frombuffer(base64.b64decode(frames[0]["data"][0]["x"]["bdata"]), "<f4")
    assert x.shape == (3,) and np.isfinite(x).sum() == 1
    # One path per run and panel, coloured by step size at first (one legend entry per step size).
    data = fig["data"]
    assert len(data) == 8 and len({t["line"]["color"] for t in data}) == 2
    assert [t["name"] for t in data if t["showlegend"]] == ["step size 0.5", "step size 1"]
    # The loss button puts every point on the loss colour scale, with its colour bar.
    by_loss = next(b for menu in layout["updatemenus"] for b in menu["buttons"] if b["label"] == "colour: loss")
    restyle, relayout, traces = by_loss["args"]
    assert list(traces) == list(range(8)) and list(restyle["marker.coloraxis"]) == ["coloraxis"] * 8
    assert np.allclose(restyle["marker.color"][0], np.log10(meta["loss"][:3])) and relayout["coloraxis.showscale"]


def test_runs_of_several_optimizers_start_coloured_by_optimizer():
    # The optimizer study embeds SGD, momentum and Adam runs together: colour by optimizer first
    # (the old report coloured them by seed only), with one legend entry per optimizer.
    rng = np.random.default_rng(2)
    epoch = np.tile(np.arange(3.0), 6)
    run = np.repeat(np.arange(6), 3)
    optimizer = np.array(["sgd", "momentum", "adam"])[run % 3]
    meta = {"epoch": epoch, "run": run, "seed": run // 3, "optimizer": optimizer, "loss": rng.uniform(0.1, 1, 18)}
    fig, _ = embedding_figure({"phate": rng.normal(size=(18, 2))}, meta, "t")
    labels = [b["label"] for menu in fig["layout"]["updatemenus"] for b in menu["buttons"]]
    assert labels[:3] == ["colour: optimizer", "colour: seed", "colour: loss"]
    data = fig["data"]
    assert len({t["line"]["color"] for t in data}) == 3
    assert sorted(t["name"] for t in data if t["showlegend"]) == ["optimizer adam", "optimizer momentum", "optimizer sgd"]


def test_sections_only_for_what_the_run_holds(tmp_path):
    run = RunDir(tmp_path / "small")
    x = np.linspace(-1, 1, 5)
    run.save("surface", xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, x**2) + 0.1)}, coords={"x": x, "y": x}))
    page = build_report(run.path, path=tmp_path / "elsewhere.html").read_text()
    assert (tmp_path / "elsewhere.html").is_file() and not (run.path / "report.html").exists()
    assert "<h2>Surfaces</h2>" in page and "<h2>Provenance</h2>" in page
    for title in ("Training", "Trajectories", "Embeddings", "Persistence diagrams", "Hessian", "Sharpness",
                  "Connectivity", "Prediction", "Summary"):
        assert f"<h2>{title}</h2>" not in page, title
    assert len(PLOTLY_SIGNATURE.findall(page)) == 1


def test_an_undrawable_product_is_named_and_the_rest_still_shown(tmp_path):
    run = RunDir(tmp_path / "odd")
    x = np.linspace(-1, 1, 5)
    run.save("surface", xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, x**2) + 0.1)}, coords={"x": x, "y": x}))
    # A trajectory without weights' partner coordinates: epochs as text cannot be drawn.
    run.save("topology", xr.Dataset({"d0": (("pair0", "bd"), np.array([["a", "b"]], dtype=object))}))
    page = build_report(run.path).read_text()
    assert "topology could not be drawn" in page and "<h2>Surfaces</h2>" in page


def test_missing_run_directory(tmp_path):
    with pytest.raises(InputError, match="no run directory"):
        build_report(tmp_path / "absent")


def test_report_command_on_a_real_run(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--model", "mlp", "--data", "digits", "--subset", "200", "--epochs", "2",
                            "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["surface", str(out), "--steps", "5", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    # The lead registers `report` in lossatlas.cli.app; here the function itself is the command.
    local = typer.Typer()
    local.command("report")(report)
    local.command("noop")(lambda: None)  # two commands: typer keeps the command's name
    r = runner.invoke(local, ["report", str(out)])
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    assert "<h2>Training</h2>" in page and "<h2>Surfaces</h2>" in page and "3-D surface" in page
    assert "mlp on digits" in page
    r = runner.invoke(local, ["report", str(tmp_path / "absent")])
    assert r.exit_code == 2 and "no run directory" in r.output


def test_an_empty_run_says_so(tmp_path):
    page = build_report(RunDir(tmp_path / "empty").path).read_text()
    assert "holds no products and no summary yet" in page and "<h2>Provenance</h2>" in page
    assert not PLOTLY_SIGNATURE.search(page)  # no figure, no plotly.js


def _decoded(values):
    """A plotly array as numbers: a typed array (``{"dtype", "bdata"}``) or a plain list."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"]).astype(float)
    return np.asarray(values, dtype=float)


def _jr_meta(loss):
    epoch = np.tile(np.arange(3.0), 4)
    run = np.repeat(np.arange(4), 3)
    return {"epoch": epoch, "run": run, "seed": run // 2, "step_size": np.where(run % 2, 1.0, 0.5), "loss": loss}


def test_embedding_figure_marks_diverged_points_and_says_how_many():
    rng = np.random.default_rng(3)
    loss = rng.uniform(0.1, 1, 12)
    bad = np.zeros(12, bool)
    bad[[5, 8]] = True  # the last epochs of run 1 and run 2
    loss[5], loss[8] = np.nan, np.inf
    coords = {"phate": rng.normal(size=(12, 2)), "pca": rng.normal(size=(12, 2))}
    fig, _ = embedding_figure(coords, _jr_meta(loss), "J&R")
    assert fig["layout"]["title"]["text"].endswith("2 of 12 points diverged (NaN/inf loss)")
    crosses = [t for t in fig["data"] if t.get("marker", {}).get("symbol") == "x"]
    assert len(crosses) == 2 and [t["showlegend"] for t in crosses] == [True, False]  # one per panel
    assert "diverged (NaN/inf loss)" in crosses[0]["name"]
    for trace, xy in zip(crosses, coords.values()):
        np.testing.assert_allclose(_decoded(trace["x"]), xy[bad, 0])
        np.testing.assert_allclose(_decoded(trace["y"]), xy[bad, 1])
    # The runs' paths hold no diverged point, so no colouring paints one as a finite value.
    paths = [t for t in fig["data"] if t.get("marker", {}).get("symbol") != "x"]
    assert len(paths) == 8
    shown = np.concatenate([_decoded(t["x"]) for t in paths])
    assert np.isfinite(shown).sum() == 2 * (12 - 2)
    for xy in coords.values():
        assert not np.isin(xy[bad, 0], shown).any()
    # Every frame of the animation keeps them off the paths too, and on their crosses once reached.
    last = fig["frames"][-1]
    runs_x = [_decoded(d["x"]) for d, i in zip(last["data"], last["traces"]) if fig["data"][i] in paths]
    assert np.isfinite(np.concatenate(runs_x)).sum() == 2 * (12 - 2)
    crosses_x = [_decoded(d["x"]) for d, i in zip(last["data"], last["traces"]) if fig["data"][i] in crosses]
    np.testing.assert_allclose(crosses_x[0], coords["phate"][bad, 0])


def test_all_finite_report_figures_show_no_diverged_flag():
    from lossatlas.report.figures_samples import training_figure

    rng = np.random.default_rng(4)
    fig, _ = embedding_figure({"phate": rng.normal(size=(12, 2))}, _jr_meta(rng.uniform(0.1, 1, 12)), "J&R")
    assert "diverged" not in fig["layout"]["title"]["text"]
    assert not [t for t in fig["data"] if t.get("marker", {}).get("symbol") == "x"]
    traj = xr.Dataset({"loss": ("point", np.linspace(2.0, 0.1, 6))}, coords={"epoch": ("point", np.arange(6.0))})
    tf = training_figure(traj, "training").to_dict()
    assert "diverged" not in tf["layout"]["title"]["text"] and len(tf["data"]) == 1


def test_training_figure_marks_diverged_snapshots():
    from lossatlas.report.figures_samples import training_figure

    loss = np.array([2.0, 1.0, 0.5, np.nan, np.inf, np.nan])
    traj = xr.Dataset({"loss": ("point", loss), "test_loss": ("point", loss * 1.1)},
                      coords={"epoch": ("point", np.arange(6.0))})
    fig = training_figure(traj, "training").to_dict()
    assert fig["layout"]["title"]["text"].endswith("3 of 6 snapshots diverged (NaN/inf loss)")
    crosses = [t for t in fig["data"] if t.get("marker", {}).get("symbol") == "x"]
    assert len(crosses) == 1
    np.testing.assert_allclose(_decoded(crosses[0]["x"]), [3.0, 4.0, 5.0])


def test_a_studys_own_figures_are_embedded_and_a_single_runs_are_not(tmp_path):
    # A study (runs nested one level down) draws composite figures in DIR/figures: the report
    # embeds them as data URIs (the page stays one file), names and captions escaped.
    from matplotlib.figure import Figure

    x = np.linspace(-1, 1, 5)
    plane_ds = xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, x**2) + 0.1)}, coords={"x": x, "y": x})
    study = RunDir(tmp_path / "study")
    RunDir(study.path / "net<a>").save("surface", plane_ds)
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    study.figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(study.figures / "depth_<b>surfaces.png")
    (study.figures / "depth_<b>surfaces.pdf").write_bytes(b"%PDF-1.4")  # PDFs stay out
    page = build_report(study.path).read_text()
    assert "<h2>Figures across runs</h2>" in page
    assert page.count('<figure class="static"><img alt="depth_&lt;b&gt;surfaces" src="data:image/png;base64,') == 1
    assert "depth_&lt;b&gt;surfaces" in page and "depth_<b>surfaces" not in page

    single = RunDir(tmp_path / "single")
    single.save("surface", plane_ds)
    single.figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(single.figures / "contour.png")
    page = build_report(single.path).read_text()
    assert "Figures across runs" not in page and '<figure class="static">' not in page

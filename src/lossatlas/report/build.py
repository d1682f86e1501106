"""``build_report``: one self-contained HTML page from whatever a run directory holds.

The page is rebuilt from the stored products each time (nothing is cached), so it can be written
at the end of every command. A product that cannot be drawn is named on the page with the
reason; the rest of the page is still built.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .._errors import missing_extra
from ..store import RunDir, atomic_write_text
from .figures_measures import (density_figure, diagram_figure, hessian_figure, nested_table, prediction_table,
                               sharpness_table)
from .figures_samples import embedding_figure, trajectory_figure, training_figure
from .figures_surface import line_figure, lines_figure, plane_figures, ratio_figure
from .overview import overview
from .page import Page, Section, esc, flatten, mapping_table, table
from .products import RunProducts, nested_runs, scan
from .provenance import provenance_section

__all__ = ["build_report"]

LINE_TITLES = {"interpolation": "1-D interpolation between two minima",
               "line": "1-D line along a filter-normalized random direction"}


def build_report(run_dir, path=None) -> Path:
    """Write the run's report: one HTML file that opens with no network.

    It holds interactive surfaces and contours, 1-D curves, the PCA trajectory, animated J&R
    embeddings, persistence diagrams, Hessian spectra, sharpness, connectivity and prediction
    tables (each only when the run holds it), the summary and the provenance. plotly.js is inlined
    once. Run directories nested one level down (one per minimum, as a study keeps them) get their
    own parts in each section.

    Parameters
    ----------
    run_dir : str or Path
        An existing run directory.
    path : str or Path, optional
        Where to write the page (default ``run_dir/report.html``).

    Returns
    -------
    Path of the written page.

    Examples
    --------
    >>> build_report("runs/demo")          # doctest: +SKIP
    PosixPath('runs/demo/report.html')
    """
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise missing_extra("plotly", "report") from None
    run = RunDir(run_dir, create=False)
    target = Path(path) if path is not None else run.path / "report.html"
    nested = nested_runs(run.path)
    scanned = [scan(run)] + [scan(RunDir(sub, create=False), sub.name) for sub in nested]
    page = Page(f"lossatlas report: {run.path.name}", _subtitle(run))
    summary = page.section("Summary")
    if not any(item.products or item.run.summary() for item in scanned):
        summary.text("This run directory holds no products and no summary yet.")
    # The readable part first; every recorded value stays on the page, folded.
    overview(summary, scanned)
    recorded = Section("All recorded values", "recorded")
    _summary(recorded, scanned)
    if recorded:
        summary.html('<details class="recorded"><summary>All recorded values</summary>' + "".join(recorded.parts)
                     + "</details>")
    _training(page, page.section("Training"), scanned)
    _surfaces(page, page.section("Surfaces"), scanned)
    _trajectories(page, page.section("Trajectories"), scanned)
    _embeddings(page, page.section("Embeddings"), scanned)
    _topology(page, page.section("Persistence diagrams"), scanned)
    _curvature(page, page.section("Hessian"), scanned)
    _sharpness(page.section("Sharpness"), scanned)
    _connectivity(page, page.section("Connectivity"), scanned)
    _prediction(page.section("Prediction"), scanned)
    if nested:
        _composite_figures(page.section("Figures across runs"), run.path / "figures", scanned[0])
    _others(page.section("Other products"), scanned)
    provenance_section(page.section("Provenance"), scanned)
    atomic_write_text(target, page.render())
    return target


def _subtitle(run: RunDir) -> str:
    parts = []
    if run.has_source():
        try:
            src = run.read_source()
            parts.append(f"{src.get('model', '?')} on {src.get('data', '?')}")
        except Exception:  # noqa: BLE001 - the provenance section names the damage
            pass
    parts.append(str(run.path.resolve()))
    parts.append("built " + _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return " · ".join(parts)


def _where(item: RunProducts, name: str = "") -> str:
    head = item.label or item.run.path.name
    return f"{head}: {name}" if name else head


def _heading(section: Section, item: RunProducts, several: bool) -> None:
    """With nested runs, each run's part starts with its name (the top directory's as itself)."""
    if several:
        name = item.label or f"{item.run.path.name} (this directory)"
        section.html(f"<h3>{esc(name)}</h3>")


def _draw(page: Page, section: Section, what: str, make: Callable[[], Iterable]) -> None:
    """Add the figures ``make`` returns ([(figure, height)]); a failure is named, not fatal:
    the report is rebuilt at the end of every command and one odd product must not hide the rest."""
    try:
        figures = list(make())
    except Exception as exc:  # noqa: BLE001
        section.text(f"{what} could not be drawn: {type(exc).__name__}: {exc}", cls="warn")
        return
    for fig, height in figures:
        section.html(page.figure(fig, height=height))


def _summary(section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        summary = item.run.summary()
        entries = {k: v for k, v in summary.items() if not k.startswith("prediction")}
        if not entries:
            continue
        _heading(section, item, several)
        comparisons, records, plain, others = [], [], [], []
        for key, value in entries.items():
            if isinstance(value, dict) and _rows_of_mappings(value):
                comparisons.append(_card(key, nested_table(value), folded=False))
            elif isinstance(value, dict):
                # Long entries (the training data's description) start folded.
                others.append(_card(key, mapping_table(value), folded=len(flatten(value)) > 16))
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                # A list of records (the demo's notices): one row each.
                columns = list(dict.fromkeys(c for v in value for c in v))
                records.append(table(columns, [[v.get(c, "") for c in columns] for v in value], caption=key))
            else:
                plain.append((key, value))
        if plain:
            others.insert(0, table(("key", "value"), plain))
        # Comparisons (one row per minimum) first, then the rest side by side.
        section.html("".join(comparisons + records))
        section.html('<div class="cards">' + "".join(f"<div>{c}</div>" for c in others) + "</div>")


def _card(key: str, body: str, folded: bool) -> str:
    return f"<details{'' if folded else ' open'}><summary>{esc(key)}</summary>{body}</details>"


def _rows_of_mappings(value: dict) -> bool:
    return bool(value) and all(isinstance(v, dict) for v in value.values())


def _training(page: Page, section: Section, scanned) -> None:
    from ..trajectory import select_run

    several = len(scanned) > 1
    for item in scanned:
        for p in item.of("trajectory"):
            _heading(section, item, several)
            meta = p.ds.drop_vars("weights")
            _draw(page, section, p.name, lambda: [(training_figure(select_run(meta).load(),
                                                                   f"{_where(item, p.name)}: training"), 420)])
            if "run" in meta.coords and len(np.unique(meta["run"].values)) > 1:
                section.text(f"{p.name} holds {len(np.unique(meta['run'].values))} runs; the first is drawn here "
                             "and in the trajectory plot (embed them together with the trajectory as the source).")


def _surfaces(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        planes, lines = item.of("plane"), item.of("line")
        if planes or lines:
            _heading(section, item, several)
        for p in planes:
            _draw(page, section, p.name, lambda: plane_figures(p.ds.load(), _where(item, p.name)))
        for p in lines:
            title = LINE_TITLES.get(p.name, p.name)
            _draw(page, section, p.name, lambda: [(line_figure(p.ds.load(), f"{_where(item)}: {title}"), 440)])


def _trajectories(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        for p in item.of("trajectory"):
            _heading(section, item, several)
            plane = item.get("trajectory_plane")
            _draw(page, section, p.name, lambda: [(_trajectory(p.ds, plane.ds if plane else None,
                                                               _where(item, p.name)), 560)])
            if plane is None:
                section.text("No loss contours: run `lossatlas trajectory` on this run to evaluate the plane.")


def _trajectory(traj, plane, title: str):
    from ..trajectory import pca_directions, project, select_run

    one = select_run(traj)
    final = np.asarray(one.weights.isel(point=-1).values)
    if plane is not None and "directions" in plane and str(plane.attrs.get("directions", "pca")) == "pca":
        dirs = list(np.asarray(plane["directions"].values))
        explained = plane.attrs.get("explained")
        plane_ds = plane.drop_vars("directions").load()
    else:
        dirs, ratios = pca_directions(one, n=2)
        explained, plane_ds = ratios.tolist(), None
    xy = project(one, final, dirs)
    epochs = np.asarray(one.epoch.values, float)
    drops = [int(e) for e in np.atleast_1d(one.attrs.get("lr_drops", []))]
    if explained is not None:
        explained = [float(v) for v in explained]
    return trajectory_figure(xy, epochs, explained, title, plane=plane_ds, lr_drops=drops)


def _embedding_meta(item: RunProducts, name: str, emb) -> dict:
    """Per-point values of the embedded samples: the embedding's own coordinates, and the loss
    from the samples it was made of (``embedding`` of ``jump``, ``embedding_X`` of ``X``)."""
    source = "jump" if name == "embedding" else name[len("embedding_"):]
    keys = ("epoch", "seed", "step_size", "run", "optimizer")
    meta = {k: np.asarray(emb[k].values) for k in keys if k in emb.coords}
    samples = item.get(source)
    n = emb.sizes["point"]
    if samples is not None and samples.ds.sizes.get("point") == n:
        for k in ("loss", *keys):
            if k in samples.ds and k not in meta:
                meta[k] = np.asarray(samples.ds[k].values)
    if source == "trajectory":
        meta.pop("step_size", None)
    return meta


def _embeddings(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        for p in item.of("embedding"):
            _heading(section, item, several)
            _draw(page, section, p.name, lambda: [_embedding(item, p)])
            if "loss" not in _embedding_meta(item, p.name, p.ds):
                section.text(f"{p.name}: the embedded samples are not in the run, so no loss colouring.")


def _embedding(item: RunProducts, p):
    emb = p.ds.load()
    methods = [str(m) for m in emb["method"].values]
    # By position: .sel on the stored (StringDType) method labels does not reduce the dimension.
    values = np.asarray(emb["embedding"].transpose("method", "point", "component").values, float)
    coords = {m: values[i] for i, m in enumerate(methods)}
    scores = {m: {label: float(emb.attrs[f"{m}_{key}"]) for key, label in (("demap", "DeMAP"), ("continuity", "continuity"))
                  if f"{m}_{key}" in emb.attrs} for m in methods}
    source = "jump" if p.name == "embedding" else p.name[len("embedding_"):]
    what = {"jump": "jump and retrain samples", "grid": "grid samples", "naive": "naive samples",
            "trajectory": "trajectory snapshots"}.get(source, f"{source} samples")
    return embedding_figure(coords, _embedding_meta(item, p.name, emb), f"{_where(item)}: embeddings of the {what}",
                            scores=scores)


def _topology(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        for p in item.of("topology"):
            _heading(section, item, several)
            _draw(page, section, p.name, lambda: [(diagram_figure(p.ds.load(), _where(item, p.name)), 480)])


def _curvature(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        found = item.of("hessian", "density", "convexity")
        if found:
            _heading(section, item, several)
        for p in found:
            if p.kind == "hessian":
                _draw(page, section, p.name, lambda: [(hessian_figure(p.ds.load(), _where(item, p.name)), 400)])
                facts = {k: v for k, v in p.ds.attrs.items() if k not in ("settings",) and not k.endswith("_version")}
                section.html(mapping_table(facts, caption=f"{_where(item, p.name)}: measured"))
            elif p.kind == "density":
                _draw(page, section, p.name, lambda: [(density_figure(p.ds.load(), _where(item, p.name)), 400)])
            else:
                _draw(page, section, p.name, lambda: [(ratio_figure(p.ds.load(), _where(item, p.name)), 460)])


def _sharpness(section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        for p in item.of("sharpness"):
            _heading(section, item, several)
            try:
                section.html(sharpness_table(p.ds.load()))
            except Exception as exc:  # noqa: BLE001 - see _draw
                section.text(f"{p.name} could not be shown: {type(exc).__name__}: {exc}", cls="warn")


def _connectivity(page: Page, section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        found = item.of("connect")
        if not found:
            continue
        _heading(section, item, several)
        from ..connectivity.barrier import path_barriers

        paths = {p.name.replace("connect_", "", 1): p.ds.load() for p in found}
        barriers = {k: path_barriers(ds)["barrier"] for k, ds in paths.items() if "barrier" in ds.attrs}
        _draw(page, section, "the paths between minima",
              lambda: [(lines_figure(paths, f"{_where(item)}: paths between two minima", barriers), 460)])
        if barriers:
            section.html(table(("path", "barrier (largest rise of the loss above the chord between the ends, t in [0, 1])"),
                               barriers.items()))


def _prediction(section: Section, scanned) -> None:
    several = len(scanned) > 1
    for item in scanned:
        entries = {k: v for k, v in item.run.summary().items() if k.startswith("prediction")}
        for key, value in entries.items():
            _heading(section, item, several)
            section.html(f"<h4>{esc(key)}</h4>" + prediction_table(value))


#: A static figure larger than this is named, not embedded (the page stays a few MB).
FIGURE_BYTES = 3_000_000


def _composite_figures(section: Section, folder: Path, top: RunProducts) -> None:
    """The PNG figures a study or the demo draws across its runs (``DIR/figures/*.png``: panels of
    several minima, a measure against width, ...), embedded as data URIs so the page needs no
    other file. Figures of the top run's own products (drawn interactively above) are left out."""
    import base64

    drawn = {p.name for p in top.products} | ({"connectivity"} if top.of("connect") else set())
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    for png in (p for p in pngs if p.stem not in drawn):
        size = png.stat().st_size
        if size > FIGURE_BYTES:
            section.text(f"{png.name} ({size / 1e6:.1f} MB) is not embedded; open {png} instead.")
            continue
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        section.html(f'<figure class="static"><img alt="{esc(png.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{esc(png.stem)}</figcaption></figure>")


def _others(section: Section, scanned) -> None:
    rows = [(_where(item), p.name, ", ".join(f"{d}={n}" for d, n in p.ds.sizes.items()),
             ", ".join(map(str, p.ds.data_vars))) for item in scanned for p in item.of("other", "samples")]
    if rows:
        section.text("Stored products the report draws through others (samples) or does not draw.")
        section.html(table(("run", "product", "sizes", "variables"), rows))


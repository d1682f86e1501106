"""The report's opening: a short, readable summary of what a run found.

One small table per question (the minima and their measures; the barriers between them), numbers
rounded, each column explained in one line beneath, and any caveat the run recorded (the quick
demo's minima are too small to show the papers' findings) above them. Everything the run recorded
stays on the page, folded, under "All recorded values".
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

from .page import Section, esc, table

__all__ = ["COLUMNS", "barrier_rows", "minima_rows", "overview"]

#: The measures of a minimum the summary shows: (column heading, one-line meaning), in order.
COLUMNS: dict[str, tuple[str, str]] = {
    "train_loss": ("train loss", "the loss on the training data at the minimum"),
    "train_accuracy": ("train acc.", "share of training samples classified right"),
    "test_loss": ("test loss", "the loss on held-out data"),
    "test_accuracy": ("test acc.", "share of held-out samples classified right: how well the minimum generalizes"),
    "top_hessian_eigenvalue": ("top Hessian eigenvalue",
                               "curvature along the sharpest direction at the minimum; larger is sharper"),
    "sharpness": ("sharpness", "largest loss rise within a small box around the minimum (Keskar et al.); larger is sharper"),
    "mean_rise": ("mean loss rise", "average loss increase at a fixed radius along random filter-normalized directions; "
                  "larger is sharper"),
    "basin_volume": ("basin volume", "share of random directions along which the loss stays below the threshold; "
                     "larger is a wider basin"),
    "total_persistence_d0": ("total persistence D0", "summed lifetimes of separate low-loss regions in the sampled "
                             "landscape (Horoi et al.); larger is more rugged"),
    "total_persistence_d1": ("total persistence D1", "summed lifetimes of loops in the sampled landscape"),
    "components": ("kNN components", "pieces the samples' kNN graph falls into; more than 1 means the persistence "
                   "of each piece is counted apart"),
}

#: Up to this many minima the table has one column per minimum (and stays narrow); beyond, one row each.
TRANSPOSE_UP_TO = 6

BARRIER_MEANINGS = {
    "barrier": "the highest rise of the loss above the straight chord between the path's two ends "
               "(0: the path never rises above its ends' line; lower means better connected minima)",
    "saddle_height": "the highest loss on the path above its higher end",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _rounded(key: str, value: Any) -> str:
    v = _number(value)
    if v is None:
        return ""
    if not math.isfinite(v):
        return "diverged (NaN)" if math.isnan(v) else str(v)
    if key.endswith("accuracy"):
        return f"{100 * v:.1f} %"
    if key == "components":
        return str(int(v))
    return f"{v:.3g}"


def _flat_row(values: Mapping) -> dict:
    """A minimum's measures as scalars: a dict of sharpness values becomes its first entry, the
    training's ``final`` and the compare command's names map to the columns'."""
    row = {}
    final = values.get("final") if isinstance(values.get("final"), Mapping) else {}
    aliases = {"loss": "train_loss", "accuracy": "train_accuracy"}
    for source in (final, values):
        for k, v in source.items():
            key = aliases.get(k, k)
            if key in COLUMNS and key not in row:
                row[key] = v
    sharp = values.get("sharpness")
    if isinstance(sharp, Mapping) and sharp:
        label, first = next(iter(sharp.items()))
        row["sharpness"] = first
        row["_sharpness_label"] = str(label)
    top = values.get("top_eigenvalues")
    if "top_hessian_eigenvalue" not in row and isinstance(top, (list, tuple)) and top:
        row["top_hessian_eigenvalue"] = top[0]
    if "components" not in row:
        comp = values.get("components")
        if isinstance(values.get("topology"), Mapping):
            comp = values["topology"].get("components", comp)
        if _number(comp) is not None:
            row["components"] = comp
    return row


def minima_rows(scanned) -> dict[str, dict]:
    """name -> measures of every minimum the runs describe: the ``minima`` entry a study or the
    demo writes, the ``compare`` command's minima, else each run's training, Hessian, sharpness and
    topology summaries (a run per minimum)."""
    top = scanned[0].run.summary()
    if isinstance(top.get("minima"), Mapping) and top["minima"]:
        return {str(k): _flat_row(v) for k, v in top["minima"].items() if isinstance(v, Mapping)}
    compare = top.get("compare")
    if isinstance(compare, Mapping) and isinstance(compare.get("minima"), Mapping):
        return {str(k): _flat_row(v) for k, v in compare["minima"].items() if isinstance(v, Mapping)}
    rows = {}
    for item in scanned:
        summary = item.run.summary()
        merged: dict = {}
        for key in ("train", "hessian", "topology"):
            if isinstance(summary.get(key), Mapping):
                merged.update({k: v for k, v in summary[key].items() if k not in merged})
        totals = (summary.get("topology") or {}).get("total_persistence") if isinstance(summary.get("topology"), Mapping) else None
        if isinstance(totals, Mapping):
            for d, v in totals.items():
                merged.setdefault(f"total_persistence_d{d}", v)
        row = _flat_row(merged)
        if any(k in COLUMNS for k in row):
            rows[item.label or item.run.path.name] = row
    return rows


def barrier_rows(scanned) -> list[dict]:
    """One row per stored path between two minima: its run, method, ends, barrier and saddle height."""
    rows = []
    for item in scanned:
        ends = item.run.summary().get("connect") or {}
        for p in item.of("connect"):
            attrs = p.ds.attrs
            a = attrs.get("label_a", ends.get("a") if isinstance(ends, Mapping) else None)
            b = attrs.get("label_b", ends.get("b") if isinstance(ends, Mapping) else None)
            between = f"{a} and {b}" if a is not None and b is not None else (item.label or item.run.path.name)
            rows.append({"path": p.name.replace("connect_", "", 1), "between": between,
                         "barrier": attrs.get("barrier"), "saddle_height": attrs.get("saddle_height")})
    return rows


def overview(section: Section, scanned) -> None:
    """Write the summary's readable part into ``section``: caveats, minima, barriers."""
    top = scanned[0].run.summary()
    caveat = top.get("caveat")
    if isinstance(caveat, str) and caveat:
        section.html(f'<p class="caveat"><strong>Read with care:</strong> {esc(caveat)}</p>')
    minima = minima_rows(scanned)
    if minima:
        keys = [k for k in COLUMNS if any(_number(r.get(k)) is not None for r in minima.values())]
        sharp_label = next((r["_sharpness_label"] for r in minima.values() if "_sharpness_label" in r), "")
        names = [COLUMNS[k][0] + (f" ({sharp_label})" if k == "sharpness" and sharp_label else "") for k in keys]
        if len(minima) <= TRANSPOSE_UP_TO:
            # A few minima: one column each, one row per measure with its meaning beside it (narrow).
            body = [[name] + [_rounded(k, r.get(k)) for r in minima.values()] + [COLUMNS[k][1]]
                    for k, name in zip(keys, names)]
            section.html('<div class="overview">' + table(["measure", *minima, "what it means"], body,
                                                          caption="The minima") + "</div>")
        else:
            body = [[name] + [_rounded(k, r.get(k)) for k in keys] for name, r in minima.items()]
            section.html('<div class="overview">' + table(["minimum"] + names, body, caption="The minima") +
                         _meanings({COLUMNS[k][0]: COLUMNS[k][1] for k in keys}) + "</div>")
    barriers = barrier_rows(scanned)
    if barriers:
        keys = ["barrier"] + (["saddle_height"] if any(_number(r["saddle_height"]) is not None for r in barriers) else [])
        body = [[r["path"], r["between"]] + [_rounded(k, r[k]) for k in keys] for r in barriers]
        heads = ["path", "between"] + [k.replace("_", " ") for k in keys]
        section.html('<div class="overview">' + table(heads, body, caption="Barriers between minima") +
                     _meanings({k.replace("_", " "): BARRIER_MEANINGS[k] for k in keys}) + "</div>")


def _meanings(meanings: Mapping[str, str]) -> str:
    items = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in meanings.items())
    return f'<ul class="meanings">{items}</ul>'

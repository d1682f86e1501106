"""The rows, patterns, tables and figures of the ``minima-protocol`` study
(:mod:`lossatlas.studies.minima_protocol`): what its numbers say about each of Horoi et al.'s
claims, computed so that the docs can quote them.

A module of the study, not a study itself (its name starts with ``_``, so the registry skips it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plot
from ..topology import persistence_totals
from ._protocol_stages import COMPLEXES
from .minima import _embedding_grid

__all__ = ["minimum_row", "patterns", "sensitivity_rows", "sensitivity_table", "draw_figures"]

#: The measures of a retraining set that the sensitivity table puts side by side.
SENSITIVITY_COLUMNS = ("jr_lr", "return_ratio", "outward_fraction", "settled_return_ratio", "cosine_return_ratio",
                       "cosine_outward_fraction", "jump_loss_mean",
                       "retrained_loss_mean", "distance_at_jump", "distance_retrained", "distance_farthest",
                       "phate_demap")


def minimum_row(r: dict, cap: float | None = None) -> dict:
    """The summary row of one minimum: its fit and generalization, its retraining (``final_lr``,
    ``jr_lr``, ``jr_batch_size``, ``jr_epochs``), the shape of its retraining runs, its
    persistence under both filtrations (own cap and ``cap``, common to the study's minima), and
    its embeddings' scores."""
    m = r["minimum"]
    row = {**r["retraining"], "train_loss": m.final["loss"], "train_accuracy": m.final["accuracy"],
           "test_loss": m.final["test_loss"], "test_accuracy": m.final["test_accuracy"],
           "fits": bool(m.final["accuracy"] >= 0.99), **r["distances"],
           **{k: v for k, v in r["shape"].items() if k != "by_step_size"},
           "return_by_step_size": r["shape"]["by_step_size"], "jr_points": int(r["meta"].sizes["point"]),
           "embedding_scores": r["scores"], "run": str(m.run.path)}
    for cx in COMPLEXES:
        diagrams, totals = r["persistence"][cx]
        row[f"persistence_{cx}"] = dict(totals)
        if cap is not None:
            common = persistence_totals(diagrams, p=2, cap=cap)
            row[f"persistence_{cx}"].update({f"common_cap_{k}": common[k] for k in common if k.startswith("capped_")},
                                            common_cap=float(cap))
    return row


def _less(a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and a < b)


def patterns(rows: dict) -> dict:
    """The papers' claims, checked on one initialization's minima (``good``, ``bad`` and, when
    there, ``memorization``): each key a boolean or the numbers it rests on."""
    g, b = rows["good"], rows["bad"]
    best = {k: max(v["embedding_scores"], key=lambda meth: v["embedding_scores"][meth].get("DeMAP", -np.inf))
            for k, v in rows.items()}
    out = {"good_generalizes_better": _less(b["test_accuracy"], g["test_accuracy"]),
           "all_fit": all(v["fits"] for v in rows.values()),
           "good_less_outward_than_bad": _less(g["outward_fraction"], b["outward_fraction"]),
           "good_returns_closer_than_bad": _less(g["return_ratio"], b["return_ratio"]),
           "good_returns_closer_than_bad_cosine": _less(g["cosine_return_ratio"], b["cosine_return_ratio"]),
           "good_runs_return": bool(g["return_ratio"] < 1), "bad_runs_return": bool(b["return_ratio"] < 1),
           "best_demap_method": best, "phate_best_demap": {k: v == "phate" for k, v in best.items()}}
    order = [k for k in ("good", "bad", "memorization") if k in rows]
    for cx in COMPLEXES:
        for key in ("total_persistence_d0", "capped_total_persistence_d0", "common_cap_capped_total_persistence_d0",
                    "total_persistence_d1", "capped_total_persistence_d1"):
            vals = [rows[k][f"persistence_{cx}"].get(key, np.nan) for k in order]
            out[f"{cx}_{key}_ordered"] = bool(all(_less(a, c) for a, c in zip(vals, vals[1:])))
        out[f"{cx}_components"] = {k: rows[k][f"persistence_{cx}"]["components"] for k in order}
    return out


def sensitivity_rows(sets: dict) -> dict:
    """``{minimum: {rate: row}}`` of the sensitivity sets, each row the columns of the table."""
    return {name: {label: {k: rec[k] for k in SENSITIVITY_COLUMNS if k in rec} | {"final_lr": rec["final_lr"]}
                   for label, rec in by_rate.items()} for name, by_rate in sets.items()}


def sensitivity_table(rows: dict) -> str:
    """The sensitivity of J&R to the retraining rate as a Markdown table (for the docs)."""
    head = ("| minimum | rate | lr | return ratio (cosine) | outward (cosine) | settled ratio | jump loss | "
            "retrained loss | distance at jump / retrained / farthest | PHATE DeMAP |")
    lines = [head, "|" + "---|" * 10]
    for name, by_rate in rows.items():
        for label, r in by_rate.items():
            lines.append(f"| {name} | {label} | {r['jr_lr']:.3g} | {r['return_ratio']:.3f} ({r['cosine_return_ratio']:.3f}) | "
                         f"{r['outward_fraction']:.2f} ({r['cosine_outward_fraction']:.2f}) | {r['settled_return_ratio']:.3f} | "
                         f"{r['jump_loss_mean']:.3g} | "
                         f"{r['retrained_loss_mean']:.3g} | {r['distance_at_jump']:.3g} / {r['distance_retrained']:.3g} / "
                         f"{r['distance_farthest']:.3g} | {r['phate_demap']:.2f} |")
    return "\n".join(lines)


def draw_figures(figures: Path, inits: dict, sets: dict, samples_of: dict, title: str) -> list[str]:
    """The study's figures: the PHATE embeddings of every minimum (by trajectory and by loss),
    the persistence diagrams of each initialization under both filtrations, and the sensitivity
    figure (one row per minimum, one column per retraining rate); returns their names."""
    names = []
    rows = [[(f"{tag}, {k}", r["phate"], r["meta"]) for k, r in res.items()] for tag, res in inits.items()]
    _embedding_grid(rows, "trajectory", figures / "phate_minima", f"PHATE (cosine) of the J&R samples: {title}")
    _embedding_grid(rows, "loss", figures / "phate_minima_loss", "the same embeddings, coloured by log loss")
    names += ["phate_minima", "phate_minima_loss"]
    for tag, res in inits.items():
        for cx in COMPLEXES:
            plot.plot_persistence_diagrams({k: r["persistence"][cx][0] for k, r in res.items()}, p=2,
                                           path=figures / f"persistence_{tag}_{cx}",
                                           title=f"persistence diagrams of the J&R samples, {tag}, {cx} filtration")
            names.append(f"persistence_{tag}_{cx}")
    if sets:
        grid = [[(f"{name}, {label} (lr {rec['jr_lr']:.3g})", rec["phate"], samples_of[(name, label)])
                 for label, rec in by_rate.items()] for name, by_rate in sets.items()]
        _embedding_grid(grid, "trajectory", figures / "phate_sensitivity",
                        "PHATE (cosine) of J&R at three retraining rates, same directions and seeds")
        _embedding_grid(grid, "loss", figures / "phate_sensitivity_loss", "the same, coloured by log loss")
        names += ["phate_sensitivity", "phate_sensitivity_loss"]
    return names

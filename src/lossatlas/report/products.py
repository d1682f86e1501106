"""What a run directory holds: its products (``NAME.zarr``) by kind, and the runs nested in it.

A product's kind is read from its structure, not only its name, so products written by studies
under other names (``surface_good``, ``embedding_grid``) land in the right section too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Product", "RunProducts", "kind_of", "nested_runs", "scan"]

#: Kinds, in the order the report shows them.
KINDS = ("trajectory", "plane", "line", "connect", "trajectory_plane", "samples", "embedding", "topology",
         "hessian", "density", "convexity", "sharpness", "other")


@dataclass
class Product:
    name: str
    kind: str
    ds: object  # the lazily opened xarray Dataset


@dataclass
class RunProducts:
    """One run directory's products, by kind, and its label in the report ('' for the top run)."""

    label: str
    run: object  # lossatlas.store.RunDir
    products: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)  # (name, error text)

    def of(self, *kinds: str) -> list:
        return [p for p in self.products if p.kind in kinds]

    def get(self, name: str):
        return next((p for p in self.products if p.name == name), None)


def kind_of(name: str, ds) -> str:
    """The kind of a stored product, from its variables and dimensions.

    Examples
    --------
    >>> import xarray as xr, numpy as np
    >>> kind_of("line", xr.Dataset({"loss": (("t",), np.zeros(3))}))
    'line'
    """
    dims, variables = set(ds.dims), set(ds.data_vars)
    if "embedding" in variables and "method" in dims:
        return "embedding"
    if {"x", "y"} <= dims and "loss" in variables:
        return "trajectory_plane" if name.startswith("trajectory_plane") else "plane"
    if {"x", "y"} <= dims and "ratio" in variables:
        return "convexity"
    if "t" in dims and "loss" in variables:
        return "connect" if name.startswith("connect") or "barrier" in ds.attrs else "line"
    if "weights" in variables and "point" in dims:
        return "trajectory" if name.startswith("trajectory") and "epoch" in ds.coords else "samples"
    if any(v[:1] == "d" and v[1:].isdigit() for v in variables):
        return "topology"
    if "eigenvalue" in variables and "k" in dims:
        return "hessian"
    if "density" in variables and "eigenvalue" in dims:
        return "density"
    if "minimum" in dims:
        return "sharpness"
    return "other"


def scan(run, label: str = "") -> RunProducts:
    """Open every product of ``run`` lazily and classify it; unreadable ones are listed, not fatal
    (a report is rebuilt while commands may still be writing)."""
    out = RunProducts(label=label, run=run)
    for path in sorted(run.path.glob("*.zarr")):
        name = path.name[: -len(".zarr")]
        try:
            ds = run.open(name, load=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable store is reported, the rest still shown
            out.unreadable.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        out.products.append(Product(name, kind_of(name, ds), ds))
    out.products.sort(key=lambda p: (KINDS.index(p.kind), p.name))
    return out


def nested_runs(root: Path) -> list[Path]:
    """Sub-directories of ``root`` that are run directories themselves (a study or the demo keeps
    one per minimum): those holding a recorded source, a summary or any product."""
    found = []
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.endswith(".zarr")):
        if sub.name in ("config", "figures") or sub.name.startswith("."):
            continue
        if (sub / "config" / "source.yaml").is_file() or (sub / "summary.json").is_file() or any(sub.glob("*.zarr")):
            found.append(sub)
    return found

"""The provenance section: versions, seeds, devices, the recorded source and every command's
settings, read from the run's configs and its products' attrs."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Iterable

import numpy as np

from .page import Section, esc, flatten, fmt, mapping_table, table

__all__ = ["provenance_section", "read_configs"]

VERSION_KEYS = ("lossatlas_version", "torch_version", "numpy_version", "python_version")


def _installed(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def read_configs(run) -> dict:
    """Every ``config/<command>.yaml`` of the run, by command (unreadable ones as their error)."""
    folder = run.path / "config"
    out = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            out[path.stem] = run.read_config(path.stem)
        except Exception as exc:  # noqa: BLE001 - a damaged config is shown as such, not fatal
            out[path.stem] = {"unreadable": f"{type(exc).__name__}: {exc}"}
    return out


def _text(value) -> str:
    return fmt(value) if not isinstance(value, (list, dict)) else str(value)


def provenance_section(section: Section, scanned: Iterable) -> None:
    """Fill ``section`` from the scanned runs (:class:`lossatlas.report.products.RunProducts`)."""
    scanned = list(scanned)
    versions: dict[str, dict[str, list[str]]] = {k: {} for k in VERSION_KEYS}
    devices: dict[str, list[str]] = {}
    seeds = []
    for item in scanned:
        where = item.label or item.run.path.name
        for p in item.products:
            for k in VERSION_KEYS:
                if k in p.ds.attrs:
                    versions[k].setdefault(str(p.ds.attrs[k]), []).append(f"{where}/{p.name}")
            if "device" in p.ds.attrs:
                devices.setdefault(str(p.ds.attrs["device"]), []).append(f"{where}/{p.name}")
            for key, value in p.ds.attrs.items():
                if "seed" in key and isinstance(value, (int, float, str, list)) and not isinstance(value, bool):
                    seeds.append((where, f"{p.name}.zarr", key, _text(value)))
        for command, cfg in read_configs(item.run).items():
            for key, value in flatten(cfg).items():
                last = key.rsplit(".", 1)[-1]
                if "seed" in last and not isinstance(value, dict):
                    seeds.append((where, command, key, _text(value)))
                if last == "device" and value is not None and command != "source":
                    devices.setdefault(str(value), []).append(f"{where}/config/{command}")
    rows = []
    for k in VERSION_KEYS:
        pkg = k[: -len("_version")]
        recorded = versions[k]
        now = platform.python_version() if pkg == "python" else (np.__version__ if pkg == "numpy" else _installed(pkg))
        shown = "; ".join(f"{v} ({len(w)} product{'s' if len(w) > 1 else ''})" for v, w in recorded.items()) or "not recorded"
        rows.append((pkg, shown, now))
    section.html(table(("package", "recorded by the products", "building this report"), rows,
                       caption="versions"))
    if any(len(v) > 1 for v in versions.values()):
        section.text("Products were made with different versions; compare them with care.", cls="warn")
    if devices:
        section.html(table(("device", "recorded by"), [(d, ", ".join(w[:8]) + (" ..." if len(w) > 8 else ""))
                                                      for d, w in devices.items()], caption="devices"))
    if seeds:
        section.html(table(("run", "config or product", "setting", "seed"), seeds, caption="seeds"))
    for item in scanned:
        where = item.label or item.run.path.name
        if item.run.has_source():
            try:
                section.html(mapping_table(item.run.read_source(), caption=f"recorded source of {where} (config/source.yaml)"))
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                section.text(f"the source of {where} cannot be read: {exc}", cls="warn")
        configs = {k: v for k, v in read_configs(item.run).items() if k != "source"}
        for command, cfg in configs.items():
            section.html(f"<details><summary>{esc(where)}: settings of <code>{esc(command)}</code></summary>"
                         f"{mapping_table(cfg)}</details>")
        if item.products:
            rows = [(p.name, p.kind, ", ".join(f"{d}={n}" for d, n in p.ds.sizes.items()),
                     ", ".join(map(str, p.ds.data_vars)), str(p.ds.attrs.get("created", "")))
                    for p in item.products]
            section.html(table(("product", "kind", "sizes", "variables", "created"), rows,
                               caption=f"products of {where}"))
        for name, error in item.unreadable:
            section.text(f"{where}/{name}.zarr could not be opened: {error}", cls="warn")

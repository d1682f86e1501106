"""The run directory: one study's config, datasets (zarr through xarray), figures and summary.

It knows nothing of models: it stores xarray Datasets, records which cells of a grid are done
(an explicit boolean mask, never a sentinel value), and writes so that a crash never leaves a
half-written cell marked done: values land first, the done flag after them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import yaml

from ._errors import InputError, require

DONE = "done"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, time and host facts to put in every dataset's attrs (JSON-safe values)."""
    out = {
        "lossatlas_version": _version("lossatlas"),
        "torch_version": _version("torch"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out.update(extra)
    return json_safe(out)


def json_safe(value):
    """Turn NumPy scalars, tuples, paths and enums into plain JSON types (for attrs and YAML)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):
        return value.value  # enums
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """A run directory holding one study.

    Layout: ``config.yaml`` (written before work starts), one ``NAME.zarr`` per product,
    ``figures/``, ``report.html`` and ``summary.json``.

    Examples
    --------
    >>> run = RunDir("runs/demo")
    >>> run.write_config({"model": "mlp", "steps": 31})
    >>> run.save("surface", ds)
    >>> run.open("surface").loss
    """

    def __init__(self, path, create: bool = True):
        self.path = Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the run directory {self.path}: {exc}") from exc
        else:
            require(self.path.is_dir(), f"no run directory at {self.path}; run a command with --out {self.path} first")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def figures(self) -> Path:
        p = self.path / "figures"
        p.mkdir(exist_ok=True)
        return p

    # -- config and summary ----------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any], name: str = "config.yaml") -> Path:
        path = self.path / name
        _atomic_write_text(path, yaml.safe_dump(json_safe(dict(config)), sort_keys=False))
        return path

    def read_config(self, name: str = "config.yaml") -> dict:
        path = self.path / name
        require(path.is_file(), f"{path} does not exist")
        with open(path) as fh:
            data = yaml.safe_load(fh)
        require(isinstance(data, dict), f"{path} does not hold a mapping of settings")
        return data

    def update_summary(self, **entries: Any) -> Path:
        """Merge ``entries`` into ``summary.json`` (written atomically)."""
        path = self.path / "summary.json"
        current = json.loads(path.read_text()) if path.is_file() else {}
        current.update(json_safe(entries))
        _atomic_write_text(path, json.dumps(current, indent=2, allow_nan=True))
        return path

    def summary(self) -> dict:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # -- datasets -------------------------------------------------------------------------
    def zarr_path(self, name: str) -> Path:
        return self.path / f"{name}.zarr"

    def exists(self, name: str) -> bool:
        return self.zarr_path(name).exists()

    def save(self, name: str, ds: xr.Dataset, encoding: dict | None = None) -> Path:
        """Write a whole dataset (replacing any earlier one)."""
        path = self.zarr_path(name)
        ds = for_zarr(ds)
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=False)
        return path

    def open(self, name: str, load: bool = True) -> xr.Dataset:
        """Open a stored dataset; ``load=False`` keeps it lazy (dask-backed, chunked)."""
        path = self.zarr_path(name)
        require(path.exists(), f"{path} does not exist; compute it first")
        ds = xr.open_zarr(path, consolidated=False)
        return ds.load() if load else ds

    # -- resumable grids ------------------------------------------------------------------
    def create_grid(self, name: str, template: xr.Dataset, chunks: Mapping[str, int], encoding=None) -> None:
        """Lay out an empty grid on disk: every data variable NaN, ``done`` all False.

        Only coordinates and attrs are written now; cells are filled by :meth:`write_cells`.
        """
        ds = for_zarr(template)
        ds = ds.chunk({d: chunks.get(d, n) for d, n in ds.sizes.items()})
        ds.to_zarr(self.zarr_path(name), mode="w", compute=False, encoding=encoding, consolidated=False)
        # The done mask is written now (all False); unwritten value chunks read back as NaN.
        if DONE in ds:
            region = {d: slice(None) for d in ds[DONE].dims}
            ds[[DONE]].drop_vars(list(ds.coords), errors="ignore").to_zarr(self.zarr_path(name), region=region, consolidated=False)

    def write_cells(self, name: str, values: Mapping[str, np.ndarray], region: tuple[slice, ...]) -> None:
        """Write the cells of ``region`` and then mark them done.

        ``values`` maps variable names to arrays of the region's shape; the done flags are set
        only after every value is on disk, so a crash leaves no cell marked done half-written.
        """
        import zarr

        group = zarr.open_group(str(self.zarr_path(name)), mode="r+")
        for key, value in values.items():
            group[key][region] = value
        group[DONE][region] = True

    def done_mask(self, name: str) -> np.ndarray:
        return xr.open_zarr(self.zarr_path(name), consolidated=False)[DONE].values.astype(bool)


def for_zarr(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` as every writer of a zarr store here writes it: attrs made JSON-safe, strings made
    variable-length."""
    return _variable_length_strings(_clean_attrs(ds))


def _variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width NumPy strings (``<U5``) as Python-object strings, which zarr stores as
    variable-length UTF-8: a data type with a zarr v3 specification, unlike fixed-width UTF-32,
    which zarr warns may become unreadable."""
    fixed = [k for k, v in ds.variables.items() if v.dtype.kind == "U"]
    if not fixed:
        return ds
    return ds.assign({k: ds[k].astype(object) for k in fixed if k in ds.data_vars}).assign_coords(
        {k: ds[k].astype(object) for k in fixed if k in ds.coords}
    )


def _clean_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Attrs as JSON-safe values; nested mappings as JSON text (zarr attrs must be JSON)."""
    ds = ds.copy()

    def clean(attrs):
        out = {}
        for k, v in attrs.items():
            v = json_safe(v)
            out[k] = json.dumps(v) if isinstance(v, dict) else v
        return out

    ds.attrs = clean(ds.attrs)
    for v in ds.variables.values():
        v.attrs = clean(v.attrs)
    return ds


def read_attr(ds: xr.Dataset, key: str, default=None):
    """An attr stored by this module, decoding JSON text back into a mapping."""
    value = ds.attrs.get(key, default)
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_checkpoint(path) -> dict:
    """A state dict from a checkpoint file, loaded with ``weights_only=True`` (no code runs).

    Accepts a bare state dict or a dict holding one under ``"state_dict"`` or ``"model"``.
    """
    import torch

    path = Path(path)
    require(path.is_file(), f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user to fix
        raise InputError(
            f"cannot load {path} with torch.load(weights_only=True): {exc}. Save plain tensors "
            "(torch.save(model.state_dict(), path)); pickled modules are refused for safety"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        if all(hasattr(v, "shape") for v in obj.values()):
            return dict(obj)
    raise InputError(f"{path} holds no state dict (a mapping of parameter names to tensors)")


def write_checkpoint(path, state_dict: Mapping, **extra: Any) -> Path:
    """Save ``{"state_dict": ..., **extra}`` atomically (extra values must be plain types)."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": dict(state_dict), **json_safe(extra)}, tmp)
    os.replace(tmp, path)
    return path

"""The run directory: one study's configs, datasets (zarr through xarray), figures and summary.

It knows nothing of models: it stores xarray Datasets with consolidated metadata, records which
cells of a grid are done (an explicit boolean mask, never a sentinel value), and writes so that a
crash never leaves a half-written cell marked done: values land first, the done flag after them.
Products record the settings that made them (``attrs["settings"]``) and a request with other
settings is refused (:meth:`RunDir.check`).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import yaml

from .._errors import InputError, require
from .files import atomic_torch_save, atomic_write_text, json_safe
from .settings import SETTINGS, differences, mismatch

DONE = "done"
SOURCE = "source"


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


# zarr notes on every consolidated write that consolidated metadata is not yet part of the v3
# specification; xarray and zarr both read and write it, and the note is not about the data. The
# filter is set once, narrowly, at import: `warnings.catch_warnings` around each write would not be
# thread-safe (training and J&R write from executor threads).
warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")


def _consolidate(path: Path) -> None:
    import zarr

    zarr.consolidate_metadata(str(path))


class RunDir:
    """A run directory holding one study.

    Layout: ``config/<command>.yaml`` (each command's settings, written before its work starts;
    no command overwrites another's), ``config/source.yaml`` (the model and data the run was made
    from), one ``NAME.zarr`` per product, ``figures/``, ``report.html`` and ``summary.json``.

    Examples
    --------
    >>> run = RunDir("runs/demo")
    >>> run.write_config("surface", {"steps": 31})
    >>> run.save("surface", ds)
    >>> run.open("surface").loss
    """

    # An object with ``remember(path)``, told before each config file is written (the command
    # line's journal, which undoes a refused command's writes); None: nobody is told.
    journal = None

    def __init__(self, path, create: bool = True):
        self.path = Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the run directory {self.path}: {exc}") from exc
        else:
            require(self.path.is_dir(), f"no run directory at {self.path}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def figures(self) -> Path:
        p = self.path / "figures"
        p.mkdir(exist_ok=True)
        return p

    # -- configs, source and summary --------------------------------------------------------
    def config_path(self, command: str) -> Path:
        require(command.replace("_", "").replace("-", "").isalnum(), f"not a command name: {command!r}")
        return self.path / "config" / f"{command}.yaml"

    def write_config(self, command: str, settings: Mapping[str, Any]) -> Path:
        """Write ``config/<command>.yaml`` (atomically); other commands' configs are untouched."""
        path = self.config_path(command)
        if self.journal is not None:
            self.journal.remember(path)
        atomic_write_text(path, yaml.safe_dump(json_safe(dict(settings)), sort_keys=False))
        return path

    def has_config(self, command: str) -> bool:
        return self.config_path(command).is_file()

    def read_config(self, command: str) -> dict:
        path = self.config_path(command)
        require(path.is_file(), f"{path} does not exist")
        with open(path) as fh:
            data = yaml.safe_load(fh)
        require(isinstance(data, dict), f"{path} does not hold a mapping of settings")
        return data

    def write_source(self, source: Mapping[str, Any]) -> Path:
        """Record where the run's model and data come from (plain values only)."""
        return self.write_config(SOURCE, source)

    def has_source(self) -> bool:
        return self.has_config(SOURCE)

    def read_source(self) -> dict:
        return self.read_config(SOURCE)

    def update_summary(self, **entries: Any) -> Path:
        """Merge ``entries`` into ``summary.json`` (written atomically)."""
        path = self.path / "summary.json"
        current = self.summary()
        current.update(json_safe(entries))
        return atomic_write_text(path, json.dumps(current, indent=2, allow_nan=True))

    def summary(self) -> dict:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # -- datasets -------------------------------------------------------------------------
    def zarr_path(self, name: str) -> Path:
        return self.path / f"{name}.zarr"

    def exists(self, name: str) -> bool:
        return self.zarr_path(name).exists()

    def remove(self, name: str) -> None:
        """Delete the product ``name`` (its zarr store, and a scratch folder ``NAME`` if any)."""
        for p in (self.zarr_path(name), self.path / name):
            p = p.resolve()
            require(self.path.resolve() in p.parents, f"{p} is outside the run directory {self.path}")
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists() and p.suffix == ".zarr":
                p.unlink()

    def save(self, name: str, ds: xr.Dataset, encoding: dict | None = None) -> Path:
        """Write a whole dataset (replacing any earlier one), with consolidated metadata."""
        path = self.zarr_path(name)
        for_zarr(ds).to_zarr(path, mode="w", encoding=encoding, consolidated=True)
        return path

    def compact(self, name: str) -> Path:
        """Rewrite a finished grid with one chunk per variable (a grid written cell by cell holds a
        file per cell and variable: a 108-network sweep, 2,400 files). The copy is written beside
        the store and swapped in by two renames; a crash between them is undone by the next call.
        """
        path, old, tmp = self.zarr_path(name), self.path / f"{name}.zarr.old", self.path / f"{name}.zarr.new"
        if not path.exists() and old.exists():  # interrupted between the renames: the old copy is whole
            old.rename(path)
        ds = self.open(name, load=True).drop_encoding()
        if tmp.exists():
            shutil.rmtree(tmp)
        for_zarr(ds).to_zarr(tmp, mode="w", consolidated=True)
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
        return path

    def append(self, name: str, ds: xr.Dataset, dim: str = "point", encoding: dict | None = None) -> None:
        """Append ``ds`` along ``dim`` (creating the store on the first call); attrs are rewritten
        with every append, since an append without them would erase them."""
        path = self.zarr_path(name)
        if not path.exists():
            for_zarr(ds).to_zarr(path, mode="w", encoding=encoding, consolidated=True)
        else:
            for_zarr(ds).to_zarr(path, append_dim=dim, consolidated=True)

    def add_variables(self, name: str, ds: xr.Dataset) -> None:
        """Add the data variables of ``ds`` (new to the stored ``name``, each as long as the store
        along its dims) to it: a stream that meets a new metric after its first write. The
        store's attrs and coordinates are kept."""
        new = for_zarr(ds.drop_vars(list(ds.coords)))
        new.attrs = {}
        new.to_zarr(self.zarr_path(name), mode="a", consolidated=True)

    def truncate(self, name: str, n: int, dim: str = "point") -> None:
        """Drop entries beyond ``n`` along ``dim`` (written after the last resume checkpoint)."""
        import zarr

        group = zarr.open_group(str(self.zarr_path(name)), mode="r+")
        for key in group.array_keys():
            arr = group[key]
            dims = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS") or ()
            if dims and dims[0] == dim and arr.shape[0] > n:
                arr.resize((n,) + tuple(arr.shape[1:]))
        _consolidate(self.zarr_path(name))

    def open(self, name: str, load: bool = True) -> xr.Dataset:
        """Open a stored dataset; ``load=False`` keeps it lazy (dask-backed, chunked)."""
        path = self.zarr_path(name)
        require(path.exists(), f"{path} does not exist; compute it first")
        ds = xr.open_zarr(path, consolidated=True)
        return ds.load() if load else ds

    def update_attrs(self, name: str, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into a stored dataset's attrs (JSON-safe, nested mappings as JSON text)."""
        import zarr

        group = zarr.open_group(str(self.zarr_path(name)), mode="r+")
        group.attrs.update(_clean(attrs))
        _consolidate(self.zarr_path(name))

    def write_variable(self, name: str, var: str, value: np.ndarray, region: tuple[slice, ...] | None = None) -> None:
        """Write ``value`` into the existing variable ``var`` of a stored dataset (or a region of it)."""
        import zarr

        group = zarr.open_group(str(self.zarr_path(name)), mode="r+")
        group[var][region if region is not None else ...] = value

    # -- recorded settings ----------------------------------------------------------------
    def differs(self, name: str, settings: Mapping[str, Any], partial: bool = False) -> list:
        """How the settings recorded with the stored ``name`` differ from ``settings``: a list of
        ``(setting, stored, asked)`` (empty when they agree). ``partial=True`` compares only the
        keys of ``settings``, for a product that records more than its caller chooses (a path
        between minima records its optimizer's defaults too). ``name`` must exist.
        """
        stored = read_attr(self.open(name, load=False), SETTINGS, None)
        stored = stored if isinstance(stored, Mapping) else {}
        if partial:
            stored = {k: stored[k] for k in settings if k in stored}
        return differences(stored, settings)

    def check(self, name: str, settings: Mapping[str, Any], replace: bool = False, partial: bool = False) -> bool:
        """Whether ``name`` is stored with exactly ``settings`` (so it may be resumed or reused).

        Returns False when nothing is stored. A product stored with other settings raises
        :class:`~lossatlas.StoreMismatchError` naming each differing setting, or with
        ``replace=True`` is deleted (and False returned) so that it is computed afresh.
        ``partial`` as in :meth:`differs`.
        """
        if not self.exists(name):
            return False
        diffs = self.differs(name, settings, partial)
        if not diffs:
            return True
        if replace:
            self.remove(name)
            return False
        raise mismatch(self.zarr_path(name), diffs)

    # -- resumable grids ------------------------------------------------------------------
    def create_grid(self, name: str, template: xr.Dataset, chunks: Mapping[str, int], encoding=None) -> None:
        """Lay out an empty grid on disk: every data variable NaN, ``done`` all False.

        Only coordinates and attrs are written now; cells are filled by :meth:`write_cells`.
        """
        ds = for_zarr(template)
        ds = ds.chunk({d: chunks.get(d, n) for d, n in ds.sizes.items()})
        path = self.zarr_path(name)
        ds.to_zarr(path, mode="w", compute=False, encoding=encoding, consolidated=True)
        # The done mask is written now (all False); unwritten value chunks read back as NaN.
        if DONE in ds:
            region = {d: slice(None) for d in ds[DONE].dims}
            ds[[DONE]].drop_vars(list(ds.coords), errors="ignore").to_zarr(path, region=region, consolidated=False)

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
        return self.open(name, load=False)[DONE].values.astype(bool)

    # -- resume states (training) ---------------------------------------------------------
    def state_path(self, name: str) -> Path:
        return self.path / f"{name}.state.pt"

    def save_state(self, name: str, state: Mapping[str, Any]) -> Path:
        """Save a resume state (tensors and plain values), atomically."""
        return atomic_torch_save(self.state_path(name), dict(state))

    def load_state(self, name: str) -> dict | None:
        """A resume state saved by :meth:`save_state` (``weights_only=True``), or None."""
        import torch

        path = self.state_path(name)
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def remove_state(self, name: str) -> None:
        self.state_path(name).unlink(missing_ok=True)


def _clean(attrs: Mapping[str, Any]) -> dict:
    """Attrs as JSON-safe values; nested mappings as JSON text (zarr attrs must be JSON)."""
    out = {}
    for k, v in attrs.items():
        v = json_safe(v)
        out[k] = json.dumps(v) if isinstance(v, dict) else v
    return out


def for_zarr(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` as every writer of a zarr store here writes it: attrs made JSON-safe, strings made
    variable-length."""
    ds = ds.copy()
    ds.attrs = _clean(ds.attrs)
    for v in ds.variables.values():
        v.attrs = _clean(v.attrs)
    return _variable_length_strings(ds)


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


def read_attr(ds: xr.Dataset, key: str, default=None):
    """An attr stored by this module, decoding JSON text back into a mapping."""
    value = ds.attrs.get(key, default)
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value

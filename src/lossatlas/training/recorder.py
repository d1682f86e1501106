"""The trajectory recorder: snapshots of weights and metrics, kept in memory or streamed to a run
directory's ``NAME.zarr`` as training goes (through :class:`~lossatlas.store.RunDir` only)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._errors import require
from ..store import RunDir

COORDS = ("epoch", "step", "lr", "run", "seed")


class Recorder:
    """Collects snapshots (dims ``point`` and ``param``) in memory, or appends them to a store.

    Parameters
    ----------
    run : RunDir or None
        Stream to ``run/NAME.zarr``; None keeps the rows in memory.
    name : str
    attrs : dict
        The dataset's attrs, written with every append (an append without them would drop them).
    n_params : int
    chunk : int
        Points per chunk of ``weights`` (the models snapshotted together).
    extra : dict of arrays, optional
        Per-model coordinates (``run_coords``), indexed by a snapshot's ``run`` coordinate.
    count : int
        Points already stored (a resumed run).

    Examples
    --------
    >>> rec = Recorder(None, "trajectory", {}, n_params=3, chunk=1)
    >>> rec.add(np.zeros((1, 3)), {"loss": np.ones(1)}, {"epoch": np.zeros(1), "run": np.zeros(1, int)})
    >>> rec.dataset().sizes["point"]
    1
    """

    def __init__(self, run: RunDir | None, name: str, attrs: dict, n_params: int, chunk: int, extra=None, count: int = 0):
        self.run, self.name, self.attrs, self.chunk = run, name, attrs, chunk
        self.extra = extra or {}
        self.rows: list[dict] = []
        self.n_params = n_params
        self.count = count

    def add(self, weights: np.ndarray, values: dict[str, np.ndarray], coords: dict[str, np.ndarray]) -> None:
        """Record ``weights`` [k, n_params] with their metrics and coordinates (each of length k)."""
        k = weights.shape[0]
        coords = dict(coords)
        index = coords["run"]  # position in the list of models trained together
        for key, per_run in self.extra.items():
            coords[key] = per_run[index]
        if self.run is None:
            self.rows.append({"weights": weights, **values, **coords})
        else:
            data = {"weights": (("point", "param"), weights.astype(np.float32))}
            data.update({n: (("point",), v) for n, v in values.items()})
            ds = xr.Dataset(data, coords={n: (("point",), v) for n, v in coords.items()}, attrs=self.attrs)
            encoding = {"weights": {"chunks": (self.chunk, min(self.n_params, 2**22))}}
            self.run.append(self.name, ds, dim="point", encoding=encoding)
        self.count += k

    def stored(self) -> int:
        """Points in the store now (0 when there is none)."""
        if self.run is None or not self.run.exists(self.name):
            return 0
        return int(self.run.open(self.name, load=False).sizes["point"])

    def truncate(self, n: int) -> None:
        """Drop the points beyond ``n`` (written after the last resume checkpoint)."""
        have = self.stored()
        require(have >= n, f"{self.run.zarr_path(self.name)} holds {have} points but its resume checkpoint "
                           f"counts {n}; pass replace=True to train afresh")
        if have > n:
            self.run.truncate(self.name, n, dim="point")
        self.count = n

    def dataset(self) -> xr.Dataset:
        """The trajectory: lazy from the store, or built from the rows in memory."""
        if self.run is not None:
            return self.run.open(self.name, load=False)
        keys = self.rows[0].keys()
        cat = {k: np.concatenate([r[k] for r in self.rows]) for k in keys}
        coords = {k: (("point",), cat.pop(k)) for k in (*COORDS, *self.extra) if k in cat}
        data = {"weights": (("point", "param"), cat.pop("weights"))}
        data.update({k: (("point",), v) for k, v in cat.items()})
        return xr.Dataset(data, coords=coords, attrs=self.attrs)

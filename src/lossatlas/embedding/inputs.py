"""Every accepted form of weight samples, adapted once at the edge to rows read block by block.

``samples`` is any of

- a NumPy array (or a torch tensor) ``[n_points, n_params]``;
- an ``xarray.Dataset`` with a variable ``weights`` of dims ``("point", "param")`` (possibly
  dask/zarr backed and chunked along ``point``), or such an ``xarray.DataArray``;
- the path of a zarr store holding such a Dataset, read without dask and, where the stored values
  need no decoding by xarray, straight into the caller's buffer.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from lossatlas._errors import InputError, require

__all__ = ["SampleSummary", "Source", "as_source", "check_finite", "column_blocks"]

# Size of one block of a lazy array read at once when the store gives no chunking.
DEFAULT_CHUNK_BYTES = 256 * 2**20


class SampleSummary:
    """What a set of samples was reduced to (a :class:`~lossatlas.embedding.gram.Gram` matrix), not
    the samples: steps that need the weights themselves refuse it. Defined here, beneath
    :mod:`.gram`, so that :func:`as_source` recognizes one without importing the module built on it."""

    __slots__ = ()


class Source:
    """Rows of a ``[point, param]`` weight matrix, in memory or read block by block.

    Attributes
    ----------
    n, p : int
        Points and parameters.
    lazy : bool
        Whether rows are read on demand (from a store) rather than held in memory.
    chunk : int
        Points read at once from a lazy array.
    coords : dict
        The samples' coordinates along ``point`` (name -> values).

    Examples
    --------
    >>> src = as_source(np.ones((4, 3)))
    >>> src.n, src.p, src.lazy
    (4, 3, False)
    """

    def __init__(self, array: Any, *, lazy: bool, coords: dict[str, np.ndarray], chunk: int, reader=None):
        self.array = array
        self.lazy = lazy
        self.reader = reader  # reader(start, stop, out): decode rows straight into ``out``
        self.coords = coords
        self.n, self.p = (int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunk = max(1, min(int(chunk), max(self.n, 1)))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as an array (a view for arrays in memory)."""
        if not self.lazy:
            return self.array[start:stop]
        return np.asarray(self.array[start:stop].values)

    def block(self, start: int, stop: int, check: bool, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop``; a lazy array is read chunk by chunk into ``out`` (no second copy).

        With ``check``, rows holding NaN or inf raise an InputError that names them.
        """
        if not self.lazy:
            rows = self.array[start:stop]
            if check:
                check_finite(rows, start, self.n)
            return rows
        if out is None:
            out = np.empty((stop - start, self.p), dtype=self.dtype)
        for a in range(start, stop, self.chunk):
            b = min(stop, a + self.chunk)
            if self.reader is not None:
                self.reader(a, b, out[a - start : b - start])
            else:
                out[a - start : b - start] = self.rows(a, b)
        if check:
            check_finite(out, start, self.n)
        return out


def check_finite(rows: np.ndarray, offset: int, n: int) -> None:
    """Raise an InputError naming the points (``offset`` + row) of ``rows`` that hold NaN or inf.

    Examples
    --------
    >>> check_finite(np.zeros((3, 2)), 0, 3)
    """
    # A NaN or inf makes its row's sum non-finite; summing avoids a boolean copy of the block.
    bad = ~np.isfinite(rows.sum(axis=1, dtype=np.float64))
    if bad.any():
        where = (np.flatnonzero(bad) + offset).tolist()
        shown = ", ".join(map(str, where[:20])) + (" ..." if len(where) > 20 else "")
        stop = offset + len(rows)
        scope = "" if (offset == 0 and stop >= n) else (
            f" (checked points {offset}-{stop - 1} of {n} so far; later ones may hold more)"
        )
        raise InputError(
            f"samples contain NaN or inf in {len(where)} point(s): {shown}{scope}. Drop them first, "
            "e.g. samples.isel(point=good) or X[good], or fix the run that produced them."
        )


def column_blocks(p: int, rows: int, block_bytes: int, min_width: int = 1) -> list[slice]:
    """Slices of ``p`` columns such that ``rows`` x width float64 values take about ``block_bytes``.

    Examples
    --------
    >>> column_blocks(10, 2, 64)
    [slice(0, 4, None), slice(4, 8, None), slice(8, 10, None)]
    """
    width = max(1, min(p, max(min_width, block_bytes // (8 * max(rows, 1)))))
    return [slice(c, min(p, c + width)) for c in range(0, p, width)]


def _point_coords(obj: Any) -> dict[str, np.ndarray]:
    out = {}
    for name, coord in obj.coords.items():
        if coord.dims == ("point",):
            out[str(name)] = np.asarray(coord.values)
    return out


def as_source(samples: Any, chunk: int | None = None) -> Source:
    """Adapt every accepted form of ``samples`` (see the module docstring) to a :class:`Source`.

    Parameters
    ----------
    samples : array, tensor, xarray.Dataset / DataArray, or path of a zarr store
    chunk : int, optional
        Points read at once from a lazy store (default: the store's chunk along ``point``).

    Examples
    --------
    >>> as_source(np.zeros((5, 2))).n
    5
    """
    if isinstance(samples, SampleSummary):
        raise InputError("this step needs the weights themselves, not a Gram matrix; pass the samples")
    if isinstance(samples, (str, os.PathLike)):
        import xarray as xr

        path = os.fspath(samples)
        require(os.path.exists(path), f"no zarr store at {path!r}; pass an existing store, a Dataset or an array")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr 3 warns about consolidated metadata
            # Without dask: reading one chunk then costs decoding it and little else (measured
            # 0.56 s per 160 MB chunk, against 0.87 s through a dask graph).
            samples = xr.open_zarr(path, chunks=None)
        source = as_source(samples, chunk)
        source.reader = _zarr_reader(path, samples)
        return source
    mod = type(samples).__module__
    if mod.startswith("xarray"):
        import xarray as xr

        if isinstance(samples, xr.Dataset):
            require(
                "weights" in samples.data_vars,
                f"the Dataset has no variable 'weights' (it has {sorted(map(str, samples.data_vars))}); "
                "embeddings need the sampled weights, dims ('point', 'param')",
            )
            samples = samples["weights"]
        require(
            isinstance(samples, xr.DataArray) and set(samples.dims) == {"point", "param"},
            f"weights must have dims ('point', 'param'), got {getattr(samples, 'dims', None)}; "
            "rename them, e.g. da.rename({'sample': 'point'})",
        )
        da = samples.transpose("point", "param")
        require(da.dtype.kind in "fiu", f"weights must be real numbers, got dtype {da.dtype}")
        coords = _point_coords(da)
        if isinstance(getattr(da.variable, "_data", None), np.ndarray):  # already in memory
            return Source(da.values, lazy=False, coords=coords, chunk=da.shape[0] or 1)
        if chunk is None:
            if da.chunks is not None:
                chunk = int(da.chunks[0][0])
            else:
                pref = da.encoding.get("preferred_chunks", {}).get("point")
                chunk = int(pref) if pref else _default_chunk(da.shape[1], da.dtype)
        return Source(da, lazy=True, coords=coords, chunk=chunk)
    if mod.startswith("torch"):
        samples = samples.detach().cpu().numpy()
    X = np.asarray(samples)
    require(X.ndim == 2, f"samples must be a 2-D array [n_points, n_params], got shape {X.shape}")
    require(X.dtype.kind in "fiu", f"samples must be real numbers, got dtype {X.dtype}")
    return Source(X, lazy=False, coords={}, chunk=X.shape[0] or 1)


def _zarr_reader(path: str, ds: Any):
    """Decode rows of the store's ``weights`` straight into a caller's buffer, or None (used
    only when xarray would return the stored values unchanged: no scale or offset encoding)."""
    from ..store.readers import zarr_row_reader

    da = ds["weights"]
    enc = da.encoding
    if da.dims != ("point", "param") or "scale_factor" in enc or "add_offset" in enc:
        return None
    return zarr_row_reader(path, "weights", da.dtype, da.shape)


def _default_chunk(p: int, dtype: Any) -> int:
    return max(1, DEFAULT_CHUNK_BYTES // max(1, p * np.dtype(dtype).itemsize))

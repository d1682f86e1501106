"""A user's data factory ``package.module:factory``, returning a DataLoader or arrays.

The factory is imported like ``python -m`` would (packages in the working directory import) and
called with ``factory_args``. Whatever it returns is read once into tensors and then goes through
the same options as built-in data (split, subsets, normalization, label noise, augmentation).
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch

from .._errors import InputError, require
from ..importer import import_object  # the one importer of user factories (the cwd importable)
from .container import Data, RawData
from .prepare import check_options
from .tensors import prepare_user_data, raw_from_arrays, user_data_options

__all__ = ["load_factory", "read_loader"]

_RETURNS = (
    "a DataLoader, a pair (train_loader, test_loader), (X, y), (X, y, X_test, y_test) or a dict "
    "{'X', 'y'[, 'X_test', 'y_test']} of tensors or NumPy arrays"
)


def read_loader(loader: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a DataLoader as two tensors ``(X, y)``, read once, in the dataset's order.

    The loader's own sampler is not used: a shuffling sampler without a generator would draw from
    torch's global generator, and the order does not matter for a data set read whole. A
    ``TensorDataset`` of two tensors is taken as it is, without a copy.

    Raises
    ------
    InputError
        For batches that are not ``(inputs, targets)`` pairs of tensors.

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> X, y = read_loader(DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4), "ex")
    >>> X.shape
    torch.Size([10, 3])
    """
    from torch.utils.data import DataLoader, TensorDataset

    dataset = loader.dataset
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    sequential = DataLoader(
        dataset,
        batch_size=loader.batch_size or 256,
        shuffle=False,
        collate_fn=loader.collate_fn,
        num_workers=0,
        # Iterating a DataLoader draws a base seed from its generator, the global one when None.
        generator=torch.Generator(),
    )
    xs, ys = [], []
    for batch in sequential:
        if isinstance(batch, Mapping):
            raise InputError(
                f"{where} yields dict batches (keys {sorted(map(str, batch))}); a data set needs "
                "(inputs, targets) batches. For models called with dicts (e.g. Hugging Face), pass the "
                "DataLoader to Landscape directly"
            )
        require(isinstance(batch, (tuple, list)) and len(batch) >= 2
                and all(isinstance(b, torch.Tensor) for b in batch[:2]),
                f"{where} yields batches of type {type(batch).__name__}; expected (inputs, targets) tensors")
        xs.append(batch[0])
        ys.append(batch[1])
    require(len(xs) > 0, f"{where} yields no batches")
    return torch.cat(xs), torch.cat(ys)


def _raw_from_result(result: Any, spec: str) -> RawData:
    from torch.utils.data import DataLoader

    where = f"the data factory {spec}"
    if isinstance(result, DataLoader):
        return raw_from_arrays(*read_loader(result, where), where=where, source=spec)
    if isinstance(result, Mapping):
        require("X" in result and "y" in result, f"{where} returned a dict without 'X' and 'y'; return {_RETURNS}")
        return raw_from_arrays(result["X"], result["y"], result.get("X_test"), result.get("y_test"), where=where,
                               source=spec)
    if isinstance(result, (tuple, list)):
        if len(result) == 2 and all(isinstance(r, DataLoader) for r in result):
            x, y = read_loader(result[0], f"{where} (train loader)")
            x_test, y_test = read_loader(result[1], f"{where} (test loader)")
            return raw_from_arrays(x, y, x_test, y_test, where=where, source=spec)
        if len(result) in (2, 4):
            return raw_from_arrays(*result, where=where, source=spec)
    raise InputError(f"{where} returned {type(result).__name__}; it must return {_RETURNS}")


def load_factory(
    spec: str,
    *,
    factory_args: Mapping | None = None,
    **options: Any,
) -> Data:
    """The data of a user's factory ``package.module:factory``, with the options of built-in data.

    Parameters
    ----------
    spec : str
        ``package.module:factory``; the working directory is importable, as under ``python -m``.
    factory_args : dict, optional
        Keyword arguments of the factory (plain values, so that a run can record them).
    **options
        ``seed``, ``test_fraction``, ``normalize``, ``normalization``, ``augment``,
        ``random_labels``, ``subset``, ``test_subset``, ``dtype``: as in
        :func:`~lossatlas.data.load_tensors`, with its defaults (one signature for both).

    Returns
    -------
    Data
        ``Data.name`` is ``spec``. The factory may return a DataLoader (read once, in the dataset's
        order; random transforms inside the dataset are frozen at that read, so give ``augment=``
        instead), ``(train_loader, test_loader)``, ``(X, y)``, ``(X, y, X_test, y_test)`` or a dict
        like a ``.pt`` file.

    Raises
    ------
    InputError
        For a spec that does not import, a factory that refuses its arguments or returns
        something else, and bad options (checked before the factory runs).

    Examples
    --------
    >>> data = load_factory("mypkg.data:make", factory_args={"n": 1000}, subset=500)   # doctest: +SKIP
    """
    options = user_data_options(**options)
    check_options(**options, dtype_optional=True)
    require(isinstance(spec, str) and ":" in spec,
            f"a data factory is given as package.module:factory, got {spec!r}")
    require(factory_args is None or isinstance(factory_args, Mapping),
            f"factory_args must be a dict of keyword arguments, got {type(factory_args).__name__}")

    factory = import_object(spec, "data factory")
    kwargs = dict(factory_args or {})
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none; then the call itself decides
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise InputError(f"the data factory {spec} does not take the arguments {kwargs}: {exc}") from None
    # An error inside the factory is the user's own and keeps its traceback.
    result = factory(**kwargs)
    raw = _raw_from_result(result, spec)
    return prepare_user_data(raw, name=spec, record={"loader": "load_factory", "spec": spec, "factory_args": kwargs},
                             **options)

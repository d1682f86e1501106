"""Evaluation data as a fixed list of batches on the evaluation device.

A batch is a small tree of tensors: an ``(inputs, targets)`` pair, a dict such as the
``{"input_ids", "attention_mask", "labels"}`` batches of a Hugging Face DataLoader, or any nesting
of tuples, lists and dicts. Trees are handled with torch's own pytree utilities
(``torch.utils._pytree``); mapping types it does not know (``UserDict``, Hugging Face's
``BatchEncoding``) are turned into plain dicts first. Every point of a landscape sees exactly the
same batches, so the data is fixed once, at construction.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch.utils import _pytree as pytree

from .._errors import InputError, positive_int, require

# Keys under which a dict batch holds its targets, in the order they are looked for.
TARGET_KEYS = ("labels", "targets", "target", "y")


def _foreign_mapping(x) -> bool:
    return isinstance(x, Mapping) and not isinstance(x, dict)


def plain(tree):
    """``tree`` with every mapping that pytree does not know turned into a dict (recursively)."""
    while any(_foreign_mapping(x) for x in pytree.tree_leaves(tree, is_leaf=_foreign_mapping)):
        tree = pytree.tree_map(lambda x: dict(x) if _foreign_mapping(x) else x, tree, is_leaf=_foreign_mapping)
    return tree


def tensors(tree) -> list[torch.Tensor]:
    """The tensors of a batch tree, in pytree order."""
    return [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def map_tensors(fn, tree):
    """``tree`` with ``fn`` applied to each tensor (other leaves kept as they are)."""
    return pytree.tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x, tree)


def batch_len(tree) -> int:
    """Number of samples in a batch: the leading size of its first tensor."""
    leaves = tensors(tree)
    require(bool(leaves), "a data batch holds no tensors")
    return int(leaves[0].shape[0]) if leaves[0].dim() else 1


def concat(batches: list):
    """One batch from batches of the same structure (tensors concatenated, other leaves from the first)."""
    flat = [pytree.tree_flatten(b) for b in batches]
    spec = flat[0][1]
    require(all(s == spec for _, s in flat),
            "the data's batches differ in structure (keys or nesting); give batches of one form")
    columns = zip(*(leaves for leaves, _ in flat))
    return pytree.tree_unflatten([torch.cat(c) if isinstance(c[0], torch.Tensor) else c[0] for c in columns], spec)


def model_output(out):
    """A model's output as the tensor the loss takes: the tensor itself, or the ``logits`` of a
    Hugging Face ``ModelOutput`` (or of a dict)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else out


def default_forward(model, batch):
    """The model's output on one batch.

    ``model(inputs)`` for ``(inputs, targets)`` batches; for dict batches ``model(**batch["inputs"])``
    (or ``model(batch["inputs"])``) when there is an ``"inputs"`` entry, else the model called with
    every entry but the targets as keyword arguments (as Hugging Face models take their batches).

    Examples
    --------
    >>> default_forward(model, (X, y)) is not None
    True
    """
    if isinstance(batch, Mapping):
        if "inputs" in batch:
            inputs = batch["inputs"]
            return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
        return model(**{k: v for k, v in batch.items() if k not in TARGET_KEYS})
    return model(batch[0])


def default_target(batch):
    """``targets`` of ``(inputs, targets)`` batches; ``labels``/``targets``/``y`` of dict batches.

    Examples
    --------
    >>> default_target({"input_ids": ids, "labels": labels}) is labels
    True
    """
    if isinstance(batch, Mapping):
        for key in TARGET_KEYS:
            if key in batch:
                return batch[key]
        raise InputError(
            f"dict batches need a 'labels' (or 'targets', 'y') entry, or pass target=lambda batch: ... "
            f"(keys seen: {sorted(batch)})"
        )
    return batch[1]


def _whole(data, what: str):
    """All of ``data`` as one batch tree."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        X, y = data
        require(X.shape[0] == y.shape[0], f"{what}: inputs and targets differ in length: {X.shape[0]} vs {y.shape[0]}")
        return (X, y)
    if isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, bytes, Mapping)):
        batches = [plain(b) for b in data]
        require(bool(batches), f"{what}: the data loader yielded no batches: the dataset is empty")
        return concat(batches)
    raise InputError(
        f"{what} must be an (inputs, targets) pair of tensors or an iterable of batches such as a "
        f"DataLoader or a list of dicts, got {type(data).__name__}"
    )


def as_batches(data, batch_size: int | None, samples: int | None, seed: int, device, *,
               what: str = "the data", samples_name: str = "samples", fold_single: bool = False) -> list:
    """Fix the evaluation data as a list of batches on ``device`` (every point sees the same ones).

    Parameters
    ----------
    data : (X, y) tensors, or an iterable of batches (a DataLoader, a list of dicts)
    batch_size : int, optional
        Samples per batch; None puts all of them in one batch.
    samples : int, optional
        Keep a seeded random subset of this many samples (in their original order).
    seed : int
        Seed of the subset (a private generator; the global one is untouched).
    device : torch.device
    what, samples_name : str
        How error messages name the data and the subset option (e.g. ``"the test data"``,
        ``"test_samples"``).
    fold_single : bool
        Merge a last batch of one sample into the batch before it (batch statistics of one
        sample are undefined).

    Examples
    --------
    >>> [b[0].shape[0] for b in as_batches((X, y), 32, None, 0, "cpu")]  # 70 samples
    [32, 32, 6]
    """
    full = _whole(data, what)
    n = batch_len(full)
    require(n > 0, f"{what}: the dataset is empty: give at least one sample")
    if samples is not None:
        samples = positive_int(samples_name, samples)
        require(samples <= n, f"{samples_name}={samples} but {what} has only {n} samples; "
                              f"pass {samples_name}=None to use all of it")
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(n, generator=gen)[:samples].sort().values
        full = map_tensors(lambda t: t[idx.to(t.device)], full)
        n = samples
    bs = n if batch_size is None else positive_int("batch_size", batch_size)
    starts = list(range(0, n, bs))
    ends = starts[1:] + [n]
    if fold_single and len(starts) > 1 and ends[-1] - starts[-1] == 1:
        starts.pop()
        ends.pop(-2)
    return [map_tensors(lambda t: t[a:b].to(device), full) for a, b in zip(starts, ends)]

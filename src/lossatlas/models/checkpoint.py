"""Loading a checkpoint into a model: the file's keys matched to the model's, naming every key
that does not match.

The file formats are :func:`lossatlas.store.read_checkpoint`'s job; this module reads the keys
the way a training setup may have saved them: as they are, without the wrappers' prefixes
(``module.`` of DataParallel and DDP, ``_orig_mod.`` of ``torch.compile``, in any combination),
and without a prefix that every key shares (a Lightning module's attribute, ``model.`` or
``net.``). Of these readings, the one that matches the model's own keys is used, so a model
whose keys all start with the same submodule is never stripped by mistake.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from .._errors import InputError

#: The leading key components that model wrappers add: DataParallel/DDP and torch.compile.
WRAPPERS = ("module", "_orig_mod")

# How many readings to try at most (each step shortens keys, so few are ever possible).
_MAX_READINGS = 8


def _without_wrappers(key: str) -> str:
    parts = key.split(".")
    while len(parts) > 1 and parts[0] in WRAPPERS:
        parts = parts[1:]
    # A compiled submodule leaves `_orig_mod` inside the path too (`encoder._orig_mod.fc.weight`).
    return ".".join(p for p in parts if p != "_orig_mod") if len(parts) > 1 else parts[0]


def _shared_prefix(keys: Iterable[str]) -> str | None:
    """The first key component, when every key has it and has more after it."""
    heads = {k.split(".", 1)[0] if "." in k else None for k in keys}
    return heads.pop() if len(heads) == 1 and None not in heads else None


def key_readings(keys: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Ways to read checkpoint ``keys``: ``(description, {new key: stored key})``, as stored first.

    Each further reading removes the wrappers' prefixes or the prefix shared by every key from an
    earlier one; readings that would merge two keys into one are left out.

    Examples
    --------
    >>> [list(names) for _, names in key_readings(["module.fc.weight", "module.fc.bias"])][:2]
    [['module.fc.weight', 'module.fc.bias'], ['fc.weight', 'fc.bias']]
    """
    start = {k: k for k in keys}
    readings = [("as stored", start)]
    seen = {frozenset(start)}
    i = 0
    while i < len(readings) and len(readings) < _MAX_READINGS:
        description, names = readings[i]
        i += 1
        prefix = _shared_prefix(names)
        steps = [("wrapper prefixes ('module.', '_orig_mod.') removed", _without_wrappers)]
        if prefix is not None:
            steps.append((f"the prefix {prefix + '.'!r} removed", lambda k, n=len(prefix) + 1: k[n:]))
        for what, rename in steps:
            renamed = {rename(new): old for new, old in names.items()}
            if len(renamed) < len(names) or frozenset(renamed) in seen:
                continue  # merges keys, or nothing new
            seen.add(frozenset(renamed))
            done = "" if description == "as stored" else description.removeprefix("with ") + ", then "
            readings.append((f"with {done}{what}", renamed))
    return readings


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Load a checkpoint file into ``model`` in place, naming any keys that do not match.

    The file is read by :func:`lossatlas.store.read_checkpoint` (``torch.load(weights_only=True)``
    or a ``.safetensors`` file; the state dict bare or nested under ``state_dict``, ``model``,
    ``model_state_dict`` or ``net``). Its keys are matched to the model's as stored, or without
    the prefixes of DataParallel/DDP (``module.``), ``torch.compile`` (``_orig_mod.``) or a
    Lightning module (a prefix shared by all keys): whichever reading matches the model's keys.
    Nothing is loaded unless every key and shape matches.

    Parameters
    ----------
    model : torch.nn.Module
        Loaded in place, on its own device and dtype.
    path : str or Path

    Returns
    -------
    torch.nn.Module
        ``model``.

    Raises
    ------
    InputError
        If the file cannot be read, or no reading of its keys matches the model: the message
        names the missing, unexpected and differently shaped keys.

    Examples
    --------
    >>> model = build("resnet20", (3, 32, 32), 10)
    >>> load_checkpoint(model, "resnet20.pt")
    """
    from ..store import read_checkpoint

    state = read_checkpoint(path)
    expected = model.state_dict()
    wanted = set(expected)

    def rank(item):
        order, (_, names) = item
        keys = set(names)
        return (keys == wanted, len(keys & wanted), -len(keys - wanted), -order)

    _, (how, names) = max(enumerate(key_readings(state)), key=rank)
    state = {new: state[old] for new, old in names.items()}
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & wanted
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {missing[:20]}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:20]}")
        if shapes:
            parts.append(f"different shapes: {shapes[:20]}")
        read = "" if how == "as stored" else f" (checkpoint keys read {how})"
        raise InputError(
            f"the checkpoint {path} does not match the model{read}: {'; '.join(parts)}. Check that "
            "the model factory builds the architecture the checkpoint was saved from"
        )
    model.load_state_dict(state)
    return model

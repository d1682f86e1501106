"""The one home of file-level utilities: content hashing, atomic writes and JSON-safe values.

Every other module hashes with :func:`fingerprint`, writes files through :func:`atomic_write`
(or one of its wrappers) and turns settings into plain types with :func:`json_safe`, so that a
store's recorded settings compare equal exactly when the values that made them do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: NumPy scalars and arrays, tensors, tuples, paths and enums
    become numbers, lists and strings (for attrs, YAML and JSON alike).

    Examples
    --------
    >>> json_safe({"a": (1, 2), "b": np.float32(0.5)})
    {'a': [1, 2], 'b': 0.5}
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v) for v in items]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "torch" and hasattr(value, "tolist"):  # a tensor, without importing torch
        return json_safe(value.detach().cpu().tolist())
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):
        return value.value  # enums
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _update(h, part: Any) -> None:
    """Feed one value to the hash, tagged with its kind, shape and dtype so that no two different
    values (a float32 and a float64 zero, [1, 2] and (1, 2)'s JSON twin aside) collide."""
    if type(part).__module__ == "torch" and hasattr(part, "detach"):
        import torch

        t = part.detach().cpu().contiguous()
        h.update(f"tensor|{tuple(t.shape)}|{t.dtype}|".encode())
        # A byte view hashes every dtype (bfloat16 and float16 included) without going through NumPy floats.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(part, np.ndarray):
        a = np.ascontiguousarray(part)
        h.update(f"ndarray|{a.shape}|{a.dtype.str}|".encode())
        h.update(repr(a.tolist()).encode() if a.dtype.kind == "O" else a.tobytes())
    elif isinstance(part, Mapping):
        h.update(f"map|{len(part)}|".encode())
        for k in sorted(part, key=str):
            h.update(f"{k}=".encode())
            _update(h, part[k])
    elif isinstance(part, (list, tuple)):
        h.update(f"seq|{len(part)}|".encode())
        for p in part:
            _update(h, p)
    else:
        h.update(f"value|{json.dumps(json_safe(part), sort_keys=True)}|".encode())


def fingerprint(*parts: Any) -> str:
    """A short sha256 (16 hex characters) over the exact contents of ``parts``.

    Tensors (any dtype and device) and arrays are hashed by shape, dtype and bytes; mappings and
    sequences recursively; anything else by its JSON-safe form. This is the project's only hasher.

    Examples
    --------
    >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3))
    True
    >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3, np.float32))
    False
    """
    h = hashlib.sha256()
    for p in parts:
        _update(h, p)
    return h.hexdigest()[:16]


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and rename it over ``path`` once the block ends.

    A reader sees either the old file or the complete new one, never a half-written file; on an
    error the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_write("out.json", "w") as fh:
    ...     fh.write("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_torch_save(path, obj: Any) -> Path:
    """``torch.save(obj, path)``, atomically."""
    import torch

    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def atomic_save_npz(path, **arrays: np.ndarray) -> Path:
    """``np.savez(path, **arrays)``, atomically."""
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def torch_load_failure(path, exc: BaseException, advice: str) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed, instead of torch's
    many-line text: NumPy arrays (which a weights-only load refuses) get the fix in one line.

    Examples
    --------
    >>> torch_load_failure("d.pt", Exception("Unsupported global: numpy._core..."), "")[:40]
    'd.pt holds NumPy arrays, which torch.loa'
    """
    text = str(exc)
    if "numpy" in text.lower():
        return (f"{path} holds NumPy arrays, which torch.load(weights_only=True) refuses for safety: save tensors "
                "instead (torch.save({'X': torch.as_tensor(X), 'y': torch.as_tensor(y)}, path))")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"cannot load {path} with torch.load(weights_only=True): {first[:200]}. {advice}"

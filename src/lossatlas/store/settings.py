"""Recorded settings of a stored product, and the refusal of a request with other settings.

Every sampler that writes a store records, in the product's ``attrs["settings"]``, every setting
that changes its values (centre and data fingerprints, direction seeds and rules, coordinates,
batch-norm mode, evaluation subset, training settings and seeds). A later request is compared
key by key; any difference raises :class:`StoreMismatchError` naming each key with both values.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .._errors import StoreMismatchError
from .files import json_safe

SETTINGS = "settings"
_MISSING = "(not recorded)"


def normalized(settings: Mapping[str, Any]) -> dict:
    """``settings`` as they read back from a store (JSON round trip: tuples become lists)."""
    return json.loads(json.dumps(json_safe(dict(settings)), sort_keys=True, allow_nan=True))


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of ``a.b.c`` keys (lists are kept as values)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def differences(stored: Mapping | None, requested: Mapping) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, requested value)`` for every setting that differs (nested keys dotted)."""
    a = flatten(normalized(stored or {}))
    b = flatten(normalized(requested))
    return [(k, a.get(k, _MISSING), b.get(k, _MISSING)) for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)]


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


# Settings recorded as fingerprints (hashes), said in words: what differs, not two hashes.
_WORDS = (
    ("center", "the centre's weights (another checkpoint, run or model)"),
    ("theta_a", "the first end's weights"), ("theta_b", "the second end's weights"),
    ("start", "the start's weights"), ("end", "the end's weights"),
    ("init", "the initial weights (another init seed or checkpoint)"),
    ("buffers", "the model's buffers (batch-norm statistics)"),
    ("direction", "the directions"), ("data", "the data (another data set, split, subset, --batch-size or file content)"),
    ("landscape", "the evaluated data, its batches or the loss"), ("checkpoint", "the checkpoint file's content"), ("labels", "the labels"), ("features", "the features"),
)


def said(key: str, old: Any, new: Any) -> str:
    """One difference in words: ``seed: 0 stored, 3 asked``; a fingerprint says what it pins.

    Examples
    --------
    >>> said("center_fingerprint", "3f1c0a9be2d4", "77aa01c9e0b2")
    'the centre's weights (another checkpoint, run or model) differ from the stored ones'
    """
    leaf = key.rsplit(".", 1)[-1]
    if "fingerprint" in leaf or "sha256" in leaf or leaf in ("theta_a", "theta_b", "landscape", "init"):
        what = next((w for stem, w in _WORDS if leaf.startswith(stem)), None)
        if what is not None and _MISSING not in (old, new):
            return f"{what} differ from the stored ones"
    return f"{key}: {_short(old)} stored, {_short(new)} asked"


def mismatch(path, diffs: list[tuple[str, Any, Any]]) -> StoreMismatchError:
    """The error for a store at ``path`` whose recorded settings differ by ``diffs``."""
    lines = "; ".join(dict.fromkeys(said(k, old, new) for k, old, new in diffs[:12]))
    more = f" (and {len(diffs) - 12} more)" if len(diffs) > 12 else ""
    err = StoreMismatchError(
        f"{path} holds results computed with other settings ({lines}{more}). Pass replace=True to "
        "delete it and compute afresh, or write to another store or name"
    )
    err.path, err.diffs = str(path), diffs
    return err

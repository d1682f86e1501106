"""Typed configs from plain mappings (YAML files, recorded run configs, command-line flags).

One function, :func:`from_mapping`, builds a dataclass from a mapping: unknown keys are refused
with the known ones listed, and a value of the wrong type is refused naming the field, its type
and the value, before any work starts (``lr: '0.1'`` in a YAML file is an error, not a traceback).
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from typing import Any, Mapping

from ._errors import InputError


def _accepts(tp: Any, value: Any) -> bool:
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return any(_accepts(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return not args or all(_accepts(args[0], v) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_mapping(cls, mapping: Mapping[str, Any], where: str = "settings", ignore: tuple[str, ...] = ()):
    """``cls(**mapping)`` for a dataclass ``cls``, checking every key and value first.

    Parameters
    ----------
    cls : dataclass type
    mapping : mapping of field name to value
    where : str
        Named in errors ("config.yaml", "the run's source", ...).
    ignore : names
        Keys that belong to someone else and are skipped here.

    Examples
    --------
    >>> from_mapping(TrainConfig, {"lr": "0.1"}, "train.yaml")
    Traceback (most recent call last):
    InputError: train.yaml: lr must be float, got '0.1' (str)
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - fields - set(ignore))
    if unknown:
        raise InputError(f"{where}: unknown settings {unknown}; known: {sorted(fields)}")
    values = {}
    for k, v in mapping.items():
        if k not in fields:
            continue
        tp = hints.get(k, Any)
        if not _accepts(tp, v):
            raise InputError(f"{where}: {k} must be {_type_name(tp)}, got {v!r} ({type(v).__name__})")
        if isinstance(v, numbers.Integral) and not isinstance(v, bool) and float in typing.get_args(tp) + (tp,):
            v = float(v) if tp is float else v
        values[k] = v
    return cls(**values)

"""The one importer of user code named as ``package.module:name`` (model and data factories), with
the working directory importable as under ``python -m``.

Ground floor: :mod:`lossatlas.sources` and :mod:`lossatlas.data` both import user factories through
it, so neither needs the other for this.

Examples
--------
>>> import_object("collections:OrderedDict", "factory").__name__
'OrderedDict'
"""

from __future__ import annotations

import importlib
import os
import sys

from ._errors import InputError, require

__all__ = ["import_object", "user_path"]


def user_path(code_dir: str | None = None) -> None:
    """Make the working directory importable (as ``python -m`` does), once, and ``code_dir`` too:
    the directory a run was made in, so that a run's factories import from any working directory."""
    for where in (os.getcwd(), code_dir):
        if where and where not in sys.path:
            sys.path.insert(0, where)


def import_object(spec: str, what: str = "factory"):
    """The object named by ``package.module:attr`` (the working directory is importable).

    Parameters
    ----------
    spec : str
        ``package.module:name`` (``name`` may be dotted: ``module:Class.method``).
    what : str
        What the object is, for the error messages (e.g. ``"model factory"``).

    Examples
    --------
    >>> import_object("math:sqrt", "function")(4.0)
    2.0
    """
    module_name, sep, attr = spec.partition(":")
    require(bool(sep) and module_name and attr, f"a {what} is given as package.module:name, got {spec!r}")
    user_path()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import the {what} {spec!r}: {exc}. Check the module path and that its "
                         "package is installed or in the working directory") from exc
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise InputError(f"{module_name} has no {attr!r}; the {what} {spec!r} must name a callable in it") from None
    require(callable(obj), f"the {what} {spec!r} is not callable")
    return obj

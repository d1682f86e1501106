"""The help every command prints: a flag (``--replace``, ``--help``, ``--tf32``) is shown without
a value type, as it takes none.

Typer 0.29 and later print a type for every option, ``--replace <bool>`` for a flag too, which
reads as if the flag took a value. The one place that chooses the type shown is
``TyperOption.display_type_rich``; it is wrapped here, once, to show nothing for flags and
counters, leaving every other option as typer prints it.
"""

from __future__ import annotations


def flags_take_no_value() -> None:
    """Make help show no value type for flags (idempotent; a typer without the hook is left alone)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - an older or newer typer without the class
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_lossatlas_flags", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._lossatlas_flags = True
    TyperOption.display_type_rich = display_type_rich

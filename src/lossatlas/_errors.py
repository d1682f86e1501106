"""The one exception type for bad input, so callers and the CLI can catch it in one place."""


class InputError(ValueError):
    """Raised before any expensive work when an input cannot be used; the message says how to fix it."""


class StoreMismatchError(InputError):
    """A run directory already holds a product of the same name computed with other settings."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)


def missing_extra(package: str, extra: str) -> InputError:
    """The error for an optional dependency that is not installed."""
    return InputError(
        f"this feature needs the optional package {package!r}; install it with "
        f"`pip install 'lossatlas[{extra}]'` (or `pip install {package}`)"
    )

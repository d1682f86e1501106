"""Errors for bad input and the checks that raise them (one enum parser, one integer check), so
callers and the CLI catch bad input in one place."""


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


def parse_enum(cls, value, what: str, hint: str = ""):
    """``value`` as a member of the string enum ``cls`` (a member, its value or its name, in any
    case), or an :class:`InputError` that lists the choices. The one enum parser of the project.

    Examples
    --------
    >>> parse_enum(Norm, "Filter", "norm")
    <Norm.FILTER: 'filter'>
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        for member in cls:
            if key in (str(member.value).lower(), member.name.lower()):
                return member
    raise InputError(f"unknown {what} {value!r}; choose one of {[m.value for m in cls]}{hint}")


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (bools and floats refused), or an
    :class:`InputError`. The one integer check of the project."""
    import numbers

    require(
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= minimum,
        f"{name} must be an integer >= {minimum}, got {value!r}",
    )
    return int(value)

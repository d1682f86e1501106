"""Checks of the arguments every built-in architecture takes, and the ``spec`` dict it records.

Each check raises :class:`~lossatlas._errors.InputError` with the accepted form, so that a bad
argument fails at construction with a message that says how to fix it.
"""

from __future__ import annotations

from typing import Any, Sequence

from .._errors import require

# What each input rank means, for the message of a shape an architecture cannot take.
_RANKS = {
    1: "(D,) for flat vectors, e.g. (784,)",
    2: "(C, L) for 1-D signals, e.g. (1, 40)",
    3: "(C, H, W) for images, e.g. (3, 32, 32)",
}


def sample_shape(input_shape: Any, arch: str, ranks: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` (one sample, no batch dimension) as a tuple of ints of a rank in ``ranks``.

    Examples
    --------
    >>> sample_shape([3, 32, 32], "resnet", (3,))
    (3, 32, 32)
    """
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = all(int(s) == s for s in input_shape)
    except (TypeError, ValueError):
        shape, ok = (), False
    require(
        ok and len(shape) > 0 and all(s >= 1 for s in shape),
        f"input_shape must be a tuple of positive ints without the batch dimension, "
        f"e.g. (3, 32, 32); got {input_shape!r}",
    )
    require(
        len(shape) in ranks,
        f"{arch} needs input_shape " + " or ".join(_RANKS[r] for r in ranks)
        + f"; got {shape} (give the shape of one sample, without the batch dimension)",
    )
    return shape


def int_sequence(values: Any, what: str, allow_empty: bool) -> tuple[int, ...]:
    """``values`` (an int or a sequence of them, each >= 1) as a tuple of ints.

    Examples
    --------
    >>> int_sequence(16, "channels", allow_empty=False)
    (16,)
    """
    if isinstance(values, int):
        values = (values,)
    try:
        out = tuple(values)
    except TypeError:
        out = (None,)
    require(
        all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out)
        and (allow_empty or len(out) > 0),
        f"{what} must be a {'possibly empty ' if allow_empty else 'non-empty '}sequence of "
        f"positive ints; got {values!r}",
    )
    return tuple(int(v) for v in out)


def make_spec(name: str, shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> dict[str, Any]:
    """The plain-typed description from which ``build(**spec)`` rebuilds an architecture.

    Examples
    --------
    >>> make_spec("mlp", (4,), 2, hidden=(8,))
    {'name': 'mlp', 'input_shape': [4], 'num_classes': 2, 'hidden': [8]}
    """
    # Lists, not tuples, so the spec survives yaml.safe_dump / json round trips unchanged.
    spec: dict[str, Any] = {"name": name, "input_shape": list(shape), "num_classes": num_classes}
    for key, value in kwargs.items():
        spec[key] = list(value) if isinstance(value, tuple) else value
    return spec


def blocks_per_stage(depth: Any, extra: int, arch: str, examples: Sequence[int]) -> int:
    """``n`` of a residual network of depth ``6n + extra`` (three stages of ``n`` two-conv blocks).

    ``extra`` is the number of layers outside the blocks' ``6n`` convolutions in the family's
    own count (2 for He et al.'s ResNets, 4 for Zagoruyko & Komodakis' Wide ResNets).

    Examples
    --------
    >>> blocks_per_stage(56, 2, "resnet", (20, 56))
    9
    """
    require(
        isinstance(depth, int) and depth >= 6 + extra and (depth - extra) % 6 == 0,
        f"{arch} depth must be 6n+{extra} with n >= 1 ({', '.join(map(str, examples))}, ...); "
        f"got {depth!r}",
    )
    return (depth - extra) // 6

"""Persistence diagrams with what their totals need, and the totals a reader can trust.

:func:`lossatlas.persistence` returns a :class:`Diagrams`: the plain ``{0: D0, 1: D1}`` dict,
carrying the number of connected components of its kNN graph and the largest filtration value.
:func:`persistence_totals` gives beside every total the number of components, the finite pairs
and the total with essential classes capped at the largest filtration value; :func:`totals_text`
says it in one line, flagging an empty diagram instead of printing 0 as a finding.

Floor 4 (analysis): NumPy only.
"""

from __future__ import annotations

import numbers
from enum import Enum
from typing import Any

import numpy as np

from ._errors import parse_enum, require

__all__ = ["Diagrams", "DisconnectedGraphWarning", "Essential", "persistence_totals", "total_persistence", "totals_text"]


class Essential(str, Enum):
    """What :func:`total_persistence` does with classes that never die."""

    DROP = "drop"
    CAP = "cap"


class DisconnectedGraphWarning(UserWarning):
    """The kNN graph of :func:`persistence` has several connected components: each one's D0 class
    is essential, so a total that drops essential classes leaves them all out (often exactly 0)."""


class Diagrams(dict):
    """``{0: D0, 1: D1}`` as :func:`persistence` returns them (a plain dict to every caller), with
    what their totals need.

    Attributes
    ----------
    components : int
        Connected components of the graph among the points that enter the filtration (finite
        values); each leaves one essential D0 class.
    max_value : float
        The largest finite filtration value: where :func:`persistence_totals` caps essential classes.
    k : int or None
        Neighbours per point of the kNN graph (None for :func:`graph_persistence` on a given graph).
    complex : str
        ``"flag"`` or ``"graph"``.
    """

    def __init__(self, diagrams, components: int, max_value: float, k: int | None = None, complex: str = "flag"):
        super().__init__(diagrams)
        self.components, self.max_value, self.k, self.complex = int(components), float(max_value), k, str(complex)

    def __reduce__(self):  # keeps the attributes through pickling (Dask workers, caches)
        return (type(self), (dict(self), self.components, self.max_value, self.k, self.complex))


def persistence_totals(diagrams: Any, p: float = 2, cap: float | None = None) -> dict:
    """Total persistence of D0 and D1 under both treatments of essential classes, with what a
    reader needs to tell an empty diagram from a flat landscape.

    Parameters
    ----------
    diagrams : :class:`Diagrams` (from :func:`persistence`) or dict {0: array, 1: array}
    p : float
        Exponent (Horoi et al.: 2).
    cap : float, optional
        Where essential classes end in the capped totals: by default ``diagrams.max_value``, the
        largest filtration value (for a plain dict, the largest finite value in the diagrams).
        Give one value for several minima to cap them all alike.

    Returns
    -------
    dict
        ``components`` (connected components of the graph; None for a plain dict), ``cap``, and
        per dimension d: ``total_persistence_d{d}`` (finite pairs only, :func:`total_persistence`
        with ``essential="drop"``), ``capped_total_persistence_d{d}`` (essential classes ended at
        ``cap``), ``finite_pairs_d{d}``, ``essential_d{d}`` (classes that never die) and
        ``empty_d{d}`` (True when no finite pair exists: the drop total is then no measurement).

    Examples
    --------
    >>> d = Diagrams({0: np.array([[0.0, 1.0], [0.2, np.inf]]), 1: np.zeros((0, 2))}, components=1, max_value=3.0)
    >>> t = persistence_totals(d, p=1)
    >>> t["total_persistence_d0"], t["capped_total_persistence_d0"], t["empty_d1"]
    (1.0, 3.8, True)
    """
    require(isinstance(diagrams, dict), "give the diagrams of persistence(), a dict {0: array, 1: array}")
    arrays = {d: np.asarray(diagrams.get(d, np.zeros((0, 2)))).astype(np.float64).reshape(-1, 2) for d in (0, 1)}
    if cap is None:
        cap = getattr(diagrams, "max_value", None)
    if cap is None:
        seen = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] + [np.zeros(0)])
        cap = float(seen.max()) if seen.size else 0.0
    out: dict = {"components": getattr(diagrams, "components", None), "cap": float(cap)}
    for d, a in arrays.items():
        finite = int(np.isfinite(a[:, 1]).sum())
        out[f"total_persistence_d{d}"] = total_persistence(a, p=p)
        out[f"capped_total_persistence_d{d}"] = total_persistence(a, p=p, essential="cap", cap=float(cap))
        out[f"finite_pairs_d{d}"] = finite
        out[f"essential_d{d}"] = int(a.shape[0] - finite)
        out[f"empty_d{d}"] = finite == 0
    return out


def totals_text(totals: dict, p: float = 2) -> str:
    """One line for :func:`persistence_totals`: each total beside its finite pairs, the components
    and the capped total; an empty diagram is said to be empty, not printed as 0.

    Examples
    --------
    >>> d = Diagrams({0: np.array([[0.2, np.inf], [0.5, np.inf]]), 1: np.zeros((0, 2))}, components=2, max_value=1.0)
    >>> totals_text(persistence_totals(d))
    'kNN graph of 2 components; D0: no finite pair (2 essential classes: the total over finite pairs is no measurement), capped at 1: 0.89; D1: no finite pair'
    """
    parts = []
    comp = totals.get("components")
    head = f"kNN graph of {comp} component{'s' if comp != 1 else ''}" if comp is not None else ""
    for d in (0, 1):
        if f"total_persistence_d{d}" not in totals:
            continue
        ess, capped = totals[f"essential_d{d}"], totals[f"capped_total_persistence_d{d}"]
        if totals[f"empty_d{d}"]:
            text = f"D{d}: no finite pair"
            if ess:
                text += (f" ({ess} essential class{'es' if ess != 1 else ''}: the total over finite pairs is no "
                         f"measurement), capped at {totals['cap']:.4g}: {capped:.4g}")
        else:
            text = (f"D{d}: {totals[f'total_persistence_d{d}']:.4g} over {totals[f'finite_pairs_d{d}']} finite "
                    f"pair{'s' if totals[f'finite_pairs_d{d}'] != 1 else ''}")
            if ess:
                text += f", capped at {totals['cap']:.4g} with {ess} essential: {capped:.4g}"
        parts.append(text)
    return "; ".join(([head] if head else []) + parts)


def total_persistence(diagram: Any, p: float = 2, essential: str | Essential = "drop",
                      cap: float | None = None) -> float:
    """Total persistence: the sum of ``(death - birth) ** p`` over the pairs of one diagram.

    Horoi et al.'s ``pers(D)`` (p = 2). Essential classes (death ``inf``) would make every D0
    infinite, so by default (``essential="drop"``) only the finite pairs count: this is the
    persistence of what the filtration merges or fills, and it is what the paper's figures can
    show. ``essential="cap"`` instead ends each essential class at ``cap``: by default the largest
    finite value in the diagram, best passed explicitly as the largest filtration value (e.g.
    ``cap=float(loss.max())``) so that diagrams of different minima are capped alike.

    Parameters
    ----------
    diagram : array [m, 2]
        (birth, death) pairs of one dimension, e.g. ``persistence(...)[0]``.
    p : float
        Exponent, > 0.
    essential : {"drop", "cap"}
    cap : float, optional
        With ``essential="cap"``: where essential classes end.

    Examples
    --------
    >>> total_persistence(np.array([[0.0, 1.0], [0.5, 2.5], [0.0, np.inf]]), p=2)
    5.0
    >>> total_persistence(np.array([[0.0, 1.0], [0.0, np.inf]]), p=1, essential="cap", cap=3.0)
    4.0
    """
    require(not isinstance(diagram, dict), "pass one dimension's diagram, e.g. total_persistence(diagrams[0])")
    how = parse_enum(Essential, essential, "essential")
    require(isinstance(p, numbers.Real) and not isinstance(p, bool) and np.isfinite(p) and p > 0,
            f"p must be a positive number, got {p!r}")
    d = np.asarray(diagram.detach().cpu() if hasattr(diagram, 'detach') else diagram).astype(np.float64)
    require(d.size == 0 or (d.ndim == 2 and d.shape[1] == 2),
            f"a diagram is an array [m, 2] of (birth, death), got shape {d.shape}")
    d = d.reshape(-1, 2)
    require(np.isfinite(d[:, 0]).all() and not np.isnan(d[:, 1]).any(),
            "births must be finite and deaths finite or inf")
    finite = np.isfinite(d[:, 1])
    deaths = d[:, 1]
    if how is Essential.DROP:
        b, e = d[finite, 0], deaths[finite]
    else:
        if cap is None:
            seen = np.concatenate([d[:, 0], deaths[finite]])
            cap = float(seen.max()) if seen.size else 0.0
        require(isinstance(cap, numbers.Real) and np.isfinite(cap), f"cap must be a finite number, got {cap!r}")
        b, e = d[:, 0], np.where(finite, deaths, float(cap))
        e = np.maximum(e, b)  # a cap below a class's birth gives it no persistence, not a negative one
    return float(np.sum(np.abs(e - b) ** float(p)))

"""The look shared by every figure: the local style, colormaps, colours, labels and the notes
that flag diverged (NaN/inf) and missing values.

Every figure function is wrapped in :func:`styled`, which applies :data:`STYLE` through
``rc_context``, so the caller's ``rcParams`` are never changed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np

from .._errors import require

__all__ = [
    "ACCURACY_COLOR", "AXIS_LABELS", "FigureOptions", "plane_axis_labels", "CMAPS", "LOSS_COLOR", "LR_DROP_COLOR", "PNG_DPI", "STYLE", "VAR_LABELS",
    "cmap_for", "count_notes", "fmt_value", "is_accuracy", "join_notes", "log10_positive", "palette",
    "plural", "require_var", "sorted_unique", "styled", "title_with_notes", "unplaced_note", "var_label",
]


#: The style applied (locally, through ``rc_context``) while building and saving every figure.
#: TrueType fonts in the PDF (fonttype 42) keep the text editable in vector editors.
STYLE: dict[str, object] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "axes.linewidth": 0.8,
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}


#: One colormap per kind of quantity, used by every figure so loss always looks the same.
CMAPS = {"loss": "viridis", "accuracy": "cividis", "epoch": "plasma", "step_size": "plasma"}

PNG_DPI = 200
LOSS_COLOR = "tab:blue"
ACCURACY_COLOR = "tab:red"
LR_DROP_COLOR = "red"

#: Axis and colorbar labels of the samplers' variables (accuracies are drawn in %).
VAR_LABELS = {
    "loss": "train loss",
    "accuracy": "train accuracy (%)",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy (%)",
}


#: The names of a plane's two axes in every figure (matplotlib and the report alike).
AXIS_LABELS = {"random": ("direction 1", "direction 2"), "pca": ("PC 1", "PC 2"),
               "hessian": ("Hessian eigenvector 1", "Hessian eigenvector 2")}


def plane_axis_labels(attrs) -> tuple[str, str]:
    """The axis names of a plane from its attrs: its own ``xlabel``/``ylabel`` when it records them,
    else by the kind of its directions ("direction 1", "PC 1", "Hessian eigenvector 1").

    Example
    -------
    >>> plane_axis_labels({"directions": "pca"})
    ('PC 1', 'PC 2')
    """
    kind = str(attrs.get("directions", "random"))
    x, y = AXIS_LABELS.get(kind, AXIS_LABELS["random"])
    return str(attrs.get("xlabel", x)), str(attrs.get("ylabel", y))


@dataclass(frozen=True)
class FigureOptions:
    """Figure settings for a paper, taken by the plane figures (contour, heatmap, 3-D surface) and
    by the side-by-side comparison.

    Parameters
    ----------
    size : (width, height) in inches, optional
        The whole figure's size (default: each figure's own).
    font_size : float, optional
        The base font size in points (titles one point larger, ticks and legends one smaller);
        default 9.
    levels : sequence of float, optional
        Contour levels in the variable's units (a fraction for accuracies), so that several figures
        share them; default: levels of each figure's own, crowded near its minimum.
    vrange : (low, high), optional
        The colour range in the variable's units, shared by several figures; default each
        figure's own finite range.

    Example
    -------
    >>> opts = FigureOptions(size=(3.3, 3.0), font_size=8, levels=(0.5, 1, 2), vrange=(0, 3))
    >>> fig = plot_contour(ds, options=opts)   # doctest: +SKIP
    """

    size: tuple[float, float] | None = None
    font_size: float | None = None
    levels: tuple[float, ...] | None = None
    vrange: tuple[float, float] | None = None

    def __post_init__(self):
        if self.size is not None:
            size = tuple(float(v) for v in self.size)
            require(len(size) == 2 and all(math.isfinite(v) and 0.5 <= v <= 50 for v in size),
                    f"the figure size must be (width, height) in inches between 0.5 and 50, got {self.size}")
            object.__setattr__(self, "size", size)
        if self.font_size is not None:
            require(math.isfinite(float(self.font_size)) and 3 <= float(self.font_size) <= 40,
                    f"the font size must be between 3 and 40 points, got {self.font_size}")
        if self.levels is not None:
            levels = tuple(sorted(float(v) for v in self.levels))
            require(len(levels) > 0 and all(math.isfinite(v) for v in levels),
                    f"the contour levels must be finite numbers, got {self.levels}")
            require(len(set(levels)) == len(levels), f"the contour levels repeat a value: {self.levels}")
            object.__setattr__(self, "levels", levels)
        if self.vrange is not None:
            lo, hi = (float(v) for v in self.vrange)
            require(math.isfinite(lo) and math.isfinite(hi) and lo < hi,
                    f"the colour range must be (low, high) with low < high, got {self.vrange}")
            object.__setattr__(self, "vrange", (lo, hi))

    def rc(self) -> dict:
        """The style overrides of these options (the font sizes)."""
        if self.font_size is None:
            return {}
        f = float(self.font_size)
        return {"font.size": f, "axes.titlesize": f + 1, "axes.labelsize": f, "xtick.labelsize": f - 1,
                "ytick.labelsize": f - 1, "legend.fontsize": f - 1}

    def figsize(self, default: tuple[float, float]) -> tuple[float, float]:
        """``size`` when given, else ``default``."""
        return self.size if self.size is not None else default

    def label_size(self) -> float:
        """The font size of contour labels."""
        return 7.0 if self.font_size is None else max(float(self.font_size) - 2, 4.0)


def styled(fn):
    """Run ``fn`` inside the local style, so nothing leaks into the caller's rcParams; a
    :class:`FigureOptions` passed as ``options=`` adds its font sizes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        options = kwargs.get("options")
        extra = options.rc() if isinstance(options, FigureOptions) else {}
        with mpl.rc_context({**STYLE, **extra}):
            return fn(*args, **kwargs)

    return wrapper


def is_accuracy(var: str) -> bool:
    """Whether ``var`` holds accuracies (fractions, drawn in %)."""
    return "acc" in var


def var_label(var: str, log: bool = False) -> str:
    """The axis label of ``var``, e.g. ``var_label("test_loss", log=True)`` -> "log$_{10}$ test loss"."""
    label = VAR_LABELS.get(var, var.replace("_", " "))
    return f"log$_{{10}}$ {label}" if log else label


def cmap_for(var: str) -> str:
    """The colormap of ``var``'s kind, so that loss looks the same in every figure."""
    return CMAPS["accuracy"] if is_accuracy(var) else CMAPS["loss"]


def plural(n: int, word: str) -> str:
    """``plural(3, "cell")`` -> "3 cells"."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def log10_positive(values: np.ndarray) -> np.ndarray:
    """log10 of finite values; zeros (an exact fit) go to the smallest positive value, not -inf."""
    out = np.array(values, dtype=float)
    finite = np.isfinite(out)
    positive = finite & (out > 0)
    floor = out[positive].min() if positive.any() else 1e-12
    out[finite] = np.log10(np.maximum(out[finite], floor))
    return out


def require_var(ds, var: str, kind: str) -> None:
    """Refuse a Dataset without ``var`` with a message listing the variables it has."""
    require(
        var in ds.data_vars,
        f"the {kind} has no variable {var!r}; it has {sorted(map(str, ds.data_vars))}",
    )


def count_notes(diverged: int = 0, missing: int = 0, what: str = "cell") -> str:
    """The note that flags non-finite and missing values, e.g. "3 cells diverged (masked); 20 cells
    not computed" ("" when there are none)."""
    parts = []
    if diverged:
        parts.append(f"{plural(diverged, what)} diverged (masked)")
    if missing:
        parts.append(f"{plural(missing, what)} not computed")
    return "; ".join(parts)


def join_notes(*notes: str) -> str:
    """The non-empty ``notes`` joined with "; "."""
    return "; ".join(n for n in notes if n)


def unplaced_note(coords, what: str = "point") -> str:
    """The note for rows of ``coords`` that hold NaN or inf and so cannot be drawn ("" for none).

    Example
    -------
    >>> unplaced_note(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    '1 point with NaN/inf coordinates (not drawn)'
    """
    arr = np.asarray(coords, dtype=float)
    bad = int((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1).sum()) if arr.size else 0
    return f"{plural(bad, what)} with NaN/inf coordinates (not drawn)" if bad else ""


def title_with_notes(title: str | None, notes: str) -> str:
    """``title`` with ``notes`` on a second line (either may be empty)."""
    if not notes:
        return title or ""
    return f"{title}\n{notes}" if title else notes


def palette(n: int):
    """``n`` distinct categorical colours (tab10, or tab20 beyond ten)."""
    base = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [base(i % base.N) for i in range(n)]


def sorted_unique(values):
    """The distinct ``values`` in sorted order, as Python scalars."""
    values = np.asarray(values)
    return list(dict.fromkeys(values[np.argsort(values, kind="stable")].tolist()))


def fmt_value(v) -> str:
    """A coordinate value for a legend: floats compactly (``0.25``), anything else as ``str``."""
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)

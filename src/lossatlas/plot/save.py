"""Writing figures: PNG (200 dpi) and vector PDF by default, in the local style, each file atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from .._errors import require
from ..store import atomic_write
from .style import PNG_DPI, styled

__all__ = ["FORMATS", "finish", "save_figure"]


FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff")


@styled
def save_figure(fig: Figure, path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` once per format next to ``path`` and return the written paths.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Target path; its suffix, if any, is replaced by each format's. Parent folders are created.
    formats : sequence of str
        File formats, by default PNG (200 dpi) and PDF (vector).

    Returns
    -------
    list of Path, in the order of ``formats``.

    Example
    -------
    >>> save_figure(fig, "figures/contour.png")   # doctest: +SKIP
    [PosixPath('figures/contour.png'), PosixPath('figures/contour.pdf')]
    """
    if isinstance(formats, str):
        formats = (formats,)
    formats = [f.lower().lstrip(".") for f in formats]
    unknown = [f for f in formats if f not in FORMATS]
    require(not unknown, f"unknown figure format(s) {unknown}; use some of {list(FORMATS)}")
    require(len(formats) > 0, "formats is empty; pass e.g. formats=('png', 'pdf')")
    stem = Path(path)
    if stem.suffix:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        # Through the store's atomic write: a reader (a report, a watcher) never sees half a figure.
        with atomic_write(target, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=PNG_DPI)
        written.append(target)
    return written


def finish(fig: Figure, path) -> Figure:
    """Save ``fig`` as PNG and PDF when ``path`` is given; return it (the end of every figure function)."""
    if path is not None:
        save_figure(fig, path)
    return fig

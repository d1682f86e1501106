"""Writing figures: PNG (200 dpi) and vector PDF by default, in the local style, each file atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from .._errors import require
from ..store import atomic_write
from .style import PNG_DPI, styled

__all__ = ["FORMATS", "FORMATS_ENV", "default_formats", "finish", "save_figure"]


FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff")


@styled
def save_figure(fig: Figure, path, formats: Sequence[str] | None = None) -> list[Path]:
    """Write ``fig`` once per format next to ``path`` and return the written paths.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Target path; its suffix, if any, is replaced by each format's. Parent folders are created.
    formats : sequence of str, optional
        File formats; by default :func:`default_formats` (PNG at 200 dpi and vector PDF, unless
        ``LOSSATLAS_FIGURE_FORMATS`` says otherwise).

    Returns
    -------
    list of Path, in the order of ``formats``.

    Example
    -------
    >>> save_figure(fig, "figures/contour.png")   # doctest: +SKIP
    [PosixPath('figures/contour.png'), PosixPath('figures/contour.pdf')]
    """
    if formats is None:
        formats = default_formats()
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


#: Environment variable naming the formats every figure function writes, e.g. ``png`` to skip
#: the PDFs (about half the time of a figure-heavy study); default ``png,pdf``.
FORMATS_ENV = "LOSSATLAS_FIGURE_FORMATS"


def default_formats() -> tuple[str, ...]:
    """The formats :func:`finish` writes: ``LOSSATLAS_FIGURE_FORMATS`` (comma-separated), else PNG and PDF."""
    raw = os.environ.get(FORMATS_ENV, "").strip()
    return tuple(f.strip() for f in raw.split(",") if f.strip()) if raw else ("png", "pdf")


def finish(fig: Figure, path) -> Figure:
    """Save ``fig`` (as :func:`default_formats`) when ``path`` is given; return it (the end of every
    figure function)."""
    if path is not None:
        save_figure(fig, path)
    return fig

"""Figure options for papers, shared by ``surface`` and ``compare``: figure size, font size, contour
levels and colour range (:class:`lossatlas.plot.FigureOptions`)."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from .._errors import InputError
from .common import floats, pair

__all__ = ["ColorRangeOpt", "FigSizeOpt", "FontSizeOpt", "LevelsOpt", "figure_options"]

FigSizeOpt = Annotated[Optional[str], typer.Option(
    "--fig-size", metavar="W,H", help="figure size in inches, width,height (default: each figure's own)")]
FontSizeOpt = Annotated[Optional[float], typer.Option(
    "--font-size", metavar="PT", help="base font size in points (default 9)")]
LevelsOpt = Annotated[Optional[str], typer.Option(
    "--levels", metavar="A,B,...", help="contour levels in the loss's units, e.g. 0.1,0.2,0.5,1 (default: crowded near the minimum)")]
ColorRangeOpt = Annotated[Optional[str], typer.Option(
    "--color-range", metavar="LOW,HIGH", help="colour range of the contours and maps, in the loss's units (default: the values' own)")]


def figure_options(fig_size: Optional[str], font_size: Optional[float], levels: Optional[str],
                   color_range: Optional[str]):
    """The :class:`~lossatlas.plot.FigureOptions` of the flags, checked (None when none is given)."""
    from ..plot.style import FigureOptions

    if fig_size is None and font_size is None and levels is None and color_range is None:
        return None
    size = None
    if fig_size is not None:
        size = floats(fig_size, "--fig-size")
        if len(size) != 2:
            raise InputError(f"--fig-size takes width,height in inches, got {fig_size!r}")
    lv = floats(levels, "--levels") if levels is not None else None
    if lv is not None and not lv:
        raise InputError("--levels takes at least one number, e.g. --levels 0.1,0.5,1")
    try:
        return FigureOptions(size=size, font_size=font_size, levels=lv, vrange=pair(color_range, "--color-range"))
    except InputError as exc:
        # The library names its settings in words; the flags are named here.
        raise InputError(f"{exc} (--fig-size, --font-size, --levels, --color-range)") from None

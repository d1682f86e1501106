"""The HTML report: one self-contained page (plotly inlined once, no network) of a run directory.

Modules: :mod:`.build` (:func:`build_report`), :mod:`.products` (what a run holds, by kind),
:mod:`.page` (escaping, the skeleton, tables), :mod:`.figures_surface`, :mod:`.figures_samples`,
:mod:`.figures_measures` (the plotly figures) and :mod:`.provenance`.

Example
-------
>>> from lossatlas.report import build_report
>>> build_report("runs/demo")   # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from .build import build_report
from .page import esc, label

__all__ = ["build_report", "esc", "label"]

"""Named small-scale reproductions of the papers' experiments (``lossatlas study NAME``).

Each study is one module of this package with a ``run(out, quick=False, device="auto",
replace=False, console=None) -> dict`` function and a one-line ``TITLE``. A study writes one run
directory (sub-runs inside where it trains several networks), its figures, ``summary.json`` and
``report.html``, and is resumable: a rerun into the same directory reuses what is stored. Its
findings, with the command that reproduces them, are recorded in ``docs/studies.md``.

Example
-------
>>> from lossatlas.studies import STUDIES, run_study
>>> sorted(STUDIES)                                   # doctest: +SKIP
>>> summary = run_study("batch", "runs/study-batch", quick=True)   # doctest: +SKIP
"""

from .registry import STUDIES, run_study, study_module

__all__ = ["STUDIES", "run_study", "study_module"]

"""Floor 6: recording the trajectory of the user's own training (a plain loop, or through the
adapters of :mod:`lossatlas.integrations`) into a run directory.

``transfer``: snapshots copied to the host without stalling training; ``sources``: the run's
recorded source; ``recorder``: :class:`Recorder`.
"""

from .recorder import Recorder
from .sources import record_source
from .transfer import CopyPlan, HostCopier, copy_plan

__all__ = ["CopyPlan", "HostCopier", "Recorder", "copy_plan", "record_source"]

"""Wall and CPU seconds of each stage of a long job (the demo, a study), with the 1-minute load
average when it ended: on a shared machine CPU seconds say what the work cost, wall seconds what
it took."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

__all__ = ["StageClock"]


class StageClock:
    """Times named stages; ``stages`` maps each name to its wall and CPU seconds.

    Examples
    --------
    >>> clock = StageClock()
    >>> with clock.stage("train"):
    ...     pass
    >>> sorted(clock.stages["train"])
    ['cpu_s', 'load_average_1min', 'wall_s']
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict] = {}
        self._start = (time.perf_counter(), time.process_time())

    @staticmethod
    def _since(wall: float, cpu: float) -> dict:
        return {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (a repeated name adds up)."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            took = self._since(wall, cpu)
            old = self.stages.get(name, {"wall_s": 0.0, "cpu_s": 0.0})
            self.stages[name] = {"wall_s": round(old["wall_s"] + took["wall_s"], 2),
                                 "cpu_s": round(old["cpu_s"] + took["cpu_s"], 2),
                                 "load_average_1min": round(os.getloadavg()[0], 2)}

    def total(self) -> dict:
        """Wall and CPU seconds since the clock started, and the load averages now."""
        return {**self._since(*self._start), "load_average_at_end": [round(v, 2) for v in os.getloadavg()]}

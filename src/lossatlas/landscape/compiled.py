"""When the loop's per-batch step runs through ``torch.compile``.

On a 2-core CPU compiling the step (forward, loss and accuracy; one static graph per batch
shape; parameters are written in place, so new points never recompile) made a small CNN's plane
15-25% faster at batches of 256, but compiling takes 5-40 s (the first time on a machine; later
compiles hit inductor's on-disk cache), about as long as a whole 31x31 plane of that CNN
evaluated eagerly. So ``"auto"`` starts eagerly and compiles once :data:`COMPILE_AFTER_SECONDS`
went into eager evaluation: lines and single small planes never pay for it, long grids and
repeated planes recover it, and at worst it adds one compile time to a job that already took that
long. If compiling fails (e.g. no C++ compiler) ``"auto"`` warns and stays eager.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Callable

import torch

# compile="auto": compile once this many seconds went into eager evaluation.
COMPILE_AFTER_SECONDS = 30.0


class CompilePolicy:
    """The single-worker loop's step: eager, compiled, or eager until compiling pays.

    Parameters
    ----------
    mode : True, False or "auto"
    step : callable(batch, y) -> tuple of sums
        The eager step; a bound method of an object that lives as long as the landscape.
    first : (batch, y)
        A batch to compile on when ``mode="auto"`` switches (a failure there keeps the eager step).
    """

    def __init__(self, mode, step: Callable, first):
        self.mode = mode
        self.active = mode is True  # whether the loop runs compiled now
        self.eager_seconds = 0.0  # time spent evaluating eagerly, for mode="auto"
        self._step, self._first = step, first
        self._compiled = None

    @property
    def timing(self) -> bool:
        """Whether eager time is being counted (``"auto"`` and not compiled yet)."""
        return self.mode == "auto" and not self.active

    def step(self) -> Callable:
        if self.timing and self.eager_seconds >= COMPILE_AFTER_SECONDS:
            self.active = True
        if not self.active:
            return self._step
        if self._compiled is None:
            kwargs = {}
            if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
                # Every Landscape compiles the same method: without this, all of them share
                # (and exhaust) one recompile limit.
                kwargs["isolate_recompiles"] = True
            # Static shapes: one graph per batch size (full batches and the last one), specialized
            # for them. Parameters are written in place, so their values never trigger recompiles.
            compiled = torch.compile(self._step, dynamic=False, **kwargs)
            if self.mode == "auto":
                try:  # compile now, on the first batch, and keep the eager loop if that fails
                    with torch.no_grad():
                        compiled(*self._first)
                except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler on the machine
                    warnings.warn(
                        f"torch.compile failed ({type(exc).__name__}: {exc}); evaluating without it "
                        "(pass compile=False to skip the attempt)",
                        RuntimeWarning,
                        stacklevel=5,
                    )
                    self.mode = self.active = False
                    return self._step
            self._compiled = compiled
        return self._compiled

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = None  # compiled graphs do not pickle; recompiled on first use
        return state

"""``Recorder``: the trajectory of the user's own training loop, streamed into a run directory.

It writes ``OUT/trajectory.zarr`` through the writer :func:`lossatlas.train` uses
(:class:`lossatlas.training.recorder.Recorder`, which appends through ``RunDir``), so every
analysis of a trained run works on a recorded one: ``weights`` (point, param) in the order of
:class:`~lossatlas.ParamSpace`, the metrics given as variables along ``point``, coordinates
``epoch``, ``step``, ``lr``, ``run`` and ``seed``.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .._errors import InputError, positive_int, require
from ..space import ParamSpace
from ..store import RunDir, fingerprint, normalized, provenance, write_checkpoint
from ..store.version import check_run_version, record_run_version
from ..training.recorder import Recorder as Writer
from .sources import record_source
from .transfer import HostCopier, copy_plan

# Host memory of the snapshots held before a write (at least one whatever the model). Each write
# (an xarray append) costs 50-100 ms on a 2-core machine whatever its size: written 32 at a time,
# the small CNN's snapshots cost 1.5 ms each, half a training step, so a small model's snapshots
# are written up to 256 at a time, within 32 MiB (bench/train.py --recorder).
_BUFFER_BYTES = 32 * 2**20
_MAX_CHUNK = 256


class _Snapshot:
    """One snapshot not yet written: its weights (maybe still on their way to the host)."""

    def __init__(self, weights, metrics: dict, epoch: float, step: int, lr: float, exact_epoch: bool):
        self.weights, self.metrics, self.epoch, self.step, self.lr = weights, metrics, epoch, step, lr
        self.exact_epoch = exact_epoch  # False: a first-epoch point whose fraction is not yet known

    def array(self) -> np.ndarray:
        return self.weights if isinstance(self.weights, np.ndarray) else self.weights.numpy()


def _scalar(name: str, value: Any) -> Any:
    """A metric as given (a tensor is read only when its snapshot is written: no sync per step)."""
    if isinstance(value, torch.Tensor):
        require(value.numel() == 1, f"metric {name!r} must be a single number, got a tensor of shape {tuple(value.shape)}")
        return value.detach()
    require(isinstance(value, numbers.Real) and not isinstance(value, bool),
            f"metric {name!r} must be a number or a one-element tensor, got {type(value).__name__}")
    return value


def _check_every(name: str, value) -> int | None:
    return None if value is None else positive_int(name, value)


class Recorder:
    """Record the trajectory of a model trained by the user's own loop.

    Call :meth:`step` after each optimizer step and :meth:`end_epoch` at the end of each epoch
    (or let :mod:`lossatlas.integrations` call them); :meth:`close` (or leaving the ``with``
    block) writes what is left, the final weights always among it, and ``OUT/model.pt``.
    Snapshots are taken before training (at construction), every ``every_steps`` optimizer
    steps and at the end of every ``every_epochs``-th epoch, as :func:`lossatlas.train` takes
    them; a step snapshot that falls on an epoch's end is that epoch's snapshot. Each snapshot
    holds the latest value given for each metric since the previous one (NaN for the others);
    a metric named ``lr`` is the ``lr`` coordinate. Snapshots are written a few at a time
    (``chunk``), so memory stays at a few snapshots however long the run.

    Restarting a script with the same ``out`` resumes: snapshots append after the last stored
    one and the counters (:attr:`steps`, :attr:`epochs`) continue from it, so the script, having
    loaded its own checkpoint, can skip what is done (``resume=False`` records afresh). A store
    of another model (parameter names and shapes) or of other ``every_steps``/``every_epochs``
    raises :class:`~lossatlas.StoreMismatchError`; ``replace=True`` deletes it and records
    afresh.

    On a GPU a snapshot is gathered on the device and copied into pinned host memory without
    blocking; the copy is waited for at the next snapshot, so training waits for at most one
    copy per snapshot.

    Parameters
    ----------
    model : nn.Module
        The module being trained (its parameters are read, never changed).
    out : path or RunDir
        The run directory; the trajectory goes to ``out/trajectory.zarr``.
    every_steps : int, optional
        Also snapshot every ``every_steps`` optimizer steps.
    every_epochs : int or None
        Snapshot at the end of every ``every_epochs``-th epoch (None: never at epoch ends).
    source : lossatlas.Source or mapping, optional
        How to rebuild the model and data (``{"model": "pkg.module:factory", "data": ...}``):
        recorded in ``out/config/source.yaml`` so that the commands (``lossatlas trajectory``,
        ``jump``) work on the run; without it the library functions (:func:`lossatlas.pca_directions`,
        :class:`lossatlas.PHATE`) still work on the store.
    name : str
        The product's name (``trajectory``).
    chunk : int, optional
        Snapshots written together (one zarr chunk along ``point``); default from the model's
        size: as many as fit in 32 MiB, from 1 to 256. A process killed without :meth:`close`
        loses the snapshots not yet written.
    resume : bool
        False: delete a trajectory stored in ``out`` and record afresh (a script rerun from the
        start rather than restarted from its checkpoint).
    replace : bool
        Delete a store recorded with other settings (or another model) and start afresh.

    Examples
    --------
    >>> rec = Recorder(model, "runs/mine", every_steps=10)
    >>> for epoch in range(3):
    ...     for x, y in loader:
    ...         opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
    ...         rec.step(loss=loss)
    ...     rec.end_epoch(test_accuracy=evaluate(model))
    >>> rec.close()
    >>> dirs, ratio = la.pca_directions(rec.trajectory, n=2)
    """

    def __init__(self, model: nn.Module, out, every_steps: int | None = None, every_epochs: int | None = 1,
                 source=None, *, name: str = "trajectory", chunk: int | None = None, resume: bool = True,
                 replace: bool = False):
        require(isinstance(model, nn.Module), f"model must be an nn.Module, got {type(model).__name__}")
        self.every_steps = _check_every("every_steps", every_steps)
        self.every_epochs = _check_every("every_epochs", every_epochs)
        require(isinstance(name, str) and bool(name), f"name must be a non-empty string, got {name!r}")
        require(isinstance(replace, bool), f"replace must be True or False, got {replace!r}")
        require(isinstance(resume, bool), f"resume must be True or False, got {resume!r}")
        require(isinstance(out, (str, Path, RunDir)), f"out must be a directory path, got {type(out).__name__}")
        self.model, self.name = model, name
        self.space = ParamSpace(model)
        per_point = 4 * self.space.size
        self.chunk = positive_int("chunk", chunk) if chunk is not None else max(1, min(_MAX_CHUNK, _BUFFER_BYTES // per_point))
        if Path(out).is_dir():
            check_run_version(out)
        self.run = out if isinstance(out, RunDir) else RunDir(out)
        record_run_version(self.run.path)
        self.settings = normalized({
            "recorder": {"every_steps": self.every_steps, "every_epochs": self.every_epochs},
            "params": fingerprint(repr([(e.name, e.shape) for e in self.space.entries])),
            "n_params": self.space.size,
        })
        self.attrs = {
            **provenance(device=str(next(model.parameters()).device)),
            "kind": "trajectory", "recorded": True, "every_steps": self.every_steps,
            "every_epochs": self.every_epochs, "param_names": list(self.space.names), "n_params": self.space.size,
            "seeds": [], "lr_drops": [], "settings": self.settings,
        }
        self.steps = 0  #: optimizer steps so far (across restarts)
        self.epochs = 0  #: epochs ended so far (across restarts)
        self._epoch_start = 0
        self._steps_per_epoch: int | None = None
        self._latest: dict[str, Any] = {}
        self._buffer: list[_Snapshot] = []
        self._last: _Snapshot | None = None  # the newest snapshot (written or not)
        self._metric_names: list[str] = []
        self._copiers: dict[tuple, HostCopier] = {}
        self._n_bad = 0  # non-finite losses given
        self._inexact: list[int] = []  # stored points whose epoch fraction awaits the first epoch's length
        self.closed = False
        if not resume:
            self.run.remove(name)
        resumed = self.run.check(name, self.settings, replace)
        if source is not None:  # after the check: a refused store leaves the run as it was
            record_source(self.run, source)
        self.run.write_config("record", {"every_steps": self.every_steps, "every_epochs": self.every_epochs,
                                         "n_params": self.space.size, "chunk": self.chunk})
        self._writer = Writer(self.run, name, self.attrs, self.space.size, chunk=self.chunk)
        if resumed:
            self._resume()
        else:
            self._snapshot()

    # -- the loop's calls -----------------------------------------------------------------
    def step(self, **metrics: Any) -> None:
        """After an optimizer step: count it, keep the metrics, snapshot every ``every_steps``.

        Metrics are numbers or one-element tensors; a tensor is read (one device sync) only
        when its snapshot is written.
        """
        self._open()
        self._keep(metrics)
        self.steps += 1
        if self.every_steps and self.steps % self.every_steps == 0:
            self._snapshot()

    def end_epoch(self, **metrics: Any) -> None:
        """At an epoch's end: keep the metrics and snapshot every ``every_epochs`` epochs."""
        self._open()
        self._keep(metrics)
        done = self.steps - self._epoch_start
        if self._steps_per_epoch is None and done > 0:
            self._steps_per_epoch = done
            self.attrs["steps_per_epoch"] = done
            self._fix_first_epoch(done)
        self.epochs += 1
        self._epoch_start = self.steps
        if not (self.every_epochs and self.epochs % self.every_epochs == 0):
            return
        last = self._last
        if last is not None and last.step == self.steps and self._buffer and self._buffer[-1] is last:
            # The step snapshot at the epoch's end is this epoch's snapshot (as in lossatlas.train).
            last.epoch, last.exact_epoch = float(self.epochs), True
            last.metrics.update(self._take_latest())
        else:
            self._snapshot()

    def log(self, **metrics: Any) -> None:
        """Metrics measured at the current step after it was counted (a validation, a logger's
        running loss): they join the snapshot of this step when one was taken, else the next one."""
        self._open()
        last = self._last
        if last is not None and last.step == self.steps and self._buffer and self._buffer[-1] is last:
            for k, v in metrics.items():
                if k == "lr":
                    last.lr = _scalar(k, v)
                else:
                    last.metrics[k] = _scalar(k, v)
        else:
            self._keep(metrics)

    def close(self) -> None:
        """Record the final weights (unless the last snapshot holds them), write every snapshot
        still held and the final weights to ``OUT/model.pt``. Closing twice does nothing."""
        if self.closed:
            return
        flat = self._flat()
        final = flat.detach().cpu().numpy()
        if self._last is None or not np.array_equal(self._last.array(), final):
            self._snapshot(flat)
        if not self._flush(keep_last=False):  # nothing left to write: the attrs alone
            self.run.update_attrs(self.name, {"n_nonfinite": self._n_bad})
        write_checkpoint(self.run.path / "model.pt", self.model.state_dict(), recorded_steps=self.steps)
        self.closed = True

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def trajectory(self):
        """The stored trajectory (lazy ``xarray.Dataset``); complete after :meth:`close`."""
        return self.run.open(self.name, load=False)

    @property
    def path(self) -> Path:
        return self.run.zarr_path(self.name)

    # -- snapshots ------------------------------------------------------------------------
    def _open(self) -> None:
        require(not self.closed, f"the recorder of {self.path} is closed; make a new one to record more")

    def _keep(self, metrics: Mapping[str, Any]) -> None:
        for k, v in metrics.items():
            self._latest[k] = _scalar(k, v)

    def _take_latest(self) -> dict:
        latest, self._latest = self._latest, {}
        return latest

    def _flat(self) -> torch.Tensor:
        params = dict(self.model.named_parameters())
        require([n for n in params] == list(self.space.names),
                "the model's parameters changed since the recorder was made; record a model of one architecture")
        with torch.no_grad():
            return torch.cat([params[n].detach().reshape(-1) for n in self.space.names])

    def _copier(self, flat: torch.Tensor) -> HostCopier:
        key = (flat.device.type, flat.dtype)
        if key not in self._copiers:
            self._copiers[key] = HostCopier(flat.numel(), flat.dtype, copy_plan(flat.device.type))
        return self._copiers[key]

    def _epoch_coord(self) -> tuple[float, bool]:
        into = self.steps - self._epoch_start
        if into == 0:
            return float(self.epochs), True
        if self._steps_per_epoch is None:
            return float(self.epochs), False
        return self.epochs + min(1.0, into / self._steps_per_epoch), True

    def _snapshot(self, flat: torch.Tensor | None = None) -> None:
        if self._last is not None and not isinstance(self._last.weights, np.ndarray):
            self._last.weights = self._last.array()  # its copy ended long ago; frees its host buffer
        flat = self._flat() if flat is None else flat
        pending = self._copier(flat).start(flat)
        metrics = self._take_latest()
        lr = metrics.pop("lr", float("nan"))
        epoch, exact = self._epoch_coord()
        self._last = _Snapshot(pending, metrics, epoch, self.steps, lr, exact)
        self._buffer.append(self._last)
        if len(self._buffer) > self.chunk:
            self._flush(keep_last=True)

    def _flush(self, keep_last: bool) -> bool:
        """Write the held snapshots (all but the newest one, which an epoch's end may still
        amend, unless ``keep_last`` is False); whether there was any."""
        rows = self._buffer[:-1] if keep_last else self._buffer
        if not rows:
            return False
        self._buffer = self._buffer[len(rows):]
        names = sorted({k for r in rows for k in r.metrics})
        new = [k for k in names if k not in self._metric_names]
        stored = self._writer.count
        if new and stored:
            import xarray as xr

            self.run.add_variables(self.name, xr.Dataset({k: (("point",), np.full(stored, np.nan)) for k in new}))
        self._metric_names += new
        values = {k: np.array([_number(r.metrics.get(k, float("nan"))) for r in rows]) for k in self._metric_names}
        if "loss" in values:
            given = np.array(["loss" in r.metrics for r in rows])
            self._n_bad += int((given & ~np.isfinite(values["loss"])).sum())
        weights = np.stack([r.array() for r in rows]).astype(np.float32, copy=False)
        coords = {
            "epoch": np.array([r.epoch for r in rows], float), "step": np.array([r.step for r in rows], np.int64),
            "lr": np.array([_number(r.lr) for r in rows], float), "run": np.zeros(len(rows), np.int64),
            "seed": np.full(len(rows), -1, np.int64),
        }
        # NaN losses are recorded, not fatal; the count (of losses given, not of the gaps) says whether to look.
        self.attrs["n_nonfinite"] = self._n_bad  # written with the rows
        self._inexact += [stored + i for i, r in enumerate(rows) if not r.exact_epoch]
        self._writer.add(weights, values, coords)
        return True

    def _fix_first_epoch(self, steps_per_epoch: int) -> None:
        """The epoch coordinate of the snapshots taken before the first epoch's length was
        known: its fraction, now that it is."""
        for r in self._buffer:
            if not r.exact_epoch:
                r.epoch = self.epochs + min(1.0, (r.step - self._epoch_start) / steps_per_epoch)
                r.exact_epoch = True
        written = self._inexact
        if written:
            stored = self.run.open(self.name, load=False)
            a, b = min(written), max(written) + 1
            epoch = np.asarray(stored.epoch.values[a:b], float)
            steps = np.asarray(stored.step.values[a:b])
            for i in written:
                epoch[i - a] = self.epochs + min(1.0, (steps[i - a] - self._epoch_start) / steps_per_epoch)
            self.run.write_variable(self.name, "epoch", epoch, region=(slice(a, b),))
            self._inexact = []

    def _resume(self) -> None:
        """Continue after the last stored snapshot: its counters, and its weights as the newest."""
        stored = self.run.open(self.name, load=False)
        n = int(stored.sizes["point"])
        self._writer.count = n
        self._metric_names = [k for k in stored.data_vars if k != "weights"]
        self._n_bad = int(stored.attrs.get("n_nonfinite", 0) or 0)
        spe = stored.attrs.get("steps_per_epoch")
        self._steps_per_epoch = int(spe) if spe else None
        if spe:
            self.attrs["steps_per_epoch"] = int(spe)
        if n == 0:
            self._snapshot()
            return
        epoch, step = float(stored.epoch.values[-1]), int(stored.step.values[-1])
        self.steps, self.epochs = step, int(math.floor(epoch))
        into = round((epoch - self.epochs) * self._steps_per_epoch) if self._steps_per_epoch else 0
        self._epoch_start = self.steps - into
        weights = np.asarray(stored.weights.isel(point=n - 1).values)
        self._last = _Snapshot(weights, {}, epoch, step, float("nan"), True)


def _number(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"a metric must be a number, got {value!r}") from None

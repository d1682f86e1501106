"""Record a Lightning run: ``Trainer(callbacks=[LossAtlasCallback("runs/mine")])``.

The callback records the ``LightningModule`` being fitted (all its parameters) through a
:class:`lossatlas.Recorder`: a snapshot before training, every ``every_steps`` optimizer steps
and every ``every_epochs`` epochs, the final weights when training ends. Under DDP only the
global rank 0 writes. Imports Lightning (``lightning.pytorch``, else ``pytorch_lightning``).
"""

from __future__ import annotations

from ._common import missing, options, scalars

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as exc:
        raise missing("lightning", "lightning") from exc


class LossAtlasCallback(Callback):
    """A Lightning callback writing ``OUT/trajectory.zarr`` (:class:`lossatlas.Recorder`).

    Parameters
    ----------
    out : path
        The run directory.
    every_steps, every_epochs, source, **recorder
        As :class:`lossatlas.Recorder` (``chunk``, ``replace``, ``name``).

    Attributes
    ----------
    recorder : lossatlas.Recorder or None
        The recorder (None before training and on ranks other than 0).

    Examples
    --------
    >>> from lossatlas.integrations.lightning import LossAtlasCallback
    >>> trainer = L.Trainer(max_epochs=5, callbacks=[LossAtlasCallback("runs/mine", every_steps=50)])
    >>> trainer.fit(module, train_loader)
    >>> la.pca_directions(la.RunDir("runs/mine").open("trajectory"), n=2)
    """

    def __init__(self, out, every_steps: int | None = None, every_epochs: int | None = 1, source=None, **recorder):
        super().__init__()
        self.options = options(out, every_steps, every_epochs, source, **recorder)
        self.recorder = None
        self._global_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from ..recording import Recorder

        self.recorder = Recorder(pl_module, **self.options)
        self._global_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.recorder is None or trainer.global_step == self._global_step:
            return  # no optimizer step in this batch (gradient accumulation)
        self._global_step = trainer.global_step
        metrics = {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and getattr(loss, "numel", lambda: 0)() == 1:
            metrics["loss"] = loss.detach()
        if trainer.optimizers:
            metrics["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.recorder.step(**metrics)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            logged = {k: v for k, v in scalars(trainer.callback_metrics).items() if k not in ("loss", "lr")}
            self.recorder.end_epoch(**logged)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.recorder is not None:  # what was recorded is kept, and the weights at the failure
            self.recorder.close()

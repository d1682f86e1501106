"""Record a Hugging Face run: ``transformers.Trainer(..., callbacks=[LossAtlasCallback("runs/mine")])``.

The callback records the model being trained (``Trainer.model``, unwrapped from DDP) through a
:class:`lossatlas.Recorder`: a snapshot before training, every ``every_steps`` optimizer steps
(``state.global_step``, after gradient accumulation) and every ``every_epochs`` epochs, the final
weights when training ends. Logged values (the running loss, evaluation metrics) join the
snapshot of the step they were logged at. Under DDP only the world's process 0 writes.
"""

from __future__ import annotations

from ._common import missing, options, scalars

try:
    from transformers import TrainerCallback
except ImportError as exc:
    raise missing("transformers", "transformers") from exc


class LossAtlasCallback(TrainerCallback):
    """A ``transformers`` callback writing ``OUT/trajectory.zarr`` (:class:`lossatlas.Recorder`).

    Parameters
    ----------
    out : path
        The run directory.
    every_steps, every_epochs, source, **recorder
        As :class:`lossatlas.Recorder` (``chunk``, ``replace``, ``name``).

    Examples
    --------
    >>> from lossatlas.integrations.huggingface import LossAtlasCallback
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds,
    ...                   callbacks=[LossAtlasCallback("runs/bert", every_steps=100)])
    >>> trainer.train()
    """

    def __init__(self, out, every_steps: int | None = None, every_epochs: int | None = 1, source=None, **recorder):
        self.options = options(out, every_steps, every_epochs, source, **recorder)
        self.recorder = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        from ..recording import Recorder

        self.recorder = Recorder(model, **self.options)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if self.recorder is None:
            return
        metrics = {"lr": float(optimizer.param_groups[0]["lr"])} if optimizer is not None else {}
        self.recorder.step(**metrics)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.recorder is not None and not self.recorder.closed and logs:
            values = scalars(logs)
            values.pop("epoch", None)  # the recorder's own coordinate
            values.pop("learning_rate", None)
            self.recorder.log(**values)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.recorder is not None:
            self.recorder.end_epoch()

    def on_train_end(self, args, state, control, **kwargs):
        if self.recorder is not None:
            self.recorder.close()

"""Floor 3: training runs with recorded trajectories, one model or an ensemble at once.

Every snapshot (each epoch, optionally every k steps) records the flat weights and the train and
test loss and accuracy into an ``xarray.Dataset`` with dims ``point`` and ``param``; with a run
directory it is streamed to ``NAME.zarr`` as training runs, next to a resume checkpoint, so a
stopped run continues from its last epoch.

``config``: optimizer and schedule enums, :class:`TrainConfig`; ``inputs``: the training data
adapter; ``randomness``: a run's own generators and its dropout stream; ``recorder``: the
trajectory writer; ``loop``: the epoch loop; ``single`` and ``ensemble``: the two trainers;
``run``: :func:`train` and :class:`Run`.
"""

from .config import Ensemble, Optimizer, Schedule, TrainConfig, make_optimizer, set_lr
from .ensemble import EnsembleTrainer
from .inputs import TrainData, as_train_data
from .randomness import RandomStream, RunGenerators, draw_mask
from .recorder import Recorder
from .run import Run, resolve_device, train, train_settings
from .single import SingleTrainer

__all__ = [
    "Ensemble", "EnsembleTrainer", "Optimizer", "RandomStream", "Recorder", "Run", "RunGenerators", "Schedule",
    "SingleTrainer", "TrainConfig", "TrainData", "as_train_data", "draw_mask", "make_optimizer", "resolve_device",
    "set_lr", "train", "train_settings",
]

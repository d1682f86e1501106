"""Paths between minima: the straight line, Garipov et al.'s Bezier curves and Draxler et al.'s
AutoNEB, each evaluated on a Landscape with its loss barrier (:func:`barrier_stats`)."""

from .barrier import barrier_stats, path_barriers

from .bezier import bezier_curve, bezier_point, garipov_schedule
from .linear import linear_path
from .methods import Method, connect
from .neb import DEFAULT_CYCLES, NEBCycle, neb_path, scaled_cycles
from .objective import FullDataLoss, PathTraining, TrainingLoss, training_loss

__all__ = [
    "DEFAULT_CYCLES",
    "FullDataLoss",
    "Method",
    "NEBCycle",
    "PathTraining",
    "TrainingLoss",
    "barrier_stats",
    "bezier_curve",
    "bezier_point",
    "connect",
    "garipov_schedule",
    "linear_path",
    "neb_path",
    "path_barriers",
    "scaled_cycles",
    "training_loss",
]

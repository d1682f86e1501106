"""Sweeps of many networks (``lossatlas sweep CONFIG``): train each from one initialization, sample
around its minimum with J&R, grid and naive sampling, keep the small results (Horoi et al. 2022,
Table 1 and Fig. 3B), and predict generalization from them (:mod:`.table`)."""

from .config import AXES, BATCH_NORM_MODELS, JumpSettings, Network, SweepConfig, model_args_for, read_sweep_config
from .driver import NAME, PROTOCOL_TITLES, RETRAINING, SAMPLERS, SCALARS, load_sweep, retraining_protocol, run_sweep
from .network import FEATURE_SETS, features_of, sample_network
from .table import (FEATURES, GROUP_AXES, PROTOCOLS, TASKS, features_table, groups_of, labels_of, predict_sweep,
                    table_text)

__all__ = [
    "AXES", "BATCH_NORM_MODELS", "FEATURES", "FEATURE_SETS", "GROUP_AXES", "JumpSettings", "NAME", "Network", "PROTOCOLS", "PROTOCOL_TITLES", "RETRAINING", "SAMPLERS",
    "SCALARS", "SweepConfig", "TASKS", "features_of", "features_table", "groups_of", "labels_of", "load_sweep", "model_args_for", "predict_sweep", "read_sweep_config",
    "retraining_protocol", "run_sweep", "sample_network", "table_text",
]

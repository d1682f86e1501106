"""Floor 2: the loss as a pure, batched function of flat parameter vectors.

``objective``: :class:`Landscape`, its options and data splits; engines ``loop`` (with
``threads``, ``compiled`` and the first-layer ``tables``) and ``vmap``; ``derivatives`` (grad,
hvp); ``batches`` (data as fixed batch trees), ``losses``, ``replicas`` (the private model
copies), ``problem`` (what every engine computes), ``devices`` (device choice, TF32) and
``allocator`` (glibc's malloc thresholds).
"""

from .allocator import tune_allocator
from .batches import as_batches, default_forward, default_target
from .devices import float32_precision, resolve_device
from .losses import LOSSES, resolve_loss
from .objective import BatchNormMode, Landscape, Strategy
from .threads import process_threads, shared_intra_op

__all__ = [
    "LOSSES", "BatchNormMode", "Landscape", "Strategy", "as_batches", "default_forward", "default_target",
    "float32_precision", "process_threads", "resolve_device", "resolve_loss", "shared_intra_op", "tune_allocator",
]

"""Floor 1: the run directory and everything that touches its files.

``files``: the one hasher, atomic writes and JSON-safe values; ``settings``: recorded settings and
the refusal of a mismatch; ``rundir``: the run directory (configs, zarr datasets, done masks,
resume states); ``checkpoints``: model state dicts on disk.
"""

from .checkpoints import read_checkpoint, write_checkpoint
from .files import atomic_save_npz, atomic_torch_save, atomic_write, atomic_write_text, fingerprint, json_safe
from .rundir import DONE, SOURCE, RunDir, for_zarr, provenance, read_attr
from .settings import SETTINGS, differences, mismatch, normalized
from .vectors import read_directions, write_directions

__all__ = [
    "DONE", "SETTINGS", "SOURCE", "RunDir", "atomic_save_npz", "atomic_torch_save", "atomic_write",
    "atomic_write_text", "differences", "fingerprint", "for_zarr", "json_safe", "mismatch", "normalized",
    "provenance", "read_attr", "read_checkpoint", "read_directions", "write_checkpoint", "write_directions",
]

"""The IDX format of MNIST and Fashion-MNIST: four files, gzipped or plain."""

from __future__ import annotations

import gzip
import io
import math
import struct
from pathlib import Path

import numpy as np

from .._errors import InputError, require
from .container import RawData

__all__ = ["FASHION_CLASSES", "IDX_STEMS", "read_idx", "read_idx_dataset"]

#: File stem of each of the four arrays, keyed ``train_x``, ``train_y``, ``test_x``, ``test_y``.
#: LeCun's names are ``<split>-<content>-idx<rank>-ubyte``, the test split being called "t10k".
IDX_STEMS = {
    f"{split}_{array}": f"{prefix}-{content}-ubyte"
    for split, prefix in (("train", "train"), ("test", "t10k"))
    for array, content in (("x", "images-idx3"), ("y", "labels-idx1"))
}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open_maybe_gzip(path: Path) -> io.BufferedIOBase:
    f = open(path, "rb")
    head = f.read(2)
    f.seek(0)
    # Sniff the content rather than trust the name: some mirrors ship gzipped files without .gz.
    return gzip.GzipFile(fileobj=f, mode="rb") if head == b"\x1f\x8b" else f


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The array in one IDX file of ``ndim`` dimensions; damaged files raise :class:`InputError`.

    Examples
    --------
    >>> read_idx(Path("t10k-labels-idx1-ubyte.gz"), 1).shape   # doctest: +SKIP
    (10000,)
    """
    expected_magic = f"0x0000080{ndim}"
    try:
        with _open_maybe_gzip(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES or magic[3] != ndim:
                raise InputError(
                    f"{path} is not a valid IDX file with {ndim} dimension(s): its magic number is "
                    f"0x{magic.hex() or '(empty)'}, expected {expected_magic}; the file may be damaged, "
                    "truncated or a different file saved under this name: fetch it again"
                )
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            dtype = _IDX_TYPES[magic[2]]
            data = f.read()
    except (OSError, EOFError, struct.error) as exc:
        raise InputError(f"could not read the IDX file {path} ({exc}); fetch it again") from None
    size = math.prod(dims) * dtype.itemsize
    require(
        len(data) == size,
        f"{path}: the header announces {dims} values ({size} bytes) but the file holds {len(data)} "
        "bytes; the file is truncated or damaged: fetch it again",
    )
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # the original MNIST site's names
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _resolve(name: str, root: Path, subdirs: tuple[str, ...], how_to_get: str) -> dict[str, Path]:
    candidates = [root] + [root / s for s in subdirs]
    for directory in candidates:
        found = {k: _find_file(directory, stem) for k, stem in IDX_STEMS.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    found = {k: _find_file(root, stem) for k, stem in IDX_STEMS.items()}
    missing = [f"{IDX_STEMS[k]}[.gz]" for k, v in found.items() if v is None]
    raise InputError(
        f"{name}: expected the IDX file(s) {', '.join(missing)} in {root} (or in a subdirectory "
        f"{' or '.join(repr(s) for s in subdirs)}); {how_to_get}"
    )


def read_idx_dataset(name: str, root: Path, subdirs: tuple[str, ...], how_to_get: str,
                     classes: list[str]) -> RawData:
    """The four IDX files of an MNIST-like data set under ``root`` (or one of its ``subdirs``).

    Examples
    --------
    >>> raw = read_idx_dataset("mnist", Path("data"), ("MNIST/raw",), "fetch them", DIGIT_CLASSES)  # doctest: +SKIP
    """
    files = _resolve(name, root, subdirs, how_to_get)
    arrays = {k: read_idx(p, 3 if k.endswith("_x") else 1) for k, p in files.items()}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        require(
            len(x) == len(y),
            f"{name}: {files[part + '_x']} holds {len(x)} images but {files[part + '_y']} holds "
            f"{len(y)} labels; the files do not belong together",
        )
        require(
            y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < 10),
            f"{name}: labels in {files[part + '_y']} lie outside 0..9; is it a labels file of this dataset?",
        )
    scale = 255.0 if arrays["train_x"].dtype == np.uint8 else 1.0
    return RawData(
        arrays["train_x"][:, None], arrays["train_y"].astype(np.int64),
        arrays["test_x"][:, None], arrays["test_y"].astype(np.int64),
        scale, 10, classes, str(files["train_x"].parent),
    )

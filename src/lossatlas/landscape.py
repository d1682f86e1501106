"""The loss as a pure, batched function of flat parameter vectors.

:class:`Landscape` adapts a model, its data and a loss once, at construction; afterwards every
call takes parameter vectors and returns numbers. It works on a private copy of the model, so the
user's module (parameters, buffers, train/eval mode) is never touched.
"""

from __future__ import annotations

import copy
import enum
import inspect
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._errors import InputError, require
from .space import ParamSpace


# -- the C allocator --------------------------------------------------------------------------

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ALLOCATOR_BYTES = 1 << 30
_GLIBC_MMAP_CAP = 32 << 20  # older glibc refuse mmap thresholds above HEAP_MAX_SIZE / 2
_allocator_tuned = False
_allocator_lock = threading.Lock()


def tune_allocator() -> bool:
    """Keep glibc's malloc from handing large freed buffers back to the kernel.

    Evaluating a landscape allocates and frees the same activation buffers thousands of times.
    By default glibc serves large buffers with fresh ``mmap`` calls and trims the top of its heap
    after large frees, so every forward pass faults its pages in (and zeroes them) again; on a
    loaded 2-core machine that made evaluation loops 1.2-6x slower. This raises glibc's mmap
    and trim thresholds (``mallopt``) to 1 GiB, so freed buffers are reused; the process then
    keeps up to its peak memory instead of returning it.

    The setting is process-wide and stays. It does nothing, and returns False, off Linux/glibc,
    when the environment variable ``LOSSATLAS_TUNE_ALLOCATOR`` is ``0``, or when the user chose
    thresholds through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``. It is safe to
    call repeatedly; :class:`Landscape` calls it once when built on a CPU unless given
    ``tune_allocator=False``.

    Returns
    -------
    bool
        Whether the thresholds are raised.

    Examples
    --------
    >>> tune_allocator()  # on Linux with glibc
    True
    """
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned:
            return True
        if (
            not sys.platform.startswith("linux")
            or os.environ.get("LOSSATLAS_TUNE_ALLOCATOR", "1").strip().lower() in ("0", "false", "no", "off")
            or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        ):
            return False
        try:
            import ctypes
            import platform

            if platform.libc_ver()[0] != "glibc":
                return False
            mallopt = ctypes.CDLL("libc.so.6").mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError, ValueError):
            return False
        if not mallopt(_M_MMAP_THRESHOLD, _ALLOCATOR_BYTES) and not mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_CAP):
            return False
        _allocator_tuned = bool(mallopt(_M_TRIM_THRESHOLD, _ALLOCATOR_BYTES))
        return _allocator_tuned


_tune_allocator = tune_allocator  # Landscape's keyword of the same name shadows it there

# Default evaluation batch of models with convolutions (bounds activation memory). On the 2-core
# CPU of bench/surface.py it beat batches of 64 and 128, eager and compiled, in every
# measurement; all data at once was faster still but needs memory in proportion to the data.
_CONV_BATCH = 256
# evaluate_span: the most memory the first layer's precomputed outputs may take (see there).
_SPAN_TABLE_BYTES = 256 << 20
# evaluate_span: the layer's fan-in must be at least this times the number of tables (1 + D).
_SPAN_MIN_FAN_IN_PER_TABLE = 4
# Layers whose output is linear in their parameters (weight and bias together) for a fixed input.
_LINEAR_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# compile="auto": compile once this many seconds went into eager evaluation (see Landscape).
_COMPILE_AFTER_SECONDS = 30.0


class BatchNormMode(str, enum.Enum):
    """How batch-norm layers behave while the landscape is evaluated."""

    EVAL = "eval"  # the model's running statistics (Li et al.'s choice)
    BATCH = "batch"  # statistics of each evaluation batch, nothing updated
    RECOMPUTE = "recompute"  # running statistics re-estimated on the training data at each point


class Strategy(str, enum.Enum):
    """How many parameter vectors are pushed through the model."""

    AUTO = "auto"  # loop on CPU, vmap on accelerators
    LOOP = "loop"  # one reused parameter set, written point by point
    VMAP = "vmap"  # torch.vmap over chunks of points


def _cross_entropy(out, y):
    if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
        # Class indices for [N, C] logits: per sample, logsumexp of the logits minus the target's
        # logit (0 at the target itself, so a confident sample's small loss keeps its precision,
        # as in torch's log-softmax). The same value as F.cross_entropy to float rounding, in
        # about half its time on a CPU, where this is a sizeable share of a small model's work.
        return torch.logsumexp(out - out.gather(1, y.unsqueeze(1)), 1).sum()
    return F.cross_entropy(out, y, reduction="sum")


def _nll(out, y):
    return F.nll_loss(out, y, reduction="sum")


def _per_output(out) -> int:
    # mse and l1 average over output elements within a sample, as torch's "mean" reduction does.
    return max(1, out[0].numel())


def _mse(out, y):
    return F.mse_loss(out, y.to(out.dtype).reshape(out.shape), reduction="sum") / _per_output(out)


def _l1(out, y):
    return F.l1_loss(out, y.to(out.dtype).reshape(out.shape), reduction="sum") / _per_output(out)


def _bce(out, y):
    return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype).reshape(-1), reduction="sum")


# Each returns the SUM over the batch, so batches of any size average correctly over the data.
LOSSES: dict[str, Callable] = {"cross_entropy": _cross_entropy, "nll": _nll, "mse": _mse, "bce": _bce, "l1": _l1}


class _MeanToSum:
    """Wraps a user loss returning the batch mean so that it returns the batch sum."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, out, y):
        return self.fn(out, y) * _batch_len(y)


def _enum(cls, value, what):
    try:
        return cls(value)
    except ValueError:
        raise InputError(f"unknown {what} {value!r}; use one of {[m.value for m in cls]}") from None


# -- batches as small trees of tensors ------------------------------------------------------

def _tree_map(fn, tree):
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_map(fn, v) for v in tree) if not hasattr(tree, "_fields") else type(tree)(
            *(_tree_map(fn, v) for v in tree)
        )
    return tree


def _tree_leaves(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, Mapping):
        return [x for v in tree.values() for x in _tree_leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _tree_leaves(v)]
    return []


def _tree_cat(batches: list):
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(batches)
    if isinstance(first, Mapping):
        return {k: _tree_cat([b[k] for b in batches]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_tree_cat([b[i] for b in batches]) for i in range(len(first)))
    return first


def _batch_len(batch) -> int:
    leaves = _tree_leaves(batch)
    require(bool(leaves), "a data batch holds no tensors")
    return int(leaves[0].shape[0])


def default_forward(model: nn.Module, batch):
    """``model(inputs)`` for ``(inputs, targets)`` batches; ``model(**batch["inputs"])`` for dicts."""
    if isinstance(batch, Mapping):
        if "inputs" not in batch:
            raise InputError(
                "dict batches need an 'inputs' entry, or pass forward=lambda model, batch: ... "
                f"(keys seen: {sorted(batch)})"
            )
        inputs = batch["inputs"]
        return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return model(batch[0])


def default_target(batch):
    """``targets`` of ``(inputs, targets)`` batches; ``labels``/``targets``/``y`` of dict batches."""
    if isinstance(batch, Mapping):
        for key in ("labels", "targets", "target", "y"):
            if key in batch:
                return batch[key]
        raise InputError(
            "dict batches need a 'labels' (or 'targets', 'y') entry, or pass target=lambda batch: ..."
        )
    return batch[1]


def as_batches(data, batch_size: int | None, samples: int | None, seed: int, device) -> list:
    """Fix the evaluation data as a list of batches on ``device`` (every point sees the same ones)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        X, y = data
        require(X.shape[0] == y.shape[0], f"inputs and targets differ in length: {X.shape[0]} vs {y.shape[0]}")
        full = (X, y)
    elif isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, bytes, Mapping)):
        batches = list(data)
        require(bool(batches), "the data loader yielded no batches: the dataset is empty")
        full = _tree_cat(batches)
    else:
        raise InputError(
            f"data must be an (inputs, targets) pair of tensors or an iterable of batches such as a "
            f"DataLoader, got {type(data).__name__}"
        )
    n = _batch_len(full)
    require(n > 0, "the dataset is empty: give at least one sample")
    if samples is not None:
        require(isinstance(samples, int) and samples > 0, f"samples must be a positive integer, got {samples!r}")
        require(samples <= n, f"samples={samples} but the dataset has only {n} samples")
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(n, generator=gen)[:samples].sort().values
        full = _tree_map(lambda t: t[idx], full)
        n = samples
    bs = n if batch_size is None else int(batch_size)
    require(bs > 0, f"batch_size must be positive, got {batch_size!r}")
    return [
        _tree_map(lambda t: t[i : i + bs].to(device), full) for i in range(0, n, bs)
    ]


@dataclass
class _Split:
    name: str
    batches: list
    targets: list
    n: int


class Landscape:
    """The loss (and accuracy) of a model as a function of its flat parameter vector.

    Parameters
    ----------
    model : nn.Module
        Copied once; the original is never changed.
    data : (X, y) tensors or an iterable of batches (a DataLoader)
        The data the loss is averaged over (fixed for every point).
    loss : str or callable
        ``"cross_entropy"``, ``"nll"``, ``"mse"``, ``"bce"``, ``"l1"``, or ``loss(output, target)``
        returning the MEAN loss of a batch.
    bn : {"eval", "batch", "recompute"}
        Batch-norm statistics: the model's running ones, each batch's own, or re-estimated on
        ``data`` at every point.
    test : optional
        Test data in the same form; evaluated beside ``data`` as ``test_loss``, ``test_accuracy``.
    samples : int, optional
        A seeded subset of ``samples`` points of ``data`` (and of ``test``).
    seed : int
        Seed of the subset.
    batch_size : int, optional
        Evaluation batch size (default: 256 for models with convolutions, else all at once).
        Fewer, larger batches mean fewer kernel launches and thread synchronizations per point,
        which matters most on a busy CPU.
    forward : callable, optional
        ``forward(model, batch) -> output`` for models called otherwise than ``model(inputs)``.
    target : callable, optional
        ``target(batch) -> targets`` for batches other than ``(inputs, targets)``.
    strategy : {"auto", "loop", "vmap"}
        ``"loop"`` writes each point into one reused parameter set (fastest on a CPU);
        ``"vmap"`` pushes chunks of points through ``torch.vmap`` (the accelerator path).
    chunk : int
        Points per vmap call.
    compile : bool or "auto"
        ``torch.compile`` the loop's per-batch step (forward, loss and accuracy; one static graph
        per batch shape; parameters are written in place, so new points never recompile). On a
        2-core CPU it made a small CNN's plane 15-25% faster at batches of 256, but compiling
        takes 5-40 s (the first time on a machine; later compiles hit inductor's on-disk
        cache), about as long as a whole 31x31 plane of that CNN evaluated eagerly. So
        ``"auto"`` (the default; it applies to models with convolutions, loop strategy, CPU)
        starts eagerly and compiles once 30 s went into eager evaluation: lines and single
        small planes never pay for it, long grids and repeated planes recover it, and at worst
        it adds one compile time to a job that already took 30 s. If compiling fails (e.g. no
        C++ compiler) ``"auto"`` warns and stays eager. Pass ``True`` for a long job known in
        advance, ``False`` never to compile.
    channels_last : bool or "auto"
        Channels-last memory format for 2-D convolutions in the loop strategy.
    tune_allocator : bool
        On a CPU, call :func:`tune_allocator` (raise glibc's mmap and trim thresholds, process
        wide); False leaves the C allocator alone.
    accuracy : bool
        Also compute the accuracy when the model classifies (``[N, C]`` outputs, integer
        targets). ``False`` evaluates the loss alone (about 10% less work for a small MLP).
    workers : int or "auto"
        Loop strategy: points are shared out among this many threads, each evaluating its share
        on its own copy of the model (inter-op parallelism), with torch's intra-op threads
        divided among them for the duration (a process-wide setting, restored afterwards).
        ``"auto"``: torch's thread count for models with convolutions on a CPU, else 1 (also
        with ``compile=True``, on accelerators and for vmap). On a 2-core CPU two workers
        evaluated a small CNN's plane 1.05-1.6x as fast as one worker with two intra-op threads,
        whose small kernels spend much of their time synchronizing; an MLP's plane was slower.
        Costs one more model copy (and its activations) per worker. Pass 1 when a custom
        ``forward`` is not thread-safe.

    Examples
    --------
    >>> f = Landscape(model, (X, y), loss="cross_entropy", bn="eval")
    >>> f.evaluate(torch.stack([f.origin, f.origin + 0.1 * d]))["loss"]
    tensor([0.0312, 0.4127])
    """

    def __init__(
        self,
        model: nn.Module,
        data,
        loss: str | Callable = "cross_entropy",
        bn: str = "eval",
        *,
        test=None,
        samples: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        forward: Callable | None = None,
        target: Callable | None = None,
        strategy: str = "auto",
        chunk: int = 16,
        compile: bool | str = "auto",
        channels_last="auto",
        device=None,
        tune_allocator: bool = True,
        workers: int | str = "auto",
        accuracy: bool = True,
    ):
        require(isinstance(model, nn.Module), f"expected a torch.nn.Module, got {type(model).__name__}")
        self.bn = _enum(BatchNormMode, bn, "batch-norm mode")
        strategy = _enum(Strategy, strategy, "strategy")
        if isinstance(loss, str):
            require(loss in LOSSES, f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable")
            self._loss_sum = LOSSES[loss]
            self.loss_name = loss
        else:
            require(callable(loss), "loss must be a name or a callable loss(output, target)")
            self._loss_sum = _MeanToSum(loss)
            self.loss_name = getattr(loss, "__name__", type(loss).__name__)
        require(int(chunk) >= 1, f"chunk must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self.space = ParamSpace(model)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.origin = self.space.vector(model).to(self.device)
        self.space.check_vector(self.origin, "model's parameter vector")
        self.has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
        if strategy is Strategy.AUTO:
            strategy = Strategy.LOOP if self.device.type == "cpu" else Strategy.VMAP
        if strategy is Strategy.VMAP and self.bn is BatchNormMode.RECOMPUTE and self.has_bn:
            raise InputError("bn='recompute' needs strategy='loop' (statistics are re-estimated point by point)")
        self.strategy = strategy
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        if batch_size is None and has_conv:
            batch_size = _CONV_BATCH
        self.batch_size = batch_size
        self._forward = forward or default_forward
        self._target = target or default_target
        self._channels_last = (has_conv2d and strategy is Strategy.LOOP) if channels_last == "auto" else bool(channels_last)
        if isinstance(compile, str):
            require(compile == "auto", f"compile must be True, False or 'auto', got {compile!r}")
            self._compile_mode = "auto" if (has_conv and strategy is Strategy.LOOP and self.device.type == "cpu") else False
        else:
            self._compile_mode = bool(compile)
        if workers == "auto":
            # Measured (bench/surface.py, 2-core CPU): a small CNN's plane went 1.05-1.6x faster
            # in two workers, an MLP's plane on digits slower (its kernels are too short for
            # threads to gain over the GIL), so "auto" uses workers for convolutional models.
            cpu_loop = strategy is Strategy.LOOP and self.device.type == "cpu"
            use = cpu_loop and has_conv and self._compile_mode is not True
            workers = torch.get_num_threads() if use else 1
        require(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
                f"workers must be 'auto' or an integer >= 1, got {workers!r}")
        if workers > 1:
            require(strategy is Strategy.LOOP, "workers > 1 needs strategy='loop' (vmap batches points itself)")
            require(self._compile_mode is not True,
                    "compile=True runs one compiled worker; pass workers=1 with it (or compile=False)")
            # Eager evaluation in several workers was measured as fast as one compiled worker on
            # a 2-core CPU (bench/surface.py), without the compile time: "auto" stays eager.
            self._compile_mode = False
        self.workers = workers
        self._compile = self._compile_mode is True  # whether the loop runs compiled now
        self._compiled = None
        self._eager_seconds = 0.0  # time spent evaluating eagerly, for compile="auto"
        self._replicas: list[_Replica] | None = None
        self._pool = None
        self._first = None  # the first layer, for evaluate_span: None = not looked for yet, False = none
        self._span_cache = None
        if tune_allocator and self.device.type == "cpu":
            _tune_allocator()
        # The loop strategy writes points into one shared parameter set: one caller at a time.
        self._lock = threading.Lock()

        # The private copy: the user's module is read here once and never again.
        module = copy.deepcopy(model).to(self.device)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        if self.bn is BatchNormMode.BATCH:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    # No running statistics: each batch normalizes with its own, nothing is updated.
                    m.track_running_stats = False
                    m.running_mean = m.running_var = m.num_batches_tracked = None
                    m.train()
        if self.bn is BatchNormMode.RECOMPUTE:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = None  # a cumulative average over the re-estimation pass
        if self._channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._buffers = {n: b for n, b in module.named_buffers()}

        require(isinstance(accuracy, bool), f"accuracy must be True or False, got {accuracy!r}")
        self._accuracy = accuracy
        self.splits: list[_Split] = [self._make_split("train", data, samples, seed)]
        if test is not None:
            self.splits.append(self._make_split("test", test, samples, seed + 1))
        self.metrics = self._probe()

    # -- set-up ---------------------------------------------------------------------------
    def _make_split(self, name, data, samples, seed) -> _Split:
        batches = as_batches(data, self.batch_size, samples, seed, self.device)
        if self._channels_last:
            batches = [
                _tree_map(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t, b)
                for b in batches
            ]
        targets = [self._target(b) for b in batches]
        return _Split(name, batches, targets, sum(_batch_len(t) for t in targets))

    def _probe(self) -> tuple[str, ...]:
        """Run the model once on the first batch: fail early and clearly, and learn the metrics."""
        batch, y = self.splits[0].batches[0], self.splits[0].targets[0]
        try:
            with torch.no_grad():
                out = self._forward(self._module, batch)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here is the user's input
            raise InputError(
                f"the model failed on the first data batch ({type(exc).__name__}: {exc}); check the "
                "input shape, or pass forward=lambda model, batch: ... for models called otherwise"
            ) from exc
        require(isinstance(out, torch.Tensor), "the forward pass must return a tensor (pass forward= to pick one)")
        try:
            value = self._loss_sum(out, y)
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"the loss {self.loss_name!r} failed on the model's output of shape {tuple(out.shape)} "
                f"and targets of shape {tuple(y.shape)}: {exc}"
            ) from exc
        require(value.numel() == 1, "the loss must return a scalar (the mean over the batch)")
        classify = out.dim() == 2 and out.shape[1] > 1 and y.dim() == 1 and not y.is_floating_point()
        return ("loss", "accuracy") if classify and self._accuracy else ("loss",)

    @property
    def keys(self) -> tuple[str, ...]:
        """Names of the values :meth:`evaluate` returns, e.g. ``("loss", "accuracy", "test_loss", ...)``."""
        out = []
        for s in self.splits:
            prefix = "" if s.name == "train" else f"{s.name}_"
            out += [prefix + m for m in self.metrics]
        return tuple(out)

    @property
    def fingerprint(self) -> str:
        """Hash of the evaluation data and settings: equal fingerprints mean equal values."""
        import hashlib

        h = hashlib.sha256()
        h.update(f"{self.loss_name}|{self.bn.value}|{self.keys}".encode())
        for split in self.splits:
            for batch in split.batches:
                for t in _tree_leaves(batch):
                    h.update(str(tuple(t.shape)).encode())
                    h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def n_samples(self) -> dict[str, int]:
        return {s.name: s.n for s in self.splits}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = None  # compiled graphs do not pickle; recompiled on first use
        state["_replicas"] = None  # staging views would unpickle as copies; rebuilt on first use
        state["_pool"] = None
        state["_span_cache"] = None  # rebuilt on first use
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- evaluation -----------------------------------------------------------------------
    def _as_points(self, points) -> torch.Tensor:
        if not isinstance(points, torch.Tensor):
            points = torch.as_tensor(points)
        if points.dim() == 1:
            points = points.unsqueeze(0)
        require(
            points.dim() == 2 and points.shape[1] == self.space.size,
            f"points must have shape [K, {self.space.size}] (one parameter vector per row), "
            f"got {tuple(points.shape)}",
        )
        return points.to(device=self.device, dtype=self.origin.dtype)

    def evaluate(self, points) -> dict[str, torch.Tensor]:
        """Loss and metrics at each of ``points`` [K, P] (or one vector [P]).

        Returns a dict of 1-D float64 tensors of length K: ``loss`` (mean over the data),
        ``accuracy`` (fraction, for classification), and ``test_loss``/``test_accuracy`` when
        test data was given. A diverged point gives NaN, never an exception.
        """
        points = self._as_points(points)
        with self._lock:
            return self._evaluate(points)

    def evaluate_span(self, center, dirs, coords) -> dict[str, torch.Tensor]:
        """:meth:`evaluate` at the points ``center + coords @ dirs`` of a line, plane or grid.

        The same values, computed faster where the model allows: when the first layer the data
        meets is a linear or convolutional layer (called once, on an input no parameter acts on),
        its output is affine in the coordinates, ``z = z(center) + sum_k coords[k] * z(dirs[k])``
        (Li et al.'s directions change every layer's weights; this layer's response to each of
        them is computed once per data batch). Each point then starts from those tables instead
        of the layer's matmul or convolution: most of an MLP's work on wide inputs. The tables
        take ``(1 + D)`` times the layer's output over the data; above 256 MiB, and for the vmap
        strategy or a compiled loop, the points are evaluated as :meth:`evaluate` would. The
        shortcut is checked against the plain evaluation at two points the first time it is set
        up for a center and directions, and dropped for good if they disagree.

        Parameters
        ----------
        center : tensor [P]
        dirs : tensor [D, P] or sequence of D tensors [P]
        coords : tensor or array [K, D]

        Examples
        --------
        >>> f.evaluate_span(f.origin, torch.stack(dirs), [[0.0, 0.0], [0.5, -0.5]])["loss"]
        tensor([0.0312, 0.9310], dtype=torch.float64)
        """
        center = self._as_points(center)
        require(center.shape[0] == 1, "center must be one parameter vector [P]")
        center = center[0]
        if not isinstance(dirs, torch.Tensor):
            dirs = torch.stack([torch.as_tensor(d) for d in dirs])
        dirs = self._as_points(dirs)
        coords = torch.as_tensor(coords, dtype=self.origin.dtype, device=self.device)
        if coords.dim() == 1:
            coords = coords.unsqueeze(0)
        require(coords.dim() == 2 and coords.shape[1] == dirs.shape[0],
                f"coords must have shape [K, {dirs.shape[0]}] (one coordinate per direction), got {tuple(coords.shape)}")
        points = torch.addmm(center.unsqueeze(0), coords, dirs)
        with self._lock:
            tables = None
            if self.strategy is Strategy.LOOP and not self._compile:
                tables = self._span_tables(center, dirs)
            if tables is None:
                return self._evaluate(points)
            return self._named(self._evaluate_loop(points, coords, tables))

    def _first_layer(self):
        """``(module name, its parameter names, their entries)`` of the first layer the data meets
        when it is linear in its parameters and called once per forward; else False."""
        if self._first is not None:
            return self._first
        module = self._module
        calls: list[str] = []
        handles = []
        for name, m in module.named_modules():
            if next(m.parameters(recurse=False), None) is not None:
                handles.append(m.register_forward_pre_hook(lambda mod, args, name=name: calls.append(name)))
        try:
            with torch.no_grad():
                self._forward(module, self.splits[0].batches[0])
        finally:
            for h in handles:
                h.remove()
        self._first = False
        if calls:
            name = calls[0]
            layer = module.get_submodule(name)
            entries = {e.name: e for e in self.space.entries}
            pnames = [n for n, _ in layer.named_parameters(recurse=False)]
            full = [f"{name}.{n}" if name else n for n in pnames]
            if (isinstance(layer, _LINEAR_IN_PARAMS) and calls.count(name) == 1
                    and getattr(layer, "padding_mode", "zeros") == "zeros" and all(f in entries for f in full)):
                self._first = (name, pnames, [entries[f] for f in full])
        return self._first

    def _span_tables(self, center: torch.Tensor, dirs: torch.Tensor):
        """Per split and batch, the list of the first layer's outputs at ``center`` and along each
        direction (1 + D tensors); None when the shortcut does not apply."""
        first = self._first_layer()
        if not first:
            return None
        cache = self._span_cache
        if (cache is not None and cache["dirs"].shape == dirs.shape and torch.equal(cache["center"], center)
                and torch.equal(cache["dirs"], dirs)):
            return cache["tables"]
        from torch.func import functional_call

        name, pnames, entries = first
        layer = self._module.get_submodule(name)
        # Worth it only when the layer does more per output than combining 1 + D tables costs:
        # measured, a conv of fan-in 9 (1 channel, 3x3) gained nothing, a linear layer of
        # fan-in 64 gained 11% of the whole evaluation (bench/surface.py models).
        weight = layer.weight
        fan_in = weight[0].numel() if weight.dim() > 1 else 1
        if fan_in < _SPAN_MIN_FAN_IN_PER_TABLE * (1 + dirs.shape[0]):
            return None

        class _Reached(Exception):
            pass

        armed = [True]

        def stop(mod, args):  # ends the forward where the data reaches the layer
            if armed[0]:
                raise _Reached(args[0])

        own = dict(layer.named_parameters(recurse=False))

        def params(vec):
            # In the layout of the layer's own parameters (channels-last for 2-D convolutions),
            # so that the outputs come in the layout the following layers see in plain evaluation.
            return {n: torch.empty_like(own[n]).copy_(vec[e.slice].view(e.shape)) for n, e in zip(pnames, entries)}

        vectors = [center, *dirs]
        n_batches = sum(len(split.batches) for split in self.splits)
        tables: list[list[torch.Tensor]] = []
        handle = layer.register_forward_pre_hook(stop)
        try:
            with torch.no_grad():
                for split in self.splits:
                    per_batch = []
                    for batch in split.batches:
                        try:
                            self._forward(self._module, batch)
                            return None  # the layer was never reached: not the first layer after all
                        except _Reached as reached:
                            x = reached.args[0]
                        armed[0] = False
                        # A list, not a stack: each output keeps the layer's memory format
                        # (channels-last), which the next layers are laid out for.
                        z = [functional_call(layer, params(v), (x,)) for v in vectors]
                        armed[0] = True
                        if len(z) * z[0].numel() * z[0].element_size() * n_batches > _SPAN_TABLE_BYTES:
                            return None
                        per_batch.append(z)
                    tables.append(per_batch)
        finally:
            handle.remove()
        # Check against the plain evaluation before trusting it: a parameter acting on the data
        # before this layer (outside any module) would make the shortcut wrong.
        probe = torch.tensor([[0.5] * len(dirs), [(-0.7) ** (k + 1) for k in range(len(dirs))]],
                             dtype=center.dtype, device=center.device)
        points = torch.addmm(center.unsqueeze(0), probe, dirs)
        fast = self._evaluate_loop(points, probe, tables)
        plain = self._evaluate_loop(points)
        if not torch.allclose(fast, plain, rtol=1e-4, atol=1e-6, equal_nan=True):
            self._first = False
            return None
        self._span_cache = {"center": center.clone(), "dirs": dirs.clone(), "tables": tables}
        return tables

    def _evaluate(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.strategy is Strategy.VMAP:
            rows = []
            for i in range(0, points.shape[0], self.chunk):
                rows.append(self._evaluate_vmap(points[i : i + self.chunk]))
            values = torch.cat(rows)
        else:
            values = self._evaluate_loop(points)
        return self._named(values)

    def _named(self, values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The columns of ``values`` [K, len(keys)] by name."""
        return {k: values[:, i] for i, k in enumerate(self.keys)}

    def _replica(self, i: int) -> "_Replica":
        """Worker ``i``'s parameter set: replica 0 is the private module, the others copies of it."""
        if self._replicas is None:
            self._replicas = [_Replica(self._module, self.space, self.origin)]
        while len(self._replicas) <= i:
            self._replicas.append(_Replica(copy.deepcopy(self._module), self.space, self.origin))
        return self._replicas[i]

    def _module_values(self, module, batch, y):
        """Sums over one batch: ``(loss,)`` or ``(loss, correct)``, as ``module`` computes them."""
        out = self._forward(module, batch)
        loss = self._loss_sum(out, y)
        if len(self.metrics) == 1:
            return (loss,)
        return loss, (out.argmax(1) == y).sum()

    def _batch_values(self, batch, y):
        """:meth:`_module_values` of the private module (the function that gets compiled)."""
        return self._module_values(self._module, batch, y)

    def _step(self):
        """The per-batch function of the single-worker loop: eager, or compiled once it is worth it."""
        if self._compile_mode == "auto" and not self._compile and self._eager_seconds >= _COMPILE_AFTER_SECONDS:
            self._compile = True
        if not self._compile:
            return self._batch_values
        if self._compiled is None:
            kwargs = {}
            if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
                # Every Landscape compiles the same method: without this, all of them share
                # (and exhaust) one recompile limit.
                kwargs["isolate_recompiles"] = True
            # Static shapes: one graph per batch size (full batches and the last one), specialized
            # for them. Parameters are written in place, so their values never trigger recompiles.
            compiled = torch.compile(self._batch_values, dynamic=False, **kwargs)
            if self._compile_mode == "auto":
                try:  # compile now, on the first batch, and keep the eager loop if that fails
                    with torch.no_grad():
                        compiled(self.splits[0].batches[0], self.splits[0].targets[0])
                except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler on the machine
                    warnings.warn(
                        f"torch.compile failed ({type(exc).__name__}: {exc}); evaluating without it "
                        "(pass compile=False to skip the attempt)",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    self._compile_mode = self._compile = False
                    return self._batch_values
            self._compiled = compiled
        return self._compiled

    def _evaluate_loop(self, points: torch.Tensor, coords=None, tables=None) -> torch.Tensor:
        k = points.shape[0]
        workers = min(self.workers, k)
        if workers <= 1:
            return self._evaluate_block(self._replica(0), points, coords, tables, single=True)
        # Inter-op parallelism: each worker thread evaluates a contiguous block of points on its
        # own replica, with the intra-op threads shared out among the workers (torch's setting is
        # process-wide; restored afterwards). Threads release the GIL inside kernels, which is
        # where nearly all of the time goes.
        replicas = [self._replica(i) for i in range(workers)]
        blocks = torch.tensor_split(points, workers)
        coord_blocks = torch.tensor_split(coords, workers) if coords is not None else [None] * workers
        if self._pool is None or self._pool._max_workers < workers:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lossatlas-landscape")
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        try:
            futures = [self._pool.submit(self._evaluate_block, r, b, c, tables)
                       for r, b, c in zip(replicas, blocks, coord_blocks)]
            return torch.cat([f.result() for f in futures])
        finally:
            torch.set_num_threads(threads)

    @torch.no_grad()  # grad mode is per thread: set here, in the thread that evaluates
    def _evaluate_block(self, rep: "_Replica", points: torch.Tensor, coords=None, tables=None,
                        single: bool = False) -> torch.Tensor:
        recompute = self.bn is BatchNormMode.RECOMPUTE and self.has_bn
        m = len(self.metrics)
        # With span tables, the first layer returns its output combined from them (set per batch)
        # instead of computing it; the override lives on this replica only while it evaluates.
        layer, state = None, {}
        if tables is not None:
            layer = rep.module.get_submodule(self._first[0])
            layer.forward = lambda *args, **kwargs: state["z"]

        def first_output(split_index, batch_index, c):
            t = tables[split_index][batch_index]
            z = torch.add(t[0], t[1], alpha=c[0])  # a new tensor: in-place layers after it are safe
            for j in range(1, len(c)):
                z.add_(t[j + 1], alpha=c[j])
            return z

        # Per-batch sums are only collected here; converting and adding them up happens once,
        # after the last point, so a point costs no more kernel launches than its forward passes.
        sums: list[list[list[torch.Tensor]]] = [[[] for _ in range(m)] for _ in self.splits]
        # The single eager/compiled worker asks _step at every point (compile="auto" may switch it
        # on mid-way); other workers, and any worker reading tables, run the replica eagerly.
        switchable = single and tables is None

        def replica_step(batch, y):
            return self._module_values(rep.module, batch, y)

        try:
            for i, vec in enumerate(points):
                timed = switchable and self._compile_mode == "auto" and not self._compile
                start = time.perf_counter() if timed else 0.0
                step = self._step() if switchable else replica_step
                if tables is not None:
                    c = coords[i].tolist()
                rep.write(vec)
                if recompute:
                    before = (lambda b: state.__setitem__("z", first_output(0, b, c))) if tables is not None else None
                    self._recompute_statistics(rep.module, before)
                for s_i, (lists, split) in enumerate(zip(sums, self.splits)):
                    for b_i, (batch, y) in enumerate(zip(split.batches, split.targets)):
                        if tables is not None:
                            state["z"] = first_output(s_i, b_i, c)
                        for values, v in zip(lists, step(batch, y)):
                            values.append(v)
                if timed:
                    self._eager_seconds += time.perf_counter() - start
        finally:
            if layer is not None:
                del layer.forward  # back to the class's forward
        k = points.shape[0]
        columns = []
        for lists, split in zip(sums, self.splits):
            for values in lists:
                per_batch = torch.stack([v.reshape(()) for v in values]).double().reshape(k, len(split.batches))
                columns.append(per_batch.sum(1) / split.n)
        return torch.stack(columns, dim=1).cpu()

    def _recompute_statistics(self, module: nn.Module, before_batch=None) -> None:
        bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.train()
        for b, batch in enumerate(self.splits[0].batches):
            if before_batch is not None:
                before_batch(b)
            self._forward(module, batch)
        for m in bns:
            m.eval()

    def _evaluate_vmap(self, chunk: torch.Tensor) -> torch.Tensor:
        from torch.func import vmap

        names = [e.name for e in self.space.entries]
        module, buffers = self._module, self._buffers
        forward, loss_sum, accuracy = self._forward, self._loss_sum, "accuracy" in self.metrics

        def one(flat, batch, y):
            params = dict(zip(names, self.space.split(flat)))
            out = forward(_FunctionalModel(module, params, buffers), batch)
            values = [loss_sum(out, y).double()]
            if accuracy:
                values.append((out.argmax(1) == y).sum().double())
            return torch.stack(values)

        rows = []
        with torch.no_grad():
            for split in self.splits:
                total = None
                for batch, y in zip(split.batches, split.targets):
                    v = vmap(one, in_dims=(0, None, None), randomness="different")(chunk, batch, y)
                    total = v if total is None else total + v
                rows.append(total / split.n)
        return torch.cat(rows, dim=1).cpu()

    # -- derivatives ----------------------------------------------------------------------
    def _functional_loss(self, split: _Split):
        from torch.func import functional_call

        names = [e.name for e in self.space.entries]

        def loss(flat, batch, y):
            params = dict(zip(names, self.space.split(flat)))
            out = self._forward(_FunctionalModel(self._module, params, self._buffers), batch)
            return self._loss_sum(out, y) / split.n

        return loss

    def grad(self, theta: torch.Tensor, split: str = "train") -> tuple[float, torch.Tensor]:
        """The mean loss over the data and its gradient at ``theta``.

        Examples
        --------
        >>> value, g = f.grad(f.origin)
        """
        from torch.func import grad_and_value

        theta = self._as_points(theta)[0]
        s = self._split(split)
        fn = grad_and_value(self._functional_loss(s))
        g, total = torch.zeros_like(theta), 0.0
        for batch, y in zip(s.batches, s.targets):
            gb, vb = fn(theta, batch, y)
            g += gb
            total += float(vb)
        return total, g

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, split: str = "train") -> torch.Tensor:
        """Hessian-vector product ``H(theta) v`` of the mean loss (forward-over-reverse).

        Batch norm uses the model's running statistics (or batch statistics for ``bn="batch"``).

        Examples
        --------
        >>> hv = f.hvp(f.origin, d)
        """
        from torch.func import grad, jvp

        theta = self._as_points(theta)[0]
        v = self._as_points(v)[0]
        s = self._split(split)
        g = grad(self._functional_loss(s))
        out = torch.zeros_like(theta)
        for batch, y in zip(s.batches, s.targets):
            out += jvp(lambda t: g(t, batch, y), (theta,), (v,))[1]
        return out

    def _split(self, name: str) -> _Split:
        for s in self.splits:
            if s.name == name:
                return s
        raise InputError(f"no {name!r} data in this landscape; splits: {[s.name for s in self.splits]}")


class _Replica:
    """One parameter set of the loop strategy: a module and the staging vector points go through."""

    def __init__(self, module: nn.Module, space: ParamSpace, origin: torch.Tensor):
        self.module = module
        named = dict(module.named_parameters())
        self.params = [named[e.name] for e in space.entries]
        self.stage = torch.empty_like(origin)
        self.views = space.split(self.stage)

    def write(self, vec: torch.Tensor) -> None:
        # One copy into a staging vector whose views have the parameters' shapes, then one
        # multi-tensor copy into the parameters: two kernel launches per point, not two per tensor.
        self.stage.copy_(vec)
        if hasattr(torch, "_foreach_copy_"):
            torch._foreach_copy_(self.params, self.views)
        else:  # torch < 2.1
            for p, t in zip(self.params, self.views):
                p.copy_(t)


class _FunctionalModel(nn.Module):
    """Calls ``module`` with the given parameters and buffers, so user ``forward`` functions that
    take a model work unchanged under ``torch.func`` transforms."""

    def __init__(self, module, params, buffers):
        super().__init__()
        object.__setattr__(self, "_m", module)
        object.__setattr__(self, "_state", (params, buffers))

    def forward(self, *args, **kwargs):
        from torch.func import functional_call

        params, buffers = self._state
        return functional_call(self._m, (params, buffers), args, kwargs, strict=False)

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "_m"), name)

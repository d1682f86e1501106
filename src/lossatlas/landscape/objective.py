"""The loss as a pure, batched function of flat parameter vectors: :class:`Landscape`.

A landscape adapts a model, its data and a loss once, at construction; afterwards every call
takes parameter vectors and returns numbers. It works on private copies of the model
(:mod:`.replicas`), so the user's module (parameters, buffers, train/eval mode) is never touched,
and it validates every option, probes the model on the data and fingerprints the data before
returning, so that bad input fails before any grid starts.

Threads. ``evaluate`` and ``evaluate_span`` write points into the landscape's evaluation modules,
so one lock serializes them (concurrent calls are safe and simply wait their turn);
``grad`` and ``hvp`` borrow model copies of their own (:mod:`.derivatives`) and run beside them.
Process-wide torch settings touched inside a call (intra-op threads, TF32) are shared through
process-wide sections that restore them when the last overlapping call ends (:mod:`.threads`,
:mod:`.devices`).

Engines. ``strategy="loop"`` (:mod:`.loop`, with worker threads, ``torch.compile`` and first-layer
tables, :mod:`.compiled`, :mod:`.tables`) is the CPU's; ``"vmap"`` (:mod:`.vmap`) the
accelerators'. ``"auto"`` takes the loop on a CPU and vmap elsewhere, except where vmap cannot
serve: ``bn="recompute"`` on a model with batch norm (statistics are re-estimated point by
point), or a forward that fails the vmap probe.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import threading
import warnings
from typing import Callable

import torch
from torch import nn

from .._errors import InputError, parse_enum, positive_int, require
from ..space import ParamSpace
from ..store import fingerprint as _hash
from .allocator import tune_allocator as _tune_allocator
from .batches import as_batches, batch_len, default_forward, default_target, map_tensors, model_output
from .derivatives import Derivatives
from .devices import choose_engines, float32_precision, resolve_device
from .products import Products
from .losses import resolve_loss
from .loop import LoopEngine
from .problem import Problem, Split
from .replicas import BATCH_NORM, ModulePool, private_copy
from .tables import SpanTables
from .vmap import VmapEngine, VmapError

# Default evaluation batch of models with convolutions (bounds activation memory). On the 2-core
# CPU of bench/surface.py it beat batches of 64 and 128, eager and compiled, in every
# measurement; all data at once was faster still but needs memory in proportion to the data.
CONV_BATCH = 256


class BatchNormMode(str, enum.Enum):
    """How batch-norm layers behave while the landscape is evaluated."""

    EVAL = "eval"  # the model's running statistics (Li et al.'s choice)
    BATCH = "batch"  # statistics of each evaluation batch, nothing updated
    RECOMPUTE = "recompute"  # running statistics re-estimated on the training data at each point


class Strategy(str, enum.Enum):
    """How many parameter vectors are pushed through the model."""

    AUTO = "auto"  # loop on CPU, vmap on accelerators (loop where vmap cannot serve)
    LOOP = "loop"  # one reused parameter set, written point by point
    VMAP = "vmap"  # torch.vmap over chunks of points


class Landscape:
    """The loss (and accuracy) of a model as a function of its flat parameter vector.

    Parameters
    ----------
    model : nn.Module
        Copied once; the original is never changed.
    data : (X, y) tensors, or an iterable of batches (a DataLoader, a list of batches)
        The data the loss is averaged over (fixed for every point). Batches are
        ``(inputs, targets)`` pairs or dicts, e.g. a Hugging Face DataLoader's
        ``{"input_ids", "attention_mask", "labels"}``; dict batches take their targets from
        ``"labels"`` (or ``"targets"``, ``"y"``).
    loss : str or callable
        ``"cross_entropy"``, ``"nll"``, ``"mse"``, ``"bce"``, ``"l1"``, or ``loss(output, target)``
        returning the MEAN loss of a batch.
    bn : {"eval", "batch", "recompute"}
        Batch-norm statistics: the model's running ones, each batch's own, or re-estimated on
        ``data`` at every point (the mean and unbiased variance of all the inputs each layer sees
        in a train-mode pass: batches weighted by their size). Under ``"batch"`` and
        ``"recompute"`` a last batch of one sample is folded into the batch before it (one sample
        has no batch statistics).
    test : optional
        Test data in the same form; evaluated beside ``data`` as ``test_loss``, ``test_accuracy``.
    samples : int, optional
        A seeded subset of ``samples`` points of ``data`` (the training data only).
    test_samples : int, optional
        A seeded subset of the test data; by default all of it is evaluated.
    seed : int
        Seed of the subsets.
    batch_size : int, optional
        Evaluation batch size (default: 256 for models with convolutions, else all at once).
        Fewer, larger batches mean fewer kernel launches and thread synchronizations per point,
        which matters most on a busy CPU.
    forward : callable, optional
        ``forward(model, batch) -> output`` for models called otherwise than ``model(inputs)``,
        e.g. ``forward=lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits``.
        Outputs with a ``.logits`` tensor (Hugging Face's) are taken by their logits.
    target : callable, optional
        ``target(batch) -> targets`` for batches other than ``(inputs, targets)`` or dicts with labels.
    strategy : {"auto", "loop", "vmap"}
        ``"loop"`` writes each point into one reused parameter set (fastest on a CPU);
        ``"vmap"`` pushes chunks of points through ``torch.vmap`` (the accelerator path; probed
        on two points at construction, a forward it cannot transform is refused then).
        ``"auto"``: the loop on a CPU, vmap elsewhere, the loop where vmap cannot serve
        (``bn="recompute"`` with batch norm, or a forward that fails the probe).
    chunk : int or "auto"
        Points per vmap call; ``"auto"`` sizes it from free device memory
        (:mod:`lossatlas.landscape.vmap`). The value chosen is ``self.chunk``.
    compile : bool or "auto"
        ``torch.compile`` the loop's per-batch step (:mod:`lossatlas.landscape.compiled`).
        ``"auto"`` (models with convolutions, loop strategy, CPU) starts eagerly and compiles
        once 30 s went into eager evaluation. Pass ``True`` for a long job known in advance,
        ``False`` never to compile.
    channels_last : bool or "auto"
        Channels-last memory format for 2-D convolutions in the loop strategy.
    device : None, "auto", "cpu", "cuda", "cuda:N", "mps" or torch.device
        Where the model copy, the data and the points live. None: the model's device;
        ``"auto"``: CUDA when available. A device this machine lacks is refused at once.
    tf32 : bool
        On CUDA, let float32 matmuls and convolutions use TF32 (faster on Ampere and later
        GPUs, about 1e-3 relative error). Set only inside this landscape's calls and restored
        after them; off by default, full float32 even where the process allows TF32.
    tune_allocator : bool
        On a CPU, call :func:`tune_allocator` (raise glibc's mmap and trim thresholds, process
        wide); False leaves the C allocator alone.
    workers : int or "auto"
        Loop strategy: points are shared out among this many threads, each evaluating its share
        on its own copy of the model, with torch's intra-op threads divided among them
        (:mod:`lossatlas.landscape.threads`; the process's thread count is the same afterwards).
        ``"auto"``: torch's thread count for models with convolutions on a CPU, else 1 (also
        with ``compile=True``, on accelerators and for vmap). Costs one more model copy (and
        its activations) per worker. Pass 1 when a custom ``forward`` is not thread-safe.
    accuracy : bool
        Also compute the accuracy when the model classifies (``[N, C]`` outputs, integer
        targets). ``False`` evaluates the loss alone (about 10% less work for a small MLP).

    Attributes
    ----------
    origin : tensor [P]
        The model's parameters (a copy, on ``device``).
    fingerprint : str
        Hash of the evaluation data and settings, computed at construction: equal fingerprints
        mean equal values.
    keys : tuple of str
        Names of the values :meth:`evaluate` returns.

    Examples
    --------
    >>> f = Landscape(model, (X, y), loss="cross_entropy", bn="eval", device="auto")
    >>> f.evaluate(torch.stack([f.origin, f.origin + 0.1 * d]))["loss"]
    tensor([0.0312, 0.4127], dtype=torch.float64)
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
        test_samples: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        forward: Callable | None = None,
        target: Callable | None = None,
        strategy: str = "auto",
        chunk: int | str = "auto",
        compile: bool | str = "auto",
        channels_last="auto",
        device=None,
        tf32: bool = False,
        tune_allocator: bool = True,
        workers: int | str = "auto",
        accuracy: bool = True,
    ):
        # -- every option, before any work ------------------------------------------------
        require(isinstance(model, nn.Module), f"expected a torch.nn.Module, got {type(model).__name__}")
        self.bn = parse_enum(BatchNormMode, bn, "batch-norm mode")
        strategy = parse_enum(Strategy, strategy, "strategy")
        self._loss_sum, self.loss_name = resolve_loss(loss)
        require(chunk == "auto" or not isinstance(chunk, str), f"chunk must be 'auto' or an integer >= 1, got {chunk!r}")
        chunk = chunk if chunk == "auto" else positive_int("chunk", chunk)
        require(isinstance(tf32, bool), f"tf32 must be True or False, got {tf32!r}")
        require(isinstance(accuracy, bool), f"accuracy must be True or False, got {accuracy!r}")
        require(test is not None or test_samples is None,
                "test_samples is given but no test data; pass test=(X, y) or leave test_samples=None")
        self.device = resolve_device(device, model)
        self.tf32 = tf32
        self.space = ParamSpace(model)
        self.origin = self.space.vector(model).to(self.device)
        self.space.check_vector(self.origin, "model's parameter vector")
        self.has_bn = any(isinstance(m, BATCH_NORM) for m in model.modules())
        recompute = self.bn is BatchNormMode.RECOMPUTE and self.has_bn
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
        auto = strategy is Strategy.AUTO
        plan = choose_engines(self.device, strategy.value, recompute=recompute, has_conv=has_conv,
                              compile=compile, workers=workers, threads=torch.get_num_threads())
        strategy, compile_mode, workers = Strategy(plan.strategy), plan.compile, plan.workers
        if batch_size is None and has_conv:
            batch_size = CONV_BATCH
        self.batch_size = None if batch_size is None else positive_int("batch_size", batch_size)
        self._forward = forward or default_forward
        self._target = target or default_target
        self.workers = workers
        self._channels_last = (has_conv2d and strategy is Strategy.LOOP) if channels_last == "auto" else bool(channels_last)
        if tune_allocator and plan.tune_allocator:
            _tune_allocator()

        # -- the private copies: the user's module is read here once and never again --------
        module = private_copy(model, self.device, self.bn.value, self._channels_last)
        self._module = module
        # Batch statistics of a single sample are undefined (torch refuses them): fold such a
        # last batch into the one before it, and refuse data of one sample outright.
        fold = self.has_bn and self.bn is not BatchNormMode.EVAL
        splits = [self._make_split("train", data, samples, seed, "samples", "the training data", fold)]
        if test is not None:
            splits.append(self._make_split("test", test, test_samples, seed + 1, "test_samples", "the test data", fold))
        if fold:
            for s in splits:
                require(s.n >= 2, f"bn={self.bn.value!r} normalizes with statistics of the data, which needs "
                                  f"at least 2 samples; the {s.name} data has {s.n} (use bn='eval')")
        metrics = self._probe(module, splits[0], accuracy)
        self._problem = Problem(self.space, self._forward, self._loss_sum, splits, metrics, recompute)
        self.splits, self.metrics = splits, metrics
        self._tables = SpanTables(self._problem, module)
        self._loop = LoopEngine(self._problem, module, self.origin, workers, compile_mode)
        self._vmap = None
        self.chunk = None
        if strategy is Strategy.VMAP:
            engine = VmapEngine(self._problem, module, chunk, rtol=1e-2 if tf32 else 1e-4)
            try:
                with float32_precision(self.device, tf32):
                    engine.probe(self.origin)
            except VmapError as exc:
                if not auto:
                    raise InputError(f"strategy='vmap' cannot evaluate this model: its forward failed under "
                                     f"torch.vmap ({exc}); use strategy='loop'") from exc
                warnings.warn(f"the forward does not run under torch.vmap ({exc}); evaluating point by point",
                              RuntimeWarning, stacklevel=2)
                strategy = Strategy.LOOP
            else:
                self._vmap, self.chunk = engine, engine.chunk
        self.strategy = strategy
        # Derivatives run on copies of a pristine template, never on the evaluation modules.
        self._derivatives = Derivatives(self._problem, ModulePool(copy.deepcopy(module), self.space, self.origin))
        self._products = Products(self._problem, self._derivatives.pool,
                                  batch_stats=self.has_bn and self.bn is BatchNormMode.BATCH)
        self._lock = threading.Lock()
        # Computed once: equal fingerprints mean equal values (data, loss, batch norm, outputs).
        self.fingerprint = _hash(self.loss_name, self.bn.value, self.keys, [s.batches for s in splits])

    # -- set-up ---------------------------------------------------------------------------
    def _make_split(self, name, data, samples, seed, samples_name, what, fold) -> Split:
        batches = as_batches(data, self.batch_size, samples, seed, self.device,
                             what=what, samples_name=samples_name, fold_single=fold)
        if self._channels_last:
            batches = [
                map_tensors(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t, b)
                for b in batches
            ]
        targets = [self._target(b) for b in batches]
        return Split(name, batches, targets, sum(batch_len(t) for t in targets))

    def _probe(self, module, split: Split, accuracy: bool) -> tuple[str, ...]:
        """Run the model once on the first batch: fail early and clearly, and learn the metrics."""
        batch, y = split.batches[0], split.targets[0]
        try:
            with torch.no_grad(), float32_precision(self.device, self.tf32):
                out = model_output(self._forward(module, batch))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here is the user's input
            raise InputError(
                f"the model failed on the first data batch ({type(exc).__name__}: {exc}); check the "
                "input shape, or pass forward=lambda model, batch: ... for models called otherwise"
            ) from exc
        require(isinstance(out, torch.Tensor),
                f"the forward pass must return a tensor (or an output with .logits), got {type(out).__name__}; "
                "pass forward=lambda model, batch: ... to pick one")
        try:
            value = self._loss_sum(out, y)
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"the loss {self.loss_name!r} failed on the model's output of shape {tuple(out.shape)} "
                f"and targets of shape {tuple(getattr(y, 'shape', ()))}: {exc}"
            ) from exc
        require(value.numel() == 1, "the loss must return a scalar (the mean over the batch)")
        classify = out.dim() == 2 and out.shape[1] > 1 and y.dim() == 1 and not y.is_floating_point()
        return ("loss", "accuracy") if classify and accuracy else ("loss",)

    @property
    def keys(self) -> tuple[str, ...]:
        """Names of the values :meth:`evaluate` returns, e.g. ``("loss", "accuracy", "test_loss", ...)``."""
        return self._problem.keys

    @property
    def n_samples(self) -> dict[str, int]:
        """Samples per split, e.g. ``{"train": 1000, "test": 200}``."""
        return {s.name: s.n for s in self.splits}

    # Internals read by tests and bench/surface.py's report.
    @property
    def _replicas(self):
        return self._loop._replicas

    @property
    def _compile_mode(self):
        return self._loop.compile.mode

    @property
    def _compile(self) -> bool:
        return self._loop.compile.active

    @property
    def _first(self):
        return self._tables.first

    @property
    def _span_cache(self):
        return self._tables.cache

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- evaluation -----------------------------------------------------------------------
    def _as_points(self, points, what: str = "points") -> torch.Tensor:
        if not isinstance(points, torch.Tensor):
            points = torch.as_tensor(points)
        if points.dim() == 1:
            points = points.unsqueeze(0)
        require(
            points.dim() == 2 and points.shape[1] == self.space.size,
            f"{what} must have shape [K, {self.space.size}] (one parameter vector per row), "
            f"got {tuple(points.shape)}",
        )
        return points.to(device=self.device, dtype=self.origin.dtype)

    def evaluate(self, points) -> dict[str, torch.Tensor]:
        """Loss and metrics at each of ``points`` [K, P] (or one vector [P]).

        Returns a dict of 1-D float64 tensors of length K, on the CPU: ``loss`` (mean over the
        data), ``accuracy`` (fraction, for classification), and ``test_loss``/``test_accuracy``
        when test data was given. A diverged point gives NaN, never an exception. Safe to call
        from several threads (calls run one at a time).

        Examples
        --------
        >>> f.evaluate(torch.stack([f.origin, f.origin + 0.1 * d]))["loss"]
        tensor([0.0312, 0.4127], dtype=torch.float64)
        """
        points = self._as_points(points)
        with self._lock, float32_precision(self.device, self.tf32):
            return self._named(self._evaluate(points))

    def evaluate_span(self, center, dirs, coords) -> dict[str, torch.Tensor]:
        """:meth:`evaluate` at the points ``center + coords @ dirs`` of a line, plane or grid.

        The same values, computed faster where the model allows: each point starts from the
        first layer's precomputed responses to the center and to each direction
        (:mod:`lossatlas.landscape.tables`) when that layer is linear or convolutional, the
        tables fit in 256 MiB, and the loop strategy runs eagerly; otherwise the points are
        evaluated as :meth:`evaluate` would.

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
        center = self._as_points(center, "center")
        require(center.shape[0] == 1, "center must be one parameter vector [P]")
        center = center[0]
        if not isinstance(dirs, torch.Tensor):
            dirs = torch.stack([torch.as_tensor(d) for d in dirs])
        dirs = self._as_points(dirs, "dirs")
        coords = torch.as_tensor(coords, dtype=self.origin.dtype, device=self.device)
        if coords.dim() == 1:
            coords = coords.unsqueeze(0)
        require(coords.dim() == 2 and coords.shape[1] == dirs.shape[0],
                f"coords must have shape [K, {dirs.shape[0]}] (one coordinate per direction), got {tuple(coords.shape)}")
        points = torch.addmm(center.unsqueeze(0), coords, dirs)
        with self._lock, float32_precision(self.device, self.tf32):
            tables = None
            if self.strategy is Strategy.LOOP and not self._loop.compile.active:
                tables = self._tables.get(center, dirs, self._loop.evaluate)
            if tables is None:
                return self._named(self._evaluate(points))
            return self._named(self._loop.evaluate(points, coords, tables))

    def _evaluate(self, points: torch.Tensor) -> torch.Tensor:
        if self._vmap is not None:
            return self._vmap.evaluate(points)
        return self._loop.evaluate(points)

    def _named(self, values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The columns of ``values`` [K, len(keys)] by name."""
        return {k: values[:, i] for i, k in enumerate(self.keys)}

    # -- derivatives ----------------------------------------------------------------------
    def grad(self, theta: torch.Tensor, split: str = "train") -> tuple[float, torch.Tensor]:
        """The mean loss over ``split`` and its gradient at ``theta`` (on the landscape's device).

        A function of ``theta`` alone: under ``bn="recompute"`` the batch-norm statistics are
        re-estimated at ``theta`` (the value equals ``evaluate(theta)["loss"]``) and held fixed
        while differentiating. Safe to call from several threads, also during an evaluation.

        Examples
        --------
        >>> value, g = f.grad(f.origin)
        """
        theta = self._as_points(theta, "theta")[0]
        with float32_precision(self.device, self.tf32):
            return self._derivatives.grad(theta, split)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, split: str = "train",
            mode: str = "reverse") -> torch.Tensor:
        """Hessian-vector product ``H(theta) v`` of the mean loss, exact over all of ``split``.

        ``mode="reverse"`` (default) takes it by double backward, ``"forward"`` forward-over-reverse
        (``torch.func.jvp`` of the gradient); they agree to rounding, and reverse is the faster of
        the two on a CPU (``bench/hessian.py`` measures both).

        Batch norm as in :meth:`grad`: running statistics (``"eval"``), batch statistics
        (``"batch"``), or statistics re-estimated at ``theta`` and held fixed (``"recompute"``).

        Examples
        --------
        >>> hv = f.hvp(f.origin, d)
        """
        theta = self._as_points(theta, "theta")[0]
        v = self._as_points(v, "v")[0]
        with float32_precision(self.device, self.tf32):
            return self._derivatives.hvp(theta, v, split, mode)

    @contextlib.contextmanager
    def retained(self, theta: torch.Tensor, split: str = "train", budget: int | None = None):
        """In the block, reverse-mode :meth:`hvp` at ``theta`` on ``split`` (this thread) is one
        backward pass on gradient graphs built on entry (about 1.4x faster on a ResNet-20; the
        curvature solvers enter it themselves; values equal to rounding). ``budget``: bytes they
        may take (default a quarter of the free memory; batches beyond it are recomputed). Yields
        the :class:`~lossatlas.landscape.derivatives.RetainedGraphs` (``.kept``, ``.bytes_per_batch``).

        >>> with f.retained(f.origin):
        ...     hv1, hv2 = f.hvp(f.origin, v1), f.hvp(f.origin, v2)
        """
        theta = self._as_points(theta, "theta")[0]
        with self._derivatives.retained(theta, split, budget,
                                        precision=lambda: float32_precision(self.device, self.tf32)) as graphs:
            yield graphs

    def products(self, theta: torch.Tensor, V: torch.Tensor, curvature: str = "hessian",
                 split: str = "train", mode: str = "reverse") -> torch.Tensor:
        """``M(theta) V`` for the rows of ``V [K, P]``, M the ``"hessian"``, ``"ggn"`` or empirical
        ``"fisher"`` of the mean loss over all of ``split``, in one pass (:mod:`.products`).

        Examples
        --------
        >>> GV = f.products(f.origin, torch.randn(4, f.space.size), curvature="ggn")
        """
        theta = self._as_points(theta, "theta")[0]
        V = self._as_points(V, "V")
        with float32_precision(self.device, self.tf32):
            return self._products.matmat(theta, V, curvature, split, mode)

    def subset_grad(self, theta, picks, split: str = "train", need_grad: bool = True):
        """Mean loss over the samples ``picks`` of ``split`` (indices, batch order) and its gradient."""
        theta = self._as_points(theta, "theta")[0]
        with float32_precision(self.device, self.tf32):
            return self._products.value_and_grad(theta, picks, split, need_grad)

    def _split(self, name: str) -> Split:
        return self._problem.split(name)

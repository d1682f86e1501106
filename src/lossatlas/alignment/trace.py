"""Which axes of a model's parameters share a permutation: found by tracing the model.

The model is traced with ``torch.fx.symbolic_trace`` and run once on an example input
(``ShapeProp``) so that every value's shape is known. Every value flowing through the graph
carries a *channel axis* (its dim and one label per position); each layer ties labels together:
a linear or conv layer ties its weight's input axis to the labels of its input and gives its
output fresh labels (shared with its weight's output axis and bias), batch and layer norm tie
their parameters and buffers to their input's labels, an addition ties its two operands' labels
position by position (a residual connection), a flatten repeats each channel's label over the
spatial positions it spreads into, a zero-padding of channels (ResNet's option-A shortcut) adds
fresh labels, and elementwise functions and pooling pass labels through. The input and output
of the model are fixed (never permuted).

The ties are edges of a graph over labels; its connected components are the *units*. Units that
appear in exactly the same axes (with the same multiplicity) form one *group*: a permutation of
the group's units, applied to every axis it appears in, leaves the model's function unchanged.
Anything the tracer does not know (a layer type, a function, a parameter used directly) is
refused by name before any work: a model is aligned fully or not at all.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._errors import InputError

# Layers that act on each position of a value independently (or leave channels where they are).
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.SiLU,
    nn.Mish, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU, nn.Tanhshrink,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
# Pooling over spatial dims: channels (dim 1) pass through.
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

_ELEMENTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.gelu, F.elu, F.leaky_relu, F.silu, F.softplus, F.mish, F.hardtanh,
    F.selu, F.celu, torch.tanh, torch.sigmoid, F.sigmoid, F.tanh, F.dropout, F.dropout1d, F.dropout2d,
    F.dropout3d, torch.abs, torch.neg, operator.neg, torch.exp, torch.square,
}
_ELEMENTWISE_METHODS = {
    "relu", "tanh", "sigmoid", "contiguous", "clone", "abs", "neg", "exp", "square", "detach",
}
_BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
           torch.div, operator.iadd, operator.imul}
_BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "mul_"}
_POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                   F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
                   F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}


@dataclass
class _Value:
    """A traced tensor: the dim of its channel axis and one label per position of that axis.

    ``dim is None``: a value whose every axis is fixed (the model's input and what derives from
    it alone)."""

    dim: int | None
    labels: np.ndarray | None = None


_FIXED = _Value(None)


@dataclass
class Trace:
    """The labels of a traced model: every parameter axis and activation axis, and their ties.

    Attributes
    ----------
    count : int
        Number of labels; label 0 stands for "fixed".
    edges : list of (array, array)
        Labels tied position by position.
    params : dict
        ``(tensor name, dim) -> labels`` of every parameter and buffer axis that carries units.
    activations : list of (node name, dim, labels)
        Channel axes of the values in the graph; ``features`` marks those that enter a linear or
        conv layer (the features activation matching compares).
    graph_key : list
        The traced graph's ops and targets, to check that two models have the same structure.
    """

    count: int = 1
    edges: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    activations: list = field(default_factory=list)
    features: set = field(default_factory=set)
    graph_key: list = field(default_factory=list)

    def new(self, n: int) -> np.ndarray:
        out = np.arange(self.count, self.count + n, dtype=np.int64)
        self.count += n
        return out

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        self.edges.append((np.asarray(a, np.int64), np.asarray(b, np.int64)))

    def fix(self, labels: np.ndarray) -> None:
        self.tie(labels, np.zeros_like(labels))

    def param(self, name: str, dim: int, labels: np.ndarray) -> None:
        key = (name, dim)
        if key in self.params:  # a layer called twice: both calls share its weights
            self.tie(self.params[key], labels)
        else:
            self.params[key] = labels


def _refuse(what: str) -> InputError:
    return InputError(
        f"cannot align this model: {what}. Alignment permutes hidden units only through layers "
        "it knows (Linear, Conv1d/2d/3d, BatchNorm, LayerNorm, elementwise activations, pooling, "
        "flatten, additions, concatenation, channel zero-padding); replace that layer or align "
        "another model"
    )


def _owner(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        name = getattr(kind, "__name__", str(kind))
        return f" in layer {path!r} ({name})"
    return ""


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def example_input(model: nn.Module, inputs) -> torch.Tensor:
    """A small batch to trace ``model`` with: ``inputs`` when given, else zeros of the built-in
    architecture's ``input_shape``, else of the ``in_features`` of a first ``nn.Linear`` (an MLP
    as users write it), checked by one forward pass in eval mode."""
    if inputs is not None:
        return inputs[:2]
    device = next(iter(model.parameters()), torch.zeros(0)).device
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return torch.zeros((2, *shape), device=device)
    needed = InputError(
        "the model's input shape is needed to trace it: pass data=, a batch of the model's "
        "inputs (a tensor or an (inputs, targets) pair)"
    )
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None)
    if not isinstance(first, nn.Linear):
        raise needed
    guess = torch.zeros((2, first.in_features), device=device, dtype=first.weight.dtype)
    was = model.training
    model.eval()  # no batch-norm statistics move
    try:
        with torch.no_grad():
            model(guess)
    except Exception:  # noqa: BLE001 - the guess was wrong: the first layer registered is not the first called
        raise needed from None
    finally:
        model.train(was)
    return guess


def trace_model(model: nn.Module, example: torch.Tensor) -> Trace:
    """Trace ``model`` (a copy of it, in eval mode) and label its axes.

    Raises :class:`InputError` naming the first layer or function it cannot permute through.
    """
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    for name, mod in model.named_modules():
        if torch.nn.utils.parametrize.is_parametrized(mod):
            raise _refuse(f"layer {name!r} ({type(mod).__name__}) is parametrized (torch.nn.utils.parametrize)")
    work = copy.deepcopy(model).eval()
    try:
        gm = symbolic_trace(work)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError on control flow, ...)
        raise InputError(f"cannot align this model: torch.fx could not trace it ({type(exc).__name__}: {exc})") from exc
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    trace = Trace()
    env: dict = {}
    for node in gm.graph.nodes:
        trace.graph_key.append((node.op, str(node.target), _shape(node)))
        env[node] = _visit(gm, node, env, trace)
        value = env[node]
        if isinstance(value, _Value) and value.dim is not None:
            trace.activations.append((node.name, value.dim, value.labels))
    return trace


def _arg(env, a):
    if isinstance(a, torch.fx.Node):
        return env[a]
    return None  # a constant


def _tracked(value) -> bool:
    return isinstance(value, _Value) and value.dim is not None


def _in_labels(trace: Trace, x, dim: int, n: int, what: str) -> np.ndarray:
    """The labels of ``x``'s axis ``dim`` (of size n): fresh fixed labels for a fixed value."""
    if not isinstance(x, _Value):
        raise _refuse(f"{what} takes an input the tracer does not follow")
    if x.dim is None:
        labels = trace.new(n)
        trace.fix(labels)
        return labels
    if x.dim != dim or len(x.labels) != n:
        raise _refuse(f"{what} acts on an axis that is not the channel axis of its input")
    return x.labels


def _visit(gm, node, env, trace: Trace):
    op = node.op
    if op == "placeholder":
        return _FIXED
    if op == "output":
        for a in node.all_input_nodes:
            v = env[a]
            if _tracked(v):
                trace.fix(v.labels)
        return None
    if op == "get_attr":
        raise _refuse(f"the tensor {node.target!r} is used directly{_owner(node)}, not through a known layer")
    shape = _shape(node)
    args = [_arg(env, a) for a in node.args]
    if op == "call_module":
        return _module(gm.get_submodule(node.target), node.target, node, args, shape, trace)
    if op in ("call_function", "call_method"):
        return _function(node, env, args, shape, trace)
    raise _refuse(f"graph operation {op!r}")


def _check_params(mod, name, allowed) -> None:
    own = {n for n, _ in mod.named_parameters(recurse=False)} | {n for n, _ in mod.named_buffers(recurse=False)}
    extra = own - set(allowed)
    if extra:
        raise _refuse(f"layer {name!r} ({type(mod).__name__}) holds tensors {sorted(extra)} it does not know")


def _module(mod, name, node, args, shape, trace: Trace):
    x = args[0] if args else None
    kind = type(mod).__name__
    if isinstance(mod, nn.Linear) and type(mod).forward is nn.Linear.forward:
        _check_params(mod, name, ("weight", "bias"))
        in_shape = _shape(node.args[0])
        lab = _in_labels(trace, x, len(in_shape) - 1, mod.in_features, f"layer {name!r} ({kind})")
        if _tracked(x):
            trace.features.add(node.args[0].name)
        trace.param(f"{name}.weight", 1, lab)
        out = trace.new(mod.out_features)
        trace.param(f"{name}.weight", 0, out)
        if mod.bias is not None:
            trace.param(f"{name}.bias", 0, out)
        return _Value(len(shape) - 1, out)
    if isinstance(mod, _CONVS) and type(mod).forward in tuple(c.forward for c in _CONVS):
        _check_params(mod, name, ("weight", "bias"))
        if mod.groups != 1:
            raise _refuse(f"layer {name!r} ({kind}) is a grouped convolution (groups={mod.groups})")
        lab = _in_labels(trace, x, 1, mod.in_channels, f"layer {name!r} ({kind})")
        if _tracked(x):
            trace.features.add(node.args[0].name)
        trace.param(f"{name}.weight", 1, lab)
        out = trace.new(mod.out_channels)
        trace.param(f"{name}.weight", 0, out)
        if mod.bias is not None:
            trace.param(f"{name}.bias", 0, out)
        return _Value(1, out)
    if isinstance(mod, _BATCHNORMS) and type(mod) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        _check_params(mod, name, ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
        lab = _in_labels(trace, x, 1, mod.num_features, f"layer {name!r} ({kind})")
        for t in ("weight", "bias", "running_mean", "running_var"):
            if getattr(mod, t, None) is not None:
                trace.param(f"{name}.{t}", 0, lab)
        return _Value(1, lab) if _tracked(x) else _FIXED
    if type(mod) is nn.LayerNorm:
        _check_params(mod, name, ("weight", "bias"))
        if len(mod.normalized_shape) != 1:
            raise _refuse(f"layer {name!r} (LayerNorm) normalizes over several dims")
        lab = _in_labels(trace, x, len(shape) - 1, mod.normalized_shape[0], f"layer {name!r} ({kind})")
        for t in ("weight", "bias"):
            if getattr(mod, t, None) is not None:
                trace.param(f"{name}.{t}", 0, lab)
        return _Value(len(shape) - 1, lab) if _tracked(x) else _FIXED
    if isinstance(mod, _ELEMENTWISE_MODULES) and not list(mod.parameters(recurse=False)):
        return x
    if isinstance(mod, _POOL_MODULES):
        return _channel_preserving(x, f"layer {name!r} ({kind})")
    if type(mod) is nn.Flatten:
        return _flatten(x, _shape(node.args[0]), mod.start_dim, mod.end_dim, trace)
    raise _refuse(f"layer {name!r} ({kind}) is of a type it cannot permute")


def _channel_preserving(x, what):
    if _tracked(x) and x.dim != 1:
        raise _refuse(f"{what} pools over the channel axis")
    return x


def _flatten(x, in_shape, start, end, trace: Trace):
    if not _tracked(x):
        return x
    nd = len(in_shape)
    start, end = start % nd, end % nd
    if x.dim < start:
        return x
    if x.dim > end:
        return _Value(x.dim - (end - start), x.labels)
    inner = math.prod(in_shape[x.dim + 1 : end + 1])
    total = math.prod(in_shape[start : end + 1])
    channel = (np.arange(total) // inner) % len(x.labels)
    return _Value(start, x.labels[channel])


def _function(node, env, args, shape, trace: Trace):
    target = node.target
    method = node.op == "call_method"
    what = f"{'method' if method else 'function'} {getattr(target, '__name__', target)!r}{_owner(node)}"
    x = args[0] if args else None
    kwargs = node.kwargs
    if (not method and target in _ELEMENTWISE_FUNCTIONS) or (method and target in _ELEMENTWISE_METHODS):
        return x
    if method and target in ("size", "dim") or (not method and target is getattr):
        return None  # plain numbers
    if (not method and target in _BINARY) or (method and target in _BINARY_METHODS):
        return _binary(node, args, kwargs, trace, what)
    if not method and target in _POOL_FUNCTIONS:
        return _channel_preserving(x, what)
    if (method and target == "flatten") or (not method and target is torch.flatten):
        start = node.args[1] if len(node.args) > 1 else kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else kwargs.get("end_dim", -1)
        return _flatten(x, _shape(node.args[0]), start, end, trace)
    if method and target in ("view", "reshape") or (not method and target is torch.reshape):
        return _reshape(x, _shape(node.args[0]), shape, trace, what)
    if (method and target in _REDUCTIONS) or (not method and target in (torch.mean, torch.sum, torch.amax)):
        return _reduce(node, x, _shape(node.args[0]), kwargs, what)
    if not method and target is F.pad:
        return _pad(node, x, shape, trace, what)
    if not method and target is operator.getitem:
        return _getitem(node, x, _shape(node.args[0]), trace, what)
    if not method and target is torch.cat:
        return _cat(node, env, trace, what, shape)
    raise _refuse(f"{what} is not one it can permute through")


def _binary(node, args, kwargs, trace, what):
    tensors = [(a, v) for a, v in zip(node.args, args) if isinstance(a, torch.fx.Node) and _shape(a) is not None]
    values = [v for _, v in tensors]
    if len(values) < 2:
        return values[0] if values else None
    (na, a), (nb, b) = tensors[:2]
    if _shape(na) != _shape(nb):
        if math.prod(_shape(na)) == 1 or math.prod(_shape(nb)) == 1:  # a scalar tensor
            return a if math.prod(_shape(nb)) == 1 else b
        raise _refuse(f"{what} broadcasts tensors of shapes {_shape(na)} and {_shape(nb)}")
    if _tracked(a) and _tracked(b):
        if a.dim != b.dim:
            raise _refuse(f"{what} combines values whose channels lie on different axes")
        trace.tie(a.labels, b.labels)
        return a
    for v in (a, b):
        if _tracked(v):
            trace.fix(v.labels)
    return _FIXED


def _reshape(x, in_shape, out_shape, trace, what):
    if not _tracked(x):
        return x
    for k in range(1, len(in_shape)):
        if tuple(out_shape) == tuple(in_shape[:k]) + (math.prod(in_shape[k:]),):
            return _flatten(x, in_shape, k, -1, trace)
    if tuple(out_shape) == tuple(in_shape):
        return x
    raise _refuse(f"{what} reshapes {tuple(in_shape)} to {tuple(out_shape)}, which is not a flatten")


def _reduce(node, x, in_shape, kwargs, what):
    if not _tracked(x):
        return x
    dims = node.args[1] if len(node.args) > 1 else kwargs.get("dim")
    keep = kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    if dims is None:
        raise _refuse(f"{what} reduces over every axis")
    dims = [d % len(in_shape) for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
    if x.dim in dims:
        raise _refuse(f"{what} reduces over the channel axis")
    return _Value(x.dim if keep else x.dim - sum(d < x.dim for d in dims), x.labels)


def _pad(node, x, shape, trace, what):
    if not _tracked(x):
        return x
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    nd = len(shape)
    k = nd - 1 - x.dim  # pairs count from the last dim
    if 2 * k + 1 >= len(pad) or (pad[2 * k] == 0 and pad[2 * k + 1] == 0):
        return x
    before, after = pad[2 * k], pad[2 * k + 1]
    if mode != "constant" or before < 0 or after < 0:
        raise _refuse(f"{what} pads or crops the channel axis other than with constants")
    # The padded channels are constants: fresh labels, free to move among themselves.
    return _Value(x.dim, np.concatenate([trace.new(before), x.labels, trace.new(after)]))


def _getitem(node, x, in_shape, trace, what):
    if x is None or in_shape is None:
        raise _refuse(f"{what} indexes a value that is not a tensor")
    if not _tracked(x):
        return x
    index = node.args[1]
    index = index if isinstance(index, tuple) else (index,)
    if any(not isinstance(i, slice) for i in index) or len(index) > len(in_shape):
        raise _refuse(f"{what} indexes with {index!r}; only slices are followed")
    if x.dim < len(index):
        s = index[x.dim]
        return _Value(x.dim, x.labels[s])
    return x


def _cat(node, env, trace, what, shape):
    nodes = list(node.args[0])
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    dim %= len(shape)
    values = [env[n] for n in nodes]
    if not any(_tracked(v) for v in values):
        return _FIXED
    dims = {v.dim for v in values if _tracked(v)}
    if len(dims) != 1:
        raise _refuse(f"{what} joins values whose channels lie on different axes")
    channel = dims.pop()
    if dim != channel:
        first = next(v for v in values if _tracked(v))
        for v in values:
            if _tracked(v):
                trace.tie(first.labels, v.labels)
            else:
                trace.fix(first.labels)
        return first
    parts = []
    for n, v in zip(nodes, values):
        if _tracked(v):
            parts.append(v.labels)
        else:
            fixed = trace.new(_shape(n)[dim])
            trace.fix(fixed)
            parts.append(fixed)
    return _Value(channel, np.concatenate(parts))

"""First-layer span tables: the first layer's output along a line or plane, computed once.

When the first layer the data meets is a linear or convolutional layer (called once, on an input
no parameter acts on), its output is affine in the coordinates of a span,
``z = z(center) + sum_k coords[k] * z(dirs[k])`` (Li et al.'s directions change every layer's
weights; this layer's response to each of them is computed once per data batch). Each point then
starts from those tables instead of the layer's matmul or convolution: most of an MLP's work on
wide inputs (7.1x ``loss-landscapes`` on a 784-100-10 MLP, ``bench/surface.py``).

The tables take ``(1 + D)`` times the layer's output over the data; above
:data:`SPAN_TABLE_BYTES` they are not built. They pay only where the layer does more per output
than combining the tables costs (fan-in at least :data:`SPAN_MIN_FAN_IN_PER_TABLE` per table):
measured, a conv of fan-in 9 gained nothing, a linear layer of fan-in 64 gained 11% of the whole
evaluation. The shortcut is checked against the plain evaluation at two points the first time it
is set up for a center and directions, and dropped for good if they disagree (a parameter acting
on the data outside any module would make it wrong).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .problem import Problem

# The most memory the first layer's precomputed outputs may take.
SPAN_TABLE_BYTES = 256 << 20
# The layer's fan-in must be at least this times the number of tables (1 + D).
SPAN_MIN_FAN_IN_PER_TABLE = 4
# Layers whose output is linear in their parameters (weight and bias together) for a fixed input.
LINEAR_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _Reached(Exception):
    """Ends a forward pass where the data reaches the first layer, carrying that layer's input."""


class Tables:
    """Per split and batch, the first layer's outputs at the center and along each direction."""

    def __init__(self, layer_name: str, tables: list[list[list[torch.Tensor]]]):
        self.layer_name, self.tables = layer_name, tables

    def first_output(self, split_index: int, batch_index: int, c: list[float]) -> torch.Tensor:
        t = self.tables[split_index][batch_index]
        z = torch.add(t[0], t[1], alpha=c[0])  # a new tensor: in-place layers after it are safe
        for j in range(1, len(c)):
            z.add_(t[j + 1], alpha=c[j])
        return z


class SpanTables:
    """Finds the first layer once, and keeps the tables of the last center and directions."""

    def __init__(self, problem: Problem, module: nn.Module):
        self.problem, self.module = problem, module
        self.first = None  # (name, parameter names, entries); None = not looked for yet, False = none
        self.cache = None

    def first_layer(self):
        """``(module name, its parameter names, their entries)`` of the first layer the data meets
        when it is linear in its parameters and called once per forward; else False."""
        if self.first is not None:
            return self.first
        module, calls, handles = self.module, [], []
        for name, m in module.named_modules():
            if next(m.parameters(recurse=False), None) is not None:
                handles.append(m.register_forward_pre_hook(lambda mod, args, name=name: calls.append(name)))
        try:
            with torch.no_grad():
                self.problem.forward(module, self.problem.splits[0].batches[0])
        finally:
            for h in handles:
                h.remove()
        self.first = False
        if calls:
            name = calls[0]
            layer = module.get_submodule(name)
            entries = {e.name: e for e in self.problem.space.entries}
            pnames = [n for n, _ in layer.named_parameters(recurse=False)]
            full = [f"{name}.{n}" if name else n for n in pnames]
            if (isinstance(layer, LINEAR_IN_PARAMS) and calls.count(name) == 1
                    and getattr(layer, "padding_mode", "zeros") == "zeros" and all(f in entries for f in full)):
                self.first = (name, pnames, [entries[f] for f in full])
        return self.first

    def get(self, center: torch.Tensor, dirs: torch.Tensor, evaluate: Callable) -> Tables | None:
        """The tables for ``center`` and ``dirs`` [D, P], or None where the shortcut does not apply.

        ``evaluate(points, coords=None, tables=None)`` is the loop engine's, used for the check.
        """
        first = self.first_layer()
        if not first:
            return None
        cache = self.cache
        if (cache is not None and cache["dirs"].shape == dirs.shape and torch.equal(cache["center"], center)
                and torch.equal(cache["dirs"], dirs)):
            return cache["tables"]
        tables = self._build(first, center, dirs)
        if tables is None:
            return None
        probe = torch.tensor([[0.5] * len(dirs), [(-0.7) ** (k + 1) for k in range(len(dirs))]],
                             dtype=center.dtype, device=center.device)
        points = torch.addmm(center.unsqueeze(0), probe, dirs)
        if not torch.allclose(evaluate(points, probe, tables), evaluate(points), rtol=1e-4, atol=1e-6, equal_nan=True):
            self.first = False
            return None
        self.cache = {"center": center.clone(), "dirs": dirs.clone(), "tables": tables}
        return tables

    def _build(self, first, center: torch.Tensor, dirs: torch.Tensor) -> Tables | None:
        from torch.func import functional_call

        name, pnames, entries = first
        layer = self.module.get_submodule(name)
        weight = layer.weight
        fan_in = weight[0].numel() if weight.dim() > 1 else 1
        if fan_in < SPAN_MIN_FAN_IN_PER_TABLE * (1 + dirs.shape[0]):
            return None
        armed = [True]

        def stop(mod, args):
            if armed[0]:
                raise _Reached(args[0])

        own = dict(layer.named_parameters(recurse=False))

        def params(vec):
            # In the layout of the layer's own parameters (channels-last for 2-D convolutions),
            # so that the outputs come in the layout the following layers see in plain evaluation.
            return {n: torch.empty_like(own[n]).copy_(vec[e.slice].view(e.shape)) for n, e in zip(pnames, entries)}

        vectors = [center, *dirs]
        splits = self.problem.splits
        n_batches = sum(len(split.batches) for split in splits)
        tables: list[list[list[torch.Tensor]]] = []
        handle = layer.register_forward_pre_hook(stop)
        try:
            with torch.no_grad():
                for split in splits:
                    per_batch = []
                    for batch in split.batches:
                        try:
                            self.problem.forward(self.module, batch)
                            return None  # the layer was never reached: not the first layer after all
                        except _Reached as reached:
                            x = reached.args[0]
                        armed[0] = False
                        # A list, not a stack: each output keeps the layer's memory format
                        # (channels-last), which the next layers are laid out for.
                        z = [functional_call(layer, params(v), (x,)) for v in vectors]
                        armed[0] = True
                        if len(z) * z[0].numel() * z[0].element_size() * n_batches > SPAN_TABLE_BYTES:
                            return None
                        per_batch.append(z)
                    tables.append(per_batch)
        finally:
            handle.remove()
        return Tables(name, tables)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["cache"] = None  # rebuilt on first use
        return state

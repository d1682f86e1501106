"""Permutation groups from a traced model's labels, and permutations applied to tensors.

A group is a set of units (connected components of the tied labels) that appear in exactly the
same axes, each the same number of times; permuting the group's units on every one of those axes
at once leaves the model's function unchanged. Each axis a group appears in is stored as an index
array ``[units, copies]``: the positions of each unit on that axis (several after a flatten, one
per spatial position), so a permutation of the units becomes a gather along the axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .trace import Trace


@dataclass
class Group:
    """Units that share one permutation.

    Attributes
    ----------
    size : int
        Number of units.
    params : dict
        ``(tensor name, dim) -> int array [size, copies]``: where each unit lies on that axis.
    features : list of (node name, dim, int array [size, copies])
        The activation axes that enter a linear or conv layer (for activation matching).
    """

    size: int
    params: dict = field(default_factory=dict)
    features: list = field(default_factory=list)


@dataclass
class PermutationSpec:
    """Every permutation group of a model, found by :func:`find_groups`.

    Attributes
    ----------
    groups : list of Group
    shapes : dict
        ``tensor name -> shape`` of every permuted tensor.
    graph_key : list
        The traced graph (ops, targets, shapes): two models share a spec only if they match.
    """

    groups: list
    shapes: dict
    graph_key: list

    def describe(self) -> list[dict]:
        """Plain description of each group: its size and the tensor axes it permutes."""
        return [{"units": g.size, "axes": sorted(f"{n}:{d}" for n, d in g.params)} for g in self.groups]

    def permute(self, tensors: dict, perms: list) -> dict:
        """``tensors`` (name -> tensor) with each group's permutation applied.

        ``perms[g][u]`` is the unit of the given tensors that moves to slot ``u``; tensors this
        spec does not permute are returned as they are.
        """
        index = self.index(perms)
        out = dict(tensors)
        for name, dims in index.items():
            t = tensors[name]
            for d, idx in dims.items():
                t = t.index_select(d, torch.as_tensor(idx, device=t.device))
            out[name] = t
        return out

    def index(self, perms: list) -> dict:
        """``name -> {dim: gather index}`` of the permutations ``perms``."""
        return {name: self.tensor_index(name, perms) for name in self.shapes}

    def tensor_index(self, name: str, perms: list, skip: int | None = None) -> dict:
        """``{dim: gather index}`` of one tensor (its dim ``skip`` left out)."""
        if not hasattr(self, "_axes"):
            self._axes: dict = {}
            for gi, g in enumerate(self.groups):
                for (n, d), pos in g.params.items():
                    self._axes.setdefault(n, []).append((gi, d, pos))
        dims: dict = {}
        for gi, d, pos in self._axes.get(name, ()):
            if d == skip:
                continue
            if d not in dims:
                dims[d] = np.arange(self.shapes[name][d])
            dims[d][pos] = dims[d][pos[np.asarray(perms[gi])]]
        return dims


def find_groups(trace: Trace, shapes: dict) -> PermutationSpec:
    """The permutation groups of a traced model (``shapes``: name -> shape of its tensors)."""
    n = trace.count
    if trace.edges:
        a = np.concatenate([e[0] for e in trace.edges])
        b = np.concatenate([e[1] for e in trace.edges])
    else:
        a = b = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, unit = connected_components(graph, directed=False)
    fixed = unit[0]

    axes = [("param", key, labels) for key, labels in trace.params.items()]
    axes += [("act", (name, dim), labels) for name, dim, labels in trace.activations]
    # Signature of a unit: the axes it appears in and how often on each.
    seen: dict[int, list] = {}
    for i, (_, _, labels) in enumerate(axes):
        units, counts = np.unique(unit[labels], return_counts=True)
        for u, c in zip(units.tolist(), counts.tolist()):
            seen.setdefault(u, []).append((i, c))
    by_signature: dict[tuple, list[int]] = {}
    for u, sig in seen.items():
        if u != fixed:
            by_signature.setdefault(tuple(sig), []).append(u)

    groups = []
    for sig, units in by_signature.items():
        if len(units) < 2 or not any(axes[i][0] == "param" for i, _ in sig):
            continue  # nothing to permute
        # Order the units by where they lie on the group's first axis (the same for two models
        # traced alike).
        first = unit[axes[sig[0][0]][2]]
        order = {u: k for k, u in enumerate(dict.fromkeys(first[np.isin(first, units)].tolist()))}
        rank = np.full(n, -1, np.int64)
        rank[np.array(list(order), np.int64)] = np.arange(len(order))
        g = Group(size=len(order))
        for i, copies in sig:
            kind, key, labels = axes[i]
            r = rank[unit[labels]]
            pos = np.nonzero(r >= 0)[0]
            pos = pos[np.argsort(r[pos], kind="stable")].reshape(len(order), copies)
            if kind == "param":
                g.params[key] = pos
            elif key[0] in trace.features:
                g.features.append((key[0], key[1], pos))
        groups.append(g)
    used = {name for g in groups for name, _ in g.params}
    return PermutationSpec(groups, {k: tuple(v) for k, v in shapes.items() if k in used}, trace.graph_key)

"""``align``: a copy of a model with its hidden units permuted to match a reference model."""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._errors import InputError, parse_enum, positive_int, require
from .groups import PermutationSpec, find_groups
from .match import activation_matching, weight_matching
from .trace import example_input, trace_model


class AlignMethod(str, enum.Enum):
    """How the units of two models are matched."""

    WEIGHTS = "weights"  # weight matching (Ainsworth et al. 2023, Sec. 3.2)
    ACTIVATIONS = "activations"  # activation matching on a batch of data (their Sec. 3.1)


@dataclass
class Permutation:
    """The permutation that aligns one model to a reference, found by :func:`find_permutation`.

    Attributes
    ----------
    method : AlignMethod
    spec : PermutationSpec
        The model's permutation groups.
    perms : list of int arrays
        ``perms[g][u]``: the model's unit of group ``g`` moved to slot ``u``.
    sweeps : int
        Weight matching's sweeps over the groups (1 for activation matching).
    """

    method: AlignMethod
    spec: PermutationSpec
    perms: list
    sweeps: int = 1

    @property
    def is_identity(self) -> bool:
        return all(np.array_equal(p, np.arange(len(p))) for p in self.perms)

    def fingerprint(self) -> str:
        """A short hash of the permutation (every group's assignment and the axes it permutes)."""
        from ..store import fingerprint

        return fingerprint(self.spec.describe(), [np.asarray(p, np.int64) for p in self.perms])

    def apply(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the permutation applied (``model`` itself is untouched)."""
        out = copy.deepcopy(model)
        tensors = dict(out.named_parameters()) | dict(out.named_buffers())
        missing = sorted(set(self.spec.shapes) - set(tensors))
        require(not missing, f"the model has no tensors {missing}; apply the permutation to the model it was found for")
        permuted = self.spec.permute({k: tensors[k].detach() for k in self.spec.shapes}, self.perms)
        with torch.no_grad():
            for name in self.spec.shapes:
                tensors[name].copy_(permuted[name])
        return out


def _inputs(data):
    """The input batches in ``data``: a tensor, an (inputs, targets) pair or an iterable of them."""
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor) \
            and isinstance(data[1], torch.Tensor) and data[0].shape[0] == data[1].shape[0]:
        return [data[0]]
    batches = []
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        require(isinstance(x, torch.Tensor), "data must hold tensors: a batch of inputs, an (inputs, targets) "
                                             "pair, or a DataLoader / list of such pairs")
        batches.append(x)
    require(batches, "data holds no batch")
    return batches


def _tensors(model: nn.Module, names, device) -> dict:
    all_ = dict(model.named_parameters()) | dict(model.named_buffers())
    return {n: all_[n].detach().to(device=device, dtype=torch.float64) for n in names}


def find_permutation(reference: nn.Module, model: nn.Module, method="weights", data=None, seed: int = 0,
                     max_sweeps: int = 100) -> Permutation:
    """The permutation of ``model``'s hidden units that best matches ``reference``'s.

    See :func:`align` for the parameters; this returns the :class:`Permutation` itself (with
    its fingerprint) rather than the aligned copy.

    Examples
    --------
    >>> perm = find_permutation(net_a, net_b, method="weights")
    >>> aligned = perm.apply(net_b)
    """
    method = parse_enum(AlignMethod, method, "alignment method")
    seed = positive_int("seed", seed, minimum=0)
    max_sweeps = positive_int("max_sweeps", max_sweeps)
    require(isinstance(reference, nn.Module) and isinstance(model, nn.Module),
            "reference and model must be torch.nn.Module instances")
    batches = _inputs(data)
    require(method is AlignMethod.WEIGHTS or batches is not None,
            "activation matching needs data=: a batch of the model's inputs (a tensor or an (inputs, targets) pair)")
    ref_params = {n: tuple(p.shape) for n, p in reference.state_dict().items()}
    params = {n: tuple(p.shape) for n, p in model.state_dict().items()}
    require(ref_params == params, "reference and model have different parameters or shapes; alignment needs two "
                                  "models of one architecture")
    device = next(iter(model.parameters())).device
    example = example_input(model, batches[0] if batches else None).to(device)
    trace = trace_model(model, example)
    shapes = dict(params)
    spec = find_groups(trace, shapes)
    ref_trace = trace_model(reference, example.to(next(iter(reference.parameters())).device))
    require(ref_trace.graph_key == trace.graph_key,
            "reference and model compute different graphs; alignment needs two models of one architecture")
    if method is AlignMethod.WEIGHTS:
        # Parameters only: on ResNet-20 (channels 8, digits) matching the batch-norm statistics
        # too left a linear barrier of 1.99 where parameters alone leave 1.49.
        names = [n for n, _ in model.named_parameters() if n in spec.shapes]
        perms, sweeps = weight_matching(spec, _tensors(reference, names, device), _tensors(model, names, device),
                                        seed=seed, max_sweeps=max_sweeps)
        return Permutation(method, spec, perms, sweeps)
    from torch.fx import symbolic_trace

    # Copies in eval mode: recording activations must not update the models' batch-norm statistics.
    ref_gm = symbolic_trace(copy.deepcopy(reference).to(device).eval())
    model_gm = symbolic_trace(copy.deepcopy(model).eval())
    perms = activation_matching(spec, ref_gm, model_gm, [b.to(device) for b in batches])
    return Permutation(method, spec, perms, 1)


def align(reference: nn.Module, model: nn.Module, method="weights", data=None, seed: int = 0,
          max_sweeps: int = 100) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted to match ``reference``.

    The copy computes exactly what ``model`` computes (up to float rounding): each permutation
    moves a group of units on every axis they appear in (the rows of one layer, the columns of
    the next, its batch-norm parameters and statistics, every layer a residual connection ties to
    them). The groups are found by tracing the model (``torch.fx``), not from a per-architecture
    table; a model with a layer or function the tracer cannot permute through is refused with an
    :class:`InputError` naming it, before any work. Neither model is changed.

    Parameters
    ----------
    reference : torch.nn.Module
        The model to match.
    model : torch.nn.Module
        The model to permute; same architecture as ``reference``.
    method : {"weights", "activations"}
        ``"weights"``: weight matching (Ainsworth et al. 2023, "Git Re-Basin"), coordinate descent
        over the groups, each step a linear assignment, in a seeded random order until no group
        improves; the parameters are matched (batch-norm statistics are permuted, not matched).
        ``"activations"``: each group's units assigned by the correlation of their activations
        on ``data`` (both models in eval mode).
    data : Tensor, (inputs, targets) pair, or iterable of batches, optional
        Inputs for activation matching; for weight matching only needed to trace a model that
        does not record its ``input_shape`` (the built-in architectures do).
    seed : int
        Order of the groups in weight matching.
    max_sweeps : int
        Most sweeps over the groups in weight matching.

    Returns
    -------
    torch.nn.Module
        The aligned copy, in ``model``'s mode and on its device.

    Examples
    --------
    >>> import lossatlas as la
    >>> aligned = la.align(net_a, net_b, method="weights")
    >>> torch.allclose(aligned(X), net_b(X), atol=1e-5)
    True
    >>> ds = la.connect(f, f.origin, la.ParamSpace(aligned).vector(aligned), method="linear")
    """
    perm = find_permutation(reference, model, method=method, data=data, seed=seed, max_sweeps=max_sweeps)
    return perm.apply(model)


__all__ = ["AlignMethod", "Permutation", "align", "find_permutation"]

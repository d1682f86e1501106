"""Spectra of the curvature per parameter group: the top eigenvalues and the trace of each
diagonal block ``M[g, g]`` (a layer, a block of layers, or a user's list of names), all groups
in one call.

Eigenvalues: one Lanczos run per group, all advanced in lockstep, so each step is one pass
through the data for every group at once (a block of products, :meth:`Landscape.products`).
Traces: Hutchinson with full-length Rademacher vectors ``v``; ``sum_{i in g} v_i (M v)_i`` is
an unbiased estimate of ``tr(M[g, g])`` for every group from the same product (the cross terms
have mean zero), so the traces of all groups cost ``samples`` products together.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .._errors import InputError, positive_int, require
from ..progress import progress_bar
from .eigen import SMALL
from .lanczos import Lanczos
from .operators import HessianOperator, generator_for, point_settings
from .trace import rademacher_rows


def parameter_groups(space, groups="layer") -> dict[str, list[str]]:
    """Parameter names by group.

    ``"layer"``: the parameters of each module (``"0.weight"`` and ``"0.bias"`` form ``"0"``);
    ``"param"``: each parameter tensor alone; a mapping ``{group: [names or glob patterns]}``; or a
    list of glob patterns, each its own group (``["conv*", "fc.*"]``). Every group must match at
    least one parameter; a parameter may belong to several groups.

    Examples
    --------
    >>> parameter_groups(ParamSpace(model), {"features": ["0.*", "2.*"], "head": ["4.*"]})
    """
    names = [e.name for e in space.entries]
    if groups == "layer":
        out: dict[str, list[str]] = {}
        for n in names:
            out.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(n)
        return out
    if groups == "param":
        return {n: [n] for n in names}
    if isinstance(groups, str):
        raise InputError(f"groups must be 'layer', 'param', a mapping of group -> names, or a list of name "
                         f"patterns; got {groups!r}")
    if isinstance(groups, Mapping):
        spec = {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in groups.items()}
    elif isinstance(groups, Sequence):
        spec = {str(p): [str(p)] for p in groups}
    else:
        raise InputError(f"groups must be 'layer', 'param', a mapping or a list of patterns, got {type(groups).__name__}")
    require(bool(spec), "give at least one parameter group")
    out = {}
    for g, patterns in spec.items():
        members = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        require(bool(members), f"group {g!r} matches no parameter ({patterns}); the parameters are {names}")
        out[g] = members
    return out


def group_masks(space, groups) -> dict[str, torch.Tensor]:
    """A boolean mask over the flat parameter vector for each group of :func:`parameter_groups`."""
    by_name = {e.name: e for e in space.entries}
    masks = {}
    for g, members in parameter_groups(space, groups).items():
        keep = torch.zeros(space.size, dtype=torch.bool)
        for n in members:
            keep[by_name[n].slice] = True
        masks[g] = keep
    return masks


def block_spectra(
    f,
    theta=None,
    groups="layer",
    k: int = 1,
    *,
    curvature="hessian",
    trace_samples: int = 0,
    tol: float = 1e-3,
    maxiter: int | None = None,
    seed: int = 0,
    split: str = "train",
    block: int = 8,
    progress=False,
):
    """Top eigenvalues (and traces) of the curvature's diagonal blocks, one per parameter group.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    groups : "layer", "param", mapping or list of patterns
        The parameter groups (:func:`parameter_groups`).
    k : int
        Top eigenvalues per group (fewer where a group has fewer parameters; NaN fills).
    curvature : {"hessian", "ggn", "fisher"}
    trace_samples : int
        Rademacher products for the traces of all groups together (0: no traces).
    tol, maxiter, seed
        As in :func:`~lossatlas.curvature.eigen.hessian_eigenvalues` (Lanczos).
    split : str
    block : int
        Vectors per pass through the data for the traces.
    progress : bool or callable(done, total)

    Returns
    -------
    xarray.Dataset
        Over ``group`` (and ``rank``): ``eigenvalue (group, rank)``, ``size`` (parameters),
        ``converged``, and ``trace``, ``trace_stderr`` when asked; attrs ``settings`` (every
        setting, the point and data fingerprints) and ``members`` (the names in each group).

    Examples
    --------
    >>> ds = block_spectra(f, f.origin, groups="layer", k=3, trace_samples=50)
    >>> ds["eigenvalue"].sel(rank=1).to_series()
    """
    import xarray as xr

    k = positive_int("k", k)
    trace_samples = positive_int("trace_samples", trace_samples, minimum=0)
    require(isinstance(tol, (int, float)) and 0 < tol < 1, f"tol must be a number in (0, 1), got {tol!r}")
    members = parameter_groups(f.space, groups)
    masks = group_masks(f.space, groups)
    full = HessianOperator(f, theta, split, curvature=curvature)
    ops = {g: HessianOperator(f, full.theta, split, curvature=curvature, keep=m) for g, m in masks.items()}
    names = list(ops)
    maxiter = positive_int("maxiter", maxiter, minimum=2) if maxiter is not None else max(100, 20 * k)
    gen = generator_for(seed, full.device)
    values = np.full((len(names), k), np.nan)
    converged = np.zeros(len(names), dtype=bool)
    total = maxiter + trace_samples
    with progress_bar(progress, total, "block spectra") as advance:
        steps = _lockstep(full, ops, names, k, tol, maxiter, gen, values, converged, advance)
        trace = stderr = None
        if trace_samples:
            trace, stderr = _traces(full, ops, names, trace_samples, gen, block, advance)
        advance(max(0, total - steps - trace_samples))
    data = {"eigenvalue": (("group", "rank"), values),
            "size": ("group", np.asarray([ops[g].size for g in names], dtype=np.int64)),
            "converged": ("group", converged)}
    if trace is not None:
        data["trace"] = ("group", trace)
        data["trace_stderr"] = ("group", stderr)
    settings = {"groups": groups if isinstance(groups, str) else {g: members[g] for g in names}, "k": k,
                "curvature": full.curvature.value, "trace_samples": trace_samples, "tol": float(tol),
                "maxiter": maxiter, "seed": int(seed), "split": split, **point_settings(f, full.theta)}
    return xr.Dataset(data, coords={"group": names, "rank": np.arange(1, k + 1)},
                      attrs={"settings": settings, "members": {g: members[g] for g in names}})


def _lockstep(full, ops, names, k, tol, maxiter, gen, values, converged, advance) -> int:
    """Lanczos on every group's block, one batched product per step for all unfinished groups."""
    cache: dict[str, torch.Tensor] = {}
    runs = {}
    for g in names:
        v0 = torch.randn(ops[g].size, generator=gen, dtype=full.dtype, device=full.device)
        runs[g] = Lanczos(lambda _v, g=g: cache[g], v0, capacity=min(maxiter, ops[g].size), generator=gen)
    active, steps = list(names), 0
    while active:
        ready = [g for g in active if runs[g].pending is not None]
        if not ready:
            break
        V = torch.zeros(len(ready), full.size, dtype=full.dtype, device=full.device)
        for i, g in enumerate(ready):
            V[i, ops[g].keep] = runs[g].pending
        MV = full.matmat(V)
        steps += 1
        advance(1)
        for i, g in enumerate(ready):
            cache[g] = MV[i, ops[g].keep]
            runs[g].step()
        active = []
        for g in ready:
            lz = runs[g]
            if lz.failed:
                continue
            need = min(k, ops[g].size)
            done = lz.exhausted or lz.m >= lz.capacity
            if lz.m >= need and (not lz.restarted or done):
                vals, _, res = lz.ritz()
                top = np.argsort(vals)[::-1][:need]
                floor = SMALL * float(np.max(np.abs(vals)))
                ok = bool(np.all(res[top] <= tol * np.maximum(np.abs(vals[top]), floor)))
                if ok or done:
                    values[names.index(g), :need] = vals[top]
                    converged[names.index(g)] = ok
                    continue
            if not done:
                active.append(g)
    return steps


def _traces(full, ops, names, samples, gen, block, advance):
    per = np.zeros((len(names), samples))
    done = 0
    while done < samples:
        V = rademacher_rows(min(block, samples - done), full.size, gen, full.device)
        MV = full.matmat(V.to(full.dtype)).double()
        prod = V * MV
        for i, g in enumerate(names):
            per[i, done:done + V.shape[0]] = prod[:, ops[g].keep.to(prod.device)].sum(1).cpu().numpy()
        done += V.shape[0]
        advance(V.shape[0])
    se = per.std(axis=1, ddof=1) / math.sqrt(samples) if samples > 1 else np.full(len(names), np.nan)
    return per.mean(axis=1), se

"""AutoNEB (Draxler et al. 2018): a chain of pivots relaxed towards a minimum-energy path.

Each cycle inserts pivots, then relaxes the interior pivots by SGD with momentum on the loss
gradient projected perpendicular to the path's tangent (the nudged elastic band of Jonsson et
al. 1998, with Henkelman and Jonsson's 2000 tangent). Along the path the pivots are kept in place
either by springs or, as in the reference code (fdraxler/PyTorch-AutoNEB, spring constant
``inf``), by redistributing them at the spacing they were inserted with before every step.
After the first cycle's equally spaced pivots, every cycle inserts pivots where the loss between
two pivots rises most above their linear interpolation, and the saddle's loss is read off the
dense path (``subpivots`` points between each pair of pivots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import InputError, positive_int, require
from ..curvature.operators import generator_for
from ..progress import progress_bar
from .objective import PathTraining
from .path import check_endpoints, endpoint_settings, path_dataset


@dataclass(frozen=True)
class NEBCycle:
    """One AutoNEB cycle: insert pivots, then ``steps`` SGD steps at learning rate ``lr``.

    ``insert``: ``"equal"`` puts ``count`` equally spaced pivots into every gap; ``"highest"``
    puts one pivot into each of the (at most) ``count`` gaps whose loss rises most above the
    linear interpolation of its ends.
    """

    steps: int
    lr: float
    insert: str = "highest"
    count: int = 2


def scaled_cycles(scale: float = 0.1) -> tuple[NEBCycle, ...]:
    """The reference's CIFAR-10 schedule (``configs/cifar10-resnet20.yaml``) with steps times ``scale``.

    The reference runs 14 cycles: 3 equally spaced pivots and 1000 steps at lr 0.1, three more
    cycles of 1000 steps at 0.1 and two of 2000 at 0.1, then four of 1000 at 0.01 and four at
    0.001; every cycle after the first inserts up to 2 pivots at the highest rises. SGD with
    momentum (0.9 here; the reference names "SGD-Momentum" without a value).

    Examples
    --------
    >>> sum(c.steps for c in scaled_cycles(0.1))
    1600
    """
    require(scale > 0, f"scale must be positive, got {scale}")

    def n(s):
        return max(1, int(round(s * scale)))

    return (
        NEBCycle(n(1000), 0.1, "equal", 3),
        *[NEBCycle(n(1000), 0.1)] * 3,
        *[NEBCycle(n(2000), 0.1)] * 2,
        *[NEBCycle(n(1000), 0.01)] * 4,
        *[NEBCycle(n(1000), 0.001)] * 4,
    )


# The default: the reference schedule with a tenth of its steps (1,600 in all), sized for the
# small models and data sets lossatlas studies on one machine.
DEFAULT_CYCLES = scaled_cycles(0.1)


def fill_chain(chain: torch.Tensor, alphas: list[list[float]], weights: torch.Tensor):
    """Insert pivots at fractions ``alphas[i]`` of gap ``i``; the relative spacing follows."""
    rows, new_w = [chain[0]], []
    for i, gap in enumerate(alphas):
        last = 0.0
        for alpha in [*sorted(gap), 1.0]:
            rows.append((1 - alpha) * chain[i] + alpha * chain[i + 1])
            new_w.append((alpha - last) * float(weights[i]))
            last = alpha
    w = torch.tensor(new_w, dtype=torch.float64)
    return torch.stack(rows), w / w.sum()


def redistribute(chain: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The pivots moved along the piecewise-linear chain to arc-length spacing ``weights``."""
    d = (chain[1:] - chain[:-1]).double().norm(dim=1).cpu()
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), d.cumsum(0)])
    targets = (weights / weights.sum()).cumsum(0)[:-1] * cum[-1]
    out = chain.clone()
    for i, pos in enumerate(targets.tolist(), start=1):
        j = int(torch.searchsorted(cum, torch.tensor(pos, dtype=torch.float64), right=True)) - 1
        j = min(max(j, 0), len(d) - 1)
        u = (pos - float(cum[j])) / float(d[j]) if float(d[j]) > 0 else 0.0
        u = min(max(u, 0.0), 1.0)
        out[i] = (1 - u) * chain[j] + u * chain[j + 1]
    return out


def tangent(prev, x, nxt, l_prev: float, l: float, l_next: float) -> torch.Tensor:
    """Henkelman and Jonsson's (2000) tangent at pivot ``x``: towards the higher neighbour, and a
    loss-weighted mix of both segments at a local extremum (so the path does not kink)."""

    def unit(v):
        n = v.double().norm()
        return v / n.to(v.dtype) if float(n) > 0 else v

    t_next, t_prev = unit(nxt - x), unit(x - prev)
    if l_next > l > l_prev:
        tau = t_next
    elif l_next < l < l_prev:
        tau = t_prev
    else:
        big = max(abs(l_next - l), abs(l_prev - l))
        small = min(abs(l_next - l), abs(l_prev - l))
        tau = t_next * big + t_prev * small if l_next > l_prev else t_next * small + t_prev * big
    tau = unit(tau)
    return tau if float(tau.double().norm()) > 0 else t_next


def highest_gaps(losses: np.ndarray, pivots: int, subpivots: int, count: int, threshold: float):
    """Where to insert: per gap, the fraction of the highest loss rise above the linear
    interpolation of its pivots' losses, for the ``count`` gaps of largest rise whose rise,
    relative to the pivots' loss range, exceeds ``threshold`` (the reference's 0.1)."""
    step = subpivots + 1
    piv = losses[::step]
    span = float(np.nanmax(piv) - np.nanmin(piv)) + 1e-12
    alphas = np.linspace(0.0, 1.0, subpivots + 2)[1:-1]
    best, where = np.full(pivots - 1, -np.inf), np.zeros(pivots - 1)
    for i in range(pivots - 1):
        sub = losses[i * step + 1 : i * step + 1 + subpivots]
        score = (sub - ((1 - alphas) * piv[i] + alphas * piv[i + 1])) / span
        score = np.where(np.isfinite(score), score, -np.inf)
        k = int(np.argmax(score))
        best[i], where[i] = score[k], alphas[k]
    chosen = set(np.argsort(best)[::-1][:count].tolist())
    return [[float(where[i])] if i in chosen and best[i] > threshold else [] for i in range(pivots - 1)]


def _dense(chain: torch.Tensor, subpivots: int):
    """Arc-length ``t`` of the dense path and a function building its points."""
    n = chain.shape[0]
    d = (chain[1:] - chain[:-1]).double().norm(dim=1).cpu().numpy()
    cum = np.concatenate([[0.0], np.cumsum(d)])
    s = cum / cum[-1] if cum[-1] > 0 else np.linspace(0.0, 1.0, n)
    alphas = np.linspace(0.0, 1.0, subpivots + 2)[:-1]
    index = [(i, a) for i in range(n - 1) for a in alphas] + [(n - 2, 1.0)]
    t = np.array([s[i] + a * (s[i + 1] - s[i]) for i, a in index])

    def points(lo, hi):
        return torch.stack([(1 - a) * chain[i] + a * chain[i + 1] for i, a in index[lo:hi]])

    return t, points, s


def neb_path(
    f,
    theta_a,
    theta_b,
    *,
    cycles=None,
    momentum: float = 0.9,
    spring: float = math.inf,
    subpivots: int = 9,
    insert_threshold: float = 0.1,
    seed: int = 0,
    progress=False,
    **training,
):
    """Relax a chain of pivots between two minima by AutoNEB and evaluate the dense path.

    Parameters
    ----------
    f : Landscape
        Evaluates the dense path after every cycle (``bn="recompute"`` for batch-norm models).
    theta_a, theta_b : Tensor
        The two minima (the chain's fixed ends).
    cycles : sequence of NEBCycle, optional
        Default :data:`DEFAULT_CYCLES` (the reference's CIFAR schedule with a tenth of its
        steps, see :func:`scaled_cycles`).
    momentum : float
        SGD momentum on the pivots.
    spring : float
        ``inf`` (default, the reference's): redistribute the pivots at their inserted spacing
        before every step. A finite value adds spring forces of that constant along the tangent
        instead.
    subpivots : int
        Points evaluated between two pivots (the reference's 9): the saddle and the insertion
        scores are read off this dense path.
    insert_threshold : float
        Least rise above the linear interpolation, relative to the pivots' loss range, for a
        gap to get a pivot (the reference's 0.1).
    seed : int
        Batch order (a generator on the landscape's device).
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per step of every cycle.
    **training
        :class:`PathTraining` options (``model``, ``data``, ``loss``, ``batch_size``,
        ``forward``, ``target``): one mini-batch per step, the same for every pivot; without
        ``model`` and ``data``, the exact gradient of ``f``.

    Returns
    -------
    xarray.Dataset
        Over ``t`` (arc length of the dense path, 0 to 1): as :func:`linear_path`; plus
        ``pivots`` over ``(pivot, param)`` and ``pivot_t``; attrs ``cycles`` and ``saddle_loss``
        per cycle.

    Examples
    --------
    >>> ds = neb_path(f, theta_a, theta_b, cycles=scaled_cycles(0.02))
    >>> ds.attrs["barrier"]
    """
    a, b = check_endpoints(f, theta_a, theta_b)
    cycles = tuple(DEFAULT_CYCLES if cycles is None else cycles)
    require(bool(cycles), "give at least one NEB cycle")
    for c in cycles:
        require(isinstance(c, NEBCycle), f"cycles must be NEBCycle objects, got {type(c).__name__}")
        positive_int("NEBCycle.steps", c.steps)
        positive_int("NEBCycle.count", c.count)
        require(c.lr > 0, f"NEBCycle.lr must be positive, got {c.lr}")
        if c.insert not in ("equal", "highest"):
            raise InputError(f"unknown NEB insertion {c.insert!r}; choose one of ['equal', 'highest']")
    require(0 <= momentum < 1, f"momentum must be in [0, 1), got {momentum}")
    require(spring > 0, f"spring must be positive (inf: redistribution), got {spring}")
    subpivots = positive_int("subpivots", subpivots, minimum=0)
    how = PathTraining.of(training, "method 'neb'")
    objective = how.objective(f, generator_for(seed, a.device))
    batches = objective.batches()
    chain, weights = torch.stack([a, b]), torch.ones(1, dtype=torch.float64)
    ds, saddles = None, []
    with progress_bar(progress, sum(c.steps for c in cycles), "AutoNEB") as advance:
        for cyc in cycles:
            if cyc.insert == "equal" or ds is None:
                alphas = [[(i + 1) / (cyc.count + 1) for i in range(cyc.count)]] * (chain.shape[0] - 1)
            else:
                alphas = highest_gaps(ds["loss"].values, chain.shape[0], subpivots, cyc.count, insert_threshold)
            chain, weights = fill_chain(chain, alphas, weights)
            chain = _relax(objective, batches, chain, weights, cyc, momentum, spring, advance)
            t, points, pivot_t = _dense(chain, subpivots)
            ds = path_dataset(f, t, points, "neb", {})
            saddles.append(float(np.nanmax(ds["loss"].values)))
    settings = {
        "method": "neb", "cycles": [[c.steps, c.lr, c.insert, c.count] for c in cycles],
        "momentum": float(momentum), "spring": "inf" if math.isinf(spring) else float(spring),
        "subpivots": subpivots, "insert_threshold": float(insert_threshold),
        "seed": int(seed), **how.settings(), **endpoint_settings(f, a, b),
    }
    ds.attrs.update(settings=settings, cycles=len(cycles), saddle_loss=saddles)
    ds["pivots"] = (("pivot", "param"), chain.detach().cpu().numpy())
    ds["pivot_t"] = ("pivot", pivot_t)
    return ds


def _relax(objective, batches, chain, weights, cyc: NEBCycle, momentum, spring, advance):
    n = chain.shape[0]
    chain = chain.clone()
    buf = torch.zeros_like(chain)
    for _ in range(cyc.steps):
        if math.isinf(spring):
            chain = redistribute(chain, weights)
        batch = next(batches)
        losses, grads = [], torch.zeros_like(chain)
        for i in range(n):
            if 0 < i < n - 1:
                value, g = objective.value_and_grad(chain[i], batch)
                grads[i] = g
            else:
                value = objective.value(chain[i], batch)
            losses.append(value)
        if n > 2:
            d = (chain[1:] - chain[:-1]).double().norm(dim=1)
            target = (weights / weights.sum()).to(d.device) * d.sum()
        for i in range(1, n - 1):
            tau = tangent(chain[i - 1], chain[i], chain[i + 1], losses[i - 1], losses[i], losses[i + 1])
            grads[i] -= torch.dot(grads[i], tau) * tau
            if not math.isinf(spring):
                # Gradient of (spring / 2) sum (d_j - target_j)^2 along the tangent.
                stretch = float((d[i - 1] - target[i - 1]) - (d[i] - target[i]))
                grads[i] += spring * stretch * tau
        buf.mul_(momentum).add_(grads)
        chain = chain - cyc.lr * buf
        advance(1)
        if not torch.isfinite(chain).all():
            break  # diverged: the dense path's NaN losses flag it
    return chain

"""Finding the permutation of each group: weight matching and activation matching.

Weight matching (Ainsworth et al. 2023, "Git Re-Basin", Sec. 3.2) maximizes the summed inner
product of the two models' weights, sum over tensors of <W_ref, P W_model>, by coordinate descent:
for one group at a time, with the other groups' permutations held fixed, the best permutation is
a linear assignment (``scipy.optimize.linear_sum_assignment``) on the units' summed weight
correlations. Groups are visited in a seeded random order, sweep after sweep, until no group's
assignment improves. Activation matching (their Sec. 3.1; Li et al. 2016) assigns each group's
units by the correlation of their activations on a batch of data: one assignment per group.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .groups import PermutationSpec


def _unit_rows(t: torch.Tensor, dim: int, pos: np.ndarray) -> torch.Tensor:
    """``t``'s slices along ``dim`` gathered per unit: ``[units, copies * rest]``."""
    moved = t.movedim(dim, 0)
    rows = moved[torch.as_tensor(pos.reshape(-1), device=t.device)]
    return rows.reshape(pos.shape[0], -1)


def _assign(cost: np.ndarray) -> np.ndarray:
    _, cols = linear_sum_assignment(cost, maximize=True)
    return cols


def weight_matching(spec: PermutationSpec, ref: dict, model: dict, seed: int = 0, max_sweeps: int = 100):
    """Permutations making ``model``'s tensors closest to ``ref``'s (name -> float64 tensor).

    Only the tensors given are matched (the parameters: as in Ainsworth et al., batch-norm
    statistics are permuted with their units but are not weights to match).

    Returns
    -------
    perms : list of int arrays
        One per group of ``spec``: ``perms[g][u]`` is the model's unit moved to slot ``u``.
    sweeps : int
        Sweeps over all groups until none improved.
    """
    rng = np.random.default_rng(seed)
    perms = [np.arange(g.size) for g in spec.groups]
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for gi in rng.permutation(len(spec.groups)):
            g = spec.groups[gi]
            cost = torch.zeros(g.size, g.size, dtype=torch.float64)
            for (name, d), pos in g.params.items():
                if name not in model:
                    continue  # a buffer: permuted with its units, but not a weight to match
                # The model's tensor with every other axis already permuted; this one left as is.
                t = model[name]
                for od, idx in spec.tensor_index(name, perms, skip=d).items():
                    t = t.index_select(od, torch.as_tensor(idx, device=t.device))
                a = _unit_rows(ref[name], d, pos)
                b = _unit_rows(t, d, pos)
                cost += (a @ b.T).cpu()
            c = cost.numpy()
            new = _assign(c)
            old_score = c[np.arange(g.size), perms[gi]].sum()
            new_score = c[np.arange(g.size), new].sum()
            if new_score > old_score + 1e-12 * max(1.0, abs(old_score)):
                perms[gi] = new
                improved = True
        if not improved:
            break
    return perms, sweeps


class _Recorder(torch.fx.Interpreter):
    """Runs a traced model and keeps the outputs of the named nodes."""

    def __init__(self, gm, wanted):
        super().__init__(gm)
        self.wanted = wanted
        self.kept = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.wanted:
            self.kept[n.name] = out
        return out


def activation_matching(spec: PermutationSpec, ref_gm, model_gm, batches) -> list:
    """Permutations of ``model_gm``'s units most correlated with ``ref_gm``'s, on ``batches``.

    Each group's correlation matrix sums, over the activations entering a linear or conv layer
    that carry the group (the units' outputs after their nonlinearity), the Pearson correlation
    of every reference unit with every model unit over samples (and spatial positions).
    """
    wanted = {name for g in spec.groups for name, _, _ in g.features}
    moments = [[None] * len(g.features) for g in spec.groups]
    with torch.no_grad():
        for x in batches:
            rec_r, rec_m = _Recorder(ref_gm, wanted), _Recorder(model_gm, wanted)
            rec_r.run(x)
            rec_m.run(x)
            for gi, g in enumerate(spec.groups):
                for fi, (name, dim, pos) in enumerate(g.features):
                    a = _samples(rec_r.kept[name], dim, pos)
                    b = _samples(rec_m.kept[name], dim, pos)
                    m = [a.shape[0], a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), a.T @ b]
                    old = moments[gi][fi]
                    moments[gi][fi] = m if old is None else [o + v for o, v in zip(old, m)]
    perms = []
    for gi, g in enumerate(spec.groups):
        corr = np.zeros((g.size, g.size))
        for n, sa, sb, saa, sbb, sab in moments[gi]:
            mean_a, mean_b = sa / n, sb / n
            cov = sab / n - torch.outer(mean_a, mean_b)
            std_a = (saa / n - mean_a**2).clamp_min(0).sqrt()
            std_b = (sbb / n - mean_b**2).clamp_min(0).sqrt()
            # A dead unit (zero variance) correlates with nothing: 0, not NaN.
            denom = torch.outer(std_a, std_b)
            corr += torch.where(denom > 0, cov / denom.clamp_min(1e-30), torch.zeros_like(cov)).cpu().numpy()
        perms.append(_assign(corr) if g.features else np.arange(g.size))
    return perms


def _samples(value: torch.Tensor, dim: int, pos: np.ndarray) -> torch.Tensor:
    """Activations as ``[samples * positions * copies, units]`` in float64."""
    v = value.movedim(dim, -1).to(torch.float64)
    v = v.reshape(-1, v.shape[-1])[:, torch.as_tensor(pos.reshape(-1), device=v.device)]
    units, copies = pos.shape
    return v.reshape(-1, units, copies).transpose(1, 2).reshape(-1, units)

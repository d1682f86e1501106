"""A quadratic Bezier curve between two minima, trained as in Garipov et al. (2018).

The curve ``phi(t) = (1 - t)^2 a + 2 t (1 - t) c + t^2 b`` keeps its ends at the two minima;
only the bend ``c`` is trained, from the midpoint, by SGD with momentum on
``E_{t ~ U(0, 1)} L(phi(t))``: one ``t`` per mini-batch. This works on any model through
flat parameter vectors (no curve layers to rewrite the model with, unlike
timgaripov/dnn-mode-connectivity). Batch-norm statistics are recomputed at each evaluated ``t``
(a Landscape with ``bn="recompute"``): without it, as in the reference code's pitfall, the
curve's ends do not reproduce the minima's losses.

Weight decay is Garipov et al.'s: ``0.5 wd ||phi(t)||^2`` at each step's sampled ``t`` (their
``l2_regularizer`` over every parameter of the curve point), so its gradient in the bend is
``2 t (1 - t) wd phi(t)``, not a decay of the bend itself.
"""

from __future__ import annotations

import numpy as np
import torch

from .._errors import positive_int, require
from ..curvature.operators import generator_for
from ..grids import line_axis
from ..progress import progress_bar
from .objective import PathTraining
from .path import check_endpoints, endpoint_settings, path_dataset


def garipov_schedule(lr: float, fraction: float) -> float:
    """Garipov et al.'s learning rate at ``fraction`` of training: constant for the first half,
    then linear down to 1% at 90%, then 1%."""
    if fraction <= 0.5:
        return lr
    if fraction <= 0.9:
        return lr * (1.0 - (fraction - 0.5) / 0.4 * 0.99)
    return lr * 0.01


def bezier_point(a: torch.Tensor, c: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """``(1 - t)^2 a + 2 t (1 - t) c + t^2 b`` for a scalar ``t`` or a [K] array of them ([K, P])."""
    tt = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if tt.dim() == 1:
        tt = tt.unsqueeze(1)
    return (1 - tt) ** 2 * a + 2 * tt * (1 - tt) * c + tt**2 * b


def bezier_curve(
    f,
    theta_a,
    theta_b,
    *,
    steps: int = 1000,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    points: int = 61,
    seed: int = 0,
    progress=False,
    **training,
):
    """Train the bend of a quadratic Bezier curve between two minima and evaluate the curve.

    Parameters
    ----------
    f : Landscape
        Evaluates the curve (``bn="recompute"`` for batch-norm models: statistics at each t).
    theta_a, theta_b : Tensor
        The two minima (the curve's fixed ends).
    steps : int
        SGD steps (one mini-batch and one ``t`` each). Garipov et al. train 600 epochs on
        CIFAR; the default is scaled for small models.
    lr, momentum, weight_decay : float
        SGD with momentum on ``c`` with Garipov et al.'s schedule (:func:`garipov_schedule`;
        their momentum 0.9). Weight decay regularizes the curve point as theirs does: the
        objective of a step is ``L(phi(t)) + 0.5 weight_decay ||phi(t)||^2`` (recorded as
        ``weight_decay_on="curve_point"``); off by default so the curve minimizes the plain
        loss the barrier is measured on.
    points : int
        Values of ``t`` evaluated (Garipov et al. use 61).
    seed : int
        The ``t`` draws and the batch order (a generator on the landscape's device).
    progress : bool or callable(done, total)
        A progress bar (True), a callback, or nothing; one unit per training step.
    **training
        :class:`PathTraining` options: ``model`` and ``data`` (mini-batches of the training data
        with train-mode batch norm, required for batch-norm models; without them the bend is
        trained on ``f``'s own loss over all its data), ``loss``, ``batch_size``, ``forward``,
        ``target``.

    Returns
    -------
    xarray.Dataset
        Over ``t``: as :func:`linear_path`, plus ``bend`` (over ``param``) and
        ``train_loss_trace`` (over ``step``: the mini-batch loss of each step).

    Examples
    --------
    >>> ds = bezier_curve(f, theta_a, theta_b, model=model, data=(X, y), steps=500)
    >>> ds.attrs["barrier"] < linear_path(f, theta_a, theta_b).attrs["barrier"]
    True
    """
    a, b = check_endpoints(f, theta_a, theta_b)
    steps = positive_int("steps", steps)
    points = positive_int("points", points, minimum=2)
    require(lr > 0, f"lr must be positive, got {lr}")
    require(0 <= momentum < 1, f"momentum must be in [0, 1), got {momentum}")
    require(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
    how = PathTraining.of(training, "method 'bezier'")
    gen = generator_for(seed, a.device)
    objective = how.objective(f, gen)
    c = 0.5 * (a + b)
    buf = torch.zeros_like(c)
    trace = np.empty(steps)
    batches = objective.batches()
    with progress_bar(progress, steps, "Bezier curve") as advance:
        for s in range(steps):
            t = float(torch.rand((), generator=gen, device=a.device))
            point = bezier_point(a, c, b, t)
            value, g = objective.value_and_grad(point, next(batches))
            trace[s] = value
            # d phi / d c = 2 t (1 - t) I, for the loss and for the decay 0.5 wd ||phi(t)||^2 alike
            grad_c = 2 * t * (1 - t) * (g + weight_decay * point)
            buf.mul_(momentum).add_(grad_c)
            c = c - garipov_schedule(lr, s / steps) * buf
            advance(1)
            if not torch.isfinite(c).all():
                trace[s + 1:] = np.nan
                break  # a diverged bend is kept and flagged by the NaN losses of its curve
    t_grid = line_axis(0.0, 1.0, points)
    settings = {
        "method": "bezier", "steps": steps, "lr": float(lr), "momentum": float(momentum),
        "weight_decay": float(weight_decay), "weight_decay_on": "curve_point", "points": points, "seed": int(seed),
        **how.settings(),
        **endpoint_settings(f, a, b),
    }
    extra = {"data": {"bend": ("param", c.detach().cpu().numpy()), "train_loss_trace": ("step", trace)}}
    return path_dataset(f, t_grid, lambda i, j: bezier_point(a, c, b, t_grid[i:j]), "bezier", settings, extra)

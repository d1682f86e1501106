"""``connect``: one entry point for every path between two minima."""

from __future__ import annotations

import enum
import inspect

from .._errors import parse_enum, require
from .bezier import bezier_curve
from .linear import linear_path
from .neb import neb_path
from .objective import PathTraining


class Method(str, enum.Enum):
    """How two minima are connected."""

    LINEAR = "linear"  # the straight line
    BEZIER = "bezier"  # a trained quadratic Bezier curve (Garipov et al. 2018)
    NEB = "neb"  # AutoNEB's relaxed chain of pivots (Draxler et al. 2018)


_FUNCTIONS = {Method.LINEAR: linear_path, Method.BEZIER: bezier_curve, Method.NEB: neb_path}


def connect(f, theta_a, theta_b, method="linear", **options):
    """A low-loss path between two minima, evaluated on ``f``.

    Parameters
    ----------
    f : Landscape
        Evaluates the path (train and, when it has them, test loss and accuracy). Models with
        batch norm need ``bn="recompute"``: statistics of their own at every point.
    theta_a, theta_b : Tensor
        The two minima.
    method : {"linear", "bezier", "neb"}
    **options
        The method's options: :func:`linear_path` (``points``), :func:`bezier_curve`
        (``model``, ``data``, ``steps``, ``lr``, ...), :func:`neb_path` (``cycles``,
        ``spring``, ``model``, ``data``, ...).

    Returns
    -------
    xarray.Dataset
        Over ``t`` in [0, 1]: ``loss`` (and ``accuracy``, ``test_loss``, ``test_accuracy``);
        ``attrs["barrier"]``: the standard barrier, ``max_t L(t) - ((1 - t) L(0) + t L(1))`` over
        ``t`` in [0, 1] (Frankle et al. 2020; :func:`.barrier.barrier_stats`), 0 on a path that
        never rises above the chord between its ends; ``attrs["saddle_height"]``: the highest
        loss minus the higher end (``test_barrier``, ``test_saddle_height`` likewise).

    Examples
    --------
    >>> ds = connect(f, theta_a, theta_b, method="linear")
    >>> ds.attrs["barrier"]
    >>> connect(f, theta_a, theta_b, method="bezier", model=model, data=(X, y)).attrs["barrier"]
    """
    method = parse_enum(Method, method, "connection method")
    fn = _FUNCTIONS[method]
    params = inspect.signature(fn).parameters.values()
    accepted = [p.name for p in params if p.name not in ("f", "theta_a", "theta_b") and p.kind != p.VAR_KEYWORD]
    if any(p.kind == p.VAR_KEYWORD for p in params):  # the training methods' shared options
        accepted += PathTraining.names()
    unknown = sorted(set(options) - set(accepted))
    require(not unknown, f"method {method.value!r} does not take {unknown}; it accepts {accepted}")
    return fn(f, theta_a, theta_b, **options)

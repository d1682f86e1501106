"""Hessian directions: the top eigenvectors of the curvature as the axes of a plane.

Each eigenvector is scaled by the same number, so the directions stay eigenvectors (a rescaling
per filter or per parameter, as some tools apply to them, changes ``H d`` out of ``d``'s span).
The scale makes a unit step comparable to Li et al.'s filter-normalized directions: by default
the norm of theta over the parameters the directions cover, as a filter-normalized direction's
norm equals that of the filters it is drawn for.
"""

from __future__ import annotations

import torch

from .._errors import positive_int, require
from .eigen import hessian_eigenvalues
from .operators import point_settings, resolve_theta


class HessianDirections(list):
    """A list of direction tensors (usable wherever directions are), with how they were made.

    Attributes
    ----------
    eigenvalues : torch.Tensor
        The eigenvalue of each direction (largest first).
    scale : float
        The norm every unit eigenvector was multiplied by.
    settings : dict
        Every setting that changes the directions (for a store's attrs).
    """

    def __init__(self, vectors, eigenvalues, scale: float, settings: dict):
        super().__init__(vectors)
        self.eigenvalues = eigenvalues
        self.scale = float(scale)
        self.settings = settings


def hessian_directions(f, theta=None, n: int = 2, *, curvature="hessian", scale="theta", ignore=None,
                       tol: float = 1e-6, seed: int = 0, split: str = "train") -> HessianDirections:
    """The top ``n`` eigenvectors of the Hessian (or GGN/Fisher) at ``theta``, scaled as a whole.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    n : int
        Number of directions.
    curvature : {"hessian", "ggn", "fisher"}
    scale : "theta", "unit" or float
        The one factor applied to every unit eigenvector: ``"theta"`` the norm of theta over the
        kept parameters (comparable to filter-normalized directions), ``"unit"`` 1, or a number.
    ignore : None, "biasbn" or name patterns
        Eigenvectors of the Hessian restricted to the kept parameters (zero elsewhere).
    tol : float
        Lanczos tolerance (tight, so that the vectors are eigenvectors to working precision).
    seed : int
        Lanczos start vector.
    split : str

    Returns
    -------
    HessianDirections
        A list of ``n`` 1-D tensors (each an eigenvector of norm ``scale``, sign fixed so that its
        largest entry in magnitude is positive), with ``eigenvalues``, ``scale`` and ``settings``.

    Examples
    --------
    >>> dirs = la.hessian_directions(f, f.origin, n=2)
    >>> ds = la.plane(f, f.origin, dirs, span=1.0, steps=51)
    """
    n = positive_int("n", n)
    x = resolve_theta(f, theta)
    res = hessian_eigenvalues(f, x, k=n, curvature=curvature, tol=tol, seed=seed, split=split, ignore=ignore,
                              return_vectors=True)
    keep = f.space.mask(ignore).to(x.device) if ignore is not None else torch.ones_like(x, dtype=torch.bool)
    if scale == "theta":
        factor = float(x[keep].double().norm())
    elif scale == "unit":
        factor = 1.0
    else:
        require(isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0,
                f"scale must be 'theta', 'unit' or a positive number, got {scale!r}")
        factor = float(scale)
    require(factor > 0, "theta is zero on the kept parameters; pass scale='unit' or a number")
    vectors = []
    for v in res.vectors:
        v = v / v.double().norm().to(v.dtype)
        if float(v[int(v.abs().argmax())]) < 0:
            v = -v
        vectors.append((v * factor).to(x.dtype))
    settings = {"directions": "hessian", "n": n, "curvature": str(getattr(curvature, "value", curvature)),
                "scale": factor, "scale_rule": str(scale), "ignore": ignore if ignore is None or isinstance(ignore, str)
                else list(ignore), "tol": float(tol), "seed": int(seed), "split": split,
                "eigenvalues": [float(e) for e in res.values], **point_settings(f, x)}
    return HessianDirections(vectors, res.values, factor, settings)

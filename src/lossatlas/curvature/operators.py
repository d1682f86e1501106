"""The Hessian of a landscape's mean loss as a linear operator.

Every product is exact over all of the landscape's data: :meth:`Landscape.hvp` sums the
Hessian-vector products of every batch, so nothing here depends on a Hessian batch size
(PyHessian's power iteration, run on one small batch, varies with which batch it gets).
"""

from __future__ import annotations

import numpy as np
import torch

from .._errors import InputError, require


def resolve_theta(f, theta) -> torch.Tensor:
    """``theta`` (default ``f.origin``) as a checked 1-D tensor on the landscape's device."""
    if theta is None:
        theta = f.origin
    require(isinstance(theta, torch.Tensor), f"theta must be a torch.Tensor, got {type(theta).__name__}")
    f.space.check_vector(theta, "theta")
    return theta.detach().to(device=f.origin.device, dtype=f.origin.dtype)


def generator_for(seed, device) -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``seed`` (global RNG untouched)."""
    require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool),
            f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def rademacher(n: int, generator: torch.Generator, dtype, device) -> torch.Tensor:
    """A vector of independent +1/-1 entries drawn from ``generator``."""
    bits = torch.randint(0, 2, (n,), generator=generator, device=device)
    return (bits * 2 - 1).to(dtype)


class HessianOperator:
    """``v -> H(theta) v`` for the mean loss of ``f`` over all of one split's data.

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    split : str
        ``"train"`` or ``"test"`` (when the landscape has test data).
    ignore : None, "biasbn" or list of name patterns
        Restrict the Hessian to the kept parameters (``f.space.mask(ignore)``): the operator is
        then ``H[keep][:, keep]``, of size ``keep.sum()``. Li et al.'s code uses the weights only
        (``ignore="biasbn"``); the default keeps every parameter, as PyHessian does.

    Attributes
    ----------
    size : int
        Dimension of the operator.
    calls : int
        Hessian-vector products computed so far.

    Examples
    --------
    >>> H = HessianOperator(f, f.origin)
    >>> hv = H.matvec(torch.ones(H.size))
    """

    def __init__(self, f, theta=None, split: str = "train", ignore=None):
        self.f = f
        self.theta = resolve_theta(f, theta)
        self.split = split
        names = [getattr(s, "name", None) for s in getattr(f, "splits", [])]
        if names and split not in names:
            raise InputError(f"no {split!r} data in this landscape; splits: {names}")
        self.ignore = ignore
        if ignore is None:
            self.keep = None
            self.size = int(self.theta.numel())
        else:
            self.keep = f.space.mask(ignore).to(self.theta.device)
            self.size = int(self.keep.sum())
            require(self.size > 0, f"ignore={ignore!r} leaves no parameter of the Hessian")
        self.device = self.theta.device
        self.dtype = self.theta.dtype
        self.calls = 0

    def embed(self, v: torch.Tensor) -> torch.Tensor:
        """A vector of the operator's space as a full parameter vector (zeros where ignored)."""
        if self.keep is None:
            return v
        full = torch.zeros(self.theta.numel(), dtype=v.dtype, device=v.device)
        full[self.keep] = v
        return full

    def restrict(self, v: torch.Tensor) -> torch.Tensor:
        """A full parameter vector as a vector of the operator's space."""
        return v if self.keep is None else v[self.keep]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a 1-D tensor of length :attr:`size` (returned in the landscape's dtype)."""
        v = v.to(device=self.device, dtype=self.dtype)
        self.calls += 1
        hv = self.f.hvp(self.theta, self.embed(v), split=self.split)
        return self.restrict(hv.to(device=self.device, dtype=self.dtype))

    __call__ = matvec

    def scipy(self, shift: float = 0.0):
        """The operator ``H - shift * I`` as a :class:`scipy.sparse.linalg.LinearOperator` (float64)."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            x = np.asarray(x, dtype=np.float64).reshape(-1)
            hv = self.matvec(torch.from_numpy(x)).detach().cpu().double().numpy()
            return hv - shift * x if shift else hv

        return LinearOperator((self.size, self.size), matvec=mv, dtype=np.float64)

    def dense(self) -> torch.Tensor:
        """The full matrix [size, size] in float64, built from ``size`` products (small models only).

        Examples
        --------
        >>> H = HessianOperator(f).dense()
        """
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        cols = [self.matvec(eye[i]).double() for i in range(self.size)]
        H = torch.stack(cols, dim=1)
        return 0.5 * (H + H.T)  # products are symmetric only to rounding


def dense_hessian(f, theta=None, split: str = "train", ignore=None) -> torch.Tensor:
    """The Hessian of ``f``'s mean loss at ``theta`` as a dense float64 matrix.

    Built from one exact Hessian-vector product per parameter: for small models and tests.

    Examples
    --------
    >>> H = dense_hessian(f, f.origin)
    >>> torch.linalg.eigvalsh(H)[-1]
    """
    return HessianOperator(f, theta, split, ignore).dense()


def point_settings(f, theta: torch.Tensor) -> dict:
    """The settings that pin a curvature result to its point and data (for ``attrs["settings"]``)."""
    data = getattr(f, "fingerprint", None)
    return {"theta": f.space.fingerprint(theta), "landscape": data if isinstance(data, str) else None}

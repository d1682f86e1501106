"""The curvature of a landscape's mean loss as a linear operator: the Hessian (default), the
generalized Gauss-Newton matrix or the empirical Fisher.

Every product is exact over all of the landscape's data: :meth:`Landscape.hvp` and
:meth:`Landscape.products` sum the products of every batch, so nothing here depends on a Hessian
batch size (PyHessian's power iteration, run on one small batch, varies with which batch it gets).
Blocks of vectors (:meth:`CurvatureOperator.matmat`) go through the data once for all of them.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

from .._errors import InputError, parse_enum, require


class Curvature(str, enum.Enum):
    """Which curvature matrix of the mean loss."""

    HESSIAN = "hessian"
    GGN = "ggn"  # generalized Gauss-Newton J^T H_out J (positive semi-definite for convex losses)
    FISHER = "fisher"  # empirical Fisher (1/n) sum_i g_i g_i^T of the per-sample gradients


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
    """``v -> M(theta) v`` for the mean loss of ``f`` over all of one split's data, M the Hessian
    (default), the generalized Gauss-Newton matrix or the empirical Fisher.

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
    curvature : {"hessian", "ggn", "fisher"}
    mode : {"reverse", "forward"}
        How a Hessian product is taken (:meth:`Landscape.hvp`).
    keep : Tensor, optional
        A boolean mask of the parameters kept (instead of ``ignore``): a diagonal block.

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

    def __init__(self, f, theta=None, split: str = "train", ignore=None, curvature="hessian",
                 mode: str = "reverse", keep=None):
        from ..landscape.derivatives import HVP_MODES

        self.curvature = parse_enum(Curvature, curvature, "curvature")
        require(mode in HVP_MODES, f"mode must be one of {', '.join(HVP_MODES)}, got {mode!r}")
        self.mode = mode
        self.f = f
        self.theta = resolve_theta(f, theta)
        self.split = split
        names = [getattr(s, "name", None) for s in getattr(f, "splits", [])]
        if names and split not in names:
            raise InputError(f"no {split!r} data in this landscape; splits: {names}")
        self.ignore = ignore
        if keep is not None:
            self.keep = torch.as_tensor(keep, dtype=torch.bool).to(self.theta.device)
            require(self.keep.shape == self.theta.shape, "keep must be a mask with one entry per parameter")
            self.size = int(self.keep.sum())
            require(self.size > 0, "the parameter group is empty")
        elif ignore is None:
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
        """``M v`` for a 1-D tensor of length :attr:`size` (returned in the landscape's dtype)."""
        v = v.to(device=self.device, dtype=self.dtype)
        if self.curvature is not Curvature.HESSIAN:
            return self.matmat(v.unsqueeze(0))[0]
        self.calls += 1
        # the default mode is not passed, so objects with Landscape's older hvp(theta, v, split) work
        extra = {} if self.mode == "reverse" else {"mode": self.mode}
        hv = self.f.hvp(self.theta, self.embed(v), split=self.split, **extra)
        return self.restrict(hv.to(device=self.device, dtype=self.dtype))

    __call__ = matvec

    def retained(self):
        """A context in which :meth:`matvec` reuses the gradient graphs of :attr:`theta`, built
        once (:meth:`Landscape.retained <lossatlas.landscape.Landscape.retained>`): for the
        Hessian in reverse mode on a landscape that offers it; otherwise nothing changes."""
        import contextlib

        if self.curvature is not Curvature.HESSIAN or self.mode != "reverse" or not hasattr(self.f, "retained"):
            return contextlib.nullcontext()
        return self.f.retained(self.theta, split=self.split)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``M V^T`` for the rows of ``V [K, size]``, as rows ``[K, size]``: one pass through the data."""
        V = V.to(device=self.device, dtype=self.dtype)
        self.calls += int(V.shape[0])
        full = V if self.keep is None else torch.zeros(V.shape[0], self.theta.numel(), dtype=V.dtype, device=V.device)
        if self.keep is not None:
            full[:, self.keep] = V
        out = self.f.products(self.theta, full, curvature=self.curvature.value, split=self.split, mode=self.mode)
        out = out.to(device=self.device, dtype=self.dtype)
        return out if self.keep is None else out[:, self.keep]

    def scipy(self, shift: float = 0.0):
        """The operator ``M - shift * I`` as a :class:`scipy.sparse.linalg.LinearOperator` (float64)."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            x = np.asarray(x, dtype=np.float64).reshape(-1)
            hv = self.matvec(torch.from_numpy(x)).detach().cpu().double().numpy()
            return hv - shift * x if shift else hv

        def mm(X):
            X = np.asarray(X, dtype=np.float64).reshape(self.size, -1)
            HX = self.matmat(torch.from_numpy(np.ascontiguousarray(X.T))).detach().cpu().double().numpy().T
            return HX - shift * X if shift else HX

        return LinearOperator((self.size, self.size), matvec=mv, matmat=mm, rmatvec=mv, rmatmat=mm,
                              dtype=np.float64)

    def dense(self) -> torch.Tensor:
        """The full matrix [size, size] in float64, built from ``size`` products (small models only).

        Examples
        --------
        >>> H = HessianOperator(f).dense()
        """
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        if self.curvature is Curvature.HESSIAN:
            H = torch.stack([self.matvec(eye[i]).double() for i in range(self.size)], dim=1)
        else:
            H = torch.cat([self.matmat(eye[i:i + 64]).double() for i in range(0, self.size, 64)]).T
        return 0.5 * (H + H.T)  # products are symmetric only to rounding


def curvature_operator(f, theta=None, curvature="hessian", *, split: str = "train", ignore=None,
                       mode: str = "reverse"):
    """The Hessian, generalized Gauss-Newton or empirical Fisher of ``f``'s mean loss at ``theta``
    as a :class:`scipy.sparse.linalg.LinearOperator`, for your own solvers.

    ``matvec`` and ``matmat`` take and return float64 NumPy arrays; the products run on the
    landscape's device, exact over all of ``split``'s data, and ``matmat`` takes all its columns
    through the data in one pass. The operator is symmetric (``rmatvec`` is ``matvec``).

    Parameters
    ----------
    f : Landscape
    theta : Tensor, optional
        The point (default ``f.origin``).
    curvature : {"hessian", "ggn", "fisher"}
        ``"ggn"``: ``J^T H_out J`` (``J`` the Jacobian of the outputs, ``H_out`` the Hessian of the
        loss in the outputs); ``"fisher"``: ``(1/n) sum_i g_i g_i^T`` of the per-sample gradients.
        Each is averaged over the data as the loss is (weight ``1/n`` per sample).
    split : str
        ``"train"`` or ``"test"``.
    ignore : None, "biasbn" or name patterns
        Restrict to the kept parameters (the operator is then that diagonal block).
    mode : {"reverse", "forward"}
        How Hessian products are taken (:meth:`Landscape.hvp`).

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of shape ``(P, P)``; its attribute ``curvature`` is the underlying
        :class:`HessianOperator` (its ``calls`` count the products).

    Examples
    --------
    >>> from scipy.sparse.linalg import eigsh
    >>> G = la.curvature_operator(f, f.origin, curvature="ggn")
    >>> eigsh(G, k=3, which="LA", return_eigenvectors=False)
    """
    op = HessianOperator(f, theta, split, ignore, curvature=curvature, mode=mode)
    lin = op.scipy()
    lin.curvature = op
    return lin


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

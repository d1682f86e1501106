"""Lanczos iteration with full reorthogonalization, on the landscape's device.

One Krylov basis serves every eigenvalue wanted (the top k, the bottom k, or both), and the
tridiagonal matrix it builds is also what stochastic Lanczos quadrature needs. Full
reorthogonalization (classical Gram-Schmidt, applied twice) keeps the basis orthonormal to
working precision, so no spurious copies of converged eigenvalues appear.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .._errors import InputError


class Lanczos:
    """An incremental Lanczos run ``H V = V T + beta w e_m^T`` from a start vector.

    Parameters
    ----------
    matvec : callable
        ``v -> H v`` for 1-D tensors of length ``n`` (H symmetric).
    v0 : Tensor
        Start vector (normalized here).
    capacity : int
        Most basis vectors kept (the basis is ``capacity x n``, preallocated).
    generator : torch.Generator, optional
        Draws a fresh direction when the Krylov space is invariant (breakdown), so repeated
        eigenvalues and eigenvalues the start vector misses are still found. Without it the run
        stops at a breakdown (what quadrature wants: the start vector's spectral measure is then
        fully captured).

    Examples
    --------
    >>> lz = Lanczos(H.matvec, v0, capacity=50)
    >>> while lz.step(): pass
    >>> values, vectors, residuals = lz.ritz()
    """

    def __init__(self, matvec: Callable, v0: torch.Tensor, capacity: int, generator=None):
        n = int(v0.numel())
        self.matvec = matvec
        self.n = n
        self.capacity = int(min(capacity, n))
        self.generator = generator
        self.basis = torch.empty(self.capacity, n, dtype=v0.dtype, device=v0.device)
        self.alpha: list[float] = []
        self.beta: list[float] = []  # beta[j] couples basis vectors j and j + 1 (0 after a restart)
        self.scale = 0.0  # running estimate of the spectral scale, for the breakdown test
        self.exhausted = False
        self.restarted = False  # the last step ended an invariant subspace and drew a fresh vector
        self.failed = False  # a product was not finite (NaN loss): the run stops
        self.residual = 0.0
        norm = float(v0.double().norm())
        if norm == 0 and generator is None:
            raise InputError("the Lanczos start vector is zero; give a nonzero vector or a generator")
        self._next = v0 / norm if norm > 0 else self._fresh()
        self._next_beta = None  # norm of the residual that became _next (None: the start vector)

    @property
    def pending(self) -> torch.Tensor | None:
        """The vector the next :meth:`step` multiplies (None when no step is left), so that several
        runs can have their products computed together, in one pass, before they step."""
        if self.exhausted or self.m >= self.capacity:
            return None
        return self._next

    @property
    def m(self) -> int:
        """Number of basis vectors so far (Lanczos steps taken)."""
        return len(self.alpha)

    def _orthogonalize(self, w: torch.Tensor) -> torch.Tensor:
        V = self.basis[: self.m]
        if V.shape[0]:
            for _ in range(2):  # "twice is enough" (Kahan, Parlett)
                w = w - V.T @ (V @ w)
        return w

    def _fresh(self) -> torch.Tensor:
        w = torch.randn(self.n, generator=self.generator, dtype=self.basis.dtype, device=self.basis.device)
        w = self._orthogonalize(w)
        return w / w.double().norm().to(w.dtype)

    def step(self) -> bool:
        """Add one basis vector (one product with H). False when no further step is possible."""
        if self.exhausted or self.m >= self.capacity:
            return False
        j = self.m
        self.restarted = False
        v = self._next
        if j > 0:
            self.beta.append(float(self._next_beta))
        self.basis[j] = v
        hv = self.matvec(v).to(dtype=self.basis.dtype)
        a = float(torch.dot(v.double(), hv.double()))
        if not math.isfinite(a):
            self.failed = self.exhausted = True
            self.basis[j].zero_()
            if j > 0:
                self.beta.pop()
            return False
        self.alpha.append(a)
        w = hv - a * v
        if j > 0:
            w = w - self.beta[-1] * self.basis[j - 1]
        w = self._orthogonalize(w)
        b = float(w.double().norm())
        self.scale = max(self.scale, abs(a), b)
        self.residual = b
        if j + 1 >= self.n:
            self.exhausted = True  # the whole space is spanned: T's eigenvalues are H's
            self.residual = 0.0
            return True
        if b <= 1e-8 * max(self.scale, 1e-30):
            self.residual = 0.0  # an invariant subspace: its Ritz values are exact
            if self.generator is None:
                self.exhausted = True
                return True
            self._next, self._next_beta = self._fresh(), 0.0
            # The Ritz values so far are exact, but a Krylov space from one vector holds one
            # copy of each repeated eigenvalue: callers look again after the fresh block.
            self.restarted = True
        else:
            self._next, self._next_beta = w / b, b
        return True

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal and off-diagonal of T (float64)."""
        return np.asarray(self.alpha, dtype=np.float64), np.asarray(self.beta, dtype=np.float64)

    def ritz(self, vectors: bool = False):
        """Ritz values (ascending), T's eigenvectors [m, m] and the residual bound of each pair.

        The residual ``||H y - theta y||`` of Ritz pair ``(theta, y = V s)`` is ``beta |s_m|``.
        """
        from scipy.linalg import eigh_tridiagonal

        d, e = self.tridiagonal()
        if d.size == 1:
            values, S = d.copy(), np.ones((1, 1))
        else:
            values, S = eigh_tridiagonal(d, e)
        residuals = abs(self.residual) * np.abs(S[-1, :])
        return values, S, residuals

    def ritz_vectors(self, S: np.ndarray) -> torch.Tensor:
        """The Ritz vectors ``V s`` for the columns of ``S``, as rows [len(cols), n]."""
        Sm = torch.as_tensor(S, dtype=self.basis.dtype, device=self.basis.device)
        return (self.basis[: self.m].T @ Sm).T.contiguous()

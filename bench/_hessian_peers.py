"""The libraries bench/hessian.py compares lossatlas with, each driven the way its documentation
shows, over the same batches (all of the data) and the same model:

- PyHessian 0.1: power iteration with deflation (``eigenvalues``), Hutchinson (``trace``);
- curvlinops 3 (``curvlinops-for-pytorch``): ``HessianLinearOperator`` handed to SciPy's ARPACK
  (``eigsh`` on ``to_scipy()``), its ``hutchpp_trace``;
- hessian-eigenthings 1.0: its ``HessianOperator`` with its ``lanczos`` (a fixed number of
  steps: given the steps lossatlas's Lanczos took, so the work matches) and ``hutch_plus_plus``.

PyHessian and curvlinops draw from torch's global generator: each call here reseeds it inside
``torch.random.fork_rng`` so that repeats do the same work and the caller's state is untouched.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn


class Peers:
    def __init__(self, model: nn.Module, batches: list, device):
        import pyhessian
        from curvlinops import HessianLinearOperator
        from hessian_eigenthings import HessianOperator

        self.device = torch.device(device)
        self.model = copy.deepcopy(model).eval()
        params = [p for p in self.model.parameters() if p.requires_grad]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ph = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=batches,
                                        cuda=self.device.type == "cuda")
        self.cl = HessianLinearOperator(self.model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False)
        ce = nn.CrossEntropyLoss()
        self.he = HessianOperator(self.model, batches, lambda m, b: ce(m(b[0]), b[1]))
        self.sizes = [p.numel() for p in self.ph.params]
        # products each library computed (counted by wrapping its product; load-independent)
        self.count = 0
        inner = self.ph.dataloader_hv_product

        def counting(v):
            self.count += 1
            return inner(v)

        self.ph.dataloader_hv_product = counting

    def _seeded(self, seed):
        devices = [self.device] if self.device.type == "cuda" else []
        ctx = torch.random.fork_rng(devices=devices)
        ctx.__enter__()
        torch.manual_seed(seed)
        return ctx

    # -- one product ----------------------------------------------------------------------
    def pyhessian_hvp(self, v):
        vs = [p.reshape_as(q) for p, q in zip(torch.split(v, self.sizes), self.ph.params)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.ph.dataloader_hv_product(vs)

    def curvlinops_hvp(self, v):
        return self.cl @ v

    def curvlinops_block(self, V):
        return self.cl @ V.T

    def eigenthings_hvp(self, v):
        return self.he.matvec(v)

    # -- top k ----------------------------------------------------------------------------
    def pyhessian_top(self, k, tol, seed=0):
        ctx = self._seeded(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(self.ph.eigenvalues(maxIter=100, tol=tol, top_n=k)[0], dtype=float)
        finally:
            ctx.__exit__(None, None, None)

    def curvlinops_top(self, k, tol, seed=0):
        from scipy.sparse.linalg import eigsh

        from scipy.sparse.linalg import LinearOperator

        v0 = np.random.default_rng(seed).standard_normal(self.cl.shape[0])
        A = self.cl.to_scipy()

        def mv(x):
            self.count += 1
            return A @ x

        op = LinearOperator(A.shape, matvec=mv, dtype=A.dtype)
        vals = eigsh(op, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return np.sort(vals)[::-1]

    def eigenthings_top(self, k, steps, tol, seed=0):
        from hessian_eigenthings import lanczos

        res = lanczos(self.he, k=k, max_iter=steps, tol=tol, which="LA", seed=seed, reorthogonalize=True)
        return np.sort(res.eigenvalues.detach().cpu().double().numpy())[::-1]

    # -- trace ----------------------------------------------------------------------------
    def pyhessian_trace(self, m, seed):
        ctx = self._seeded(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(np.mean(self.ph.trace(maxIter=m, tol=0.0)))  # tol 0: all m samples
        finally:
            ctx.__exit__(None, None, None)

    def curvlinops_hutchpp(self, m, seed):
        from curvlinops import hutchpp_trace

        ctx = self._seeded(seed)
        try:
            return float(hutchpp_trace(self.cl, m))
        finally:
            ctx.__exit__(None, None, None)

    def eigenthings_hutchpp(self, m, seed):
        from hessian_eigenthings import hutch_plus_plus

        return float(hutch_plus_plus(self.he, num_matvecs=m, seed=seed).estimate)

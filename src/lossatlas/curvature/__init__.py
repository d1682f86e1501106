"""Curvature of the loss: exact Hessian-vector products over all of a landscape's data, the
extreme eigenvalues (Lanczos, one run for all k), Hutchinson's trace, the spectral density by
stochastic Lanczos quadrature, and Li et al.'s convexity map."""

from .convexity import cell_seed, convexity_cell, convexity_map
from .density import gaussian_density, slq, spectral_density
from .eigen import ConvergenceWarning, Eigenpairs, Method, Which, hessian_eigenvalues
from .lanczos import Lanczos
from .operators import HessianOperator, dense_hessian
from .trace import TraceEstimate, hessian_trace

__all__ = [
    "ConvergenceWarning",
    "Eigenpairs",
    "HessianOperator",
    "Lanczos",
    "Method",
    "TraceEstimate",
    "Which",
    "cell_seed",
    "convexity_cell",
    "convexity_map",
    "dense_hessian",
    "gaussian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "slq",
    "spectral_density",
]

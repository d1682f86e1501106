"""Curvature of the loss: exact products with the Hessian, the generalized Gauss-Newton matrix
or the empirical Fisher over all of a landscape's data (one vector or a block at a time), as a
SciPy LinearOperator; the extreme eigenvalues (Lanczos, one run for all k); the trace
(Hutchinson, Hutch++, XTrace); spectra per parameter group; Hessian directions; the spectral
density by stochastic Lanczos quadrature; Li et al.'s convexity map; adaptive sharpness."""

from .adaptive import adaptive_sharpness
from .blocks import block_spectra, group_masks, parameter_groups
from .convexity import cell_seed, convexity_cell, convexity_map
from .density import gaussian_density, slq, spectral_density
from .directions import HessianDirections, hessian_directions
from .eigen import ConvergenceWarning, Eigenpairs, Method, Which, hessian_eigenvalues
from .lanczos import Lanczos
from .operators import Curvature, HessianOperator, curvature_operator, dense_hessian
from .trace import TraceEstimate, TraceMethod, estimate_trace, hessian_trace

__all__ = [
    "ConvergenceWarning",
    "Curvature",
    "Eigenpairs",
    "HessianDirections",
    "HessianOperator",
    "Lanczos",
    "Method",
    "TraceEstimate",
    "TraceMethod",
    "Which",
    "adaptive_sharpness",
    "block_spectra",
    "cell_seed",
    "convexity_cell",
    "convexity_map",
    "curvature_operator",
    "dense_hessian",
    "estimate_trace",
    "gaussian_density",
    "group_masks",
    "hessian_directions",
    "hessian_eigenvalues",
    "hessian_trace",
    "parameter_groups",
    "slq",
    "spectral_density",
]

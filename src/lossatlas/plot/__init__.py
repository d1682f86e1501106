"""Static, paper-ready figures of sampled loss landscapes (matplotlib).

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, nothing is shown)
inside a local style context, so the caller's ``rcParams`` are never changed. Each returns the figure
and, when ``path`` is given, also writes it as PNG (200 dpi) and vector PDF through
:func:`save_figure`. NaN/inf values are never dropped silently: they are masked, marked and counted
in the title.

The inputs are the xarray Datasets of the samplers (lines with dim ``t``; planes with dims ``x``,
``y``; samples with dim ``point``) and the NumPy arrays of the analysis modules (embeddings,
projections, persistence diagrams).

Modules: :mod:`.style` (the shared look and notes), :mod:`.save`, :mod:`.planes` (contour, heatmap,
3-D surface, levels), :mod:`.lines` (a line, the interpolation between two models),
:mod:`.bundle` (the command line's set of figures), :mod:`.compare` (minima side by side on shared
levels), :mod:`.panels` (grids of lines, planes and
convexity maps, weight histograms), :mod:`.trajectories`, :mod:`.embeddings`,
:mod:`.persistence`, :mod:`.curvature` (spectral density, convexity map, paths between
minima), :mod:`.topology` (persistence diagrams of several minima, kNN graphs, Fig. 3 of Horoi et al.).

Example
-------
>>> import numpy as np, xarray as xr
>>> import lossatlas.plot as lp
>>> x = np.linspace(-1, 1, 21)
>>> ds = xr.Dataset({"loss": (("x", "y"), np.add.outer(x**2, 2 * x**2))}, coords={"x": x, "y": x})
>>> fig = lp.plot_contour(ds)                        # doctest: +SKIP
>>> paths = lp.plot_surface_set(ds, "run/figures")   # doctest: +SKIP
"""

from .bundle import plot_surface_set
from .compare import plot_compare, shared_levels
from .curvature import plot_block_spectra, plot_connectivity, plot_convexity_map, plot_spectral_density
from .embeddings import plot_embedding, plot_embedding_panel, plot_optimizer_trajectories
from .lines import plot_interpolation, plot_line
from .optimizers import plot_optimizer_panel
from .panels import plot_line_grid, plot_plane_grid, plot_weight_histograms
from .persistence import plot_persistence
from .planes import default_levels, plot_contour, plot_heatmap, plot_surface3d
from .save import save_figure
from .style import CMAPS, STYLE, FigureOptions
from .topology import plot_knn_graph, plot_minima_topology, plot_persistence_diagrams, plot_persistence_vs_test_loss
from .trajectories import plot_trajectory

__all__ = [
    "CMAPS",
    "FigureOptions",
    "STYLE",
    "default_levels",
    "plot_block_spectra",
    "plot_compare",
    "plot_connectivity",
    "plot_convexity_map",
    "plot_knn_graph",
    "plot_minima_topology",
    "plot_persistence_diagrams",
    "plot_persistence_vs_test_loss",
    "plot_spectral_density",
    "plot_contour",
    "plot_embedding",
    "plot_embedding_panel",
    "plot_heatmap",
    "plot_interpolation",
    "plot_line",
    "plot_line_grid",
    "plot_optimizer_panel",
    "plot_optimizer_trajectories",
    "plot_persistence",
    "plot_plane_grid",
    "plot_surface3d",
    "plot_surface_set",
    "plot_trajectory",
    "plot_weight_histograms",
    "save_figure",
    "shared_levels",
]

"""Distances and estimators, each validated against a closed form or an independent oracle.

Conventions (stated again in each docstring):

* Inputs: torch tensors (any device / dtype) or numpy arrays ``[n, d]``; computed in float64
  (kernel metrics on the input's device, POT / scipy parts on CPU numpy).
* ``W2`` values are NOT squared (``w2_gaussian``, ``w2_empirical``, ``sliced_w2``,
  ``marginal_w2``); ``MMD`` and ``KSD`` are SQUARED unbiased U-statistics (may be < 0).
* Sample-based metrics return :class:`MetricResult` ``(value, ci, se, n, method, extra)``;
  closed forms return floats.
* Invalid input (wrong shape, empty, non-finite rows, mismatched dimensions) raises
  ``ValueError`` naming the problem.
"""

from .gaussian import gaussian_moment_errors, kl_gaussian, w2_gaussian, w2_gaussian_squared
from .kernel import gaussian_mmd_squared_closed_form, ksd, median_bandwidth, mmd
from .knn import kl_knn, kl_knn_to_density
from .marginals import interval_conditional_moments, marginal_tv, marginal_w2
from .transport import emd_bytes_estimate, sliced_w2, w2_empirical
from .uncertainty import MetricResult, bootstrap_ci, mean_ci, noise_floor
from .weak import TestFunction, standard_test_functions, weak_error

__all__ = [
    "MetricResult",
    "bootstrap_ci",
    "mean_ci",
    "noise_floor",
    "kl_gaussian",
    "w2_gaussian",
    "w2_gaussian_squared",
    "gaussian_moment_errors",
    "w2_empirical",
    "sliced_w2",
    "emd_bytes_estimate",
    "mmd",
    "ksd",
    "median_bandwidth",
    "gaussian_mmd_squared_closed_form",
    "marginal_w2",
    "marginal_tv",
    "interval_conditional_moments",
    "weak_error",
    "standard_test_functions",
    "TestFunction",
    "kl_knn",
    "kl_knn_to_density",
]

# exact_laws exported below
from .exact_laws import ExactLaw, exact_law, exact_methods, law_errors, stationary_law

__all__ += ["ExactLaw", "exact_law", "stationary_law", "law_errors", "exact_methods"]

from .exact_reference import fourier_weak_error, sliced_w2_to_mixture  # noqa: E402

__all__ += ["sliced_w2_to_mixture", "fourier_weak_error"]

from .diffusion_laws import DiffusionLaw, diffusion_law, diffusion_law_w2, mean_network_calls, pm_block_stiffness, pm_mechanism  # noqa: E402

__all__ += ["DiffusionLaw", "diffusion_law", "diffusion_law_w2", "mean_network_calls", "pm_block_stiffness", "pm_mechanism"]

from .grid_law import Density1D, GridLaw, density_1d, grid_errors, grid_laws, lmc_grid_law, plmc_grid_law  # noqa: E402

__all__ += ["Density1D", "GridLaw", "density_1d", "grid_laws", "lmc_grid_law", "plmc_grid_law", "grid_errors"]

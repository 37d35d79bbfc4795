"""Densities for the lab: potential, analytic gradient, exact sampler and known constants.

See ``targets.base`` for the interface and the conventions for the constants.
"""

from .base import SeparableTarget, Target, check_points
from .gaussian import Gaussian, random_rotation
from .logistic import LogisticRegression
from .mixture import GaussianMixture
from .registry import TARGET_NAMES, TARGETS, make_target, register_target
from .separable import DoubleWell, HolleyStroock, MarginalQuadrature, QuadratureSeparableTarget

__all__ = [
    "Target",
    "SeparableTarget",
    "check_points",
    "Gaussian",
    "random_rotation",
    "GaussianMixture",
    "MarginalQuadrature",
    "QuadratureSeparableTarget",
    "DoubleWell",
    "HolleyStroock",
    "LogisticRegression",
    "TARGET_NAMES",
    "TARGETS",
    "register_target",
    "make_target",
]

from .diffusion import DiffusedMixture, DiffusionSchedule, random_mixture

__all__ += ["DiffusedMixture", "DiffusionSchedule", "random_mixture"]

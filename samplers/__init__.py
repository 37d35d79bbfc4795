"""Langevin samplers, batched over chains in torch, counting every gradient evaluation.

Every method is described once, by a :class:`samplers.base.SamplingAlgorithm` registered in
:data:`METHODS`: its ``init``, its kernel factory ``build_kernel(target, step_size, **params)``
and what the lab needs to know about it (parameters, evaluations per step, base method, exact
moments on Gaussians).  One module per method family (``lmc``, ``plmc``, ``rlmc``, ``mala``;
``underdamped`` holds ULMC, PULMC and the underdamped randomized midpoint); the
Poisson-midpoint engine lives in :mod:`samplers.poisson`.  :func:`sample` runs any registered
method; :func:`register` adds one (``docs/extending.md``).

Importing the package changes nothing in the process; the labs' command lines opt in to the
allocator tuning of :mod:`samplers.allocator` (:func:`samplers.allocator.tune`).
"""

from . import lmc, plmc, rlmc, mala, underdamped  # registration order: the order METHODS lists
from . import allocator, poisson
from ._common import StepInfo
from .api import SampleResult, make_generator, sample
from .base import METHODS, REQUIRED, Param, SamplingAlgorithm, get_method, register

__all__ = ["sample", "SampleResult", "METHODS", "SamplingAlgorithm", "Param", "REQUIRED", "register",
           "get_method", "StepInfo", "make_generator",
           "lmc", "plmc", "rlmc", "mala", "poisson", "underdamped", "allocator"]

from . import diffusion

__all__ += ["diffusion"]

"""Langevin samplers, batched over chains in torch, counting every gradient evaluation.

One module per method (``lmc``, ``plmc``, ``rlmc``, ``mala``; ``underdamped`` holds ULMC, PULMC
and the underdamped randomized midpoint), each with a small state, an
``init`` and a ``step(generator, state, target, step_size[, K]) -> (state, StepInfo)``;
the Poisson-midpoint engine lives in :mod:`samplers.poisson`.  :func:`sample` runs any of them.
"""

from . import allocator

allocator.tune()  # keep freed [n, d] blocks for reuse (see samplers.allocator; LAB_MALLOC=system: off)

from . import lmc, mala, plmc, poisson, rlmc, underdamped
from ._common import StepInfo
from .api import METHODS, SampleResult, make_generator, sample

__all__ = ["sample", "SampleResult", "METHODS", "StepInfo", "make_generator",
           "lmc", "plmc", "rlmc", "mala", "poisson", "underdamped", "allocator"]

from . import diffusion  # noqa: E402  (DDPM, DDIM, DPM-Solver++, Poisson-midpoint DDPM)

__all__ += ["diffusion"]

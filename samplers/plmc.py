"""PLMC: Poisson-midpoint LMC (docs/method.md section 3).

One coarse step of size ``eta`` imitates ``K`` LMC steps of size ``h = eta / K``:

    b0 = b(X);  Y_i = X + i h b0 + sqrt(2h) S_i   (S_i = Z_0 + ... + Z_{i-1}, the same Gaussians)
    X' = X + eta b0 + eta * sum_{i >= 1 : H_i = 1} (b(Y_i) - b0) + sqrt(2h) S_K,
    H_i ~ Bernoulli(1/K) per chain.

Evaluations per step: ``1 + #{i >= 1 : H_i = 1}``, mean ``2 - 1/K``.  ``K = 1`` is LMC exactly.

``step`` is the K-independent sampler (cost and memory per step independent of ``K``);
``step_reference`` is the plain loop over the ``K`` fine steps.  Both come from the one
Poisson-midpoint engine in :mod:`samplers.poisson`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import poisson
from ._common import StepInfo, check_K, check_step_size

__all__ = ["PLMCState", "init", "step", "step_reference"]


class PLMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None) -> PLMCState:
    return PLMCState(x)


def step(generator: torch.Generator, state: PLMCState, target, step_size: float, K: int):
    """One PLMC step, K-independent sampling; returns ``(new_state, StepInfo)``."""
    scheme = poisson.OverdampedScheme(target, check_step_size(step_size), check_K(K))
    x_new, evals = poisson.fast_step(generator, state.x, scheme)
    return PLMCState(x_new), StepInfo(evals)


def step_reference(generator: torch.Generator, state: PLMCState, target, step_size: float, K: int):
    """One PLMC step by the plain loop over ``K`` fine steps; returns ``(new_state, StepInfo)``."""
    scheme = poisson.OverdampedScheme(target, check_step_size(step_size), check_K(K))
    x_new, evals = poisson.reference_step(generator, state.x, scheme)
    return PLMCState(x_new), StepInfo(evals)

"""LMC: the Euler–Maruyama discretization of overdamped Langevin dynamics.

    X_{k+1} = X_k + eta * b(X_k) + sqrt(2 eta) * Z_k,     b = -∇F,  Z_k ~ N(0, I_d)

One gradient evaluation per step.  See docs/method.md section 2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ._common import StepInfo, check_step_size, gaussian
from .base import SamplingAlgorithm, register

__all__ = ["LMCState", "LMC", "init", "build_kernel", "step", "moments"]


class LMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None, v=None) -> LMCState:
    return LMCState(x)


def build_kernel(target, step_size: float):
    """``step(generator, state) -> (state, StepInfo)``: one LMC step of size ``step_size``."""
    eta = check_step_size(step_size)
    noise_scale = math.sqrt(2.0 * eta)

    def step(generator: torch.Generator, state: LMCState):
        x = state.x
        # x + eta b(x) + sqrt(2 eta) z with b = -∇F: two fused passes (add with alpha).  The noise
        # is drawn after the gradient is freed, so at most three [n, d] tensors are alive at a time.
        x_new = torch.add(x, target.grad_potential(x), alpha=-eta)
        x_new.add_(gaussian(generator, x.shape, dtype=x.dtype, device=x.device), alpha=noise_scale)
        evals = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
        return LMCState(x_new), StepInfo(evals)

    return step


def step(generator: torch.Generator, state: LMCState, target, step_size: float):
    """One LMC step for every chain; returns ``(new_state, StepInfo)``."""
    return build_kernel(target, step_size)(generator, state)


def moments(lam: np.ndarray, step_size: float):
    """One step on ``N(m, A^{-1})`` in the eigenbasis of ``A`` (eigenvalues ``lam``):
    ``e' = M e + sqrt(2 eta) Z`` with ``M = I - eta A``, so ``(a, F, noise) = (M, M M^T, 2 eta)``
    (:mod:`metrics.exact_laws`)."""
    eta = check_step_size(step_size)
    m = 1.0 - eta * np.asarray(lam, dtype=np.float64)
    return m, np.outer(m, m), np.full_like(m, 2.0 * eta)


LMC = register(SamplingAlgorithm(
    name="lmc",
    description="Langevin Monte Carlo (Euler–Maruyama), 1 gradient/step",
    init=init,
    build_kernel=build_kernel,
    mean_evals_per_step=lambda: 1.0,
    exact_moments=moments,
    gaussian_law=lambda: True,
))

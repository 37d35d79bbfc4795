"""RLMC: the randomized midpoint method of Shen & Lee, overdamped (docs/method.md section 5).

With ``u ~ U[0, 1]`` per chain and one Brownian path ``W`` on ``[0, eta]``:

    Y  = X + u eta b(X) + sqrt(2) W(u eta)
    X' = X + eta b(Y)   + sqrt(2) W(eta),     W(eta) = W(u eta) + (W(eta) - W(u eta))

The midpoint's noise is part of the full step's noise (one path, two independent increments).
Two gradient evaluations per step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._common import StepInfo, check_step_size, gaussian, uniform
from .base import SamplingAlgorithm, register

__all__ = ["RLMCState", "RLMC", "init", "build_kernel", "step", "moments"]


class RLMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None, v=None) -> RLMCState:
    return RLMCState(x)


def build_kernel(target, step_size: float):
    """``step(generator, state)``: one RLMC step; draws, in order: ``u`` ``[n]``, ``Z_1``, ``Z_2``
    ``[n, d]``."""
    eta = check_step_size(step_size)

    def step(generator: torch.Generator, state: RLMCState):
        x = state.x
        u = uniform(generator, (x.shape[0], 1), dtype=x.dtype, device=x.device)
        z1 = gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
        z2 = gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
        # sqrt(2) W(u eta) = sqrt(2 u eta) Z_1;  sqrt(2) W(eta) = sqrt(2) W(u eta) + sqrt(2 (1 - u) eta) Z_2
        w_mid = z1.mul_(torch.sqrt(u * (2.0 * eta)))
        w_end = torch.addcmul(w_mid, z2, torch.sqrt((1.0 - u) * (2.0 * eta)))
        # b = -∇F:  Y = X + u eta b(X) + sqrt(2) W(u eta);  X' = X + eta b(Y) + sqrt(2) W(eta)
        # (built in place in the noise buffers: six passes over [n, d] besides the two gradients)
        y = w_mid.add_(x).addcmul_(u * -eta, target.grad_potential(x))
        x_new = w_end.add_(x).add_(target.grad_potential(y), alpha=-eta)
        evals = torch.full((x.shape[0],), 2, dtype=torch.int64, device=x.device)
        return RLMCState(x_new), StepInfo(evals)

    return step


def step(generator: torch.Generator, state: RLMCState, target, step_size: float):
    """One RLMC step; returns ``(new_state, StepInfo)``."""
    return build_kernel(target, step_size)(generator, state)


def moments(lam: np.ndarray, step_size: float):
    """One step on ``N(m, A^{-1})`` in the eigenbasis of ``A``, averaged over ``u ~ U[0, 1]``:
    ``e' = (M + u eta^2 A^2) e + sqrt(2)(I - eta A) W(u eta) + sqrt(2)(W(eta) - W(u eta))``
    (:mod:`metrics.exact_laws`)."""
    eta = check_step_size(step_size)
    lam = np.asarray(lam, dtype=np.float64)
    m = 1.0 - eta * lam
    l2 = lam**2
    a = m + 0.5 * eta**2 * l2
    F = np.outer(m, m) + 0.5 * eta**2 * (np.outer(l2, m) + np.outer(m, l2)) + eta**4 / 3.0 * np.outer(l2, l2)
    noise = eta * m**2 + eta
    return a, F, noise


RLMC = register(SamplingAlgorithm(
    name="rlmc",
    description="randomized midpoint LMC (Shen & Lee), 2 gradients/step",
    init=init, build_kernel=build_kernel, mean_evals_per_step=lambda: 2.0, exact_moments=moments,
))

"""LMC: the Euler–Maruyama discretization of overdamped Langevin dynamics.

    X_{k+1} = X_k + eta * b(X_k) + sqrt(2 eta) * Z_k,     b = -∇F,  Z_k ~ N(0, I_d)

One gradient evaluation per step.  See docs/method.md section 2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._common import StepInfo, check_step_size, gaussian

__all__ = ["LMCState", "init", "step"]


class LMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None) -> LMCState:
    return LMCState(x)


def step(generator: torch.Generator, state: LMCState, target, step_size: float):
    """One LMC step for every chain; returns ``(new_state, StepInfo)``."""
    eta = check_step_size(step_size)
    x = state.x
    # x + eta b(x) + sqrt(2 eta) z with b = -∇F: two fused passes (add with alpha).  The noise is
    # drawn after the gradient is freed, so at most three [n, d] tensors are alive at a time.
    x_new = torch.add(x, target.grad_potential(x), alpha=-eta)
    x_new.add_(gaussian(generator, x.shape, dtype=x.dtype, device=x.device), alpha=math.sqrt(2.0 * eta))
    evals = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
    return LMCState(x_new), StepInfo(evals)

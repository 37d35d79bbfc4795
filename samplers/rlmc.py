"""RLMC: the randomized midpoint method of Shen & Lee, overdamped (docs/method.md section 5).

With ``u ~ U[0, 1]`` per chain and one Brownian path ``W`` on ``[0, eta]``:

    Y  = X + u eta b(X) + sqrt(2) W(u eta)
    X' = X + eta b(Y)   + sqrt(2) W(eta),     W(eta) = W(u eta) + (W(eta) - W(u eta))

The midpoint's noise is part of the full step's noise (one path, two independent increments).
Two gradient evaluations per step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._common import StepInfo, check_step_size, gaussian, uniform

__all__ = ["RLMCState", "init", "step"]


class RLMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None) -> RLMCState:
    return RLMCState(x)


def step(generator: torch.Generator, state: RLMCState, target, step_size: float):
    """One RLMC step; draws, in order: ``u`` ``[n]``, ``Z_1``, ``Z_2`` ``[n, d]``."""
    eta = check_step_size(step_size)
    x = state.x
    u = uniform(generator, (x.shape[0], 1), dtype=x.dtype, device=x.device)
    z1 = gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
    z2 = gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
    w_mid = z1.mul_(torch.sqrt(u * eta))                    # W(u eta)
    w_end = z2.mul_(torch.sqrt((1.0 - u) * eta)).add_(w_mid)  # W(eta) = W(u eta) + independent increment
    # b = -∇F:  Y = X + u eta b(X) + sqrt(2) W(u eta);  X' = X + eta b(Y) + sqrt(2) W(eta)
    y = torch.addcmul(x, -u * eta, target.grad_potential(x)).add_(w_mid, alpha=math.sqrt(2.0))
    x_new = torch.add(x, target.grad_potential(y), alpha=-eta).add_(w_end, alpha=math.sqrt(2.0))
    evals = torch.full((x.shape[0],), 2, dtype=torch.int64, device=x.device)
    return RLMCState(x_new), StepInfo(evals)

"""RLMC: the randomized midpoint method of Shen & Lee, overdamped (docs/method.md section 5).

With ``u ~ U[0, 1]`` per chain and one Brownian path ``W`` on ``[0, eta]``:

    Y  = X + u eta b(X) + sqrt(2) W(u eta)
    X' = X + eta b(Y)   + sqrt(2) W(eta),     W(eta) = W(u eta) + (W(eta) - W(u eta))

The midpoint's noise is part of the full step's noise (one path, two independent increments).
Two gradient evaluations per step.
"""

from __future__ import annotations

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
    # sqrt(2) W(u eta) = sqrt(2 u eta) Z_1;  sqrt(2) W(eta) = sqrt(2) W(u eta) + sqrt(2 (1 - u) eta) Z_2
    w_mid = z1.mul_(torch.sqrt(u * (2.0 * eta)))
    w_end = torch.addcmul(w_mid, z2, torch.sqrt((1.0 - u) * (2.0 * eta)))
    # b = -∇F:  Y = X + u eta b(X) + sqrt(2) W(u eta);  X' = X + eta b(Y) + sqrt(2) W(eta)
    # (built in place in the noise buffers: six passes over [n, d] besides the two gradients)
    y = w_mid.add_(x).addcmul_(u * -eta, target.grad_potential(x))
    x_new = w_end.add_(x).add_(target.grad_potential(y), alpha=-eta)
    evals = torch.full((x.shape[0],), 2, dtype=torch.int64, device=x.device)
    return RLMCState(x_new), StepInfo(evals)

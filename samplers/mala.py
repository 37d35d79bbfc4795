"""MALA: Metropolis-adjusted Langevin, the unbiased reference.

Proposal ``Y = X - eta ∇F(X) + sqrt(2 eta) Z``, accepted with probability

    min(1, exp(-F(Y) + F(X) - |X - Y + eta ∇F(Y)|^2 / (4 eta) + |Y - X + eta ∇F(X)|^2 / (4 eta))).

The state caches ``F`` and ``∇F`` at the current point, so a step costs one gradient (and one
potential) evaluation, at the proposal; ``init`` costs one.  ``pi`` is invariant for every
``eta``; the step size only changes the acceptance rate and the mixing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._common import StepInfo, check_step_size, gaussian, uniform
from .base import SamplingAlgorithm, register

__all__ = ["MALAState", "MALA", "init", "build_kernel", "step"]


class MALAState(NamedTuple):
    x: torch.Tensor  # [n, d]
    potential: torch.Tensor  # [n]
    grad: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target, v=None) -> MALAState:
    """State at ``x``; costs one gradient evaluation per chain."""
    return MALAState(x, target.potential(x), target.grad_potential(x))


def build_kernel(target, step_size: float):
    """``step(generator, state)``: one MALA step; draws, in order: ``Z`` ``[n, d]``, the
    acceptance uniforms ``[n]``."""
    eta = check_step_size(step_size)
    noise_scale = math.sqrt(2.0 * eta)
    back_scale = -math.sqrt(0.5 * eta)

    def step(generator: torch.Generator, state: MALAState):
        x, fx, gx = state
        z = gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
        y = torch.add(x, gx, alpha=-eta).add_(z, alpha=noise_scale)
        fy = target.potential(y)
        gy = target.grad_potential(y)
        # With Y - X + eta ∇F(X) = sqrt(2 eta) Z, so X - Y + eta ∇F(Y) = sqrt(2 eta) (sqrt(eta/2) (∇F(X) + ∇F(Y)) - Z):
        #   log q(y | x) = -|Z|^2 / 2,   log q(x | y) = -|Z - sqrt(eta/2) (∇F(X) + ∇F(Y))|^2 / 2,
        # the same numbers without the cancellation of X - Y (and three passes over [n, d], not ten).
        r = torch.add(gx, gy).mul_(back_scale).add_(z)
        log_q_back = -0.5 * torch.linalg.vecdot(r, r)  # log q(x | y)
        log_q_fwd = -0.5 * torch.linalg.vecdot(z, z)   # log q(y | x)
        log_alpha = fx - fy + log_q_back - log_q_fwd
        u = uniform(generator, x.shape[0], dtype=x.dtype, device=x.device)
        # A non-finite proposal (NaN log_alpha) is rejected: the comparison is False.
        accept = torch.log(u) < log_alpha
        keep = accept.unsqueeze(-1)
        new = MALAState(torch.where(keep, y, x), torch.where(accept, fy, fx), torch.where(keep, gy, gx))
        evals = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
        return new, StepInfo(evals, accept)

    return step


def step(generator: torch.Generator, state: MALAState, target, step_size: float):
    """One MALA step; returns ``(new_state, StepInfo)``."""
    return build_kernel(target, step_size)(generator, state)


MALA = register(SamplingAlgorithm(
    name="mala",
    description="Metropolis-adjusted Langevin, 1 gradient/step (+1 at start)",
    init=init, build_kernel=build_kernel, mean_evals_per_step=lambda: 1.0, init_evals=1, metropolis=True,
))

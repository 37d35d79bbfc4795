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

import dataclasses

from typing import NamedTuple

import numpy as np
import torch

from . import poisson
from ._common import StepInfo, check_K, check_step_size
from .base import Param, SamplingAlgorithm, register

__all__ = ["PLMCState", "PLMC", "PLMC_REF", "init", "build_kernel", "build_reference_kernel", "step",
           "step_reference", "moments"]


class PLMCState(NamedTuple):
    x: torch.Tensor  # [n, d]


def init(x: torch.Tensor, target=None, v=None) -> PLMCState:
    return PLMCState(x)


def _kernel(engine, target, step_size: float, K: int):
    scheme = poisson.OverdampedScheme(target, check_step_size(step_size), check_K(K))

    def step(generator: torch.Generator, state: PLMCState):
        x_new, evals = engine(generator, state.x, scheme)
        return PLMCState(x_new), StepInfo(evals)

    return step


def build_kernel(target, step_size: float, K: int):
    """``step(generator, state)``: one PLMC step, K-independent sampling (:func:`poisson.fast_step`)."""
    return _kernel(poisson.fast_step, target, step_size, K)


def build_reference_kernel(target, step_size: float, K: int):
    """``step(generator, state)``: one PLMC step by the plain loop over ``K`` fine steps."""
    return _kernel(poisson.reference_step, target, step_size, K)


def step(generator: torch.Generator, state: PLMCState, target, step_size: float, K: int):
    """One PLMC step, K-independent sampling; returns ``(new_state, StepInfo)``."""
    return build_kernel(target, step_size, K)(generator, state)


def step_reference(generator: torch.Generator, state: PLMCState, target, step_size: float, K: int):
    """One PLMC step by the plain loop over ``K`` fine steps; returns ``(new_state, StepInfo)``."""
    return build_reference_kernel(target, step_size, K)(generator, state)


def moments(lam: np.ndarray, step_size: float, K: int):
    """One step on ``N(m, A^{-1})`` in the eigenbasis of ``A`` (eigenvalues ``lam``), averaged
    over the selections and the noise (:mod:`metrics.exact_laws`).

    With ``h = eta/K``, ``M = I - eta A``, ``R = sum_{i>=1} H_i i`` and ``T = sum_{i>=1} H_i S_i``:
    ``e' = (M + eta h R A^2) e - eta sqrt(2h) A T + sqrt(2h) S_K``; ``E R = (K-1)/2``,
    ``Var R = p(1-p) n(n+1)(2n+1)/6`` (``p = 1/K``, ``n = K-1``), ``E[T T^T] = tau I`` with
    ``tau = p^2 n(n+1)(2n+1)/6 + p(1-p) n(n+1)/2``.
    """
    eta = check_step_size(step_size)
    K = check_K(K)
    lam = np.asarray(lam, dtype=np.float64)
    m = 1.0 - eta * lam
    l2 = lam**2
    h = eta / K
    p = 1.0 / K
    n = K - 1
    c = eta * h
    s1 = n * (n + 1) / 2.0
    s2 = n * (n + 1) * (2 * n + 1) / 6.0
    ER = p * s1
    ER2 = p * (1.0 - p) * s2 + ER**2
    tau = p**2 * s2 + p * (1.0 - p) * s1
    a = m + c * ER * l2
    F = np.outer(m, m) + c * ER * (np.outer(l2, m) + np.outer(m, l2)) + c**2 * ER2 * np.outer(l2, l2)
    noise = 2.0 * h * (eta**2 * tau * l2 - eta * (K - 1) * lam + K)
    return a, F, noise


def _mean_evals(K: int) -> float:
    return 2.0 - 1.0 / K


def _gaussian_law(K: int) -> bool:
    return K == 1  # K = 1 is LMC


K_PARAM = Param("K", check_K, help="Poisson-midpoint sub-steps per step, 1..2^56")

PLMC = register(SamplingAlgorithm(
    name="plmc",
    description="Poisson-midpoint LMC, K-independent sampling, 2 - 1/K gradients/step on average",
    init=init, build_kernel=build_kernel, mean_evals_per_step=_mean_evals, params=(K_PARAM,),
    base="lmc", exact_moments=moments, gaussian_law=_gaussian_law,
))
# the same method by the plain loop over its K fine steps: only the kernel differs
PLMC_REF = register(dataclasses.replace(
    PLMC, name="plmc_ref", build_kernel=build_reference_kernel,
    description="Poisson-midpoint LMC, plain loop over K fine steps (reference, O(K) time)",
))

"""Underdamped Langevin: ULMC, Poisson-midpoint ULMC and Shen & Lee's randomized midpoint.

Dynamics (docs/method.md section 6; unit mass, friction ``gamma``, ``b = -∇F``)::

    dU = V dt,    dV = -gamma V dt + b(U) dt + sqrt(2 gamma) dB.

Its stationary law is ``pi(u) N(v; 0, I)``.  The chain's state is one ``[n, 2, d]`` tensor ``q``
with positions ``q[:, 0]`` and velocities ``q[:, 1]`` (:class:`UnderdampedState` gives both as
views), so that the one Poisson-midpoint engine of :mod:`samplers.poisson` runs on it unchanged.

**ULMC** (exponential integrator, exact when the gradient is frozen over the step), with
``tau`` the step, ``E = exp(-gamma tau)`` and ``g = ∇F(U)``::

    U' = U + a(tau) V - c_u(tau) g + xi_U,     a(tau)   = (1 - E) / gamma
    V' = E V        - c_v(tau) g + xi_V,       c_u(tau) = (tau - (1 - E)/gamma) / gamma,
                                               c_v(tau) = (1 - E) / gamma

with ``(xi_U, xi_V)`` Gaussian, independent across coordinates, of covariance ``Sigma(tau)``:
``s_uu = (2/gamma)(tau - (2/gamma)(1 - E) + (1 - E^2)/(2 gamma))``, ``s_uv = (1 - E)^2 / gamma``,
``s_vv = 1 - E^2``.  One gradient evaluation per step.  Small-``gamma tau`` differences are
evaluated by their Taylor series, so the coefficients keep full relative precision for any
``K`` (``tau = eta / 10^6`` included).

**PULMC** is the Poisson-midpoint method (section 4) over ``K`` fine ULMC steps of size
``h = eta / K``: the general engine of :mod:`samplers.poisson` with :class:`UnderdampedScheme`.
The K-independent sampler is exact here because the fine scheme with frozen gradient *is* the
exact flow of the frozen-gradient SDE, so its pieces have closed forms for any number of fine
steps ``j - i``: the frozen mean after ``i`` fine steps is one ULMC step of length ``i h``
without noise, the interpolant's noise is a Gauss–Markov process whose fresh part between
``i`` and ``j`` has covariance ``Sigma((j - i) h)``, and noise present at ``i`` is carried to
``j`` by ``Phi = [[1, a((j-i)h)], [0, E((j-i)h)]]``.  Cost and memory per step do not depend on
``K``; ``K = 1`` is ULMC bit for bit.  Evaluations per step: ``1 + #{i >= 1 : H_i = 1}``,
mean ``2 - 1/K``.

**RULMC**: Shen & Lee's randomized midpoint for underdamped Langevin (NeurIPS 2019,
Algorithm 1), in this parametrization (theirs is ``gamma = 2`` with ``F`` scaled by ``u``).
With ``alpha ~ U[0, 1]`` per chain, ``tau = alpha eta`` and one Brownian path on ``[0, eta]``::

    Y  = U + a(tau) V - c_u(tau) ∇F(U)            + W1
    U' = U + a(eta) V - eta (1 - e^{-gamma (eta - tau)}) / gamma * ∇F(Y) + W2
    V' = E(eta) V     - eta e^{-gamma (eta - tau)}               * ∇F(Y) + W3

``(W1, W2, W3)`` are the exact stochastic integrals of the one path: ``(W1, Q1) ~ N(0, Sigma(tau))``
is the path's noise at ``tau`` (``Q1`` its velocity part), and
``(W2, W3) = Phi(eta - tau) (W1, Q1) + N(0, Sigma(eta - tau))`` its continuation, so all their
correlations are exact.  Two gradient evaluations per step.

Friction: ``friction`` (``gamma``) defaults to :data:`DEFAULT_FRICTION` = 2, Shen & Lee's
choice for a potential scaled so that its smoothness is about 1.  For a target with strong
convexity ``m`` and smoothness ``L``, ``gamma`` of order ``sqrt(L)`` to ``2 sqrt(m)`` is the
usual range.
"""

from __future__ import annotations

import dataclasses

from typing import NamedTuple

import torch

from targets.validation import check_positive

from . import poisson
from ._common import StepInfo, check_K, check_step_size, gaussian, uniform
from .base import Param, SamplingAlgorithm, register

__all__ = ["DEFAULT_FRICTION", "UnderdampedState", "UnderdampedScheme", "check_friction",
           "ou_coefficients", "init", "build_ulmc_kernel", "build_pulmc_kernel", "build_pulmc_reference_kernel",
           "build_rulmc_kernel", "ulmc_step", "pulmc_step", "pulmc_step_reference", "rulmc_step",
           "ULMC", "PULMC", "PULMC_REF", "RULMC"]

DEFAULT_FRICTION = 2.0

_SERIES_BELOW = 0.5   # gamma * tau below which the Taylor series are used
_SERIES_TERMS = 24    # enough for float64 at gamma * tau < 0.5 (the last term is < 1e-24)


def check_friction(friction) -> float:
    """Return ``friction`` as a float, or raise ValueError unless it is finite and > 0."""
    return check_positive(friction, "friction")


class UnderdampedState(NamedTuple):
    """``q``: ``[n, 2, d]`` with positions ``q[:, 0]`` and velocities ``q[:, 1]``."""

    q: torch.Tensor

    @property
    def x(self) -> torch.Tensor:
        return self.q[:, 0]

    @property
    def v(self) -> torch.Tensor:
        return self.q[:, 1]


def init(x: torch.Tensor, target=None, v: torch.Tensor | None = None) -> UnderdampedState:
    """The state with positions ``x`` and velocities ``v`` (both ``[n, d]``; ``v`` is required)."""
    if v is None:
        raise ValueError("the underdamped state needs velocities v, got None")
    return UnderdampedState(torch.stack([x, v], dim=1))


# ------------------------------------------------------------------------------------------------
# coefficients of the exponential integrator over a time tau


def _series(x: torch.Tensor, coef) -> torch.Tensor:
    """``sum_n coef(n) x^n / n!`` for ``n = 2 .. _SERIES_TERMS`` (Horner-free, small x only)."""
    out = torch.zeros_like(x)
    term = x.clone()  # x^1 / 1!
    for n in range(2, _SERIES_TERMS + 1):
        term = term * x / n
        c = coef(n)
        if c != 0.0:
            out = out + c * term
    return out


def _phi2(x: torch.Tensor) -> torch.Tensor:
    """``x - (1 - e^{-x})`` without cancellation."""
    direct = x + torch.expm1(-x)
    series = _series(x.clamp(max=_SERIES_BELOW), lambda n: (-1.0) ** n)
    return torch.where(x < _SERIES_BELOW, series, direct)


def _phi3(x: torch.Tensor) -> torch.Tensor:
    """``x - 2 (1 - e^{-x}) + (1 - e^{-2x}) / 2`` without cancellation (``~ x^3 / 3``)."""
    direct = x + 2.0 * torch.expm1(-x) - 0.5 * torch.expm1(-2.0 * x)
    series = _series(x.clamp(max=_SERIES_BELOW), lambda n: (-1.0) ** n * (2.0 - 2.0 ** (n - 1)))
    return torch.where(x < _SERIES_BELOW, series, direct)


class OUCoefficients(NamedTuple):
    """Coefficients of the frozen-gradient flow over a time ``tau`` (module docstring)."""

    E: torch.Tensor     # exp(-gamma tau)
    a: torch.Tensor     # (1 - E) / gamma: velocity into position
    c_u: torch.Tensor   # (tau - (1 - E)/gamma) / gamma: gradient into position
    c_v: torch.Tensor   # (1 - E) / gamma: gradient into velocity
    s_uu: torch.Tensor  # noise covariance Sigma(tau)
    s_uv: torch.Tensor
    s_vv: torch.Tensor


def ou_coefficients(tau, friction: float) -> OUCoefficients:
    """The coefficients of the exponential integrator over time ``tau`` (a tensor, any shape)."""
    g = float(friction)
    tau = torch.as_tensor(tau, dtype=torch.float64) if not isinstance(tau, torch.Tensor) else tau
    x = g * tau
    E = torch.exp(-x)
    one_minus_E = -torch.expm1(-x)
    a = one_minus_E / g
    return OUCoefficients(
        E=E,
        a=a,
        c_u=_phi2(x) / g**2,
        c_v=a,
        s_uu=2.0 * _phi3(x) / g**2,
        s_uv=one_minus_E**2 / g,
        s_vv=-torch.expm1(-2.0 * x),
    )


def _col(t: torch.Tensor) -> torch.Tensor:
    """Per-row coefficients ``[m]`` as ``[m, 1]`` to broadcast over coordinates."""
    return t.unsqueeze(-1)


# ------------------------------------------------------------------------------------------------
# the linear fine scheme for the Poisson-midpoint engine


class UnderdampedScheme(poisson.LinearScheme):
    """``K`` fine ULMC steps of size ``h = eta / K`` on ``q = [U, V]`` (``[n, 2, d]``), drift ``g = ∇F``.

    ``A = [[1, a(h)], [0, E(h)]]``, ``G = -[c_u(h), c_v(h)]`` (acting on ``g``), ``Gamma`` the
    Cholesky factor of ``Sigma(h)``; every multi-step piece is the same flow over ``(j - i) h``.
    """

    def __init__(self, target, step_size: float, friction: float, K: int):
        self.target = target
        self.eta = float(step_size)
        self.gamma = float(friction)
        self.K = int(K)
        self.h = self.eta / self.K
        dt = target.dtype
        self._dtype = dt
        self._fine = ou_coefficients(torch.tensor(self.h, dtype=torch.float64), self.gamma)
        self._coarse = ou_coefficients(torch.tensor(self.eta, dtype=torch.float64), self.gamma)

    # coefficients at per-row numbers of fine steps, in the state's dtype
    def _coef(self, steps: torch.Tensor) -> OUCoefficients:
        c = ou_coefficients(steps.to(torch.float64) * self.h, self.gamma)
        return OUCoefficients(*(t.to(self._dtype) for t in c))

    def evaluate(self, y, i):
        return self.target.grad_potential(y[:, 0])

    @staticmethod
    def _apply(q, g, E, a, c_u, c_v):
        """``[U + a V - c_u g, E V - c_v g]`` (coefficients are numbers or ``[m, 1]`` columns)."""
        u, v = q[:, 0], q[:, 1]
        return torch.stack([u + a * v - c_u * g, E * v - c_v * g], dim=1)

    @staticmethod
    def _noise(z, c: OUCoefficients):
        """``Sigma^{1/2} z`` for ``z`` ``[m, 2, d]`` and per-row (``[m, 1]``) or scalar coefficients."""
        l_uu = torch.sqrt(c.s_uu)
        l_vu = c.s_uv / l_uu
        l_vv = torch.sqrt(c.s_vv - l_vu * l_vu)
        z_u, z_v = z[:, 0], z[:, 1]
        return torch.stack([l_uu * z_u, l_vu * z_u + l_vv * z_v], dim=1)

    def fine_step(self, y, g, i, z):
        f = self._fine
        mean = self._apply(y, g, float(f.E), float(f.a), float(f.c_u), float(f.c_v))
        c = OUCoefficients(*(t.to(self._dtype) for t in f))
        return mean + self._noise(z, c)

    def end_mean(self, x, g0):
        c = self._coarse
        return self._apply(x, g0, float(c.E), float(c.a), float(c.c_u), float(c.c_v))

    def frozen_mean(self, x, g0, i):
        c = self._coef(i)
        return self._apply(x, g0, _col(c.E), _col(c.a), _col(c.c_u), _col(c.c_v))

    def fresh_noise(self, i, j, generator):
        c = self._coef(j - i)
        z = gaussian(generator, (j.shape[0], 2, self.target.dim), dtype=self._dtype, device=j.device)
        return self._noise(z, OUCoefficients(*(_col(t) for t in c)))

    def propagate(self, noise, i, j):
        c = self._coef(j - i)
        n_u, n_v = noise[:, 0], noise[:, 1]
        return torch.stack([n_u + _col(c.a) * n_v, _col(c.E) * n_v], dim=1)

    def add_correction(self, x_end, rows, delta, i):
        # x_end[rows] += Phi(K, i+1) G K delta,  G = -[c_u(h), c_v(h)],  Phi over (K - 1 - i) h
        c = self._coef(self.K - 1 - i)
        f = self._fine
        w_u = -(float(f.c_u) + _col(c.a) * float(f.c_v)) * self.K
        w_v = -(_col(c.E) * float(f.c_v)) * self.K
        x_end.index_add_(0, rows, torch.stack([w_u * delta, w_v * delta], dim=1))


# ------------------------------------------------------------------------------------------------
# steps


def build_ulmc_kernel(target, step_size: float, friction: float = DEFAULT_FRICTION):
    """``step(generator, state)``: one ULMC step (module docstring); draws one ``[n, 2, d]``
    Gaussian.

    Written with the pieces of :class:`UnderdampedScheme` at ``K = 1`` — the frozen-gradient
    mean over ``eta`` plus the exact noise ``Sigma(eta)^{1/2} z`` — so PULMC with ``K = 1`` is
    ULMC bit for bit.
    """
    scheme = UnderdampedScheme(target, check_step_size(step_size), check_friction(friction), 1)

    def step(generator: torch.Generator, state: UnderdampedState):
        q = state.q
        n = q.shape[0]
        g = scheme.evaluate(q, 0)
        ones = torch.ones(n, dtype=torch.int64, device=q.device)
        q_new = scheme.end_mean(q, g) + scheme.fresh_noise(torch.zeros_like(ones), ones, generator)
        return UnderdampedState(q_new), StepInfo(ones)

    return step


def _pulmc_kernel(engine, target, step_size: float, K: int, friction: float):
    scheme = UnderdampedScheme(target, check_step_size(step_size), check_friction(friction), check_K(K))

    def step(generator: torch.Generator, state: UnderdampedState):
        q_new, evals = engine(generator, state.q, scheme)
        return UnderdampedState(q_new), StepInfo(evals)

    return step


def build_pulmc_kernel(target, step_size: float, K: int, friction: float = DEFAULT_FRICTION):
    """``step(generator, state)``: one Poisson-midpoint ULMC step, K-independent sampling (exact in law)."""
    return _pulmc_kernel(poisson.fast_step, target, step_size, K, friction)


def build_pulmc_reference_kernel(target, step_size: float, K: int, friction: float = DEFAULT_FRICTION):
    """``step(generator, state)``: one Poisson-midpoint ULMC step by the plain loop over ``K`` fine
    ULMC steps (O(K) time)."""
    return _pulmc_kernel(poisson.reference_step, target, step_size, K, friction)


def build_rulmc_kernel(target, step_size: float, friction: float = DEFAULT_FRICTION):
    """``step(generator, state)``: one step of Shen & Lee's underdamped randomized midpoint method
    (module docstring).

    Draws, in order: ``alpha`` ``[n]``, the path's noise at ``tau`` ``[n, 2, d]``, its fresh
    continuation to ``eta`` ``[n, 2, d]``.
    """
    eta = check_step_size(step_size)
    gamma = check_friction(friction)
    c_eta = ou_coefficients(torch.tensor(eta, dtype=torch.float64), gamma)
    a_eta, E_eta = float(c_eta.a), float(c_eta.E)

    def step(generator: torch.Generator, state: UnderdampedState):
        q = state.q
        n, dt = q.shape[0], q.dtype

        def col(t):
            return _col(t.to(dt))

        alpha = uniform(generator, n, dtype=torch.float64, device=q.device)
        tau = alpha * eta
        c_mid = ou_coefficients(tau, gamma)
        c_rest = ou_coefficients(eta - tau, gamma)
        u, v = q[:, 0], q[:, 1]
        w_mid = UnderdampedScheme._noise(gaussian(generator, q.shape, dtype=dt, device=q.device),
                                         OUCoefficients(*(col(t) for t in c_mid)))   # (W1, Q1)
        fresh = UnderdampedScheme._noise(gaussian(generator, q.shape, dtype=dt, device=q.device),
                                         OUCoefficients(*(col(t) for t in c_rest)))
        w1, q1 = w_mid[:, 0], w_mid[:, 1]
        w2 = w1 + col(c_rest.a) * q1 + fresh[:, 0]
        w3 = col(c_rest.E) * q1 + fresh[:, 1]
        g0 = target.grad_potential(u)
        y = u + col(c_mid.a) * v - col(c_mid.c_u) * g0 + w1
        gy = target.grad_potential(y)
        # eta (1 - e^{-gamma (eta - tau)}) / gamma = eta a(eta - tau);  e^{-gamma (eta - tau)} = E(eta - tau)
        u_new = u + a_eta * v - eta * col(c_rest.a) * gy + w2
        v_new = E_eta * v - eta * col(c_rest.E) * gy + w3
        evals = torch.full((n,), 2, dtype=torch.int64, device=q.device)
        return UnderdampedState(torch.stack([u_new, v_new], dim=1)), StepInfo(evals)

    return step


def ulmc_step(generator: torch.Generator, state: UnderdampedState, target, step_size: float,
              friction: float = DEFAULT_FRICTION):
    """One ULMC step; returns ``(state, info)``."""
    return build_ulmc_kernel(target, step_size, friction)(generator, state)


def pulmc_step(generator: torch.Generator, state: UnderdampedState, target, step_size: float, K: int,
               friction: float = DEFAULT_FRICTION):
    """One Poisson-midpoint ULMC step, K-independent sampling (exact in law)."""
    return build_pulmc_kernel(target, step_size, K, friction)(generator, state)


def pulmc_step_reference(generator: torch.Generator, state: UnderdampedState, target, step_size: float,
                         K: int, friction: float = DEFAULT_FRICTION):
    """One Poisson-midpoint ULMC step by the plain loop over ``K`` fine ULMC steps (O(K) time)."""
    return build_pulmc_reference_kernel(target, step_size, K, friction)(generator, state)


def rulmc_step(generator: torch.Generator, state: UnderdampedState, target, step_size: float,
               friction: float = DEFAULT_FRICTION):
    """One step of Shen & Lee's underdamped randomized midpoint method; returns ``(state, info)``."""
    return build_rulmc_kernel(target, step_size, friction)(generator, state)


# ------------------------------------------------------------------------------------------------
# the descriptors (samplers.base); the exact moment models live in metrics.underdamped_laws


def _ulmc_moments(step_size: float, friction: float):
    from metrics.underdamped_laws import ulmc_model

    return ulmc_model(step_size, friction)


def _pulmc_moments(step_size: float, K: int, friction: float):
    from metrics.underdamped_laws import pulmc_model

    return pulmc_model(step_size, friction, K)


def _rulmc_moments(step_size: float, friction: float):
    from metrics.underdamped_laws import rulmc_model

    return rulmc_model(step_size, friction)


FRICTION_PARAM = Param("friction", check_friction, DEFAULT_FRICTION, "friction gamma > 0")
_K_PARAM = Param("K", check_K, help="Poisson-midpoint sub-steps per step, 1..2^56")


def _pulmc_mean_evals(K: int, friction: float) -> float:
    return 2.0 - 1.0 / K


def _pulmc_gaussian_law(K: int, friction: float) -> bool:
    return K == 1  # K = 1 is ULMC


ULMC = register(SamplingAlgorithm(
    name="ulmc",
    description="underdamped Langevin, exponential integrator, 1 gradient/step",
    init=init, build_kernel=build_ulmc_kernel, mean_evals_per_step=lambda friction: 1.0,
    params=(FRICTION_PARAM,), velocities=True, exact_moments=_ulmc_moments,
    gaussian_law=lambda friction: True,
))
PULMC = register(SamplingAlgorithm(
    name="pulmc",
    description="Poisson-midpoint ULMC, K-independent sampling, 2 - 1/K gradients/step on average",
    init=init, build_kernel=build_pulmc_kernel, mean_evals_per_step=_pulmc_mean_evals,
    params=(_K_PARAM, FRICTION_PARAM), velocities=True, base="ulmc", exact_moments=_pulmc_moments,
    gaussian_law=_pulmc_gaussian_law,
))
# the same method by the plain loop over its K fine steps: only the kernel differs
PULMC_REF = register(dataclasses.replace(
    PULMC, name="pulmc_ref", build_kernel=build_pulmc_reference_kernel,
    description="Poisson-midpoint ULMC, plain loop over K fine steps (reference, O(K) time)",
))
RULMC = register(SamplingAlgorithm(
    name="rulmc",
    description="underdamped randomized midpoint (Shen & Lee, Algorithm 1), 2 gradients/step",
    init=init, build_kernel=build_rulmc_kernel, mean_evals_per_step=lambda friction: 2.0,
    params=(FRICTION_PARAM,), velocities=True, exact_moments=_rulmc_moments,
))

"""Exact mean and covariance of LMC, PLMC and RLMC chains on Gaussian targets (no Monte Carlo).

On a Gaussian target ``N(m, A^{-1})`` the drift is ``b(x) = -A(x - m)`` and, with
``e = X - m``, each method's step is *linear in e* with random coefficients independent of
``e``.  Averaging over all the randomness gives exact linear recursions for the mean ``mu`` and
the second moment ``P = E[e e^T]`` of the chain's law.  Writing ``M = I - eta A``:

LMC       ``e' = M e + sqrt(2 eta) Z``:
          ``mu' = M mu``,  ``P' = M P M + 2 eta I``.  The law stays Gaussian.

PLMC      (``h = eta/K``, ``R = sum_{i>=1} H_i i``, ``T = sum_{i>=1} H_i S_i``)
          ``e' = (M + eta h R A^2) e - eta sqrt(2h) A T + sqrt(2h) S_K``, so with
          ``E R = (K-1)/2``, ``Var R = p(1-p) n(n+1)(2n+1)/6`` (``p = 1/K``, ``n = K-1``) and
          ``E[T T^T] = tau I``, ``tau = p^2 n(n+1)(2n+1)/6 + p(1-p) n(n+1)/2``:
          ``mu' = (M + c E[R] A^2) mu``  with ``c = eta h`` — i.e. ``I - eta A + (eta^2/2)(1-1/K) A^2``;
          ``P' = M P M + c E[R] (A^2 P M + M P A^2) + c^2 E[R^2] A^2 P A^2
                 + 2h (eta^2 tau A^2 - eta (K-1) A + K I)``.
          The ``c^2 Var(R) A^2 P A^2`` part is the term the random ``H`` adds.

RLMC      (``u ~ U[0,1]``) ``e' = (M + u eta^2 A^2) e + sqrt(2)(I - eta A) W(u eta) + sqrt(2)(W(eta) - W(u eta))``:
          ``mu' = (M + (eta^2/2) A^2) mu``,
          ``P' = M P M + (eta^2/2)(A^2 P M + M P A^2) + (eta^4/3) A^2 P A^2 + eta (I - eta A)^2 + eta I``.

Every matrix above is a polynomial in ``A``, so in the eigenbasis of ``A`` (eigenvalues
``lam``) the recursions act entrywise: ``mu'_k = a_k mu_k`` and
``P'_{kl} = F_{kl} P_{kl} + n_k delta_{kl}``.  This module propagates the covariance
``Sigma = P - mu mu^T`` directly (``Sigma' = F∘Sigma + (F - a a^T)∘(mu mu^T) + diag(n)``), which
is exact and avoids cancellation, at ``O(d^2)`` per step.

Each method's one-step coefficients ``(a, F, noise)`` are its descriptor's ``exact_moments``
(:mod:`samplers.base`; the formulas above live beside each sampler).  The underdamped methods
(``ulmc``, ``pulmc``, ``rulmc``) have the same kind of recursions on the (position, velocity)
pair, in :mod:`metrics.underdamped_laws`; :func:`exact_law` and :func:`stationary_law` take them
too, with ``friction``.  Any registered method with ``exact_moments`` works here.

What is exact: LMC's law is Gaussian, so its KL and W2 to the target are exact.  PLMC's and
RLMC's laws are *not* Gaussian; their mean and covariance are exact, and the W2 between the
Gaussians with those moments is a **lower bound** on the true W2 (Gelbrich's bound: among all
laws with given first two moments the Gaussian pair is the closest in W2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from samplers.base import SamplingAlgorithm, get_method
from targets.validation import check_int, check_positive

from . import underdamped_laws

__all__ = ["ExactLaw", "one_step_coefficients", "exact_law", "stationary_law", "law_errors",
           "exact_methods", "mean_grad_evals_per_step"]


def exact_methods() -> tuple[str, ...]:
    """The registered methods whose law on a Gaussian target has an exact moment recursion."""
    from samplers import METHODS

    return tuple(name for name, alg in METHODS.items() if alg.exact_moments is not None)


def _resolve(method, K, friction) -> tuple[SamplingAlgorithm, Callable[..., Any], dict]:
    """The method's descriptor, its one-step moment model and its checked parameters, or
    ValueError naming what is wrong."""
    alg = get_method(method)
    if alg.exact_moments is None:
        raise ValueError(f"no exact moment recursion for method {alg.name!r}; known: {', '.join(exact_methods())}")
    return alg, alg.exact_moments, alg.check_params(K=K, friction=friction)


def mean_grad_evals_per_step(method, K: Optional[int] = None, *, friction=None) -> float:
    """Expected gradient evaluations per step (per chain) of ``method``: its descriptor's."""
    alg = get_method(method)
    return alg.mean_evals_per_step(**alg.check_params(K=K, friction=friction))


def one_step_coefficients(method, lam: np.ndarray, step_size: float, K: Optional[int] = None):
    """Eigenbasis coefficients ``(a [d], F [d, d], noise [d])`` of one step (module docstring).

    ``lam`` are the eigenvalues of the target's precision ``A``.
    """
    alg, moments, params = _resolve(method, K, None)
    if alg.velocities:
        raise ValueError(f"{alg.name} acts on (position, velocity): see metrics.underdamped_laws.step_model")
    return moments(lam, check_positive(step_size, "step_size"), **params)


def _spectral(target):
    for attr in ("precision", "mean"):
        if getattr(target, attr, None) is None:
            raise ValueError(f"exact laws need a Gaussian target with .{attr}; got {type(target).__name__}")
    A = target.precision.detach().cpu().to(torch.float64).numpy()
    lam, Q = np.linalg.eigh(0.5 * (A + A.T))
    return lam, Q, target.mean.detach().cpu().to(torch.float64).numpy()


@dataclass
class ExactLaw:
    """Exact mean and covariance of a chain's law at recorded steps (original coordinates).

    steps:      ``[R]`` step indices (0 = the start).
    grad_evals: ``[R]`` expected gradient evaluations per chain after those steps.
    means:      ``[R, d]``; covs: ``[R, d, d]`` (positions, for the underdamped methods).
    gaussian:   True for LMC and ULMC (the law is exactly ``N(mean, cov)``), False otherwise.
    friction:   the underdamped methods' ``gamma`` (else ``None``).
    v_means, v_covs, cross_covs: velocities' mean and covariance and ``Cov(U, V)`` (underdamped).
    """

    method: str
    step_size: float
    K: Optional[int]
    steps: np.ndarray
    grad_evals: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    gaussian: bool
    friction: Optional[float] = None
    v_means: Optional[np.ndarray] = None
    v_covs: Optional[np.ndarray] = None
    cross_covs: Optional[np.ndarray] = None


def _start(value, default, shape, name):
    out = default if value is None else np.asarray(torch.as_tensor(value, dtype=torch.float64).cpu(), dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(out.shape)}")
    return out


def exact_law(method: str, target, n_steps: int, step_size: float, K: Optional[int] = None,
              mean0=None, cov0=None, record_every: Optional[int] = None, *, friction=None,
              v_mean0=None, v_cov0=None) -> ExactLaw:
    """Propagate the exact mean and covariance for ``n_steps`` steps.

    The start law defaults to ``N(0, I)``, the default start of :func:`samplers.sample`.
    ``mean0``/``cov0`` give another (``cov0 = 0`` for a point mass).  Records the start, every
    ``record_every`` steps and the last step (only the last when ``record_every`` is None).
    Underdamped methods take ``friction`` and an independent velocity start ``N(v_mean0, v_cov0)``
    (default ``N(0, I)``, their stationary law, as in :func:`samplers.sample`).
    """
    alg, moments, params = _resolve(method, K, friction)
    step_size = check_positive(step_size, "step_size")
    n_steps = check_int(n_steps, "n_steps", 0)
    if record_every is not None:
        record_every = check_int(record_every, "record_every", 1)
    lam, Q, m_target = _spectral(target)
    d = lam.shape[0]
    mu0 = _start(mean0, np.zeros(d), (d,), "mean0")
    S0 = _start(cov0, np.eye(d), (d, d), "cov0")
    per_step = alg.mean_evals_per_step(**params)
    K, friction, gaussian = params.get("K"), params.get("friction"), alg.gaussian_law(**params)
    if alg.velocities:
        vm0 = _start(v_mean0, np.zeros(d), (d,), "v_mean0")
        vS0 = _start(v_cov0, np.eye(d), (d, d), "v_cov0")
        model = moments(step_size, **params)
        mom = underdamped_laws.run_moments(model, lam, Q, m_target, n_steps, mu0, S0, vm0, vS0, record_every)
        return ExactLaw(alg.name, step_size, K, mom.steps, mom.steps * per_step, mom.means, mom.covs,
                        gaussian=gaussian, friction=friction, v_means=mom.v_means,
                        v_covs=mom.v_covs, cross_covs=mom.cross_covs)
    if v_mean0 is not None or v_cov0 is not None:
        raise ValueError(f"method {alg.name!r} has no velocities (v_mean0/v_cov0)")
    a, F, noise = moments(lam, step_size, **params)
    G = F - np.outer(a, a)
    mu = Q.T @ (mu0 - m_target)
    S = Q.T @ S0 @ Q
    steps, means, covs = [], [], []

    def record(k):
        steps.append(k)
        means.append(Q @ mu + m_target)
        covs.append(Q @ S @ Q.T)

    if record_every is not None or n_steps == 0:
        record(0)
    for k in range(1, n_steps + 1):
        S = F * S + G * np.outer(mu, mu)
        S[np.diag_indices(d)] += noise
        mu = a * mu
        if (record_every is not None and k % record_every == 0) or k == n_steps:
            record(k)
    steps_arr = np.asarray(steps)
    return ExactLaw(alg.name, float(step_size), K, steps_arr, steps_arr * per_step,
                    np.stack(means), np.stack(covs), gaussian=gaussian)


def stationary_law(method: str, target, step_size: float, K: Optional[int] = None, *, friction=None,
                   velocities: bool = False):
    """The fixed point ``(mean, cov)`` of the exact recursion (the chain's stationary moments).

    For the underdamped methods these are the positions' moments; with ``velocities=True`` the
    joint ones, ``(mean [2d], cov [2d, 2d])`` ordered (positions, velocities).
    Raises ValueError if the step size makes the second moments unstable (``F_kk >= 1``).
    """
    alg, moments, params = _resolve(method, K, friction)
    step_size = check_positive(step_size, "step_size")
    lam, Q, m_target = _spectral(target)
    if alg.velocities:
        try:
            blocks = underdamped_laws.stationary_blocks(moments(step_size, **params), lam)
        except ValueError as exc:
            raise ValueError(f"step_size={step_size} is unstable for {alg.name} with friction={params['friction']} "
                             f"on this target: {exc}") from exc
        cov_u = (Q * blocks[:, 0, 0]) @ Q.T
        if not velocities:
            return m_target.copy(), cov_u
        d = lam.shape[0]
        cov = np.empty((2 * d, 2 * d))
        cov[:d, :d] = cov_u
        cov[:d, d:] = cov[d:, :d] = (Q * blocks[:, 0, 1]) @ Q.T
        cov[d:, d:] = (Q * blocks[:, 1, 1]) @ Q.T
        return np.concatenate([m_target, np.zeros(d)]), cov
    if velocities:
        raise ValueError(f"method {alg.name!r} has no velocities")
    a, F, noise = moments(lam, step_size, **params)
    f = np.diag(F)
    if np.any(np.abs(a) >= 1.0) or np.any(f >= 1.0):
        raise ValueError(f"step_size={step_size} is unstable for {alg.name} on this target "
                         f"(largest precision eigenvalue {lam.max():.4g})")
    var = noise / (1.0 - f)
    return m_target.copy(), (Q * var) @ Q.T


def law_errors(law: ExactLaw, target) -> dict:
    """Distances between each recorded law and the target, as arrays over records.

    ``w2``: W2 between ``N(mean, cov)`` and the target — exact for LMC, a lower bound on the
    true W2 for PLMC/RLMC (``law.gaussian`` tells which).  ``kl``: KL(law || target), exact for
    LMC, ``nan`` otherwise (the law is not Gaussian).  ``mean_error``: ``|mean - m|``;
    ``cov_error``: ``||cov - A^{-1}||_F``.
    """
    from .gaussian import kl_gaussian, w2_gaussian

    m_t = target.mean.detach().cpu().to(torch.float64)
    S_t = target.cov.detach().cpu().to(torch.float64)
    out: dict[str, list] = {"w2": [], "kl": [], "mean_error": [], "cov_error": []}
    for mu, S in zip(law.means, law.covs):
        mu_t, S_ = torch.from_numpy(mu), torch.from_numpy(0.5 * (S + S.T))
        out["w2"].append(float(w2_gaussian(mu_t, S_, m_t, S_t)))
        out["kl"].append(float(kl_gaussian(mu_t, S_, m_t, S_t)) if law.gaussian else float("nan"))
        out["mean_error"].append(float(torch.linalg.norm(mu_t - m_t)))
        out["cov_error"].append(float(torch.linalg.norm(S_ - S_t)))
    return {k: np.asarray(v) for k, v in out.items()}

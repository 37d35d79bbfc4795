"""Exact mean and covariance of the diffusion samplers' output on Gaussian data (no Monte Carlo).

For a Gaussian data law ``N(m, S)`` every diffused marginal is Gaussian,
``p_t = N(sqrt(abar_t) m, abar_t S + (1 - abar_t) I)``, and the exact noise prediction of
:class:`targets.diffusion.DiffusedMixture` is affine in ``x``:

    eps_hat(x, t) = sqrt(1 - abar_t) (abar_t S + (1 - abar_t) I)^{-1} (x - sqrt(abar_t) m).

Every sampler of :mod:`samplers.diffusion` is then an affine map of ``x`` plus Gaussian noise, so
its output law after the whole chain has exact first two moments, which this module computes.

**Eigenbasis.**  With ``S = U diag(lam) U^T`` and ``x~ = U^T x``, ``eps_hat`` is
``q_t (x~ - sqrt(abar_t) U^T m)`` with the per-coordinate ``q_t = sqrt(1 - abar_t) / (abar_t lam +
1 - abar_t)``.  Every other coefficient of every sampler is a scalar of the schedule (a multiple
of ``I``), so every step map is a function of ``S`` and is diagonal in this basis, and the
samplers' Gaussians are isotropic, hence still independent standard normals per eigen-coordinate.
Diagonalising ``S`` once is therefore exact, not an approximation; results are rotated back
(``mean = U mean~``, ``cov = U cov~ U^T``).  The covariance is carried in full (``[d, d]`` in the
eigenbasis), because a start law may couple the coordinates and because Poisson-midpoint DDPM
shares its selections between coordinates (below).

**Start.**  ``start="marginal"`` (default) is ``x_T ~ p_T``, the exact marginal at ``t = T`` that
the diffusion lab and the tests start from (``DiffusedMixture.sample_xt(n, T)``); ``"prior"`` is
``x_T ~ N(0, I)``; a pair ``(mean, cov)`` is any Gaussian start.

**The samplers** (their formulas: :mod:`samplers.diffusion`; per eigen-coordinate,
``eps_hat = q x + o`` with ``o = -q sqrt(abar_t) m~``):

``ddpm``      ``x_s = alpha x_t + beta + sigma z`` with ``alpha = (1 - c q) / sqrt(alpha_{t|s})``,
              ``c = beta_{t|s} / sqrt(1 - abar_t)``, ``beta = -c o / sqrt(alpha_{t|s})``, ``sigma^2``
              ``beta_tilde`` or ``beta_{t|s}``, ``0`` on the last step;
              ``mean' = alpha mean + beta``, ``cov' = (alpha alpha^T)∘cov + diag(sigma^2)``.
``ddim``      ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z`` with
              ``x0_hat`` affine in ``x_t``; the same recursion (``sigma = 0`` for ``eta = 0``).
``dpm_solver_pp``  deterministic: the multistep history (the last two ``x0_hat``) is carried as
              affine functions of the start, ``a∘x_T + c`` per coordinate, combined exactly as the
              solver combines them; the output is ``a∘x_T + c``, so ``mean = a∘mean_T + c`` and
              ``cov = (a a^T)∘cov_T``.  This is the joint law of the whole history at once: every
              stacked ``x0_hat`` is a deterministic affine function of ``x_T``.
``pm_ddpm``   a block of ``k`` fine DDPM steps from ``t_top`` (:class:`samplers.diffusion.DDPMScheme`:
              ``A_i = 1/sqrt(alpha_t)``, ``G_i = -beta_t / (sqrt(alpha_t) sqrt(1 - abar_t))``,
              ``Gamma_i`` the DDPM standard deviation, ``t = t_top - i``; ``Phi(j, i) = e^{L_j - L_i}``,
              ``L_j = sum_{l < j} log A_l``, ``Psi_i = sum_{m < i} Phi(i, m+1) G_m``).  With
              ``H_i ~ Bernoulli(p)``, ``p = 1/k``, independent for ``i = 1..k-1`` (``H_0`` is never
              drawn), the engine's update ``X_k = Y_k + sum_{H_i = 1} Phi(k, i+1) G_i k (eps_hat(Y_i) -
              eps_hat(X))``, with the interpolant ``Y_i = Phi(i, 0) X + Psi_i eps_hat(X) + W_i`` and
              ``W_i = sum_{m < i} Phi(i, m+1) Gamma_m Z_m`` made of the **same** ``Z_m`` as the path, is

                  X_k = a(H) X + c(H) + sum_m g_m(H) Z_m,
                  a(H) = a_0 + sum_i H_i u_i,   c(H) = c_0 + sum_i H_i v_i,
                  g_m(H) = Gamma_m [Phi(k, m+1) + sum_{i > m} H_i e_{i m}],

              with ``a_0 = Phi(k, 0) + Psi_k q_0``, ``c_0 = Psi_k o_0``, ``r_i = Phi(k, i+1) G_i k``,
              ``u_i = r_i (q_i Phi(i, 0) + (q_i Psi_i - 1) q_0)``, ``v_i = r_i (o_i + (q_i Psi_i - 1) o_0)``,
              ``e_{i m} = r_i q_i Phi(i, m+1)`` (all per eigen-coordinate).  The block's selections are
              independent of its input ``X`` (mean ``mu``, covariance ``C``), so averaging over ``H``
              exactly (``E H_i H_j = p^2 + p(1-p) [i = j]``) and the law of total covariance give

                  mean' = abar∘mu + cbar,   abar = a_0 + p sum_i u_i,   cbar = c_0 + p sum_i v_i,
                  cov'  = (abar abar^T)∘C + p(1-p) [ (sum_i u_i u_i^T)∘C + sum_i w_i w_i^T ]
                          + diag( sum_m Gamma_m^2 [ (Phi(k, m+1) + p S1_m)^2 + p(1-p) S2_m ] ),

              ``w_i = u_i∘mu + v_i``, ``S1_m = sum_{i>m} e_{i m}``, ``S2_m = sum_{i>m} e_{i m}^2`` (suffix
              sums, ``O(k d^2)`` per block).  The ``p(1-p)`` terms are the **selection variance**.  The
              selections are shared by all coordinates of a chain, so PM-DDPM's covariance is in general
              not diagonal in the eigenbasis even when the start's is: ``w_i`` moves every coordinate's
              conditional mean with the same ``H_i``.  (From the exact marginal start the mean stays on
              ``sqrt(abar_t) m`` -- with ``eps_hat = 0`` there every sampler follows it -- so ``w_i = 0``
              and a diagonal covariance stays diagonal.)  ``K = 1`` is DDPM.

              **Corrections.**  Written with multipliers ``M_i`` (``k H_i`` above), the correction is
              ``sum_i M_i Phi(k, i+1) G_i (eps_hat(Y_i) - eps_hat(X))``; every form has ``E M_i = 1`` and
              ``Cov(M_i, M_j) = D_i [i = j] - c``: ``"bernoulli"`` ``D_i = k - 1``, ``c = 0``; one midpoint
              ``I ~ pi`` with ``M_i = [I = i] / pi_i`` (``"one"``: ``pi_i = 1/(k-1)``; ``"one_linear"``:
              ``pi_i = 2i/(k(k-1))``) ``D_i = 1/pi_i``, ``c = 1``.  With ``u_i, v_i, e_{i m}`` taken without
              the factor ``k`` (``r_i = Phi(k, i+1) G_i``) the same averaging gives

                  mean' = abar∘mu + cbar,   abar = a_0 + sum_i u_i,   cbar = c_0 + sum_i v_i,
                  cov'  = (abar abar^T)∘C + [sum_i D_i u_i u_i^T - c U U^T]∘C + sum_i D_i w_i w_i^T - c W W^T
                          + diag( sum_m Gamma_m^2 [ (Phi(k, m+1) + S1_m)^2 + S2_m - c S1_m^2 ] ),

              ``U = sum_i u_i``, ``W = sum_i w_i``, ``S1_m = sum_{i>m} e_{i m}``, ``S2_m = sum_{i>m} D_i e_{i m}^2``
              (for ``"bernoulli"`` exactly the formula above).  **Block schedules** only change the list
              of blocks (:func:`samplers.diffusion.pm_schedule`); a hybrid schedule's tail steps are DDPM
              steps (the ``ddpm`` recursion).

What is exact: DDPM, DDIM and DPM-Solver++ map a Gaussian start to a Gaussian law, so
``N(mean, cov)`` *is* their output law and :func:`metrics.w2_gaussian` to the data law is their
exact W2.  PM-DDPM's coefficients are random (its selections), so its output is a mixture of
Gaussians over the selections, not a Gaussian; its mean and covariance are still exact, and the
W2 between the Gaussians with those moments is a lower bound on its true W2 (Gelbrich's bound).
For 1-D data :func:`pm_mixture_w2` estimates the true W2 of that mixture: given the selections the
chain is Gaussian with exact moments, so only the selections are sampled.

``python -c "from metrics.diffusion_laws import main; main()"`` prints the tables of
docs/diffusion_laws.md (1-D data, the default schedule) from these exact laws; ``main(["--schedules"])``
the block schedules and corrections of PM-DDPM at matched calls (:func:`schedules_table`).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional

import numpy as np
import torch

from samplers.diffusion import (PM_CORRECTIONS, SPACINGS, VARIANCES, PMBlock, dpm_pp_update, midpoint_probabilities,
                                pm_blocks, pm_calls, pm_schedule, strided_timesteps)
from targets.diffusion import DiffusionSchedule
from targets.validation import as_float64_cpu, check_int, check_spd

from .gaussian import w2_gaussian

__all__ = ["DiffusionLaw", "DIFFUSION_LAW_SAMPLERS", "diffusion_law", "diffusion_law_w2", "mean_network_calls",
           "pm_block_stiffness", "pm_mechanism", "mechanism_table", "format_mechanism_table",
           "format_pm_mechanism", "MECHANISM_ROWS", "PM_OPTIONS", "SCHEDULE_DATA", "schedules_table",
           "format_schedules_table", "pm_mixture_w2"]


class DiffusionLaw(NamedTuple):
    """The exact mean ``[d]`` and covariance ``[d, d]`` (float64 numpy) of a sampler's output;
    unpacks as ``mean, cov = diffusion_law(...)``."""

    mean: np.ndarray
    cov: np.ndarray


#: Sampler names (those of :data:`samplers.diffusion.DIFFUSION_SAMPLERS`, plus the bare function
#: names) -> (family, default settings).  Settings given to :func:`diffusion_law` override the
#: defaults, as keyword arguments of :func:`samplers.diffusion.sample` do.
DIFFUSION_LAW_SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm_small": ("ddpm", dict(variance="small")),
    "ddpm_large": ("ddpm", dict(variance="large")),
    "ddim": ("ddim", dict(eta=0.0)),
    "dpmpp_2m": ("dpmpp", dict(order=2)),
    "dpmpp_3m": ("dpmpp", dict(order=3)),
    "pm_ddpm_small": ("pm", dict(variance="small")),
    "pm_ddpm_large": ("pm", dict(variance="large")),
    "ddpm": ("ddpm", dict(variance="small")),
    "dpm_solver_pp": ("dpmpp", dict(order=2)),
    "pm_ddpm": ("pm", dict(variance="small")),
}

#: PM-DDPM's settings beyond ``K`` and ``variance`` (those of :func:`samplers.diffusion.pm_ddpm`).
PM_OPTIONS = ("block_schedule", "correction", "level", "min_var", "lipschitz", "t_switch", "tail_steps")

_SETTINGS = {"ddpm": ("variance",), "ddim": ("eta",), "dpmpp": ("order",), "pm": ("variance",) + PM_OPTIONS}


# ------------------------------------------------------------------------------------------------
# checks (all before any work)


def _check_data(data_mean, data_cov) -> tuple[np.ndarray, np.ndarray]:
    m = as_float64_cpu(data_mean, "data_mean")
    if m.ndim == 0:
        m = m.reshape(1)
    if m.ndim != 1 or m.numel() == 0:
        raise ValueError(f"data_mean must be a vector [d] (or a number for d = 1), got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"data_mean must be finite, got {m.tolist()!r}")
    d = m.numel()
    S = as_float64_cpu(data_cov, "data_cov")
    if d == 1 and S.numel() == 1 and S.ndim <= 2:
        S = S.reshape(1, 1)  # a 1-D law's variance as a number
    S = check_spd(data_cov, S, d, "data_cov")
    if S.ndim != 2:
        raise ValueError(f"data_cov must be one matrix [{d}, {d}], got shape {tuple(S.shape)}")
    return m.numpy(), S.numpy()


def _check_timesteps(schedule: DiffusionSchedule, steps, timesteps, spacing, default_full: bool) -> list:
    """The decreasing timesteps ``[T, ..., 0]`` a strided sampler walks (as the sampler resolves them)."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if timesteps is None:
        if steps is None:
            if not default_full:
                raise ValueError("give steps (the number of network calls) or an explicit list of timesteps")
            steps = schedule.T
        return strided_timesteps(schedule, steps, spacing)
    if steps is not None:
        raise ValueError("give steps or timesteps, not both")
    if any(not isinstance(t, numbers.Integral) or isinstance(t, bool) for t in timesteps):
        raise ValueError(f"timesteps must be integers, got {list(timesteps)!r}")
    ts = [int(t) for t in timesteps]
    if len(ts) < 2 or ts[0] != schedule.T or ts[-1] != 0 or any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must decrease strictly from T={schedule.T} to 0, got {ts!r}")
    return ts


def _resolve(name, schedule, steps, timesteps, spacing, K, variance, eta, order, pm=None) -> tuple[str, dict]:
    """The family and checked settings of ``name``, or ValueError naming what is wrong (``pm``: the
    :data:`PM_OPTIONS` given)."""
    if not isinstance(name, str) or name not in DIFFUSION_LAW_SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {name!r}; known: {', '.join(DIFFUSION_LAW_SAMPLERS)}")
    family, defaults = DIFFUSION_LAW_SAMPLERS[name]
    pm = {k: v for k, v in (pm or {}).items() if v is not None}
    given = dict({k: v for k, v in dict(variance=variance, eta=eta, order=order).items() if v is not None}, **pm)
    extra = sorted(set(given) - set(_SETTINGS[family]))
    if extra:
        raise ValueError(f"{name} takes no {', '.join(extra)} (its settings: {', '.join(_SETTINGS[family])})")
    s = dict(defaults, **given)
    if "variance" in s and s["variance"] not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, got {s['variance']!r}")
    if "eta" in s:
        e = s["eta"]
        if isinstance(e, bool) or not isinstance(e, numbers.Real) or not 0.0 <= float(e) < math.inf:
            raise ValueError(f"eta must be a finite number >= 0, got {e!r}")
        s["eta"] = float(e)
    if "order" in s and (isinstance(s["order"], bool) or s["order"] not in (1, 2, 3)):
        raise ValueError(f"order must be 1, 2 or 3, got {s['order']!r}")
    if family == "pm":
        if steps is not None or timesteps is not None:
            raise ValueError(f"{name} takes K, not steps or timesteps")
        if K is None:
            raise ValueError(f"{name} needs K (fine steps per coarse step), got None")
        K = check_int(K, "K", 1)
        if K > schedule.T:
            raise ValueError(f"K must be at most T={schedule.T}, got {K}")
        s["K"] = K
        correction = pm.get("correction", "bernoulli")
        if not isinstance(correction, str) or correction not in PM_CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(PM_CORRECTIONS)}, got {correction!r}")
        s["correction"] = correction
        s["blocks"] = pm_schedule(schedule, K, pm.get("block_schedule", "uniform"),
                                  **{k: v for k, v in pm.items() if k not in ("block_schedule", "correction")})
    else:
        if K is not None:
            raise ValueError(f"{name} takes steps, not K")
        s["timesteps"] = _check_timesteps(schedule, steps, timesteps, spacing, default_full=family == "ddpm")
    return family, s


def _check_schedule(schedule) -> DiffusionSchedule:
    schedule = DiffusionSchedule() if schedule is None else schedule
    if not isinstance(schedule, DiffusionSchedule):
        raise ValueError(f"schedule must be a targets.diffusion.DiffusionSchedule, got {type(schedule).__name__}")
    return schedule


# ------------------------------------------------------------------------------------------------
# the problem in the eigenbasis of S


class _Eigen(NamedTuple):
    lam: np.ndarray  # [d] eigenvalues of S
    U: np.ndarray  # [d, d] eigenvectors (columns)
    mu: np.ndarray  # [d] the data mean in the eigenbasis
    betas: np.ndarray  # [T + 1] the schedule's tables (numpy float64)
    alphas: np.ndarray
    abar: np.ndarray
    lambdas: np.ndarray


def _eigen(m: np.ndarray, S: np.ndarray, schedule: DiffusionSchedule) -> _Eigen:
    lam, U = np.linalg.eigh(S)
    return _Eigen(lam, U, U.T @ m, schedule.betas.numpy(), schedule.alphas.numpy(), schedule.alphas_cumprod.numpy(),
                  schedule.lambdas.numpy())


def _eps(e: _Eigen, t) -> tuple[np.ndarray, np.ndarray]:
    """``eps_hat(x, t) = q x + o`` per eigen-coordinate; ``t`` an int or an int array ``[k]`` (then ``[k, d]``)."""
    ab = np.asarray(e.abar[t], dtype=np.float64)[..., None]
    q = np.sqrt(1.0 - ab) / (ab * e.lam + (1.0 - ab))
    return q, -q * np.sqrt(ab) * e.mu


def _check_start(start, d: int):
    """``"marginal"``, ``"prior"`` or a checked pair ``(mean [d], cov [d, d])`` of float64 numpy arrays."""
    if isinstance(start, str):
        if start not in ("marginal", "prior"):
            raise ValueError(f"start must be 'marginal', 'prior' or a pair (mean, cov), got {start!r}")
        return start
    if not isinstance(start, (tuple, list)) or len(start) != 2:
        raise ValueError(f"start must be 'marginal', 'prior' or a pair (mean, cov), got {type(start).__name__}")
    m0 = as_float64_cpu(start[0], "start mean").reshape(-1)
    if m0.numel() != d or not torch.isfinite(m0).all():
        raise ValueError(f"start mean must be a finite vector [{d}], got {m0.tolist()!r}")
    S0 = as_float64_cpu(start[1], "start cov")
    if d == 1 and S0.numel() == 1:
        S0 = S0.reshape(1, 1)
    if tuple(S0.shape) != (d, d) or not torch.isfinite(S0).all():
        raise ValueError(f"start cov must be a finite matrix [{d}, {d}], got shape {tuple(S0.shape)}")
    S0n = 0.5 * (S0.numpy() + S0.numpy().T)
    w = np.linalg.eigvalsh(S0n)
    if w[0] < -1e-12 * max(1.0, abs(w[-1])):
        raise ValueError(f"start cov must be positive semi-definite, smallest eigenvalue {w[0]:.6g}")
    return m0.numpy(), S0n


def _start(start, e: _Eigen) -> tuple[np.ndarray, np.ndarray]:
    """The (checked) start law's mean and covariance in the eigenbasis."""
    if isinstance(start, str):
        if start == "marginal":
            ab = float(e.abar[-1])
            return math.sqrt(ab) * e.mu, np.diag(ab * e.lam + (1.0 - ab))
        return np.zeros(e.mu.size), np.eye(e.mu.size)
    return e.U.T @ start[0], e.U.T @ start[1] @ e.U


def _step_coefs(e: _Eigen, t: int, s: int) -> dict:
    """The scalars of one step ``t -> s``, as ``samplers.diffusion`` computes them (the full chain's
    own ``alpha_t``, ``beta_t`` when ``s = t - 1``)."""
    ab_t, ab_s = float(e.abar[t]), float(e.abar[s])
    a_ts = ab_t / ab_s
    b_ts = 1.0 - a_ts
    if s == t - 1:
        a_ts, b_ts = float(e.alphas[t]), float(e.betas[t])
    return dict(ab_t=ab_t, ab_s=ab_s, a_ts=a_ts, b_ts=b_ts, beta_tilde=b_ts * (1.0 - ab_s) / (1.0 - ab_t))


# ------------------------------------------------------------------------------------------------
# the families


def _markov(e: _Eigen, ts: list, mean, cov, family: str, s: dict):
    """DDPM and DDIM: ``x_s = alpha x_t + beta + sigma z`` step by step (module docstring)."""
    for t, t_next in zip(ts[:-1], ts[1:]):
        c = _step_coefs(e, t, t_next)
        q, o = _eps(e, t)
        if family == "ddpm":
            k = c["b_ts"] / math.sqrt(1.0 - c["ab_t"])
            alpha = (1.0 - k * q) / math.sqrt(c["a_ts"])
            beta = -k * o / math.sqrt(c["a_ts"])
            var = (c["beta_tilde"] if s["variance"] == "small" else c["b_ts"]) if t_next > 0 else 0.0
        else:
            sigma = s["eta"] * math.sqrt(c["beta_tilde"]) if t_next > 0 else 0.0
            var = sigma**2
            r = math.sqrt(1.0 - c["ab_t"])
            kappa, k0 = (1.0 - r * q) / math.sqrt(c["ab_t"]), -r * o / math.sqrt(c["ab_t"])  # x0_hat = kappa x + k0
            w = math.sqrt(max(1.0 - c["ab_s"] - var, 0.0))
            alpha = math.sqrt(c["ab_s"]) * kappa + w * q
            beta = math.sqrt(c["ab_s"]) * k0 + w * o
        mean = alpha * mean + beta
        cov = np.outer(alpha, alpha) * cov
        cov[np.diag_indices_from(cov)] += var
    return mean, cov


def _dpmpp(e: _Eigen, ts: list, mean, cov, order: int):
    """DPM-Solver++: every state and history entry as ``[2, d]`` = (coefficient of ``x_T``, constant)."""
    d = e.lam.size
    x = np.stack([np.ones(d), np.zeros(d)])
    hist: list = []  # (lambda_t, x0_hat), newest last
    for t, s in zip(ts[:-1], ts[1:]):
        ab_t = float(e.abar[t])
        q, o = _eps(e, t)
        eps = q * x
        eps[1] += o
        x0 = (x - math.sqrt(1.0 - ab_t) * eps) / math.sqrt(ab_t)
        x = dpm_pp_update(x, x0, hist, e.abar, e.lambdas, t, s, order)
        hist = (hist + [(float(e.lambdas[t]), x0)])[-2:]
    a, c = x
    return a * mean + c, np.outer(a, a) * cov


def _selection_law(k: int, correction: str) -> tuple[np.ndarray, float]:
    """The multipliers ``M_i`` (``i = 1..k-1``) of a block's correction: ``E M_i = 1`` and
    ``Cov(M_i, M_j) = D_i [i = j] - c``; returns ``(D [k - 1], c)``.

    ``"bernoulli"``: ``M_i = k H_i``, ``H_i ~ Bernoulli(1/k)`` independent: ``D_i = k - 1``, ``c = 0``.
    One midpoint ``I`` with ``P(I = i) = pi_i`` and ``M_i = [I = i] / pi_i`` (``"one"``, ``"one_linear"``):
    ``E M_i M_j = [i = j] / pi_i``, so ``D_i = 1 / pi_i``, ``c = 1``.
    """
    if correction == "bernoulli":
        return np.full(k - 1, k - 1.0), 0.0
    return 1.0 / midpoint_probabilities(k, correction).numpy(), 1.0


def _suffix(X: np.ndarray) -> np.ndarray:
    """``out[m] = sum_{i > m} X[i]`` over the first axis."""
    return np.concatenate([np.cumsum(X[::-1], 0)[::-1][1:], np.zeros((1,) + X.shape[1:])])


class _BlockCoefs(NamedTuple):
    """A PM block's coefficients (module docstring), per eigen-coordinate: ``X_k = a(M) X + c(M) + sum_m
    Gamma_m [Phi(k, m+1) + sum_{i>m} M_i e_{i m}] Z_m`` with ``a(M) = a0 + sum_i M_i u_i``, ``c(M) = c0 +
    sum_i M_i v_i``, ``e_{i m} = E_i e^{-L_{m+1}}``.  ``u, v, E`` are ``[k-1, d]`` (``i = 1..k-1``), ``var``
    ``[k]`` the fine steps' noise variances ``Gamma_m^2``, ``phi_end`` ``[k]`` ``Phi(k, m+1)``, ``L`` ``[k + 1]``."""

    a0: np.ndarray
    c0: np.ndarray
    u: np.ndarray
    v: np.ndarray
    E: np.ndarray
    var: np.ndarray
    phi_end: np.ndarray
    L: np.ndarray


def _block_coefs(e: _Eigen, t_top: int, k: int, variance: str) -> _BlockCoefs:
    t = np.arange(t_top, t_top - k, -1)
    alpha, beta, abar = e.alphas[t], e.betas[t], e.abar[t]
    A = 1.0 / np.sqrt(alpha)
    G = -beta / (np.sqrt(alpha) * np.sqrt(1.0 - abar))
    var = beta * (1.0 - e.abar[t - 1]) / (1.0 - abar) if variance == "small" else beta.copy()
    var[t == 1] = 0.0
    L = np.concatenate([[0.0], np.cumsum(np.log(A))])  # [k + 1]
    psi = np.exp(L) * np.concatenate([[0.0], np.cumsum(G * np.exp(-L[1:]))])  # Psi_i, [k + 1]
    q, o = _eps(e, t)  # [k, d]
    phi_end = np.exp(L[k] - L[1:])  # Phi(k, m+1), m = 0..k-1
    r = (phi_end * G)[1:, None]  # r_i = Phi(k, i+1) G_i, i = 1..k-1
    f = q[1:] * psi[1:k, None] - 1.0  # q_i Psi_i - 1
    u = r * (q[1:] * np.exp(L[1:k])[:, None] + f * q[0])  # [k-1, d]
    v = r * (o[1:] + f * o[0])
    E = r * q[1:] * np.exp(L[1:k])[:, None]  # e_{i m} = r_i q_i Phi(i, m+1) = E_i e^{-L_{m+1}}
    return _BlockCoefs(math.exp(L[k]) + psi[k] * q[0], psi[k] * o[0], u, v, E, var, phi_end, L)


def _pm_block(e: _Eigen, t_top: int, k: int, variance: str, mean, cov, selection_variance: bool = True,
              shared_noise: bool = True, info: Optional[dict] = None, correction: str = "bernoulli"):
    """One Poisson-midpoint block of ``k`` fine DDPM steps from ``t_top`` (module docstring), with the
    correction's multipliers ``M_i`` of :func:`_selection_law`.

    ``selection_variance=False`` drops the terms of ``Cov(M)`` (the law of the averaged map, a wrong
    law kept as a negative control); ``shared_noise=False`` is the law of the variant whose
    interpolant has its own Gaussians (``(Phi(k, m+1) + S1_m)^2`` becomes ``Phi(k, m+1)^2 + S1_m^2``),
    also a negative control.  ``info``, when given, receives the averaged coefficient ``abar`` and
    the standard deviation of ``a(M)`` over the selections, ``sqrt(sum_ij Cov(M_i, M_j) u_i u_j)`` (``[d]``).
    """
    a0, c0, u, v, E, var, phi_end, L = _block_coefs(e, t_top, k, variance)
    if k == 1:
        abar_map, cbar, a_sd = a0, c0, np.zeros_like(a0)
        new_cov = np.outer(a0, a0) * cov
        noise = var[0] * phi_end[0] ** 2 * np.ones_like(mean)
    else:
        D, c = _selection_law(k, correction)
        if not selection_variance:
            D, c = np.zeros_like(D), 0.0
        us, vs = u.sum(0), v.sum(0)
        abar_map, cbar = a0 + us, c0 + vs
        a_sd = np.sqrt(np.maximum((D[:, None] * u * u).sum(0) - c * us * us, 0.0))
        w = u * mean + v
        ws = w.sum(0)
        new_cov = (np.outer(abar_map, abar_map) * cov + ((u.T * D) @ u - c * np.outer(us, us)) * cov
                   + (w.T * D) @ w - c * np.outer(ws, ws))
        # suffix sums over i > m of e_{i m} and D_i e_{i m}^2 (E padded with the i = 0 row, which has none)
        pad = np.zeros((1, E.shape[1]))
        S1 = _suffix(np.concatenate([pad, E])) * np.exp(-L[1:])[:, None]
        S2 = _suffix(np.concatenate([pad, D[:, None] * E * E])) * np.exp(-2.0 * L[1:])[:, None]
        base = phi_end[:, None]
        g2 = (base + S1) ** 2 if shared_noise else base**2 + S1**2
        noise = (var[:, None] * (g2 + S2 - c * S1**2)).sum(0)
    new_cov[np.diag_indices_from(new_cov)] += noise
    if info is not None:
        info.update(a_mean=abar_map, a_sd=a_sd)
    return abar_map * mean + cbar, new_cov


def _pm(e: _Eigen, blocks: list, variance: str, mean, cov, pm_set=None, correction: str = "bernoulli", **control):
    """The PM-DDPM chain over ``blocks`` (:class:`samplers.diffusion.PMBlock`); blocks whose index is not
    in ``pm_set`` (all when ``None``) are run as their ``k`` plain DDPM steps instead (blocks of one
    step), to attribute the error to blocks.  A ``"ddpm"`` block is one DDPM step ``t_top -> t_top - k``."""
    for b, (t_top, k, mode) in enumerate(blocks):
        if mode == "ddpm":
            mean, cov = _markov(e, [t_top, t_top - k], mean, cov, "ddpm", dict(variance=variance))
        elif pm_set is None or b in pm_set:
            mean, cov = _pm_block(e, t_top, k, variance, mean, cov, correction=correction, **control)
        else:
            for j in range(k):
                mean, cov = _pm_block(e, t_top - j, 1, variance, mean, cov)
    return mean, cov


def _uniform(T: int, K: int) -> list:
    return [PMBlock(t, k) for t, k in pm_blocks(T, K)]


# ------------------------------------------------------------------------------------------------
# the public functions


def diffusion_law(name: str, data_mean, data_cov, schedule: Optional[DiffusionSchedule] = None, *, steps=None,
                  timesteps=None, spacing: str = "uniform", K=None, variance=None, eta=None, order=None,
                  start="marginal", block_schedule=None, correction=None, level=None, min_var=None, lipschitz=None,
                  t_switch=None, tail_steps=None, _selection_variance: bool = True,
                  _shared_noise: bool = True) -> DiffusionLaw:
    """The exact mean and covariance of the output of sampler ``name`` on the data law ``N(data_mean, data_cov)``.

    ``name``: one of :data:`DIFFUSION_LAW_SAMPLERS` (the names of :func:`samplers.diffusion.sample`
    and the bare ``"ddpm"``, ``"dpm_solver_pp"``, ``"pm_ddpm"``).  ``steps``/``timesteps``/``spacing``
    for the strided samplers (DDPM's default is the full chain, as :func:`samplers.diffusion.ddpm`'s),
    ``K`` for Poisson-midpoint DDPM; ``variance`` (DDPM, PM-DDPM), ``eta`` (DDIM) and ``order``
    (DPM-Solver++) override the name's defaults; PM-DDPM also takes :data:`PM_OPTIONS` (``block_schedule``,
    ``correction`` and their settings, as :func:`samplers.diffusion.pm_ddpm`).  ``schedule``: a :class:`DiffusionSchedule`
    (default: DDPM's linear one, ``T = 1000``).  ``start``: ``"marginal"`` (``x_T ~ p_T``, as the lab
    starts), ``"prior"`` (``N(0, I)``) or a pair ``(mean, cov)``.  A 1-D law may be given as two
    numbers (mean, variance).

    Returns :class:`DiffusionLaw` ``(mean [d], cov [d, d])``, float64 numpy in the original
    coordinates.  Exactly the output law for every sampler but PM-DDPM, whose output is a mixture
    over its selections with these exact moments (module docstring).  Bad input raises ValueError
    before any work.  (``_selection_variance`` and ``_shared_noise`` give PM-DDPM's wrong laws
    that the tests use as negative controls.)
    """
    schedule = _check_schedule(schedule)
    m, S = _check_data(data_mean, data_cov)
    pm = dict(block_schedule=block_schedule, correction=correction, level=level, min_var=min_var, lipschitz=lipschitz,
              t_switch=t_switch, tail_steps=tail_steps)
    family, s = _resolve(name, schedule, steps, timesteps, spacing, K, variance, eta, order, pm)
    start = _check_start(start, m.size)
    e = _eigen(m, S, schedule)
    mean, cov = _start(start, e)
    if family in ("ddpm", "ddim"):
        mean, cov = _markov(e, s["timesteps"], mean, cov, family, s)
    elif family == "dpmpp":
        mean, cov = _dpmpp(e, s["timesteps"], mean, cov, s["order"])
    else:
        mean, cov = _pm(e, s["blocks"], s["variance"], mean, cov, correction=s["correction"],
                        selection_variance=_selection_variance, shared_noise=_shared_noise)
    cov = e.U @ cov @ e.U.T
    return DiffusionLaw(e.U @ mean, 0.5 * (cov + cov.T))


def diffusion_law_w2(name: str, data_mean, data_cov, schedule: Optional[DiffusionSchedule] = None, **kw) -> float:
    """W2 (not squared) between ``N(mean, cov)`` of :func:`diffusion_law` and the data law.

    Exact for DDPM, DDIM and DPM-Solver++ (their output is Gaussian); for PM-DDPM a lower bound on
    its true W2 (Gelbrich's bound).  :func:`metrics.w2_gaussian` on the moments.
    """
    law = diffusion_law(name, data_mean, data_cov, schedule, **kw)
    m, S = _check_data(data_mean, data_cov)
    return w2_gaussian(law.mean, law.cov, m, S)


def mean_network_calls(name: str, schedule: Optional[DiffusionSchedule] = None, *, steps=None, timesteps=None,
                       spacing: str = "uniform", K=None, **pm) -> float:
    """Mean network calls per sample: ``steps`` for the strided samplers; for PM-DDPM (``K`` and the
    :data:`PM_OPTIONS`) :func:`samplers.diffusion.pm_calls` over its blocks (``sum_blocks (2 - 1/k)`` for
    the uniform schedule with the Bernoulli correction)."""
    schedule = _check_schedule(schedule)
    unknown = sorted(set(pm) - set(PM_OPTIONS))
    if unknown:
        raise ValueError(f"mean_network_calls takes no {', '.join(unknown)}")
    family, s = _resolve(name, schedule, steps, timesteps, spacing, K, None, None, None, pm)
    if family == "pm":
        return pm_calls(s["blocks"], s["correction"])[0]
    return float(len(s["timesteps"]) - 1)


def _draw_multipliers(rng: np.random.Generator, n: int, k: int, correction: str) -> np.ndarray:
    """``[n, k - 1]`` multipliers ``M_i`` of one block for ``n`` chains (:func:`_selection_law`)."""
    if correction == "bernoulli":
        return k * (rng.random((n, k - 1)) < 1.0 / k).astype(np.float64)
    pi = midpoint_probabilities(k, correction).numpy()
    idx = rng.choice(k - 1, size=n, p=pi)
    M = np.zeros((n, k - 1))
    M[np.arange(n), idx] = 1.0 / pi[idx]
    return M


def pm_mixture_w2(name: str, data_mean, data_var, schedule: Optional[DiffusionSchedule] = None, *,
                  n_selections: int = 20000, seed: int = 0, start="marginal", **kw) -> tuple[float, float]:
    """PM-DDPM's W2 to 1-D data ``N(data_mean, data_var)``, its output taken as the mixture it is, not by its moments.

    Given every block's selections (multipliers ``M``), PM-DDPM is a linear Gaussian chain, so its output
    is ``N(mu(M), V(M))`` exactly (``a(M)``, ``c(M)`` and the noise of module docstring's block map, DDPM
    steps as they are).  ``n_selections`` selection paths are drawn (``numpy`` generator ``seed``), and
    the W2 between the mixture of their Gaussians and the data law is computed by quantiles,
    ``W2^2 = int_0^1 (Q_mix(u) - Q_data(u))^2 du`` (midpoints ``u``, ``10^5`` of them; ``Q_mix`` by
    inverting the mixture's CDF on a grid).  Returns ``(w2, se)``, ``se`` from four
    batches of the paths.  ``kw``: ``K``, ``variance`` and the :data:`PM_OPTIONS`, as :func:`diffusion_law`.
    At least Gelbrich's bound, :func:`diffusion_law_w2`, up to the sampling of the selections.
    """
    from scipy.special import ndtr, ndtri

    schedule = _check_schedule(schedule)
    m, S = _check_data(data_mean, data_var)
    if m.size != 1:
        raise ValueError(f"pm_mixture_w2 takes 1-D data, got dimension {m.size}")
    if name not in DIFFUSION_LAW_SAMPLERS or DIFFUSION_LAW_SAMPLERS[name][0] != "pm":
        raise ValueError(f"pm_mixture_w2 takes a PM-DDPM sampler, got {name!r}")
    pm = {k: kw.pop(k) for k in PM_OPTIONS if k in kw}
    family, st = _resolve(name, schedule, None, None, "uniform", kw.pop("K", None), kw.pop("variance", None), None,
                          None, pm)
    if kw:
        raise ValueError(f"pm_mixture_w2 takes no {', '.join(sorted(kw))}")
    n = check_int(n_selections, "n_selections", 8)
    e = _eigen(m, S, schedule)
    mean0, cov0 = _start(_check_start(start, 1), e)
    rng = np.random.default_rng(seed)
    mu, V = np.full(n, float(mean0[0])), np.full(n, float(cov0[0, 0]))
    for t_top, k, mode in st["blocks"]:
        if mode == "ddpm" or k == 1:
            one = np.ones(1)
            m0, c0 = _pm(e, [PMBlock(t_top, k, mode)], st["variance"], 0.0 * one, np.zeros((1, 1)))
            m1, _ = _pm(e, [PMBlock(t_top, k, mode)], st["variance"], one, np.zeros((1, 1)))
            a = float(m1[0] - m0[0])
            mu, V = a * mu + float(m0[0]), a * a * V + float(c0[0, 0])
            continue
        bc = _block_coefs(e, t_top, k, st["variance"])
        M = _draw_multipliers(rng, n, k, st["correction"])
        a = bc.a0[0] + M @ bc.u[:, 0]
        c = bc.c0[0] + M @ bc.v[:, 0]
        ME = M * bc.E[:, 0]
        suffix = np.concatenate([np.cumsum(ME[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1)  # sum_{i > m}, m = 0..k-1
        g = bc.phi_end + suffix * np.exp(-bc.L[1:])
        mu, V = a * mu + c, a * a * V + (g * g) @ bc.var

    sd = np.sqrt(V)
    core = float(np.median(sd))  # a dense grid where most of the mass is, a coarse one out to every tail
    x = np.unique(np.concatenate([np.linspace(float((mu - 9.0 * sd).min()), float((mu + 9.0 * sd).max()), 4001),
                                  np.linspace(float(np.median(mu)) - 9.0 * core, float(np.median(mu)) + 9.0 * core, 4001)]))
    u = (np.arange(100000) + 0.5) / 100000
    q_data = float(m[0]) + math.sqrt(float(S[0, 0])) * ndtri(u)

    def cdf(rows) -> np.ndarray:
        out = np.zeros_like(x)
        for j in range(0, rows.size, 1024):
            r = rows[j:j + 1024]
            out += ndtr((x[None, :] - mu[r, None]) / sd[r, None]).sum(0)
        return out / rows.size

    def w2(F) -> float:
        keep = np.concatenate([[True], np.diff(F) > 0])
        return math.sqrt(float(np.mean((np.interp(u, F[keep], x[keep]) - q_data) ** 2)))

    batches = [np.arange(b, n, 4) for b in range(4)]
    cdfs = [cdf(rows) for rows in batches]
    parts = [w2(F) for F in cdfs]
    full = sum(F * rows.size for F, rows in zip(cdfs, batches)) / n
    return w2(full), float(np.std(parts, ddof=1)) / 2.0


def pm_block_stiffness(schedule: Optional[DiffusionSchedule], K, data_var: float) -> list[tuple[int, int, float]]:
    """Per PM-DDPM block ``(t_top, k, max_t k beta_t L_t)`` over the block's timesteps, with
    ``L_t = 1 / (abar_t s^2 + 1 - abar_t)`` the Lipschitz constant of the score of ``p_t`` for the data
    variance ``s^2 = data_var`` (for ``d > 1`` give the smallest eigenvalue of the data covariance)."""
    schedule = _check_schedule(schedule)
    K = check_int(K, "K", 1)
    if K > schedule.T:
        raise ValueError(f"K must be at most T={schedule.T}, got {K}")
    if isinstance(data_var, bool) or not isinstance(data_var, numbers.Real) or not 0.0 < float(data_var) < math.inf:
        raise ValueError(f"data_var must be a finite number > 0, got {data_var!r}")
    beta, abar = schedule.betas.numpy(), schedule.alphas_cumprod.numpy()
    out = []
    for t_top, k in pm_blocks(schedule.T, K):
        t = np.arange(t_top, t_top - k, -1)
        stiff = k * beta[t] / (abar[t] * float(data_var) + 1.0 - abar[t])
        out.append((t_top, k, float(stiff.max())))
    return out


def pm_mechanism(schedule: Optional[DiffusionSchedule], K, data_var: float, *, variance: str = "small",
                 threshold: float = 1.0, start="marginal") -> dict:
    """Where PM-DDPM's variance error comes from, for the 1-D data law ``N(0, data_var)`` (exact).

    Returns ``blocks``: per block ``dict(t_top, k, stiffness, excess, excess_no_selection, a_cv)``:
    ``stiffness`` as :func:`pm_block_stiffness`; ``excess`` the block's output variance over that of
    its ``k`` plain DDPM steps from the same input law (the PM chain's law at the block's top);
    ``excess_no_selection`` the same without the selection variance; ``a_cv`` the spread of the
    block's random coefficient, ``sd(a(H)) / E a(H)``.  And the output variance ratios
    ``var / data_var`` of: ``pm`` (every block PM), ``no_selection`` (every block PM, the selection
    variance dropped), ``stiff_as_ddpm`` (the blocks with stiffness above ``threshold`` run as plain
    DDPM), ``only_stiff`` (only those blocks PM) and ``ddpm`` (the full DDPM chain).  With the
    exact marginal start the data mean changes none of these numbers (every sampler keeps the mean
    on ``sqrt(abar_t) m`` exactly), so it is 0 here; ``start`` as :func:`diffusion_law`'s.
    """
    schedule = _check_schedule(schedule)
    blocks_st = pm_block_stiffness(schedule, K, data_var)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    m, S = np.zeros(1), np.array([[float(data_var)]])
    e = _eigen(m, S, schedule)
    mean0, cov0 = _start(_check_start(start, 1), e)
    stiff = {b for b, (_, _, v) in enumerate(blocks_st) if v > threshold}
    every = set(range(len(blocks_st)))
    blocks = _uniform(schedule.T, int(K))

    def ratio(pm_set, **control) -> float:
        return float(_pm(e, blocks, variance, mean0, cov0, pm_set=pm_set, **control)[1][0, 0]) / float(data_var)

    rows = []
    mean, cov = mean0, cov0
    for t_top, k, st in blocks_st:
        info: dict = {}
        mp, cp = _pm_block(e, t_top, k, variance, mean, cov, info=info)
        _, cn = _pm_block(e, t_top, k, variance, mean, cov, selection_variance=False)
        md, cd = mean, cov
        for j in range(k):
            md, cd = _pm_block(e, t_top - j, 1, variance, md, cd)
        rows.append(dict(t_top=t_top, k=k, stiffness=st, excess=float(cp[0, 0] / cd[0, 0]),
                         excess_no_selection=float(cn[0, 0] / cd[0, 0]),
                         a_cv=float(info["a_sd"][0] / abs(info["a_mean"][0]))))
        mean, cov = mp, cp
    return dict(blocks=rows, stiff=sorted(stiff), pm=ratio(every), no_selection=ratio(every, selection_variance=False),
                stiff_as_ddpm=ratio(every - stiff), only_stiff=ratio(stiff), ddpm=ratio(set()))


# ------------------------------------------------------------------------------------------------
# the table of docs/diffusion_laws.md


#: The rows of the table: (label, sampler name, settings).
MECHANISM_ROWS: tuple[tuple[str, str, dict], ...] = (
    ("DDPM, full chain", "ddpm_small", {}),
    ("DDPM (large), full chain", "ddpm_large", {}),
    ("DDPM strided", "ddpm_small", dict(steps=50)),
    ("DDPM strided", "ddpm_small", dict(steps=80)),
    ("DDIM", "ddim", dict(steps=50)),
    ("DDIM", "ddim", dict(steps=80)),
    ("DPM-Solver++(2M)", "dpmpp_2m", dict(steps=50)),
    ("DPM-Solver++(2M)", "dpmpp_2m", dict(steps=80)),
    ("PM-DDPM", "pm_ddpm_small", dict(K=10)),
    ("PM-DDPM", "pm_ddpm_small", dict(K=25)),
    ("PM-DDPM", "pm_ddpm_small", dict(K=40)),
    ("PM-DDPM (large)", "pm_ddpm_large", dict(K=25)),
    ("PM-DDPM (large)", "pm_ddpm_large", dict(K=40)),
)


def mechanism_table(stds=(0.3, 0.05), data_mean: float = 0.0, schedule: Optional[DiffusionSchedule] = None,
                    rows=MECHANISM_ROWS, start="marginal") -> list[dict]:
    """For the 1-D data laws ``N(data_mean, s^2)``, ``s`` in ``stds``: each row's mean calls, and per ``s``
    the W2 to the data law and the output variance ratio ``var / s^2`` (exact; module docstring)."""
    schedule = _check_schedule(schedule)
    out = []
    for label, name, kw in rows:
        row = dict(label=label, name=name, setting=", ".join(f"{k}={v}" for k, v in kw.items()) or f"T={schedule.T}",
                   calls=mean_network_calls(name, schedule, **kw))
        for s in stds:
            law = diffusion_law(name, data_mean, s * s, schedule, start=start, **kw)
            row[f"w2@{s:g}"] = w2_gaussian(law.mean, law.cov, np.array([data_mean]), np.array([[s * s]]))
            row[f"ratio@{s:g}"] = float(law.cov[0, 0]) / (s * s)
        out.append(row)
    return out


def format_mechanism_table(table: list[dict], stds=(0.3, 0.05)) -> str:
    """``mechanism_table``'s rows as a Markdown table."""
    head = "| sampler | setting | mean calls | " + " | ".join(f"W2 (s={s:g}) | var/s^2 (s={s:g})" for s in stds) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(stds))]
    for r in table:
        cells = [r["label"], r["setting"], f"{r['calls']:.1f}"]
        for s in stds:
            cells += [f"{r[f'w2@{s:g}']:.4g}", f"{r[f'ratio@{s:g}']:.4g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_pm_mechanism(schedule: DiffusionSchedule, K: int, s: float, last: int = 3, start="marginal") -> str:
    """:func:`pm_mechanism` for ``N(0, s^2)`` as text: the variance ratios and the last ``last`` blocks."""
    r = pm_mechanism(schedule, K, s * s, start=start)
    top = max(b["stiffness"] for b in r["blocks"])
    stiff = [r["blocks"][b] for b in r["stiff"]]
    head = (f"K={K}, s={s:g}: var/s^2 {r['pm']:.4g} (no selection variance {r['no_selection']:.4g}; "
            f"stiff blocks as DDPM {r['stiff_as_ddpm']:.4g}; only stiff blocks PM {r['only_stiff']:.4g}; "
            f"DDPM {r['ddpm']:.4g}); ")
    head += (f"{len(stiff)} block(s) with k beta_t L_t > 1: " + ", ".join(f"t={b['t_top']}..{b['t_top'] - b['k'] + 1}"
                                                                           for b in stiff)
             if stiff else f"no block with k beta_t L_t > 1 (largest {top:.3g})")
    lines = [head]
    for b in r["blocks"][-last:]:
        lines.append(f"    block t={b['t_top']}..{b['t_top'] - b['k'] + 1}: k beta L {b['stiffness']:.3g}, "
                     f"variance x{b['excess']:.4g} vs DDPM (x{b['excess_no_selection']:.4g} without selection "
                     f"variance), sd(a(H))/E a(H) {b['a_cv']:.3g}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# block schedules and corrections at matched calls (docs/diffusion_laws.md)


def _spread_scales(d: int = 32, lo: float = 0.02, hi: float = 1.0) -> np.ndarray:
    return lo * (hi / lo) ** (np.arange(d) / (d - 1))


#: The data laws of the schedules table: name -> (mean, covariance).  ``"d=32"``: standard deviations
#: log-spaced from 0.02 to 1 on the diagonal.
SCHEDULE_DATA: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "s=0.3": (np.zeros(1), np.array([[0.3**2]])),
    "s=0.05": (np.zeros(1), np.array([[0.05**2]])),
    "d=32": (np.zeros(32), np.diag(_spread_scales() ** 2)),
}

#: The block lengths the hybrid rows try (each with its own ``t_switch``); the row keeps the best.
HYBRID_KS = (30, 40, 50, 60, 80)


def _uniform_K(schedule: DiffusionSchedule, target: float, correction: str) -> Optional[int]:
    """The smallest ``K`` whose uniform schedule costs at most ``target`` mean calls."""
    for K in range(1, schedule.T + 1):
        if pm_calls(_uniform(schedule.T, K), correction)[0] <= target:
            return K
    return None


def _stiffness_level(schedule: DiffusionSchedule, target: float, correction: str, min_var: float) -> float:
    """The smallest level ``c`` (4 significant digits, rounded up) whose stiffness schedule with ``K = T``
    costs at most ``target`` mean calls (the calls do not increase with ``c``)."""
    def calls(c):
        return pm_calls(pm_schedule(schedule, schedule.T, "stiffness", level=c, min_var=min_var), correction)[0]

    lo, hi = 1e-4, 1e3
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if calls(mid) > target else (lo, mid)
    digits = 3 - math.floor(math.log10(hi))
    c = math.ceil(hi * 10**digits) / 10**digits
    return c


def _hybrid_switch(schedule: DiffusionSchedule, K: int, target: float, correction: str) -> Optional[int]:
    """The largest ``t_switch`` (every tail step a DDPM step) whose hybrid schedule costs at most ``target``."""
    best = None
    for ts in range(1, schedule.T + 1):
        calls = pm_calls(pm_schedule(schedule, min(K, schedule.T), "hybrid", t_switch=ts), correction)[0]
        if calls <= target:
            best = ts
        elif calls > target + 2.0:  # the calls grow with t_switch (up to a block's worth)
            break
    return best


def schedules_table(data: str = "s=0.05", schedule: Optional[DiffusionSchedule] = None, targets=(50, 80),
                    corrections=PM_CORRECTIONS, variances=VARIANCES, start="marginal") -> list[dict]:
    """Exact W2 and variance ratios of the samplers on ``SCHEDULE_DATA[data]``, PM-DDPM's block schedules and
    corrections matched to at most ``targets`` mean calls.

    Rows: DDPM's full chain (both variances); strided DDPM, DDIM and DPM-Solver++(2M) at ``targets`` calls;
    per variance, target and correction, PM-DDPM with the uniform schedule (the smallest ``K`` within
    the target), the stiffness schedule (``K = T``, ``min_var`` the data's smallest variance, the smallest
    level within the target) and the hybrid one (every tail step a DDPM step, ``t_switch`` the largest within
    the target, for each ``K`` of :data:`HYBRID_KS`; the row keeps the ``K`` with the smallest W2, so it is
    tuned on the exact law).  Each row: ``label, name, setting, kw, calls, calls_sd, w2, ratio_min,
    ratio_max`` (``var_i / S_ii`` over the coordinates of the diagonal data law) and ``w2_fine`` (PM-DDPM:
    the W2 between its moments and the law of its own fine chain, DDPM's full chain with the same
    variance; ``nan`` for the other rows).
    """
    schedule = _check_schedule(schedule)
    if data not in SCHEDULE_DATA:
        raise ValueError(f"unknown data law {data!r}; known: {', '.join(SCHEDULE_DATA)}")
    m, S = SCHEDULE_DATA[data]
    min_var = float(np.linalg.eigvalsh(S)[0])
    fine = {v: diffusion_law(f"ddpm_{v}", m, S, schedule, start=start) for v in VARIANCES}

    def row(label, name, kw, setting=None) -> dict:
        law = diffusion_law(name, m, S, schedule, start=start, **kw)
        ratio = np.diag(law.cov) / np.diag(S)
        w2_fine = math.nan
        if name.startswith("pm_"):
            ref = fine[name.rsplit("_", 1)[1]]
            w2_fine = w2_gaussian(law.mean, law.cov, ref.mean, ref.cov)
            pm = {k: kw[k] for k in PM_OPTIONS if k in kw}
            blocks = pm_schedule(schedule, kw["K"], pm.pop("block_schedule", "uniform"),
                                 **{k: v for k, v in pm.items() if k != "correction"})
            calls, var = pm_calls(blocks, kw.get("correction", "bernoulli"))
        else:
            calls, var = mean_network_calls(name, schedule, **kw), 0.0
        if setting is None:
            setting = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kw.items()
                                if k not in ("block_schedule", "correction", "min_var")) or f"T={schedule.T}"
        return dict(label=label, name=name, setting=setting, kw=kw, calls=calls, calls_sd=math.sqrt(var),
                    w2=w2_gaussian(law.mean, law.cov, m, S), ratio_min=float(ratio.min()), ratio_max=float(ratio.max()),
                    w2_fine=w2_fine)

    out = [row("DDPM, full chain", "ddpm_small", {}), row("DDPM (large), full chain", "ddpm_large", {})]
    for n in targets:
        out += [row("DDPM strided", "ddpm_small", dict(steps=int(n))), row("DDIM", "ddim", dict(steps=int(n))),
                row("DPM-Solver++(2M)", "dpmpp_2m", dict(steps=int(n)))]
    for variance, n, corr in ((v, n, c) for v in variances for n in targets for c in corrections):
        pm_name, tag = f"pm_ddpm_{variance}", "" if variance == "small" else f" ({variance})"
        K = _uniform_K(schedule, n, corr)
        if K is not None:
            out.append(row(f"PM-DDPM{tag} uniform, {corr}", pm_name, dict(K=K, correction=corr)))
        c = _stiffness_level(schedule, n, corr, min_var)
        out.append(row(f"PM-DDPM{tag} stiffness, {corr}", pm_name,
                       dict(K=schedule.T, block_schedule="stiffness", level=c, min_var=min_var, correction=corr),
                       setting=f"K={schedule.T}, level={c:g}"))
        tried = []
        for Kh in HYBRID_KS:
            ts = _hybrid_switch(schedule, Kh, n, corr)
            if ts is not None:
                tried.append(row(f"PM-DDPM{tag} hybrid, {corr}", pm_name,
                                 dict(K=Kh, block_schedule="hybrid", t_switch=ts, correction=corr)))
        if tried:
            out.append(min(tried, key=lambda r: r["w2"]))
    return out


def format_schedules_table(table: list[dict]) -> str:
    """:func:`schedules_table`'s rows as a Markdown table."""
    ratio = all(r["ratio_min"] == r["ratio_max"] for r in table)
    head = "| sampler | setting | mean calls (sd) | W2 | " + ("var/s^2" if ratio else "var_i/S_ii, min..max")
    lines = [head + " | W2 to its fine chain |", "|---|---|---|---|---|---|"]
    for r in table:
        calls = f"{r['calls']:.1f}" + (f" ({r['calls_sd']:.1f})" if r["calls_sd"] > 0 else "")
        rat = f"{r['ratio_min']:.4g}" if ratio else f"{r['ratio_min']:.4g}..{r['ratio_max']:.4g}"
        fine = "" if math.isnan(r["w2_fine"]) else f"{r['w2_fine']:.4g}"
        lines.append(f"| {r['label']} | {r['setting']} | {calls} | {r['w2']:.4g} | {rat} | {fine} |")
    return "\n".join(lines)


def _best_line(table: list[dict], budget: float, variance: str, data: str, schedule: DiffusionSchedule) -> str:
    """The PM-DDPM row (``variance``) with the smallest W2 within ``budget`` mean calls, against DDPM's full chain.

    For 1-D data the four rows with the smallest W2 of their moments are ranked by the W2 of the mixture
    they are (:func:`pm_mixture_w2`); for ``d > 1`` by the moments' W2 (a lower bound)."""
    pm = sorted((r for r in table if r["name"] == f"pm_ddpm_{variance}" and r["calls"] <= budget), key=lambda r: r["w2"])
    ref = next(r for r in table if r["name"] == f"ddpm_{variance}")
    if not pm:
        return f"no PM-DDPM ({variance}) row within {budget:g} calls"
    m, S = SCHEDULE_DATA[data]
    if m.size == 1:
        mixed = [(pm_mixture_w2(r["name"], m, S, schedule, **r["kw"]), r) for r in pm[:4]]
        (w2, se), best = min(mixed, key=lambda p: p[0][0])
        what = f"W2 {w2:.4g} +- {se:.2g} (mixture; moments {best['w2']:.4g})"
        verdict = "within" if w2 <= ref["w2"] else f"{w2 / ref['w2']:.2f}x"
    else:
        best = pm[0]
        w2, what = best["w2"], f"W2 >= {best['w2']:.4g} (moments)"
        verdict = "the lower bound is within" if w2 <= ref["w2"] else f"at least {w2 / ref['w2']:.2f}x"
    return (f"best PM-DDPM ({variance}) within {budget:g} calls: {best['label']}, {best['setting']} ({best['calls']:.1f} "
            f"calls): {what} vs DDPM full chain ({variance}) {ref['w2']:.4g}: {verdict}")


def main(argv=None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="metrics.diffusion_laws.main",
                                     description="Exact W2 and variance ratios of the diffusion samplers on Gaussian data.")
    parser.add_argument("--mean", type=float, default=0.0, help="the data mean m (default 0)")
    parser.add_argument("--stds", type=str, default="0.3,0.05", help="data standard deviations s (default 0.3,0.05)")
    parser.add_argument("--start", choices=("marginal", "prior"), default="marginal",
                        help="x_T ~ p_T (marginal, as the lab starts; default) or N(0, I) (prior)")
    parser.add_argument("--schedules", action="store_true",
                        help="print the PM-DDPM block schedules and corrections at matched calls instead")
    parser.add_argument("--data", type=str, default=",".join(SCHEDULE_DATA),
                        help=f"with --schedules: data laws among {', '.join(SCHEDULE_DATA)} (default all)")
    args = parser.parse_args(argv)
    schedule = DiffusionSchedule()
    where = (f"default schedule (linear {schedule.beta_start:g} .. {schedule.beta_end:g}, T = {schedule.T}), "
             f"start x_T ~ {'p_T' if args.start == 'marginal' else 'N(0, I)'}")
    if args.schedules:
        for data in args.data.split(","):
            t0 = time.perf_counter()
            table = schedules_table(data, schedule, start=args.start)
            print(f"data {data} (mean 0), {where}")
            print(format_schedules_table(table))
            for budget in (50, 80):
                for variance in VARIANCES:
                    print(_best_line(table, budget, variance, data, schedule))
            print(f"({time.perf_counter() - t0:.1f} s)\n")
        return 0
    stds = tuple(float(v) for v in args.stds.split(","))
    print(f"data N({args.mean:g}, s^2), {where}")
    print(format_mechanism_table(mechanism_table(stds, args.mean, schedule, start=args.start), stds))
    print()
    for s in stds:
        for K in (10, 25, 40):
            print(format_pm_mechanism(schedule, K, s, start=args.start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

What is exact: DDPM, DDIM and DPM-Solver++ map a Gaussian start to a Gaussian law, so
``N(mean, cov)`` *is* their output law and :func:`metrics.w2_gaussian` to the data law is their
exact W2.  PM-DDPM's coefficients are random (its selections), so its output is a mixture of
Gaussians over the selections, not a Gaussian; its mean and covariance are still exact, and the
W2 between the Gaussians with those moments is a lower bound on its true W2 (Gelbrich's bound).

``python -c "from metrics.diffusion_laws import main; main()"`` prints the tables of
docs/diffusion_laws.md (1-D data, the default schedule) from these exact laws.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional

import numpy as np
import torch

from samplers.diffusion import SPACINGS, VARIANCES, expected_pm_nfe, pm_blocks, strided_timesteps
from targets.diffusion import DiffusionSchedule
from targets.validation import as_float64_cpu, check_int, check_spd

from .gaussian import w2_gaussian

__all__ = ["DiffusionLaw", "DIFFUSION_LAW_SAMPLERS", "diffusion_law", "diffusion_law_w2", "mean_network_calls",
           "pm_block_stiffness", "pm_mechanism", "mechanism_table", "format_mechanism_table",
           "format_pm_mechanism", "MECHANISM_ROWS"]


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

_SETTINGS = {"ddpm": ("variance",), "ddim": ("eta",), "dpmpp": ("order",), "pm": ("variance",)}


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


def _resolve(name, schedule, steps, timesteps, spacing, K, variance, eta, order) -> tuple[str, dict]:
    """The family and checked settings of ``name``, or ValueError naming what is wrong."""
    if not isinstance(name, str) or name not in DIFFUSION_LAW_SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {name!r}; known: {', '.join(DIFFUSION_LAW_SAMPLERS)}")
    family, defaults = DIFFUSION_LAW_SAMPLERS[name]
    given = {k: v for k, v in dict(variance=variance, eta=eta, order=order).items() if v is not None}
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
        if s == 0:
            x = x0
        else:
            ab_s = float(e.abar[s])
            alpha_s, ratio = math.sqrt(ab_s), math.sqrt((1.0 - ab_s) / (1.0 - ab_t))
            lt, ls = float(e.lambdas[t]), float(e.lambdas[s])
            h = ls - lt
            em1 = math.expm1(-h)
            k = min(order, len(hist) + 1)
            if k == 1:
                x = ratio * x - alpha_s * em1 * x0
            elif k == 2:
                r = (lt - hist[-1][0]) / h
                D = (1.0 + 0.5 / r) * x0 - (0.5 / r) * hist[-1][1]
                x = ratio * x - alpha_s * em1 * D
            else:
                (l2, m2), (l1, m1) = hist[-2], hist[-1]
                r0, r1 = (lt - l1) / h, (l1 - l2) / h
                D1_0, D1_1 = (x0 - m1) / r0, (m1 - m2) / r1
                D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
                D2 = (D1_0 - D1_1) / (r0 + r1)
                x = (ratio * x - alpha_s * em1 * x0 + alpha_s * (em1 / h + 1.0) * D1
                     - alpha_s * ((em1 + h) / h**2 - 0.5) * D2)
        hist = (hist + [(float(e.lambdas[t]), x0)])[-2:]
    a, c = x
    return a * mean + c, np.outer(a, a) * cov


def _pm_block(e: _Eigen, t_top: int, k: int, variance: str, mean, cov, selection_variance: bool = True,
              shared_noise: bool = True, info: Optional[dict] = None):
    """One Poisson-midpoint block of ``k`` fine DDPM steps from ``t_top`` (module docstring).

    ``selection_variance=False`` drops the ``p(1-p)`` terms (the law of the averaged map, a wrong
    law kept as a negative control); ``shared_noise=False`` is the law of the variant whose
    interpolant has its own Gaussians (``(Phi(k, m+1) + p S1)^2`` becomes ``Phi(k, m+1)^2 + p^2 S1^2``),
    also a negative control.  ``info``, when given, receives the averaged coefficient ``abar`` and
    the standard deviation of ``a(H)`` over the selections, ``sqrt(p(1-p) sum_i u_i^2)`` (``[d]``).
    """
    t = np.arange(t_top, t_top - k, -1)
    alpha, beta, abar = e.alphas[t], e.betas[t], e.abar[t]
    A = 1.0 / np.sqrt(alpha)
    G = -beta / (np.sqrt(alpha) * np.sqrt(1.0 - abar))
    var = beta * (1.0 - e.abar[t - 1]) / (1.0 - abar) if variance == "small" else beta.copy()
    var[t == 1] = 0.0
    L = np.concatenate([[0.0], np.cumsum(np.log(A))])  # [k + 1]
    psi = np.exp(L) * np.concatenate([[0.0], np.cumsum(G * np.exp(-L[1:]))])  # Psi_i, [k + 1]
    q, o = _eps(e, t)  # [k, d]
    p = 1.0 / k
    sel = p * (1.0 - p) if selection_variance else 0.0
    a0 = math.exp(L[k]) + psi[k] * q[0]
    c0 = psi[k] * o[0]
    phi_end = np.exp(L[k] - L[1:])  # Phi(k, m+1), m = 0..k-1
    if k == 1:
        abar_map, cbar, a_sd = a0, c0, np.zeros_like(a0)
        new_cov = np.outer(a0, a0) * cov
        noise = var[0] * phi_end[0] ** 2 * np.ones_like(mean)
    else:
        r = (phi_end * G * k)[1:, None]  # r_i = Phi(k, i+1) G_i k, i = 1..k-1
        f = q[1:] * psi[1:k, None] - 1.0  # q_i Psi_i - 1
        u = r * (q[1:] * np.exp(L[1:k])[:, None] + f * q[0])  # [k-1, d]
        v = r * (o[1:] + f * o[0])
        abar_map, cbar = a0 + p * u.sum(0), c0 + p * v.sum(0)
        a_sd = np.sqrt(p * (1.0 - p) * (u * u).sum(0))
        w = u * mean + v
        new_cov = np.outer(abar_map, abar_map) * cov + sel * ((u.T @ u) * cov + w.T @ w)
        # e_{i m} = r_i q_i Phi(i, m+1) = E_i e^{-L_{m+1}}, E_i = r_i q_i e^{L_i}; suffix sums over i > m
        E = np.zeros_like(q)
        E[1:] = r * q[1:] * np.exp(L[1:k])[:, None]
        suf1 = np.concatenate([np.cumsum(E[::-1], 0)[::-1][1:], np.zeros((1, E.shape[1]))])
        suf2 = np.concatenate([np.cumsum((E * E)[::-1], 0)[::-1][1:], np.zeros((1, E.shape[1]))])
        S1 = suf1 * np.exp(-L[1:])[:, None]
        S2 = suf2 * np.exp(-2.0 * L[1:])[:, None]
        base = phi_end[:, None]
        if shared_noise:
            g2 = (base + p * S1) ** 2 + sel * S2
        else:
            g2 = base**2 + (p * S1) ** 2 + sel * S2
        noise = (var[:, None] * g2).sum(0)
    new_cov[np.diag_indices_from(new_cov)] += noise
    if info is not None:
        info.update(a_mean=abar_map, a_sd=a_sd)
    return abar_map * mean + cbar, new_cov


def _pm(e: _Eigen, T: int, K: int, variance: str, mean, cov, pm_set=None, **control):
    """The PM-DDPM chain; blocks whose index is not in ``pm_set`` (all when ``None``) are run as their
    ``k`` plain DDPM steps instead (blocks of one step), to attribute the error to blocks."""
    for b, (t_top, k) in enumerate(pm_blocks(T, K)):
        if pm_set is None or b in pm_set:
            mean, cov = _pm_block(e, t_top, k, variance, mean, cov, **control)
        else:
            for j in range(k):
                mean, cov = _pm_block(e, t_top - j, 1, variance, mean, cov)
    return mean, cov


# ------------------------------------------------------------------------------------------------
# the public functions


def diffusion_law(name: str, data_mean, data_cov, schedule: Optional[DiffusionSchedule] = None, *, steps=None,
                  timesteps=None, spacing: str = "uniform", K=None, variance=None, eta=None, order=None,
                  start="marginal", _selection_variance: bool = True, _shared_noise: bool = True) -> DiffusionLaw:
    """The exact mean and covariance of the output of sampler ``name`` on the data law ``N(data_mean, data_cov)``.

    ``name``: one of :data:`DIFFUSION_LAW_SAMPLERS` (the names of :func:`samplers.diffusion.sample`
    and the bare ``"ddpm"``, ``"dpm_solver_pp"``, ``"pm_ddpm"``).  ``steps``/``timesteps``/``spacing``
    for the strided samplers (DDPM's default is the full chain, as :func:`samplers.diffusion.ddpm`'s),
    ``K`` for Poisson-midpoint DDPM; ``variance`` (DDPM, PM-DDPM), ``eta`` (DDIM) and ``order``
    (DPM-Solver++) override the name's defaults.  ``schedule``: a :class:`DiffusionSchedule`
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
    family, s = _resolve(name, schedule, steps, timesteps, spacing, K, variance, eta, order)
    start = _check_start(start, m.size)
    e = _eigen(m, S, schedule)
    mean, cov = _start(start, e)
    if family in ("ddpm", "ddim"):
        mean, cov = _markov(e, s["timesteps"], mean, cov, family, s)
    elif family == "dpmpp":
        mean, cov = _dpmpp(e, s["timesteps"], mean, cov, s["order"])
    else:
        mean, cov = _pm(e, schedule.T, s["K"], s["variance"], mean, cov, selection_variance=_selection_variance,
                        shared_noise=_shared_noise)
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
                       spacing: str = "uniform", K=None) -> float:
    """Mean network calls per sample: ``steps`` for the strided samplers, ``sum_blocks (2 - 1/k)`` for PM-DDPM."""
    schedule = _check_schedule(schedule)
    family, s = _resolve(name, schedule, steps, timesteps, spacing, K, None, None, None)
    if family == "pm":
        return expected_pm_nfe(schedule.T, s["K"])
    return float(len(s["timesteps"]) - 1)


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

    def ratio(pm_set, **control) -> float:
        return float(_pm(e, schedule.T, int(K), variance, mean0, cov0, pm_set=pm_set, **control)[1][0, 0]) / float(data_var)

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


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="metrics.diffusion_laws.main",
                                     description="Exact W2 and variance ratios of the diffusion samplers on 1-D Gaussian data.")
    parser.add_argument("--mean", type=float, default=0.0, help="the data mean m (default 0)")
    parser.add_argument("--stds", type=str, default="0.3,0.05", help="data standard deviations s (default 0.3,0.05)")
    parser.add_argument("--start", choices=("marginal", "prior"), default="marginal",
                        help="x_T ~ p_T (marginal, as the lab starts; default) or N(0, I) (prior)")
    args = parser.parse_args(argv)
    stds = tuple(float(v) for v in args.stds.split(","))
    schedule = DiffusionSchedule()
    print(f"data N({args.mean:g}, s^2), default schedule (linear {schedule.beta_start:g} .. {schedule.beta_end:g}, "
          f"T = {schedule.T}), start x_T ~ {'p_T' if args.start == 'marginal' else 'N(0, 1)'}")
    print(format_mechanism_table(mechanism_table(stds, args.mean, schedule, start=args.start), stds))
    print()
    for s in stds:
        for K in (10, 25, 40):
            print(format_pm_mechanism(schedule, K, s, start=args.start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

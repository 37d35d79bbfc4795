"""Diffusion-model samplers over a discrete variance-preserving schedule (docs/method.md section 7).

Every sampler is a short function ``sampler(model, x, schedule, ...)`` in the style of
k-diffusion: ``model(x, t)`` is the noise prediction ``eps_hat`` (``x`` ``[n, d]``, ``t`` an
int64 tensor ``[n]`` of timesteps), ``x`` the start at ``t = T``, ``callback`` sees every step
and ``disable`` switches the tqdm bar off.  Each returns a :class:`DiffusionResult` with the
samples and the number of network calls each sample took, counted where the calls are made.
Notation: ``abar_t`` the schedule's cumulative product (``abar_0 = 1``), ``alpha_t = sqrt(abar_t)``
and ``sigma_t = sqrt(1 - abar_t)`` for the solvers, ``lambda_t = log(alpha_t / sigma_t)``.

Strided samplers walk a decreasing list of timesteps ``T = t_N > ... > t_1 >= 1`` and end at
``t_0 = 0`` (the data), one network call per step (:func:`strided_timesteps`).

``ddpm`` (Ho et al. 2020), ancestral, ``t -> s`` with ``alpha_{t|s} = abar_t / abar_s``,
``beta_{t|s} = 1 - alpha_{t|s}`` (``s = t - 1`` on the full chain, where they are ``alpha_t``, ``beta_t``):

    x_s = (x_t - beta_{t|s} / sqrt(1 - abar_t) * eps_hat(x_t, t)) / sqrt(alpha_{t|s}) + sigma z,

    sigma^2 = beta_tilde = beta_{t|s} (1 - abar_s) / (1 - abar_t)   ("small", the posterior variance)
           or beta_{t|s}                                             ("large"),

and no noise on the last step (``s = 0``, as in Ho et al.'s Algorithm 2).  The mean is the
posterior mean of ``q(x_s | x_t, x_0)`` at ``x_0 = x0_hat``.

``ddim`` (Song et al. 2021), deterministic for ``eta = 0``:

    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t),
    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,   sigma = eta sqrt(beta_tilde).

``dpm_solver_pp`` (Lu et al. 2022, DPM-Solver++ multistep, data prediction), ``h = lambda_s - lambda_t``:

    order 1:   x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) x0_hat_t            (= DDIM)
    order 2M:  D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev,  r = h_prev / h,
               x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D
    order 3M:  with r0 = h_prev/h, r1 = h_prev2/h, D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1,
               D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0 + r1),
               x_s = (sigma_s/sigma_t) x_t - alpha_s (e^{-h} - 1) m0 + alpha_s ((e^{-h} - 1)/h + 1) D1
                     - alpha_s ((e^{-h} - 1 + h)/h^2 - 1/2) D2
    (``m0, m1, m2`` the last three ``x0_hat``).  The first steps use the orders their history
    allows; the last step (to ``s = 0``, ``lambda = +inf``) is first order: ``x_0 = x0_hat``.

``pm_ddpm``: Poisson-midpoint DDPM, docs/method.md section 4 with the full ``T``-step DDPM
chain as the fine scheme, ``K`` fine steps per coarse step (the last block is shorter when
``K`` does not divide ``T``; a block of ``k`` fine steps uses ``H ~ Bernoulli(1/k)`` and the
factor ``k``, so every block is an unbiased Poisson-midpoint step), through the one engine of
:mod:`samplers.poisson` (:class:`DDPMScheme`).  Calls per sample are random: ``1 + #selections``
per block, mean ``sum_blocks (2 - 1/k)`` (about ``2 T / K``).

Block schedules (:func:`pm_schedule`, ``block_schedule=``): ``"uniform"`` (the blocks above);
``"stiffness"``: from ``t = T`` down, each block as long as possible up to ``K`` while
``k max_{t in block} beta_t L_t <= level``, with ``L_t`` an estimate of the Lipschitz constant of
the score ``∇ log p_t`` (``L_t = Lip(eps_hat(., t)) / sqrt(1 - abar_t)`` for a noise-prediction
network; from the data's smallest variance ``v``, ``L_t <= 1 / (abar_t v + 1 - abar_t)``:
:func:`score_lipschitz_bound`).  One fine step is ``x -> (x + beta_t ∇ log p_t(x)) / sqrt(alpha_t)``
plus noise, so ``beta_t L_t`` is the drift's Lipschitz constant relative to the linear part and
``k beta_t L_t`` that of a block's frozen drift.  ``"hybrid"``: uniform blocks of ``K`` from
``T`` down to ``t_switch``, then DDPM steps (one call each, the exact posterior step) from
``t_switch`` to 0: every timestep, or ``tail_steps`` uniformly strided ones.

Corrections (``correction=``): ``"bernoulli"`` (above: ``H_i ~ Bernoulli(1/k)``, weight ``k``);
``"one"``: exactly one fine index ``I`` per block, uniform on ``1..k-1``, weight ``k - 1`` (2 calls
per block of ``k >= 2``, always); ``"one_linear"``: one index with ``P(I = i) = 2 i / (k (k - 1))``,
weight ``1 / P(I = i)``.  Every form adds ``M_i Phi(k, i+1) G_i (eps_hat(Y_i) - eps_hat(X))`` at
fine index ``i`` with ``E M_i = 1``, so every block is unbiased for the fine chain's drift.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
from tqdm import trange

from . import poisson
from ._common import check_positive_int, gaussian, nonfinite_rows, uniform

__all__ = ["DiffusionResult", "DDPMScheme", "strided_timesteps", "ddpm", "ddim", "dpm_solver_pp", "pm_ddpm",
           "ddpm_update", "ddim_update",
           "pm_blocks", "expected_pm_nfe", "DIFFUSION_SAMPLERS", "sample", "VARIANCES", "SPACINGS",
           "PMBlock", "PM_BLOCK_SCHEDULES", "PM_CORRECTIONS", "DEFAULT_LEVEL", "pm_schedule", "pm_calls",
           "score_lipschitz_bound", "midpoint_probabilities"]

VARIANCES = ("small", "large")
SPACINGS = ("uniform", "logsnr")
PM_BLOCK_SCHEDULES = ("uniform", "stiffness", "hybrid")
PM_CORRECTIONS = ("bernoulli", "one", "one_linear")
#: the stiffness schedule's default level ``c`` (``k beta_t L_t <= c``), see docs/diffusion_laws.md
DEFAULT_LEVEL = 0.5


@dataclass
class DiffusionResult:
    """What every diffusion sampler returns.

    x:        ``[n, d]`` samples (the chain at ``t = 0``).
    nfe:      ``[n]`` int64, network calls each sample took (counted where they were made).
    diverged: ``[n]`` bool, samples that are not finite (reported, never averaged).
    settings: the arguments that produced the result.
    """

    x: torch.Tensor
    nfe: torch.Tensor
    diverged: torch.Tensor
    settings: dict = field(default_factory=dict)

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())

    @property
    def nfe_mean(self) -> float:
        return float(self.nfe.double().mean())

    @property
    def nfe_std(self) -> float:
        return float(self.nfe.double().std()) if self.nfe.numel() > 1 else 0.0


# ------------------------------------------------------------------------------------------------
# checks and shared pieces


def _check_inputs(model, x, schedule):
    from targets.diffusion import DiffusionSchedule

    if not callable(model):
        raise ValueError(f"model must be callable as model(x, t), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor of shape [n, d], got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one sample")
    if not torch.isfinite(x).all():
        raise ValueError("x (the start at t = T) contains non-finite values")
    if not isinstance(schedule, DiffusionSchedule):
        raise ValueError(f"schedule must be a targets.diffusion.DiffusionSchedule, got {type(schedule).__name__}")


def _check_variance(variance) -> str:
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    return variance


def _check_steps(steps, T: int) -> int:
    steps = check_positive_int(steps, "steps", 1)
    if steps > T:
        raise ValueError(f"steps must be at most T={T} (one network call per kept timestep), got {steps}")
    return steps


def strided_timesteps(schedule, steps: int, spacing: str = "uniform") -> list:
    """Decreasing timesteps ``[T = t_N, ..., t_1, 0]`` for ``steps = N`` network calls.

    ``"uniform"``: ``t_i = round(1 + (T - 1)(i - 1)/(N - 1))`` (``t_N = T``, ``t_1 = 1``; ``N = T``
    gives every timestep).  ``"logsnr"``: ``lambda_{t_i}`` uniform between ``lambda_T`` and
    ``lambda_1``, each rounded to the nearest timestep and then made strictly decreasing.
    ``N = 1`` is the single step ``[T, 0]``.
    """
    T = schedule.T
    steps = _check_steps(steps, T)
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if steps == 1:
        return [T, 0]
    if spacing == "uniform":
        ts = [int(round(1 + (T - 1) * (i - 1) / (steps - 1))) for i in range(1, steps + 1)]
    else:
        lam = schedule.lambdas[1:]  # decreasing in t
        targets = torch.linspace(float(lam[0]), float(lam[-1]), steps, dtype=torch.float64)  # t_1 .. t_N
        # nearest timestep to each target lambda (lam is decreasing: search on -lam)
        idx = torch.searchsorted(-lam, -targets).clamp(1, T - 1)
        left, right = idx - 1, idx
        pick = torch.where((lam[left] - targets).abs() <= (lam[right] - targets).abs(), left, right)
        ts = [int(i) + 1 for i in pick]  # increasing in i: t_1 .. t_N
        ts[0], ts[-1] = 1, T
        for i in range(1, steps):  # strictly increasing from below ...
            ts[i] = max(ts[i], ts[i - 1] + 1)
        ts[-1] = T
        for i in range(steps - 2, -1, -1):  # ... and not above T
            ts[i] = min(ts[i], ts[i + 1] - 1)
    return list(reversed(ts)) + [0]


def _resolve_timesteps(schedule, steps, timesteps, spacing) -> list:
    if timesteps is None:
        if steps is None:
            raise ValueError("give steps (the number of network calls) or an explicit list of timesteps")
        return strided_timesteps(schedule, steps, spacing)
    if steps is not None:
        raise ValueError("give steps or timesteps, not both")
    if any(not isinstance(t, numbers.Integral) or isinstance(t, bool) for t in timesteps):
        raise ValueError(f"timesteps must be integers, got {list(timesteps)!r}")
    ts = [int(t) for t in timesteps]
    if len(ts) < 2 or ts[0] != schedule.T or ts[-1] != 0 or any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must decrease strictly from T={schedule.T} to 0, got {ts!r}")
    return ts


def _coefs(schedule, t: int, s: int) -> dict:
    """Scalars of one step ``t -> s`` (python floats, so they serve any device and dtype)."""
    abar = schedule.alphas_cumprod
    ab_t, ab_s = float(abar[t]), float(abar[s])
    a_ts = ab_t / ab_s  # alpha_{t|s}
    b_ts = 1.0 - a_ts  # beta_{t|s}
    if s == t - 1:  # the full chain's own alpha_t, beta_t, unrounded
        a_ts, b_ts = float(schedule.alphas[t]), float(schedule.betas[t])
    return dict(ab_t=ab_t, ab_s=ab_s, a_ts=a_ts, b_ts=b_ts, beta_tilde=b_ts * (1.0 - ab_s) / (1.0 - ab_t))


class _Calls:
    """Calls the model on every row at one timestep and counts one call per row."""

    def __init__(self, model, x):
        self.model = model
        self.nfe = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)

    def __call__(self, x, t: int):
        self.nfe += 1
        return self.model(x, torch.full((x.shape[0],), int(t), dtype=torch.int64, device=x.device))


def _finish(name, x, nfe, settings) -> DiffusionResult:
    diverged = nonfinite_rows(x)
    n_div = int(diverged.sum())
    if n_div:
        warnings.warn(f"{name}: {n_div} of {x.shape[0]} samples are not finite; they are flagged in "
                      "result.diverged", RuntimeWarning, stacklevel=3)
    return DiffusionResult(x=x, nfe=nfe, diverged=diverged, settings=dict(settings, sampler=name))


# ------------------------------------------------------------------------------------------------
# one step


def ddpm_update(x, eps, schedule, t: int, s: int, variance: str = "small", generator=None):
    """One DDPM step ``t -> s`` from ``x = x_t`` and ``eps = eps_hat(x_t, t)`` (module docstring)."""
    c = _coefs(schedule, t, s)
    # DDPM: x_s = (x_t - beta/sqrt(1 - abar_t) eps) / sqrt(alpha) + sigma z
    x = (x - c["b_ts"] / math.sqrt(1.0 - c["ab_t"]) * eps) / math.sqrt(c["a_ts"])
    if s > 0:
        sigma = math.sqrt(c["beta_tilde"] if variance == "small" else c["b_ts"])
        x = x + sigma * gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
    return x


def ddim_update(x, eps, schedule, t: int, s: int, eta: float = 0.0, generator=None):
    """One DDIM step ``t -> s`` from ``x = x_t`` and ``eps = eps_hat(x_t, t)`` (module docstring)."""
    c = _coefs(schedule, t, s)
    x0 = (x - math.sqrt(1.0 - c["ab_t"]) * eps) / math.sqrt(c["ab_t"])
    sigma = eta * math.sqrt(c["beta_tilde"]) if s > 0 else 0.0
    # DDIM: x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z
    x = math.sqrt(c["ab_s"]) * x0 + math.sqrt(max(1.0 - c["ab_s"] - sigma**2, 0.0)) * eps
    if sigma > 0.0:
        x = x + sigma * gaussian(generator, x.shape, dtype=x.dtype, device=x.device)
    return x


# ------------------------------------------------------------------------------------------------
# the samplers


def ddpm(model, x, schedule, *, steps=None, timesteps=None, spacing="uniform", variance="small",
         generator=None, callback=None, disable=True) -> DiffusionResult:
    """DDPM ancestral sampling (module docstring); ``steps = T`` is the full chain."""
    _check_inputs(model, x, schedule)
    variance = _check_variance(variance)
    ts = _resolve_timesteps(schedule, schedule.T if steps is None and timesteps is None else steps, timesteps, spacing)
    update = lambda x, eps, t, s: ddpm_update(x, eps, schedule, t, s, variance, generator)  # noqa: E731
    return _one_call_per_step("ddpm", model, x, ts, update, callback, disable, dict(variance=variance))


def _one_call_per_step(name, model, x, ts, update, callback, disable, settings) -> DiffusionResult:
    """The loop of the one-call samplers (DDPM, DDIM): ``x <- update(x, eps_hat(x, t), t, s)``
    over consecutive timesteps ``t > s`` of ``ts``, counting calls and calling ``callback``."""
    calls = _Calls(model, x)
    for i in trange(len(ts) - 1, disable=disable, desc=name):
        t, s = ts[i], ts[i + 1]
        eps = calls(x, t)
        x = update(x, eps, t, s)
        if callback is not None:
            callback({"x": x, "i": i, "t": t, "s": s, "eps": eps})
    return _finish(name, x, calls.nfe, dict(steps=len(ts) - 1, **settings, timesteps=ts))


def ddim(model, x, schedule, *, steps=None, timesteps=None, spacing="uniform", eta=0.0, generator=None,
         callback=None, disable=True) -> DiffusionResult:
    """DDIM (module docstring); deterministic for ``eta = 0``, DDPM's law (small variance) for ``eta = 1``."""
    _check_inputs(model, x, schedule)
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not (0.0 <= float(eta) < math.inf):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    eta = float(eta)
    ts = _resolve_timesteps(schedule, steps, timesteps, spacing)
    update = lambda x, eps, t, s: ddim_update(x, eps, schedule, t, s, eta, generator)  # noqa: E731
    return _one_call_per_step("ddim", model, x, ts, update, callback, disable, dict(eta=eta))


def dpm_pp_update(x, x0, hist: list, abar, lam, t: int, s: int, order: int):
    """One DPM-Solver++ multistep update ``t -> s`` (module docstring) from the state ``x``, its
    ``x0_hat`` and ``hist``, the ``(lambda, x0_hat)`` of up to two previous steps (newest last).
    Linear in ``x``, ``x0`` and the history, with scalar coefficients, so it applies as well to
    tensors as to any array that represents them linearly (:mod:`metrics.diffusion_laws` passes
    affine coefficients)."""
    if s == 0:  # lambda_0 = +inf: the first-order step is x_0 = x0_hat
        return x0
    ab_t, ab_s = float(abar[t]), float(abar[s])
    alpha_s, ratio = math.sqrt(ab_s), math.sqrt((1.0 - ab_s) / (1.0 - ab_t))
    lt, ls = float(lam[t]), float(lam[s])
    h = ls - lt
    em1 = math.expm1(-h)  # e^{-h} - 1
    k = min(order, len(hist) + 1)
    if k == 1:
        return ratio * x - alpha_s * em1 * x0
    if k == 2:
        r = (lt - hist[-1][0]) / h
        D = (1.0 + 0.5 / r) * x0 - (0.5 / r) * hist[-1][1]
        return ratio * x - alpha_s * em1 * D
    (l2, m2), (l1, m1) = hist[-2], hist[-1]
    r0, r1 = (lt - l1) / h, (l1 - l2) / h
    D1_0, D1_1 = (x0 - m1) / r0, (m1 - m2) / r1
    D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
    D2 = (D1_0 - D1_1) / (r0 + r1)
    return (ratio * x - alpha_s * em1 * x0 + alpha_s * (em1 / h + 1.0) * D1
            - alpha_s * ((em1 + h) / h**2 - 0.5) * D2)


def dpm_solver_pp(model, x, schedule, *, steps=None, timesteps=None, spacing="uniform", order=2,
                  callback=None, disable=True) -> DiffusionResult:
    """DPM-Solver++ multistep of order 1, 2 (2M) or 3 (3M), data prediction (module docstring)."""
    _check_inputs(model, x, schedule)
    if order not in (1, 2, 3) or isinstance(order, bool):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    ts = _resolve_timesteps(schedule, steps, timesteps, spacing)
    abar = schedule.alphas_cumprod
    lam = schedule.lambdas
    calls = _Calls(model, x)
    hist: list = []  # (lambda_t, x0_hat) of the previous steps, newest last
    for i in trange(len(ts) - 1, disable=disable, desc="dpm_solver_pp"):
        t, s = ts[i], ts[i + 1]
        ab_t = float(abar[t])
        eps = calls(x, t)
        x0 = (x - math.sqrt(1.0 - ab_t) * eps) / math.sqrt(ab_t)
        x = dpm_pp_update(x, x0, hist, abar, lam, t, s, order)
        hist = (hist + [(float(lam[t]), x0)])[-2:]
        if callback is not None:
            callback({"x": x, "i": i, "t": t, "s": s, "x0_hat": x0})
    return _finish("dpm_solver_pp", x, calls.nfe, dict(steps=len(ts) - 1, order=order, timesteps=ts))


# ------------------------------------------------------------------------------------------------
# Poisson-midpoint DDPM


class DDPMScheme(poisson.LinearScheme):
    """``k`` steps of the full DDPM chain, ``t_top -> t_top - k``, as a linear scheme of section 4.

    Fine step ``i`` (``0 <= i < k``) is the DDPM step at ``t = t_top - i``:
    ``X_{i+1} = A_i X_i + G_i eps_hat(X_i, t) + Gamma_i Z_i`` with

        A_i = 1/sqrt(alpha_t),  G_i = -beta_t / (sqrt(alpha_t) sqrt(1 - abar_t)),
        Gamma_i = sqrt(beta_tilde_t) ("small") or sqrt(beta_t) ("large"), 0 at t = 1.

    With ``L_m = sum_{l < m} log A_l``: ``Phi(j, i) = exp(L_j - L_i)``; the frozen-drift mean
    ``Phi(i, 0) x + Psi_i g0`` with ``Psi_i = sum_{m < i} Phi(i, m+1) G_m = e^{L_i} sum_{m<i} G_m e^{-L_{m+1}}``;
    the noise gathered from ``i`` to ``j``, ``sum_{i <= m < j} Phi(j, m+1) Gamma_m Z_m``, has
    variance ``e^{2 L_j} (C_j - C_i)`` with ``C_m = sum_{l < m} Gamma_l^2 e^{-2 L_{l+1}}`` (all terms
    positive, so differences lose no digits that matter).  Tables are float64 on ``device``.
    """

    def __init__(self, model, schedule, t_top: int, k: int, variance: str, dim: int, device, dtype):
        self.model = model
        self.K = int(k)
        self.t_top = int(t_top)
        self.dim = int(dim)
        self.dtype = dtype
        t = torch.arange(self.t_top, self.t_top - self.K, -1)  # fine step i -> timestep t_top - i
        alpha, beta, abar = schedule.alphas[t], schedule.betas[t], schedule.alphas_cumprod[t]
        abar_prev = schedule.alphas_cumprod[t - 1]
        A = 1.0 / alpha.sqrt()
        G = -beta / (alpha.sqrt() * (1.0 - abar).sqrt())
        var = beta * (1.0 - abar_prev) / (1.0 - abar) if variance == "small" else beta.clone()
        var[t == 1] = 0.0
        L = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log(A), 0)])  # [k + 1]
        psi = torch.exp(L) * torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(G * torch.exp(-L[1:]), 0)])
        C = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(var * torch.exp(-2.0 * L[1:]), 0)])
        self.A, self.G, self.Gamma = A.tolist(), G.tolist(), var.sqrt().tolist()
        kw = dict(device=device, dtype=torch.float64)
        self._L, self._psi, self._C = L.to(**kw), psi.to(**kw), C.to(**kw)
        self._G = G.to(**kw)
        self._Gamma = var.sqrt().to(**kw)
        self._phi_end, self._psi_end = math.exp(float(L[-1])), float(psi[-1])

    def _col(self, v):
        return v.to(self.dtype).unsqueeze(-1)

    def evaluate(self, y, i):
        if isinstance(i, torch.Tensor):
            t = self.t_top - i
        else:
            t = torch.full((y.shape[0],), self.t_top - int(i), dtype=torch.int64, device=y.device)
        return self.model(y, t)

    def fine_step(self, y, g, i, z):
        return self.A[i] * y + self.G[i] * g + self.Gamma[i] * z

    def end_mean(self, x, g0):
        if self.K == 1:  # written as fine_step, so that both engines take one DDPM step alike
            return self.A[0] * x + self.G[0] * g0
        return self._phi_end * x + self._psi_end * g0

    def frozen_mean(self, x, g0, i):
        return self._col(torch.exp(self._L[i])) * x + self._col(self._psi[i]) * g0

    def _std(self, i, j):
        one = (j - i) == 1  # a single fine step: Gamma_i itself
        var = torch.exp(2.0 * self._L[j]) * (self._C[j] - self._C[i])
        return torch.where(one, self._Gamma[i.clamp(max=self.K - 1)], var.clamp(min=0.0).sqrt())

    def fresh_noise(self, i, j, generator):
        z = gaussian(generator, (j.shape[0], self.dim), dtype=self.dtype, device=j.device)
        return z * self._col(self._std(i, j))

    def propagate(self, noise, i, j):
        return noise * self._col(torch.exp(self._L[j] - self._L[i]))

    def add_correction(self, x_end, rows, delta, i):
        # Phi(K, i+1) G_i K delta
        coef = torch.exp(self._L[self.K] - self._L[i + 1]) * self._G[i] * self.K
        x_end.index_add_(0, rows, delta * self._col(coef))


def pm_blocks(T: int, K: int) -> list:
    """Blocks ``(t_top, k)`` of the full chain, ``K`` fine steps each from ``T`` down; the last is shorter
    (``T mod K`` steps) when ``K`` does not divide ``T``."""
    out, t = [], T
    while t > 0:
        k = min(K, t)
        out.append((t, k))
        t -= k
    return out


def expected_pm_nfe(T: int, K: int) -> float:
    """Mean network calls per sample of Poisson-midpoint DDPM: ``sum_blocks (1 + (k - 1)/k)``."""
    return float(sum(1.0 + (k - 1) / k for _, k in pm_blocks(T, K)))


class PMBlock(NamedTuple):
    """One step of a PM-DDPM block schedule, ``t_top -> t_top - k``.

    ``mode="pm"``: a Poisson-midpoint block of ``k`` fine DDPM steps (``k = 1`` is one DDPM step);
    ``mode="ddpm"``: one DDPM step ``t_top -> t_top - k`` (strided when ``k > 1``), one call.
    """

    t_top: int
    k: int
    mode: str = "pm"


def _check_real_option(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def score_lipschitz_bound(schedule, min_var) -> torch.Tensor:
    """``L_t = 1 / (abar_t v + 1 - abar_t)``, ``[T + 1]`` float64 (index ``t``), for the smallest data variance
    ``v = min_var``.

    For Gaussian data ``N(m, S)`` it is the Lipschitz constant of ``∇ log p_t`` exactly (``v`` the smallest
    eigenvalue of ``S``); for a Gaussian mixture (``v`` the smallest eigenvalue of any component) it bounds
    the contracting side, ``-∇² log p_t <= L_t I``, not the expanding one between modes.
    """
    v = _check_real_option(min_var, "min_var")
    abar = schedule.alphas_cumprod
    return 1.0 / (abar * v + (1.0 - abar))


def _lipschitz_table(schedule, min_var, lipschitz) -> torch.Tensor:
    if (min_var is None) == (lipschitz is None):
        raise ValueError("block_schedule='stiffness' needs exactly one of min_var (the data's smallest variance) "
                         "or lipschitz (L_t per timestep, [T + 1])")
    if lipschitz is None:
        return score_lipschitz_bound(schedule, min_var)
    try:
        L = torch.as_tensor(lipschitz, dtype=torch.float64).reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"lipschitz must be an array of numbers [T + 1], got {type(lipschitz).__name__} ({exc})") from None
    if L.numel() != schedule.T + 1:
        raise ValueError(f"lipschitz must have T + 1 = {schedule.T + 1} entries (index t), got {L.numel()}")
    if not torch.isfinite(L[1:]).all() or (L[1:] < 0).any():
        raise ValueError("lipschitz must be finite and >= 0 at t = 1..T")
    return L


def _check_K(K, T: int) -> int:
    K = check_positive_int(K, "K", 1)
    if K > T:
        raise ValueError(f"K must be at most T={T}, got {K}")
    return K


def _tail_timesteps(t_switch: int, steps: int) -> list:
    """``[t_switch, ..., 0]``: ``steps`` DDPM steps from ``t_switch`` to 0, uniformly strided as
    :func:`strided_timesteps` strides ``T``."""
    if steps == 1:
        return [t_switch, 0]
    ts = [int(round(1 + (t_switch - 1) * (i - 1) / (steps - 1))) for i in range(1, steps + 1)]
    return list(reversed(ts)) + [0]


def pm_schedule(schedule, K, block_schedule: str = "uniform", *, level=None, min_var=None, lipschitz=None,
                t_switch=None, tail_steps=None) -> list:
    """The blocks (:class:`PMBlock`) of PM-DDPM under ``block_schedule``, from ``T`` down to 0 (module docstring).

    ``"uniform"``: :func:`pm_blocks`.  ``"stiffness"``: walking from ``t = T``, the longest block
    ``k <= K`` with ``k max_{t in block} beta_t L_t <= level`` (default :data:`DEFAULT_LEVEL`), at least
    one step; ``L_t`` from ``min_var`` (:func:`score_lipschitz_bound`) or given as ``lipschitz``
    (``[T + 1]``, index ``t``).  ``"hybrid"``: blocks of ``K`` from ``T`` to ``t_switch`` (the last one
    shorter to land on it), then ``mode="ddpm"`` steps to 0: every timestep (``tail_steps=None``) or
    ``tail_steps`` strided ones.  Settings a schedule does not take, or bad values, raise ValueError.
    """
    from targets.diffusion import DiffusionSchedule

    if not isinstance(schedule, DiffusionSchedule):
        raise ValueError(f"schedule must be a targets.diffusion.DiffusionSchedule, got {type(schedule).__name__}")
    T = schedule.T
    if not isinstance(block_schedule, str) or block_schedule not in PM_BLOCK_SCHEDULES:
        raise ValueError(f"block_schedule must be one of {', '.join(PM_BLOCK_SCHEDULES)}, got {block_schedule!r}")
    K = _check_K(K, T)
    given = {n for n, v in dict(level=level, min_var=min_var, lipschitz=lipschitz, t_switch=t_switch,
                                tail_steps=tail_steps).items() if v is not None}
    takes = {"uniform": set(), "stiffness": {"level", "min_var", "lipschitz"}, "hybrid": {"t_switch", "tail_steps"}}
    extra = sorted(given - takes[block_schedule])
    if extra:
        raise ValueError(f"block_schedule={block_schedule!r} takes no {', '.join(extra)}")
    if block_schedule == "uniform":
        return [PMBlock(t, k) for t, k in pm_blocks(T, K)]
    if block_schedule == "stiffness":
        c = DEFAULT_LEVEL if level is None else _check_real_option(level, "level")
        L = _lipschitz_table(schedule, min_var, lipschitz)
        stiff = (schedule.betas * L).tolist()  # beta_t L_t, index t
        out, t = [], T
        while t > 0:
            k, top = 1, stiff[t]
            while k < min(K, t):
                nxt = max(top, stiff[t - k])
                if (k + 1) * nxt > c:
                    break
                k, top = k + 1, nxt
            out.append(PMBlock(t, k))
            t -= k
        return out
    if t_switch is None:
        raise ValueError("block_schedule='hybrid' needs t_switch (the timestep below which DDPM steps run)")
    if isinstance(t_switch, bool) or not isinstance(t_switch, numbers.Integral) or not 1 <= int(t_switch) <= T:
        raise ValueError(f"t_switch must be an integer in 1..T={T}, got {t_switch!r}")
    t_switch = int(t_switch)
    if tail_steps is not None:
        if isinstance(tail_steps, bool) or not isinstance(tail_steps, numbers.Integral) \
                or not 1 <= int(tail_steps) <= t_switch:
            raise ValueError(f"tail_steps must be an integer in 1..t_switch={t_switch}, got {tail_steps!r}")
    out, t = [], T
    while t > t_switch:
        k = min(K, t - t_switch)
        out.append(PMBlock(t, k))
        t -= k
    ts = _tail_timesteps(t_switch, t_switch if tail_steps is None else int(tail_steps))
    return out + [PMBlock(a, a - b, "ddpm") for a, b in zip(ts, ts[1:])]


def _check_correction(correction) -> str:
    if not isinstance(correction, str) or correction not in PM_CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(PM_CORRECTIONS)}, got {correction!r}")
    return correction


def midpoint_probabilities(k: int, correction: str) -> torch.Tensor:
    """``P(I = i)`` for ``i = 1..k-1`` (``[k - 1]`` float64) of a one-midpoint correction in a block of ``k >= 2``:
    uniform (``"one"``) or ``2 i / (k (k - 1))`` (``"one_linear"``); the weight of index ``i`` is ``1 / P(I = i)``."""
    i = torch.arange(1, k, dtype=torch.float64)
    if correction == "one":
        return torch.full((k - 1,), 1.0 / (k - 1), dtype=torch.float64)
    if correction == "one_linear":
        return i / i.sum()
    raise ValueError(f"midpoint_probabilities takes correction 'one' or 'one_linear', got {correction!r}")


def pm_calls(blocks, correction: str = "bernoulli") -> tuple:
    """``(mean, variance)`` of the network calls per sample over ``blocks`` (:func:`pm_schedule`).

    A ``"ddpm"`` step or a block of ``k = 1``: 1 call.  A PM block of ``k >= 2``: ``1 + Binomial(k - 1, 1/k)``
    (``"bernoulli"``: mean ``2 - 1/k``, variance ``(k - 1)/k (1 - 1/k)``) or exactly 2 (``"one"``, ``"one_linear"``).
    """
    correction = _check_correction(correction)
    mean = var = 0.0
    for _, k, mode in blocks:
        if mode == "pm" and k > 1:
            if correction == "bernoulli":
                mean += 1.0 + (k - 1) / k
                var += (k - 1) / k * (1.0 - 1.0 / k)
            else:
                mean += 2.0
        else:
            mean += 1.0
    return float(mean), float(var)


def _draw_midpoint(generator, probs: torch.Tensor, n: int, device) -> torch.Tensor:
    """``[n]`` int64 indices in ``1..k-1`` with ``P(I = i) = probs[i - 1]`` (inverse CDF of float64 uniforms)."""
    u = uniform(generator, n, dtype=torch.float64, device=device)
    cdf = torch.cumsum(probs, 0).to(device)
    cdf[-1] = 1.0
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.numel() - 1) + 1


def _midpoint_step(generator, x, scheme: DDPMScheme, probs: torch.Tensor, engine: str):
    """One block of ``k >= 2`` fine steps with exactly one midpoint per chain, ``I ~ probs`` (module docstring):

        X_k = Y_k + Phi(k, I+1) G_I w_I (eps_hat(Y_I) - eps_hat(X)),   w_I = 1 / P(I),

    ``Y`` the interpolant (drift frozen at ``X``) with the path's own Gaussians.  ``engine="fast"``: ``Y_I``
    and ``Y_k`` from the scheme's closed forms (noise to ``I``, then the fresh noise from ``I`` to ``k``);
    ``"reference"``: the plain loop over the fine steps.  Draws: the indices, then the Gaussians.
    Returns ``(x_new, calls [n])`` (2 per chain)."""
    n, k = x.shape[0], scheme.K
    idx = _draw_midpoint(generator, probs, n, x.device)
    weight = (1.0 / probs).to(x.device)[idx - 1]
    evals = torch.full((n,), 2, dtype=torch.int64, device=x.device)
    g0 = scheme.evaluate(x, 0)
    if engine == "reference":
        y = xp = x
        for i in range(k):
            g = g0
            if i > 0:
                rows = (idx == i).nonzero().squeeze(-1)
                if rows.numel() > 0:
                    delta = scheme.evaluate(y[rows], i) - g0[rows]
                    g = g0.index_add(0, rows, delta * scheme._col(weight[rows]))
            z = gaussian(generator, tuple(x.shape), dtype=x.dtype, device=x.device)
            xp = scheme.fine_step(xp, g, i, z)
            y = scheme.fine_step(y, g0, i, z)
        return xp, evals
    zero, end = torch.zeros_like(idx), torch.full_like(idx, k)
    w = scheme.fresh_noise(zero, idx, generator)  # the interpolant's noise at I
    y = scheme.frozen_mean(x, g0, idx) + w
    g = scheme.evaluate(y, idx)
    x_end = scheme.end_mean(x, g0) + scheme.propagate(w, idx, end) + scheme.fresh_noise(idx, end, generator)
    coef = torch.exp(scheme._L[k] - scheme._L[idx + 1]) * scheme._G[idx] * weight
    return x_end + (g - g0) * scheme._col(coef), evals


def pm_ddpm(model, x, schedule, *, K, variance="small", engine="fast", block_schedule="uniform",
            correction="bernoulli", level=None, min_var=None, lipschitz=None, t_switch=None, tail_steps=None,
            generator=None, callback=None, disable=True) -> DiffusionResult:
    """Poisson-midpoint DDPM over the full ``T``-step DDPM chain, ``K`` fine steps per coarse step.

    ``engine="fast"``: :func:`samplers.poisson.fast_step` (K-independent, exact in law);
    ``"reference"``: :func:`samplers.poisson.reference_step` (the plain loop over fine steps).
    ``K = 1`` is DDPM (``variance`` as given) step for step.

    ``block_schedule`` (``"uniform"``, ``"stiffness"``, ``"hybrid"``) with its settings ``level``,
    ``min_var``, ``lipschitz`` (stiffness) and ``t_switch``, ``tail_steps`` (hybrid): :func:`pm_schedule`;
    ``K`` is then the longest block.  ``correction`` (``"bernoulli"``, ``"one"``, ``"one_linear"``): the
    module docstring.  The uniform schedule with the Bernoulli correction is the sampler above, draw for
    draw.  Mean and variance of the calls: :func:`pm_calls`.
    """
    _check_inputs(model, x, schedule)
    variance = _check_variance(variance)
    K = _check_K(K, schedule.T)
    if engine not in ("fast", "reference"):
        raise ValueError(f"engine must be 'fast' or 'reference', got {engine!r}")
    correction = _check_correction(correction)
    blocks = pm_schedule(schedule, K, block_schedule, level=level, min_var=min_var, lipschitz=lipschitz,
                         t_switch=t_switch, tail_steps=tail_steps)
    step = poisson.fast_step if engine == "fast" else poisson.reference_step
    nfe = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    for b in trange(len(blocks), disable=disable, desc=f"pm_ddpm[K={K}]"):
        t_top, k, mode = blocks[b]
        if mode == "ddpm":
            eps = model(x, torch.full((x.shape[0],), t_top, dtype=torch.int64, device=x.device))
            x = ddpm_update(x, eps, schedule, t_top, t_top - k, variance, generator)
            nfe += 1
        else:
            scheme = DDPMScheme(model, schedule, t_top, k, variance, x.shape[1], x.device, x.dtype)
            if correction == "bernoulli" or k == 1:
                x, evals = step(generator, x, scheme)
            else:
                x, evals = _midpoint_step(generator, x, scheme, midpoint_probabilities(k, correction), engine)
            nfe += evals
        if callback is not None:
            callback({"x": x, "i": b, "t": t_top, "s": t_top - k, "mode": mode, "nfe": nfe})
    settings = dict(K=K, variance=variance, engine=engine, blocks=len(blocks), block_schedule=block_schedule,
                    correction=correction)
    settings.update({n: v for n, v in dict(level=level, min_var=min_var, t_switch=t_switch,
                                           tail_steps=tail_steps).items() if v is not None})
    if lipschitz is not None:
        settings["lipschitz"] = "given"
    return _finish("pm_ddpm", x, nfe, settings)


# ------------------------------------------------------------------------------------------------
# one entry point


@dataclass(frozen=True)
class _Sampler:
    fn: Callable
    kwargs: dict
    description: str


DIFFUSION_SAMPLERS = {
    "ddpm_small": _Sampler(ddpm, dict(variance="small"), "DDPM ancestral, sigma^2 = beta_tilde (strided: steps calls)"),
    "ddpm_large": _Sampler(ddpm, dict(variance="large"), "DDPM ancestral, sigma^2 = beta (strided: steps calls)"),
    "ddim": _Sampler(ddim, {}, "DDIM, deterministic (eta = 0), steps calls"),
    "dpmpp_2m": _Sampler(dpm_solver_pp, dict(order=2), "DPM-Solver++(2M), steps calls"),
    "dpmpp_3m": _Sampler(dpm_solver_pp, dict(order=3), "DPM-Solver++(3M), steps calls"),
    "pm_ddpm_small": _Sampler(pm_ddpm, dict(variance="small"),
                              "Poisson-midpoint DDPM over the full DDPM chain (beta_tilde), K fine steps per step"),
    "pm_ddpm_large": _Sampler(pm_ddpm, dict(variance="large"),
                              "Poisson-midpoint DDPM over the full DDPM chain (beta), K fine steps per step"),
}


def sample(name: str, model, x, schedule, *, steps=None, K=None, spacing="uniform", seed: int = 0,
           generator=None, callback=None, disable=True, **kw) -> DiffusionResult:
    """Run the sampler ``name`` (one of :data:`DIFFUSION_SAMPLERS`) from ``x`` at ``t = T``.

    ``steps`` for the strided samplers, ``K`` for the Poisson-midpoint ones (which also take
    ``block_schedule``, ``correction`` and their settings, :func:`pm_ddpm`, as keywords); the generator is
    ``torch.Generator(x.device).manual_seed(seed)`` unless one is given.
    """
    if name not in DIFFUSION_SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {name!r}; known: {', '.join(DIFFUSION_SAMPLERS)}")
    spec = DIFFUSION_SAMPLERS[name]
    if generator is None:
        generator = torch.Generator(device=x.device if isinstance(x, torch.Tensor) else "cpu")
        generator.manual_seed(int(seed))
    args = dict(spec.kwargs, callback=callback, disable=disable, **kw)
    if spec.fn is pm_ddpm:
        if steps is not None:
            raise ValueError(f"{name} takes K, not steps")
        return pm_ddpm(model, x, schedule, K=K, generator=generator, **args)
    if K is not None:
        raise ValueError(f"{name} takes steps, not K")
    if spec.fn is not dpm_solver_pp:
        args["generator"] = generator
    return spec.fn(model, x, schedule, steps=steps, spacing=spacing, **args)

"""Diffused Gaussian mixtures: data laws whose diffusion-model "network" is exact (docs/method.md section 7).

Variance-preserving forward process over a discrete schedule ``beta_1 .. beta_T``:

    x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z,       alpha_t = 1 - beta_t,
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,      abar_t = prod_{s <= t} alpha_s   (abar_0 = 1).

If the data law is ``p_0 = sum_k w_k N(mu_k, S_k)``, every marginal is a Gaussian mixture too:

    p_t = sum_k w_k N( sqrt(abar_t) mu_k,  abar_t S_k + (1 - abar_t) I ),

so the score ``∇ log p_t`` is exact and cheap, and the "network" of a diffusion model is

    eps_hat(x, t) = -sqrt(1 - abar_t) ∇ log p_t(x)   ( = E[eps | x_t = x], Tweedie ).

With ``S_k = U_k diag(lam_k) U_k^T`` the component covariance at time ``t`` is
``U_k diag(abar_t lam_k + 1 - abar_t) U_k^T``: one eigendecomposition of the data covariances
serves every ``t``, and when every ``S_k`` is diagonal (``U_k = I``) a call costs ``O(n k d)``.
All functions of time take either an integer timestep of the schedule (an ``int`` or an int64
tensor ``[n]``, one timestep per row) or, for the ``*_abar`` variants, ``abar`` itself (a float
or a tensor ``[n]``), so a continuous-time solver can evaluate the exact score between the
schedule's points.

:class:`DiffusionSchedule` is plain data (a dataclass that round-trips through a dict or JSON,
like diffusers' scheduler configurations): ``kind`` ``"linear"`` (DDPM, Ho et al. 2020:
``beta`` linear from ``beta_start`` to ``beta_end``) or ``"cosine"`` (Nichol & Dhariwal 2021:
``abar(t) = f(t)/f(0)``, ``f(t) = cos^2((t/T + s)/(1 + s) pi/2)``, ``beta_t = min(1 -
abar(t)/abar(t-1), max_beta)``, ``abar_t`` then recomputed as the product of ``1 - beta``).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np
import torch

from .validation import check_int, check_real, check_same_dtype
from .base import check_points
from .mixture import GaussianMixture

__all__ = ["DiffusionSchedule", "DiffusedMixture", "SCHEDULE_KINDS", "random_mixture"]

SCHEDULE_KINDS = ("linear", "cosine")


@dataclass(frozen=True)
class DiffusionSchedule:
    """A discrete variance-preserving noise schedule as plain data.

    ``kind``: ``"linear"`` (``beta_t`` from ``beta_start`` to ``beta_end``, ``T`` values) or
    ``"cosine"`` (``cosine_s`` offset, betas clipped at ``max_beta``).  Tensors (float64 on the
    CPU, length ``T + 1`` so that index ``t`` is timestep ``t``; index 0 is the data,
    ``beta_0 = 0``, ``abar_0 = 1``): :attr:`betas`, :attr:`alphas`, :attr:`alphas_cumprod`,
    :attr:`lambdas` (``log(sqrt(abar)/sqrt(1 - abar))``, ``+inf`` at ``t = 0``).
    """

    kind: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    max_beta: float = 0.999

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; known: {', '.join(SCHEDULE_KINDS)}")
        check_int(self.T, "T (the number of diffusion steps)", 1)
        b0 = check_real(self.beta_start, "beta_start", positive=True)
        b1 = check_real(self.beta_end, "beta_end", positive=True)
        if not (b0 <= b1 < 1.0):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={self.beta_start!r}, "
                             f"beta_end={self.beta_end!r}")
        check_real(self.cosine_s, "cosine_s", nonnegative=True)
        mb = check_real(self.max_beta, "max_beta", positive=True)
        if not mb < 1.0:
            raise ValueError(f"max_beta must be < 1, got {self.max_beta!r}")
        object.__setattr__(self, "_cache", {})

    # -- plain data ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiffusionSchedule":
        if not isinstance(data, dict):
            raise ValueError(f"a schedule must be given as a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown schedule setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DiffusionSchedule":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"schedule JSON is not valid: {exc}") from None
        return cls.from_dict(data)

    # -- tensors ---------------------------------------------------------------------------------
    def _tables(self) -> dict:
        c = self._cache  # type: ignore[attr-defined]
        if not c:
            T = self.T
            if self.kind == "linear":
                betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float64)
            else:
                s = self.cosine_s
                t = torch.arange(T + 1, dtype=torch.float64)
                f = torch.cos((t / T + s) / (1.0 + s) * (math.pi / 2.0)) ** 2
                ab = f / f[0]
                betas = (1.0 - ab[1:] / ab[:-1]).clamp(max=self.max_beta)
            betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
            alphas = 1.0 - betas
            abar = torch.cumprod(alphas, 0)
            lam = 0.5 * (torch.log(abar) - torch.log1p(-abar))
            lam[0] = math.inf
            c.update(betas=betas, alphas=alphas, abar=abar, lambdas=lam)
        return c

    @property
    def betas(self) -> torch.Tensor:
        return self._tables()["betas"]

    @property
    def alphas(self) -> torch.Tensor:
        return self._tables()["alphas"]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._tables()["abar"]

    @property
    def lambdas(self) -> torch.Tensor:
        return self._tables()["lambdas"]

    def abar(self, t: int) -> float:
        """``abar_t`` for one integer timestep ``0 <= t <= T``, as a float."""
        return float(self.alphas_cumprod[self.check_timestep(t)])

    def check_timestep(self, t) -> int:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= int(t) <= self.T:
            raise ValueError(f"timestep must be an integer in [0, {self.T}], got {t!r}")
        return int(t)


def _timestep_tensor(t, n: int, T: int, device) -> torch.Tensor:
    """``t`` (int or int tensor ``[n]``) as an int64 tensor ``[n]`` on ``device``, checked in ``[0, T]``."""
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(f"timesteps must be an integer tensor, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"timesteps must have shape [{n}] (one per row), got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > T):
            raise ValueError(f"timesteps must lie in [0, {T}], got values in [{int(t.min())}, {int(t.max())}]")
        return t.to(device=device, dtype=torch.int64)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= int(t) <= T:
        raise ValueError(f"timestep must be an integer in [0, {T}], got {t!r}")
    return torch.full((n,), int(t), dtype=torch.int64, device=device)


class DiffusedMixture:
    """The diffused law ``p_t`` of a Gaussian-mixture data law under a :class:`DiffusionSchedule`.

    Args:
        data: a :class:`targets.GaussianMixture` (the law of ``x_0``).
        schedule: a :class:`DiffusionSchedule` (default: DDPM linear ``1e-4 .. 0.02``, ``T = 1000``).

    The object works on the data's device and dtype (``to`` converts).  ``eps_hat(x, t)`` is the
    exact "network"; ``dm(x, t)`` is the same call.
    """

    def __init__(self, data: GaussianMixture, schedule: Optional[DiffusionSchedule] = None):
        if not isinstance(data, GaussianMixture):
            raise ValueError(f"data must be a targets.GaussianMixture, got {type(data).__name__}")
        schedule = DiffusionSchedule() if schedule is None else schedule
        if not isinstance(schedule, DiffusionSchedule):
            raise ValueError(f"schedule must be a DiffusionSchedule, got {type(schedule).__name__}")
        self.data = data
        self.schedule = schedule
        self.dim = data.dim
        self.T = schedule.T
        kw = dict(dtype=data.dtype, device=data.device)
        evals, evecs = torch.linalg.eigh(data.covs.to(device="cpu", dtype=torch.float64))
        self._diagonal = bool((data.covs == torch.diag_embed(torch.diagonal(data.covs, dim1=-2, dim2=-1))).all())
        if self._diagonal:  # U_k = I; lam_k = the diagonal, in coordinate order
            evals = torch.diagonal(data.covs, dim1=-2, dim2=-1).to(device="cpu", dtype=torch.float64)
            evecs = torch.eye(self.dim, dtype=torch.float64).expand(data.n_components, self.dim, self.dim)
        self._lam = evals.to(**kw)  # [k, d]
        self._U = evecs.to(**kw)  # [k, d, d], columns are eigenvectors
        self._abar = schedule.alphas_cumprod.to(**kw)  # [T + 1]

    # -- device / dtype --------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device=None, dtype=None) -> "DiffusedMixture":
        data = self.data.to(device=device, dtype=dtype)
        if data is self.data:
            return self
        return DiffusedMixture(data, self.schedule)

    # -- time ------------------------------------------------------------------------------------
    def abar(self, t, n: int = 1) -> torch.Tensor:
        """``abar_t`` per row as a tensor ``[n]`` (``t`` an int or an int tensor ``[n]``)."""
        return self._abar[_timestep_tensor(t, n, self.T, self.device)]

    def _abar_rows(self, abar, n: int) -> torch.Tensor:
        a = torch.as_tensor(abar, dtype=self.dtype, device=self.device)
        if a.ndim == 0:
            a = a.expand(n)
        if a.shape != (n,):
            raise ValueError(f"abar must be a number or a tensor of shape [{n}], got {tuple(a.shape)}")
        if not torch.isfinite(a).all() or (a <= 0).any() or (a > 1).any():
            raise ValueError("abar must lie in (0, 1]")
        return a

    # -- the diffused density --------------------------------------------------------------------
    def _shared_diagonal(self, x: torch.Tensor, a: float):
        """Score and logits when every row has the same ``abar`` and every ``S_k`` is diagonal.

        With ``v_k = abar lam_k + 1 - abar`` and ``m_k = sqrt(abar) mu_k`` (per coordinate),
        ``sum_j (x_j - m_kj)^2 / v_kj = x^2 . (1/v_k) - 2 x . (m_k/v_k) + m_k . (m_k/v_k)`` and
        ``∇ log p = -x * sum_k r_k / v_k + sum_k r_k m_k / v_k``: matrix products ``[n, d] x [d, k]``
        with no ``[n, k, d]`` temporaries.  Used in float64 only (the expansion cancels digits).
        """
        d = self.dim
        v = a * self._lam + (1.0 - a)  # [k, d]
        iv = v.reciprocal()
        m = math.sqrt(a) * self.data.means
        miv = m * iv
        const = (m * miv).sum(-1) + torch.log(v).sum(-1) + d * math.log(2.0 * math.pi)
        quad = torch.addmm(torch.mm(x * x, iv.T), x, miv.T, alpha=-2.0)  # [n, k]
        logits = self.data.log_weights - 0.5 * (quad + const)
        r = torch.softmax(logits, dim=-1)
        score = torch.mm(r, miv).sub_(x * torch.mm(r, iv))
        return logits, score

    def _parts(self, x: torch.Tensor, a: torch.Tensor):
        """Logits ``log w_k + log N_k(x)`` ``[n, k]`` and ``C_k(t)^{-1}(x - m_k(t))`` ``[n, k, d]``."""
        d = self.dim
        diff = x[:, None, :] - a.sqrt()[:, None, None] * self.data.means[None]  # [n, k, d]
        v = a[:, None, None] * self._lam[None] + (1.0 - a)[:, None, None]  # [n, k, d] eigenvalues
        c = diff if self._diagonal else torch.einsum("nki,kij->nkj", diff, self._U)
        cv = c / v
        quad = (c * cv).sum(-1)
        logdet = torch.log(v).sum(-1)
        logits = self.data.log_weights[None] - 0.5 * (quad + logdet) - 0.5 * d * math.log(2.0 * math.pi)
        pdiff = cv if self._diagonal else torch.einsum("kij,nkj->nki", self._U, cv)
        return logits, pdiff

    def _check_x(self, x):
        check_points(x, self.dim)
        check_same_dtype(self.data, x)

    def log_prob_abar(self, x: torch.Tensor, abar) -> torch.Tensor:
        """Exact normalised ``log p(x)`` of the marginal at noise level ``abar`` (float or ``[n]``)."""
        self._check_x(x)
        logits, _ = self._parts(x, self._abar_rows(abar, x.shape[0]))
        return torch.logsumexp(logits, dim=-1)

    def score_abar(self, x: torch.Tensor, abar) -> torch.Tensor:
        """``∇ log p(x)`` at noise level ``abar``: ``-sum_k r_k(x) C_k^{-1} (x - m_k)``, ``[n, d]``."""
        self._check_x(x)
        a = self._abar_rows(abar, x.shape[0])
        if self._diagonal and x.dtype == torch.float64 and x.shape[0] > 0 and bool((a == a[0]).all()):
            return self._shared_diagonal(x, float(a[0]))[1]
        logits, pdiff = self._parts(x, a)
        r = torch.softmax(logits, dim=-1)
        return -(r[:, :, None] * pdiff).sum(1)

    def eps_abar(self, x: torch.Tensor, abar) -> torch.Tensor:
        """``eps_hat = -sqrt(1 - abar) ∇ log p`` at noise level ``abar``, ``[n, d]``."""
        a = self._abar_rows(abar, x.shape[0])
        return self.score_abar(x, a) * -(1.0 - a).sqrt()[:, None]

    def log_prob(self, x: torch.Tensor, t) -> torch.Tensor:
        """Exact normalised ``log p_t(x)``, ``[n]``; ``t`` an int or an int tensor ``[n]``."""
        self._check_x(x)
        return self.log_prob_abar(x, self.abar(t, x.shape[0]))

    def score(self, x: torch.Tensor, t) -> torch.Tensor:
        """``∇ log p_t(x)``, ``[n, d]``."""
        self._check_x(x)
        return self.score_abar(x, self.abar(t, x.shape[0]))

    def eps_hat(self, x: torch.Tensor, t) -> torch.Tensor:
        """The exact noise prediction ``eps_hat(x, t) = -sqrt(1 - abar_t) ∇ log p_t(x)``, ``[n, d]``.

        ``t``: an int in ``[0, T]`` or an int64 tensor ``[n]`` (one timestep per row).
        """
        self._check_x(x)
        return self.eps_abar(x, self.abar(t, x.shape[0]))

    __call__ = eps_hat

    def marginal(self, t: int) -> GaussianMixture:
        """``p_t`` as a :class:`GaussianMixture` (exact sampler, density and moments at ``t``)."""
        a = self.schedule.abar(t)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        covs = a * self.data.covs + (1.0 - a) * eye
        return GaussianMixture(self.data.weights, math.sqrt(a) * self.data.means, covs,
                               dtype=self.dtype, device=self.device)

    # -- exact samples ---------------------------------------------------------------------------
    def sample_data(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` exact samples of the data law ``p_0``, ``[n, d]``."""
        return self.data.sample(n, generator)

    def sample_xt(self, n: int, t: int, generator: Optional[torch.Generator] = None,
                  return_noise: bool = False):
        """``n`` exact samples of ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (forward process).

        Draws ``x_0`` (:meth:`sample_data`) then ``eps`` from ``generator``.  With
        ``return_noise`` returns ``(x_t, x_0, eps)``.
        """
        a = self.schedule.abar(t)
        x0 = self.sample_data(n, generator)
        eps = torch.randn(x0.shape, generator=generator, dtype=self.dtype, device=self.device)
        xt = math.sqrt(a) * x0 + math.sqrt(1.0 - a) * eps
        return (xt, x0, eps) if return_noise else xt

    def __repr__(self) -> str:
        return f"DiffusedMixture({self.data!r}, {self.schedule.kind} schedule, T={self.T})"


def random_mixture(dim: int, n_components: int = 4, seed: int = 0, *, mean_scale: float = 0.3,
                   std_range=(0.05, 0.3), diagonal: bool = True, dtype=None, device=None) -> GaussianMixture:
    """A reproducible anisotropic Gaussian mixture in ``R^dim`` (a data law for the diffusion lab).

    From ``numpy.random.default_rng(seed)``: weights ``u_k / sum u``, ``u_k ~ U[1, 3]``; means with
    i.i.d. ``N(0, mean_scale^2)`` coordinates; covariances with standard deviations log-uniform
    in ``std_range`` per coordinate and component, diagonal (``diagonal=True``) or rotated by an
    independent Haar-random orthogonal matrix per component.
    """
    dim = check_int(dim, "dim", 1)
    n_components = check_int(n_components, "n_components", 1)
    seed = check_int(seed, "seed", 0)
    mean_scale = check_real(mean_scale, "mean_scale", nonnegative=True)
    lo, hi = (check_real(v, "std_range", positive=True) for v in std_range)
    if not lo <= hi:
        raise ValueError(f"std_range must be (low, high) with low <= high, got {std_range!r}")
    rng = np.random.default_rng(seed)
    w = rng.uniform(1.0, 3.0, n_components)
    means = mean_scale * rng.standard_normal((n_components, dim))
    stds = np.exp(rng.uniform(math.log(lo), math.log(hi), (n_components, dim)))
    covs = np.stack([np.diag(s**2) for s in stds])
    if not diagonal:
        for k in range(n_components):
            q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
            q = q * np.sign(np.diag(r))
            covs[k] = q @ covs[k] @ q.T
            covs[k] = 0.5 * (covs[k] + covs[k].T)
    out = GaussianMixture(torch.from_numpy(w), torch.from_numpy(means), torch.from_numpy(covs),
                          dtype=dtype, device=device)
    out._repr_extra = f", seed={seed}, std_range=({lo:g}, {hi:g}){'' if diagonal else ', rotated'}"
    return out

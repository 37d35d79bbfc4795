"""Exact mean and covariance of the (position, velocity) law of ULMC, PULMC and RULMC on Gaussians.

On a Gaussian target ``N(m, A^{-1})`` with ``A = Q diag(lam) Q^T``, every underdamped step of
:mod:`samplers.underdamped` acts on each eigen-coordinate ``k`` through the pair
``x_k = (u_k - m_k, v_k)`` (position error and velocity in the eigenbasis), with coefficients
that are polynomials in ``lam_k`` and random only through quantities shared by all coordinates
(the selections ``H_i`` of PULMC, the midpoint ``tau`` of RULMC) and through Gaussian noise
independent across coordinates.  Writing the step as ``x' = M x + noise`` with random ``M``,

    mu'        = Mbar_k mu_k,                         Mbar_k = sum_a lam_k^a Cbar[a]
    Sigma'_kl  = Mbar_k Sigma_kl Mbar_l^T + Extra_kl(R_kl) + delta_kl V(lam_k),
    Extra_kl(R) = sum_{a,b} lam_k^a lam_l^b T[a,b] : R,    R_kl = Sigma_kl + mu_k mu_l^T,

where ``T[a,b] = E[C_a ⊗ C_b] - Cbar[a] ⊗ Cbar[b]`` is the part of the second moment that the
randomness of ``M`` adds.  The blocks ``Sigma_kl`` are 2x2, so a step costs ``O(d^2)``.

ULMC     ``M = A(eta) - lam G(eta) e1^T`` with ``A(tau) = [[1, a(tau)], [0, E(tau)]]``,
         ``G(tau) = (c_u(tau), c_v(tau))`` and noise ``Sigma(eta)`` (coefficients of
         :func:`samplers.underdamped.ou_coefficients`).  Deterministic ``M``: the law stays Gaussian.

PULMC    ``K`` fine steps of ``h = eta/K``.  With the interpolant's noise ``xi_i`` (``Cov xi_i =
         Sigma(i h)``, ``Cov(xi_j, xi_i) = A((j-i)h) Sigma(ih)``), ``n_i = e1^T xi_i``,
         ``omega_i = -A((K-1-i)h) G(h)``, ``alpha_i = (0, a(ih))``, ``beta_i = (-c_u(ih), 0)``:

             x' = xi_K + (A(eta) - lam G(eta) e1^T) x
                  + sum_{i=1}^{K-1} K H_i lam omega_i ((alpha_i + lam beta_i) x + n_i).

         Averaging over ``H_i ~ Bernoulli(1/K)`` (``E[K H_i] = 1``, ``Var(K H_i) = K - 1``):
         ``Cbar = [A(eta), -G(eta) e1^T + sum omega_i alpha_i^T, sum omega_i beta_i^T]``,
         ``T[a,b] = (K-1) sum_i C_a,i ⊗ C_b,i`` with ``C_1,i = omega_i alpha_i^T``,
         ``C_2,i = omega_i beta_i^T``, and noise
         ``V(lam) = Sigma(eta) + lam (Cov(xi_K, S) + Cov(S, xi_K)) + lam^2 (Var S + (K-1) sum_i
         omega_i omega_i^T Var n_i)``, ``S = sum_i omega_i n_i``.  The sums over ``i`` are made
         once per ``(eta, K, gamma)`` with vectorized suffix sums (``O(K)`` time and memory).

RULMC    ``tau ~ U[0, eta]``, ``r(tau) = eta (a(eta-tau), E(eta-tau))``:
         ``M = A(eta) - lam r (1, a(tau))^T + lam^2 r (c_u(tau), 0)^T`` and, given ``tau``, noise
         ``N Sigma(tau) N^T + Sigma(eta - tau)`` with ``N = A(eta - tau) - lam r e1^T``.  The
         expectations over ``tau`` are Gauss–Legendre sums (the integrands are smooth; 48
         nodes give float64 accuracy for ``gamma eta`` up to about 20, checked in the tests
         against a 96-node rule and against Monte Carlo).

The position marginal of ULMC is exactly Gaussian, so its KL and W2 to the target are exact;
for PULMC and RULMC the W2 between Gaussians with the exact moments is a lower bound (Gelbrich).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["StepModel", "step_model", "ulmc_model", "pulmc_model", "rulmc_model", "propagate", "stationary_blocks",
           "UnderdampedMoments"]

_GL_NODES = 48
_E1 = np.array([1.0, 0.0])


def _ou(tau, gamma: float) -> dict:
    """Numpy view of :func:`samplers.underdamped.ou_coefficients` (arrays of ``tau``'s shape)."""
    from samplers.underdamped import ou_coefficients

    c = ou_coefficients(torch.as_tensor(np.asarray(tau, dtype=np.float64)), gamma)
    return {k: v.numpy() for k, v in c._asdict().items()}


def _A(c) -> np.ndarray:
    """``[..., 2, 2]`` matrices ``[[1, a], [0, E]]``."""
    a, E = np.broadcast_arrays(c["a"], c["E"])
    out = np.zeros(a.shape + (2, 2))
    out[..., 0, 0] = 1.0
    out[..., 0, 1] = a
    out[..., 1, 1] = E
    return out


def _Sigma(c) -> np.ndarray:
    s_uu, s_uv, s_vv = np.broadcast_arrays(c["s_uu"], c["s_uv"], c["s_vv"])
    out = np.empty(s_uu.shape + (2, 2))
    out[..., 0, 0] = s_uu
    out[..., 0, 1] = out[..., 1, 0] = s_uv
    out[..., 1, 1] = s_vv
    return out


def _G(c) -> np.ndarray:
    return np.stack(np.broadcast_arrays(c["c_u"], c["c_v"]), axis=-1)


@dataclass
class StepModel:
    """One step as polynomials in the eigenvalue ``lam`` (module docstring).

    Cbar: ``[3, 2, 2]``; T: ``[3, 3, 2, 2, 2, 2]`` indexed ``[a, b, p, c, q, e]`` so that
    ``Extra[p, q] = sum lam_k^a lam_l^b T[a, b, p, c, q, e] R[c, e]``; V: ``[3, 2, 2]``.
    """

    Cbar: np.ndarray
    T: np.ndarray
    V: np.ndarray

    def mean_map(self, lam: np.ndarray) -> np.ndarray:
        return np.einsum("ka,apq->kpq", lam[:, None] ** np.arange(3), self.Cbar)

    def noise(self, lam: np.ndarray) -> np.ndarray:
        return np.einsum("ka,apq->kpq", lam[:, None] ** np.arange(3), self.V)

    def extra(self, lam_k: np.ndarray, lam_l: np.ndarray) -> np.ndarray:
        """``[k, l, p, c, q, e]``: the extra second-moment operator for every pair of coordinates."""
        pk = lam_k[:, None] ** np.arange(3)
        pl = lam_l[:, None] ** np.arange(3)
        return np.einsum("ka,lb,abpcqe->klpcqe", pk, pl, self.T)


def _outer_tensor(X: np.ndarray, Y: np.ndarray, w) -> np.ndarray:
    """``sum_i w_i X_i ⊗ Y_i`` as ``[p, c, q, e]`` for ``[n, 2, 2]`` stacks."""
    return np.einsum("i,ipc,iqe->pcqe", np.broadcast_to(w, X.shape[:1]), X, Y)


def step_model(method, step_size: float, friction: float, K=None) -> StepModel:
    """The :class:`StepModel` of one step of ``method`` (a registered underdamped method's name or
    descriptor): its ``exact_moments``."""
    from samplers.base import get_method

    alg = get_method(method)
    if not alg.velocities or alg.exact_moments is None:
        raise ValueError(f"method {alg.name!r} has no underdamped exact moment model")
    params = alg.check_params(K=K, friction=friction)
    return alg.exact_moments(step_size, **params)


def _ulmc_parts(step_size: float, friction: float):
    """``(eta, gamma, Cbar, T, V, A_eta, G_eta)``: the model's arrays with the parts every method
    shares filled in (``Cbar[0] = A(eta)``, ``V[0] = Sigma(eta)``), and ``A(eta)``, ``G(eta)``."""
    eta, gamma = float(step_size), float(friction)
    Cbar = np.zeros((3, 2, 2))
    T = np.zeros((3, 3, 2, 2, 2, 2))
    V = np.zeros((3, 2, 2))
    ce = _ou(eta, gamma)
    A_eta, G_eta, S_eta = _A(ce), _G(ce), _Sigma(ce)
    Cbar[0] = A_eta
    V[0] = S_eta
    return eta, gamma, Cbar, T, V, A_eta, G_eta


def ulmc_model(step_size: float, friction: float) -> StepModel:
    """ULMC: a deterministic ``M``, so the law stays Gaussian."""
    _, _, Cbar, T, V, _, G_eta = _ulmc_parts(step_size, friction)
    Cbar[1] = -np.outer(G_eta, _E1)
    return StepModel(Cbar, T, V)


def pulmc_model(step_size: float, friction: float, K: int) -> StepModel:
    """PULMC with ``K`` fine steps (``K = 1`` is ULMC)."""
    K = int(K)
    if K == 1:
        return ulmc_model(step_size, friction)
    eta, gamma, Cbar, T, V, _, G_eta = _ulmc_parts(step_size, friction)
    if gamma * eta > 300.0:
        raise ValueError(f"friction * step_size = {gamma * eta:.4g} is too large for the exact PULMC law")
    h = eta / K
    i = np.arange(1, K)
    ci = _ou(i * h, gamma)                 # at i h: the interpolant after i fine steps
    cr = _ou((K - 1 - i) * h, gamma)       # from i+1 to K
    ck = _ou((K - i) * h, gamma)           # from i to K
    ch = _ou(h, gamma)
    Gh = _G(ch)
    omega = -np.einsum("ipq,q->ip", _A(cr), Gh)                     # [K-1, 2]
    alpha = np.stack([np.zeros(K - 1), ci["a"]], axis=-1)
    beta = np.stack([-ci["c_u"], np.zeros(K - 1)], axis=-1)
    C1 = np.einsum("ip,iq->ipq", omega, alpha)
    C2 = np.einsum("ip,iq->ipq", omega, beta)
    Cbar[1] = -np.outer(G_eta, _E1) + C1.sum(0)
    Cbar[2] = C2.sum(0)
    Cs = {1: C1, 2: C2}
    for a in (1, 2):
        for b in (1, 2):
            T[a, b] = (K - 1) * _outer_tensor(Cs[a], Cs[b], 1.0)
    s_uu, s_uv = ci["s_uu"], ci["s_uv"]
    # Cov(xi_K, n_i) = A((K-i)h) Sigma(ih) e1
    cov_K_n = np.stack([s_uu + ck["a"] * s_uv, ck["E"] * s_uv], axis=-1)
    cov_K_S = np.einsum("ip,iq->pq", cov_K_n, omega)
    # Var S = sum_i s_uu(ih) w_i w_i^T + sum_{i<j} (w_i w_j^T + w_j w_i^T) Cov(n_i, n_j),
    # Cov(n_i, n_j) = s_uu(ih) + a((j-i)h) s_uv(ih) = (s_uu + s_uv/gamma) - (s_uv/gamma) E^{j-i}.
    E = float(ch["E"])
    suf = np.cumsum(omega[::-1], axis=0)[::-1]
    suf = np.concatenate([suf[1:], np.zeros((1, 2))])               # sum_{j > i} omega_j
    scale = E ** (np.arange(1, K) - (K - 1))                         # E^{j - (K-1)}, <= e^{gamma eta}
    sufE = np.cumsum((omega * scale[:, None])[::-1], axis=0)[::-1]
    sufE = np.concatenate([sufE[1:], np.zeros((1, 2))]) / scale[:, None]   # sum_{j>i} omega_j E^{j-i}
    inner = (s_uu + s_uv / gamma)[:, None] * suf - (s_uv / gamma)[:, None] * sufE
    cross = np.einsum("ip,iq->pq", omega, inner)
    var_S = np.einsum("i,ip,iq->pq", s_uu, omega, omega) + cross + cross.T
    V[1] = cov_K_S + cov_K_S.T
    V[2] = var_S + (K - 1) * np.einsum("i,ip,iq->pq", s_uu, omega, omega)
    return StepModel(Cbar, T, V)


def rulmc_model(step_size: float, friction: float) -> StepModel:
    """RULMC: expectations over the midpoint by Gauss–Legendre quadrature."""
    eta, gamma, Cbar, T, V, A_eta, _ = _ulmc_parts(step_size, friction)
    x, w = np.polynomial.legendre.leggauss(_GL_NODES)
    tau = 0.5 * eta * (x + 1.0)
    w = 0.5 * w
    cm = _ou(tau, gamma)          # midpoint: the path up to tau
    cr = _ou(eta - tau, gamma)    # the rest of the step
    r = eta * np.stack([cr["a"], cr["E"]], axis=-1)                          # [Q, 2]
    C1 = -np.einsum("ip,iq->ipq", r, np.stack([np.ones_like(tau), cm["a"]], axis=-1))
    C2 = np.einsum("ip,iq->ipq", r, np.stack([cm["c_u"], np.zeros_like(tau)], axis=-1))
    C0 = np.broadcast_to(A_eta, C1.shape)
    Cs = (C0, C1, C2)
    means = [np.einsum("i,ipq->pq", w, C) for C in Cs]
    Cbar[:] = np.stack(means)
    for a in range(3):
        for b in range(3):
            T[a, b] = _outer_tensor(Cs[a], Cs[b], w) - np.einsum("pc,qe->pcqe", means[a], means[b])
    Sm, Ar = _Sigma(cm), _A(cr)
    # noise given tau: N Sigma(tau) N^T + Sigma(eta - tau), N = A(eta - tau) - lam r e1^T;
    # its lam^0 part is A Sigma(tau) A^T + Sigma(eta - tau) = Sigma(eta) (Markov property).
    SAt = np.einsum("ipq,irq->ipr", Sm, Ar)                                  # Sigma(tau) A^T
    lin = -np.einsum("i,ip,iq->pq", w, r, SAt[:, 0, :])
    V[1] = lin + lin.T
    V[2] = np.einsum("i,i,ip,iq->pq", w, cm["s_uu"], r, r)
    return StepModel(Cbar, T, V)



def propagate(model: StepModel, lam: np.ndarray, mu: np.ndarray, Sigma: np.ndarray, extra=None):
    """One step of the exact recursion: ``mu [d, 2]``, ``Sigma [d, d, 2, 2]`` -> new ones."""
    M = model.mean_map(lam)
    if extra is None:
        extra = model.extra(lam, lam)
    R = Sigma + np.einsum("kp,lq->klpq", mu, mu)
    S_new = (np.einsum("kpc,klce,lqe->klpq", M, Sigma, M, optimize=True)
             + np.einsum("klpcqe,klce->klpq", extra, R, optimize=True))
    idx = np.arange(lam.shape[0])
    S_new[idx, idx] += model.noise(lam)
    return np.einsum("kpq,kq->kp", M, mu), S_new


def stationary_blocks(model: StepModel, lam: np.ndarray) -> np.ndarray:
    """The fixed point's 2x2 covariance block of every eigen-coordinate, ``[d, 2, 2]``.

    At the fixed point the mean error is 0 and different eigen-coordinates are uncorrelated (their
    cross blocks obey a homogeneous linear recursion), so each block solves the 4x4 system
    ``S = M S M^T + T_kk : S + V_k``.  Raises ValueError if any block's recursion is unstable.
    """
    M = model.mean_map(lam)
    ex = np.einsum("ka,kb,abpcqe->kpcqe", lam[:, None] ** np.arange(3), lam[:, None] ** np.arange(3), model.T)
    Vk = model.noise(lam)
    out = np.empty((lam.shape[0], 2, 2))
    for k in range(lam.shape[0]):
        L = np.einsum("pc,qe->pqce", M[k], M[k]) + np.transpose(ex[k], (0, 2, 1, 3))  # [p,q,c,e]
        L = L.reshape(4, 4)
        if np.max(np.abs(np.linalg.eigvals(L))) >= 1.0 or np.max(np.abs(np.linalg.eigvals(M[k]))) >= 1.0:
            raise ValueError(f"the second moments of this chain grow without bound at eigenvalue {lam[k]:.4g}")
        out[k] = np.linalg.solve(np.eye(4) - L, Vk[k].reshape(4)).reshape(2, 2)
    return 0.5 * (out + np.transpose(out, (0, 2, 1)))


@dataclass
class UnderdampedMoments:
    """Exact moments in the original coordinates at the recorded steps."""

    steps: np.ndarray
    means: np.ndarray      # [R, d] positions
    covs: np.ndarray       # [R, d, d]
    v_means: np.ndarray    # [R, d] velocities
    v_covs: np.ndarray     # [R, d, d]
    cross_covs: np.ndarray  # [R, d, d]  Cov(U, V)


def run_moments(model: StepModel, lam, Q, m_target, n_steps: int, mean0, cov0, v_mean0, v_cov0,
                record_every=None) -> UnderdampedMoments:
    """Propagate the exact moments from independent position and velocity start laws."""
    d = lam.shape[0]
    mu = np.stack([Q.T @ (mean0 - m_target), Q.T @ v_mean0], axis=-1)
    Sigma = np.zeros((d, d, 2, 2))
    Sigma[:, :, 0, 0] = Q.T @ cov0 @ Q
    Sigma[:, :, 1, 1] = Q.T @ v_cov0 @ Q
    extra = model.extra(lam, lam)
    rec: dict[str, list] = {k: [] for k in ("steps", "means", "covs", "v_means", "v_covs", "cross_covs")}

    def record(k):
        rec["steps"].append(k)
        rec["means"].append(Q @ mu[:, 0] + m_target)
        rec["v_means"].append(Q @ mu[:, 1])
        rec["covs"].append(Q @ Sigma[:, :, 0, 0] @ Q.T)
        rec["v_covs"].append(Q @ Sigma[:, :, 1, 1] @ Q.T)
        rec["cross_covs"].append(Q @ Sigma[:, :, 0, 1] @ Q.T)

    if record_every is not None or n_steps == 0:
        record(0)
    for k in range(1, n_steps + 1):
        mu, Sigma = propagate(model, lam, mu, Sigma, extra)
        if (record_every is not None and k % record_every == 0) or k == n_steps:
            record(k)
    return UnderdampedMoments(**{k: np.asarray(v) for k, v in rec.items()})

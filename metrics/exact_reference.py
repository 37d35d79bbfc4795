"""Distances to the exact law, not to a second sample: only the chains carry sampling noise.

Comparing chains with a finite sample of the target puts that sample's noise into every number.
Where the target's law is known in closed form these metrics compare with the law itself.

``sliced_w2_to_mixture(x, target)``
    Sliced W2 between the chains and a Gaussian mixture.  Each 1-D projection ``theta . X`` of
    ``sum_k w_k N(mu_k, S_k)`` is the 1-D mixture ``sum_k w_k N(theta . mu_k, theta^T S_k
    theta)``, whose CDF is closed-form; its quantiles are found by a safeguarded Newton
    iteration, vectorized over projections and points (``|F(q) - u| <= 1e-12``).  The 1-D
    ``W2^2`` between ``n`` sorted projected chains ``y_(i)`` and the exact law is then exact:

        W2^2 = (1/n) sum_i y_(i)^2 - 2 sum_i y_(i) [G(q_i) - G(q_{i-1})] + E[Y^2],

    with ``q_i`` the ``i/n`` quantile and ``G(q) = E[Y 1{Y <= q}] = sum_k w_k (m_k Phi(z_k) -
    s_k phi(z_k))``, ``z_k = (q - m_k)/s_k`` (no quadrature).  ``value = sqrt(mean_p W2^2_p)``.

``fourier_weak_error(x, target)``
    Weak errors of Fourier features ``f(x) = cos(w . x + c)``, whose target expectations are
    closed-form for a Gaussian mixture (its characteristic function: ``sum_k w_k cos(w . mu_k +
    c) exp(-w^T S_k w / 2)``) and exact by quadrature for a separable target (``Re[e^{ic}
    prod_j phi(w_j)]``, ``phi`` the 1-D characteristic function).  Per feature the error ``e_f =
    E f(X_chain) - E_pi f`` is estimated by the chains' mean minus the exact value; its square is
    **debiased**, ``e_f^2 - s_f^2 / n`` (``s_f^2`` the chains' sample variance of ``f``), an
    unbiased estimate of ``e_f^2``, so that no noise floor biases the summary upward.

Intervals are delta-method intervals over chains (the independent units), with the direction or
feature sampling added where it is random; both say so in ``method``.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from scipy.special import ndtr, ndtri

from .uncertainty import MetricResult, normal_z
from ._validation import as_numpy_points, check_level

__all__ = ["projected_mixture", "mixture_cdf", "mixture_quantile", "sliced_w2_to_mixture",
           "fourier_features", "fourier_expectations", "fourier_weak_error"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _mixture_arrays(target):
    from targets import GaussianMixture

    if not isinstance(target, GaussianMixture):
        raise ValueError(f"needs a targets.GaussianMixture, got {type(target).__name__}")
    w = target.weights.detach().cpu().double().numpy()
    mu = target.means.detach().cpu().double().numpy()
    S = target.covs.detach().cpu().double().numpy()
    return w, mu, S


def projected_mixture(target, theta: np.ndarray):
    """``(w [K], m [P, K], s [P, K])``: the 1-D mixtures ``theta_p . X`` for the columns of
    ``theta`` ``[d, P]``."""
    w, mu, S = _mixture_arrays(target)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[0] != mu.shape[1]:
        raise ValueError(f"theta must be [d, P] with d = {mu.shape[1]}, got shape {theta.shape}")
    m = theta.T @ mu.T
    s = np.sqrt(np.einsum("dp,kde,ep->pk", theta, S, theta))
    return w, m, s


def mixture_cdf(q: np.ndarray, w: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``P(Y <= q)`` for the 1-D mixtures ``(w, m [P, K], s [P, K])`` at ``q`` ``[P, N]``."""
    z = (q[:, :, None] - m[:, None, :]) / s[:, None, :]
    return (w * ndtr(z)).sum(-1)


def _partial_first(q, w, m, s):
    """``G(q) = E[Y 1{Y <= q}]`` for ``q`` ``[P, N]`` (``-inf`` and ``+inf`` allowed)."""
    z = (q[:, :, None] - m[:, None, :]) / s[:, None, :]
    pdf = np.exp(-0.5 * np.square(np.where(np.isfinite(z), z, 0.0))) / _SQRT_2PI
    pdf = np.where(np.isfinite(z), pdf, 0.0)
    return (w * (m[:, None, :] * ndtr(z) - s[:, None, :] * pdf)).sum(-1)


def _partial_second(q, w, m, s):
    """``E[Y^2 1{Y <= q}]`` (finite ``q``)."""
    mm, ss = m[:, None, :], s[:, None, :]
    z = (q[:, :, None] - mm) / ss
    pdf = np.exp(-0.5 * z * z) / _SQRT_2PI
    return (w * ((mm * mm + ss * ss) * ndtr(z) - ss * (q[:, :, None] + mm) * pdf)).sum(-1)


def mixture_quantile(u: np.ndarray, w: np.ndarray, m: np.ndarray, s: np.ndarray, tol: float = 1e-12,
                     max_iter: int = 100, grid: int = 4097) -> np.ndarray:
    """The ``u`` quantiles (``u`` ``[N]`` in ``(0, 1)``) of the 1-D mixtures ``(w, m [P, K], s [P, K])``,
    ``[P, N]``.

    The CDF is tabulated on ``grid`` points between the smallest and the largest component
    quantile of ``min u`` and ``max u`` (between which every quantile lies); each ``u`` gets the
    bracketing cell and a start by linear interpolation, then Newton steps kept inside the
    bracket (bisection where Newton leaves it) until ``|F(q) - u| <= tol min(u, 1 - u) + 4e-16`` everywhere
    (the upper half is solved on the survival function, so tail quantiles keep their relative
    accuracy); raises if that does not happen in ``max_iter`` steps."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1 or u.size == 0 or not np.all((u > 0) & (u < 1)):
        raise ValueError("mixture_quantile: u must be a non-empty 1-D array of values in (0, 1)")
    zq = ndtri(np.array([u.min(), u.max()]))
    a = (m + s * zq[0]).min(-1)                              # [P]
    b = (m + s * zq[1]).max(-1)
    g = a[:, None] + (b - a)[:, None] * np.linspace(0.0, 1.0, grid)[None, :]   # [P, grid]
    Fg = mixture_cdf(g, w, m, s)
    P = m.shape[0]
    q = np.empty((P, u.size))
    lo = np.empty_like(q)
    hi = np.empty_like(q)
    for p in range(P):
        j = np.clip(np.searchsorted(Fg[p], u, side="right") - 1, 0, grid - 2)
        f0, f1 = Fg[p, j], Fg[p, j + 1]
        lo[p], hi[p] = g[p, j], g[p, j + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(f1 > f0, (u - f0) / (f1 - f0), 0.5)
        q[p] = lo[p] + np.clip(frac, 0.0, 1.0) * (hi[p] - lo[p])
    lo[:, :] = np.where(mixture_cdf(lo, w, m, s) <= u, lo, a[:, None] - 1.0)  # keep a true bracket
    hi[:, :] = np.where(mixture_cdf(hi, w, m, s) >= u, hi, b[:, None] + 1.0)
    # Newton on the entries not yet converged only (flattened [P * N]; row = projection)
    N = u.size
    row = np.repeat(np.arange(P), N)
    uf = np.tile(u, P)
    upper = uf > 0.5
    scale = np.where(upper, 1.0 - uf, uf)  # the residual is relative to the nearer tail's mass
    qf, lof, hif = q.reshape(-1), lo.reshape(-1), hi.reshape(-1)
    active = np.arange(P * N)
    for _ in range(max_iter):
        r = row[active]
        z = (qf[active, None] - m[r]) / s[r]
        ua, up = uf[active], upper[active]
        # F(q) - u, from the survival function in the upper half so that tails keep their digits
        F = np.where(up, (1.0 - ua) - (w * ndtr(-z)).sum(-1), (w * ndtr(z)).sum(-1) - ua)
        done = np.abs(F) <= tol * scale[active] + 4e-16  # 4e-16: the rounding of u and 1 - u themselves
        if done.all():
            return qf.reshape(P, N)
        active, F, z, r = active[~done], F[~done], z[~done], r[~done]
        pdf = (w * np.exp(-0.5 * z * z) / (_SQRT_2PI * s[r])).sum(-1)
        qa = qf[active]
        lof[active] = np.where(F < 0, qa, lof[active])
        hif[active] = np.where(F > 0, qa, hif[active])
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = qa - F / pdf
        inside = np.isfinite(newton) & (newton > lof[active]) & (newton < hif[active])
        qf[active] = np.where(inside, newton, 0.5 * (lof[active] + hif[active]))
    raise ValueError(f"mixture_quantile: no convergence to {tol} in {max_iter} iterations")


def _unit_directions(d: int, P: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((d, P))
    return g / np.linalg.norm(g, axis=0, keepdims=True)


def sliced_w2_to_mixture(x, target, n_projections: int = 200, seed: int = 0, level: float = 0.95,
                         chunk: int = 8) -> MetricResult:
    """Sliced W2 (NOT squared) between the chains ``x`` ``[n, d]`` and the exact law of a Gaussian
    mixture ``target`` (module docstring); ``n_projections`` uniform directions from ``seed``.

    Uncertainty: the variance of ``SW2^2`` over chains (delta method: per chain the mean over
    directions of the 1-D influence functions ``psi_p' = 2 (t - T_p(t))``, ``T_p`` the monotone map
    to the exact law) plus its variance over directions (``var_p(W2^2_p) / P``); ``se(SW2) =
    se(SW2^2) / (2 SW2)``, normal interval.  ``extra``: ``w2_squared``, ``per_projection``
    (``W2^2_p``), ``directions`` (``[d, P]``), ``quantization_floor_squared`` (``mean_p (1/n) sum_i Var(Y | interval i)``, the
    least ``SW2^2`` any ``n`` points can reach), ``se_chains``, ``se_directions`` (of ``SW2^2``).
    """
    check_level(level)
    xa = as_numpy_points(x, "x", min_rows=2)
    n, d = xa.shape
    w, mu, S = _mixture_arrays(target)
    if mu.shape[1] != d:
        raise ValueError(f"x has dimension {d}, the target {mu.shape[1]}")
    P = int(n_projections)
    if P < 2:
        raise ValueError(f"n_projections must be at least 2, got {n_projections!r}")
    theta = _unit_directions(d, P, seed)
    u = np.arange(1, n) / n
    per = np.empty(P)
    floor = np.empty(P)
    phi = np.zeros(n)
    for p0 in range(0, P, chunk):
        th = theta[:, p0:p0 + chunk]
        _, m, s = projected_mixture(target, th)
        c = th.shape[1]
        y = xa @ th                                    # [n, c]
        order = np.argsort(y, axis=0, kind="stable")
        ys = np.take_along_axis(y, order, axis=0).T    # [c, n] sorted
        qi = mixture_quantile(u, w, m, s)              # [c, n - 1]
        inf = np.full((c, 1), np.inf)
        edges = np.concatenate([-inf, qi, inf], axis=1)
        G = _partial_first(edges, w, m, s)             # [c, n + 1]
        first = np.diff(G, axis=1)                     # E[Y 1{interval i}], mass 1/n each
        ey2 = (w * (m * m + s * s)).sum(-1)            # [c]
        per[p0:p0 + c] = (ys * ys).mean(1) - 2.0 * (ys * first).sum(1) + ey2
        H = np.concatenate([np.zeros((c, 1)), _partial_second(qi, w, m, s), ey2[:, None]], axis=1)
        second = np.diff(H, axis=1)
        mu_i = n * first
        floor[p0:p0 + c] = (second.sum(1) - (mu_i * first).sum(1))  # (1/n) sum_i Var_i
        g = ys - mu_i
        inc = np.diff(ys, axis=1) * (g[:, :-1] + g[:, 1:])
        psi_sorted = np.concatenate([np.zeros((c, 1)), np.cumsum(inc, axis=1)], axis=1)
        psi = np.empty_like(psi_sorted)
        np.put_along_axis(psi, order.T, psi_sorted, axis=1)
        phi += psi.sum(0)
    phi /= P
    sw2sq = float(per.mean())
    se_chains = float(phi.std(ddof=1) / math.sqrt(n))
    se_dirs = float(per.std(ddof=1) / math.sqrt(P))
    se_sq = math.hypot(se_chains, se_dirs)
    value = math.sqrt(max(sw2sq, 0.0))
    se = se_sq / (2.0 * value) if value > 0 else math.inf
    z = normal_z(level)
    return MetricResult(
        value, (max(value - z * se, 0.0), value + z * se), se, n,
        f"sliced W2 to the exact mixture law ({P} directions, seed {seed}; closed-form projected "
        "CDFs, Newton quantiles); delta-method SE over chains plus the directions' spread",
        {"w2_squared": sw2sq, "per_projection": per, "directions": theta,
         "quantization_floor_squared": float(floor.mean()), "se_chains": se_chains, "se_directions": se_dirs},
    )


def fourier_features(d: int, n_features: int, scale: float = 1.0, seed: int = 0):
    """``(W [F, d], c [F])``: frequencies ``N(0, scale^2 I)`` and phases ``U[0, 2 pi)`` from ``seed``."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n_features, d)), rng.uniform(0.0, 2.0 * math.pi, n_features)


def fourier_expectations(target, W: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``E_pi cos(W_f . X + c_f)`` for each feature, exactly: a Gaussian mixture's characteristic
    function, or a separable target's 1-D one by quadrature (``[F]``)."""
    from targets import GaussianMixture, QuadratureSeparableTarget

    W = np.asarray(W, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if isinstance(target, GaussianMixture):
        w, mu, S = _mixture_arrays(target)
        quad = np.einsum("fd,kde,fe->fk", W, S, W)
        return (w * np.cos(W @ mu.T + c[:, None]) * np.exp(-0.5 * quad)).sum(-1)
    if isinstance(target, QuadratureSeparableTarget):
        # phi(omega) = E exp(i omega t) at every coordinate's frequency, then the product
        ph = _characteristic_1d(target, W.reshape(-1)).reshape(W.shape)   # [F, d]
        return np.real(np.exp(1j * c) * np.prod(ph, axis=1))
    raise ValueError(f"exact Fourier expectations need a GaussianMixture or a separable target, "
                     f"got {type(target).__name__}")


def _characteristic_1d(target, omega: np.ndarray, chunk: int = 64) -> np.ndarray:
    """``E exp(i omega t)`` under a separable target's 1-D marginal, by its quadrature nodes
    (Gauss-Legendre panels, the same that give its CDF and moments), in chunks of frequencies."""
    nodes, weights = target.quadrature.weighted_nodes()
    t = nodes.double().cpu().numpy()
    wt = weights.double().cpu().numpy()
    out = np.empty(omega.size, dtype=np.complex128)
    for i in range(0, omega.size, chunk):
        arg = np.outer(omega[i:i + chunk], t)
        out[i:i + chunk] = np.cos(arg) @ wt + 1j * (np.sin(arg) @ wt)
    return out


#: Exact expectations already computed, per target object and feature set (a sweep asks again
#: for every cell and noise-floor repetition).
_EXPECTATIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached_expectations(target, d: int, n_features: int, scale: float, seed: int):
    key = (d, n_features, float(scale), seed)
    per_target = _EXPECTATIONS.setdefault(target, {})
    if key not in per_target:
        W, c = fourier_features(d, n_features, scale, seed)
        per_target[key] = (W, c, fourier_expectations(target, W, c))
    return per_target[key]


def fourier_weak_error(x, target, n_features: int = 32, scale=None, seed: int = 0,
                       level: float = 0.95) -> MetricResult:
    """Root mean square over Fourier features of the weak errors ``E f(X_chain) - E_pi f``, from
    the debiased squares (module docstring).

    ``value = sqrt(max(M, 0))`` with ``M = mean_f (e_f^2 - s_f^2/n)``, unbiased for the mean squared
    weak error; its interval is the square root of ``M``'s normal interval clipped at 0 (delta
    method over chains: chain ``j`` contributes ``mean_f 2 e_f (f(x_j) - mean_j f)``), so an error
    below the chains' resolution gives an interval that reaches 0 rather than a positive floor.
    Frequencies are ``N(0, scale^2 I)``, by default ``scale = 1/sqrt(d)`` (so that ``w . x`` is of
    order one in any dimension).  ``extra``: ``mean_squared`` (``M``), ``mean_squared_se``,
    ``per_feature`` errors and their SEs.
    """
    check_level(level)
    xa = as_numpy_points(x, "x", min_rows=2)
    n, d = xa.shape
    if scale is None:
        scale = 1.0 / math.sqrt(d)  # w . x of order one whatever the dimension
    W, c, exact = _cached_expectations(target, d, n_features, scale, seed)
    f = np.cos(xa @ W.T + c)                         # [n, F]
    mean = f.mean(0)
    var = f.var(0, ddof=1)
    e = mean - exact
    M = float(np.mean(e * e - var / n))
    infl = (2.0 * e * (f - mean)).mean(1)            # [n]
    se_M = float(infl.std(ddof=1) / math.sqrt(n))
    z = normal_z(level)
    lo, hi = M - z * se_M, M + z * se_M
    value = math.sqrt(max(M, 0.0))
    se = se_M / (2.0 * value) if value > 0 else math.inf
    return MetricResult(
        value, (math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0))), se, n,
        f"RMS weak error of {n_features} Fourier features (scale {scale}, seed {seed}) against exact "
        "expectations, squares debiased by s^2/n; delta-method interval of the mean square, square-rooted",
        {"mean_squared": M, "mean_squared_se": se_M, "per_feature": e, "per_feature_se": np.sqrt(var / n)},
    )

"""k-nearest-neighbour estimators of KL divergence.

* :func:`kl_knn` -- ``KL(P || Q)`` from samples of both (Wang, Kulkarni & Verdú 2009).
* :func:`kl_knn_to_density` -- ``KL(P || pi)`` from a sample of ``P`` and the normalised
  log density of ``pi``: ``KL = -H(P) - E_P log pi`` with the Kozachenko-Leonenko entropy
  estimator.

Known biases (read before trusting a number):

* **Finite-n bias.** Both estimators are only asymptotically unbiased; their bias decays
  slowly, roughly like ``n^{-1/d}`` (faster for smooth, light-tailed densities), so at fixed
  ``n`` it grows with ``d``. Compare against ``noise_floor`` and report values at several ``n``.
* **Curse of dimensionality.** Beyond ``d ~ 10`` the nearest-neighbour distances concentrate
  and the bias can dominate the signal (it can even make the estimate negative); these
  estimators are for low-dimensional checks (``d <= 5`` tested here).
* **Ties.** Duplicate points make a neighbour distance 0 and the log infinite: such samples
  are rejected (ValueError). Chains that got stuck (e.g. MALA rejections repeated across
  chains started at the same point) produce exact ties.
* **Standard error.** ``se`` = sd of the per-point log terms / sqrt(n), which ignores the
  dependence the shared neighbours create between terms: an approximation (tests calibrate
  it against the spread over independent repetitions). Use :func:`metrics.mean_ci` over
  seeds for a reliable interval.

Neighbour search: ``scipy.spatial.cKDTree`` for ``d <= 15`` (exact); above that a chunked
brute-force search in torch (squared distances by the expansion ``|a|^2 + |b|^2 - 2 a.b`` in
float64), which is faster than a tree in high dimension.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import numpy as np
import torch
from scipy import special
from scipy.spatial import cKDTree

from ._validation import as_numpy_points, check_level, check_positive_int, check_same_dim
from .uncertainty import MetricResult, normal_result

__all__ = ["kl_knn", "kl_knn_to_density"]

_TREE_MAX_DIM = 15
_CHUNK_BYTES = 128 * 2**20


def _kth_distance(points: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """Distance from each query to its k-th nearest neighbour among ``points``
    (``exclude_self``: queries ARE points and the zero self-distance is skipped)."""
    kk = k + 1 if exclude_self else k
    if points.shape[1] <= _TREE_MAX_DIM:
        dist, _ = cKDTree(points).query(queries, k=kk, workers=-1)
        dist = dist.reshape(queries.shape[0], kk)
        return dist[:, kk - 1]
    P = torch.from_numpy(points)
    Qs = torch.from_numpy(queries)
    pn = (P * P).sum(1)
    rows = max(1, _CHUNK_BYTES // (8 * 3 * P.shape[0]))
    out = np.empty(queries.shape[0])
    for s in range(0, Qs.shape[0], rows):
        q = Qs[s : s + rows]
        D = (q * q).sum(1)[:, None] + pn[None, :] - 2.0 * (q @ P.T)
        D.clamp_(min=0.0)
        if exclude_self:
            idx = torch.arange(q.shape[0])
            D[idx, idx + s] = math.inf
        vals = torch.topk(D, k, dim=1, largest=False).values[:, k - 1]
        out[s : s + rows] = vals.sqrt().numpy()
    return out


def kl_knn(x, y, k: int = 1, level: float = 0.95) -> MetricResult:
    """Wang-Kulkarni-Verdú k-NN estimate of ``KL(P_x || P_y)`` in nats, from samples.

        KL_hat = (d/n) sum_i log( nu_k(i) / rho_k(i) ) + log( m / (n - 1) )

    ``rho_k(i)``: distance from ``x_i`` to its ``k``-th nearest neighbour in ``x`` without
    ``x_i``; ``nu_k(i)``: to its ``k``-th nearest neighbour in ``y``; ``n = len(x)``,
    ``m = len(y)`` (Euclidean distances). Consistent as ``n, m -> inf`` for fixed ``k``; biased
    at finite ``n`` (module docstring), and not guaranteed non-negative. ``se`` = sd of the
    per-point terms ``d log(nu/rho)`` over ``sqrt(n)`` (approximate), normal CI. Ties (a zero
    neighbour distance) raise ValueError. Needs ``n >= k + 1``, ``m >= k``.
    """
    check_level(level)
    k = check_positive_int(k, "k", 1)
    xa = as_numpy_points(x, "x", min_rows=k + 1)
    ya = as_numpy_points(y, "y", min_rows=k)
    check_same_dim(xa, ya)
    n, d = xa.shape
    m = ya.shape[0]
    rho = _kth_distance(xa, xa, k, exclude_self=True)
    nu = _kth_distance(ya, xa, k, exclude_self=False)
    if np.any(rho <= 0):
        raise ValueError(
            f"kl_knn: x has {int(np.sum(rho <= 0))} points whose {k}-th neighbour in x is at "
            "distance 0 (duplicate points / ties); the k-NN estimator is undefined"
        )
    if np.any(nu <= 0):
        raise ValueError(
            f"kl_knn: {int(np.sum(nu <= 0))} points of x coincide with their {k}-th neighbour "
            "in y (ties between the samples); the k-NN estimator is undefined"
        )
    terms = d * (np.log(nu) - np.log(rho))
    value = float(terms.mean() + math.log(m / (n - 1)))
    se = float(terms.std(ddof=1) / math.sqrt(n))
    return normal_result(
        value, se, n,
        f"k-NN KL estimator (Wang-Kulkarni-Verdu 2009), k={k}; approximate SE (per-point terms)",
        level, {"k": k, "biased": True},
    )


def kl_knn_to_density(x, log_prob: Union[Callable, object], k: int = 1, level: float = 0.95) -> MetricResult:
    """``KL(P_x || pi)`` in nats from a sample of ``P_x`` and the NORMALISED log density of ``pi``.

        KL_hat = -H_hat(P_x) - (1/n) sum_i log pi(x_i),
        H_hat  = psi(n) - psi(k) + log V_d + (d/n) sum_i log rho_k(i)   (Kozachenko-Leonenko)

    with ``V_d = pi^{d/2} / Gamma(d/2 + 1)`` the volume of the unit ball and ``rho_k(i)`` the
    distance from ``x_i`` to its ``k``-th nearest neighbour among the other points.
    ``log_prob`` is a callable ``[n, d] -> [n]`` or a target with a ``log_prob`` method (called
    on ``x`` moved to the target's device and dtype); it must include the normalising constant
    (``targets.Gaussian.log_prob`` and the separable targets' ``log_prob`` do), otherwise the
    result is off by ``log Z``. Only the entropy part is estimated, so this variant has no
    sampling noise from a second sample, but the same bias caveats as :func:`kl_knn`.
    ``se``: sd of the per-point terms ``-(d log rho_i + log pi(x_i))`` over ``sqrt(n)``
    (approximate), normal CI. Needs ``n >= k + 1``; ties raise ValueError.
    """
    check_level(level)
    k = check_positive_int(k, "k", 1)
    xa = as_numpy_points(x, "x", min_rows=k + 1)
    n, d = xa.shape
    if hasattr(log_prob, "log_prob"):
        target: Any = log_prob
        tdim = getattr(target, "dim", d)
        if tdim != d:
            raise ValueError(f"kl_knn_to_density: x has dimension {d}, the target {tdim}")
        xt = torch.from_numpy(xa).to(device=target.device, dtype=target.dtype)
        lp = target.log_prob(xt)
    elif callable(log_prob):
        xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(xa)
        lp = log_prob(xt)
    else:
        raise ValueError("kl_knn_to_density: log_prob must be a callable or have a log_prob method")
    lp = np.asarray(lp.detach().cpu().double().numpy() if isinstance(lp, torch.Tensor) else lp, dtype=np.float64).reshape(-1)
    if lp.shape[0] != n:
        raise ValueError(f"kl_knn_to_density: log_prob returned {lp.shape[0]} values for {n} points")
    if not np.all(np.isfinite(lp)):
        raise ValueError(f"kl_knn_to_density: log_prob is non-finite at {int(np.sum(~np.isfinite(lp)))} points")
    rho = _kth_distance(xa, xa, k, exclude_self=True)
    if np.any(rho <= 0):
        raise ValueError(
            f"kl_knn_to_density: x has {int(np.sum(rho <= 0))} points whose {k}-th neighbour is "
            "at distance 0 (duplicate points / ties); the entropy estimator is undefined"
        )
    log_vd = 0.5 * d * math.log(math.pi) - special.gammaln(0.5 * d + 1.0)
    const = special.digamma(n) - special.digamma(k) + log_vd
    terms = -(d * np.log(rho) + lp)
    value = float(terms.mean() - const)
    se = float(terms.std(ddof=1) / math.sqrt(n))
    return normal_result(
        value, se, n,
        f"KL = -H_KL - E log pi (Kozachenko-Leonenko entropy, k={k}); approximate SE",
        level, {"k": k, "entropy": float(const + (d * np.log(rho)).mean()), "cross_entropy": float(-lp.mean())},
    )

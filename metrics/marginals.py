"""Exact 1-D distances between the chains' coordinate marginals and a separable target's marginal.

For a separable target ``pi = p^{⊗d}`` (``targets.SeparableTarget``: every coordinate has the
same 1-D density ``p``) the 1-D laws of the coordinates can be compared with ``p`` without any
sampling noise on the target side. Only the target's public 1-D interface is used:
``marginal_pdf`` (exact), ``marginal_quantile`` (to place interval / bin edges) and
``marginal_moment`` (a scale for the tails).

* :func:`marginal_w2`: exact ``W2`` between each coordinate's empirical law and ``p``.
* :func:`marginal_tv`: ``TV`` between a histogram density of each coordinate and ``p``.

Both return the MEAN OVER COORDINATES as ``value`` and the per-coordinate values in ``extra``.
``pool=True`` instead treats the ``n * d`` values as one sample of ``p`` -- legitimate because
every coordinate of a separable target has the same law ``p``, and it lowers the noise floor,
but it then measures the distance of the *mixture of the coordinate marginals* to ``p`` (equal
to each of them when the chains are exchangeable across coordinates, e.g. LMC on a separable
target started from an exchangeable law). Standard errors always treat chains (rows) as the
independent units, so dependence between coordinates of one chain is allowed.
"""

from __future__ import annotations

import math
import weakref
from typing import Optional

import numpy as np
import torch

from ._validation import as_numpy_points, check_level, check_positive_int
from .uncertainty import MetricResult, normal_z

__all__ = ["marginal_w2", "marginal_tv", "interval_conditional_moments"]

_GL_NODES = 12


def _np(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


def _check_target(x: np.ndarray, target, fname: str):
    for attr in ("marginal_pdf", "marginal_quantile", "marginal_moment"):
        if not hasattr(target, attr):
            raise ValueError(f"{fname}: target has no {attr}(); it needs a SeparableTarget")
    tdim = getattr(target, "dim", x.shape[1])
    if tdim != x.shape[1]:
        raise ValueError(f"{fname}: x has dimension {x.shape[1]} but the target has dimension {tdim}")


def _pdf(target, t: np.ndarray) -> np.ndarray:
    out = _np(target.marginal_pdf(np.ascontiguousarray(t, dtype=np.float64)))
    return np.where(np.isfinite(out), out, 0.0).reshape(t.shape)


def _quantile(target, u: np.ndarray) -> np.ndarray:
    return _np(target.marginal_quantile(np.ascontiguousarray(u, dtype=np.float64))).reshape(u.shape)


def _gl_integrals(target, a: np.ndarray, b: np.ndarray, panels: int, powers=(0, 1, 2)):
    """``∫_a^b t^k p(t) dt`` for each interval and each ``k`` in ``powers`` (composite GL)."""
    xg, wg = np.polynomial.legendre.leggauss(_GL_NODES)
    a = a[:, None]
    w = (b - a[:, 0])[:, None] / panels
    # nodes: [m, panels, nodes]
    starts = a + w * np.arange(panels)[None, :]
    t = starts[:, :, None] + 0.5 * w[:, :, None] * (xg[None, None, :] + 1.0)
    wt = 0.5 * w[:, :, None] * wg[None, None, :]
    f = _pdf(target, t.reshape(-1)).reshape(t.shape) * wt
    return [np.sum(f * t**k, axis=(1, 2)) for k in powers]


def _tail_limit(target, q_edge: float, direction: int, scale: float) -> float:
    """A point beyond ``q_edge`` (towards ``direction``) past which ``p`` is negligible."""
    step = max(scale, 1e-12)
    peak = float(_pdf(target, np.array([q_edge]))[0])
    for _ in range(200):
        t = q_edge + direction * step
        if float(_pdf(target, np.array([t]))[0]) <= 1e-30 * max(peak, 1e-300):
            return t
        step *= 1.5
    return t


_ICM_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def interval_conditional_moments(target, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached :func:`_interval_conditional_moments`: per target object, the last few ``n``.

    The result depends only on the target's marginal and ``n``, and a sweep asks for the same
    ``n`` once per cell; the arrays returned are read-only.
    """
    n = check_positive_int(n, "n", 1)
    per_target = _ICM_CACHE.setdefault(target, {})
    if n not in per_target:
        if len(per_target) >= 4:
            per_target.pop(next(iter(per_target)))
        mu, var = _interval_conditional_moments(target, n)
        mu.setflags(write=False)
        var.setflags(write=False)
        per_target[n] = (mu, var)
    return per_target[n]


def _interval_conditional_moments(target, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``mu_i`` and variance ``v_i`` of ``p`` restricted to ``[q_{i-1}, q_i]``, ``i = 1..n``.

    ``q_i = F^{-1}(i/n)`` (``q_0 = -inf``, ``q_n = +inf``) are the target quantiles, so interval
    ``i`` carries mass exactly ``1/n`` and corresponds to ``u in ((i-1)/n, i/n)``. Integrals
    ``∫ t^k p`` are composite Gauss-Legendre (``12`` nodes, ``max(1, ceil(256/n))`` panels per
    interval) on the exact pdf; the two unbounded end intervals are cut where
    ``p < 1e-30 * p(q_edge)`` and integrated with 64 panels. ``mu_i = ∫ t p / ∫ p`` and
    ``v_i = ∫ (t - mu_i)^2 p / ∫ p`` (normalised by the computed mass, so they stay inside the
    interval even where the quantiles are approximate).
    """
    n = check_positive_int(n, "n", 1)
    m1 = float(target.marginal_moment(1))
    m2 = float(target.marginal_moment(2))
    scale = math.sqrt(max(m2 - m1 * m1, 1e-300))
    if n == 1:
        lo = _tail_limit(target, m1, -1, scale)
        hi = _tail_limit(target, m1, +1, scale)
        a, b = np.array([lo]), np.array([hi])
        panels_end = 256
        I0, I1, I2 = _gl_integrals(target, a, b, panels_end)
    else:
        q = _quantile(target, np.arange(1, n) / n)
        if not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("target.marginal_quantile returned non-finite or non-monotone values")
        lo = _tail_limit(target, q[0], -1, scale)
        hi = _tail_limit(target, q[-1], +1, scale)
        I0 = np.empty(n)
        I1 = np.empty(n)
        I2 = np.empty(n)
        ends = _gl_integrals(target, np.array([lo, q[-1]]), np.array([q[0], hi]), 64)
        I0[[0, -1]], I1[[0, -1]], I2[[0, -1]] = ends
        if n > 2:
            panels = max(1, math.ceil(256 / n))
            mid = _gl_integrals(target, q[:-1], q[1:], panels)
            I0[1:-1], I1[1:-1], I2[1:-1] = mid
    if np.any(I0 <= 0):
        raise ValueError("marginal quadrature found an interval of zero mass")
    mu = I1 / I0
    var = np.clip(I2 / I0 - mu * mu, 0.0, None)
    return mu, var


def _w2_sorted(xs: np.ndarray, mu: np.ndarray, var: np.ndarray):
    """``W2^2`` per column of sorted data ``xs`` [N, c] against the law with interval moments."""
    return np.mean((xs - mu[:, None]) ** 2, axis=0) + np.mean(var)


def _influence(xs: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Influence function ``psi`` of ``W2^2`` at the sorted points (one column per coordinate):
    ``psi' = 2 (t - T(t))`` with ``T(x_(i)) = mu_i``, integrated by the trapezoid rule."""
    g = xs - mu[:, None]
    inc = np.diff(xs, axis=0) * (g[:-1] + g[1:])
    psi = np.concatenate([np.zeros((1, xs.shape[1])), np.cumsum(inc, axis=0)], axis=0)
    return psi


def marginal_w2(
    x,
    target,
    pool: bool = False,
    level: float = 0.95,
) -> MetricResult:
    """Exact 1-D ``W2`` (NOT squared) between each coordinate's empirical law and the target marginal.

    For coordinate ``j`` with order statistics ``x_(1) <= ... <= x_(n)``:

        W2_j^2 = ∫_0^1 (F_n^{-1}(u) - F^{-1}(u))^2 du
               = (1/n) sum_i [ (x_(i) - mu_i)^2 + v_i ]

    where ``mu_i, v_i`` are the mean and variance of ``p`` restricted to the ``i``-th quantile
    interval ``[F^{-1}((i-1)/n), F^{-1}(i/n)]`` (:func:`interval_conditional_moments`, Gauss-
    Legendre on the exact pdf -- no sampling on the target side; accuracy ~1e-12 relative).
    The term ``(1/n) sum v_i`` (``extra["quantization_floor_squared"]``) is the smallest
    ``W2^2`` any ``n``-point sample can reach; exact samples sit higher, at
    ``E W2^2 ~ c log log n / n`` for Gaussian-like tails (see :func:`metrics.noise_floor`).

    ``value`` = mean over coordinates of ``W2_j`` (or, ``pool=True``, the ``W2`` of the pooled
    ``n*d`` values; see the module docstring). ``extra``: ``per_coordinate`` (``W2_j``),
    ``per_coordinate_se``, ``per_coordinate_ci``, ``w2_squared`` (per coordinate or pooled).

    Uncertainty: delta method on the influence function of ``P -> W2^2(P, p)``,
    ``psi(t) = 2 ∫^t (s - T(s)) ds`` with ``T`` the monotone transport map (``T(x_(i)) = mu_i``):
    ``se`` = sd over chains of ``(1/d) sum_j psi_j(x_ij) / (2 W2_j)`` divided by ``sqrt(n)``
    (chains are the independent units; coordinates of one chain may be dependent), and a
    normal interval. Valid when the chains' law differs from ``p`` (CLT of del Barrio, Giné &
    Utzet 2005); at the noise floor (chains ~ exact) the estimate is degenerate and this SE is
    unreliable -- compare with :func:`metrics.noise_floor` instead. Needs ``n >= 2``.
    """
    check_level(level)
    xa = as_numpy_points(x, "x", min_rows=2)
    _check_target(xa, target, "marginal_w2")
    n, d = xa.shape
    z = normal_z(level)
    if pool:
        flat = xa.reshape(-1)
        order = np.argsort(flat, kind="stable")
        xs = flat[order][:, None]
        mu, var = interval_conditional_moments(target, n * d)
        w2sq = float(_w2_sorted(xs, mu, var)[0])
        w2 = math.sqrt(max(w2sq, 0.0))
        psi_sorted = _influence(xs, mu)[:, 0]
        psi = np.empty(n * d)
        psi[order] = psi_sorted
        phi = psi.reshape(n, d).mean(axis=1) / (2 * w2) if w2 > 0 else np.zeros(n)
        se = float(phi.std(ddof=1) / math.sqrt(n))
        return MetricResult(
            w2,
            (max(w2 - z * se, 0.0), w2 + z * se),
            se,
            n,
            f"exact 1-D W2 of the pooled {n}x{d} values to the target marginal (quantile "
            "quadrature); delta-method SE over chains",
            {
                "w2_squared": w2sq,
                "quantization_floor_squared": float(np.mean(var)),
                "pooled": True,
            },
        )
    mu, var = interval_conditional_moments(target, n)
    order = np.argsort(xa, axis=0, kind="stable")
    xs = np.take_along_axis(xa, order, axis=0)
    w2sq = _w2_sorted(xs, mu, var)
    w2 = np.sqrt(np.clip(w2sq, 0.0, None))
    psi_sorted = _influence(xs, mu)
    psi = np.empty_like(psi_sorted)
    np.put_along_axis(psi, order, psi_sorted, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_sq = psi.std(axis=0, ddof=1) / math.sqrt(n)
        se_j = np.where(w2 > 0, se_sq / (2 * w2), np.nan)
        phi = np.where(w2 > 0, psi / (2 * w2), 0.0).mean(axis=1)
    se = float(phi.std(ddof=1) / math.sqrt(n))
    value = float(w2.mean())
    ci_j = np.stack([np.clip(w2 - z * se_j, 0.0, None), w2 + z * se_j], axis=1)
    return MetricResult(
        value,
        (max(value - z * se, 0.0), value + z * se),
        se,
        n,
        f"exact 1-D W2 per coordinate to the target marginal (quantile quadrature), mean over "
        f"{d} coordinates; delta-method SE over chains",
        {
            "per_coordinate": w2,
            "per_coordinate_se": se_j,
            "per_coordinate_ci": ci_j,
            "w2_squared": w2sq,
            "quantization_floor_squared": float(np.mean(var)),
            "pooled": False,
        },
    )


# ------------------------------------------------------------------------------------------
# total variation
# ------------------------------------------------------------------------------------------

_TV_CELLS = 32


def default_bins(n: int) -> int:
    """Rice rule ``ceil(2 n^{1/3})`` (at least 2)."""
    return max(2, int(math.ceil(2.0 * n ** (1.0 / 3.0))))


class _TVGrid:
    """Equal-probability bins of ``p`` and a fine cell grid inside each interior bin."""

    def __init__(self, target, bins: int):
        self.B = bins
        self.edges = _quantile(target, np.arange(1, bins) / bins)  # B-1 finite edges
        if not np.all(np.isfinite(self.edges)) or np.any(np.diff(self.edges) <= 0):
            raise ValueError("marginal_tv: target quantiles are not finite/strictly increasing")
        a, b = self.edges[:-1], self.edges[1:]  # interior bins 1..B-2 (0-based: bins 1..B-2)
        self.width = b - a
        s = np.linspace(0.0, 1.0, _TV_CELLS + 1)
        self.grid = a[:, None] + self.width[:, None] * s[None, :]  # [Bi, C+1]
        self.p_grid = _pdf(target, self.grid)
        # exact-pdf Gauss-Legendre mass of every cell
        xg, wg = np.polynomial.legendre.leggauss(8)
        self._xg, self._wg = xg, wg
        lo, hi = self.grid[:, :-1], self.grid[:, 1:]
        self.cell_mass = self._mass(target, lo, hi)  # [Bi, C]
        self.target = target

    def _mass(self, target, lo, hi):
        t = 0.5 * (lo + hi)[..., None] + 0.5 * (hi - lo)[..., None] * self._xg
        f = _pdf(target, t.reshape(-1)).reshape(t.shape)
        return 0.5 * (hi - lo) * np.sum(f * self._wg, axis=-1)

    def tv(self, probs: np.ndarray):
        """TV and its gradient w.r.t. bin probabilities, for ``probs`` [c, B] (rows sum to 1)."""
        B = self.B
        tail = 0.5 * (np.abs(probs[:, 0] - 1.0 / B) + np.abs(probs[:, -1] - 1.0 / B))
        grad = np.zeros_like(probs)
        grad[:, 0] = 0.5 * np.sign(probs[:, 0] - 1.0 / B)
        grad[:, -1] = 0.5 * np.sign(probs[:, -1] - 1.0 / B)
        if B == 2:
            return tail, grad
        h = probs[:, 1:-1] / self.width[None, :]  # [c, Bi]
        g = self.p_grid[None, :, :] - h[:, :, None]  # [c, Bi, C+1]  p - h at grid points
        dt = (self.width / _TV_CELLS)[None, :, None]
        cellint = self.cell_mass[None] - h[:, :, None] * dt  # ∫ (p - h) over each cell
        g0, g1 = g[..., :-1], g[..., 1:]
        cross = (g0 * g1) < 0
        total = np.abs(cellint)
        # length of the cell where h > p (p - h < 0)
        neg_len = np.where(g0 + g1 < 0, 1.0, 0.0) * np.broadcast_to(dt, g0.shape)
        if np.any(cross):
            ci, bi, ki = np.nonzero(cross)
            lo = self.grid[bi, ki]
            hi = self.grid[bi, ki + 1]
            a0, a1 = g0[ci, bi, ki], g1[ci, bi, ki]
            ts = lo + (hi - lo) * a0 / (a0 - a1)  # linear interpolation of the crossing
            hh = h[ci, bi]
            m_left = self._mass(self.target, lo, ts)
            m_right = self.cell_mass[bi, ki] - m_left
            left = m_left - hh * (ts - lo)
            right = m_right - hh * (hi - ts)
            total[ci, bi, ki] = np.abs(left) + np.abs(right)
            neg_len[ci, bi, ki] = np.where(a0 < 0, ts - lo, hi - ts)
        interior = 0.5 * total.sum(axis=2).sum(axis=1)
        frac_neg = neg_len.sum(axis=2) / self.width[None, :]  # fraction of bin where h > p
        grad[:, 1:-1] = 0.5 * (2.0 * frac_neg - 1.0)
        return tail + interior, grad


def marginal_tv(
    x,
    target,
    bins: Optional[int] = None,
    pool: bool = False,
    level: float = 0.95,
) -> MetricResult:
    """Total variation between a histogram of each coordinate and the exact target marginal.

        TV_j = 1/2 ∫ |h_j(t) - p(t)| dt

    Histogram: ``B`` bins with equal target probability ``1/B``, edges
    ``F^{-1}(k/B), k = 1..B-1`` (the two end bins are unbounded). On the ``B-2`` interior bins
    ``h_j`` is the usual piecewise-constant density ``(count/n)/width``; on the two unbounded end
    bins it is ``(count/n) * B * p(t)`` (proportional to ``p``, since no constant density fits a
    half-line), contributing ``1/2 |count/n - 1/B|`` each. ``∫|h - p|`` over an interior bin is
    computed from exact Gauss-Legendre masses of ``p`` on 32 cells per bin, splitting a cell
    where ``p - h`` changes sign (crossing located by linear interpolation; error third order in
    the cell width). Default ``B`` = Rice rule ``ceil(2 n^{1/3})`` (``n`` = chains, or ``n*d``
    if ``pool``).

    BIAS: the histogram estimate is biased upwards at finite ``n``: even for exact samples
    each bin count fluctuates, and ``E TV ≈ sqrt((B-1) / (2 pi n))`` (half the expected
    ``L1`` deviation of a multinomial with equal cells) plus the binning error
    ``TV(p, p_B)`` of the exact histogram. Both are returned in ``extra`` (``floor_approx`` and
    ``binning_floor``); :func:`metrics.noise_floor` (``against="target"``) gives the floor by
    simulation. Differences of TV below the floor are not resolved.

    ``value`` = mean over coordinates (``extra["per_coordinate"]``), or the TV of the pooled
    sample when ``pool=True`` (see the module docstring). ``se``: delta method -- TV is
    piecewise linear in the bin probabilities with gradient ``g_k`` (``±1/2`` on the end bins,
    ``(2 * fraction of bin where h > p - 1)/2`` inside), so ``se`` = sd over chains of
    ``(1/d) sum_j g_{k(x_ij)}`` over ``sqrt(n)``; normal interval. Like every TV-of-histogram
    SE, it is conservative at the floor (where ``TV`` is not differentiable).
    """
    check_level(level)
    xa = as_numpy_points(x, "x", min_rows=2)
    _check_target(xa, target, "marginal_tv")
    n, d = xa.shape
    n_eff = n * d if pool else n
    B = default_bins(n_eff) if bins is None else check_positive_int(bins, "bins", 2)
    grid = _TVGrid(target, B)
    idx = np.searchsorted(grid.edges, xa, side="right")  # [n, d] bin index 0..B-1
    if pool:
        counts = np.bincount(idx.reshape(-1), minlength=B)[None, :].astype(float)
        probs = counts / (n * d)
    else:
        counts = np.stack([np.bincount(idx[:, j], minlength=B) for j in range(d)]).astype(float)
        probs = counts / n
    tv, grad = grid.tv(probs)
    if pool:
        phi = grad[0][idx].mean(axis=1)
        value = float(tv[0])
    else:
        phi = np.take_along_axis(grad.T, idx, axis=0).mean(axis=1)  # grad.T: [B, d]
        value = float(tv.mean())
    se = float(phi.std(ddof=1) / math.sqrt(n))
    z = normal_z(level)
    binning_floor = float(grid.tv(np.full((1, B), 1.0 / B))[0][0])
    extra = {
        "bins": B,
        "floor_approx": math.sqrt((B - 1) / (2 * math.pi * n_eff)),
        "binning_floor": binning_floor,
        "pooled": pool,
    }
    if not pool:
        extra["per_coordinate"] = tv
    return MetricResult(
        value,
        (max(value - z * se, 0.0), value + z * se),
        se,
        n,
        f"TV of a {B}-bin equal-probability histogram to the exact marginal"
        + (" (pooled coordinates)" if pool else f", mean over {d} coordinates")
        + "; delta-method SE over chains; biased upwards by ~sqrt((B-1)/(2 pi n))",
        extra,
    )

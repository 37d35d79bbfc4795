"""Kernel discrepancies: MMD between two samples, kernel Stein discrepancy to a target.

Both are U-statistics of kernel matrices, computed in float64 on the device of ``x`` in row
chunks (memory ``O(chunk * n)``, never an ``n x n`` matrix), with a standard error from the
U-statistic's exact finite-sample variance (Hoeffding decomposition) with every moment
estimated unbiasedly from row sums, column sums and sums of squares accumulated chunk by
chunk.

One-sample U-statistic ``U = 1/(n(n-1)) sum_{i != j} h_ij`` of a symmetric kernel ``h``:
its Hoeffding decomposition into orthogonal pieces gives exactly

    Var U = (4/n) zeta_1 + 2/(n(n-1)) (zeta_2 - 2 zeta_1),
    zeta_1 = Cov(h_12, h_13) = Var E[h_12 | X_1],  zeta_2 = Var(h_12),

where both brackets are variances (of the first- and second-order pieces). ``zeta_1`` and
``zeta_2`` are estimated unbiasedly (``R_i = sum_{j != i} h_ij``, ``T = sum_i R_i``,
``Q = sum_{i != j} h_ij^2``, ``(n)_k`` falling factorials):
``E[h_12 h_13] ~ (sum_i R_i^2 - Q)/(n)_3``, ``E[h_12^2] ~ Q/(n)_2``,
``(E h)^2 ~ (T^2 - 4 sum_i R_i^2 + 2Q)/(n)_4``. Each piece's estimate is clipped at 0 before
summing ("positive-part" estimator): unbiased whenever no clipping occurs, never negative,
and conservative when a piece is ~0, which happens exactly in the degenerate case (equal
laws for MMD, exact samples for KSD: the first-order piece vanishes, the variance is
``O(1/n^2)``, and its noisy estimate is clipped). Measured (tests): in the degenerate case
the mean of ``se^2`` is 1.2-1.6 times the true variance; otherwise it matches it.
The two-sample MMD estimator is decomposed the same way into five pieces (see :func:`mmd`).
"""

from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np
import torch
from scipy.spatial.distance import pdist

from ._validation import as_torch_points, check_level, check_same_dim
from .uncertainty import MetricResult, normal_result

__all__ = ["mmd", "ksd", "median_bandwidth", "gaussian_mmd_squared_closed_form"]

_DEFAULT_CHUNK_BYTES = 256 * 2**20


def _chunk_rows(n_cols: int, n_temps: int, chunk_bytes: int) -> int:
    return max(1, int(chunk_bytes // (8 * max(n_cols, 1) * n_temps)))


class _Moments:
    """Accumulated sums of a kernel block needed for the U-statistic and its variance."""

    def __init__(self, row, col, total, sumsq):
        self.row = row  # [n_a] row sums (diagonal excluded for self-blocks)
        self.col = col  # [n_b] column sums (None for self-blocks: equal to row)
        self.total = total
        self.sumsq = sumsq


def _block_moments(
    kfn: Callable[[int, int], torch.Tensor], n_a: int, n_b: int, same: bool, rows: int, device
) -> _Moments:
    """Sums of the ``n_a x n_b`` kernel matrix whose rows ``[s:e]`` are ``kfn(s, e)``."""
    row = torch.zeros(n_a, dtype=torch.float64, device=device)
    col = None if same else torch.zeros(n_b, dtype=torch.float64, device=device)
    sumsq = torch.zeros((), dtype=torch.float64, device=device)
    for s in range(0, n_a, rows):
        e = min(n_a, s + rows)
        K = kfn(s, e)  # a fresh [e - s, n_b] tensor that may be overwritten
        if same:
            idx = torch.arange(e - s, device=device)
            K[idx, idx + s] = 0.0
        row[s:e] = K.sum(dim=1)
        if col is not None:
            col += K.sum(dim=0)
        sumsq += K.square_().sum()
        del K
    return _Moments(row, col, float(row.sum()), float(sumsq))


def _one_sample_parts(mo: _Moments, n: int) -> tuple[float, float, float]:
    """``(U, zeta_1, zeta_2)`` with unbiased estimates of ``zeta_1, zeta_2`` (module docstring)."""
    T, Q = mo.total, mo.sumsq
    R2 = float((mo.row * mo.row).sum())
    n2 = n * (n - 1)
    n3 = n2 * (n - 2)
    n4 = n3 * (n - 3)
    theta2 = (T * T - 4.0 * R2 + 2.0 * Q) / n4
    zeta1 = (R2 - Q) / n3 - theta2
    zeta2 = Q / n2 - theta2
    return T / n2, zeta1, zeta2


def _one_sample_var(mo: _Moments, n: int) -> tuple[float, float]:
    """``(U, Var-hat U)``: positive-part estimate of the Hoeffding decomposition
    ``Var U = (4/n) zeta_1 + 2/(n(n-1)) (zeta_2 - 2 zeta_1)`` (both terms are variances)."""
    U, z1, z2 = _one_sample_parts(mo, n)
    var = 4.0 / n * max(z1, 0.0) + 2.0 / (n * (n - 1)) * max(z2 - 2.0 * z1, 0.0)
    return U, var


def median_bandwidth(x, y=None, max_points: int = 2000, seed: int = 0) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of the pooled sample.

    ``sigma = median{ |z_i - z_j| : i < j }`` over ``z = [x; y]`` (``y`` optional); when the
    pooled sample has more than ``max_points`` rows a uniformly random subset of
    ``max_points`` rows (``numpy.random.default_rng(seed)``, without replacement) is used.
    """
    xt = as_torch_points(x, "x")
    z = xt.cpu().numpy()
    if y is not None:
        yt = as_torch_points(y, "y")
        check_same_dim(xt, yt)
        z = np.concatenate([z, yt.cpu().numpy()], axis=0)
    if z.shape[0] < 2:
        raise ValueError("median_bandwidth: need at least 2 points")
    if z.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(z.shape[0], size=max_points, replace=False)
        z = z[idx]
    sigma = float(np.median(pdist(z)))
    if not sigma > 0:
        raise ValueError("median_bandwidth: median pairwise distance is 0 (duplicated points)")
    return sigma


def gaussian_mmd_squared_closed_form(m0, S0, m1, S1, bandwidth: float) -> float:
    """Population ``MMD^2`` between ``N(m0, S0)`` and ``N(m1, S1)`` for the Gaussian kernel
    ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``:

        E k(X, Y) = det(I + (Sx + Sy)/sigma^2)^{-1/2}
                    * exp(-1/2 (mx - my)^T (sigma^2 I + Sx + Sy)^{-1} (mx - my)),
        MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y).
    """
    from ._validation import to_numpy

    m0, m1 = np.atleast_1d(to_numpy(m0)), np.atleast_1d(to_numpy(m1))
    S0, S1 = np.atleast_2d(to_numpy(S0)), np.atleast_2d(to_numpy(S1))
    d = m0.size
    s2 = float(bandwidth) ** 2
    eye = np.eye(d)

    def ek(ma, Sa, mb, Sb):
        C = Sa + Sb
        dm = ma - mb
        _, logdet = np.linalg.slogdet(eye + C / s2)
        quad = dm @ np.linalg.solve(s2 * eye + C, dm)
        return math.exp(-0.5 * logdet - 0.5 * quad)

    return ek(m0, S0, m0, S0) + ek(m1, S1, m1, S1) - 2.0 * ek(m0, S0, m1, S1)


def mmd(
    x,
    y,
    kernel: str = "gaussian",
    bandwidth: Union[str, float] = "median",
    level: float = 0.95,
    seed: int = 0,
    median_max_points: int = 2000,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
) -> MetricResult:
    """Unbiased squared maximum mean discrepancy ``MMD^2_u`` (a U-statistic) with its SE.

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(n m) sum_{i, j} k(x_i, y_j)                       (Gretton et al. 2012)

    ``value`` is this SQUARED MMD. It is unbiased for ``MMD^2`` (given a fixed bandwidth), so
    it is negative about half the time when the two laws are equal: do not take its square
    root. Kernel: Gaussian RBF ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` (the only one
    offered). ``bandwidth="median"``: ``sigma`` = median Euclidean distance between distinct
    points of the pooled sample ``[x; y]`` (on a random subset of ``median_max_points`` rows,
    drawn with ``seed``, when larger; see :func:`median_bandwidth`) -- this makes the kernel
    data-dependent, so the estimator is only conditionally unbiased (the effect is
    ``O(1/n)``); pass a float ``sigma`` for an exactly unbiased estimator, e.g. when comparing
    with :func:`gaussian_mmd_squared_closed_form`.

    Standard error: the exact finite-sample variance of ``MMD^2_u`` splits (Hoeffding) into
    five orthogonal pieces,

        Var = (4/n) Var[g_A(X) - g_B(X)] + (4/m) Var[g_C(Y) - g_B'(Y)]
              + 2/(n(n-1)) (zeta_2^xx - 2 zeta_1^xx) + 2/(m(m-1)) (zeta_2^yy - 2 zeta_1^yy)
              + 4/(n m) (xi_11 - xi_10 - xi_01),

    ``g_A(x) = E k(x, X')``, ``g_B(x) = E k(x, Y)``, ``g_C(y) = E k(y, Y')``,
    ``g_B'(y) = E k(X, y)``, ``xi_11 = Var k(X, Y)``, ``xi_10 = Var g_B(X)``,
    ``xi_01 = Var g_B'(Y)``. Every moment is estimated unbiasedly from row sums, column sums and
    sums of squares of the three kernel blocks; the second-order pieces are clipped at 0 and
    the sum of the two first-order pieces too (module docstring), ``se = sqrt(total)``; the
    pieces are in ``extra["var_parts"]``. Valid when ``P != Q`` and
    under ``P = Q`` (degenerate: first-order pieces vanish, variance ``O(1/n^2)``, and the
    clipping makes the SE slightly conservative). ``ci = value ± z * se`` (normal; under
    ``P = Q`` the statistic is not normal, so read the interval as ±2 SE). Needs
    ``n, m >= 4``. Cost ``O((n + m)^2 d)`` time, ``O(chunk_bytes)`` extra memory.
    """
    check_level(level)
    if kernel != "gaussian":
        raise ValueError(f"mmd: unknown kernel {kernel!r}; only 'gaussian' is implemented")
    xt = as_torch_points(x, "x", min_rows=4)
    yt = as_torch_points(y, "y", min_rows=4, device=xt.device)
    check_same_dim(xt, yt)
    n, m = xt.shape[0], yt.shape[0]
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"mmd: bandwidth must be 'median' or a positive float, got {bandwidth!r}")
        sigma = median_bandwidth(xt, yt, max_points=median_max_points, seed=seed)
        bw_desc = f"median heuristic sigma={sigma:.4g}"
    else:
        sigma = float(bandwidth)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"mmd: bandwidth must be positive and finite, got {bandwidth!r}")
        bw_desc = f"sigma={sigma:.4g}"
    gamma = 1.0 / (2.0 * sigma * sigma)
    dev = xt.device
    xn = (xt * xt).sum(1)
    yn = (yt * yt).sum(1)

    def kmat(A, An, B, Bn):
        def f(s, e):
            # |a|^2 + |b|^2 - 2 a.b, clamped at 0, then exp(-gamma D): one allocation
            D = torch.addmm(Bn[None, :], A[s:e], B.T, alpha=-2.0)
            D.add_(An[s:e, None]).clamp_(min=0.0).mul_(-gamma)
            return D.exp_()

        return f

    mA = _block_moments(kmat(xt, xn, xt, xn), n, n, True, _chunk_rows(n, 3, chunk_bytes), dev)
    mC = _block_moments(kmat(yt, yn, yt, yn), m, m, True, _chunk_rows(m, 3, chunk_bytes), dev)
    mB = _block_moments(kmat(xt, xn, yt, yn), n, m, False, _chunk_rows(m, 3, chunk_bytes), dev)

    A, z1A, z2A = _one_sample_parts(mA, n)
    C, z1C, z2C = _one_sample_parts(mC, m)
    B = mB.total / (n * m)
    r, c = mB.row, mB.col
    r2 = float((r * r).sum())
    c2 = float((c * c).sum())
    QB = mB.sumsq
    thB2 = (mB.total**2 - r2 - c2 + QB) / (n * (n - 1) * m * (m - 1))
    xi10 = (r2 - QB) / (n * m * (m - 1)) - thB2  # Var_x E_Y k(x, Y)
    xi01 = (c2 - QB) / (n * (n - 1) * m) - thB2  # Var_y E_X k(X, y)
    xi11 = QB / (n * m) - thB2  # Var k(X, Y)
    # eta_A = Cov(E[k(X1,X2)|X1], E[k(X1,Y)|X1]) and its y-side analogue
    aR = float((mA.row * r).sum())
    eta_A = aR / (n * (n - 1) * m) - (mA.total * mB.total - 2.0 * aR) / (n * (n - 1) * (n - 2) * m)
    cC = float((mC.row * c).sum())
    eta_C = cC / (m * (m - 1) * n) - (mC.total * mB.total - 2.0 * cC) / (m * (m - 1) * (m - 2) * n)
    # Hoeffding decomposition: every bracket is the variance of one orthogonal piece.
    parts = {
        "x_first_order": 4.0 / n * (z1A + xi10 - 2.0 * eta_A),
        "y_first_order": 4.0 / m * (z1C + xi01 - 2.0 * eta_C),
        "xx_second_order": 2.0 / (n * (n - 1)) * (z2A - 2.0 * z1A),
        "yy_second_order": 2.0 / (m * (m - 1)) * (z2C - 2.0 * z1C),
        "xy_second_order": 4.0 / (n * m) * (xi11 - xi10 - xi01),
    }
    # True Var >= its second-order part, so clip the second-order pieces at 0 and the
    # (unbiased) first-order sum at 0 jointly: exact when nothing is clipped.
    second = sum(max(parts[k], 0.0) for k in ("xx_second_order", "yy_second_order", "xy_second_order"))
    var = second + max(parts["x_first_order"] + parts["y_first_order"], 0.0)
    value = A + C - 2.0 * B
    se = math.sqrt(max(var, 0.0))
    return normal_result(
        value=float(value),
        se=se,
        n=min(n, m),
        method=f"unbiased MMD^2 (U-statistic), Gaussian kernel {bw_desc}; "
        "SE from the Hoeffding decomposition (unbiased moments, positive part)",
        level=level,
        extra={"bandwidth": sigma, "var_estimate": var, "var_parts": parts, "squared": True},
    )


def _score_of(target, x: torch.Tensor) -> torch.Tensor:
    dev = getattr(target, "device", x.device)
    dt = getattr(target, "dtype", x.dtype)
    s = target.score(x.to(device=dev, dtype=dt))
    if not isinstance(s, torch.Tensor) or s.shape != x.shape:
        raise ValueError(
            f"ksd: target.score returned shape {tuple(getattr(s, 'shape', ()))}, expected {tuple(x.shape)}"
        )
    s = s.detach().to(device=x.device, dtype=torch.float64)
    bad = int((~torch.isfinite(s).all(dim=1)).sum())
    if bad:
        raise ValueError(f"ksd: target.score is non-finite at {bad} rows of x")
    return s


def ksd(
    x,
    target,
    kernel: str = "imq",
    c: float = 1.0,
    beta: float = -0.5,
    level: float = 0.95,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
) -> MetricResult:
    """Squared kernel Stein discrepancy ``KSD^2`` of the sample ``x`` to ``target`` (U-statistic).

    Uses only the score ``s = target.score = grad log pi`` (no normalising constant). With the
    inverse multiquadric base kernel ``k(x, y) = (c^2 + |x - y|^2)^beta`` (``c > 0``,
    ``-1 < beta < 0``; Gorham & Mackey 2017), the Stein kernel is

        u(x, y) = s(x).s(y) k + s(x).grad_y k + s(y).grad_x k + tr(grad_x grad_y k)
                = s(x).s(y) q^b - 2b q^{b-1} s(x).r + 2b q^{b-1} s(y).r
                  - 4b(b-1) |r|^2 q^{b-2} - 2 b d q^{b-1},

    ``r = x - y``, ``q = c^2 + |r|^2``, ``b = beta``. ``value`` is the U-statistic
    ``KSD^2_u = 1/(n(n-1)) sum_{i != j} u(x_i, x_j)`` -- SQUARED and unbiased: it has mean 0
    for exact samples of ``pi`` and can then be slightly negative. Its ``se`` is the square root
    of the positive-part estimate of the exact U-statistic variance (module docstring;
    conservative for exact samples);
    ``ci = value ± z se`` (normal). Computed in float64 on the device of ``x`` in row chunks
    (about ``5 * chunk * n`` doubles at a time), so ``n = 10^4, d = 100`` needs ~0.3 GB and
    four ``n x n x d`` matrix products. ``target.score`` is called once on ``x`` (moved to the
    target's device/dtype). Needs ``n >= 4``.
    """
    check_level(level)
    if kernel != "imq":
        raise ValueError(f"ksd: unknown kernel {kernel!r}; only 'imq' is implemented")
    if not (c > 0 and math.isfinite(c)):
        raise ValueError(f"ksd: c must be positive, got {c!r}")
    if not (-1.0 < beta < 0.0):
        raise ValueError(f"ksd: beta must lie in (-1, 0), got {beta!r}")
    xt = as_torch_points(x, "x", min_rows=4)
    n, d = xt.shape
    tdim = getattr(target, "dim", d)
    if tdim != d:
        raise ValueError(f"ksd: x has dimension {d} but the target has dimension {tdim}")
    S = _score_of(target, xt)
    xn = (xt * xt).sum(1)
    sx = (S * xt).sum(1)
    c2 = float(c) ** 2
    b = float(beta)

    def kfn(s, e):
        # The Stein kernel above, rearranged to use four [rows, n] buffers:
        #   u = q^b (s_a.s_b) + q^{b-1} [ 2b M - 4b(b-1)(1 - c^2/q) - 2bd ],
        #   M = s_b.(x_a - x_b) - s_a.(x_a - x_b) = x_a.s_b + s_a.x_b - s_b.x_b - s_a.x_a
        Xa, Sa = xt[s:e], S[s:e]
        q = torch.addmm(xn[None, :], Xa, xt.T, alpha=-2.0)
        q.add_(xn[s:e, None]).clamp_(min=0.0).add_(c2)  # q = c^2 + |x_a - x_b|^2
        qb1 = q.pow(b - 1.0)
        u = Sa @ S.T
        u.mul_(q).mul_(qb1)
        M = torch.addmm(torch.mm(Xa, S.T), Sa, xt.T)
        M.sub_(sx[None, :]).sub_(sx[s:e, None]).mul_(2.0 * b)
        M.sub_(4.0 * b * (b - 1.0) + 2.0 * b * d)
        M.add_(q.reciprocal_().mul_(4.0 * b * (b - 1.0) * c2))
        u.addcmul_(M, qb1)
        return u

    mo = _block_moments(kfn, n, n, True, _chunk_rows(n, 5, chunk_bytes), xt.device)
    U, var = _one_sample_var(mo, n)
    se = math.sqrt(max(var, 0.0))
    return normal_result(
        value=float(U),
        se=se,
        n=n,
        method=f"KSD^2 U-statistic, IMQ kernel (c={c:g}, beta={beta:g}); "
        "SE from the Hoeffding decomposition (unbiased moments, positive part)",
        level=level,
        extra={"var_estimate": var, "squared": True},
    )

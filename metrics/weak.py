"""Weak errors ``|E f(X) - E_pi f|`` for test functions with known expectations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy import integrate, stats

from ._validation import as_torch_points, check_level
from .uncertainty import MetricResult

__all__ = ["weak_error", "coupled_weak_error", "abs_interval", "TestFunction", "standard_test_functions"]


def abs_interval(lo: float, hi: float) -> tuple[float, float]:
    """The interval for ``|theta|`` given the interval ``[lo, hi]`` for a signed ``theta``:
    ``(0, max(|lo|, |hi|))`` if it contains 0, else ``(min(|lo|, |hi|), max(|lo|, |hi|))``."""
    if lo <= 0.0 <= hi:
        return 0.0, max(abs(lo), abs(hi))
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def weak_error(x, f: Callable, exact_value: float, level: float = 0.95) -> MetricResult:
    """Weak error ``|mean_i f(x_i) - E_pi f|`` with its standard error and CI.

    ``f`` maps a float64 tensor ``[n, d]`` (on the device of ``x``) to ``[n]`` (or ``[n, 1]``).
    With ``theta_hat = mean f(x_i) - exact_value`` and ``se = sd(f(x_i)) / sqrt(n)``
    (``ddof=1``; chains are independent), the Student-t interval
    ``theta_hat ± t_{n-1} se`` for the signed bias is mapped to ``|theta|``: if it contains 0
    the interval is ``(0, max(|lo|, |hi|))``, otherwise ``(min(|lo|,|hi|), max(|lo|,|hi|))``.
    ``value = |theta_hat|`` is biased upwards by about ``se * sqrt(2/pi)`` when the true bias is
    below ``se`` (the noise floor of a weak error at ``n`` chains); ``extra["signed"]`` holds
    ``theta_hat`` (whose sign is informative). Needs ``n >= 2``.
    """
    check_level(level)
    xt = as_torch_points(x, "x", min_rows=2)
    if exact_value is None or not math.isfinite(float(exact_value)):
        raise ValueError(f"weak_error: exact_value must be a finite number, got {exact_value!r}")
    fx = f(xt)
    if not isinstance(fx, torch.Tensor):
        fx = torch.as_tensor(np.asarray(fx, dtype=np.float64))
    if fx.numel() != xt.shape[0] or fx.ndim > 2:
        raise ValueError(
            f"weak_error: f must return one value per row (shape [{xt.shape[0]}]), "
            f"got shape {tuple(fx.shape)}"
        )
    fx = fx.detach().to(torch.float64).reshape(-1)
    bad = int((~torch.isfinite(fx)).sum())
    if bad:
        raise ValueError(f"weak_error: f(x) is non-finite at {bad} rows")
    n = fx.numel()
    mean = float(fx.mean())
    se = float(fx.std(unbiased=True)) / math.sqrt(n)
    theta = mean - float(exact_value)
    t = float(stats.t.ppf(0.5 + level / 2, df=n - 1))
    lo, hi = theta - t * se, theta + t * se
    return MetricResult(
        abs(theta),
        abs_interval(lo, hi),
        se,
        n,
        "|mean f - E_pi f|; t-interval on the signed bias mapped to its absolute value",
        {"signed": theta, "signed_ci": (lo, hi), "mean": mean, "exact": float(exact_value)},
    )


def coupled_weak_error(x, x_ref, f: Callable, level: float = 0.95, x_ref_coarse=None, control=None) -> MetricResult:
    """Signed ``E f(X) - E f(X_ref)`` from chains coupled row by row (``samplers.coupled``):
    the mean of the per-chain differences ``f(x_i) - f(x_ref_i)``, with ``se = sd / sqrt(n)`` and a
    Student-t interval.  Coupled chains make the differences small, so ``se`` is of the order of
    the strong error over ``sqrt(n)``.  ``extra``: ``se_uncoupled``, the standard error that two
    independent sets of ``n`` chains would have had (``sqrt((Var f(x) + Var f(x_ref)) / n)``), and
    ``variance_reduction = (se_uncoupled / se)^2``.  Needs ``n >= 2`` rows in both, paired.

    With ``x_ref_coarse`` (a reference at twice the reference's step on the same path,
    ``samplers.coupled.coupled_run(..., half_reference=True)``) the reference is extrapolated to
    step 0, ``2 f(x_ref) - f(x_ref_coarse)`` per chain (Richardson, for a reference of weak order
    one such as LMC): the estimate is then ``E f(X) - E_pi f`` up to the reference's second-order
    error, at the price of a larger ``se``.

    With ``control`` (``[n]`` values of a control variate of known mean 0, paired with the rows,
    e.g. PLMC's selection control from ``coupled_run(..., control=f)``) the estimate is the mean of
    ``diff - beta control`` with ``beta`` the least-squares coefficient of ``diff`` on ``control``
    (``se`` from the residuals, ``n - 2`` degrees of freedom; estimating ``beta`` from the same rows
    adds a bias of order ``1/n``, far below ``se``).  ``extra["control_variance_reduction"]`` is
    ``Var(diff) / Var(residual)``."""
    check_level(level)
    xt = as_torch_points(x, "x", min_rows=2)
    xr = as_torch_points(x_ref, "x_ref", min_rows=2)
    if xt.shape != xr.shape:
        raise ValueError(f"coupled_weak_error: x {tuple(xt.shape)} and x_ref {tuple(xr.shape)} must be paired row by row")
    fx = torch.as_tensor(f(xt)).detach().to(torch.float64).reshape(-1)
    fr = torch.as_tensor(f(xr)).detach().to(torch.float64).reshape(-1)
    if x_ref_coarse is not None:
        xc = as_torch_points(x_ref_coarse, "x_ref_coarse", min_rows=2)
        if xc.shape != xr.shape:
            raise ValueError(f"coupled_weak_error: x_ref_coarse {tuple(xc.shape)} must be paired with x_ref {tuple(xr.shape)}")
        fr = 2.0 * fr - torch.as_tensor(f(xc)).detach().to(torch.float64).reshape(-1)
    if fx.numel() != xt.shape[0] or fr.numel() != xr.shape[0]:
        raise ValueError(f"coupled_weak_error: f must return one value per row, got {fx.numel()} for {xt.shape[0]}")
    if not (torch.isfinite(fx).all() and torch.isfinite(fr).all()):
        raise ValueError("coupled_weak_error: f is not finite at some rows (diverged chains?)")
    diff = fx - fr
    n = diff.numel()
    extra: dict = {}
    df = n - 1
    if control is not None:
        c = torch.as_tensor(control).detach().to(torch.float64).reshape(-1)
        if c.numel() != n:
            raise ValueError(f"coupled_weak_error: control has {c.numel()} values for {n} rows")
        if not torch.isfinite(c).all():
            raise ValueError("coupled_weak_error: the control variate is not finite at some rows")
        cc = c - c.mean()
        var_c = float((cc * cc).sum())
        beta = float((cc * (diff - diff.mean())).sum()) / var_c if var_c > 0 else 0.0
        var_raw = float(diff.var(unbiased=True))
        diff = diff - beta * c
        df = n - 2
        var_res = float(((diff - diff.mean()) ** 2).sum()) / df
        extra.update(control_beta=beta, control_variance_reduction=var_raw / var_res if var_res > 0 else math.inf)
    theta = float(diff.mean())
    se = math.sqrt(float(((diff - diff.mean()) ** 2).sum()) / df / n)
    se_unc = math.sqrt((float(fx.var(unbiased=True)) + float(fr.var(unbiased=True))) / n)
    t = float(stats.t.ppf(0.5 + level / 2, df=df))
    extra.update(se_uncoupled=se_unc, variance_reduction=(se_unc / se) ** 2 if se > 0 else math.inf)
    return MetricResult(
        theta, (theta - t * se, theta + t * se), se, n,
        "mean of coupled per-chain differences f(x) - f(x_ref)"
        + ("; reference extrapolated to step 0 (2 f(x_ref) - f(x_ref_coarse))" if x_ref_coarse is not None else "")
        + ("; selection control variate subtracted (regression)" if control is not None else "")
        + "; t-interval",
        extra,
    )


@dataclass(frozen=True)
class TestFunction:
    """A test function ``f: [n, d] -> [n]`` with its exact expectation under the target."""

    f: Callable[[torch.Tensor], torch.Tensor]
    expectation: float
    description: str

    __test__ = False  # not a pytest class

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


def _is_gaussian(target) -> bool:
    try:
        from targets import Gaussian

        if isinstance(target, Gaussian):
            return True
    except Exception:  # pragma: no cover - targets not importable
        pass
    return hasattr(target, "precision") and target.mean is not None and target.cov is not None


def _marginal_expectation(target, g: Callable[[np.ndarray], np.ndarray]) -> float:
    """``∫ g(t) p(t) dt`` for a separable target's marginal (adaptive quadrature, on the
    quantile range ``[F^{-1}(1e-15), F^{-1}(1 - 1e-15)]`` with the interior quartiles as
    break points)."""
    q = np.asarray(
        target.marginal_quantile(np.array([1e-15, 0.25, 0.5, 0.75, 1 - 1e-15])), dtype=np.float64
    )

    def integrand(t):
        return float(g(np.array([t]))[0] * np.asarray(target.marginal_pdf(np.array([t])))[0])

    total = 0.0
    for a, b in zip(q[:-1], q[1:]):
        val, _ = integrate.quad(integrand, a, b, epsabs=1e-13, epsrel=1e-12, limit=200)
        total += val
    return float(total)


def standard_test_functions(target) -> dict[str, TestFunction]:
    """Named test functions with exact expectations under ``target`` (only those known).

    Always (when ``target.mean``/``target.cov`` are known, ``m``, ``S``):

    * ``"x1"``: ``x_1`` -> ``m_1``;  ``"mean_coord"``: ``(1/d) sum_j x_j`` -> ``mean(m)``;
    * ``"x1^2"``: ``x_1^2`` -> ``S_11 + m_1^2``;  ``"norm2"``: ``|x|^2`` -> ``tr S + |m|^2``;
    * ``"x1*x2"`` (``d >= 2``): ``x_1 x_2`` -> ``S_12 + m_1 m_2``.

    Gaussian targets (``targets.Gaussian``) additionally: ``"cos(x1)"`` ->
    ``cos(m_1) exp(-S_11/2)``; ``"x1^4"`` -> ``m^4 + 6 m^2 s + 3 s^2`` (``m = m_1, s = S_11``).

    Separable targets (``marginal_*``): the moment functions above from ``marginal_moment``
    (``"x1"``, ``"x1^2"``, ``"x1^4"``, ``"norm2"`` = ``d E t^2``, ``"x1*x2"`` = ``(E t)^2``,
    ``"mean_coord"``), and by quadrature of the exact marginal pdf (scipy ``quad``,
    ~1e-12): ``"cos(x1)"``, ``"abs(x1)"``, ``"mean_cos"`` (``(1/d) sum_j cos x_j``, the same
    expectation as ``cos(x1)`` with ``d`` times less variance).
    """
    d = int(target.dim)
    out: dict[str, TestFunction] = {}
    separable = all(hasattr(target, a) for a in ("marginal_pdf", "marginal_moment", "marginal_quantile"))
    if separable:
        try:
            m1 = float(target.marginal_moment(1))
            m2 = float(target.marginal_moment(2))
            m4 = float(target.marginal_moment(4))
        except NotImplementedError:
            separable = False
    if separable:
        out["x1"] = TestFunction(lambda x: x[:, 0], m1, "first coordinate")
        out["mean_coord"] = TestFunction(lambda x: x.mean(dim=1), m1, "average coordinate")
        out["x1^2"] = TestFunction(lambda x: x[:, 0] ** 2, m2, "second moment of x_1")
        out["x1^4"] = TestFunction(lambda x: x[:, 0] ** 4, m4, "fourth moment of x_1")
        out["norm2"] = TestFunction(lambda x: (x * x).sum(dim=1), d * m2, "|x|^2")
        if d >= 2:
            out["x1*x2"] = TestFunction(lambda x: x[:, 0] * x[:, 1], m1 * m1, "x_1 x_2")
        ecos = _marginal_expectation(target, np.cos)
        out["cos(x1)"] = TestFunction(lambda x: torch.cos(x[:, 0]), ecos, "cos(x_1), quadrature")
        out["mean_cos"] = TestFunction(
            lambda x: torch.cos(x).mean(dim=1), ecos, "(1/d) sum_j cos(x_j), quadrature"
        )
        out["abs(x1)"] = TestFunction(
            lambda x: x[:, 0].abs(), _marginal_expectation(target, np.abs), "|x_1|, quadrature"
        )
        return out
    mean, cov = target.mean, target.cov
    if mean is None or cov is None:
        return out
    m = mean.detach().cpu().double().numpy()
    S = cov.detach().cpu().double().numpy()
    out["x1"] = TestFunction(lambda x: x[:, 0], float(m[0]), "first coordinate")
    out["mean_coord"] = TestFunction(lambda x: x.mean(dim=1), float(m.mean()), "average coordinate")
    out["x1^2"] = TestFunction(lambda x: x[:, 0] ** 2, float(S[0, 0] + m[0] ** 2), "x_1^2")
    out["norm2"] = TestFunction(
        lambda x: (x * x).sum(dim=1), float(np.trace(S) + m @ m), "|x|^2"
    )
    if d >= 2:
        out["x1*x2"] = TestFunction(
            lambda x: x[:, 0] * x[:, 1], float(S[0, 1] + m[0] * m[1]), "x_1 x_2"
        )
    if _is_gaussian(target):
        mu, s = float(m[0]), float(S[0, 0])
        out["cos(x1)"] = TestFunction(
            lambda x: torch.cos(x[:, 0]), math.cos(mu) * math.exp(-s / 2), "cos(x_1), closed form"
        )
        out["x1^4"] = TestFunction(
            lambda x: x[:, 0] ** 4, mu**4 + 6 * mu**2 * s + 3 * s**2, "x_1^4, closed form"
        )
    return out

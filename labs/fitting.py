"""Fitting convergence rates: slopes of log(error) against log(gradient evaluations).

The model is ``log e = a + s log N`` fitted by least squares on the points that carry
information about the rate:

* points whose error is distinguishable from the metric's **noise floor** (the value the metric
  takes between two independent exact samples of the target of the same size): a point is kept
  when its lower confidence bound exceeds the floor's upper bound;
* points **before saturation**: walking towards larger budgets, the first time the error stops
  decreasing by a meaningful amount (local slope flatter than ``plateau_fraction`` of the
  overall slope), that point and all later ones are dropped — this removes plateaus from the
  initial-error decay or from float rounding that a floor test alone would keep.

Points measured with a standard error (``sd(log e) ≈ se / e``) are fitted by weighted least
squares with weights ``1 / (sd^2 + tau^2)``, where ``tau^2`` is the scatter about the line that
the points' own errors do not explain (curvature, spread between seeds), estimated from the
unweighted fit's residuals: a point measured to 1% counts more than one measured to 15%, and
no point counts more than the model's own misfit allows.  The 95% interval is a parametric
bootstrap that redraws each point within ``sqrt(sd^2 + tau^2)``.  For exact points (Gaussian
exact-law metrics) the fit is unweighted and the interval comes from resampling the residuals,
so it reflects curvature of the log-log curve, not noise.

**Floor bias.**  A distance estimated from ``n`` samples (a sample W2, a sliced W2) is biased
upward: its square is about ``e^2 + f^2``, the true squared error plus the squared noise floor
``f`` (the estimator's value on exact samples).  Near the floor that bias flattens a fitted slope.
:func:`debias_floor` removes it, ``sqrt(max(v^2 - f^2, 0))``, with the floor's own uncertainty
carried into the interval, before points are selected and fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["SlopeFit", "select_points", "fit_slope", "slope_ratio", "debias_floor"]


@dataclass
class SlopeFit:
    slope: Optional[float]
    slope_ci: tuple
    intercept: Optional[float]
    n_points: int
    used: np.ndarray  # bool mask over the points given
    boot: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    reason: str = ""  # why no fit, when slope is None

    def as_dict(self) -> dict:
        return {"slope": self.slope, "slope_ci": list(self.slope_ci), "intercept": self.intercept,
                "n_points": self.n_points, "note": self.reason}


def select_points(budget, value, ci_low=None, floor_high=None, plateau_fraction: float = 0.25):
    """Mask of points to fit: finite, positive, above the noise floor, before saturation.

    ``budget``/``value`` may hold several seeds per budget; saturation is judged on the mean
    log-error per budget.
    """
    budget = np.asarray(budget, dtype=float)
    value = np.asarray(value, dtype=float)
    ok = np.isfinite(value) & (value > 0) & np.isfinite(budget) & (budget > 0)
    if ci_low is not None and floor_high is not None:
        low = np.asarray(ci_low, dtype=float)
        fl = np.asarray(floor_high, dtype=float)
        ok &= ~(np.isfinite(fl) & (np.nan_to_num(low, nan=-np.inf) <= fl))
    levels = np.unique(budget[ok])
    if levels.size >= 3:
        mean_log = np.array([np.log(value[ok & (budget == b)]).mean() for b in levels])
        overall = np.polyfit(np.log(levels), mean_log, 1)[0]
        local = np.diff(mean_log) / np.diff(np.log(levels))
        if overall < 0:
            flat = np.nonzero(local > plateau_fraction * overall)[0]
            if flat.size:
                cut = levels[flat[0] + 1]
                ok &= budget < cut
    return ok


def fit_slope(budget, value, se=None, *, mask=None, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95, min_points: int = 3, reason_if_empty: str = "") -> SlopeFit:
    """Least-squares slope of ``log value`` on ``log budget`` (weighted when ``se`` is given) with a
    bootstrap interval (module docstring)."""
    budget = np.asarray(budget, dtype=float)
    value = np.asarray(value, dtype=float)
    mask = np.ones(budget.shape, bool) if mask is None else np.asarray(mask, bool)
    n = int(mask.sum())
    if n < min_points or np.unique(budget[mask]).size < 2:
        return SlopeFit(None, (None, None), None, n, mask,
                        reason=(reason_if_empty if n == 0 and reason_if_empty else
                                f"{n} resolved point(s) (above the noise floor, or with an interval above 0); "
                                f"need {min_points} at 2+ budgets"))
    x = np.log(budget[mask])
    y = np.log(value[mask])
    sd = np.zeros(n) if se is None else np.nan_to_num(np.asarray(se, float)[mask] / value[mask], posinf=0.0)
    X = np.stack([np.ones(n), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rng = np.random.default_rng(seed)
    if sd.max() > 0:
        # weighted least squares, weights 1 / (sd^2 + tau^2): tau^2, the scatter about the line that
        # the points' own errors do not explain (curvature, seed-to-seed spread), from the
        # unweighted fit's residuals; the bootstrap redraws each point within sqrt(sd^2 + tau^2)
        rss = float(np.sum((y - X @ coef) ** 2))
        tau2 = max(rss / max(n - 2, 1) - float(np.mean(sd**2)), 0.0)
        scale = np.sqrt(sd**2 + tau2)
        scale = np.where(scale > 0, scale, max(float(scale.max()), 1e-12))
        Xw = X / scale[:, None]
        coef, *_ = np.linalg.lstsq(Xw, y / scale, rcond=None)
        fitted = X @ coef
        pinv_w = np.linalg.pinv(Xw) / scale[None, :]
        y_star = fitted[None, :] + scale[None, :] * rng.standard_normal((n_boot, n))
        boot = (y_star @ pinv_w.T)[:, 1]
    else:
        # exact points: only the residuals (curvature of the log-log curve) make the interval
        fitted = X @ coef
        resid = (y - fitted) * np.sqrt(n / max(n - 2, 1))
        idx = rng.integers(0, n, size=(n_boot, n))
        y_star = fitted[None, :] + resid[idx]
        boot = (y_star @ np.linalg.pinv(X).T)[:, 1]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return SlopeFit(float(coef[1]), (float(lo), float(hi)), float(coef[0]), n, mask, boot)


def slope_ratio(num: SlopeFit, den: SlopeFit, level: float = 0.95):
    """Ratio of two fitted slopes with a percentile interval from their (independent) bootstraps.

    Returns ``(ratio, (lo, hi))`` or ``(None, (None, None))`` when either fit is missing.
    """
    if num.slope is None or den.slope is None or num.boot.size == 0 or den.boot.size == 0:
        return None, (None, None)
    m = min(num.boot.size, den.boot.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num.boot[:m] / den.boot[:m]
    r = r[np.isfinite(r)]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(r, [alpha, 1.0 - alpha])
    return float(num.slope / den.slope), (float(lo), float(hi))



def debias_floor(value, ci_low, ci_high, se, floor_sq: float, floor_sq_se: float = 0.0, z: float = 1.96):
    """Remove a noise floor's bias from a distance whose square carries it additively.

    ``floor_sq`` estimates ``E f^2``, the mean squared value of the estimator on exact samples of
    the same size (``floor_sq_se`` its standard error).  Returns ``(value, ci_low, ci_high, se)``:
    ``sqrt(max(v^2 - f^2, 0))``; the interval ``[sqrt(max(lo^2 - f^2_hi, 0)), sqrt(max(hi^2 - f^2_lo, 0))]``
    with ``f^2_{lo, hi} = floor_sq -/+ z floor_sq_se`` (so it covers the floor's uncertainty too);
    and the delta-method ``se`` of the debiased value, ``sqrt((v se)^2 + (floor_sq_se / 2)^2) / value``
    (infinite where the debiased value is 0).  A point whose debiased lower bound is 0 is not
    resolved: :func:`select_points` drops it (its ``ci_low`` is not above 0).
    """
    v = np.asarray(value, dtype=float)
    lo = np.asarray(ci_low, dtype=float)
    hi = np.asarray(ci_high, dtype=float)
    se = np.asarray(se, dtype=float)
    f2 = float(floor_sq)
    f2_hi, f2_lo = f2 + z * floor_sq_se, max(f2 - z * floor_sq_se, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vd = np.sqrt(np.maximum(v * v - f2, 0.0))
        lod = np.sqrt(np.maximum(np.sign(lo) * lo * lo - f2_hi, 0.0))
        hid = np.sqrt(np.maximum(hi * hi - f2_lo, 0.0))
        sed = np.where(vd > 0, np.sqrt((v * np.nan_to_num(se)) ** 2 + (floor_sq_se / 2.0) ** 2) / vd, np.inf)
    return vd, lod, hid, sed

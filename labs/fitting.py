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

The 95% interval comes from a bootstrap that combines both sources of uncertainty: residual
resampling around the fitted line (lack of fit, scatter between seeds) and, for points measured
with a standard error, a parametric redraw of each point within it (``sd(log e) ≈ se / e``).
For exact points (Gaussian exact-law metrics) only the residuals contribute, so the interval
then reflects curvature of the log-log curve, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["SlopeFit", "select_points", "fit_slope", "slope_ratio"]


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
              level: float = 0.95, min_points: int = 3) -> SlopeFit:
    """Least-squares slope of ``log value`` on ``log budget`` with a bootstrap interval."""
    budget = np.asarray(budget, dtype=float)
    value = np.asarray(value, dtype=float)
    mask = np.ones(budget.shape, bool) if mask is None else np.asarray(mask, bool)
    n = int(mask.sum())
    if n < min_points or np.unique(budget[mask]).size < 2:
        return SlopeFit(None, (None, None), None, n, mask,
                        reason=f"{n} usable point(s) above the noise floor; need {min_points} at 2+ budgets")
    x = np.log(budget[mask])
    y = np.log(value[mask])
    sd = np.zeros(n) if se is None else np.nan_to_num(np.asarray(se, float)[mask] / value[mask])
    X = np.stack([np.ones(n), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    fitted = X @ coef
    resid = (y - fitted) * np.sqrt(n / max(n - 2, 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    y_star = fitted[None, :] + resid[idx] + sd[None, :] * rng.standard_normal((n_boot, n))
    pinv = np.linalg.pinv(X)
    boot = (y_star @ pinv.T)[:, 1]
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


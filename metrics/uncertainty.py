"""Uncertainty for every number the lab reports.

* :class:`MetricResult` -- the value of a metric together with a confidence interval, a
  standard error, the sample size and a string naming how the uncertainty was obtained.
* :func:`bootstrap_ci` -- nonparametric bootstrap (percentile or BCa) of any statistic of one
  or two samples.
* :func:`mean_ci` -- Student-t interval for the mean of replicates (seeds, independent runs).
* :func:`noise_floor` -- the value a metric takes between two independent *exact* samples of
  the target (or between an exact sample and the target), i.e. the smallest value it can
  resolve at sample size ``n``; rate fits leave out points at or below this floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from scipy import stats

from ._validation import check_level, check_positive_int, to_numpy

__all__ = ["MetricResult", "bootstrap_ci", "mean_ci", "noise_floor"]


@dataclass(frozen=True)
class MetricResult:
    """A metric's value with its uncertainty.

    Attributes
    ----------
    value : float
        The estimate (its convention -- squared or not, biased or unbiased -- is stated by the
        function that produced it).
    ci : (float, float)
        Confidence interval for ``value`` at the level the function was called with (0.95 by
        default). Which quantity it covers (e.g. the expectation of the estimator at this
        sample size rather than the population distance) is stated by the producing function.
    se : float or None
        Standard error of ``value`` (``None`` where none is defined).
    n : int
        Sample size the value was computed from (number of points / replicates).
    method : str
        How ``value`` and ``ci`` were obtained, e.g. ``"emd2 exact; batch-means CI (10 batches)"``.
    extra : mapping, optional
        Further named outputs (per-coordinate values, the squared value, ...); not part of
        equality comparisons.
    """

    value: float
    ci: tuple[float, float]
    se: Optional[float]
    n: int
    method: str
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __float__(self) -> float:
        return float(self.value)

    @property
    def ci_width(self) -> float:
        return float(self.ci[1] - self.ci[0])


def normal_z(level: float) -> float:
    """The two-sided normal quantile ``z`` of a ``level`` interval (1.96 for 0.95)."""
    return float(stats.norm.ppf(0.5 + level / 2.0))


def normal_result(value: float, se: float, n: int, method: str, level: float = 0.95, extra=None) -> MetricResult:
    """``MetricResult`` with the symmetric normal interval ``value ± z se``."""
    z = normal_z(level)
    return MetricResult(float(value), (value - z * se, value + z * se), se, n, method, extra if extra is not None else {})


def mean_ci(values, level: float = 0.95) -> MetricResult:
    """Mean of replicates with a Student-t confidence interval.

    ``values`` are independent replicates (one per seed / independent run), given as a
    sequence, numpy array or tensor of shape ``[r]``.  Returns ``MetricResult`` with
    ``value`` = sample mean, ``se = s / sqrt(r)`` where ``s`` is the sample standard deviation
    (``ddof=1``), and ``ci = mean ± t_{r-1, (1+level)/2} * se``.  Needs ``r >= 2`` finite values.
    """
    check_level(level)
    v = to_numpy(values).reshape(-1) if not isinstance(values, (list, tuple)) else np.asarray(
        [float(u) for u in values], dtype=np.float64
    )
    if v.size == 0:
        raise ValueError("mean_ci: values is empty")
    bad = int((~np.isfinite(v)).sum())
    if bad:
        raise ValueError(f"mean_ci: values contains {bad} non-finite entries")
    if v.size < 2:
        raise ValueError("mean_ci: need at least 2 replicates for a t-interval, got 1")
    r = v.size
    m = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(r))
    t = float(stats.t.ppf(0.5 + level / 2.0, df=r - 1))
    return MetricResult(
        value=m,
        ci=(m - t * se, m + t * se),
        se=se,
        n=r,
        method=f"mean of {r} replicates, t-interval (df={r - 1})",
        extra={"values": v.copy()},
    )


def _index(a, idx: np.ndarray):
    if isinstance(a, torch.Tensor):
        return a[torch.from_numpy(idx).to(a.device)]
    return a[idx]


def _as_float(v) -> float:
    if isinstance(v, MetricResult):
        return float(v.value)
    if isinstance(v, torch.Tensor):
        return float(v.detach().cpu().item())
    return float(v)


def bootstrap_ci(
    statistic_fn: Callable,
    x,
    y=None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    method: str = "percentile",
) -> MetricResult:
    """Nonparametric bootstrap confidence interval of a statistic of one or two samples.

    ``statistic_fn(x)`` (or ``statistic_fn(x, y)``) returns a float, a 0-d tensor or a
    :class:`MetricResult`. Rows of ``x`` (and, independently, of ``y``) are resampled with
    replacement ``n_boot`` times with a ``numpy.random.default_rng(seed)`` stream; resamples are
    passed as the same kind (tensor / array) as the inputs.

    ``method="percentile"`` (default): ``ci`` = the ``(1-level)/2`` and ``(1+level)/2``
    empirical quantiles of the bootstrap values. ``method="bca"``: Efron's bias-corrected and
    accelerated interval; the bias correction ``z0 = Phi^{-1}(#{theta* < theta_hat} + #{=}/2) /
    n_boot)``, the acceleration from the delete-one jackknife (for two samples the two-sample
    formula of Efron & Tibshirani 1993, eq. 14.15, deleting from ``x`` then from ``y``); this
    costs ``n + m`` extra evaluations.

    ``value`` is the statistic on the original data, ``se`` the standard deviation of the
    bootstrap values. The bootstrap does *not* remove the estimator's bias: for a biased
    statistic (empirical W2, histogram TV, ...) the interval is about the estimator at this
    sample size. Validation of ``x``/``y`` (finite, non-empty) is left to ``statistic_fn``
    except for shape.
    """
    check_level(level)
    n_boot = check_positive_int(n_boot, "n_boot", 2)
    if method not in ("percentile", "bca"):
        raise ValueError(f"bootstrap_ci: method must be 'percentile' or 'bca', got {method!r}")
    for name, a in (("x", x), ("y", y)):
        if a is None:
            continue
        if not isinstance(a, (torch.Tensor, np.ndarray)) or a.ndim < 1:
            raise ValueError(f"bootstrap_ci: {name} must be an array/tensor with rows")
        if a.shape[0] == 0:
            raise ValueError(f"bootstrap_ci: {name} is empty (0 rows)")
    two = y is not None
    n = x.shape[0]
    m = y.shape[0] if two else 0

    def stat(xx, yy):
        return _as_float(statistic_fn(xx, yy) if two else statistic_fn(xx))

    theta = stat(x, y)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        xb = _index(x, rng.integers(0, n, size=n))
        yb = _index(y, rng.integers(0, m, size=m)) if two else None
        boots[b] = stat(xb, yb)
    if not np.all(np.isfinite(boots)):
        raise ValueError("bootstrap_ci: statistic_fn returned non-finite values on resamples")
    alpha = 1.0 - level
    if method == "percentile":
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
        desc = f"bootstrap percentile ({n_boot} resamples, seed {seed})"
    else:
        prop = (np.sum(boots < theta) + 0.5 * np.sum(boots == theta)) / n_boot
        prop = min(max(prop, 0.5 / n_boot), 1 - 0.5 / n_boot)
        z0 = stats.norm.ppf(prop)
        # jackknife acceleration
        def jack(a, other, first):
            k = a.shape[0]
            vals = np.empty(k)
            for i in range(k):
                keep = np.delete(np.arange(k), i)
                ai = _index(a, keep)
                vals[i] = stat(ai, other) if first else stat(other, ai)
            return vals

        if two:
            jx = jack(x, y, True)
            jy = jack(y, x, False)
            ux = jx.mean() - jx
            uy = jy.mean() - jy
            num = np.sum(ux**3) / n**3 + np.sum(uy**3) / m**3
            den = 6.0 * (np.sum(ux**2) / n**2 + np.sum(uy**2) / m**2) ** 1.5
        else:
            jx = np.empty(n)
            for i in range(n):
                jx[i] = stat(_index(x, np.delete(np.arange(n), i)), None)
            ux = jx.mean() - jx
            num = np.sum(ux**3)
            den = 6.0 * np.sum(ux**2) ** 1.5
        acc = num / den if den > 0 else 0.0
        zs = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
        adj = stats.norm.cdf(z0 + (z0 + zs) / (1 - acc * (z0 + zs)))
        lo, hi = np.quantile(boots, adj)
        desc = f"bootstrap BCa ({n_boot} resamples, seed {seed}; z0={z0:.3g}, a={acc:.3g})"
    return MetricResult(
        value=theta,
        ci=(float(lo), float(hi)),
        se=float(boots.std(ddof=1)),
        n=n + m,
        method=desc,
        extra={"boot_values": boots},
    )


def noise_floor(
    metric_fn: Callable,
    target,
    n: int,
    n_rep: int = 10,
    seed: int = 0,
    against: str = "sample",
    level: float = 0.95,
    **kw,
) -> MetricResult:
    """The value of a metric between exact samples of the target: its floor at sample size ``n``.

    For each repetition ``r = 0..n_rep-1`` a ``torch.Generator`` on the target's device is
    seeded with ``seed * 1_000_003 + r`` and

    * ``against="sample"`` (default, two-sample metrics such as ``w2_empirical``, ``mmd``,
      ``sliced_w2``, ``kl_knn``): ``x = target.sample(n)``, ``y = target.sample(n)`` (independent)
      and the value is ``metric_fn(x, y, **kw)``;
    * ``against="target"`` (metrics of a sample against the target: ``ksd``, ``marginal_w2``,
      ``marginal_tv``): the value is ``metric_fn(target.sample(n), target, **kw)``.

    A ``MetricResult`` returned by ``metric_fn`` contributes its ``value``. The result is
    :func:`mean_ci` over the repetitions (t-interval, ``n`` field = ``n_rep``); ``extra`` holds
    the per-repetition values and ``sample_size = n``. Any measured error whose CI overlaps this
    floor's CI is indistinguishable from exact sampling at that ``n`` and should be left out of
    rate fits. ``n_rep >= 2``.
    """
    n = check_positive_int(n, "n", 1)
    n_rep = check_positive_int(n_rep, "n_rep", 2)
    if against not in ("sample", "target"):
        raise ValueError(f"noise_floor: against must be 'sample' or 'target', got {against!r}")
    device = getattr(target, "device", torch.device("cpu"))
    values = []
    for r in range(n_rep):
        g = torch.Generator(device=device)
        g.manual_seed(int(seed) * 1_000_003 + r)
        x = target.sample(n, g)
        if against == "sample":
            y = target.sample(n, g)
            v = metric_fn(x, y, **kw)
        else:
            v = metric_fn(x, target, **kw)
        values.append(_as_float(v))
    res = mean_ci(values, level=level)
    name = getattr(metric_fn, "__name__", "metric")
    return MetricResult(
        value=res.value,
        ci=res.ci,
        se=res.se,
        n=n_rep,
        method=f"noise floor of {name} at n={n} ({against}): " + res.method,
        extra={"values": res.extra["values"], "sample_size": n},
    )

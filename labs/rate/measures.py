"""The lab's metrics: which distance each target is measured in, and how.

Two kinds:

* **exact-law metrics** on Gaussian targets (``w2``, ``kl``, ``cov_error``): computed from the
  exact mean and covariance of the chain's law (:mod:`metrics.exact_laws`), no Monte Carlo.
  ``w2`` is the exact W2 for LMC and the Gelbrich **lower bound** (W2 between the Gaussians
  with the same first two moments) for PLMC and RLMC, whose laws are not Gaussian; the
  ``kind`` column says which.  ``kl`` exists only for LMC.
* **sample-based metrics** (``marginal_w2``, ``sliced_w2``, ``mmd``, ``ksd``, ``weak_m2``,
  ``sliced_w2_exact``, ``fourier_weak``): estimated from the chains, each with a 95% interval and
  a noise floor.  ``sliced_w2_exact`` (mixtures) and ``fourier_weak`` (mixtures, separable
  targets) compare the chains with the exact law rather than with a second sample
  (:mod:`metrics.exact_reference`); ``fourier_weak`` debiases its squares, so its values are not
  pushed up by a floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

import metrics as M

__all__ = ["EXACT_METRICS", "COUPLED_METRICS", "coupled_refine", "coupled_test_function", "measure_coupled",
           "SAMPLE_METRICS", "METRIC_NAMES", "FLOOR_REPS", "floor_bias", "LAB_METRICS", "LabMetric", "register_metric",
           "metric_names", "default_metric", "check_metric", "measure_samples", "noise_floor_samples"]

EXACT_METRICS = ("w2", "kl", "cov_error")
#: Measured from chains coupled with a fine LMC reference on one Brownian path (samplers.coupled):
#: ``coupled_weak``, the weak error of :func:`coupled_test_function`, the reference extrapolated to
#: step 0.  No noise floor: its interval reaches 0 where the error is not resolved.
COUPLED_METRICS = ("coupled_weak",)


def coupled_refine(sampler: str, K) -> int:
    """``R``, the fine increments per step of ``eta / K``: the reference's step is ``eta / (K R)``,
    a second one at twice that step, and the pair is extrapolated to step 0 (residual bias
    ``O((eta / (K R))^2)``).  PLMC (``K ~ 1/eta``): ``O(eta^4)`` against its own ``O(eta^2)``, so the
    fewest increments that pair up, ``R = 1`` for even ``K`` and 2 for odd; LMC (error ``O(eta)``):
    ``R = 2``; RLMC, whose error can fall like ``eta^2``: ``R = 8`` (residual ``eta^2 / 64``)."""
    if sampler == "plmc":
        return 1 if int(K) % 2 == 0 else 2
    return 8 if sampler == "rlmc" else 2

_N_PROJECTIONS = 200
_MMD_MAX_POINTS = 4000


@dataclass(frozen=True)
class LabMetric:
    """A sample-based metric the labs can measure chains in (``--metric NAME``).

    measure:  ``measure(x [n, d], target, seed) -> metrics.MetricResult`` (value, 95% interval,
              standard error); ``seed`` seeds whatever it draws itself (reference samples,
              projections).
    needs:    ``needs(target) -> None`` if it can be measured on ``target``, else the reason (a
              phrase completing "metric NAME needs ...").
    floor_bias: ``"squares"`` for a distance estimated from ``n`` samples whose square is about
              the true square plus the squared noise floor (sample W2, sliced W2, ``|mean|``
              errors): the rate fits remove that bias (:func:`labs.fitting.debias_floor`).
              ``"none"`` for unbiased estimators (U-statistics, debiased weak errors).
    """

    name: str
    measure: Callable
    needs: Callable = lambda target: None
    floor_bias: str = "none"  # "squares": its square carries the noise floor's (labs.fitting.debias_floor)


#: The sample-based metrics by name; more join with :func:`register_metric`.
LAB_METRICS: dict[str, LabMetric] = {}


def register_metric(metric: LabMetric, *, replace: bool = False) -> LabMetric:
    """Add ``metric`` to :data:`LAB_METRICS` (a taken name is an error unless ``replace=True``)."""
    if not isinstance(metric, LabMetric):
        raise ValueError(f"register_metric takes a LabMetric, got {type(metric).__name__}")
    if metric.name in EXACT_METRICS or (metric.name in LAB_METRICS and not replace):
        raise ValueError(f"metric {metric.name!r} is already registered (pass replace=True to replace it)")
    LAB_METRICS[metric.name] = metric
    return metric


def metric_names() -> tuple[str, ...]:
    return EXACT_METRICS + COUPLED_METRICS + tuple(LAB_METRICS)


def default_metric(target) -> str:
    from targets import Gaussian, GaussianMixture, SeparableTarget

    if isinstance(target, Gaussian):
        return "w2"
    if isinstance(target, GaussianMixture):
        # sample distances to a mixture sit at their noise floor at every budget: coupled chains
        # resolve the weak error instead
        return "coupled_weak"
    if isinstance(target, SeparableTarget):
        return "marginal_w2"
    if target.has_sampler:
        return "sliced_w2"
    return "ksd"


def check_metric(metric: str, target) -> None:
    """Raise ValueError if ``metric`` cannot be measured on ``target``."""
    from targets import Gaussian

    if metric not in metric_names():
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(metric_names())}")
    name = type(target).__name__
    if metric in EXACT_METRICS:
        if not isinstance(target, Gaussian):
            raise ValueError(f"metric {metric!r} needs exact laws, which exist only for Gaussian targets, not {name}")
        return
    if metric in COUPLED_METRICS:
        return  # any target: the reference is a finer chain, not the target's law
    why = LAB_METRICS[metric].needs(target)
    if why:
        raise ValueError(f"metric {metric!r} needs {why}; {name} does not qualify")


def _reference(target, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=target.device).manual_seed(seed)
    return target.sample(n, gen)


def _m2(target) -> float:
    m, S = target.mean, target.cov
    return float((torch.trace(S) + m @ m) / target.dim)


def _separable(target):
    from targets import SeparableTarget

    return None if isinstance(target, SeparableTarget) else "a separable target"


def _exact_samples(target):
    return None if target.has_sampler else "exact target samples"


def _mixture(target):
    from targets import GaussianMixture

    return None if isinstance(target, GaussianMixture) else "a Gaussian mixture (its exact projected laws)"


def _fourier_exact(target):
    from targets import GaussianMixture, QuadratureSeparableTarget

    ok = isinstance(target, (GaussianMixture, QuadratureSeparableTarget))
    return None if ok else "exact Fourier expectations (a Gaussian mixture or a separable target)"


def _first(n: int, x: torch.Tensor) -> torch.Tensor:
    return x[: min(x.shape[0], n)]


for _m in (
    # coordinates are i.i.d. under a separable target: their values pool into one marginal
    LabMetric("marginal_w2", lambda x, t, seed: M.marginal_w2(x, t, pool=True), _separable, "squares"),
    LabMetric("sliced_w2", lambda x, t, seed: M.sliced_w2(x, _reference(t, x.shape[0], seed),
                                                           n_projections=_N_PROJECTIONS, seed=seed),
              _exact_samples, "squares"),
    LabMetric("mmd", lambda x, t, seed: M.mmd(_first(_MMD_MAX_POINTS, x),
                                              _reference(t, _first(_MMD_MAX_POINTS, x).shape[0], seed)),
              _exact_samples),
    LabMetric("ksd", lambda x, t, seed: M.ksd(_first(_MMD_MAX_POINTS, x), t)),
    LabMetric("weak_m2", lambda x, t, seed: M.weak_error(x, lambda z: (z**2).sum(-1) / z.shape[-1], _m2(t)),
              lambda t: None if t.mean is not None else "the exact second moment", "squares"),
    # against the exact law, not a second sample (metrics.exact_reference)
    LabMetric("sliced_w2_exact", lambda x, t, seed: M.sliced_w2_to_mixture(x, t, n_projections=_N_PROJECTIONS, seed=seed),
              _mixture, "squares"),
    LabMetric("fourier_weak", lambda x, t, seed: M.fourier_weak_error(x, t, seed=seed), _fourier_exact),
):
    register_metric(_m)

SAMPLE_METRICS = tuple(LAB_METRICS)


def coupled_test_function(dim: int):
    """``f(x) = mean_j x_j^2 + sum_{f=1}^{8} cos(w_f . x + c_f)``: a second moment and a bank of
    Fourier features (``w_f ~ N(0, I/d)``, ``c_f ~ U[0, 2 pi)`` from a fixed seed), one number per
    chain, so that both the spread and the shape of the law count."""
    rng = np.random.default_rng(20240)
    W = torch.from_numpy(rng.standard_normal((8, dim)) / math.sqrt(dim))
    c = torch.from_numpy(rng.uniform(0.0, 2.0 * math.pi, 8))

    def f(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        return (x * x).mean(-1) + torch.cos(x @ W.to(x.device).T + c.to(x.device)).sum(-1)

    return f


def measure_coupled(x, x_ref, x_ref_half, dim: int, control=None) -> dict:
    """``|E f(X) - E f(X_ref -> 0)|`` with its 95% interval (the signed t-interval mapped to the
    absolute value, as :func:`metrics.weak_error` does) and standard error; ``control``: PLMC's
    selection control variate (``samplers.coupled``), subtracted by regression."""
    from metrics.weak import abs_interval, coupled_weak_error

    m = coupled_weak_error(x, x_ref, coupled_test_function(dim), x_ref_coarse=x_ref_half, control=control)
    ci = abs_interval(*m.ci)
    se = float(m.se) if m.se is not None else math.nan
    return {"value": abs(float(m.value)), "ci_low": float(ci[0]), "ci_high": float(ci[1]), "se": se}
METRIC_NAMES = EXACT_METRICS + COUPLED_METRICS + SAMPLE_METRICS


def measure_samples(metric: str, x: torch.Tensor, target, seed: int) -> dict:
    """Value, 95% interval and standard error of ``metric`` on chains ``x``.

    ``seed`` seeds what the metric draws itself (reference samples, projections).
    """
    if metric not in LAB_METRICS:
        raise ValueError(f"metric {metric!r} is not sample-based")
    r = LAB_METRICS[metric].measure(x, target, seed)
    return {"value": float(r.value), "ci_low": float(r.ci[0]), "ci_high": float(r.ci[1]),
            "se": float(r.se) if r.se is not None else math.nan}


def floor_bias(metric: str) -> str:
    """How ``metric``'s estimates carry the noise floor (:attr:`LabMetric.floor_bias`)."""
    return LAB_METRICS[metric].floor_bias if metric in LAB_METRICS else "none"


#: Repetitions behind each noise-floor row (its value is their mean, its se their sd / sqrt(reps)).
FLOOR_REPS = 5


def noise_floor_samples(metric: str, target, n: int, seed: int, reps: int = FLOOR_REPS) -> dict:
    """The metric between exact samples of the target of size ``n``: mean and upper bound.

    For metrics against a reference sample (sliced W2, MMD) both samples are exact and
    independent; for metrics against the exact law (marginal W2, KSD, weak error) the chains are
    replaced by an exact sample.  ``ci_high`` is the upper 95% *prediction* bound for one more
    such value, ``mean + t_{0.975, reps-1} sd sqrt(1 + 1/reps)`` over ``reps`` repetitions: a
    point counts as above the floor when its own lower bound exceeds it.  (The metrics' own
    intervals are not used here: at the floor a delta-method interval is degenerate.)
    """
    from scipy import stats

    vals = []
    for r in range(reps):
        exact = _reference(target, n, seed + 7919 * (r + 1))
        vals.append(measure_samples(metric, exact, target, seed + 104729 * (r + 1))["value"])
    v = np.asarray(vals)
    sd = v.std(ddof=1)
    high = v.mean() + stats.t.ppf(0.975, reps - 1) * sd * math.sqrt(1.0 + 1.0 / reps)
    return {"value": float(v.mean()), "ci_low": float(v.min()), "ci_high": float(high),
            "se": float(sd / math.sqrt(reps))}

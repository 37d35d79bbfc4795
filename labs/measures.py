"""The lab's metrics: which distance each target is measured in, and how.

Two kinds:

* **exact-law metrics** on Gaussian targets (``w2``, ``kl``, ``cov_error``): computed from the
  exact mean and covariance of the chain's law (:mod:`metrics.exact_laws`), no Monte Carlo.
  ``w2`` is the exact W2 for LMC and the Gelbrich **lower bound** (W2 between the Gaussians
  with the same first two moments) for PLMC and RLMC, whose laws are not Gaussian; the
  ``kind`` column says which.  ``kl`` exists only for LMC.
* **sample-based metrics** (``marginal_w2``, ``sliced_w2``, ``mmd``, ``ksd``, ``weak_m2``):
  estimated from the chains, each with a 95% interval and a noise floor.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import metrics as M

__all__ = ["EXACT_METRICS", "SAMPLE_METRICS", "METRIC_NAMES", "default_metric", "check_metric",
           "measure_samples", "noise_floor_samples"]

EXACT_METRICS = ("w2", "kl", "cov_error")
SAMPLE_METRICS = ("marginal_w2", "sliced_w2", "mmd", "ksd", "weak_m2")
METRIC_NAMES = EXACT_METRICS + SAMPLE_METRICS

_N_PROJECTIONS = 200
_MMD_MAX_POINTS = 4000


def default_metric(target) -> str:
    from targets import Gaussian, SeparableTarget

    if isinstance(target, Gaussian):
        return "w2"
    if isinstance(target, SeparableTarget):
        return "marginal_w2"
    if target.has_sampler:
        return "sliced_w2"
    return "ksd"


def check_metric(metric: str, target) -> None:
    """Raise ValueError if ``metric`` cannot be measured on ``target``."""
    from targets import Gaussian, SeparableTarget

    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_NAMES)}")
    name = type(target).__name__
    if metric in EXACT_METRICS and not isinstance(target, Gaussian):
        raise ValueError(f"metric {metric!r} needs exact laws, which exist only for Gaussian targets, not {name}")
    if metric == "marginal_w2" and not isinstance(target, SeparableTarget):
        raise ValueError(f"metric 'marginal_w2' needs a separable target, not {name}")
    if metric in ("sliced_w2", "mmd") and not target.has_sampler:
        raise ValueError(f"metric {metric!r} needs exact target samples, which {name} has not")
    if metric == "weak_m2" and target.mean is None:
        raise ValueError(f"metric 'weak_m2' needs the exact second moment, unknown for {name}")


def _reference(target, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=target.device).manual_seed(seed)
    return target.sample(n, gen)


def _m2(target) -> float:
    m, S = target.mean, target.cov
    return float((torch.trace(S) + m @ m) / target.dim)


def measure_samples(metric: str, x: torch.Tensor, target, seed: int) -> dict:
    """Value, 95% interval and standard error of ``metric`` on chains ``x``.

    ``seed`` seeds what the metric draws itself (reference samples, projections).
    """
    if metric == "marginal_w2":
        r = M.marginal_w2(x, target, pool=True)  # coordinates are i.i.d. under the target
    elif metric == "sliced_w2":
        r = M.sliced_w2(x, _reference(target, x.shape[0], seed), n_projections=_N_PROJECTIONS, seed=seed)
    elif metric == "mmd":
        n = min(x.shape[0], _MMD_MAX_POINTS)
        r = M.mmd(x[:n], _reference(target, n, seed))
    elif metric == "ksd":
        n = min(x.shape[0], _MMD_MAX_POINTS)
        r = M.ksd(x[:n], target)
    elif metric == "weak_m2":
        r = M.weak_error(x, lambda z: (z**2).sum(-1) / z.shape[-1], _m2(target))
    else:
        raise ValueError(f"metric {metric!r} is not sample-based")
    return {"value": float(r.value), "ci_low": float(r.ci[0]), "ci_high": float(r.ci[1]),
            "se": float(r.se) if r.se is not None else math.nan}


def noise_floor_samples(metric: str, target, n: int, seed: int, reps: int = 5) -> dict:
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

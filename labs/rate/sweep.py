"""Convergence rates and the Poisson-midpoint speed-up, measured: ``python -m labs.rate_sweep``.

Studies (``--study``):

``rate`` (default)
    For each target and sampler, the error after a budget of ``N`` gradient evaluations per chain,
    for a list of budgets.  Each budget fixes the step size through a common integration time
    ``T`` (the horizon): ``n_steps = N / (evaluations per step)`` and ``eta = T / n_steps``, so
    every sampler integrates the same dynamics for the same time and differs only in how it
    discretizes it.  PLMC's ``K`` grows like ``1/eta`` (``K = ceil(k_scale / eta)``, the regime
    of the quadratic speed-up) or stays fixed (``--k-schedule fixed``).  Chains start from the
    target (exact samples, or the exact law on Gaussians) unless ``--start standard``, so the
    error measured is the discretization error accumulated over ``T``.  It fits the slope of
    log(error) against log(gradient evaluations) and the ratio of slopes PLMC/LMC: about 2 is
    the quadratic speed-up.
``theorem``
    The theorem's own quantity: the distance between PLMC(``eta``, ``K``) and LMC(``eta/K``)
    after time ``T``, as ``eta`` and ``K`` vary, next to LMC(``eta``) vs LMC(``eta/K``) as a
    baseline (what running the coarse chain without the correction costs).
``bias``
    Stationary bias against the step size (exact stationary laws on Gaussian targets; long runs
    from the target elsewhere), with fitted orders in ``eta``.
``scaling``
    The ``rate`` study on Gaussians over ``--dims`` x ``--kappas``: how slopes and the
    speed-up ratio depend on dimension and condition number.

Underdamped samplers (``--samplers ulmc,pulmc,rulmc``, friction ``--friction``) run in every
study the same way: PULMC's ``K`` follows the same schedule as PLMC's, exact laws on Gaussians
are those of the (position, velocity) pair (positions measured; velocities start from their
stationary law ``N(0, I)``), the summary reports the PULMC/ULMC slope ratio next to PLMC/LMC,
and the theorem study compares PULMC(``eta``, ``K``) with ULMC(``eta/K``).

Outputs in ``--out``: ``results.csv`` (tidy rows, one finished cell at a time, so an interrupted
run keeps its work and ``--resume`` completes it), ``summary.json`` (fits, ratios, settings), a
figure ``rate_sweep.png`` and a printed table with a one-line verdict per target.

``--metric coupled_weak`` (LMC, PLMC and RLMC, any target; the default on mixtures) measures the
weak error of a second moment plus Fourier features from chains coupled with a fine LMC reference
on one Brownian path (:mod:`samplers.coupled`; reference step ``eta / (K R)``, extrapolated to step
0 with a second reference at twice that step, ``R`` from :func:`labs.rate.measures.coupled_refine`),
PLMC's selections reduced by their control variate: no noise floor, and a variance far below that
of independent chains.  It costs ``1.5 K R`` reference evaluations per coarse step, so PLMC's cost
grows like the square of the budget (``K = ceil(1/eta)``).

The default noise mode is ``vector``: the law of torch's float64 ``randn`` (Box–Muller on 53-bit
uniforms) computed vectorized, which halves the time of the sampled targets' cells; ``--noise
fast`` draws the samplers' Gaussians in float32, up-cast to float64 (see
:mod:`samplers.noise`: the law differs from the normal only at float32 resolution, far below a
metric's standard error); the mode is part of every cell's settings and of the summary's, so
results of the two modes never mix.  ``--noise exact`` draws with torch's own float64 ``randn``.

Cells run one after another here, or on a Dask cluster with ``--executor dask`` (``--workers N``
starts a local one, ``--address`` joins a running one): see ``labs/executor.py``.  The rows are
the same either way; fits read them in planned order, whatever order they finished in.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
import zlib
from pathlib import Path
from typing import TypedDict, Union

import numpy as np
import torch

from labs.rate.config import STUDIES, SweepConfig
from labs.fitting import debias_floor, fit_slope, select_points, slope_ratio
from labs.rate.measures import (COUPLED_METRICS, EXACT_METRICS, FLOOR_REPS, check_metric, coupled_refine, default_metric,
                                floor_bias, measure_coupled, measure_samples, metric_names, noise_floor_samples)
from labs import cli
from labs.cli import LabParser, add_run_flags, csv_list, scalar
from labs.store import cell_key
from labs.study import as_float as _f
from labs.study import print_block

__all__ = ["main", "run_sweep", "SweepConfig", "COLUMNS", "TARGET_DEFAULTS", "QUICK", "STUDY", "RateStudy", "plan_cells",
           "schedule_for_budget", "run_cell", "summarize"]

COLUMNS = ["study", "target", "dim", "kappa", "sampler", "k_schedule", "k_scale", "step_size", "K",
           "K_ref", "friction", "target_options", "budget", "n_steps", "horizon", "start", "seed", "chains", "metric", "kind",
           "grad_evals",
           "value", "ci_low", "ci_high", "se", "status", "n_diverged", "device", "dtype", "noise", "cell"]



class RateCell(TypedDict, total=False):
    """One unit of the rate study's work: plain JSON-able settings, hashed into ``cell`` and sent to
    a Dask worker as they are.  ``""`` (or ``None`` for ``K``) marks a setting that does not apply,
    e.g. ``K`` for LMC; the rows of ``results.csv`` carry the same names (:data:`COLUMNS`)."""

    study: str                    # rate, theorem, bias or scaling
    kind: str                     # floor (exact samples), run (a budget), gap (theorem), bias
    target: str                   # a registered target
    dim: int
    kappa: Union[float, str]      # Gaussian targets only
    target_options: str           # the target factory's keyword arguments, "name=value,..." (only when given)
    horizon: float                # integration time T = n_steps x step_size
    start: str                    # target (exact samples or law) or standard (N(0, I))
    chains: int
    metric: str
    device: str
    dtype: str
    noise: str
    sampler: str                  # a registered method ("exact" in a floor cell)
    budget: int                   # gradient evaluations per chain (rate and scaling studies)
    n_steps: int
    step_size: float
    K: Union[int, str, None]      # Poisson-midpoint sub-steps, for a method that takes K
    K_ref: int                    # theorem study: the fine step is step_size / K_ref
    k_schedule: str
    k_scale: Union[float, str]
    friction: Union[float, str]   # for a method that takes a friction
    seed: int
    cell: str                     # labs.store.cell_key of the settings above


# Per-target defaults: dimension, integration time T, budgets (gradient evaluations per chain).
TARGET_DEFAULTS = {
    # Gaussians: budgets are multiplied by kappa (step sizes scale like 1/L, the horizon like 1/m).
    "gaussian": dict(dim=10, horizon=5.0, budgets=[40, 80, 160, 320, 640, 1280]),
    "gaussian_diag": dict(dim=10, horizon=5.0, budgets=[40, 80, 160, 320, 640, 1280]),
    # Separable targets: every coordinate has the same marginal law whatever d is (the chains'
    # coordinates evolve as 1-D chains), so a larger d pools more values into the marginal W2.
    "holley_stroock": dict(dim=32, horizon=2.0, budgets=[16, 23, 32, 45, 64, 91, 128, 181, 256]),
    "double_well": dict(dim=32, horizon=2.0, budgets=[32, 64, 128, 256, 512, 1024]),
    # Mixtures are measured by coupled chains (their default metric): PLMC's reference costs grow
    # like the square of the budget, so the default budgets stop at 91 (add more with --budgets).
    "mixture": dict(dim=2, horizon=2.0, budgets=[16, 23, 32, 45, 64, 91]),
    "ring": dict(dim=2, horizon=2.0, budgets=[16, 23, 32, 45, 64, 91]),
    # No exact start: the horizon must be long enough for the N(0, I) start to be forgotten.
    "logistic": dict(dim=5, horizon=10.0, budgets=[64, 128, 256, 512, 1024, 2048]),
}
# A target registered elsewhere (targets.register_target) without an entry above.
GENERIC_DEFAULTS = dict(dim=2, horizon=2.0, budgets=[16, 32, 64, 128, 256, 512])
# --quick: these settings where left at their defaults (labs.study.apply_quick)
QUICK = dict(chains=4000, budgets_keep=4)

# Everything the sweep knows about a sampler comes from its descriptor (samplers.base): whether it
# takes K (Poisson-midpoint sub-steps, set by the K schedule) or a friction, its evaluations per
# step, its base method (slope ratios, theorem study), its exact moments and whether its law is
# Gaussian.  No sampler is named here, so a newly registered method runs in every study.


# ------------------------------------------------------------------------------------------------
# planning


def _method(sampler: str):
    from samplers.base import get_method

    return get_method(sampler)


def _method_params(alg, K=None, friction=None) -> dict:
    """The lab-level settings ``K`` and ``friction`` that ``alg`` takes (its other parameters keep
    their defaults)."""
    out = {}
    if alg.takes("K"):
        out["K"] = K
    if alg.takes("friction"):
        out["friction"] = friction
    return out


def _friction(cfg: SweepConfig, sampler: str):
    return cfg.friction if _method(sampler).takes("friction") else ""


def _cell_params(cell: dict, alg) -> dict:
    K = cell.get("K")
    return _method_params(alg, None if K in ("", None) else int(K), _cell_friction(cell))


def _base_of(sampler: str) -> str:
    """The method ``sampler`` imitates (its descriptor's ``base``), or ``sampler`` itself."""
    return _method(sampler).base or sampler


def schedule_for_budget(sampler: str, budget: int, horizon: float, cfg: SweepConfig):
    """``(n_steps, step_size, K)`` spending about ``budget`` gradient evaluations over time ``T``.

    PLMC's evaluations per step depend on ``K``, which (growing schedule) depends on the step
    size: the fixed point is found in a few rounds.
    """
    alg = _method(sampler)
    takes_K = alg.takes("K")
    K = cfg.k_fixed if takes_K and cfg.k_schedule == "fixed" else (1 if takes_K else None)
    for _ in range(10):
        per = alg.mean_evals_per_step(**alg.check_params(**_method_params(alg, K, cfg.friction)))
        n_steps = max(1, int(round(budget / per)))
        eta = horizon / n_steps
        if not takes_K or cfg.k_schedule == "fixed":
            break
        new_K = max(1, math.ceil(cfg.k_scale / eta - 1e-9))
        if new_K == K:
            break
        K = new_K
    return n_steps, eta, K


def _takes_kappa(target_name: str) -> bool:
    from targets import TARGETS

    return TARGETS[target_name].takes_kappa


def _resolve(cfg: SweepConfig, target_name: str, kappa: float) -> dict:
    d = TARGET_DEFAULTS.get(target_name, GENERIC_DEFAULTS)
    if cfg.budgets is not None:
        budgets = list(cfg.budgets)
    elif _takes_kappa(target_name):
        budgets = [int(round(b * max(1.0, kappa))) for b in d["budgets"]]
    else:
        budgets = list(d["budgets"])
    if cfg.budgets_keep is not None and cfg.budgets is None:
        budgets = budgets[: cfg.budgets_keep]
    return dict(dim=cfg.dim if cfg.dim is not None else d["dim"],
                horizon=cfg.horizon if cfg.horizon is not None else d["horizon"], budgets=budgets)


def parse_target_options(text) -> dict:
    """``"separation=6,sigma=0.5"`` (or a dict) as ``{"separation": 6.0, "sigma": 0.5}``: keyword
    arguments of the target's factory (targets.make_target), numbers as floats."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in (p.strip() for p in str(text or "").split(",")):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"target option {part!r} is not NAME=VALUE")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out = {}
    for k, v in items:
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"target option {k}={v!r}: the value must be a number") from None
    return out


def format_target_options(options: dict) -> str:
    return ",".join(f"{k}={options[k]:g}" for k in sorted(options))


def build_target(name: str, dim: int, kappa: float, seed: int = 0, options=None):
    """The target ``name`` as the rate study builds it; ``options``: its factory's keyword
    arguments (a dict or ``"name=value,..."``, e.g. ``separation=6`` for the mixture)."""
    from targets import make_target

    kappa = float(kappa) if _takes_kappa(name) and kappa not in ("", None) else 1.0
    opts = parse_target_options(options)
    try:
        return make_target(name, dim=dim, kappa=kappa, seed=seed, **opts)
    except TypeError as e:
        raise ValueError(f"target {name!r} does not take the options {format_target_options(opts)!r} ({e})") from None


def plan_cells(cfg: SweepConfig) -> list[RateCell]:
    """Every cell the sweep runs, as plain settings dicts (each is one unit of resumable work).

    With ``cfg.quick`` the quick settings are applied first (:func:`labs.study.apply_quick`, as a
    run does; applying them twice changes nothing), so planning alone gives a run's cells."""
    if cfg.quick:
        from labs.study import apply_quick

        apply_quick(cfg, QUICK)
    cells = []
    if cfg.study == "scaling":
        grid = [("gaussian", d, k) for d in cfg.dims for k in cfg.kappas]
    else:
        grid = [(t, None, cfg.kappa) for t in cfg.targets]
    for tname, dim_override, kappa in grid:
        r = _resolve(cfg, tname, kappa)
        dim = dim_override if dim_override is not None else r["dim"]
        target = build_target(tname, dim, kappa, options=cfg.target_options)
        metric = cfg.metric or default_metric(target)
        check_metric(metric, target)
        exact = metric in EXACT_METRICS
        coupled = metric in COUPLED_METRICS
        if coupled:
            _check_coupled(cfg)
        # A target without an exact sampler (logistic regression) cannot start at the target and
        # has no noise floor: its chains start at N(0, I) and only the metric's own CI counts.
        start = cfg.start if (exact or target.has_sampler) else "standard"
        base = dict(study=cfg.study, target=tname, dim=dim, kappa=kappa if _takes_kappa(tname) else "",
                    **({"target_options": format_target_options(parse_target_options(cfg.target_options))}
                       if cfg.target_options else {}),
                    horizon=r["horizon"], start=start, chains=cfg.chains, metric=metric,
                    device=cfg.device, dtype=cfg.dtype, noise=cfg.noise)
        seeds = [cfg.seed] if exact else [cfg.seed + s for s in range(cfg.seeds)]
        if not exact and not coupled and target.has_sampler:
            for s in seeds:
                cells.append(dict(base, kind="floor", sampler="exact", seed=s))
        if cfg.study in ("rate", "scaling"):
            for sampler in cfg.samplers:
                alg = _method(sampler)
                if exact and alg.exact_moments is None:
                    continue  # no exact moment recursion (MALA: it is unbiased anyway)
                for budget in r["budgets"]:
                    n_steps, eta, K = schedule_for_budget(sampler, budget, r["horizon"], cfg)
                    if metric == "kl" and not alg.gaussian_law(**alg.check_params(**_method_params(alg, K, cfg.friction))):
                        continue  # KL of the exact law needs a Gaussian law
                    for s in seeds:
                        cells.append(dict(base, kind="run", sampler=sampler, budget=budget, n_steps=n_steps,
                                          step_size=eta, K=K, k_schedule=cfg.k_schedule if K else "",
                                          k_scale=cfg.k_scale if K else "", seed=s,
                                          friction=_friction(cfg, sampler)))
        elif cfg.study == "theorem":
            etas = cfg.step_sizes or _default_etas(target, 4)
            families = [s for s in cfg.samplers if _method(s).base is not None]
            if not families:
                raise ValueError(f"the theorem study compares a method with a base (e.g. plmc, base lmc) with its "
                                 f"base at the fine step; none of --samplers {','.join(cfg.samplers)} has one")
            for eta in etas:
                n_steps = max(1, int(round(r["horizon"] / eta)))
                for K in cfg.Ks:
                    for s in seeds:
                        for pm in families:
                            for sampler, e, k in ((pm, eta, K), (_base_of(pm), eta, None)):
                                cells.append(dict(base, kind="gap", sampler=sampler, n_steps=n_steps, step_size=e,
                                                  K=k, K_ref=K, seed=s, k_schedule="fixed" if k else "",
                                                  k_scale="", friction=_friction(cfg, sampler)))
        elif cfg.study == "bias":
            etas = cfg.step_sizes or _default_etas(target, 6)
            for sampler in cfg.samplers:
                alg = _method(sampler)
                if exact and alg.exact_moments is None:
                    continue
                for eta in etas:
                    K = None
                    if alg.takes("K"):
                        K = cfg.k_fixed if cfg.k_schedule == "fixed" else max(1, math.ceil(cfg.k_scale / eta - 1e-9))
                    n_steps = max(1, int(round(r["horizon"] / eta)))
                    for s in seeds:
                        cells.append(dict(base, kind="bias", sampler=sampler, n_steps=n_steps, step_size=eta, K=K,
                                          k_schedule=cfg.k_schedule if K else "", k_scale=cfg.k_scale if K else "",
                                          seed=s, friction=_friction(cfg, sampler)))
    for c in cells:
        c["cell"] = cell_key(c)
    return cells


def _check_coupled(cfg) -> None:
    """The coupled metric runs only where samplers.coupled can couple: refuse the rest by name."""
    from samplers.coupled import COUPLED_METHODS

    if cfg.study not in ("rate", "scaling"):
        raise ValueError(f"metric 'coupled_weak' is for the rate and scaling studies, not {cfg.study!r}")
    for sampler in cfg.samplers:
        if sampler not in COUPLED_METHODS:
            raise ValueError(f"metric 'coupled_weak' couples only {', '.join(COUPLED_METHODS)} with a fine "
                             f"reference; got sampler {sampler!r}")


def _default_etas(target, n: int) -> list:
    L = target.smoothness or 4.0
    top = 0.5 / L
    return [top / 2**i for i in range(n)]


# ------------------------------------------------------------------------------------------------
# running one cell


def _dtype(name: str):
    return {"float64": torch.float64, "float32": torch.float32}[name]


def _row(cell: dict, **kw) -> dict:
    row = {c: cell.get(c, "") for c in COLUMNS}
    row.update(kw)
    return row


def run_cell(cell: RateCell, cache: dict) -> list[dict]:
    """Run one cell and return its rows (one per metric value)."""
    import samplers
    from metrics.exact_laws import exact_law, law_errors, stationary_law

    key = (cell["target"], cell["dim"], cell["kappa"], cell.get("target_options", ""))
    if key not in cache:
        cache[key] = build_target(cell["target"], cell["dim"], cell["kappa"], options=cell.get("target_options"))
    target = cache[key]
    metric = cell["metric"]
    dtype = _dtype(cell["dtype"])
    device = cell["device"]

    if cell["kind"] == "floor":
        fl = noise_floor_samples(metric, target.to(device=device, dtype=dtype), cell["chains"], seed=cell["seed"])
        return [_row(cell, kind="floor", value=fl["value"], ci_low=fl["ci_low"], ci_high=fl["ci_high"],
                     se=fl["se"], status="ok", n_diverged=0, grad_evals="")]

    sampler, eta, n_steps = cell["sampler"], cell["step_size"], cell["n_steps"]
    alg = _method(sampler)
    params = _cell_params(cell, alg)
    if metric in EXACT_METRICS:
        start = dict(mean0=target.mean, cov0=target.cov) if cell["start"] == "target" else {}
        if cell["kind"] == "bias":
            try:
                m, S = stationary_law(alg, target, eta, **params)
                law = _law_from(alg, eta, params, m, S)
            except ValueError:
                return [_row(cell, value="", status="diverged", n_diverged=cell["chains"], grad_evals="")]
        elif cell["kind"] == "gap":
            return _exact_gap(cell, target, start)
        else:
            law = exact_law(alg, target, n_steps, eta, **params, **start)
        with np.errstate(all="ignore"):
            finite = np.isfinite(law.covs[-1]).all() and np.abs(law.covs[-1]).max() < 1e12
        if not finite:
            return [_row(cell, value="", status="diverged", n_diverged=cell["chains"],
                         grad_evals=float(law.grad_evals[-1]))]
        errs = law_errors(law, target)
        key_name = {"w2": "w2", "kl": "kl", "cov_error": "cov_error"}[metric]
        v = float(errs[key_name][-1])
        kind = "exact" if (law.gaussian or metric == "cov_error") else "lower_bound"
        return [_row(cell, kind=kind, value=v, ci_low=v, ci_high=v, se=0.0, status="ok", n_diverged=0,
                     grad_evals=float(law.grad_evals[-1]) if cell["kind"] != "bias" else "")]

    # sample-based
    t = target.to(device=device, dtype=dtype)
    x0 = None
    if cell["start"] == "target":  # exact target samples, the same for every cell of this seed
        skey = key + ("start", cell["seed"], cell["chains"], device, cell["dtype"])
        if skey not in cache:
            gen = torch.Generator(device=device).manual_seed(10007 * cell["seed"] + 1)
            cache[skey] = t.sample(cell["chains"], gen)
        x0 = cache[skey]
    if cell["kind"] == "gap":
        return _sample_gap(cell, t, x0)
    if metric in COUPLED_METRICS:
        return _coupled_cell(cell, t, x0, n_steps, eta, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = samplers.sample(alg, t, cell["chains"], n_steps, eta, x0=x0, seed=cell["seed"],
                              device=device, dtype=dtype, noise=cell.get("noise", "exact"), **params)
    evals = float(res.grad_evals.double().mean())
    if res.n_diverged:
        return [_row(cell, value="", status="diverged", n_diverged=res.n_diverged, grad_evals=evals)]
    m = measure_samples(metric, res.x, t, seed=cell["seed"] + 1)
    return [_row(cell, kind="estimate", status="ok", n_diverged=0, grad_evals=evals, **m)]


def _coupled_cell(cell, t, x0, n_steps, eta, params):
    """One budget of the coupled metric: the method and its extrapolated fine LMC reference on
    one Brownian path per chain (samplers.coupled, refinement :func:`coupled_refine`), with PLMC's
    selection control variate."""
    from labs.rate.measures import coupled_test_function
    from samplers.coupled import coupled_run

    sampler, K = cell["sampler"], params.get("K")
    control = coupled_test_function(t.dim) if sampler == "plmc" else None
    r = coupled_run(sampler, t, cell["chains"], n_steps, eta, refine=coupled_refine(sampler, K), K=K, x0=x0,
                    seed=cell["seed"], device=cell["device"], dtype=t.dtype, half_reference=True,
                    noise=cell.get("noise", "exact"), control=control)
    evals = float(r.grad_evals.double().mean())
    n_div = int(r.diverged.sum())
    if n_div:
        return [_row(cell, value="", status="diverged", n_diverged=n_div, grad_evals=evals)]
    m = measure_coupled(r.x, r.x_ref, r.x_ref_half, t.dim, control=r.control)
    return [_row(cell, kind="estimate", status="ok", n_diverged=0, grad_evals=evals, **m)]


def _cell_friction(cell):
    f = cell.get("friction", "")
    return None if f in ("", None) else float(f)


def _law_from(alg, eta, params, mean, cov):
    from metrics.exact_laws import ExactLaw

    checked = alg.check_params(**params)
    return ExactLaw(alg.name, eta, checked.get("K"), np.array([0]), np.array([0.0]), mean[None], cov[None],
                    gaussian=alg.gaussian_law(**checked))


def _exact_gap(cell, target, start):
    """Exact-moment gap between PLMC(eta, K) (or LMC(eta)) and LMC(eta/K) after time T.

    Underdamped: PULMC(eta, K) (or ULMC(eta)) against ULMC(eta/K), in positions.
    """
    from metrics.exact_laws import exact_law
    from metrics.gaussian import w2_gaussian

    K_ref = cell["K_ref"]
    eta, n = cell["step_size"], cell["n_steps"]
    base = _base_of(cell["sampler"])
    fr = {"friction": _cell_friction(cell)} if _method(base).takes("friction") else {}
    ref = exact_law(base, target, n * K_ref, eta / K_ref, **fr, **start)
    law = exact_law(cell["sampler"], target, n, eta, **_cell_params(cell, _method(cell["sampler"])), **start)
    v = float(w2_gaussian(torch.from_numpy(law.means[-1]), torch.from_numpy(law.covs[-1]),
                          torch.from_numpy(ref.means[-1]), torch.from_numpy(ref.covs[-1])))
    return [_row(cell, kind="lower_bound" if cell["sampler"] != base else "exact", value=v, ci_low=v, ci_high=v,
                 se=0.0, status="ok", n_diverged=0, grad_evals=float(law.grad_evals[-1]))]


def _sample_gap(cell, t, x0):
    """Sliced W2 between PLMC(eta, K) (or LMC(eta)) and LMC(eta/K) chains from the same start
    (underdamped: PULMC or ULMC(eta) against ULMC(eta/K), in positions)."""
    import metrics as M
    import samplers

    K_ref = cell["K_ref"]
    eta, n = cell["step_size"], cell["n_steps"]
    base = _base_of(cell["sampler"])
    kw = dict(x0=x0, device=cell["device"], dtype=t.dtype, noise=cell.get("noise", "exact"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = samplers.sample(cell["sampler"], t, cell["chains"], n, eta, seed=cell["seed"],
                            **_cell_params(cell, _method(cell["sampler"])), **kw)
        b = samplers.sample(base, t, cell["chains"], n * K_ref, eta / K_ref, seed=cell["seed"] + 500009,
                            **_cell_params(dict(cell, K=""), _method(base)), **kw)
    nd = a.n_diverged + b.n_diverged
    if nd:
        return [_row(cell, value="", status="diverged", n_diverged=nd, grad_evals="")]
    r = M.sliced_w2(a.x, b.x, n_projections=200, seed=cell["seed"])
    return [_row(cell, kind="estimate", value=float(r.value), ci_low=float(r.ci[0]), ci_high=float(r.ci[1]),
                 se=float(r.se) if r.se is not None else "", status="ok", n_diverged=0,
                 grad_evals=float(a.grad_evals.double().mean()))]


# ------------------------------------------------------------------------------------------------
# summarizing




def _group_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def summarize(rows: list[dict], cfg: SweepConfig, slope_fits: "dict | None" = None) -> dict:
    """Fits, ratios and verdicts from the tidy rows (see the module docstring).  ``slope_fits``, a
    dict, receives each fit entry's :class:`labs.fitting.SlopeFit` (with its bootstrap draws),
    keyed by ``(target, dim, metric, sampler)``, e.g. for ratios the summary does not report."""
    fits, speedups, verdicts, problems = [], [], [], []
    groups = {}
    diverged: dict = {}  # group -> [(chains diverged, chains)] per diverged cell
    floors: dict = {}
    floor_rows: dict = {}
    for r in rows:
        gk = (r["target"], str(r["dim"]), str(r["kappa"]), r["metric"])
        if r["kind"] == "floor":
            floors.setdefault(gk, []).append(_f(r["ci_high"]))
            floor_rows.setdefault(gk, []).append(r)
            continue
        if r["status"] == "diverged":
            problems.append(f"{r['target']} {r['sampler']} step={_f(r['step_size']):.4g} K={r['K'] or '-'}: "
                            f"{r['n_diverged']} chain(s) diverged (left out of fits)")
            if r["study"] != "theorem":
                diverged.setdefault(gk + (r["sampler"],), []).append((int(_f(r["n_diverged"])), int(_f(r["chains"]))))
            continue
        sampler = r["sampler"]
        if r["study"] == "theorem":
            sampler = f"{sampler}~{_base_of(sampler)}(eta/{r['K_ref']})"
        groups.setdefault(gk + (sampler,), []).append(r)
    by_step = cfg.study in ("bias", "theorem")
    x_of = (lambda r: _f(r["step_size"])) if by_step else (lambda r: _f(r["grad_evals"]))
    fitted = {}
    entries: dict = {}  # group -> its entry in fits
    step_slope: dict = {}

    def order(item):  # target, then dimension and condition number as numbers
        t, dim, kappa, metric, sampler = item[0]
        return (t, int(dim), _f(kappa) if kappa else 0.0, metric, sampler)

    for key, rs in sorted(groups.items(), key=order):
        target, dim, kappa, metric, sampler = key
        # Without floor rows (exact laws, targets without exact samples) a point must still be
        # distinguishable from zero: its lower bound must be positive.
        floor_high = max(floors.get(key[:4], [0.0]))
        x = np.array([x_of(r) for r in rs])
        v = np.array([_f(r["value"]) for r in rs])
        lo = np.array([_f(r["ci_low"]) for r in rs])
        hi = np.array([_f(r["ci_high"]) for r in rs])
        se = np.array([_f(r["se"]) for r in rs])
        se = np.where(np.isfinite(se), se, 0.0)
        floor_sq = _floor_square(floor_rows.get(key[:4], []))
        debiased = floor_sq is not None and floor_bias(metric) == "squares"
        if debiased:
            # the sample distance's square carries the floor's: remove it, then a point counts when
            # its debiased lower bound is above 0
            v, lo, hi, se = debias_floor(v, lo, hi, se, *floor_sq)
            mask = select_points(1.0 / x if by_step else x, v, lo, np.zeros_like(v))
        else:
            # error falls with the budget but grows with the step size: saturation is judged on 1/eta
            mask = select_points(1.0 / x if by_step else x, v, lo, np.full_like(v, floor_high))
        fit = fit_slope(x, v, np.where(np.isfinite(se), se, 0.0), mask=mask, seed=_group_seed(*key))
        fitted[key] = fit
        # how the step size falls with the budget over the points used: -1 when every step costs the
        # same, flatter for PLMC, whose 2 - 1/K evaluations per step grow as K = ceil(1/eta) does
        eta = np.array([_f(r["step_size"]) for r in rs])
        used_levels = np.unique(x[fit.used]) if fit.used.any() else np.empty(0)
        step_slope[key] = (float(np.polyfit(np.log(x[fit.used]), np.log(eta[fit.used]), 1)[0])
                           if not by_step and used_levels.size >= 2 else None)
        entry = dict(target=target, dim=int(dim), kappa=_f(kappa) if kappa else None, sampler=sampler,
                     metric=metric, kind=rs[0]["kind"], x="step_size" if by_step else "grad_evals",
                     noise_floor=floor_high if key[:4] in floors else None, **fit.as_dict())
        entry["floor_debiased"] = debiased
        entry["x_range"] = [float(x[fit.used].min()), float(x[fit.used].max())] if fit.used.any() else None
        entry["k_schedule"] = rs[0]["k_schedule"] or None
        entry["resolution"] = _resolution(rs, x, fit, floor_high if key[:4] in floors else None, by_step)
        fits.append(entry)
        entries[key] = entry
    for key in sorted(set(diverged) - set(groups), key=lambda k: order((k,))):
        # every cell of this sampler diverged: no points, but its verdict must say so
        target, dim, kappa, metric, sampler = key
        fit = fit_slope([], [], reason_if_empty=f"diverged at all {len(diverged[key])} budgets")
        fitted[key] = fit
        entries[key] = dict(target=target, dim=int(dim), kappa=_f(kappa) if kappa else None, sampler=sampler,
                            metric=metric, kind="", x="grad_evals", noise_floor=None, **fit.as_dict(),
                            floor_debiased=False, x_range=None, k_schedule=None,
                            resolution={"budgets": 0, "budgets_resolved": 0, "level": None, "chains": None,
                                        "chains_to_resolve_all": None})
        fits.append(entries[key])
    for key, f in entries.items():
        dv = diverged.get(key, [])
        f["divergences"] = {"budgets": len(dv), "chains": [c for c, _ in dv]}
        f["resolution"]["budgets"] += len(dv)
    for key, fit in fitted.items():
        if cfg.study == "theorem" or _method(key[4]).base is None:
            continue
        den_name = _method(key[4]).base
        den = fitted.get(key[:4] + (den_name,))
        if den is None:
            continue
        ratio, ci = slope_ratio(fit, den)
        target, dim, kappa, metric, num_name = key
        sp = dict(target=target, dim=int(dim), kappa=_f(kappa) if kappa else None, metric=metric,
                  numerator=num_name, denominator=den_name, ratio=ratio, ratio_ci=list(ci),
                  k_schedule=cfg.k_schedule)
        if _method(num_name).takes("friction"):
            sp["friction"] = cfg.friction
        sn, sd_ = step_slope.get(key), step_slope.get(key[:4] + (den_name,))
        # theory's ratio 2 is about step sizes: an error in eta^(2p) against one in eta^p gives, over
        # these budgets, the slope ratio 2 sn / sd_ (2 exactly when both cost the same per step)
        sp["theory_ratio_here"] = 2.0 * sn / sd_ if sn is not None and sd_ else None
        sides = [(num_name, entries.get(key), diverged.get(key, [])),
                 (den_name, entries.get(key[:4] + (den_name,)), diverged.get(key[:4] + (den_name,), []))]
        sp["divergences"] = {name.upper(): len(dv) for name, _, dv in sides}
        sp["verdict"] = _verdict(ratio, ci, fit, den, cfg, sp["theory_ratio_here"], sides)
        speedups.append(sp)
        verdicts.append(f"{target} (d={dim}{', kappa=' + kappa if kappa else ''}, {metric}) "
                        f"{num_name.upper()}/{den_name.upper()}: {sp['verdict']}")
    if slope_fits is not None:
        slope_fits.update({(k[0], int(k[1]), k[3], k[4]): f for k, f in fitted.items()})
    return {"fits": fits, "speedup": speedups, "verdicts": verdicts, "problems": problems}


def _floor_square(frows: list) -> "tuple[float, float] | None":
    """``(E f^2, its se)`` from the floor rows (one per seed; each row's value is the mean of
    FLOOR_REPS repetitions and its se their sd over sqrt(FLOOR_REPS)), or None without floor rows."""
    if not frows:
        return None
    m = np.array([_f(r["value"]) for r in frows])
    se = np.array([_f(r["se"]) for r in frows])
    sq = m * m + (FLOOR_REPS - 1) * se * se  # mean square of the repetitions: mean^2 + var (ddof 0)
    sq_se = np.sqrt(np.sum((2.0 * m * se) ** 2)) / len(frows)
    return float(sq.mean()), float(sq_se)


def _resolution(rs, x, fit, floor_high, by_step) -> dict:
    """How much of the curve the measurement resolves: the budgets measured and used, the error
    level a point must exceed (the floor's upper bound, or 1.96 standard errors where there is no
    floor), and the chains that would bring that level to half the fitted error at the
    smallest-error budget (the level falls like ``1/sqrt(chains)``)."""
    chains = int(_f(rs[0]["chains"])) if str(rs[0].get("chains", "")).strip() else None
    levels = np.unique(x)
    used = np.unique(x[fit.used]) if fit.used.any() else np.empty(0)
    out = {"budgets": int(levels.size), "budgets_resolved": int(used.size), "level": None, "chains": chains,
           "chains_to_resolve_all": None}
    edge = levels.min() if by_step else levels.max()
    if floor_high is not None and floor_high > 0:
        level = float(floor_high)
    else:
        se_edge = [_f(r["se"]) for r, xv in zip(rs, x) if xv == edge]
        level = 1.96 * float(np.nanmean(se_edge)) if se_edge and np.isfinite(np.nanmean(se_edge)) else None
    if not level or level <= 0:
        return out
    out["level"] = level
    if fit.slope is not None and chains:
        pred = math.exp(fit.intercept + fit.slope * math.log(edge))
        out["chains_to_resolve_all"] = int(math.ceil(chains * max(1.0, (2.0 * level / pred) ** 2)))
    return out


def _side_line(name: str, entry, dv) -> str:
    """One sampler's state for a verdict: budgets resolved, divergences, chains that would help."""
    parts = []
    res = (entry or {}).get("resolution") or {}
    if res.get("budgets"):
        parts.append(f"{res['budgets_resolved']} of {res['budgets']} budgets resolved")
        if res.get("level") is not None:
            parts.append(f"errors below {res['level']:.2g} unresolved at {res['chains']} chains")
        if res.get("chains_to_resolve_all") and res["budgets_resolved"] < res["budgets"] - len(dv):
            parts.append(f"~{res['chains_to_resolve_all']:.2g} chains would resolve all")
    if dv:
        counts = sorted(c for c, _ in dv)
        span = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"
        parts.append(f"diverged at {len(dv)} budget(s) ({span} of {dv[0][1]} chains)")
    return f"{name.upper()}: " + (", ".join(parts) if parts else "no points")


def _verdict(ratio, ci, num, den, cfg, theory_here=None, sides=()) -> str:
    if ratio is None:
        state = "; ".join(_side_line(*s) for s in sides) or (num.reason or den.reason)
        return f"no verdict: too few resolved budgets to fit both slopes ({state})"
    text = _verdict_text(ratio, ci, cfg, theory_here)
    div = [f"{name.upper()} at {len(dv)} budget(s)" for name, _, dv in sides if dv]
    return text + (f"; divergences (left out): {', '.join(div)}" if div else "")


def _verdict_text(ratio, ci, cfg, theory_here=None) -> str:
    lo, hi = ci
    if (cfg.k_schedule == "growing" and theory_here is not None and abs(theory_here - 2.0) > 0.02
            and lo <= theory_here <= hi and lo > 1.0):
        return (f"quadratic speed-up observed: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}], consistent with "
                f"{theory_here:.2f}, what an error in eta^2 against one in eta gives over these budgets (the "
                f"Poisson-midpoint step's 2 - 1/K gradients grow with K = ceil({cfg.k_scale:g}/eta); 2 as eta -> 0)")
    theory = "2" if cfg.k_schedule == "growing" else "1 (fixed K only lowers the constant)"
    if cfg.k_schedule != "growing":
        return f"slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}] with fixed K={cfg.k_fixed}; theory: {theory}"
    if lo <= 1.0:
        return f"no speed-up detected: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}] does not exclude 1"
    if lo <= 2.0 <= hi:
        return f"quadratic speed-up observed: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}], consistent with 2"
    if abs(ratio - 2.0) <= 0.15:
        side = "above" if lo > 2.0 else "below"
        return (f"quadratic speed-up observed: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}], within 0.15 of 2 "
                f"though the interval lies just {side} 2 (higher-order terms at the largest steps)")
    if hi < 2.0:
        return (f"speed-up observed but below quadratic: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}] "
                f"excludes both 1 and 2")
    return f"more than quadratic: slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}] lies above 2"


def _resolution_line(f: dict) -> str:
    r = f["resolution"]
    what = "noise floor" if f.get("noise_floor") else "1.96 se"
    line = f"{f['target']} {f['metric']} {f['sampler']}: {r['budgets_resolved']} of {r['budgets']} budgets resolved"
    if r["level"] is not None:
        line += f"; level {r['level']:.3g} ({what}) at {r['chains']} chains"
        if f.get("floor_debiased"):
            line += ", floor bias removed"
    if r["chains_to_resolve_all"] is not None and r["budgets_resolved"] < r["budgets"]:
        line += f"; all budgets need ~{r['chains_to_resolve_all']:.2g} chains"
    return line


def print_table(summary: dict, cfg: SweepConfig, elapsed: float, out: Path, file=None) -> None:
    file = sys.stdout if file is None else file  # looked up now, so a redirected stdout is honoured
    p = lambda *a: print(*a, file=file)  # noqa: E731
    xname = "step size" if cfg.study in ("bias", "theorem") else "gradient evaluations"
    p("")
    p(f"== labs.rate_sweep, study '{cfg.study}': slope of log(error) vs log({xname}), 95% CI ==")
    p(f"{'target':<16}{'d':>4}{'kappa':>7}  {'metric':<12}{'sampler':<9}{'slope':>8}  {'95% CI':<18}{'points':>6}  note")
    for f in summary["fits"]:
        ci = f["slope_ci"]
        s = "   -" if f["slope"] is None else f"{f['slope']:8.3f}"
        c = "" if f["slope"] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        kap = "" if f["kappa"] is None else f"{f['kappa']:g}"
        note = f["note"] or ("Gaussian lower bound on W2" if f["kind"] == "lower_bound" else "")
        p(f"{f['target']:<16}{f['dim']:>4}{kap:>7}  {f['metric']:<12}{f['sampler']:<9}{s:>8}  {c:<18}{f['n_points']:>6}  {note}")
    print_block(p, "Verdicts (slope ratio of the Poisson-midpoint sampler to its base; about 2 = quadratic speed-up):",
                summary["verdicts"] if summary["speedup"] else [])
    print_block(p, "Resolution (budgets whose error is resolved, the level it must exceed, chains to resolve every budget):",
                [_resolution_line(f) for f in summary["fits"] if f.get("resolution")])
    print_block(p, "Problems:", summary["problems"])
    p("")
    p(f"{len(summary['fits'])} fits in {elapsed:.1f} s; results in {out}/results.csv, summary.json, rate_sweep.png")


# ------------------------------------------------------------------------------------------------
# driver


class RateStudy:
    """The rate sweep as a :class:`labs.study.Study` (:func:`labs.study.run_study` drives it)."""

    name = "rate_sweep"
    columns = COLUMNS
    quick = QUICK
    plan = staticmethod(plan_cells)
    summarize = staticmethod(summarize)

    @property
    def run_cell(self):
        # the module's function as it is when the study runs: that object goes to the executor
        # (a Dask worker receives it pickled), so a wrapped or replaced run_cell is honoured
        return run_cell
    print_table = staticmethod(print_table)

    @staticmethod
    def plot(rows, summary, cfg, out) -> None:
        from labs.rate.plotting import plot_sweep

        plot_sweep(rows, summary, cfg, Path(out) / "rate_sweep.png")


STUDY = RateStudy()


def run_sweep(cfg: SweepConfig) -> dict:
    """Run the sweep with settings ``cfg``; returns the summary (also in ``cfg.out``)."""
    from labs.study import run_study

    return run_study(STUDY, cfg)


def build_parser() -> argparse.ArgumentParser:
    from samplers import METHODS
    from targets import TARGETS

    p = LabParser(prog="python -m labs.rate_sweep", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Defaults: targets gaussian (d=10, kappa=10, exact-law W2) and holley_stroock "
                       "(d=32, exact 1-D marginal W2 of the pooled coordinates); samplers lmc, plmc (K = ceil(1/eta)), "
                       "rlmc; "
                       "20000 chains; about a minute on 2 CPU cores.")
    a = p.add_argument
    a("--study", choices=STUDIES, help="rate (default), theorem, bias or scaling")
    a("--target", dest="targets", type=csv_list(str, "--target"),
      help=f"comma-separated targets: {', '.join(TARGETS)}")
    a("--dim", type=scalar(int, "--dim"), help="dimension of every target (default: each target's own)")
    a("--kappa", type=scalar(float, "--kappa"), help="condition number of Gaussian targets (default 10)")
    a("--samplers", type=csv_list(str, "--samplers"), help=f"comma-separated: {', '.join(METHODS)}")
    a("--metric", help=f"one of {', '.join(metric_names())} (default: each target's own)")
    a("--budgets", type=csv_list(int, "--budgets"), help="gradient evaluations per chain, e.g. 100,200,400")
    a("--chains", type=scalar(int, "--chains"), help="chains per cell (sample-based metrics; default 20000)")
    a("--seeds", type=scalar(int, "--seeds"), help="number of seeds (sample-based metrics; default 1)")
    a("--seed", type=scalar(int, "--seed"), help="first seed (default 0)")
    a("--horizon", type=scalar(float, "--horizon"), help="integration time T = steps x step size")
    a("--start", choices=("target", "standard"), help="chains start at the target (default) or N(0, I)")
    a("--k-schedule", dest="k_schedule", choices=("growing", "fixed"),
      help="PLMC's and PULMC's K: ceil(k_scale/eta) (default) or --k-fixed")
    a("--k-scale", dest="k_scale", type=scalar(float, "--k-scale"), help="growing schedule constant (default 1)")
    a("--k-fixed", dest="k_fixed", type=scalar(int, "--k-fixed"), help="K for the fixed schedule (default 10)")
    a("--friction", type=scalar(float, "--friction"),
      help="friction gamma of the underdamped samplers ulmc, pulmc, rulmc (default 2)")
    a("--dims", type=csv_list(int, "--dims"), help="scaling study: dimensions (default 2,10,100)")
    a("--kappas", type=csv_list(float, "--kappas"), help="scaling study: condition numbers (default 1,10,100)")
    a("--step-sizes", dest="step_sizes", type=csv_list(float, "--step-sizes"), help="bias/theorem studies")
    a("--Ks", type=csv_list(int, "--Ks"), help="theorem study: values of K (default 2,4,16,64)")
    a("--target-options", dest="target_options",
      help="keyword arguments of the targets' factories, e.g. separation=6 (mixture) or barrier=4 (double_well)")
    a("--device", help="cpu or cuda")
    a("--dtype", choices=("float64", "float32"))
    a("--noise", help="samplers' Gaussian noise: vector (default; float64 Box-Muller vectorized, the law of "
                      "torch.randn at half the cost), exact (torch.randn in the dtype) or fast (float32 normals up-cast)")
    add_run_flags(p, "results/rate_sweep", "a small version: fewer budgets and chains")
    return p


def config_from_args(argv=None) -> SweepConfig:
    return cli.config_from_args(build_parser(), SweepConfig, argv)


def main(argv=None) -> int:
    from labs.study import run_main

    return run_main(STUDY, lambda: config_from_args(argv))


if __name__ == "__main__":
    sys.exit(main())

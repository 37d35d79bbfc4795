"""Diffusion samplers on exact scores: ``python -m labs.diffusion_sweep``.

The claim tested (Kandasamy & Nagaraj 2024; docs/method.md section 7): Poisson-midpoint DDPM
matches 1000-step DDPM with 50-80 network calls and beats ODE solvers (DDIM, DPM-Solver) at a
similar number of calls.  Here the data laws are Gaussian mixtures, whose diffused scores are
exact (:class:`targets.diffusion.DiffusedMixture`), and every sampler starts from exact samples
of ``p_T``: the only error left is the sampler's discretization error.

Each cell runs one sampler at one number of network calls (strided DDPM with either variance,
DDIM, DPM-Solver++(2M) / (3M) with uniform or logSNR spacing: ``steps`` calls; Poisson-midpoint
DDPM over the full ``T``-step chain with ``K`` fine steps per step: a random number of calls
per sample, about ``2 T / K``, reported as mean and spread) on ``chains`` samples and measures,
against an exact sample of the data of the same size (the same one for every sampler of a
seed), each with a 95% interval that includes the sampling error:

``sliced_w2``  sliced W2 on all samples (``metrics.sliced_w2``); interval from batch means over
               10 disjoint batch pairs (sampling error) combined with the projection error;
``w2``         exact W2 on subsamples of ``w2_points`` (``metrics.w2_empirical``, batch-means interval);
``mmd``        unbiased MMD^2 on ``mmd_points`` (``metrics.mmd``; Gaussian kernel with one
               bandwidth per target: ``mmd_bandwidth_factor`` (default 1/4) times the median
               heuristic on exact data -- the median heuristic itself is about the size of the
               whole data set and blind to the width of the modes), U-statistic interval.

Noise floor: the same metrics between two independent exact samples of the same sizes
(``floor_reps`` repetitions; its interval is the 95% prediction interval of one more such
value).  A sampler whose lower bound is at or below the floor's upper bound is
indistinguishable from exact sampling at this sample size.

Outputs in ``--out``: ``results.csv`` (tidy rows, written cell by cell: an interrupted run keeps
its work and ``--resume`` completes it), ``summary.json`` (``{"results": [...], "noise_floor":
[...], "verdicts": [...], "settings": {...}}``), ``error_vs_calls.png`` (log-log),
``samples_2d.png`` (2-D samples per sampler) and a printed table with the verdict.

Cells run one after another here, or on a Dask cluster with ``--executor dask`` (``--workers N``
starts a local one, ``--address`` joins a running one): see ``labs/executor.py``.  The rows are
the same either way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Union

import numpy as np
import torch

from labs import cli
from labs.cli import LabParser, add_run_flags, csv_list, scalar
from labs import study
from labs.store import cell_key
from labs.study import RunConfig
from labs.study import as_float as _f
from targets.validation import check_int, check_real

__all__ = ["DiffusionSweepConfig", "QUICK", "apply_quick", "COLUMNS", "TARGETS", "METRICS", "plan_cells", "run_cell", "summarize",
           "run_sweep", "main", "parse_sampler", "build_target", "figure_samples", "STUDY", "DiffusionStudy"]

COLUMNS = ["target", "dim", "schedule", "T", "kind", "sampler", "method", "spacing", "steps", "K", "nfe",
           "nfe_sd", "nfe_min", "nfe_max", "chains", "seed", "metric", "n_points", "value", "ci_low", "ci_high",
           "se", "status", "n_diverged", "seconds", "device", "dtype", "cell"]

TARGETS = ("ring", "gmm")
METRICS = ("sliced_w2", "w2", "mmd")
ODE_METHODS = ("ddim", "dpmpp_2m", "dpmpp_3m")
PM_METHODS = ("pm_ddpm_small", "pm_ddpm_large")
STRIDED_METHODS = ("ddpm_small", "ddpm_large") + ODE_METHODS
_BATCHES = 10
HEADLINE_CALLS = (45.0, 85.0)  # "50-80 calls": K whose mean call count falls here


class DiffusionCell(TypedDict, total=False):
    """One unit of the diffusion study's work: plain JSON-able settings, hashed into ``cell`` and
    sent to a Dask worker as they are (``""`` marks a setting that does not apply).  The target's
    own settings (``_target_spec``: its name, dimension and mixture parameters) come with it."""

    target: str
    dim: int
    schedule: str                 # DiffusionSchedule.to_json()
    T: int
    chains: int
    seed: int
    metrics: list
    w2_points: int
    mmd_points: int
    mmd_bandwidth_factor: float
    n_projections: int
    device: str
    dtype: str
    kind: str                     # floor (exact data against exact data) or run
    sampler: str                  # a label such as "dpmpp_2m:logsnr" ("exact" in a floor cell)
    method: str
    spacing: str
    steps: Union[int, str]        # strided samplers: network calls
    K: Union[int, str]            # Poisson-midpoint DDPM: fine steps per block
    expected_nfe: float
    reps: int                     # floor cells: repetitions
    cell: str                     # labs.store.cell_key of the settings above


@dataclass
class DiffusionSweepConfig(RunConfig):
    """Every setting of ``python -m labs.diffusion_sweep`` (the flags mirror these); the settings
    every lab shares come from :class:`labs.study.RunConfig`."""

    targets: list = field(default_factory=lambda: ["ring", "gmm"])
    dim: int = 32                       # dimension of the "gmm" target ("ring" is 2-D)
    components: int = 4                 # "gmm": number of components
    gmm_std: list = field(default_factory=lambda: [0.05, 0.3])  # "gmm": component std range (log-uniform)
    gmm_mean_scale: float = 0.3         # "gmm": component means ~ N(0, scale^2 I)
    ring_sigma: float = 0.1             # "ring": 8 modes on the unit circle, std ring_sigma
    schedule: str = "linear"            # "linear" (DDPM 1e-4 .. 0.02) or "cosine"
    T: int = 1000
    samplers: list = field(default_factory=lambda: ["ddpm_small", "ddpm_large", "ddim", "dpmpp_2m",
                                                    "dpmpp_2m:logsnr", "pm_ddpm_small", "pm_ddpm_large"])
    nfe: list = field(default_factory=lambda: [10, 20, 49, 78, 200, 1000])  # strided samplers' calls
    Ks: list = field(default_factory=lambda: [100, 40, 25, 10, 4])            # Poisson-midpoint DDPM
    metrics: list = field(default_factory=lambda: list(METRICS))
    chains: int = 10000
    w2_points: int = 1000
    mmd_points: int = 2000
    mmd_bandwidth_factor: float = 0.25  # MMD bandwidth = factor x median heuristic on exact data
    n_projections: int = 200
    floor_reps: int = 5
    seed: int = 0
    out: str = "results/diffusion_sweep"

    def validate(self) -> "DiffusionSweepConfig":
        from targets.diffusion import SCHEDULE_KINDS

        if not self.targets:
            raise ValueError("no target given")
        for t in self.targets:
            if t not in TARGETS:
                raise ValueError(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"a target is listed twice: {self.targets!r}")
        for name in ("dim", "components", "T", "chains", "w2_points", "mmd_points", "n_projections", "floor_reps"):
            check_int(getattr(self, name), name, 1)
        check_int(self.seed, "seed", 0)
        if self.chains < 4 * _BATCHES:
            raise ValueError(f"chains must be at least {4 * _BATCHES} (10 batches for the intervals), got {self.chains}")
        for name in ("w2_points", "mmd_points"):
            if getattr(self, name) < 2 * _BATCHES:
                raise ValueError(f"{name} must be at least {2 * _BATCHES}, got {getattr(self, name)}")
        if self.n_projections < 2:
            raise ValueError(f"n_projections must be at least 2, got {self.n_projections}")
        if self.floor_reps < 2:
            raise ValueError(f"floor_reps must be at least 2 (a prediction interval needs a spread), got {self.floor_reps}")
        if not isinstance(self.gmm_std, (list, tuple)) or len(self.gmm_std) != 2:
            raise ValueError(f"gmm_std must be [low, high], got {self.gmm_std!r}")
        for v in self.gmm_std:
            check_real(v, "gmm_std", positive=True)
        if self.gmm_std[0] > self.gmm_std[1]:
            raise ValueError(f"gmm_std must be [low, high] with low <= high, got {self.gmm_std!r}")
        check_real(self.ring_sigma, "ring_sigma", positive=True)
        check_real(self.mmd_bandwidth_factor, "mmd_bandwidth_factor", positive=True)
        check_real(self.gmm_mean_scale, "gmm_mean_scale", nonnegative=True)
        if self.schedule not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULE_KINDS)}")
        if not self.samplers:
            raise ValueError("no sampler given")
        for s in self.samplers:
            parse_sampler(s)
        if len(set(self.samplers)) != len(self.samplers):
            raise ValueError(f"a sampler is listed twice: {self.samplers!r}")
        strided = any(parse_sampler(s)[0] in STRIDED_METHODS for s in self.samplers)
        pm = any(parse_sampler(s)[0] in PM_METHODS for s in self.samplers)
        if strided and not self.nfe:
            raise ValueError("empty list of network calls (--nfe) for the strided samplers")
        for n in self.nfe:
            check_int(n, "network calls (nfe)", 1)
            if n > self.T:
                raise ValueError(f"network calls (nfe) must be at most T={self.T} for a strided sampler, got {n}")
        if pm and not self.Ks:
            raise ValueError("empty list of K (--Ks) for Poisson-midpoint DDPM")
        for K in self.Ks:
            check_int(K, "K", 1)
            if K > self.T:
                raise ValueError(f"K must be at most T={self.T}, got {K}")
        if not self.metrics:
            raise ValueError("no metric given")
        for m in self.metrics:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(METRICS)}")
        return super().validate()


QUICK = dict(chains=2000, nfe=[10, 49, 78, 1000], Ks=[40, 25, 10], floor_reps=3, w2_points=500, mmd_points=1000,
             samplers=["ddpm_small", "ddim", "dpmpp_2m:logsnr", "pm_ddpm_small"])


def apply_quick(cfg: DiffusionSweepConfig) -> DiffusionSweepConfig:
    """``--quick``: every setting of :data:`QUICK` that was left at its default takes the quick
    value (:func:`labs.study.apply_quick`, the same rule in every lab)."""
    return study.apply_quick(cfg, QUICK)


def parse_sampler(label: str):
    """``"name"`` or ``"name:spacing"`` -> ``(name, spacing)``; ValueError on an unknown one."""
    from samplers.diffusion import DIFFUSION_SAMPLERS, SPACINGS

    if not isinstance(label, str):
        raise ValueError(f"a sampler must be a name, got {label!r}")
    name, _, spacing = label.partition(":")
    if name not in DIFFUSION_SAMPLERS:
        raise ValueError(f"unknown sampler {label!r}; known: {', '.join(DIFFUSION_SAMPLERS)} "
                         f"(strided ones may take ':{'|:'.join(SPACINGS)}')")
    if name in PM_METHODS:
        if spacing:
            raise ValueError(f"{name} runs the full chain and takes no spacing, got {label!r}")
        return name, ""
    spacing = spacing or "uniform"
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing in {label!r}; known: {', '.join(SPACINGS)}")
    return name, spacing


# ------------------------------------------------------------------------------------------------
# planning


def _headline_Ks(cfg) -> list:
    from samplers.diffusion import expected_pm_nfe

    lo, hi = HEADLINE_CALLS
    return [K for K in cfg.Ks if lo <= expected_pm_nfe(cfg.T, K) <= hi]


def strided_grid(cfg) -> list:
    """``cfg.nfe`` plus the calls of Poisson-midpoint DDPM at the headline ``K`` (rounded), so that
    every ODE solver is also measured at PM-DDPM's own cost."""
    from samplers.diffusion import expected_pm_nfe

    extra = [int(round(expected_pm_nfe(cfg.T, K))) for K in _headline_Ks(cfg)] if any(
        parse_sampler(s)[0] in PM_METHODS for s in cfg.samplers) else []
    return sorted(set(cfg.nfe) | set(extra))


def _target_spec(cfg, name) -> dict:
    if name == "ring":
        return dict(target="ring", dim=2, target_params=json.dumps(dict(n_modes=8, radius=1.0, sigma=cfg.ring_sigma)))
    return dict(target="gmm", dim=cfg.dim, target_params=json.dumps(dict(
        n_components=cfg.components, std_range=list(cfg.gmm_std), mean_scale=cfg.gmm_mean_scale, seed=0)))


def plan_cells(cfg: DiffusionSweepConfig) -> list[DiffusionCell]:
    """Every cell of the sweep as a plain, JSON-able dict (one unit of resumable work)."""
    from samplers.diffusion import expected_pm_nfe
    from targets.diffusion import DiffusionSchedule

    schedule = DiffusionSchedule(kind=cfg.schedule, T=cfg.T).to_json()
    cells = []
    for tname in cfg.targets:
        base = dict(_target_spec(cfg, tname), schedule=schedule, T=cfg.T, chains=cfg.chains, seed=cfg.seed,
                    metrics=list(cfg.metrics), w2_points=cfg.w2_points, mmd_points=cfg.mmd_points,
                    mmd_bandwidth_factor=cfg.mmd_bandwidth_factor,
                    n_projections=cfg.n_projections, device=cfg.device, dtype=cfg.dtype)
        cells.append(dict(base, kind="floor", sampler="exact", method="", spacing="", steps="", K="",
                          reps=cfg.floor_reps))
        for label in cfg.samplers:
            method, spacing = parse_sampler(label)
            if method in PM_METHODS:
                for K in cfg.Ks:
                    cells.append(dict(base, kind="run", sampler=label, method=method, spacing="", steps="", K=K,
                                      expected_nfe=expected_pm_nfe(cfg.T, K)))
            else:
                for n in strided_grid(cfg):
                    cells.append(dict(base, kind="run", sampler=label, method=method, spacing=spacing, steps=n, K=""))
    for c in cells:
        c["cell"] = cell_key(c)
    return cells


# ------------------------------------------------------------------------------------------------
# one cell


def _dtype(name):
    return {"float64": torch.float64, "float32": torch.float32}[name]


def build_target(cell: dict):
    """The :class:`DiffusedMixture` a cell names (its data law and schedule), on its device/dtype."""
    from targets import GaussianMixture
    from targets.diffusion import DiffusedMixture, DiffusionSchedule, random_mixture

    p = json.loads(cell["target_params"])
    kw = dict(dtype=_dtype(cell["dtype"]), device=cell["device"])
    if cell["target"] == "ring":
        data = GaussianMixture.ring(p["n_modes"], p["radius"], p["sigma"], **kw)
    else:
        data = random_mixture(cell["dim"], p["n_components"], p["seed"], mean_scale=p["mean_scale"],
                              std_range=tuple(p["std_range"]), **kw)
    return DiffusedMixture(data, DiffusionSchedule.from_json(cell["schedule"]))


def _gen(device, seed: int) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def _cached(cache, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _target_key(cell):
    return (cell["target"], cell["dim"], cell["target_params"], cell["schedule"], cell["device"], cell["dtype"])


def _bandwidth(dm, device, factor: float) -> float:
    """The MMD kernel's bandwidth for a target: ``factor`` x the median heuristic on 2000 exact data points."""
    import metrics as M

    return factor * M.median_bandwidth(dm.sample_data(2000, _gen(device, 7)))


def _sliced(x, y, n_projections: int, seed: int):
    """Sliced W2 with an interval for the sampling error as well as the projection error.

    ``SW2^2`` on the full samples; the sampling standard error at full size is
    ``sd(SW2^2 of 10 disjoint batch pairs) / sqrt(10)`` (batch means, as in ``w2_empirical``),
    combined in quadrature with the projection error; normal interval on ``SW2^2``, mapped by
    square roots.  Conservative at the noise floor (the variance there decays faster than 1/n).
    """
    import metrics as M
    from metrics.uncertainty import normal_z

    full = M.sliced_w2(x, y, n_projections=n_projections, seed=seed)
    b = _BATCHES
    vals = np.array([M.sliced_w2(x[i::b], y[i::b], n_projections=n_projections, seed=seed).extra["w2_squared"]
                     for i in range(b)])
    se2 = math.sqrt(vals.var(ddof=1) / b + full.extra["w2_squared_se"] ** 2)
    sq = full.extra["w2_squared"]
    z = normal_z(0.95)
    lo, hi = math.sqrt(max(sq - z * se2, 0.0)), math.sqrt(max(sq + z * se2, 0.0))
    return dict(value=full.value, ci_low=lo, ci_high=hi, se=se2 / (2 * full.value) if full.value > 0 else math.nan,
                n_points=x.shape[0])


def measure(metric: str, x, ref, cell: dict, bandwidth: float, seed: int) -> dict:
    """One metric of samples ``x`` against the exact sample ``ref``: value, 95% interval, se, points."""
    import metrics as M

    if metric == "sliced_w2":
        return _sliced(x, ref, cell["n_projections"], seed)
    if metric == "w2":
        m = min(cell["w2_points"], x.shape[0])
        r = M.w2_empirical(x[:m], ref[:m], ci="batch", n_batches=_BATCHES, seed=seed)
    else:
        m = min(cell["mmd_points"], x.shape[0])
        r = M.mmd(x[:m], ref[:m], bandwidth=bandwidth)
    return dict(value=float(r.value), ci_low=float(r.ci[0]), ci_high=float(r.ci[1]),
                se=float(r.se) if r.se is not None else math.nan, n_points=m)


def _row(cell, **kw) -> dict:
    row = {c: cell.get(c, "") for c in COLUMNS}
    row.update(kw)
    return row


def run_cell(cell: DiffusionCell, cache: dict) -> list:
    """Run one cell and return its rows (one per metric).  A pure function of ``cell``: ``cache``
    only saves rebuilding the target, its start samples and its reference sample."""
    import samplers.diffusion as D

    dm = _cached(cache, _target_key(cell), lambda: build_target(cell))
    device, seed, n = cell["device"], int(cell["seed"]), int(cell["chains"])
    factor = float(cell["mmd_bandwidth_factor"])
    bw = _cached(cache, _target_key(cell) + ("bandwidth", factor), lambda: _bandwidth(dm, device, factor))
    if cell["kind"] == "floor":
        return _floor_rows(cell, dm, bw)
    xT = _cached(cache, _target_key(cell) + ("xT", seed, n),
                 lambda: dm.sample_xt(n, dm.T, _gen(device, 1_000_003 * seed + 11)))
    ref = _cached(cache, _target_key(cell) + ("ref", seed, n),
                  lambda: dm.sample_data(n, _gen(device, 1_000_003 * seed + 12)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if cell["method"] in PM_METHODS:
            res = D.sample(cell["method"], dm, xT, dm.schedule, K=int(cell["K"]), seed=1_000_003 * seed + 13)
        else:
            res = D.sample(cell["method"], dm, xT, dm.schedule, steps=int(cell["steps"]), spacing=cell["spacing"],
                           seed=1_000_003 * seed + 13)
    seconds = time.perf_counter() - t0
    nfe = res.nfe.double()
    common = dict(nfe=float(nfe.mean()), nfe_sd=float(nfe.std()) if nfe.numel() > 1 else 0.0,
                  nfe_min=int(res.nfe.min()), nfe_max=int(res.nfe.max()), seconds=round(seconds, 3))
    if res.n_diverged:
        return [_row(cell, metric=m, status="diverged", n_diverged=res.n_diverged, value="", **common)
                for m in cell["metrics"]]
    rows = []
    for m in cell["metrics"]:
        r = measure(m, res.x, ref, cell, bw, seed=seed + 1)
        rows.append(_row(cell, metric=m, status="ok", n_diverged=0, **common, **r))
    return rows


def _floor_rows(cell, dm, bw) -> list:
    """The metrics between two independent exact samples (``reps`` times): mean and 95% prediction interval."""
    from scipy import stats

    device, seed, n, reps = cell["device"], int(cell["seed"]), int(cell["chains"]), int(cell["reps"])
    vals = {m: [] for m in cell["metrics"]}
    points = {}
    t0 = time.perf_counter()
    for r in range(reps):
        x = dm.sample_data(n, _gen(device, 1_000_003 * seed + 100 + 2 * r))
        y = dm.sample_data(n, _gen(device, 1_000_003 * seed + 101 + 2 * r))
        for m in cell["metrics"]:
            out = measure(m, x, y, cell, bw, seed=seed + 1)
            vals[m].append(out["value"])
            points[m] = out["n_points"]
    rows = []
    for m, v in vals.items():
        v = np.asarray(v)
        sd = v.std(ddof=1)
        half = stats.t.ppf(0.975, reps - 1) * sd * math.sqrt(1.0 + 1.0 / reps)
        rows.append(_row(cell, metric=m, n_points=points[m], value=float(v.mean()), ci_low=float(v.mean() - half),
                         ci_high=float(v.mean() + half), se=float(sd / math.sqrt(reps)), status="ok", n_diverged=0,
                         nfe="", seconds=round(time.perf_counter() - t0, 3)))
    return rows


# ------------------------------------------------------------------------------------------------
# summary and verdicts




_LABELS = {"ddpm_small": "DDPM (beta_tilde)", "ddpm_large": "DDPM (beta)", "ddim": "DDIM",
           "dpmpp_2m": "DPM-Solver++(2M)", "dpmpp_3m": "DPM-Solver++(3M)",
           "pm_ddpm_small": "PM-DDPM (beta_tilde)", "pm_ddpm_large": "PM-DDPM (beta)"}


def sampler_label(label: str) -> str:
    method, spacing = parse_sampler(label)
    name = _LABELS.get(method, method)
    return f"{name}, logSNR" if spacing == "logsnr" else name


def _fmt(r) -> str:
    v, lo, hi = _f(r["value"]), _f(r["ci_low"]), _f(r["ci_high"])
    return f"{v:.4g} [{lo:.4g}, {hi:.4g}]"


def at_floor(value, floor) -> bool:
    """Whether ``value`` is consistent with exact sampling: inside the noise floor's 95% prediction
    interval (the range in which the metric between two exact samples falls 95% of the time)."""
    if floor is None:
        return False
    v = _f(value)
    return _f(floor["ci_low"]) <= v <= _f(floor["ci_high"])


def _compare(a, b, floor) -> str:
    """``"lower"``, ``"higher"`` or ``"tie"`` for row ``a`` against row ``b``: disjoint 95% intervals
    decide; overlapping intervals, or both values inside the noise floor's prediction interval, tie."""
    alo, ahi = _f(a["ci_low"]), _f(a["ci_high"])
    blo, bhi = _f(b["ci_low"]), _f(b["ci_high"])
    if at_floor(a["value"], floor) and at_floor(b["value"], floor):
        return "tie"
    if ahi < blo:
        return "lower"
    if alo > bhi:
        return "higher"
    return "tie"


def summarize(rows: list, cfg: DiffusionSweepConfig) -> dict:
    """Results, noise floors and verdicts from the tidy rows."""
    from samplers.diffusion import expected_pm_nfe

    results, floors, problems = [], [], []
    floor_of = {}
    runs = {}
    for r in rows:
        if r["kind"] == "floor":
            floor_of[(r["target"], r["metric"])] = r
            floors.append(dict(target=r["target"], dim=int(r["dim"]), metric=r["metric"], value=_f(r["value"]),
                               ci=[_f(r["ci_low"]), _f(r["ci_high"])], n_points=int(r["n_points"]),
                               reps=cfg.floor_reps, chains=int(r["chains"])))
            continue
        if r["status"] != "ok":
            problems.append(f"{r['target']} {r['sampler']} steps={r['steps'] or '-'} K={r['K'] or '-'}: "
                            f"{r['n_diverged']} sample(s) diverged (not measured)")
            continue
        key = (r["target"], r["sampler"], str(r["steps"]), str(r["K"]), r["metric"])
        runs[key] = r
        results.append(dict(target=r["target"], dim=int(r["dim"]), sampler=r["sampler"], nfe=_f(r["nfe"]),
                            nfe_sd=_f(r["nfe_sd"]), steps=int(r["steps"]) if r["steps"] not in ("", None) else None,
                            K=int(r["K"]) if r["K"] not in ("", None) else None, metric=r["metric"],
                            value=_f(r["value"]), ci=[_f(r["ci_low"]), _f(r["ci_high"])], se=_f(r.get("se")),
                            n_points=int(r["n_points"]), seconds=_f(r.get("seconds"))))
    for res in results:  # the floor rows may come after the runs in the file
        fl = floor_of.get((res["target"], res["metric"]))
        res["at_noise_floor"] = at_floor(res["value"], fl)

    verdicts, tallies = [], {"match": [0, 0], "beat": [0, 0]}
    ode = [s for s in cfg.samplers if parse_sampler(s)[0] in ODE_METHODS]
    for target in cfg.targets:
        tr = {k: v for k, v in runs.items() if k[0] == target}
        if not tr:
            continue
        dim = next(iter(tr.values()))["dim"]
        for pm in [s for s in cfg.samplers if parse_sampler(s)[0] in PM_METHODS]:
            ddpm = "ddpm_small" if pm == "pm_ddpm_small" else "ddpm_large"
            for K in _headline_Ks(cfg):
                calls = expected_pm_nfe(cfg.T, K)
                pm_rows = {m: tr.get((target, pm, "", str(K), m)) for m in cfg.metrics}
                if any(v is None for v in pm_rows.values()):
                    continue
                sd = _f(next(iter(pm_rows.values()))["nfe_sd"])
                head = f"{target} (d={dim}) {sampler_label(pm)} K={K}, {calls:.1f} +- {sd:.1f} calls"
                # (1) against the full-chain DDPM with the same variance
                full = {m: tr.get((target, ddpm, str(cfg.T), "", m)) for m in cfg.metrics}
                if any(v is None for v in full.values()):
                    verdicts.append(f"{head}: no {cfg.T}-step {sampler_label(ddpm)} in this run to compare with")
                else:
                    cmp = {m: _compare(pm_rows[m], full[m], floor_of.get((target, m))) for m in cfg.metrics}
                    ok = all(c != "higher" for c in cmp.values())
                    tallies["match"][0] += ok
                    tallies["match"][1] += 1
                    worse = [m for m, c in cmp.items() if c == "higher"]
                    word = ("MATCHED" if ok else f"did NOT match (larger error in {', '.join(worse)})")
                    detail = "; ".join(f"{m} {_fmt(pm_rows[m])} vs {_fmt(full[m])}" for m in cfg.metrics)
                    verdicts.append(f"{head} vs {sampler_label(ddpm)} with {cfg.T} calls: {word}: {detail}")
                # (2) against every ODE solver at the same number of calls
                n_eq = int(round(calls))
                parts = []
                for o in ode:
                    orow = {m: tr.get((target, o, str(n_eq), "", m)) for m in cfg.metrics}
                    if any(v is None for v in orow.values()):
                        parts.append(f"{sampler_label(o)}: not run at {n_eq} calls")
                        continue
                    cmp = {m: _compare(pm_rows[m], orow[m], floor_of.get((target, m))) for m in cfg.metrics}
                    n_low = sum(c == "lower" for c in cmp.values())
                    n_high = sum(c == "higher" for c in cmp.values())
                    beat = n_low > 0 and n_high == 0
                    tallies["beat"][0] += beat
                    tallies["beat"][1] += 1
                    if beat:
                        word = f"BEATEN by PM-DDPM (PM-DDPM lower on {n_low}/{len(cmp)} metrics, higher on none)"
                    elif n_high and not n_low:
                        word = f"NOT beaten (PM-DDPM higher on {n_high}/{len(cmp)} metrics)"
                    elif n_high and n_low:
                        word = f"NOT beaten, mixed (PM-DDPM lower on {n_low}, higher on {n_high} of {len(cmp)} metrics)"
                    else:
                        word = "NOT beaten (no significant difference on any metric)"
                    parts.append(f"{sampler_label(o)}: {word}")
                if parts:
                    verdicts.append(f"{head} vs ODE solvers at {n_eq} calls: " + "; ".join(parts))
    overall = []
    m, mt = tallies["match"]
    b, bt = tallies["beat"]
    if mt:
        overall.append(f"Claim 'PM-DDPM at 50-80 calls matches {cfg.T}-step DDPM': held in {m} of {mt} cases "
                       "(target x K x variance; held = on no metric are the 95% intervals disjoint with PM-DDPM higher; "
                       "values both inside the noise floor count as a tie).")
    if bt:
        overall.append(f"Claim 'PM-DDPM beats ODE solvers at equal calls': held in {b} of {bt} comparisons "
                       "(beat = lower on at least one metric and higher on none).")
    if not mt and not bt:
        overall.append("No verdict: the run has no Poisson-midpoint DDPM with 45-85 mean calls, or nothing to compare it with.")
    return {"results": results, "noise_floor": floors, "verdicts": verdicts, "overall": overall, "problems": problems}


def print_table(summary: dict, cfg, elapsed: float, out: Path, file=None) -> None:
    file = sys.stdout if file is None else file
    p = lambda *a: print(*a, file=file)  # noqa: E731
    mets = list(cfg.metrics)
    names = {"sliced_w2": "sliced W2", "w2": "W2 (subsample)", "mmd": "MMD^2"}
    p("")
    p("== labs.diffusion_sweep: error against exact data samples vs network calls per sample (95% intervals) ==")
    p(f"   schedule {cfg.schedule}, T={cfg.T}; {cfg.chains} samples per cell; * = value inside the noise floor's "
      "95% prediction interval (indistinguishable from exact sampling)")
    for target in cfg.targets:
        rs = [r for r in summary["results"] if r["target"] == target]
        if not rs:
            continue
        dim = rs[0]["dim"]
        p("")
        p(f"-- {target} (d={dim}) --")
        p(f"{'sampler':<30}{'calls':>15}  " + "".join(f"{names[m]:<34}" for m in mets))
        fl = {f["metric"]: f for f in summary["noise_floor"] if f["target"] == target}
        if fl:
            p(f"{'noise floor (exact vs exact)':<30}{'':>15}  " + "".join(
                f"{fl[m]['value']:.4g} [{fl[m]['ci'][0]:.4g}, {fl[m]['ci'][1]:.4g}]".ljust(34) if m in fl else " " * 34
                for m in mets))
        by = {}
        for r in rs:
            by.setdefault((r["sampler"], r["steps"], r["K"]), {})[r["metric"]] = r
        order = sorted(by, key=lambda k: (list(cfg.samplers).index(k[0]) if k[0] in cfg.samplers else 99,
                                         -(k[2] or 0), k[1] or 0))
        for k in order:
            row = by[k]
            any_r = next(iter(row.values()))
            calls = f"{any_r['nfe']:.1f}+-{any_r['nfe_sd']:.1f}" if k[2] else f"{any_r['nfe']:.0f}"
            name = sampler_label(k[0]) + (f" K={k[2]}" if k[2] else "")
            cells = ""
            for m in mets:
                if m in row:
                    r = row[m]
                    s = f"{r['value']:.4g} [{r['ci'][0]:.4g}, {r['ci'][1]:.4g}]{'*' if r['at_noise_floor'] else ''}"
                else:
                    s = "-"
                cells += s.ljust(34)
            p(f"{name:<30}{calls:>15}  {cells}")
    study.print_block(p, "Verdict (exact scores: every error is discretization error):",
                      [*summary["verdicts"], *summary["overall"]])
    study.print_block(p, "Problems:", summary["problems"])
    p("")
    p(f"done in {elapsed:.1f} s; results in {out}/results.csv, summary.json, error_vs_calls.png"
      + (", samples_2d.png" if any(t == "ring" for t in cfg.targets) else ""))


# ------------------------------------------------------------------------------------------------
# figures


FIGURE_SAMPLERS = [("ddpm_small", "T"), ("pm_ddpm_small", 40), ("pm_ddpm_small", 25), ("ddpm_small", 49),
                   ("ddim", 49), ("dpmpp_2m", 49), ("dpmpp_2m:logsnr", 49), ("ddpm_large", "T")]


def figure_samples(cfg, n: int = 2000) -> dict:
    """2-D samples per sampler for the figure (the ring target; ``n`` samples each), by label."""
    import samplers.diffusion as D

    cell = dict(_target_spec(cfg, "ring"), schedule=plan_cells_schedule(cfg), device=cfg.device, dtype=cfg.dtype)
    dm = build_target(cell)
    xT = dm.sample_xt(n, dm.T, _gen(cfg.device, 1_000_003 * cfg.seed + 21))
    out = {"exact data": dm.sample_data(n, _gen(cfg.device, 1_000_003 * cfg.seed + 22)).cpu().numpy()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for label, arg in FIGURE_SAMPLERS:
            if label not in cfg.samplers:
                continue
            method, spacing = parse_sampler(label)
            if method in PM_METHODS:
                if arg not in cfg.Ks:
                    continue
                res = D.sample(method, dm, xT, dm.schedule, K=arg, seed=cfg.seed + 23)
                name = f"{sampler_label(label)} K={arg}\n{res.nfe_mean:.1f} calls"
            else:
                steps = dm.T if arg == "T" else arg
                if steps not in strided_grid(cfg):
                    continue
                res = D.sample(method, dm, xT, dm.schedule, steps=steps, spacing=spacing, seed=cfg.seed + 23)
                name = f"{sampler_label(label)}\n{steps} calls"
            out[name] = res.x.cpu().numpy()
    return out


def plan_cells_schedule(cfg) -> str:
    from targets.diffusion import DiffusionSchedule

    return DiffusionSchedule(kind=cfg.schedule, T=cfg.T).to_json()


# ------------------------------------------------------------------------------------------------
# driver


class DiffusionStudy:
    """The diffusion sweep as a :class:`labs.study.Study` (:func:`labs.study.run_study` drives it)."""

    name = "diffusion_sweep"
    columns = COLUMNS
    quick = QUICK
    plan = staticmethod(plan_cells)

    @property
    def run_cell(self):
        # the module's function as it is when the study runs: that object goes to the executor
        # (a Dask worker receives it pickled), so a wrapped or replaced run_cell is honoured
        return run_cell

    @staticmethod
    def summarize(rows: list, cfg: DiffusionSweepConfig) -> dict:
        summary = summarize(rows, cfg)
        summary["settings"] = dict(strided_nfe=strided_grid(cfg), headline_Ks=_headline_Ks(cfg),
                                   schedule_config=json.loads(plan_cells_schedule(cfg)))
        return summary

    @staticmethod
    def plot(rows, summary, cfg, out) -> None:
        from labs.diffusion.plotting import plot_error_vs_calls, plot_samples_2d

        plot_error_vs_calls(rows, summary, cfg, Path(out) / "error_vs_calls.png", sampler_label=sampler_label)
        if "ring" in cfg.targets:
            plot_samples_2d(figure_samples(cfg), cfg, Path(out) / "samples_2d.png")

    print_table = staticmethod(print_table)


STUDY = DiffusionStudy()


def run_sweep(cfg: DiffusionSweepConfig) -> dict:
    """Run the sweep with settings ``cfg``; returns the summary (also in ``cfg.out``)."""
    return study.run_study(STUDY, cfg)


def build_parser() -> argparse.ArgumentParser:
    from samplers.diffusion import DIFFUSION_SAMPLERS

    p = LabParser(prog="python -m labs.diffusion_sweep", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Defaults: targets ring (2-D, 8 modes, std 0.1) and gmm (d=32, 4 components, stds 0.05-0.3); "
                       "DDPM linear schedule, T=1000; samplers " + ", ".join(DiffusionSweepConfig().samplers)
                       + "; strided calls 10,20,49,78,200,1000; PM-DDPM K=100,40,25,10,4; 10000 samples per cell; "
                       "a few minutes on 2 CPU cores.  Samplers: " + ", ".join(DIFFUSION_SAMPLERS)
                       + " (strided ones take ':uniform' or ':logsnr').")
    a = p.add_argument
    a("--targets", type=csv_list(str, "--targets"), help=f"comma-separated: {', '.join(TARGETS)}")
    a("--dim", type=scalar(int, "--dim"), help="dimension of the gmm target (default 32)")
    a("--components", type=scalar(int, "--components"), help="components of the gmm target (default 4)")
    a("--gmm-std", dest="gmm_std", type=csv_list(float, "--gmm-std"), help="gmm component std range low,high")
    a("--ring-sigma", dest="ring_sigma", type=scalar(float, "--ring-sigma"), help="std of the ring's modes (default 0.1)")
    a("--schedule", help="linear (DDPM, default) or cosine")
    a("--T", type=scalar(int, "--T"), help="diffusion steps of the schedule (default 1000)")
    a("--samplers", type=csv_list(str, "--samplers"), help="comma-separated sampler names")
    a("--nfe", type=csv_list(int, "--nfe"), help="network calls of the strided samplers, e.g. 10,20,50,1000")
    a("--Ks", type=csv_list(int, "--Ks"), help="Poisson-midpoint DDPM fine steps per step, e.g. 40,25")
    a("--metrics", type=csv_list(str, "--metrics"), help=f"comma-separated: {', '.join(METRICS)}")
    a("--chains", type=scalar(int, "--chains"), help="samples per cell (default 10000)")
    a("--w2-points", dest="w2_points", type=scalar(int, "--w2-points"), help="subsample for exact W2 (default 1000)")
    a("--mmd-points", dest="mmd_points", type=scalar(int, "--mmd-points"), help="subsample for MMD (default 2000)")
    a("--mmd-bandwidth-factor", dest="mmd_bandwidth_factor", type=scalar(float, "--mmd-bandwidth-factor"),
      help="MMD bandwidth as a multiple of the median heuristic on exact data (default 0.25)")
    a("--floor-reps", dest="floor_reps", type=scalar(int, "--floor-reps"), help="noise-floor repetitions (default 5)")
    a("--seed", type=scalar(int, "--seed"), help="seed (default 0)")
    a("--device", help="cpu or cuda")
    a("--dtype", help="float64 (default) or float32")
    add_run_flags(p, "results/diffusion_sweep", "a small version (about 20 s): fewer calls, K and samples")
    return p


def config_from_args(argv=None) -> DiffusionSweepConfig:
    return cli.config_from_args(build_parser(), DiffusionSweepConfig, argv)


def main(argv=None) -> int:
    return study.run_main(STUDY, lambda: config_from_args(argv))


if __name__ == "__main__":
    sys.exit(main())

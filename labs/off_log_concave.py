"""Where PLMC's speed-up holds off log-concavity: ``python -m labs.off_log_concave``.

The rate study (:mod:`labs.rate.sweep`) run over two families of targets that leave
log-concavity step by step, each setting once with PLMC's ``K = ceil(k / eta)`` for every
``k`` in ``--k-scales`` (default 1 and 4):

``mixture``
    ``1/2 N(a u, I) + 1/2 N(-a u, I)`` in ``d = 2`` (``u = ones / sqrt(d)``, ``a = separation / 2``)
    for separations 2, 4, 6, 8.  Along ``u`` the potential is ``t^2/2 - log cosh(a t)``, whose
    second derivative ``1 - a^2 sech^2(a t)`` is ``>= 0`` everywhere iff ``a^2 <= 1``: the mixture
    is log-concave iff ``separation <= 2`` (at 2 exactly, flat at the origin: log-concave, not
    strongly), and bimodal beyond.  Metric ``coupled_weak`` (chains coupled with a fine
    reference on one Brownian path, :mod:`samplers.coupled`: no noise floor).
``double_well``
    ``F(x) = sum_i b ((x_i / s)^2 - 1)^2`` (:class:`targets.DoubleWell`, ``s = 1``) for barriers
    ``b`` = 1, 2, 4: never log-concave (``V''(0) = -4 b < 0``), the barrier between the wells
    grows with ``b`` and so does the drift's cubic stiffness.  Metric ``marginal_w2`` (exact 1-D
    W2 of the pooled coordinates against the marginal, the noise floor's bias removed in the fit).

Each (target, parameter, ``k``) is one rate sweep (:func:`labs.rate.sweep.run_sweep`) in its own
folder under ``--out`` (``mixture/separation=6/k=1``, ...), so ``--resume`` resumes every sweep
and an interrupted run loses no finished cell.  LMC's and RLMC's cells do not depend on ``k``
(their cell keys are the same in every ``k``'s sweep): the sweeps after the first ``k`` of a
setting take those rows from the first one's ``results.csv`` instead of running them again.

Reported per (target, parameter, ``k``):

* **PLMC/LMC**: the sweep's own slope ratio, interval and verdict (``summary.json`` "speedup");
* **RLMC/LMC**: RLMC has no base method, so the sweep reports no ratio for it.  It is computed
  here from the very fits the sweep reports: :func:`labs.rate.sweep.summarize` is run again on the
  sweep's rows and hands over its :class:`labs.fitting.SlopeFit` objects, so the points used
  (noise floor, floor-bias removal, saturation cut) and the bootstrap draws (seeded per group)
  are the sweep's own, and :func:`labs.fitting.slope_ratio` of the RLMC and LMC bootstraps gives
  the ratio and its 95% interval (:func:`rlmc_ratio`);
* **divergences**: the cells (budgets) whose chains diverged and how many chains, per sampler
  (``results.csv`` rows with status ``diverged``; the sweep's "problems" list names each one);
  a diverged cell is left out of the fits;
* an **unresolved** ratio comes with the reason, sampler by sampler: budgets diverged, budgets
  whose error is not resolved above the noise floor (or 1.96 standard errors), points needed.

Outputs in ``--out``: ``table.csv`` (one row per target x parameter x ``k``), ``table.md``,
``summary.json`` (the rows with their full verdicts, the sweeps' problems, the settings) and the
printed table; each sweep's folder holds its own ``results.csv``, ``summary.json``,
``rate_sweep.png`` and printed table (``sweep.txt``).  docs/off_log_concave.md reads a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from labs import cli
from labs.cli import LabParser, add_run_flags, csv_list, scalar
from labs.study import RunConfig
from labs.study import as_float as _f
from targets.validation import check_int, check_real

__all__ = ["FAMILIES", "Family", "OffLogConcaveConfig", "TABLE_COLUMNS", "plan", "run", "rlmc_ratio", "assess",
           "log_concavity", "main"]


@dataclass(frozen=True)
class Family:
    """A family of targets: the registered ``target``, the factory argument varied (``parameter``)
    and the rate sweep's settings for it (full run and ``--quick``)."""

    target: str
    parameter: str
    values: tuple
    metric: str
    dim: int
    horizon: float
    budgets: tuple
    chains: int
    quick_dim: int
    quick_budgets: tuple
    quick_chains: int


FAMILIES = {
    # Coupled weak error: PLMC's reference costs 1.5 K R evaluations per coarse step, so K = ceil(4/eta)
    # makes its cells about four times dearer than K = ceil(1/eta).
    "mixture": Family("mixture", "separation", (2.0, 4.0, 6.0, 8.0), "coupled_weak", dim=2, horizon=2.0,
                      budgets=(16, 23, 32, 45, 64, 91), chains=10000,
                      quick_dim=2, quick_budgets=(12, 16, 23, 32), quick_chains=1000),
    # Marginal W2 of the pooled coordinates: d pools values (the floor falls like 1/sqrt(chains d)).
    "double_well": Family("double_well", "barrier", (1.0, 2.0, 4.0), "marginal_w2", dim=4, horizon=2.0,
                          budgets=(32, 64, 128, 256, 512, 1024), chains=10000,
                          quick_dim=2, quick_budgets=(64, 128, 256, 512), quick_chains=1000),
}
K_SCALES = (1.0, 4.0)
SAMPLERS = ("lmc", "plmc", "rlmc")


@dataclass
class OffLogConcaveConfig(RunConfig):
    """Settings of ``python -m labs.off_log_concave`` (device, dtype, out, resume, quick, progress
    and the executor's come from :class:`labs.study.RunConfig` and go to every sweep)."""

    only: Optional[str] = None             # "mixture" or "double_well"; None: both
    separations: list = field(default_factory=lambda: list(FAMILIES["mixture"].values))
    barriers: list = field(default_factory=lambda: list(FAMILIES["double_well"].values))
    k_scales: list = field(default_factory=lambda: list(K_SCALES))
    chains: Optional[int] = None           # None: each family's default (quick: its quick default)
    out: str = "results/off_log_concave"

    def validate(self) -> "OffLogConcaveConfig":
        if self.only is not None and self.only not in FAMILIES:
            raise ValueError(f"unknown --only value {self.only!r}; known: {', '.join(FAMILIES)}")
        for name, values, kw in (("separation", self.separations, dict(nonnegative=True)),
                                 ("barrier", self.barriers, dict(positive=True)),
                                 ("k_scale", self.k_scales, dict(positive=True))):
            if not values:
                raise ValueError(f"empty list of {name} values")
            for v in values:
                check_real(v, name, **kw)
            if len(set(map(float, values))) != len(values):
                raise ValueError(f"repeated {name} value in {list(values)}")
        if self.chains is not None:
            check_int(self.chains, "chains", 2)
        return super().validate()


# ------------------------------------------------------------------------------------------------
# planning


def log_concavity(family: str, value: float) -> tuple:
    """``(log_concave, description)`` of the family's target at parameter ``value``."""
    if family == "mixture":  # sigma = 1: log-concave iff a^2 <= 1, a = separation / 2
        a = value / 2.0
        if a < 1.0:
            return True, "strongly log-concave (unimodal)"
        if a == 1.0:
            return True, "log-concave, not strongly (flat at the origin)"
        return False, "bimodal, not log-concave"
    return False, "two wells per coordinate, not log-concave"


@dataclass
class Job:
    """One rate sweep of the study: a target family at one parameter value and one ``k``."""

    family: str
    value: float
    k_scale: float
    sweep: object          # labs.rate.config.SweepConfig
    folder: str            # relative to the study's --out
    shares_with: Optional[str] = None  # folder of the same setting's first-k sweep (LMC, RLMC rows)

    @property
    def parameter(self) -> str:
        return FAMILIES[self.family].parameter

    @property
    def options(self) -> str:
        return f"{self.parameter}={self.value:g}"


def plan(cfg: OffLogConcaveConfig) -> list:
    """Every sweep the study runs, in order: families, parameter values, then ``k``."""
    from labs.rate.config import SweepConfig

    jobs = []
    values = {"mixture": cfg.separations, "double_well": cfg.barriers}
    for name, fam in FAMILIES.items():
        if cfg.only is not None and name != cfg.only:
            continue
        for value in values[name]:
            first = None
            for k in cfg.k_scales:
                folder = f"{name}/{fam.parameter}={float(value):g}/k={float(k):g}"
                sweep = SweepConfig(
                    study="rate", targets=[fam.target], samplers=list(SAMPLERS), metric=fam.metric,
                    dim=fam.quick_dim if cfg.quick else fam.dim, horizon=fam.horizon,
                    budgets=list(fam.quick_budgets if cfg.quick else fam.budgets),
                    chains=cfg.chains or (fam.quick_chains if cfg.quick else fam.chains),
                    target_options=f"{fam.parameter}={float(value):g}", k_schedule="growing", k_scale=float(k),
                    device=cfg.device, dtype=cfg.dtype, out=str(Path(cfg.out) / folder), resume=cfg.resume,
                    progress=cfg.progress, executor=cfg.executor, address=cfg.address, workers=cfg.workers)
                jobs.append(Job(name, float(value), float(k), sweep.validate(), folder, shares_with=first))
                first = first or folder
    return jobs


# ------------------------------------------------------------------------------------------------
# running


def _read_rows(folder: Path) -> list:
    from labs.rate.sweep import COLUMNS
    from labs.store import ResultStore

    return ResultStore(Path(folder) / "results.csv", COLUMNS).read()


def _share_rows(job: Job, out: Path) -> int:
    """Copy into ``job``'s results the finished cells it shares with its first-``k`` sweep (LMC and
    RLMC: the same settings, so the same cell keys and rows); returns how many cells were copied."""
    from labs.rate.sweep import COLUMNS, plan_cells
    from labs.store import ResultStore

    if job.shares_with is None:
        return 0
    wanted = {c["cell"] for c in plan_cells(job.sweep)}
    store = ResultStore(Path(job.sweep.out) / "results.csv", COLUMNS)
    done = store.done_cells()
    rows = [r for r in _read_rows(out / job.shares_with) if r["cell"] in wanted and r["cell"] not in done]
    by_cell: dict = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r)
    for cell_rows in by_cell.values():
        store.append(cell_rows)
    return len(by_cell)


def run_job(job: Job, out: Path) -> dict:
    """Run one sweep (its printed table goes to ``sweep.txt`` in its folder); returns its summary,
    rows and counts."""
    from labs.rate.sweep import run_sweep

    folder = Path(job.sweep.out)
    folder.mkdir(parents=True, exist_ok=True)
    sweep = job.sweep
    if job.shares_with is not None:
        if not sweep.resume:
            (folder / "results.csv").unlink(missing_ok=True)  # start afresh, as a sweep without --resume does
        shared = _share_rows(job, out)
        sweep = type(sweep)(**dict(sweep.to_dict(), resume=True))
    else:
        shared = 0
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        summary = run_sweep(sweep)
    (folder / "sweep.txt").write_text(text.getvalue())
    return dict(summary=summary, rows=_read_rows(folder), cells_shared=shared)


# ------------------------------------------------------------------------------------------------
# ratios and verdicts


def _observed_fits(rows: list, sweep_cfg) -> tuple:
    """``(summary, fits)``: the sweep's summary of ``rows`` and, for each of its fit entries keyed
    by ``(target, dim, metric, sampler)``, ``(entry, SlopeFit)`` with the fit's bootstrap draws
    (``labs.rate.sweep.summarize(..., slope_fits=)``)."""
    from labs.rate import sweep as rs

    slope_fits: dict = {}
    summary = rs.summarize(rows, sweep_cfg, slope_fits=slope_fits)
    fits = {}
    for entry in summary["fits"]:
        key = (entry["target"], entry["dim"], entry["metric"], entry["sampler"])
        fits[key] = (entry, slope_fits[key])
    return summary, fits


def rlmc_ratio(rows: list, sweep_cfg, numerator: str = "rlmc", denominator: str = "lmc") -> dict:
    """Slope ratio ``numerator``/``denominator`` (RLMC/LMC by default) from a rate sweep's rows,
    with the sweep's own point selection and bootstraps (module docstring).

    ``rows``: ``results.csv`` rows of one target (as read back: strings).  Returns
    ``{"ratio", "ratio_ci", "numerator": fit entry or None, "denominator": fit entry or None}``;
    the ratio is None when either sampler has no fit (too few points, or no row that did not
    diverge)."""
    from labs.fitting import slope_ratio

    _, fits = _observed_fits(rows, sweep_cfg)
    num = next((v for k, v in fits.items() if k[3] == numerator), None)
    den = next((v for k, v in fits.items() if k[3] == denominator), None)
    ratio, ci = (None, (None, None))
    if num is not None and den is not None:
        ratio, ci = slope_ratio(num[1], den[1])
    return {"ratio": ratio, "ratio_ci": list(ci), "numerator": num[0] if num else None,
            "denominator": den[0] if den else None}


def _divergences(rows: list, sampler: str) -> dict:
    bad = [r for r in rows if r["sampler"] == sampler and r["status"] == "diverged"]
    return {"cells": len(bad), "chains": int(sum(_f(r["n_diverged"]) for r in bad)),
            "budgets": sorted(int(_f(r["budget"])) for r in bad)}


def _budget_list(budgets: list) -> str:
    return ",".join(str(b) for b in budgets)


def _why_no_fit(sampler: str, entry: Optional[dict], div: dict, n_budgets: int, chains: int) -> str:
    """Why ``sampler`` has no slope: its diverged budgets, then its resolved ones."""
    name = sampler.upper()
    parts = []
    if div["cells"]:
        parts.append(f"diverged at N={_budget_list(div['budgets'])} ({div['chains']} of {div['cells'] * chains} chains)")
    left = n_budgets - div["cells"]
    if entry is None or left <= 0:
        return f"{name}: " + ("; ".join(parts) or "no run") + ", so no budget is left to fit"
    res = entry.get("resolution") or {}
    level = res.get("level")
    what = "noise floor" if entry.get("noise_floor") else "1.96 se"
    other = "other " if div["cells"] else ""
    resolved = f"{res.get('budgets_resolved', entry['n_points'])} of the {left} {other}budget(s) resolved"
    if level is not None:
        resolved += f" above {level:.2g} ({what}, {chains} chains)"
    parts.append(resolved + f"; a fit needs 3 points at 2+ budgets ({entry['n_points']} usable)")
    return f"{name}: " + "; ".join(parts)


def _unresolved(num: str, den: str, entries: dict, divs: dict, n_budgets: int, chains: int) -> str:
    reasons = [_why_no_fit(s, entries.get(s), divs[s], n_budgets, chains)
               for s in (den, num) if entries.get(s) is None or entries[s]["slope"] is None]
    return "unresolved: " + " | ".join(reasons)


def _rlmc_verdict(ratio, ci) -> str:
    lo, hi = ci
    text = f"slope ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}]"
    if lo > 1.0:
        return f"RLMC's error falls faster than LMC's: {text} excludes 1"
    if hi < 1.0:
        return f"RLMC's error falls more slowly than LMC's: {text} lies below 1"
    return f"no difference in rate resolved: {text} does not exclude 1"


def _short(verdict: str) -> str:
    """A few words for the printed table (the full verdict is in summary.json and below the table)."""
    for key, short in (("unresolved", "unresolved"), ("quadratic speed-up observed", "quadratic"),
                       ("below quadratic", "below quadratic"), ("more than quadratic", "above 2"),
                       ("no speed-up detected", "no speed-up"), ("falls faster", "faster"),
                       ("more slowly", "slower"), ("no difference", "not distinguished")):
        if key in verdict:
            return short
    return verdict[:20]


TABLE_COLUMNS = ["target", "parameter", "value", "log_concave", "shape", "k_scale",
                 "plmc_ratio", "plmc_ci_low", "plmc_ci_high", "plmc_theory_here", "plmc_verdict",
                 "rlmc_ratio", "rlmc_ci_low", "rlmc_ci_high", "rlmc_verdict",
                 "points_lmc", "points_plmc", "points_rlmc",
                 "slope_lmc", "slope_plmc", "slope_rlmc",
                 "diverged_cells_lmc", "diverged_cells_plmc", "diverged_cells_rlmc",
                 "diverged_chains_lmc", "diverged_chains_plmc", "diverged_chains_rlmc",
                 "target_options", "dim", "metric", "chains", "budgets", "horizon", "K_range", "folder",
                 "cells", "cells_run_now", "cells_shared", "elapsed_s"]


def assess(job: Job, summary: dict, rows: list, cells_shared: int = 0) -> dict:
    """The table row of one sweep: both ratios with intervals, verdicts, points, divergences and
    settings."""
    cfg = job.sweep
    fam = FAMILIES[job.family]
    n_budgets, chains = len(cfg.budgets), int(cfg.chains)
    run_rows = [r for r in rows if r["kind"] != "floor"]
    divs = {s: _divergences(run_rows, s) for s in SAMPLERS}
    entries = {f["sampler"]: f for f in summary["fits"]}
    lc, shape = log_concavity(job.family, job.value)
    row = dict(target=fam.target, parameter=fam.parameter, value=job.value, log_concave=lc, shape=shape,
               k_scale=job.k_scale)
    # PLMC / LMC: the sweep's own ratio and verdict
    sp = next((s for s in summary["speedup"] if s["numerator"] == "plmc" and s["denominator"] == "lmc"), None)
    if sp is not None and sp["ratio"] is not None:
        row.update(plmc_ratio=sp["ratio"], plmc_ci_low=sp["ratio_ci"][0], plmc_ci_high=sp["ratio_ci"][1],
                   plmc_theory_here=sp.get("theory_ratio_here"), plmc_verdict=sp["verdict"])
    else:
        row.update(plmc_ratio=None, plmc_ci_low=None, plmc_ci_high=None,
                   plmc_theory_here=sp.get("theory_ratio_here") if sp else None,
                   plmc_verdict=_unresolved("plmc", "lmc", entries, divs, n_budgets, chains))
    # RLMC / LMC: from the same fits
    rr = rlmc_ratio(rows, cfg)
    if rr["ratio"] is not None:
        row.update(rlmc_ratio=rr["ratio"], rlmc_ci_low=rr["ratio_ci"][0], rlmc_ci_high=rr["ratio_ci"][1],
                   rlmc_verdict=_rlmc_verdict(rr["ratio"], rr["ratio_ci"]))
    else:
        row.update(rlmc_ratio=None, rlmc_ci_low=None, rlmc_ci_high=None,
                   rlmc_verdict=_unresolved("rlmc", "lmc", entries, divs, n_budgets, chains))
    for s in SAMPLERS:
        e = entries.get(s)
        row[f"points_{s}"] = e["n_points"] if e else 0
        row[f"slope_{s}"] = e["slope"] if e else None
        row[f"diverged_cells_{s}"] = divs[s]["cells"]
        row[f"diverged_chains_{s}"] = divs[s]["chains"]
    Ks = sorted({int(_f(r["K"])) for r in run_rows if r["sampler"] == "plmc" and str(r["K"]).strip()})
    settings = summary.get("settings", {})
    row.update(target_options=job.options, dim=cfg.dim, metric=cfg.metric, chains=chains,
               budgets=_budget_list(cfg.budgets), horizon=cfg.horizon,
               K_range=f"{Ks[0]}-{Ks[-1]}" if Ks else "", folder=job.folder,
               cells=settings.get("cells"), cells_run_now=settings.get("cells_run_now"), cells_shared=cells_shared,
               elapsed_s=summary.get("elapsed_s"))
    return row


# ------------------------------------------------------------------------------------------------
# outputs


def _ratio_text(row: dict, s: str) -> str:
    r = row[f"{s}_ratio"]
    if r is None:
        return "-"
    return f"{r:.2f} [{row[f'{s}_ci_low']:.2f}, {row[f'{s}_ci_high']:.2f}]"


def _compact(row: dict) -> list:
    lc = "yes" if row["log_concave"] else "no"
    div = "/".join(str(row[f"diverged_cells_{s}"]) for s in SAMPLERS)
    pts = "/".join(str(row[f"points_{s}"]) for s in SAMPLERS)
    return [row["target"], row["target_options"], lc, f"{row['k_scale']:g}", _ratio_text(row, "plmc"),
            _short(row["plmc_verdict"]), _ratio_text(row, "rlmc"), _short(row["rlmc_verdict"]), pts, div]


HEADERS = ["target", "setting", "LC", "k", "PLMC/LMC [95% CI]", "PLMC verdict", "RLMC/LMC [95% CI]",
           "RLMC verdict", "pts L/P/R", "div L/P/R"]
WIDTHS = [12, 15, 4, 3, 20, 18, 20, 18, 10, 9]


def _lines(table: list) -> list:
    out = ["".join(f"{h:<{w}}" for h, w in zip(HEADERS, WIDTHS))]
    for row in table:
        out.append("".join(f"{c:<{w}}" for c, w in zip(_compact(row), WIDTHS)).rstrip())
    return out


def _verdict_lines(table: list) -> list:
    out = []
    for row in table:
        head = f"{row['target']} {row['target_options']} k={row['k_scale']:g}"
        out.append(f"{head} PLMC/LMC: {row['plmc_verdict']}")
        out.append(f"{head} RLMC/LMC: {row['rlmc_verdict']}")
    return out


def _divergence_lines(table: list, problems: dict) -> list:
    out = []
    for row in table:
        for line in problems.get(row["folder"], []):
            out.append(f"k={row['k_scale']:g} {row['target_options']}: {line}")
    return out


def print_table(table: list, problems: dict, elapsed: float, out: Path, file=None) -> None:
    file = sys.stdout if file is None else file
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p("")
    p("== labs.off_log_concave: slope ratios to LMC of log(error) vs log(gradient evaluations), 95% CI ==")
    p("(LC: log-concave; k: PLMC's K = ceil(k/eta); pts: points fitted; div: budgets whose chains diverged)")
    for line in _lines(table):
        p(line)
    for title, lines in (("Verdicts:", _verdict_lines(table)),
                         ("Diverged cells (left out of the fits):", _divergence_lines(table, problems))):
        if lines:
            p("")
            p(title)
            for line in lines:
                p(f"  {line}")
    p("")
    p(f"{len(table)} sweeps in {elapsed:.1f} s; table in {out}/table.csv, table.md, summary.json")


def _markdown(table: list, problems: dict) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in table:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _compact(row)) + " |")
    lines += ["", "Verdicts:", ""] + [f"* {v}" for v in _verdict_lines(table)]
    div = _divergence_lines(table, problems)
    if div:
        lines += ["", "Diverged cells (left out of the fits):", ""] + [f"* {v}" for v in div]
    return "\n".join(lines) + "\n"


def write_outputs(table: list, problems: dict, cfg: OffLogConcaveConfig, elapsed: float) -> dict:
    from labs.cli import json_default

    out = Path(cfg.out)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        w.writeheader()
        for row in table:
            w.writerow({c: "" if row.get(c) is None else row[c] for c in TABLE_COLUMNS})
    (out / "table.md").write_text(_markdown(table, problems))
    summary = {"rows": table, "problems": problems, "settings": cfg.to_dict(), "elapsed_s": elapsed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=json_default) + "\n")
    return summary


def run(cfg: OffLogConcaveConfig, file=None) -> dict:
    """Run (or, with ``cfg.resume``, complete) every sweep of the study; write and print the
    table.  Returns ``{"rows": [...], "problems": {...}, "settings": ..., "elapsed_s": ...}``."""
    file = sys.stdout if file is None else file
    cfg.validate()
    out = Path(cfg.out)
    jobs = plan(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "settings.json")
    t0 = time.time()
    table, problems = [], {}
    for i, job in enumerate(jobs, 1):
        t = time.time()
        res = run_job(job, out)
        summary = res["summary"]
        table.append(assess(job, summary, res["rows"], res["cells_shared"]))
        problems[job.folder] = list(summary["problems"])
        s = summary["settings"]
        shared = f", {res['cells_shared']} taken from k={cfg.k_scales[0]:g}" if job.shares_with else ""
        print(f"[{i}/{len(jobs)}] {job.family} {job.options} k={job.k_scale:g}: {s['cells']} cells, "
              f"{s['cells_run_now']} run now{shared}, {time.time() - t:.1f} s", file=file, flush=True)
    elapsed = time.time() - t0
    summary = write_outputs(table, problems, cfg, elapsed)
    print_table(table, problems, elapsed, out, file=file)
    return summary


# ------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = LabParser(prog="python -m labs.off_log_concave", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter,
                  epilog="Defaults: mixture d=2 (coupled_weak, 10000 chains, budgets 16-91), double well d=4 "
                         "(marginal_w2, 10000 chains, budgets 32-1024), k = 1 and 4; a few minutes on 2 CPU cores.")
    a = p.add_argument
    a("--only", help=f"one family only: {' or '.join(FAMILIES)}")
    a("--separations", type=csv_list(float, "--separations"), help="mixture separations (default 2,4,6,8)")
    a("--barriers", type=csv_list(float, "--barriers"), help="double-well barriers (default 1,2,4)")
    a("--k-scales", dest="k_scales", type=csv_list(float, "--k-scales"),
      help="PLMC's K = ceil(k/eta) for each k (default 1,4)")
    a("--chains", type=scalar(int, "--chains"), help="chains per cell (default: 10000; --quick: 1000)")
    a("--device", help="cpu or cuda")
    a("--dtype", choices=("float64", "float32"))
    add_run_flags(p, "results/off_log_concave", "a small version: d=2, 1000 chains, 4 budgets per sweep")
    return p


def config_from_args(argv=None) -> OffLogConcaveConfig:
    return cli.config_from_args(build_parser(), OffLogConcaveConfig, argv)


def main(argv=None) -> int:
    return cli.run_main("off_log_concave", lambda: config_from_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())

"""The bias of the lab's sample-based W2 estimators, measured against the exact W2 of LMC's law.

One command::

    python benchmarks/grid_law_bias.py                   # ~1 minute on one core
    python benchmarks/grid_law_bias.py --quick           # seconds; a smoke test
    python benchmarks/grid_law_bias.py --targets holley_stroock --seeds 5 --chains 20000,100000,400000

What is measured
    For LMC on a 1-D target, at the step sizes of the lab's rate study (``labs/rate/sweep.py``:
    horizon ``T = 2``, ``n_steps = budget``, ``eta = T / budget``, chains started from exact
    target samples, the study's default start), the exact ``W2`` of the chains' law to the
    target from :mod:`metrics.grid_law` (exact to ~1e-14 relative), next to the lab's estimator
    of that ``W2`` from ``n`` chains: ``metrics.marginal_w2(x, target, pool=True)`` on the
    separable targets (Holley–Stroock, double well), and ``metrics.sliced_w2_to_mixture`` on the
    1-D bimodal mixture (in 1-D every direction is ``+-1``, so it is the exact 1-D ``W2`` of the
    sample to the mixture).  Per step size and ``n``, over ``--seeds`` independent runs:

    * ``bias`` = mean estimate - exact W2, with its standard error ``sd / sqrt(seeds)``;
    * ``sd``: the spread of the estimates over seeds (one run's own uncertainty);
    * ``floor``: the estimator's mean value on ``n`` exact target samples (``--floor-seeds``
      independent samples, default 10: the floor is cheap and its spread is wide);
    * ``predicted`` = ``sqrt(W2^2 + floor^2) - W2``: the bias if the sampling noise added
      ``floor^2`` to ``W2^2`` independently of the chains' own distance, and ``ratio`` =
      ``bias / predicted``;
    * ``debiased``: what the rate fits use (``labs.fitting.debias_floor``),
      ``sqrt(max(estimate^2 - E floor^2, 0))`` with ``E floor^2`` the floor samples' mean square,
      and its bias against the exact ``W2`` with the standard error over seeds.

    The ``n`` chains of the smaller sizes are the first ``n`` of the largest run (i.i.d. chains,
    so each is an exact sample of the chains' law).  The lab's rate study pools ``chains x dim``
    values of a separable target into one 1-D sample; ``n`` here is that pooled size.  A step
    size at which LMC escapes to infinity with probability above ``1e-12`` over the horizon is
    reported with that probability (the grid's escaping mass) instead of being estimated.

Output: a printed table and ``grid_law_bias.csv`` (one row per target, step size and ``n``) in
``--out`` (default ``results/grid_law_bias``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import metrics as M  # noqa: E402
import samplers  # noqa: E402
from metrics.grid_law import lmc_grid_law  # noqa: E402
from targets import DoubleWell, GaussianMixture, HolleyStroock  # noqa: E402

DEFAULT_OUT = ROOT / "results" / "grid_law_bias"
HORIZON = 2.0   # labs.rate.sweep.TARGET_DEFAULTS: T = 2 for all three targets

# name -> (1-D target, budgets of the lab's rate study used here, estimator)
TARGETS = {
    "holley_stroock": (lambda: HolleyStroock(1), [16, 32, 64, 128, 256], "marginal_w2"),
    "double_well": (lambda: DoubleWell(1), [32, 64, 128, 256], "marginal_w2"),
    "mixture": (lambda: GaussianMixture.bimodal(1, separation=4.0), [16, 32, 64, 128], "sliced_w2_exact"),
}
COLUMNS = ["target", "budget", "n_steps", "step_size", "w2_exact", "mass_lost", "n", "seeds", "estimate_mean",
           "estimate_sd", "bias", "bias_se", "floor", "predicted", "ratio", "debiased_mean", "debiased_bias",
           "debiased_bias_se", "status"]


def estimate(kind: str, x: torch.Tensor, target, seed: int) -> float:
    if kind == "marginal_w2":
        return float(M.marginal_w2(x, target, pool=True).value)
    return float(M.sliced_w2_to_mixture(x, target, n_projections=2, seed=seed).value)


def run_target(name: str, chains: list[int], seeds: int, budgets=None, floor_seeds: int = 10, log=print) -> list[dict]:
    make, default_budgets, kind = TARGETS[name]
    target = make()
    rows = []
    n_max = max(chains)
    # the noise floor: the estimator on exact target samples, per n and seed
    floor = {n: [] for n in chains}
    for s in range(floor_seeds):
        exact = target.sample(n_max, torch.Generator().manual_seed(7919 * (s + 1)))
        for n in chains:
            floor[n].append(estimate(kind, exact[:n], target, s))
    floor_mean = {n: float(np.mean(v)) for n, v in floor.items()}
    floor_sq = {n: float(np.mean(np.square(v))) for n, v in floor.items()}  # what labs.fitting.debias_floor removes
    for budget in budgets or default_budgets:
        n_steps = budget
        eta = HORIZON / n_steps
        base = dict(target=name, budget=budget, n_steps=n_steps, step_size=eta)
        try:
            law = lmc_grid_law(target, eta, n_steps)
        except ValueError as exc:
            if "escapes" not in str(exc):
                raise
            esc = lmc_grid_law(target, eta, n_steps, tol=0.5).mass_lost
            log(f"  {name} eta={eta:.4g}: LMC escapes to infinity with probability {esc:.2g} over T={HORIZON:g} "
                "(grid); not estimated")
            rows.append(dict(base, mass_lost=esc, status="diverges"))
            continue
        w2 = law.w2()
        ests = {n: [] for n in chains}
        for s in range(seeds):
            x0 = target.sample(n_max, torch.Generator().manual_seed(10007 * s + 1))   # the lab's start
            res = samplers.sample("lmc", target, n_max, n_steps, eta, x0=x0, seed=s)
            if res.n_diverged:
                raise RuntimeError(f"{name} eta={eta}: {res.n_diverged} chains diverged")
            for n in chains:
                ests[n].append(estimate(kind, res.x[:n], target, s))
        for n in chains:
            e = np.asarray(ests[n])
            fl = floor_mean[n]
            pred = math.sqrt(w2 * w2 + fl * fl) - w2
            bias = float(e.mean() - w2)
            sd = float(e.std(ddof=1)) if seeds > 1 else math.nan
            deb = np.sqrt(np.maximum(e * e - floor_sq[n], 0.0))  # the rate fits' debiased value
            deb_sd = float(deb.std(ddof=1)) if seeds > 1 else math.nan
            rows.append(dict(base, w2_exact=w2, mass_lost=law.mass_lost, n=n, seeds=seeds, estimate_mean=float(e.mean()),
                             estimate_sd=sd, bias=bias, bias_se=sd / math.sqrt(seeds), floor=fl, predicted=pred,
                             ratio=bias / pred if pred > 0 else math.nan, debiased_mean=float(deb.mean()),
                             debiased_bias=float(deb.mean() - w2), debiased_bias_se=deb_sd / math.sqrt(seeds), status="ok"))
    return rows


def print_table(rows: list[dict], file=None) -> None:
    out = file or sys.stdout
    head = (f"{'target':<15}{'eta':>9}{'steps':>6}{'W2 exact':>11}{'n':>8}{'estimate':>11}{'sd':>9}{'bias':>11}"
            f"{'+-se':>9}{'floor':>9}{'predicted':>11}{'ratio':>7}{'debiased':>11}{'its bias':>11}{'+-se':>9}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['target']:<15}{r['step_size']:>9.4g}{r['n_steps']:>6}   diverges: escape probability "
                  f"{r['mass_lost']:.2g}", file=out)
            continue
        print(f"{r['target']:<15}{r['step_size']:>9.4g}{r['n_steps']:>6}{r['w2_exact']:>11.5f}{r['n']:>8}"
              f"{r['estimate_mean']:>11.5f}{r['estimate_sd']:>9.5f}{r['bias']:>+11.5f}{r['bias_se']:>9.5f}"
              f"{r['floor']:>9.5f}{r['predicted']:>11.5f}{r['ratio']:>7.2f}{r['debiased_mean']:>11.5f}"
              f"{r['debiased_bias']:>+11.5f}{r['debiased_bias_se']:>9.5f}", file=out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    p.add_argument("--chains", default="20000,100000", help="sample sizes n (comma-separated)")
    p.add_argument("--seeds", type=int, default=5, help="independent runs per step size (>= 2 for a spread)")
    p.add_argument("--floor-seeds", type=int, default=10, help="exact samples per n for the floor")
    p.add_argument("--budgets", default=None, help="override the budgets (eta = 2 / budget), comma-separated")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for grid_law_bias.csv")
    p.add_argument("--quick", action="store_true", help="2 seeds (3 for the floor), n = 2000,10000, two budgets per target")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = [t for t in args.targets.split(",") if t]
    for t in names:
        if t not in TARGETS:
            raise SystemExit(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
    chains = sorted(int(c) for c in args.chains.split(","))
    seeds = args.seeds
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else None
    if args.quick:
        chains, seeds, args.floor_seeds = [2000, 10000], 2, 3
    if seeds < 1 or args.floor_seeds < 1 or min(chains) < 2:
        raise SystemExit("--seeds and --floor-seeds must be >= 1 and every n >= 2")
    torch.set_num_threads(1)
    t0 = time.time()
    rows: list[dict] = []
    for name in names:
        b = budgets or (TARGETS[name][1][-2:] if args.quick else None)
        rows += run_target(name, chains, seeds, b, floor_seeds=args.floor_seeds)
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "grid_law_bias.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    print(f"\n{len(rows)} rows -> {path}  ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

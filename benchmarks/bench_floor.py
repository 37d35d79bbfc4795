"""Resolution against cost: the level a rate-study cell can resolve, and its time, at 2e4, 1e5 and 1e6 chains.

One command::

    python benchmarks/bench_floor.py            # a few minutes on 2 cores
    python benchmarks/bench_floor.py --quick    # seconds: 1e3 and 4e3 chains at budget 32 (a smoke test)

For each chain count it runs one cell of the rate study as ``python -m labs.rate_sweep`` runs it
(``labs.rate.sweep.run_cell``, default settings, noise mode ``vector``) and reports:

* ``holley_stroock`` (d = 32, the 32 coordinates pooled), metric ``marginal_w2``: the noise
  floor (the metric on exact samples: mean and the prediction bound a point must exceed) and the
  time of one LMC cell at budget 64;
* ``mixture`` (d = 2), metric ``coupled_weak``: no floor; the level is 1.96 standard errors of one
  PLMC cell at budget 64 (with its selection control variate), and that cell's time.

Both levels fall like ``1/sqrt(chains)``; the times grow linearly once the chains fill the vector
units.  The JSON written to ``--out`` (default ``results/bench_floor.json``) holds every number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from labs.rate import sweep as rs  # noqa: E402
from labs.rate.measures import noise_floor_samples  # noqa: E402


def _cell(target: str, sampler: str, metric: str, chains: int, budget: int = 64) -> dict:
    cfg = rs.SweepConfig(targets=[target], samplers=[sampler], metric=metric, chains=chains, budgets=[budget])
    cells = [c for c in rs.plan_cells(cfg) if c["kind"] == "run"]
    (cell,) = cells
    t0 = time.perf_counter()
    (row,) = rs.run_cell(cell, {})
    return dict(row, seconds=time.perf_counter() - t0)


def run(chain_counts, budget: int = 64, log=print) -> list[dict]:
    out = []
    for n in chain_counts:
        t = rs.build_target("holley_stroock", 32, 10.0)
        t0 = time.perf_counter()
        fl = noise_floor_samples("marginal_w2", t, n, seed=0)
        t_floor = time.perf_counter() - t0
        lmc = _cell("holley_stroock", "lmc", "marginal_w2", n, budget)
        out.append(dict(target="holley_stroock", metric="marginal_w2", chains=n, floor_mean=fl["value"],
                        level=fl["ci_high"], level_kind="noise floor (prediction bound)", floor_seconds=t_floor,
                        cell=f"lmc budget {budget}", cell_value=float(lmc["value"]), cell_seconds=lmc["seconds"]))
        log(f"holley_stroock marginal_w2  {n:>8} chains: floor {fl['value']:.2e} (bound {fl['ci_high']:.2e}), "
            f"LMC cell {lmc['seconds']:.1f} s (floor {t_floor:.1f} s)")
        plmc = _cell("mixture", "plmc", "coupled_weak", n, budget)
        level = 1.96 * float(plmc["se"])
        out.append(dict(target="mixture", metric="coupled_weak", chains=n, floor_mean=None, level=level,
                        level_kind="1.96 se", floor_seconds=0.0, cell=f"plmc budget {budget}", cell_value=float(plmc["value"]),
                        cell_seconds=plmc["seconds"]))
        log(f"mixture        coupled_weak {n:>8} chains: level {level:.2e} (PLMC error {float(plmc['value']):.2e}), "
            f"PLMC cell {plmc['seconds']:.1f} s")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chains", default="20000,100000,1000000", help="chain counts (comma-separated)")
    p.add_argument("--quick", action="store_true", help="1000 and 4000 chains at budget 32 (a smoke test)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench_floor.json")
    args = p.parse_args(argv)
    counts = [1000, 4000] if args.quick else [int(c) for c in args.chains.split(",") if c.strip()]
    if not counts or min(counts) < 2:
        raise SystemExit(f"--chains must list counts >= 2, got {args.chains!r}")
    from samplers import allocator

    allocator.tune()
    rows = run(counts, budget=32 if args.quick else 64)
    for r in rows:  # how the level scales: 1/sqrt(chains) predicts level * sqrt(n / n0)
        first = next(x for x in rows if x["target"] == r["target"])
        r["level_times_sqrt_chains_ratio"] = r["level"] * math.sqrt(r["chains"] / first["chains"]) / first["level"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"quick": args.quick, "budget": 32 if args.quick else 64, "rows": rows}, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

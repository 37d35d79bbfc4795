"""Time and peak memory of every metric in ``metrics`` at n = 10^3, 10^4, 10^5 points, d = 2, 10, 100.

What is measured
    Wall time of one call with default arguments (float64 inputs on the CPU, the default torch
    thread count), median over ``--repeats`` calls (fewer when one call takes more than
    ``--long-call`` seconds: then it runs once), and the peak memory of the call: the peak
    resident set size during the call minus the RSS just before it. The kernel's peak
    counter ``VmHWM`` is reset before each call by writing ``5`` to ``/proc/self/clear_refs``
    (Linux >= 4.0), so the number covers numpy, torch and POT's C++ allocations alike
    (``tracemalloc`` sees only numpy's and Python's). Where the reset is not possible the
    peak is reported as ``null``. Small allocations are served from memory the allocator
    already holds, so values below a few MB mean "negligible", not an exact size.

    Inputs: ``x ~ N(0, I_d)``, ``y ~ N(0.1, I_d)`` (two-sample metrics, ``n`` points each);
    ``ksd`` and ``kl_knn_to_density`` against ``targets.Gaussian.isotropic(d)``;
    ``marginal_w2``/``marginal_tv`` against ``targets.HolleyStroock(d)``; ``weak_error`` of
    ``|x|^2``. ``kl_gaussian`` / ``w2_gaussian`` (closed forms) depend on ``d`` only
    (rotated covariances with condition number 100) and are listed with ``n = 0``.

    Skips: exact ``w2_empirical`` is skipped when its estimated peak memory (40 bytes per pair,
    see ``metrics.transport.EMD_BYTES_PER_PAIR``) exceeds the memory available, or ``n``
    exceeds its ``max_points`` guard (10^4); any metric is skipped when the time predicted from
    the same metric at the previous ``n`` (scaled by its complexity exponent: 2.3 for exact
    OT, 2 for the quadratic kernel and high-dimensional k-NN estimators, ~1.1 for the others)
    exceeds ``--budget`` seconds. Each skip prints and stores its reason.

Usage
    python benchmarks/bench_metrics.py                 # full run (several minutes)
    python benchmarks/bench_metrics.py --quick         # seconds; a smoke test
    python benchmarks/bench_metrics.py --ns 1000,10000 --dims 2 --metrics mmd,ksd --out /tmp/m.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import metrics as M  # noqa: E402
from metrics.transport import emd_bytes_estimate  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "metrics.json"

# name -> complexity exponent in n used to predict the time at the next n
EXPONENTS = {
    "w2_empirical": 2.3,
    "sliced_w2": 1.1,
    "mmd": 2.0,
    "ksd": 2.0,
    "marginal_w2": 1.1,
    "marginal_tv": 1.1,
    "weak_error": 1.0,
    "kl_knn": None,  # 1.3 with the k-d tree (d <= 15), 2 with brute force
    "kl_knn_to_density": None,
}
ALL_METRICS = ["kl_gaussian", "w2_gaussian"] + list(EXPONENTS)


def _exponent(name: str, d: int) -> float:
    e = EXPONENTS[name]
    if e is None:
        e = 1.3 if d <= 15 else 2.0
    return e


# ---- memory ------------------------------------------------------------------------------


def _status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _available_bytes():
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def measure(fn):
    """(seconds, peak RSS increase in MB or None, result) of one call."""
    gc.collect()
    ok = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    hwm = _status_kb("VmHWM")
    peak = max(hwm - rss0, 0) / 1024.0 if ok and hwm is not None and rss0 is not None else None
    return dt, peak, out


# ---- the calls ---------------------------------------------------------------------------


def make_calls(n: int, d: int, seed: int = 0):
    """name -> zero-argument callable for this (n, d)."""
    from targets import Gaussian, HolleyStroock

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.1
    gauss = Gaussian.isotropic(d)
    hs = HolleyStroock(d)
    return {
        "w2_empirical": lambda: M.w2_empirical(x, y),
        "sliced_w2": lambda: M.sliced_w2(x, y),
        "mmd": lambda: M.mmd(x, y),
        "ksd": lambda: M.ksd(x, gauss),
        "marginal_w2": lambda: M.marginal_w2(x, hs),
        "marginal_tv": lambda: M.marginal_tv(x, hs),
        "weak_error": lambda: M.weak_error(x, lambda z: (z * z).sum(1), float(d)),
        "kl_knn": lambda: M.kl_knn(x, y),
        "kl_knn_to_density": lambda: M.kl_knn_to_density(x, gauss),
    }


def closed_form_calls(d: int):
    from targets import Gaussian

    kappa = 100.0 if d > 1 else 1.0
    a, b = Gaussian.rotated(d, kappa, seed=1), Gaussian.rotated(d, kappa, seed=2)
    m0, S0, m1, S1 = a.mean, a.cov, b.mean + 0.1, b.cov
    return {
        "kl_gaussian": lambda: M.kl_gaussian(m0, S0, m1, S1),
        "w2_gaussian": lambda: M.w2_gaussian(m0, S0, m1, S1),
    }


def skip_reason(name, n, d, prev, budget, max_points):
    if name == "w2_empirical" and d > 1:
        need = emd_bytes_estimate(n, n)
        avail = _available_bytes()
        if avail is not None and need > 0.8 * avail:
            return f"skipped: would need {need / 1e9:.0f} GB (available {avail / 1e9:.0f} GB)"
        if n > max_points:
            return f"skipped: would need {need / 1e9:.0f} GB (n > max_points={max_points})"
    if prev is not None:
        n0, t0 = prev
        pred = t0 * (n / n0) ** _exponent(name, d)
        if pred > budget:
            return f"skipped: would take ~{pred:.0f} s (budget {budget:.0f} s)"
    return None


def _value(out):
    if isinstance(out, M.MetricResult):
        return float(out.value)
    return float(out)


def run(args) -> dict:
    load0 = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rows = []
    names = [m for m in ALL_METRICS if m in args.metrics]
    for d in args.dims:
        cf = closed_form_calls(d)
        for name in [m for m in names if m in cf]:
            times, peaks = [], []
            for _ in range(max(args.repeats, 5)):
                dt, pk, out = measure(cf[name])
                times.append(dt)
                peaks.append(pk)
            rows.append(_row(name, 0, d, times, peaks, out))
            _print_row(rows[-1])
    for d in args.dims:
        prev = {}
        for n in args.ns:
            calls = make_calls(n, d, seed=args.seed)
            for name in [m for m in names if m in calls]:
                reason = skip_reason(name, n, d, prev.get(name), args.budget, args.max_points)
                if reason:
                    rows.append({"metric": name, "n": n, "d": d, "status": "skipped", "reason": reason})
                    _print_row(rows[-1])
                    continue
                times, peaks = [], []
                for r in range(args.repeats):
                    dt, pk, out = measure(calls[name])
                    times.append(dt)
                    peaks.append(pk)
                    if dt > args.long_call:
                        break
                rows.append(_row(name, n, d, times, peaks, out))
                prev[name] = (n, statistics.median(times))
                _print_row(rows[-1])
            del calls
            gc.collect()
    return {
        "settings": {
            "quick": args.quick,
            "ns": args.ns,
            "dims": args.dims,
            "repeats": args.repeats,
            "budget_s": args.budget,
            "long_call_s": args.long_call,
            "max_points": args.max_points,
            "dtype": "float64",
            "device": "cpu",
            "seed": args.seed,
            "load_average_at_start": load0,
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pot": __import__("ot").__version__,
            "scipy": __import__("scipy").__version__,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "memory_method": "peak RSS during the call (VmHWM reset via /proc/self/clear_refs) minus RSS before it",
        "results": rows,
    }


def _row(name, n, d, times, peaks, out):
    pk = [p for p in peaks if p is not None]
    return {
        "metric": name,
        "n": n,
        "d": d,
        "status": "ok",
        "time_s_median": statistics.median(times),
        "time_s_all": times,
        "repeats": len(times),
        "peak_rss_delta_mb": max(pk) if pk else None,
        "value": _value(out),
    }


def _fmt_time(t):
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def _print_row(r):
    head = f"{r['metric']:<18} d={r['d']:<4} n={r['n']:<7}"
    if r["status"] == "skipped":
        print(f"{head} {r['reason']}", flush=True)
    else:
        pk = r["peak_rss_delta_mb"]
        pk = f"{pk:9.1f} MB" if pk is not None else "        n/a"
        print(f"{head} {_fmt_time(r['time_s_median']):>10} (x{r['repeats']})  peak {pk}", flush=True)


def table(report) -> str:
    """Markdown table: one row per (metric, d), one column per n: 'time / peak MB'."""
    rows = report["results"]
    ns = sorted({r["n"] for r in rows if r["n"] > 0})
    lines = ["| metric | d | " + " | ".join(f"n = {n:.0e}".replace("e+0", "e") for n in ns) + " |",
             "|---|---|" + "---|" * len(ns)]
    keys = []
    for r in rows:
        if (r["metric"], r["d"]) not in keys:
            keys.append((r["metric"], r["d"]))
    for metric, d in keys:
        cells = []
        sel = {r["n"]: r for r in rows if r["metric"] == metric and r["d"] == d}
        if 0 in sel:
            r = sel[0]
            cells = [f"{_fmt_time(r['time_s_median'])} (closed form, n-free)"] + [""] * (len(ns) - 1)
        else:
            for n in ns:
                r = sel.get(n)
                if r is None:
                    cells.append("")
                elif r["status"] == "skipped":
                    cells.append(r["reason"])
                else:
                    pk = r["peak_rss_delta_mb"]
                    t = _fmt_time(r["time_s_median"])
                    cells.append(f"{t} / {pk:.0f} MB" if pk is not None else t)
        lines.append(f"| {metric} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ints(s):
    return [int(float(v)) for v in s.split(",") if v]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--ns", type=_ints, default=None, help="comma-separated sample sizes")
    p.add_argument("--dims", type=_ints, default=None, help="comma-separated dimensions")
    p.add_argument("--metrics", type=lambda s: s.split(","), default=ALL_METRICS)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--budget", type=float, default=None, help="skip calls predicted to take longer (s)")
    p.add_argument("--long-call", type=float, default=10.0, help="a call longer than this is not repeated (s)")
    p.add_argument("--max-points", type=int, default=10_000, help="w2_empirical size guard")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    unknown = set(args.metrics) - set(ALL_METRICS)
    if unknown:
        p.error(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    if args.quick:
        args.ns = args.ns or [300]
        args.dims = args.dims or [3]
        args.repeats = args.repeats or 1
        args.budget = args.budget or 5.0
    else:
        args.ns = args.ns or [1000, 10_000, 100_000]
        args.dims = args.dims or [2, 10, 100]
        args.repeats = args.repeats or 3
        args.budget = args.budget or 120.0
    t0 = time.perf_counter()
    report = run(args)
    report["total_time_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print(table(report))
    print(f"\ntotal {report['total_time_s']:.0f} s; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()

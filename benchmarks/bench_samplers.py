"""Throughput and peak memory of the samplers on the CPU, against a minimal hand-written LMC loop.

What is measured
    chain-steps per second (``n_chains * n_steps / wall time`` of one ``samplers.sample`` call,
    float64, CPU, the default ``torch`` thread count) of LMC, PLMC (fast, K = 10, 10^3, 10^6),
    PLMC reference (K = 10, 100), RLMC and MALA, and of the minimal loop

        x = x - eta * (x - m) @ A + sqrt(2 eta) * randn          (LMC written by hand)

    timed in the same run.  Each configuration is timed ``--repeats`` times, the repeats
    interleaved round-robin over the configurations (so a slow patch of a shared machine hits
    all of them alike); the table gives the median and the min-max spread.

    Target: ``targets.Gaussian.rotated(dim, kappa=10, seed=0)`` (precision spectrum 1..10,
    Haar rotation; ``--target isotropic`` for ``N(0, I)``).  Step ``eta = 0.5 / L``.
    Every run starts from the same ``x0 ~ N(0, I)``.

    Peak memory: each configuration runs in a fresh subprocess that builds the target and x0,
    then samples ``--memory-steps`` steps (``--memory-repeats`` processes, median).  Reported:
    its peak RSS (``VmHWM`` on Linux, see :func:`max_rss_mb`) minus the peak RSS of a baseline
    subprocess that only imported the packages and built the target and x0.  The children run
    with glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the RSS (see
    :func:`measure_memory`).  (``tracemalloc`` does not see torch's CPU allocations.)  For
    scale: one ``[chains, dim]`` float64 state is ``8 chains dim`` bytes (7.6 MiB by default).

Usage
    python benchmarks/bench_samplers.py                      # d = 100, 10^4 chains
    python benchmarks/bench_samplers.py --quick              # seconds; a smoke test
    python benchmarks/bench_samplers.py --chains 1000 --dim 10 --repeats 7 --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "samplers.json"

# name -> (method, K, steps multiplier): the O(K) reference loop runs fewer steps so that a
# repeat stays short; chain-steps per second does not depend on the number of steps.
CONFIGS = {
    "minimal_loop": ("minimal", None, 1.0),
    "lmc": ("lmc", None, 1.0),
    "plmc_K10": ("plmc", 10, 1.0),
    "plmc_K1000": ("plmc", 1000, 1.0),
    "plmc_K1000000": ("plmc", 10**6, 1.0),
    "plmc_ref_K10": ("plmc_ref", 10, 0.5),
    "plmc_ref_K100": ("plmc_ref", 100, 0.1),
    "rlmc": ("rlmc", None, 1.0),
    "mala": ("mala", None, 1.0),
}
QUICK_CONFIGS = ["minimal_loop", "lmc", "plmc_K10", "plmc_K1000000", "plmc_ref_K10", "rlmc", "mala"]


def build(target_kind: str, dim: int, chains: int):
    """The target, its step size and the shared start (float64, CPU)."""
    from targets import Gaussian

    if target_kind == "rotated":
        target = Gaussian.rotated(dim, kappa=10.0, seed=0)
    else:
        target = Gaussian.isotropic(dim)
    eta = 0.5 / target.smoothness
    gen = torch.Generator().manual_seed(1234)
    x0 = torch.randn((chains, dim), generator=gen, dtype=torch.float64)
    return target, eta, x0


def minimal_lmc(target, x0, n_steps: int, eta: float, seed: int):
    """LMC by hand: the floor any sampler's per-step overhead is measured against."""
    A, m = target.precision, target.mean
    c = math.sqrt(2.0 * eta)
    gen = torch.Generator().manual_seed(seed)
    x = x0.clone()
    for _ in range(n_steps):
        x = x - eta * (x - m) @ A + c * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x, torch.full((x.shape[0],), n_steps, dtype=torch.int64)


def run_config(name: str, target, x0, n_steps: int, eta: float, seed: int):
    """Run one configuration; returns (final states, grad evals per chain)."""
    from samplers import sample

    method, K, _ = CONFIGS[name]
    if method == "minimal":
        return minimal_lmc(target, x0, n_steps, eta, seed)
    kw = {"K": K} if K is not None else {}
    out = sample(method, target, x0.shape[0], n_steps, eta, x0=x0, seed=seed, **kw)
    return out.x, out.grad_evals


def steps_for(name: str, steps: int) -> int:
    return max(2, int(round(steps * CONFIGS[name][2])))


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux: ``VmHWM`` from ``/proc/self/status``.  NOT ``getrusage(...).ru_maxrss``: Linux carries
    the parent's ``ru_maxrss`` into a child across fork and exec, so a child started by a big
    parent would report the parent's peak.  Elsewhere: ``ru_maxrss`` (macOS reports bytes).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def memory_child(args) -> None:
    """Subprocess entry: build, (optionally) sample, print peak RSS as JSON."""
    target, eta, x0 = build(args.target, args.dim, args.chains)
    import samplers  # noqa: F401  (imported in the baseline too)

    before = max_rss_mb()
    if args.memory_child != "baseline":
        run_config(args.memory_child, target, x0, args.memory_steps, eta, seed=0)
    print(json.dumps({"peak_mb": max_rss_mb(), "before_mb": before}))


def measure_memory(name: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name,
           *(["--threads", str(args.threads)] if args.threads is not None else []),
           "--target", args.target, "--dim", str(args.dim), "--chains", str(args.chains),
           "--memory-steps", str(args.memory_steps)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # glibc raises its mmap threshold after large frees, so freed tensors then stay in the heap and
    # the peak RSS jumps by tens of MiB from run to run.  A fixed threshold (which also turns the
    # adjustment off) maps every tensor over 64 KiB and unmaps it when freed: RSS follows the
    # live tensors and the peak repeats to within ~1 MiB.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"memory child {name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": list(values)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="steps per timed run (fewer for plmc_ref)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target", choices=["rotated", "isotropic"], default="rotated")
    p.add_argument("--memory-steps", type=int, default=3)
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per configuration")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--quick", action="store_true", help="tiny sizes and fewer configurations (smoke test)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the timed runs (default: torch's default)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    if args.memory_child is not None:
        memory_child(args)
        return None
    if args.quick:
        args.chains, args.dim, args.steps, args.repeats, args.memory_steps, args.memory_repeats = 200, 5, 3, 2, 2, 1
    for k in ("chains", "dim", "steps", "repeats", "memory_steps", "memory_repeats"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    names = QUICK_CONFIGS if args.quick else list(CONFIGS)

    target, eta, x0 = build(args.target, args.dim, args.chains)
    # warm-up: one short run of each (first-call costs are not throughput)
    for name in names:
        run_config(name, target, x0[: min(64, args.chains)], 2, eta, seed=0)

    times = {name: [] for name in names}
    evals = {}
    for r in range(args.repeats):
        for name in names:
            n_steps = steps_for(name, args.steps)
            t0 = time.perf_counter()
            x, g = run_config(name, target, x0, n_steps, eta, seed=r)
            times[name].append(time.perf_counter() - t0)
            if not torch.isfinite(x).all():
                raise RuntimeError(f"{name}: non-finite states")
            start = 1 if CONFIGS[name][0] == "mala" else 0  # MALA's one evaluation at the start
            evals.setdefault(name, []).append((float(g.double().mean()) - start) / n_steps)

    memory = {}
    if not args.no_memory:
        # Several fresh processes per configuration, median (see measure_memory for the allocator).
        peaks = {name: [] for name in ["baseline", *names]}
        for _ in range(args.memory_repeats):
            for name in peaks:
                peaks[name].append(measure_memory(name, args)["peak_mb"])
        base = statistics.median(peaks["baseline"])
        memory["baseline_peak_mb"] = base
        for name in names:
            memory[name] = {"peak_mb": statistics.median(peaks[name]),
                            "delta_mb": statistics.median(peaks[name]) - base,
                            "delta_all_mb": [v - base for v in peaks[name]]}

    results = {}
    for name in names:
        method, K, _ = CONFIGS[name]
        n_steps = steps_for(name, args.steps)
        rates = [args.chains * n_steps / t for t in times[name]]
        results[name] = {
            "method": method, "K": K, "steps": n_steps,
            "chain_steps_per_s": summarize(rates),
            "grad_evals_per_step": statistics.mean(evals[name]),
            "peak_rss_delta_mb": memory.get(name, {}).get("delta_mb"),
            "peak_rss_mb": memory.get(name, {}).get("peak_mb"),
            "peak_rss_delta_all_mb": memory.get(name, {}).get("delta_all_mb"),
        }
    # Ratios of time per chain-step, from the medians and from the best repeats (on a shared
    # machine the best repeat is the least disturbed estimate of the intrinsic cost).
    for stat, suffix in (("median", ""), ("max", "_best")):
        floor = results["minimal_loop"]["chain_steps_per_s"][stat]
        lmc_rate = results["lmc"]["chain_steps_per_s"][stat]
        for name, res in results.items():
            rate = res["chain_steps_per_s"][stat]
            res["slowdown_vs_minimal" + suffix] = floor / rate
            res["slowdown_vs_lmc" + suffix] = lmc_rate / rate
    report = {
        "settings": {"chains": args.chains, "dim": args.dim, "steps": args.steps, "repeats": args.repeats,
                     "target": (f"Gaussian.rotated({args.dim}, kappa=10, seed=0)" if args.target == "rotated"
                                else f"Gaussian.isotropic({args.dim})"),
                     "step_size": eta, "dtype": "float64", "device": "cpu", "quick": args.quick,
                     "memory_steps": args.memory_steps, "memory_repeats": args.memory_repeats},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform(),
                        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "results": results,
        "memory_baseline_peak_mb": memory.get("baseline_peak_mb"),
        "plmc_over_lmc_time_per_step": {n: r["slowdown_vs_lmc"] for n, r in results.items()
                                        if r["method"] in ("plmc", "plmc_ref")},
        "plmc_over_lmc_time_per_step_best": {n: r["slowdown_vs_lmc_best"] for n, r in results.items()
                                             if r["method"] in ("plmc", "plmc_ref")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"\nwritten: {args.out}")
    return report


def print_table(report) -> None:
    s = report["settings"]
    print(f"{s['target']}, {s['chains']} chains, float64, CPU, {report['environment']['torch_threads']} "
          f"torch threads, eta = {s['step_size']:.3g}, {s['repeats']} repeats (median, min-max)")
    head = (f"{'sampler':<16}{'steps':>6}{'chain-steps/s':>15}{'spread (min-max)':>22}"
            f"{'x minimal':>11}{'x LMC':>7}{'best: x min':>13}{'x LMC':>7}{'evals/step':>12}{'peak dRSS MiB':>15}")
    print(head)
    print("-" * len(head))
    for name, r in report["results"].items():
        c = r["chain_steps_per_s"]
        mem = "-" if r["peak_rss_delta_mb"] is None else f"{r['peak_rss_delta_mb']:.1f}"
        spread = f"{c['min']:.3g}-{c['max']:.3g}"
        print(f"{name:<16}{r['steps']:>6}{c['median']:>15.4g}{spread:>22}"
              f"{r['slowdown_vs_minimal']:>11.2f}{r['slowdown_vs_lmc']:>7.2f}{r['slowdown_vs_minimal_best']:>13.2f}"
              f"{r['slowdown_vs_lmc_best']:>7.2f}{r['grad_evals_per_step']:>12.3f}{mem:>15}")
    print("(x minimal, x LMC: time per chain-step relative to the minimal loop / to samplers' LMC, from the\n"
          " medians and from the best repeats; evals/step: gradient evaluations per chain per step, MALA's\n"
          " start excluded; peak dRSS: peak RSS of a fresh process minus that of one that only built the target)")


if __name__ == "__main__":
    main()

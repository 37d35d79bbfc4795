"""Throughput and peak memory of every sampler on the CPU, against a minimal torch loop and BlackJAX.

One command::

    python benchmarks/bench_samplers.py              # d = 100, 10^4 chains, 200 steps, 5 repeats
    python benchmarks/bench_samplers.py --quick      # seconds; a smoke test
    python benchmarks/bench_samplers.py --profile plmc_K1000000_fast   # where one config's time goes
    python benchmarks/bench_samplers.py --device cuda --chains 1000000 --no-memory   # on a GPU

What is measured
    chain-steps per second (``n_chains * n_steps / wall time`` of one ``samplers.sample`` call,
    float64, CPU, ``--threads`` torch threads, default torch's own) of every method in
    ``samplers.METHODS`` (LMC, PLMC at ``K`` = 10, 10^3, 10^6, RLMC, MALA, and the underdamped
    ULMC, PULMC, RULMC when they exist; the O(K) ``*_ref`` loops at ``K = 10`` only, for scale),
    in both noise modes of :mod:`samplers.noise` (``exact``: float64 ``randn``; suffix ``_fast``:
    float32 draws up-cast), of the diffusion samplers of :mod:`samplers.diffusion` when it exists
    (DDPM and Poisson-midpoint DDPM on an exact-score diffused mixture; "steps" are their updates),
    and, in the same run,

    * the minimal hand-written LMC loop ``x = x - eta (x - m) @ A + sqrt(2 eta) randn`` (float64
      ``randn``), the floor of eager torch;
    * BlackJAX's ULA when jax and blackjax are installed (the ``bench`` extra; found in this
      interpreter, or in ``.venv-bench/bin/python``, or ``--jax-python``): ``blackjax.sgld`` with
      the exact full gradient (SGLD without subsampling is ULA = LMC), ``jax.vmap`` over chains
      with one PRNG key per chain and step, ``jax.lax.scan`` over the steps, all under ``jax.jit``,
      float64 (``jax_enable_x64``), same target, step size, start and sizes.  It runs in a worker
      process that compiles once and then times one scan per repeat when asked, so its repeats
      are interleaved with the torch ones;
    * LMC and PLMC (``K = 10^6``) in each noise mode, also in a worker process with glibc's default
      malloc settings (``LAB_MALLOC=system``; this process runs with the tuned allocator of
      :mod:`samplers.allocator`), timed between the same repeats: the allocator's speed-up
      (``--no-allocator`` skips it).

    Each configuration is timed ``--repeats`` times, round-robin over the configurations (a
    slow patch of a shared machine hits all of them alike); the table gives the median and the
    min-max spread, and ratios of medians: ``x minimal`` (time per chain-step over the minimal
    loop's), ``x LMC`` (over LMC's in the same noise mode: the PLMC/LMC step cost ratio), ``vs
    BlackJAX`` (chain-steps/s over BlackJAX's: above 1 is faster).  The load average of the
    machine at the start and the end is recorded: on a shared machine absolute rates move with
    it, ratios taken in the same run much less.

    Target: ``targets.Gaussian.rotated(dim, kappa=10, seed=0)`` (precision spectrum 1..10, Haar
    rotation; ``--target isotropic`` for ``N(0, I)``).  Step ``eta = 0.5 / L``.  Every run starts
    from the same ``x0 ~ N(0, I)``.

    Peak memory: each configuration runs in a fresh subprocess that builds the target and x0,
    then samples ``--memory-steps`` steps (``--memory-repeats`` processes, median; as many run at
    once as there are CPU cores, which changes no process's own peak).  Reported: its
    peak RSS (``VmHWM`` on Linux, see :func:`max_rss_mb`) minus that of a baseline subprocess
    that only imported the packages and built the target and x0, also in units of one
    ``[chains, dim]`` float64 state (``8 chains dim`` bytes).  The children run with glibc's
    ``MALLOC_MMAP_THRESHOLD_=65536`` and ``LAB_MALLOC=system`` so that freed tensors leave the RSS
    (see :func:`measure_memory`).  LMC and PLMC are measured again with the tuned allocator that
    the benchmark and the labs opt in to (:mod:`samplers.allocator`): its peak is higher, since
    freed blocks stay with the process and the heap fragments.  A second table runs LMC and PLMC
    (``K = 10^6``) over several ``chains x dim`` sizes: peak memory per state should be flat (linear in ``chains x dim``),
    and flat in ``K``.

Output: the tables, and a JSON report (``--out``) with every timing, the ratios, the memory
tables, the BlackJAX result (or why it was skipped), the settings and the environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "samplers.json"
PLMC_KS = (10, 1000, 10**6)
REF_K = 10
DIFFUSION_K = 10
QUICK_NAMES = ["minimal_loop", "lmc", "plmc_K10", "plmc_K1000000", "plmc_ref_K10", "rlmc", "mala",
               "lmc_fast", "plmc_K1000000_fast"]
MEMORY_SIZES = [(2500, 100), (10000, 100), (40000, 100), (10000, 25), (10000, 400)]
QUICK_MEMORY_SIZES = [(200, 5), (800, 5)]
ALLOCATOR_METHODS = ("lmc", "plmc")  # also timed with glibc's default malloc (LAB_MALLOC=system)
MEMORY_SCALING_CONFIGS = ["lmc", "plmc_K1000000"]


# ------------------------------------------------------------------------------------------------
# configurations


def _torch():
    import torch

    return torch


def build(target_kind: str, dim: int, chains: int, device: str = "cpu"):
    """The target, its step size and the shared start (float64, on ``device``; drawn on the CPU)."""
    torch = _torch()
    from targets import Gaussian

    if target_kind == "rotated":
        target = Gaussian.rotated(dim, kappa=10.0, seed=0)
    else:
        target = Gaussian.isotropic(dim)
    eta = 0.5 / target.smoothness
    gen = torch.Generator().manual_seed(1234)
    x0 = torch.randn((chains, dim), generator=gen, dtype=torch.float64)
    if device != "cpu":
        target, x0 = target.to(device=device), x0.to(device)
    return target, eta, x0


def make_configs(noise_modes=("exact", "fast", "vector")) -> dict:
    """name -> dict(kind, method, K, noise, steps_factor, description), from what the package has.

    ``kind``: ``"minimal"``, ``"sampler"`` (``samplers.sample``) or ``"diffusion"``.  The O(K)
    reference loops run ``1/K`` as many steps so that a repeat stays short (chain-steps per
    second does not depend on the number of steps).
    """
    import samplers

    configs = {"minimal_loop": dict(kind="minimal", method="minimal", K=None, noise="exact", steps_factor=1.0,
                                    description="hand-written LMC loop, float64 randn")}
    for noise in noise_modes:
        suffix = "" if noise == "exact" else f"_{noise}"
        for method, spec in samplers.METHODS.items():
            is_ref = method.endswith("_ref")
            if spec.takes("K"):
                for K in ((REF_K,) if is_ref else PLMC_KS):
                    if is_ref and noise != "exact":
                        continue
                    configs[f"{method}_K{K}{suffix}"] = dict(
                        kind="sampler", method=method, K=K, noise=noise,
                        steps_factor=(1.0 / K if is_ref else 1.0), description=spec.description)
            else:
                configs[f"{method}{suffix}"] = dict(kind="sampler", method=method, K=None, noise=noise,
                                                    steps_factor=1.0, description=spec.description)
        diffusion = getattr(samplers, "diffusion", None)
        if diffusion is not None and hasattr(diffusion, "DIFFUSION_SAMPLERS"):
            from targets.diffusion import DiffusionSchedule

            T = DiffusionSchedule().T
            for name, K in (("ddpm_small", None), ("pm_ddpm_small", DIFFUSION_K)):
                if name in diffusion.DIFFUSION_SAMPLERS:
                    key = f"diffusion_{name}{'' if K is None else f'_K{K}'}{suffix}"
                    # DDPM: --steps strided steps (at most T); PM-DDPM: its ceil(T / K) coarse steps
                    configs[key] = dict(kind="diffusion", method=name, K=K, noise=noise, steps_factor=1.0,
                                        max_steps=T, fixed_steps=None if K is None else -(-T // K),
                                        description=diffusion.DIFFUSION_SAMPLERS[name].description)
    return configs


def minimal_lmc(target, x0, n_steps: int, eta: float, seed: int):
    """LMC by hand: the floor any sampler's per-step overhead is measured against."""
    torch = _torch()
    A, m = target.precision, target.mean
    c = math.sqrt(2.0 * eta)
    gen = torch.Generator(device=x0.device).manual_seed(seed)
    x = x0.clone()
    for _ in range(n_steps):
        x = x - eta * (x - m) @ A + c * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return x, torch.full((x.shape[0],), n_steps, dtype=torch.int64, device=x.device)


_DIFFUSION_CACHE = {}


def _diffusion_setup(dim: int):
    """An exact-score diffused bimodal mixture (DDPM linear schedule, T = 1000) and its model."""
    if dim not in _DIFFUSION_CACHE:
        from targets import GaussianMixture
        from targets.diffusion import DiffusedMixture, DiffusionSchedule

        schedule = DiffusionSchedule()
        model = DiffusedMixture(GaussianMixture.bimodal(dim), schedule)
        _DIFFUSION_CACHE[dim] = (model, schedule)
    return _DIFFUSION_CACHE[dim]


def run_config(cfg: dict, target, x0, n_steps: int, eta: float, seed: int):
    """Run one configuration; returns ``(final states, evaluations per chain)``."""
    import samplers

    n_steps = steps_for(cfg, n_steps)
    if cfg["kind"] == "minimal":
        return minimal_lmc(target, x0, n_steps, eta, seed)
    if cfg["kind"] == "diffusion":
        model, schedule = _diffusion_setup(x0.shape[1])
        if model.device != x0.device:
            model = model.to(device=x0.device)
        gen = samplers.make_generator(seed, x0.device, cfg["noise"])
        kw = dict(K=cfg["K"]) if cfg["K"] is not None else dict(steps=n_steps)
        out = samplers.diffusion.sample(cfg["method"], model.eps_hat, x0, schedule, generator=gen, **kw)
        return out.x, out.nfe
    kw = {"K": cfg["K"]} if cfg["K"] is not None else {}
    out = samplers.sample(cfg["method"], target, x0.shape[0], n_steps, eta, x0=x0, seed=seed,
                          noise=cfg["noise"], device=x0.device, **kw)
    return out.x, out.grad_evals


def steps_for(cfg: dict, steps: int) -> int:
    if cfg.get("fixed_steps"):
        return cfg["fixed_steps"]
    return min(max(2, int(round(steps * cfg["steps_factor"]))), cfg.get("max_steps") or steps)


# ------------------------------------------------------------------------------------------------
# memory


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
    import samplers

    samplers.allocator.tune()  # as the labs do; LAB_MALLOC (set by measure_memory) decides

    before = max_rss_mb()
    if args.memory_child != "baseline":
        cfg = make_configs(("exact", "fast", "vector"))[args.memory_child]
        if cfg["kind"] == "diffusion":
            _diffusion_setup(args.dim)
            before = max_rss_mb()
        run_config(cfg, target, x0, args.memory_steps, eta, seed=0)
    print(json.dumps({"peak_mb": max_rss_mb(), "before_mb": before}))


def measure_memory(name: str, args, chains=None, dim=None, malloc: str = "system") -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name,
           *(["--threads", str(args.threads)] if args.threads is not None else []),
           "--target", args.target, "--dim", str(dim or args.dim), "--chains", str(chains or args.chains),
           "--memory-steps", str(args.memory_steps)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # glibc raises its mmap threshold after large frees, so freed tensors then stay in the heap and
    # the peak RSS jumps by tens of MiB from run to run.  A fixed threshold (which also turns the
    # adjustment off) maps every tensor over 64 KiB and unmaps it when freed: RSS follows the
    # live tensors and the peak repeats to within ~1 MiB.  That needs glibc's own settings
    # (``malloc="system"``: LAB_MALLOC=system, see samplers.allocator); ``"tuned"`` measures the
    # peak with the setting the labs' command lines opt in to (freed blocks kept for reuse).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env["LAB_MALLOC"] = malloc
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"memory child {name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _peaks(jobs: list, args) -> list:
    """``measure_memory(name, args, **kw)["peak_mb"]`` for each ``(name, kw)`` of ``jobs``, run as
    concurrent subprocesses (one per CPU core): each peak is its own process's high-water mark,
    so running them side by side changes no number, only the wall time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda job: measure_memory(job[0], args, **job[1])["peak_mb"], jobs))


def _median_peaks(names: list, args, **kw) -> tuple[dict, dict]:
    """Median peak RSS of each configuration in ``names`` over ``args.memory_repeats`` runs, and
    every run's peak."""
    jobs = [(name, kw) for _ in range(args.memory_repeats) for name in names]
    peaks = _peaks(jobs, args)
    runs = {name: peaks[i::len(names)] for i, name in enumerate(names)}
    return {name: statistics.median(v) for name, v in runs.items()}, runs


def memory_tables(names, args) -> dict:
    """Per-configuration peak RSS deltas, and LMC / PLMC over ``chains x dim`` sizes."""
    state_mb = 8.0 * args.chains * args.dim / 2**20
    med, runs = _median_peaks(["baseline", *names], args)
    base = med["baseline"]
    per_config = {}
    for name in names:
        per_config[name] = {"peak_mb": med[name], "delta_mb": med[name] - base,
                            "delta_states": (med[name] - base) / state_mb,
                            "delta_all_mb": [v - base for v in runs[name]]}
    # the same peaks with the tuned allocator (freed blocks kept for reuse), for LMC and PLMC
    tuned_names = [n for n in MEMORY_SCALING_CONFIGS if n in per_config]
    if tuned_names:
        tuned, _ = _median_peaks(["baseline", *tuned_names], args, malloc="tuned")
        for name in tuned_names:
            delta = tuned[name] - tuned["baseline"]
            per_config[name].update({"tuned_malloc_delta_mb": delta, "tuned_malloc_delta_states": delta / state_mb})
    sizes = QUICK_MEMORY_SIZES if args.quick else MEMORY_SIZES
    scaling = []
    for chains, dim in sizes:
        size_med, _ = _median_peaks(["baseline", *MEMORY_SCALING_CONFIGS], args, chains=chains, dim=dim)
        b = size_med["baseline"]
        smb = 8.0 * chains * dim / 2**20
        row = {"chains": chains, "dim": dim, "state_mb": smb, "baseline_peak_mb": b}
        for name in MEMORY_SCALING_CONFIGS:
            delta = size_med[name] - b
            row[name] = {"delta_mb": delta, "delta_states": delta / smb}
        scaling.append(row)
    return {"baseline_peak_mb": base, "state_mb": state_mb, "per_config": per_config, "scaling": scaling}


# ------------------------------------------------------------------------------------------------
# BlackJAX


def find_jax_python(explicit):
    """An interpreter that can import jax and blackjax, or ``(None, reason)``."""
    candidates = [explicit] if explicit else [sys.executable, str(ROOT / ".venv-bench" / "bin" / "python")]
    reasons = []
    for py in candidates:
        if not py or not (Path(py).exists() or shutil.which(py)):
            reasons.append(f"{py}: not found")
            continue
        res = subprocess.run([py, "-c", "import jax, blackjax"], capture_output=True, text=True, timeout=120)
        if res.returncode == 0:
            return py, None
        reasons.append(f"{py}: cannot import jax/blackjax")
    return None, ("BlackJAX not installed (install the 'bench' extra into a separate environment: "
                  "python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[dev,bench]'); "
                  + "; ".join(reasons))


def blackjax_worker(args) -> None:
    """Worker process: BlackJAX ULA, jit(scan(vmap(step))); compiles, then times one run per request."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import blackjax
    import jax.numpy as jnp
    import numpy as np

    target, eta, x0_t = build(args.target, args.dim, args.chains)
    P = jnp.asarray(target.precision.numpy())
    m = jnp.asarray(target.mean.numpy())
    x0 = jnp.asarray(x0_t.numpy())
    n, steps = args.chains, args.steps

    def logdensity(x):
        y = x - m
        return -0.5 * y @ (P @ y)

    # SGLD with the exact full gradient is ULA (LMC): x + eta ∇log p(x) + sqrt(2 eta) z
    ula = blackjax.sgld(lambda x, _batch: jax.grad(logdensity)(x))
    step = jax.vmap(lambda key, x: ula.step(key, x, None, eta))

    @jax.jit
    def run(key, x):
        def body(x, k):
            return step(jax.random.split(k, n), x), None

        x, _ = jax.lax.scan(body, x, jax.random.split(key, steps))
        return x

    t0 = time.perf_counter()
    out = run(jax.random.key(0), x0).block_until_ready()
    compile_s = time.perf_counter() - t0
    var = float(np.asarray(jnp.var(out)))
    print(json.dumps({"ready": True, "compile_and_first_run_s": compile_s, "jax": jax.__version__,
                      "blackjax": getattr(blackjax, "__version__", "?"), "dtype": str(out.dtype),
                      "backend": jax.default_backend(), "devices": str(jax.devices()),
                      "check_var": var}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        seed = int(cmd[1])
        t0 = time.perf_counter()
        out = run(jax.random.key(seed), x0).block_until_ready()
        dt = time.perf_counter() - t0
        finite = bool(np.isfinite(np.asarray(out)).all())
        print(json.dumps({"seconds": dt, "finite": finite, "peak_mb": max_rss_mb()}), flush=True)


class Worker:
    """A worker process (this script with a worker flag), driven line by line: it prints one JSON
    line when ready, then one per request."""

    label = "worker"

    def __init__(self, py: str, flag: str, args, env_extra=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(env_extra or {})
        cmd = [py, str(Path(__file__).resolve()), flag, "--target", args.target,
               "--dim", str(args.dim), "--chains", str(args.chains), "--steps", str(args.steps),
               *(["--threads", str(args.threads)] if args.threads is not None else [])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=str(ROOT))
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} died:\n{self.proc.stderr.read()}")
        return json.loads(line)

    def request(self, *words) -> dict:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        if not r["finite"]:
            raise RuntimeError(f"{self.label}: non-finite states ({' '.join(map(str, words))})")
        return r

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


class BlackJAX(Worker):
    """BlackJAX's ULA in its worker process (:func:`blackjax_worker`)."""

    label = "BlackJAX worker"

    def __init__(self, py: str, args):
        env = {}
        if args.threads == 1:  # XLA on one thread too, as torch
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                " intra_op_parallelism_threads=1").strip()
        super().__init__(py, "--blackjax-worker", args, env)
        self.times, self.peak_mb = [], None

    def run(self, seed: int) -> float:
        r = self.request("run", seed)
        self.times.append(r["seconds"])
        self.peak_mb = r["peak_mb"]
        return r["seconds"]


class SystemMalloc(Worker):
    """The torch samplers in a process with glibc's default malloc settings (``LAB_MALLOC=system``,
    :mod:`samplers.allocator`), timed on request between the main process's repeats."""

    label = "system-malloc worker"

    def __init__(self, args, names):
        super().__init__(sys.executable, "--system-malloc-worker", args, {"LAB_MALLOC": "system"})
        if self.info.get("allocator") == "tuned":
            raise RuntimeError("the system-malloc worker runs with the tuned allocator")
        self.times = {name: [] for name in names}

    def run(self, name: str, seed: int) -> float:
        r = self.request("run", name, seed)
        self.times[name].append(r["seconds"])
        return r["seconds"]


def system_malloc_worker(args) -> None:
    """Worker process for :class:`SystemMalloc`: times one configuration per request."""
    import samplers

    samplers.allocator.tune()  # LAB_MALLOC=system in this worker: glibc's defaults kept
    torch = _torch()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    target, eta, x0 = build(args.target, args.dim, args.chains)
    configs = make_configs(("exact", "fast", "vector"))
    warm = set()
    print(json.dumps({"ready": True, "allocator": samplers.allocator.status()}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        cfg = configs[cmd[1]]
        if cmd[1] not in warm:  # first call of a configuration: warm up, as the main process does
            run_config(cfg, target, x0[: min(64, args.chains)], 2, eta, seed=0)
            warm.add(cmd[1])
        t0 = time.perf_counter()
        x, _ = run_config(cfg, target, x0, steps_for(cfg, args.steps), eta, seed=int(cmd[2]))
        dt = time.perf_counter() - t0
        print(json.dumps({"seconds": dt, "finite": bool(torch.isfinite(x).all())}), flush=True)



# ------------------------------------------------------------------------------------------------
# timing


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": list(values)}


def profile_config(name: str, cfg: dict, target, x0, steps: int, eta: float, rows: int = 25) -> None:
    """Print torch.profiler's table of one configuration: where its time goes, by operator."""
    torch = _torch()
    from torch.profiler import ProfilerActivity, profile

    run_config(cfg, target, x0[:64], 2, eta, seed=0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run_config(cfg, target, x0, steps, eta, seed=0)
        dt = time.perf_counter() - t0
    print(f"{name}: {x0.shape[0] * steps / dt:.4g} chain-steps/s, {1e3 * dt / steps:.2f} ms per step "
          f"({x0.shape[0]} chains, d = {x0.shape[1]}, {torch.get_num_threads()} threads)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=36))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--steps", type=int, default=200, help="steps per timed run (the O(K) reference loops: steps/K)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target", choices=["rotated", "isotropic"], default="rotated")
    p.add_argument("--noise", default="exact,fast,vector", help="comma-separated noise modes to time (default all three)")
    p.add_argument("--only", default=None, help="comma-separated configuration names (default: all)")
    p.add_argument("--memory-steps", type=int, default=3)
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per configuration")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-blackjax", action="store_true", help="skip BlackJAX even when it is installed")
    p.add_argument("--jax-python", default=None, help="interpreter with jax and blackjax (default: this one, "
                                                      "else .venv-bench/bin/python)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and fewer configurations (smoke test)")
    p.add_argument("--profile", metavar="CONFIG", default=None,
                   help="print torch.profiler's operator table for one configuration and exit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the torch samplers run "
                   "(on cuda, BlackJAX and the peak-RSS tables are skipped: they measure the CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the timed runs (default: torch's default)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-allocator", action="store_true",
                   help="skip the allocator comparison (LMC and PLMC also timed with glibc's default malloc)")
    p.add_argument("--blackjax-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--system-malloc-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.blackjax_worker:
        blackjax_worker(args)
        return None
    if args.system_malloc_worker:
        system_malloc_worker(args)
        return None
    torch = _torch()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(args)
        return None
    if args.quick:
        args.chains, args.dim, args.steps, args.repeats, args.memory_steps, args.memory_repeats = 200, 5, 4, 2, 2, 1
    for k in ("chains", "dim", "steps", "repeats", "memory_steps", "memory_repeats"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    from samplers.noise import NOISE_MODES

    modes = [m for m in args.noise.split(",") if m]
    for m in modes:
        if m not in NOISE_MODES:
            p.error(f"--noise: unknown mode {m!r}; known: {', '.join(NOISE_MODES)}")
    all_configs = make_configs(tuple(modes))
    if args.only:
        wanted = [n for n in args.only.split(",") if n]
        unknown = [n for n in wanted if n not in all_configs]
        if unknown:
            p.error(f"--only: unknown configuration(s) {', '.join(unknown)}; known: {', '.join(all_configs)}")
        names = list(dict.fromkeys(["minimal_loop", *wanted]))
    elif args.quick:
        names = [n for n in QUICK_NAMES if n in all_configs]
    else:
        names = list(all_configs)
    configs = {n: all_configs[n] for n in names}

    if args.device != "cpu":
        if not args.device.startswith("cuda"):
            p.error(f"--device: unknown device {args.device!r}; known: cpu, cuda, cuda:N")
        if not torch.cuda.is_available():
            p.error(f"--device {args.device!r} requested but CUDA is not available")
        args.no_blackjax, args.no_memory = True, True
    sync = (lambda: torch.cuda.synchronize(args.device)) if args.device != "cpu" else (lambda: None)
    target, eta, x0 = build(args.target, args.dim, args.chains, args.device)
    if args.profile is not None:
        known = make_configs(("exact", "fast", "vector"))
        if args.profile not in known:
            p.error(f"--profile: unknown configuration {args.profile!r}; known: {', '.join(known)}")
        profile_config(args.profile, known[args.profile], target, x0, steps_for(known[args.profile], args.steps), eta)
        return None

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    bj, bj_skip = None, None
    if args.no_blackjax:
        bj_skip = "skipped (--no-blackjax)"
    else:
        py, bj_skip = find_jax_python(args.jax_python)
        if py is not None:
            try:
                bj = BlackJAX(py, args)
            except (RuntimeError, json.JSONDecodeError, OSError) as exc:
                bj, bj_skip = None, f"BlackJAX worker failed to start: {exc}"
    if bj_skip:
        print(f"note: {bj_skip}", file=sys.stderr)
    import samplers

    samplers.allocator.tune()  # opt in, as the labs' command lines do

    alloc_names = [n for n in names if configs[n]["method"] in ALLOCATOR_METHODS and configs[n]["K"] in (None, 10**6)]
    sysmalloc, alloc_skip = None, None
    if args.no_allocator or args.device != "cpu":
        alloc_skip = "skipped (--no-allocator or not on the CPU)"
    elif samplers.allocator.status() != "tuned":
        alloc_skip = f"skipped: this process runs with {samplers.allocator.status()}"
    elif alloc_names:
        sysmalloc = SystemMalloc(args, alloc_names)

    # warm-up: one short run of each (first-call costs are not throughput)
    for name, cfg in configs.items():
        run_config(cfg, target, x0[: min(64, args.chains)], 2, eta, seed=0)
    sync()

    times = {name: [] for name in names}
    evals = {}
    try:
        for r in range(args.repeats):
            for name, cfg in configs.items():
                n_steps = steps_for(cfg, args.steps)
                t0 = time.perf_counter()
                x, g = run_config(cfg, target, x0, n_steps, eta, seed=r + 1)
                sync()
                times[name].append(time.perf_counter() - t0)
                if not torch.isfinite(x).all():
                    raise RuntimeError(f"{name}: non-finite states")
                # evaluations the method makes at its start (MALA's one); the minimal loop is no method
                alg = samplers.METHODS.get(cfg["method"])
                start = alg.init_evals if alg is not None else 0
                evals.setdefault(name, []).append((float(g.double().mean()) - start) / n_steps)
            if bj is not None:
                bj.run(r + 1)
            if sysmalloc is not None:
                for name in alloc_names:
                    sysmalloc.run(name, r + 1)
    finally:
        for worker in (bj, sysmalloc):
            if worker is not None:
                worker.close()

    memory = memory_tables(names, args) if not args.no_memory else None
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    results = {}
    for name, cfg in configs.items():
        n_steps = steps_for(cfg, args.steps)
        rates = [args.chains * n_steps / t for t in times[name]]
        mem = (memory or {}).get("per_config", {}).get(name, {})
        results[name] = {
            "kind": cfg["kind"], "method": cfg["method"], "K": cfg["K"], "noise": cfg["noise"], "steps": n_steps,
            "chain_steps_per_s": summarize(rates),
            "evals_per_step": statistics.mean(evals[name]),
            "peak_rss_delta_mb": mem.get("delta_mb"),
            "peak_rss_delta_states": mem.get("delta_states"),
            "peak_rss_mb": mem.get("peak_mb"),
            "peak_rss_delta_all_mb": mem.get("delta_all_mb"),
        }
    allocator = {"this_process": samplers.allocator.status(), "compared": sysmalloc is not None, "note": alloc_skip,
                 "results": {}}
    if sysmalloc is not None:
        for name in alloc_names:
            steps = steps_for(configs[name], args.steps)
            system = summarize([args.chains * steps / t for t in sysmalloc.times[name]])
            tuned = results[name]["chain_steps_per_s"]
            allocator["results"][name] = {"system_chain_steps_per_s": system,
                                          "speedup_tuned_over_system": tuned["median"] / system["median"],
                                          "speedup_tuned_over_system_best": tuned["max"] / system["max"]}
    blackjax = {"available": bj is not None, "note": bj_skip}
    if bj is not None:
        rates = [args.chains * args.steps / t for t in bj.times]
        blackjax.update(bj.info)
        blackjax.update({"steps": args.steps, "chain_steps_per_s": summarize(rates), "worker_peak_rss_mb": bj.peak_mb,
                         "api": "blackjax.sgld(exact full gradient) = ULA; jit(scan(vmap(step))), one key per "
                                "chain and step, float64"})
    # Ratios of time per chain-step from the medians and from the best repeats (on a shared machine
    # the best repeat is the least disturbed estimate of the intrinsic cost).
    for stat, suffix in (("median", ""), ("max", "_best")):
        floor = results["minimal_loop"]["chain_steps_per_s"][stat]
        bj_rate = blackjax["chain_steps_per_s"][stat] if bj is not None else None
        for name, res in results.items():
            rate = res["chain_steps_per_s"][stat]
            lmc_name = "lmc" + ("" if res["noise"] == "exact" else f"_{res['noise']}")
            lmc_rate = results[lmc_name]["chain_steps_per_s"][stat] if lmc_name in results else None
            res["slowdown_vs_minimal" + suffix] = floor / rate
            res["slowdown_vs_lmc" + suffix] = lmc_rate / rate if lmc_rate else None
            res["speedup_vs_blackjax" + suffix] = rate / bj_rate if bj_rate else None
    goals = {}
    for mode in modes:
        sfx = "" if mode == "exact" else f"_{mode}"
        # from the medians, and from the best repeats ("_best": the least disturbed estimate when
        # the shared machine slows some repeats, BlackJAX's worker included)
        for suffix in ("", "_best"):
            if f"lmc{sfx}" in results and bj is not None:
                goals[f"lmc{sfx}_over_blackjax_ula{suffix}"] = results[f"lmc{sfx}"]["speedup_vs_blackjax" + suffix]
            for K in PLMC_KS:
                if f"plmc_K{K}{sfx}" in results:
                    goals[f"plmc_K{K}{sfx}_step_over_lmc_step{suffix}"] = results[f"plmc_K{K}{sfx}"]["slowdown_vs_lmc" + suffix]
    if memory is not None:
        plmc_mem = [memory["per_config"][f"plmc_K{K}"]["delta_mb"] for K in PLMC_KS if f"plmc_K{K}" in results]
        if plmc_mem:
            goals["plmc_peak_memory_mb_over_K"] = plmc_mem
        for name in MEMORY_SCALING_CONFIGS:
            goals[f"{name}_peak_memory_in_states_over_sizes"] = [row[name]["delta_states"] for row in memory["scaling"]]
    report = {
        "settings": {"chains": args.chains, "dim": args.dim, "steps": args.steps, "repeats": args.repeats,
                     "target": (f"Gaussian.rotated({args.dim}, kappa=10, seed=0)" if args.target == "rotated"
                                else f"Gaussian.isotropic({args.dim})"),
                     "step_size": eta, "dtype": "float64", "device": args.device, "quick": args.quick,
                     "noise_modes": modes, "memory_steps": args.memory_steps,
                     "memory_repeats": args.memory_repeats},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform(), "loadavg_at_start": load_start,
                        "loadavg_at_end": load_end},
        "results": results,
        "blackjax": blackjax,
        "allocator": allocator,
        "memory": memory,
        "memory_baseline_peak_mb": memory["baseline_peak_mb"] if memory else None,
        "goals": goals,
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


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def print_table(report) -> None:
    s, env = report["settings"], report["environment"]
    load = lambda v: "?" if v is None else f"{v[0]:.2f}"  # noqa: E731
    print(f"{s['target']}, {s['chains']} chains, {s['steps']} steps, float64, CPU, {env['torch_threads']} torch "
          f"threads, eta = {s['step_size']:.3g}, {s['repeats']} repeats (median, min-max); load average "
          f"{load(env['loadavg_at_start'])} at the start, {load(env['loadavg_at_end'])} at the end")
    head = (f"{'sampler':<26}{'steps':>6}{'chain-steps/s':>15}{'spread (min-max)':>21}{'x minimal':>10}"
            f"{'x LMC':>7}{'vs BlackJAX':>12}{'evals/step':>11}{'peak dRSS MiB':>14}{'(states)':>9}")
    print(head)
    print("-" * len(head))
    rows = list(report["results"].items())
    bj = report["blackjax"]
    for name, r in rows:
        c = r["chain_steps_per_s"]
        print(f"{name:<26}{r['steps']:>6}{c['median']:>15.4g}{c['min']:>10.3g}-{c['max']:<10.3g}"
              f"{r['slowdown_vs_minimal']:>10.2f}{_fmt(r['slowdown_vs_lmc']):>7}{_fmt(r['speedup_vs_blackjax']):>12}"
              f"{r['evals_per_step']:>11.3f}{_fmt(r['peak_rss_delta_mb'], '.1f'):>14}"
              f"{_fmt(r['peak_rss_delta_states'], '.1f'):>9}")
    if bj["available"]:
        c = bj["chain_steps_per_s"]
        floor = report["results"]["minimal_loop"]["chain_steps_per_s"]["median"]
        print(f"{'blackjax_ula':<26}{bj['steps']:>6}{c['median']:>15.4g}{c['min']:>10.3g}-{c['max']:<10.3g}"
              f"{floor / c['median']:>10.2f}{'':>7}{1.0:>12.2f}{1.0:>11.3f}")
        print(f"  BlackJAX {bj['blackjax']} on jax {bj['jax']} ({bj['backend']}, {bj['dtype']}): {bj['api']}")
    else:
        print(f"  BlackJAX: {bj['note']}")
    print("(x minimal, x LMC: time per chain-step over the minimal loop's / LMC's in the same noise mode, from the\n"
          " medians; vs BlackJAX: chain-steps/s over BlackJAX ULA's (above 1: faster); evals/step: gradient or\n"
          " network evaluations per chain per step, MALA's start excluded; peak dRSS: peak RSS of a fresh process\n"
          " minus that of one that only built the target, and in units of one [chains, dim] float64 state)")
    per = (report.get("memory") or {}).get("per_config", {})
    tuned_mem = {n: m for n, m in per.items() if m.get("tuned_malloc_delta_mb") is not None}
    if tuned_mem:
        print("\nPeak dRSS with the tuned allocator (the default; the table above: glibc's defaults, RSS following "
              "the live tensors):")
        for name, m in tuned_mem.items():
            print(f"  {name:<24} {m['tuned_malloc_delta_mb']:8.1f} MiB ({m['tuned_malloc_delta_states']:.2f} states)"
                  f"   vs {m['delta_mb']:8.1f} MiB with glibc's defaults")
    alloc = report.get("allocator") or {}
    if alloc.get("results"):
        print("\nAllocator (samplers.allocator): chain-steps/s with the tuned malloc (this process) and with glibc's "
              "defaults\n(LAB_MALLOC=system, a worker process timed between the same repeats):")
        for name, a in alloc["results"].items():
            tuned = report["results"][name]["chain_steps_per_s"]["median"]
            print(f"  {name:<24} tuned {tuned:10.4g}   system {a['system_chain_steps_per_s']['median']:10.4g}   "
                  f"tuned/system {a['speedup_tuned_over_system']:5.2f} (best repeats {a['speedup_tuned_over_system_best']:.2f})")
    elif alloc.get("note"):
        print(f"\n  Allocator comparison: {alloc['note']}")
    mem = report.get("memory")
    if mem and mem.get("scaling"):
        print("\nPeak dRSS over sizes (MiB, and in [chains, dim] float64 states):")
        print(f"{'chains':>8}{'dim':>6}{'state MiB':>11}" + "".join(f"{n:>26}" for n in MEMORY_SCALING_CONFIGS))
        for row in mem["scaling"]:
            cells = "".join(f"{row[n]['delta_mb']:>16.1f} ({row[n]['delta_states']:>5.2f})" for n in MEMORY_SCALING_CONFIGS)
            print(f"{row['chains']:>8}{row['dim']:>6}{row['state_mb']:>11.2f}{cells}")
    if report.get("goals"):
        print("\nGoals: " + "; ".join(f"{k} = {[round(x, 2) for x in v] if isinstance(v, list) else _fmt(v)}"
                                      for k, v in report["goals"].items()))


if __name__ == "__main__":
    main()

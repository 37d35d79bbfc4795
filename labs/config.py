"""Sweep settings as plain data: a dataclass that round-trips to a JSON or TOML file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["SweepConfig", "load_config_file", "STUDIES", "K_SCHEDULES"]

STUDIES = ("rate", "theorem", "bias", "scaling")
K_SCHEDULES = ("growing", "fixed")


@dataclass
class SweepConfig:
    """Every setting of ``python -m labs.rate_sweep`` (the command-line flags mirror these)."""

    study: str = "rate"
    targets: list = field(default_factory=lambda: ["gaussian", "holley_stroock"])
    dim: Optional[int] = None            # None: each target's default
    kappa: float = 10.0                  # condition number of Gaussian targets
    samplers: list = field(default_factory=lambda: ["lmc", "plmc", "rlmc"])
    metric: Optional[str] = None         # None: each target's default metric
    budgets: Optional[list] = None       # gradient evaluations per chain; None: each target's default
    chains: int = 20000
    seeds: int = 1
    seed: int = 0
    horizon: Optional[float] = None      # integration time T = n_steps * step_size; None: target default
    start: str = "target"                # "target": exact target samples / law; "standard": N(0, I)
    k_schedule: str = "growing"          # PLMC: K = ceil(k_scale / eta) ("growing") or k_fixed
    k_scale: float = 1.0
    k_fixed: int = 10
    friction: float = 2.0                # underdamped samplers (ulmc, pulmc, rulmc)
    dims: list = field(default_factory=lambda: [2, 10, 100])        # scaling study
    kappas: list = field(default_factory=lambda: [1.0, 10.0, 100.0])  # scaling study
    step_sizes: Optional[list] = None    # bias / theorem studies; None: defaults
    Ks: list = field(default_factory=lambda: [2, 4, 16, 64])          # theorem study
    device: str = "cpu"
    dtype: str = "float64"
    noise: str = "exact"                 # samplers' Gaussian noise: "exact", "vector" or "fast" (samplers.noise)
    out: str = "results/rate_sweep"
    resume: bool = False
    quick: bool = False
    progress: Optional[bool] = None      # None: on when stderr is a terminal
    executor: str = "local"              # "local" (serial, here) or "dask" (labs/executor.py)
    address: Optional[str] = None        # dask: scheduler of an existing cluster, e.g. tcp://host:8786
    workers: Optional[int] = None        # dask: start a local cluster of this many workers

    def validate(self) -> "SweepConfig":
        from samplers import METHODS
        from targets import TARGET_NAMES

        if self.study not in STUDIES:
            raise ValueError(f"unknown study {self.study!r}; known: {', '.join(STUDIES)}")
        if not self.targets:
            raise ValueError("no target given")
        for t in self.targets:
            if t not in TARGET_NAMES:
                raise ValueError(f"unknown target {t!r}; known: {', '.join(TARGET_NAMES)}")
        if not self.samplers:
            raise ValueError("no sampler given")
        for s in self.samplers:
            if s not in METHODS:
                raise ValueError(f"unknown sampler {s!r}; known: {', '.join(METHODS)}")
        if self.dim is not None and (not isinstance(self.dim, int) or self.dim < 1):
            raise ValueError(f"dimension must be a positive integer, got {self.dim!r}")
        _positive(self.kappa, "kappa", minimum=1.0)
        if self.budgets is not None:
            if not self.budgets:
                raise ValueError("empty list of budgets")
            for b in self.budgets:
                if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                    raise ValueError(f"budget must be a positive integer number of gradient evaluations, got {b!r}")
        for name in ("chains", "seeds", "k_fixed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.horizon is not None:
            _positive(self.horizon, "horizon")
        _positive(self.k_scale, "k_scale")
        from samplers.underdamped import check_friction

        check_friction(self.friction)
        if self.k_schedule not in K_SCHEDULES:
            raise ValueError(f"unknown K schedule {self.k_schedule!r}; known: {', '.join(K_SCHEDULES)}")
        if self.start not in ("target", "standard"):
            raise ValueError(f"unknown start {self.start!r}; known: target, standard")
        from samplers.noise import check_noise

        check_noise(self.noise)
        for d in self.dims:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ValueError(f"dimension must be a positive integer, got {d!r}")
        for k in self.kappas:
            _positive(k, "kappa", minimum=1.0)
        for K in self.Ks:
            if isinstance(K, bool) or not isinstance(K, int) or K < 1:
                raise ValueError(f"K must be a positive integer, got {K!r}")
        if self.step_sizes is not None:
            for h in self.step_sizes:
                _positive(h, "step size")
        from labs.cli import check_run_settings

        check_run_settings(self)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _positive(value, name: str, minimum: float = 0.0) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (minimum == 0.0 and value <= 0):
        bound = f">= {minimum:g}" if minimum else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def load_config_file(path: str) -> dict:
    """Settings from a ``.json`` or ``.toml`` file (keys as in :class:`SweepConfig`)."""
    from labs.cli import load_settings_file

    return load_settings_file(path, SweepConfig)

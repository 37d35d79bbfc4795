"""Sweep settings as plain data: a dataclass that round-trips to a JSON or TOML file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from labs.study import RunConfig
from targets.validation import check_int, check_real

__all__ = ["SweepConfig", "load_config_file", "STUDIES", "K_SCHEDULES"]

STUDIES = ("rate", "theorem", "bias", "scaling")
K_SCHEDULES = ("growing", "fixed")


@dataclass
class SweepConfig(RunConfig):
    """Every setting of ``python -m labs.rate_sweep`` (the command-line flags mirror these); the
    settings every lab shares (device, dtype, out, resume, quick, progress, executor) come from
    :class:`labs.study.RunConfig`."""

    study: str = "rate"
    targets: list = field(default_factory=lambda: ["gaussian", "holley_stroock", "mixture"])
    dim: Optional[int] = None            # None: each target's default
    kappa: float = 10.0                  # condition number of Gaussian targets
    target_options: Optional[str] = None  # the target factory's keyword arguments: "separation=6,..."
    samplers: list = field(default_factory=lambda: ["lmc", "plmc", "rlmc"])
    metric: Optional[str] = None         # None: each target's default metric
    budgets: Optional[list] = None       # gradient evaluations per chain; None: each target's default
    budgets_keep: Optional[int] = None   # keep only the first N of each target's default budgets (--quick: 4)
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
    # samplers' Gaussian noise: "vector" (default), "exact" or "fast" (samplers.noise).  "vector" has
    # the exact mode's law (float64 Box-Muller on 53-bit uniforms), vectorized: half the time of a
    # sampled target's cells, where torch's float64 randn is a scalar loop.
    noise: str = "vector"
    out: str = "results/rate_sweep"

    def validate(self) -> "SweepConfig":
        from samplers import METHODS
        from targets import TARGETS

        if self.study not in STUDIES:
            raise ValueError(f"unknown study {self.study!r}; known: {', '.join(STUDIES)}")
        if not self.targets:
            raise ValueError("no target given")
        for t in self.targets:
            if t not in TARGETS:
                raise ValueError(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
        if not self.samplers:
            raise ValueError("no sampler given")
        for s in self.samplers:
            if s not in METHODS:
                raise ValueError(f"unknown sampler {s!r}; known: {', '.join(METHODS)}")
        if self.dim is not None:
            check_int(self.dim, "dimension", 1)
        if self.target_options:
            from labs.rate.sweep import parse_target_options

            parse_target_options(self.target_options)
        check_real(self.kappa, "kappa", minimum=1.0)
        if self.budgets is not None:
            if not self.budgets:
                raise ValueError("empty list of budgets")
            for b in self.budgets:
                check_int(b, "budget (gradient evaluations per chain)", 1)
        for name in ("chains", "seeds", "k_fixed") + (("budgets_keep",) if self.budgets_keep is not None else ()):
            check_int(getattr(self, name), name, 1)
        if self.horizon is not None:
            check_real(self.horizon, "horizon", positive=True)
        check_real(self.k_scale, "k_scale", positive=True)
        from samplers.underdamped import check_friction

        check_friction(self.friction)
        if self.k_schedule not in K_SCHEDULES:
            raise ValueError(f"unknown K schedule {self.k_schedule!r}; known: {', '.join(K_SCHEDULES)}")
        if self.start not in ("target", "standard"):
            raise ValueError(f"unknown start {self.start!r}; known: target, standard")
        from samplers.noise import check_noise

        check_noise(self.noise)
        for d in self.dims:
            check_int(d, "dimension", 1)
        for k in self.kappas:
            check_real(k, "kappa", minimum=1.0)
        for K in self.Ks:
            check_int(K, "K", 1)
        if self.step_sizes is not None:
            for h in self.step_sizes:
                check_real(h, "step size", positive=True)
        return super().validate()


def load_config_file(path: str) -> dict:
    """Settings from a ``.json`` or ``.toml`` file (keys as in :class:`SweepConfig`)."""
    from labs.cli import load_settings_file

    return load_settings_file(path, SweepConfig)

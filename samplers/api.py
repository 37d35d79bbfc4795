"""One entry point for every sampler, overdamped and underdamped: :func:`sample`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from targets.validation import check_device, check_dtype, check_int

from . import lmc, mala, plmc, rlmc, underdamped  # noqa: F401  (register the methods, in this order)
from ._common import check_step_size, nonfinite_rows
from .base import METHODS, SamplingAlgorithm, get_method
from .noise import check_noise

__all__ = ["METHODS", "SampleResult", "sample", "make_generator"]


@dataclass
class SampleResult:
    """What :func:`sample` returns.

    x:           ``[n_chains, d]`` final states (positions, for the underdamped methods).
    v:           ``[n_chains, d]`` final velocities (underdamped methods only, else ``None``).
    grad_evals:  ``[n_chains]`` int64, gradient evaluations made by each chain (MALA's start
                 included).
    diverged:    ``[n_chains]`` bool, chains whose state stopped being finite at some step.
                 Their rows of ``x`` are not finite; metrics refuse them, so drop or report them.
    trace:       ``[n_records, n_chains, d]`` states (positions) at ``trace_steps`` (``None``
                 unless ``record_every`` was given); the start is record 0.
    trace_v:     the same for velocities (underdamped methods only).
    trace_steps: step index of each record.
    trace_grad_evals: ``[n_records, n_chains]`` cumulative gradient evaluations at each record.
    acceptance:  mean acceptance rate per chain (Metropolis-adjusted methods only, e.g. MALA).
    settings:    the arguments that produced this result.
    """

    x: torch.Tensor
    grad_evals: torch.Tensor
    diverged: torch.Tensor
    v: Optional[torch.Tensor] = None
    trace: Optional[torch.Tensor] = None
    trace_v: Optional[torch.Tensor] = None
    trace_steps: list = field(default_factory=list)
    trace_grad_evals: Optional[torch.Tensor] = None
    acceptance: Optional[torch.Tensor] = None
    settings: dict = field(default_factory=dict)

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())


def make_generator(seed: int, device, noise: str = "exact") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``, in noise mode ``noise``.

    It is a :class:`samplers.noise.NoiseGenerator` (a ``torch.Generator`` that carries the mode).
    """
    from .noise import make_generator as _make

    return _make(seed, device, noise)


def _check_start(x0, name: str, n_chains: int, d: int, dtype, device):
    """``x0`` as ``[n_chains, d]`` (a ``[d]`` start is broadcast), or ValueError naming what is wrong."""
    if x0 is None:
        return None
    if not isinstance(x0, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x0).__name__}")
    if x0.dtype != dtype:
        raise ValueError(f"{name} has dtype {x0.dtype} but the run uses dtype {dtype}")
    if x0.device.type != device.type or (device.index is not None and x0.device != device):
        raise ValueError(f"{name} is on device {x0.device} but the run uses device {device}")
    if x0.shape == (d,):
        x0 = x0.expand(n_chains, d)
    elif tuple(x0.shape) != (n_chains, d):
        raise ValueError(f"{name} must have shape [{n_chains}, {d}] or [{d}], got {list(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError(f"{name} contains non-finite values")
    return x0


def sample(
    method,
    target,
    n_chains: int,
    n_steps: int,
    step_size: float,
    *,
    x0: Optional[torch.Tensor] = None,
    v0: Optional[torch.Tensor] = None,
    seed: int = 0,
    device="cpu",
    dtype: torch.dtype = torch.float64,
    record_every: Optional[int] = None,
    callback: Optional[Callable] = None,
    noise: str = "exact",
    **params,
) -> SampleResult:
    """Run ``n_chains`` independent chains of ``method`` for ``n_steps`` steps of ``step_size``.

    method:       a registered method's name (:data:`METHODS`: overdamped ``"lmc"``, ``"plmc"``,
                  ``"plmc_ref"``, ``"rlmc"``, ``"mala"``; underdamped ``"ulmc"``, ``"pulmc"``,
                  ``"pulmc_ref"``, ``"rulmc"``) or a :class:`samplers.base.SamplingAlgorithm`.
    target:       a :class:`targets.Target`; it is converted to ``device`` / ``dtype``.
    params:       the method's own parameters, checked by its descriptor: ``K`` (Poisson-midpoint
                  sub-steps, required by ``"plmc"``, ``"plmc_ref"``, ``"pulmc"``,
                  ``"pulmc_ref"``), ``friction`` (``gamma`` of the underdamped methods, default
                  :data:`samplers.underdamped.DEFAULT_FRICTION` = 2).  A parameter the method
                  does not take is refused.
    x0:           ``[n_chains, d]`` or ``[d]`` start on ``device`` with ``dtype``.  Default: i.i.d.
                  ``N(0, I_d)`` draws from the run's generator (the same for every method with
                  the same seed, so methods start from the same points).
    v0:           start velocities of the underdamped methods, same shapes as ``x0``.  Default:
                  their stationary law ``N(0, I_d)``, drawn from the run's generator after ``x0``.
    seed:         seeds a ``torch.Generator`` on ``device``: the same seed and arguments give
                  the same numbers bit for bit on the CPU.
    record_every: keep the states every ``record_every`` steps (and at the start and the end).
    callback:     called as ``callback(step_index, state, info)`` after every step.
    noise:        how the Gaussian noise is drawn (:mod:`samplers.noise`).  ``"exact"`` (default):
                  ``torch.randn`` in ``dtype``.  ``"fast"``: for float64, float32 draws up-cast
                  (about 4x cheaper on the CPU, where float64 ``randn`` is most of an LMC step).
                  Its law differs from ``N(0, 1)`` only at float32 resolution: ``|Z| <= 5.77``
                  (the mass ``P(|Z| > 5.77) = 8e-9`` is cut); ``P(|Z| > t)`` within ``3e-4``
                  relative up to ``t = 4`` and ``2e-2`` at ``t = 5``; ``E Z^2``, ``E Z^4``
                  within ``6e-7``, ``6e-6`` relative.  The lab's metrics agree between the
                  modes within their standard errors (``tests/test_noise.py``).  ``"vector"``:
                  the exact mode's law (Box–Muller on float64 uniforms) computed vectorized,
                  about 2x cheaper than float64 ``randn`` on the CPU, different numbers.
                  Uniform draws are float64 in every mode.  The kernels receive a generator
                  carrying the mode, so every method honours it; ``x0``/``v0`` are drawn exactly.

    All inputs are checked, and the method's kernel is built, before any work; a bad input
    raises ValueError naming it.  Chains whose state becomes non-finite are flagged in
    ``result.diverged`` and a warning says how many.
    """
    alg: SamplingAlgorithm = get_method(method)
    n_chains = check_int(n_chains, "n_chains", 1)
    n_steps = check_int(n_steps, "n_steps", 0)
    step_size = check_step_size(step_size)
    params = alg.check_params(**params)
    if v0 is not None and not alg.velocities:
        raise ValueError(f"method {alg.name!r} has no velocities and takes no v0")
    if record_every is not None:
        record_every = check_int(record_every, "record_every", 1)
    noise = check_noise(noise)
    dtype = check_dtype(dtype)
    device = check_device(device)
    if not hasattr(target, "grad_potential") or not hasattr(target, "dim"):
        raise ValueError(f"target must be a targets.Target, got {type(target).__name__}")
    d = target.dim
    x0 = _check_start(x0, "x0", n_chains, d, dtype, device)
    v0 = _check_start(v0, "v0", n_chains, d, dtype, device)
    target = target.to(device=device, dtype=dtype)
    step = alg.build_kernel(target, step_size, **params)

    gen = make_generator(seed, device, noise)
    if x0 is None:
        x0 = torch.randn((n_chains, d), generator=gen, device=device, dtype=dtype)
    x0 = x0.clone()
    if alg.velocities and v0 is None:  # the velocities' stationary law
        v0 = torch.randn((n_chains, d), generator=gen, device=device, dtype=dtype)
    state = alg.init(x0, target, v=v0) if alg.velocities else alg.init(x0, target)
    grad_evals = torch.full((n_chains,), alg.init_evals, dtype=torch.int64, device=device)
    diverged = torch.zeros(n_chains, dtype=torch.bool, device=device)
    accepted = torch.zeros(n_chains, dtype=torch.int64, device=device) if alg.metropolis else None
    records, records_v, rec_steps, rec_evals = [], [], [], []

    def record(k):
        records.append(state.x.clone())
        if alg.velocities:
            records_v.append(state.v.clone())
        rec_steps.append(k)
        rec_evals.append(grad_evals.clone())

    if record_every is not None:
        record(0)
    for k in range(1, n_steps + 1):
        state, info = step(gen, state)
        grad_evals += info.grad_evals
        diverged |= nonfinite_rows(state.x)
        if alg.velocities:
            diverged |= nonfinite_rows(state.v)
        if accepted is not None and info.accepted is not None:
            accepted += info.accepted
        if record_every is not None and (k % record_every == 0 or k == n_steps):
            record(k)
        if callback is not None:
            callback(k, state, info)

    settings = dict(method=alg.name, n_chains=n_chains, n_steps=n_steps, step_size=step_size,
                    K=params.get("K"), friction=params.get("friction"), seed=seed, noise=noise,
                    device=str(device), dtype=str(dtype).replace("torch.", ""), target=repr(target))
    settings.update(params)
    n_div = int(diverged.sum())
    if n_div:
        given = "".join(f", {k}={v}" for k, v in params.items())
        warnings.warn(
            f"{alg.name}: {n_div} of {n_chains} chains diverged (non-finite state) with step_size="
            f"{step_size}{given}; they are flagged in result.diverged",
            RuntimeWarning,
            stacklevel=2,
        )
    return SampleResult(
        x=state.x,
        v=state.v if alg.velocities else None,
        grad_evals=grad_evals,
        diverged=diverged,
        trace=torch.stack(records) if records else None,
        trace_v=torch.stack(records_v) if records_v else None,
        trace_steps=rec_steps,
        trace_grad_evals=torch.stack(rec_evals) if rec_evals else None,
        acceptance=(accepted.to(dtype) / max(n_steps, 1)) if accepted is not None else None,
        settings=settings,
    )

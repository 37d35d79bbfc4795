"""Coupled runs: a method and a fine LMC reference driven by the same Brownian path.

The weak error of a method, ``E f(X_N) - E f(X_ref)``, estimated from two independent sets of
chains has the variance ``(Var f(X_N) + Var f(X_ref)) / n``: a floor that hides any error below
``sd(f) / sqrt(n)``.  Driven by the same Brownian path from the same start, the two chains stay
close (their difference is the method's *strong* error), and the per-chain differences
``f(X_N) - f(X_ref)`` have a variance of the order of the squared strong error instead.

:func:`coupled_run` resolves the Brownian path on a fine grid of step ``h_f = eta / (K R)``: the
fine increments are ``sqrt(2 h_f) Z`` with i.i.d. standard normals ``Z``.

* The **reference** is LMC with step ``h_f``, which uses every fine increment.
* **LMC** (``K = 1``) takes each step of ``eta`` with the sum of its ``R`` fine increments.
* **PLMC** takes each coarse step by the plain loop over its ``K`` fine steps of ``h = eta / K``
  (docs/method.md section 3.2): fine step ``i`` uses the sum of its ``R`` fine increments, the
  interpolant and the corrected path share them, and the selections ``H_i ~ Bernoulli(1/K)`` are
  drawn per chain, independent of the path.

Each method then has its own law exactly (sums of independent Gaussian increments are the
increments of a coarser grid), and the reference is LMC at the fine step, whose own weak error
is of order ``h_f``.  ``also_refine=(R/2,)`` runs a second reference at step ``2 h_f`` on the same
path (each of its increments the sum of two fine ones), for a Richardson extrapolation of the
reference to step 0 (:func:`metrics.weak.coupled_weak_error` with ``x_ref_coarse``): that removes
the reference's first-order bias, which for PLMC with ``K ~ 1/eta`` is of the same order
``eta^2`` as the method's own error.  The cost is ``K R`` reference evaluations per coarse step
(plus ``K R / 2`` for the second reference), so this is for moderate ``K`` (the rate study's
``K = ceil(1/eta)``).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from targets.validation import check_device, check_dtype, check_int

from ._common import check_K, check_step_size, nonfinite_rows

__all__ = ["CoupledResult", "coupled_run", "COUPLED_METHODS"]

#: The methods :func:`coupled_run` can couple with a fine LMC reference.
COUPLED_METHODS = ("lmc", "plmc")


class CoupledResult(NamedTuple):
    """``x``, ``x_ref``: ``[n, d]`` final states of the method and of the reference; ``grad_evals``:
    ``[n]`` the method's evaluations per chain; ``ref_step``: the reference's step ``h_f``;
    ``diverged``: ``[n]`` chains where any state stopped being finite; ``x_ref_half``: the second
    reference, at step ``2 h_f`` (``None`` unless ``half_reference=True``)."""

    x: torch.Tensor
    x_ref: torch.Tensor
    grad_evals: torch.Tensor
    ref_step: float
    diverged: torch.Tensor
    x_ref_half: Optional[torch.Tensor] = None


def coupled_run(method: str, target, n_chains: int, n_steps: int, step_size: float, *, refine: int = 4,
                K: Optional[int] = None, x0: Optional[torch.Tensor] = None, seed: int = 0, device="cpu",
                dtype=torch.float64, half_reference: bool = False) -> CoupledResult:
    """``n_chains`` chains of ``method`` (``"lmc"`` or ``"plmc"`` with ``K``) and of the fine LMC
    reference (step ``step_size / (K refine)``), on one Brownian path per chain, from the same start
    ``x0`` (default ``N(0, I)`` draws).  With ``half_reference=True`` (``refine`` even) a second
    reference at twice the fine step shares the path too.  See the module docstring."""
    if method not in COUPLED_METHODS:
        raise ValueError(f"unknown coupled method {method!r}; known: {', '.join(COUPLED_METHODS)}")
    n_chains = check_int(n_chains, "n_chains", 1)
    n_steps = check_int(n_steps, "n_steps", 0)
    eta = check_step_size(step_size)
    R = check_int(refine, "refine", 1)
    if half_reference and R % 2:
        raise ValueError(f"half_reference needs an even refine, got refine={refine!r}")
    if method == "plmc":
        K = check_K(K)
    elif K is not None:
        raise ValueError(f"method 'lmc' takes no K, got K={K!r}")
    else:
        K = 1
    dtype, device = check_dtype(dtype), check_device(device)
    target = target.to(device=device, dtype=dtype)
    d = target.dim
    gen = torch.Generator(device=device).manual_seed(int(seed))
    if x0 is None:
        x0 = torch.randn((n_chains, d), generator=gen, device=device, dtype=dtype)
    elif tuple(x0.shape) != (n_chains, d):
        raise ValueError(f"x0 must have shape [{n_chains}, {d}], got {list(x0.shape)}")
    h = eta / K
    hf = h / R
    sf, s = math.sqrt(2.0 * hf), math.sqrt(2.0 * h)
    x, xr = x0.clone(), x0.clone()
    xh = x0.clone() if half_reference else None
    evals = torch.zeros(n_chains, dtype=torch.int64, device=device)
    diverged = torch.zeros(n_chains, dtype=torch.bool, device=device)
    for _ in range(n_steps):
        g0 = target.grad_potential(x)
        evals += 1
        y, xp = x, x
        for i in range(K):
            z_sum = torch.zeros_like(x)
            z_pair = torch.zeros_like(x)
            for r_ in range(R):  # the reference's R fine steps, and their increments summed
                z = torch.randn(x.shape, generator=gen, device=device, dtype=dtype)
                xr = xr - hf * target.grad_potential(xr) + sf * z
                z_sum += z
                if xh is not None:
                    z_pair += z
                    if r_ % 2:  # the half reference: one step of 2 h_f per pair of fine increments
                        xh = xh - 2.0 * hf * target.grad_potential(xh) + 2.0 * math.sqrt(hf) * (z_pair / math.sqrt(2.0))
                        z_pair.zero_()
            z_i = z_sum / math.sqrt(R)
            g = g0
            if i > 0:
                sel = torch.rand(n_chains, generator=gen, device=device, dtype=torch.float64) < 1.0 / K
                rows = sel.nonzero().squeeze(-1)
                if rows.numel():
                    g = g0.index_add(0, rows, K * (target.grad_potential(y[rows]) - g0[rows]))
                    evals += sel.to(torch.int64)
            xp = xp - h * g + s * z_i
            y = y - h * g0 + s * z_i
        x = xp
        diverged |= nonfinite_rows(x) | nonfinite_rows(xr)
        if xh is not None:
            diverged |= nonfinite_rows(xh)
    return CoupledResult(x, xr, evals, hf, diverged, xh)

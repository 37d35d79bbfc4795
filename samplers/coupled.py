"""Coupled runs: a method and a fine LMC reference driven by the same Brownian path.

The weak error of a method, ``E f(X_N) - E f(X_ref)``, estimated from two independent sets of
chains has the variance ``(Var f(X_N) + Var f(X_ref)) / n``: a floor that hides any error below
``sd(f) / sqrt(n)``.  Driven by the same Brownian path from the same start, the two chains stay
close (their difference is the method's *strong* error), and the per-chain differences
``f(X_N) - f(X_ref)`` have a variance of the order of the squared strong error instead.

:func:`coupled_run` resolves the Brownian path ``W`` on a fine grid of step ``h_f = eta / (K R)``
(``K = 1`` for LMC and RLMC): the fine increments are ``sqrt(h_f) Z`` with i.i.d. standard
normals ``Z``, drawn in the noise mode asked for (:mod:`samplers.noise`).

* The **reference** is LMC with step ``h_f``, which uses every fine increment.
* **LMC** takes each step of ``eta`` with the sum of its ``R`` fine increments.
* **PLMC** takes each coarse step by the plain loop over its ``K`` fine steps of ``h = eta / K``
  (docs/method.md section 3.2): fine step ``i`` uses the sum of its ``R`` fine increments, the
  interpolant and the corrected path share them, and the selections ``H_i ~ Bernoulli(1/K)`` are
  drawn per chain, independent of the path.
* **RLMC** (docs/method.md section 5) needs ``W(u eta)`` at a uniform ``u`` inside the step: on
  the fine grid it is the Brownian bridge value ``W(t_j) + f dW_j + sqrt(h_f f (1 - f)) xi``
  (``u eta = t_j + f h_f``, ``xi ~ N(0, 1)`` fresh), exact in law, and ``W(eta)`` is the sum of
  the step's fine increments.

Each method then has its own law exactly (sums of independent Gaussian increments are the
increments of a coarser grid, and the bridge completes the path in law), and the reference is
LMC at the fine step, whose own weak error is of order ``h_f``.  ``half_reference=True`` runs a
second reference at step ``2 h_f`` on the same path (each of its increments the sum of two
consecutive fine ones; needs ``K R`` even), for a Richardson extrapolation of the reference to
step 0 (:func:`metrics.weak.coupled_weak_error` with ``x_ref_coarse``): that removes the
reference's first-order bias, leaving ``O(h_f^2)``.  For PLMC with ``K ~ 1/eta`` that is
``O(eta^4)``, far below the method's own ``O(eta^2)``, so ``R = 1`` (``K`` even) or ``R = 2``
suffices there; LMC and RLMC, whose errors are larger powers of ``h_f``'s scale, take ``R = 2``
to ``8``.  The cost is ``K R`` reference evaluations per coarse step (plus half that).

**A control variate for PLMC's selections** (``control=f``).  PLMC's random selections make its
strong error of order ``eta`` while its weak error is of order ``eta^2``, so they dominate the
variance of the coupled differences.  With ``b_i = ∇F(Y_i)`` evaluated at every interpolant (not
only the selected ones; these evaluations are not counted in ``grad_evals``), the selection
noise of coarse step ``m`` is ``D_m = -h sum_{i >= 1} (K H_i - 1)(b_i - b_0)``: the kick it adds to
``X_{m+1}``.  Propagated forward along the **reference's** path by the linearized coarse step,
``V_{m+1} = (I - eta ∇²F(X^ref_m)) V_m + D_m`` (the Hessian–vector product by a finite difference
of gradients), the control is ``C = ∇f(X^ref_N) . V_N``.  Each term of ``C`` is a ``(K H_i - 1)``
times a quantity that does not depend on ``H_i`` (the path, the earlier selections, the
reference), and ``E[K H_i - 1] = 0``, so ``E C = 0`` exactly, whatever the linearization's
accuracy; it only has to be correlated with the selections' effect on ``f(X_N)``.
:func:`metrics.weak.coupled_weak_error` (``control=``) subtracts its regression on ``C``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

from targets.validation import check_device, check_dtype, check_int

from ._common import check_K, check_step_size, gaussian, nonfinite_rows, uniform
from .noise import make_generator

__all__ = ["CoupledResult", "coupled_run", "COUPLED_METHODS"]

#: The methods :func:`coupled_run` can couple with a fine LMC reference.
COUPLED_METHODS = ("lmc", "plmc", "rlmc")


class CoupledResult(NamedTuple):
    """``x``, ``x_ref``: ``[n, d]`` final states of the method and of the reference; ``grad_evals``:
    ``[n]`` the method's evaluations per chain; ``ref_step``: the reference's step ``h_f``;
    ``diverged``: ``[n]`` chains where any state stopped being finite; ``x_ref_half``: the second
    reference, at step ``2 h_f`` (``None`` unless ``half_reference=True``); ``control``: ``[n]``
    PLMC's selection control variate (``None`` unless ``control=f`` was given)."""

    x: torch.Tensor
    x_ref: torch.Tensor
    grad_evals: torch.Tensor
    ref_step: float
    diverged: torch.Tensor
    x_ref_half: Optional[torch.Tensor] = None
    control: Optional[torch.Tensor] = None


def _grad_of(f: Callable) -> Callable:
    def grad(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(f(z).sum(), z)
        return g.to(x.dtype)

    return grad


class _Reference:
    """The fine LMC reference (step ``h_f``) and, optionally, the half reference (``2 h_f``)."""

    def __init__(self, target, x0, hf: float, half: bool):
        self.t, self.hf = target, hf
        self.x = x0.clone()
        self.xh = x0.clone() if half else None
        self.pending: Optional[torch.Tensor] = None
        self.first_grad: Optional[torch.Tensor] = None  # ∇F at the reference's state at the step start

    def advance(self, dW: torch.Tensor) -> None:
        """One fine step per row of ``dW`` ``[R, n, d]`` (Brownian increments of variance ``h_f``)."""
        for r in range(dW.shape[0]):
            g = self.t.grad_potential(self.x)
            if self.first_grad is None:
                self.first_grad = g
            self.x = self.x - self.hf * g + math.sqrt(2.0) * dW[r]
            if self.xh is not None:
                if self.pending is None:
                    self.pending = dW[r]
                else:
                    self.xh = self.xh - 2.0 * self.hf * self.t.grad_potential(self.xh) + math.sqrt(2.0) * (self.pending + dW[r])
                    self.pending = None


def coupled_run(method: str, target, n_chains: int, n_steps: int, step_size: float, *, refine: int = 2,
                K: Optional[int] = None, x0: Optional[torch.Tensor] = None, seed: int = 0, device="cpu",
                dtype=torch.float64, half_reference: bool = False, noise: str = "exact",
                control: Optional[Callable] = None) -> CoupledResult:
    """``n_chains`` chains of ``method`` (``"lmc"``, ``"rlmc"``, or ``"plmc"`` with ``K``) and of the
    fine LMC reference (step ``step_size / (K refine)``), on one Brownian path per chain, from the
    same start ``x0`` (default ``N(0, I)`` draws).  ``half_reference=True`` (``K refine`` even) adds
    a second reference at twice the fine step on the same path; ``control=f`` (PLMC only) returns
    the selections' control variate for the test function ``f``.  See the module docstring."""
    if method not in COUPLED_METHODS:
        raise ValueError(f"unknown coupled method {method!r}; known: {', '.join(COUPLED_METHODS)}")
    n_chains = check_int(n_chains, "n_chains", 1)
    n_steps = check_int(n_steps, "n_steps", 0)
    eta = check_step_size(step_size)
    R = check_int(refine, "refine", 1)
    if method == "plmc":
        K = check_K(K)
    elif K is not None:
        raise ValueError(f"method {method!r} takes no K, got K={K!r}")
    else:
        K = 1
    if half_reference and (K * R) % 2:
        raise ValueError(f"half_reference pairs the fine increments of each step: K * refine must be even, "
                         f"got K={K}, refine={refine!r}")
    if control is not None and method != "plmc":
        raise ValueError(f"control variates are for PLMC's selections; method {method!r} has none")
    dtype, device = check_dtype(dtype), check_device(device)
    target = target.to(device=device, dtype=dtype)
    d = target.dim
    gen = make_generator(seed, device, noise)
    if x0 is None:
        x0 = gaussian(gen, (n_chains, d), dtype=dtype, device=device)
    elif tuple(x0.shape) != (n_chains, d):
        raise ValueError(f"x0 must have shape [{n_chains}, {d}], got {list(x0.shape)}")
    h = eta / K
    hf = h / R
    sq_hf, sq2 = math.sqrt(hf), math.sqrt(2.0)
    x = x0.clone()
    ref = _Reference(target, x0, hf, half_reference)
    evals = torch.zeros(n_chains, dtype=torch.int64, device=device)
    diverged = torch.zeros(n_chains, dtype=torch.bool, device=device)
    V = torch.zeros_like(x) if control is not None else None

    def increments(m: int) -> torch.Tensor:
        return gaussian(gen, (m, n_chains, d), dtype=dtype, device=device).mul_(sq_hf)

    for _ in range(n_steps):
        ref.first_grad = None
        x_ref_start = ref.x
        g0 = target.grad_potential(x)
        evals += 1
        if method == "lmc":
            dW = increments(R)
            ref.advance(dW)
            x = x - eta * g0 + sq2 * dW.sum(0)
        elif method == "rlmc":
            u = uniform(gen, (n_chains, 1), dtype=dtype, device=device)
            dW = increments(R)
            ref.advance(dW)
            pos = (u * R).clamp(max=R - 1e-12)
            j = pos.floor().to(torch.int64)  # [n, 1]: the fine interval holding u eta
            frac = pos - j
            cum = torch.cat([torch.zeros_like(dW[:1]), dW.cumsum(0)], 0)  # W at the fine grid points
            idx = j.T.unsqueeze(-1).expand(1, n_chains, d)
            w_left = cum.gather(0, idx)[0]
            dW_j = dW.gather(0, idx)[0]
            bridge = gaussian(gen, (n_chains, d), dtype=dtype, device=device) * torch.sqrt(hf * frac * (1.0 - frac))
            w_mid = w_left + frac * dW_j + bridge
            y = x - (u * eta) * g0 + sq2 * w_mid
            x = x - eta * target.grad_potential(y) + sq2 * cum[-1]
            evals += 1
        else:
            y, xp = x, x
            D = torch.zeros_like(x) if V is not None else None
            for i in range(K):
                dW = increments(R)
                ref.advance(dW)
                w_i = sq2 * dW.sum(0)
                g = g0
                if i > 0:
                    sel = uniform(gen, (n_chains,), dtype=torch.float64, device=device) < 1.0 / K
                    if D is not None:  # every interpolant's gradient, for the control
                        b_i = target.grad_potential(y)
                        g = torch.where(sel[:, None], g0 + K * (b_i - g0), g0)
                        D.sub_(h * (K * sel.to(dtype) - 1.0)[:, None] * (b_i - g0))
                    else:
                        rows = sel.nonzero().squeeze(-1)
                        if rows.numel():
                            g = g0.index_add(0, rows, K * (target.grad_potential(y[rows]) - g0[rows]))
                    evals += sel.to(torch.int64)
                xp = xp - h * g + w_i
                y = y - h * g0 + w_i
            x = xp
            if V is not None and D is not None:
                # V <- (I - eta ∇²F(x_ref)) V + D, the Hessian-vector product by a forward difference
                scale = float(V.abs().max())
                if scale > 0:
                    eps = 1e-6 / scale
                    V = V - eta * (target.grad_potential(x_ref_start + eps * V) - ref.first_grad) / eps
                V = V + D
        diverged |= nonfinite_rows(x) | nonfinite_rows(ref.x)
        if ref.xh is not None:
            diverged |= nonfinite_rows(ref.xh)
    C = None
    if control is not None:
        assert V is not None
        C = (_grad_of(control)(ref.x) * V).sum(-1)
    return CoupledResult(x, ref.x, evals, hf, diverged, ref.xh, C)

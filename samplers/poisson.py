"""The Poisson-midpoint engine over a linear one-step scheme (docs/method.md sections 3 and 4).

A *fine* scheme with ``K`` steps per coarse step,

    X_{i+1} = A_i X_i + G_i b(X_i, t_i) + Gamma_i Z_i ,

is imitated at the cost of about two drift evaluations per coarse step:

* ``b0 = b(X, t_0)`` (one evaluation);
* interpolant ``Y_0 = X``, ``Y_{i+1} = A_i Y_i + G_i b0 + Gamma_i Z_i`` (drift frozen at ``X``);
* corrected path ``X_{i+1} = A_i X_i + G_i [b0 + K H_i (b(Y_i, t_i) - b0)] + Gamma_i Z_i`` with
  ``H_i ~ Bernoulli(1/K)`` i.i.d. **per chain** (shared by all coordinates), evaluating ``b`` only
  where ``H_i = 1``.  ``Y_0 = X`` so ``H_0`` never costs an evaluation and is not drawn.

The interpolant and the corrected path are driven by the **same** Gaussians ``Z_i``.

Two engines are provided, both over a :class:`LinearScheme`:

``reference_step``
    the plain loop over the ``K`` fine steps above, exactly as written (cost ``O(K)`` per step).

``fast_step``
    the K-independent sampler, exact in law.  Because both paths share their noise and the
    fine scheme is linear,

        X_K = Y_K + sum_{i : H_i = 1} Phi(K, i+1) G_i K (b(Y_i, t_i) - b0),

    where ``Phi(j, i) = A_{j-1} ... A_i``.  The selected indices form a Bernoulli(1/K) process
    on ``1..K-1``, drawn as cumulative sums of Geometric(1/K) gaps, and the interpolant's noise
    is a Gauss–Markov process that is drawn only at the selected indices and at ``K``, by exact
    transitions.  Cost and memory per step are ``O(d)`` per chain whatever ``K`` is; the number
    of loop rounds is the largest number of selections over the chains (about
    ``log n / log log n`` for ``n`` chains, since the count is close to Poisson(1)).

A scheme supplies the pieces both engines need (see :class:`OverdampedScheme`):

* ``fine_step(y, b, i, z)``: ``A_i y + G_i b + Gamma_i z`` (reference loop);
* ``frozen_mean(x, b0, i)``: the interpolant without noise at fine index ``i`` (per-chain ``i``);
* ``advance_noise(noise, i, j, generator)``: the interpolant's noise at ``j`` given it at ``i``;
* ``correction(delta_b, i)``: ``Phi(K, i+1) G_i K delta_b``;
* ``evaluate(y, i)``: the drift at fine index ``i``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LinearScheme", "OverdampedScheme", "reference_step", "fast_step", "geometric"]


class LinearScheme:
    """Interface of a linear fine scheme; see the module docstring."""

    K: int

    def evaluate(self, y: torch.Tensor, i: torch.Tensor | int) -> torch.Tensor:
        raise NotImplementedError

    def fine_step(self, y, b, i: int, z):
        raise NotImplementedError

    def noise_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def frozen_mean(self, x, b0, i: torch.Tensor):
        raise NotImplementedError

    def advance_noise(self, noise, i: torch.Tensor, j: torch.Tensor, generator):
        raise NotImplementedError

    def correction(self, delta_b, i: torch.Tensor):
        raise NotImplementedError


class OverdampedScheme(LinearScheme):
    """Fine LMC with step ``h = eta / K``: ``A = I``, ``G = h``, ``Gamma = sqrt(2h)``.

    ``Phi = I`` so the interpolant at fine index ``i`` is ``X + i h b0 + sqrt(2h) S_i`` with
    ``S_i`` the partial sums of the Gaussians, and the correction is ``eta (b(Y_i) - b0)``.
    """

    def __init__(self, target, step_size: float, K: int):
        self.target = target
        self.eta = float(step_size)
        self.K = int(K)
        self.h = self.eta / self.K

    def evaluate(self, y, i):
        return -self.target.grad_potential(y)

    def fine_step(self, y, b, i, z):
        return y + self.h * b + math.sqrt(2.0 * self.h) * z

    def frozen_mean(self, x, b0, i):
        return x + (i.to(x.dtype) * self.h).unsqueeze(-1) * b0

    def advance_noise(self, noise, i, j, generator):
        # sqrt(2h) (S_j - S_i) ~ N(0, 2h (j - i) I), independent of everything up to i.
        std = torch.sqrt((2.0 * self.h) * (j - i).to(noise.dtype)).unsqueeze(-1)
        z = torch.randn(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype)
        return noise + std * z

    def correction(self, delta_b, i):
        return self.eta * delta_b


def geometric(p: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """``n`` i.i.d. Geometric(p) draws on ``{1, 2, ...}`` (trials up to the first success).

    Inverse CDF in float64: ``G = floor(log(1 - U) / log(1 - p)) + 1`` with ``U ~ U[0, 1)``,
    so ``P(G > k) = (1 - p)^k`` exactly up to float64 resolution of ``U``.
    """
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    if p >= 1.0:
        return torch.ones(n, dtype=torch.int64, device=device)
    g = torch.floor(torch.log1p(-u) / math.log1p(-p)) + 1.0
    return g.clamp(max=2.0**62).to(torch.int64)


def reference_step(generator: torch.Generator, x: torch.Tensor, scheme: LinearScheme):
    """One coarse step by the plain loop over ``K`` fine steps.

    Random draws, in order, for ``i = 0..K-1``: ``H_i`` (``[n]`` uniforms, for ``i >= 1``) then
    ``Z_i`` (a tensor of the state's shape).  Returns ``(x_new, grad_evals [n])``.
    """
    K = scheme.K
    n = x.shape[0]
    b0 = scheme.evaluate(x, 0)
    evals = torch.ones(n, dtype=torch.int64, device=x.device)
    y = x
    x_path = x
    for i in range(K):
        if i == 0:
            b_corr = b0
        else:
            selected = torch.rand(n, generator=generator, device=x.device, dtype=torch.float64) < 1.0 / K
            b_corr = b0
            rows = selected.nonzero().squeeze(-1)
            if rows.numel() > 0:
                delta = scheme.evaluate(y[rows], i) - b0[rows]
                b_corr = b0.index_add(0, rows, K * delta)
                evals = evals + selected.to(torch.int64)
        z = torch.randn(scheme.noise_shape(x), generator=generator, device=x.device, dtype=x.dtype)
        x_path = scheme.fine_step(x_path, b_corr, i, z)
        y = scheme.fine_step(y, b0, i, z)
    return x_path, evals


def fast_step(generator: torch.Generator, x: torch.Tensor, scheme: LinearScheme):
    """One coarse step by K-independent sampling (exact in law; see the module docstring).

    Random draws, in order: rounds of (Geometric gaps for the chains still active, then their
    Gaussian noise increments), then the noise increment to ``K`` for every chain.  With
    ``K = 1`` there is no index to select and the only draw is the final Gaussian, so PLMC with
    ``K = 1`` reproduces LMC bit for bit under the same generator.
    Returns ``(x_new, grad_evals [n])``.
    """
    K = scheme.K
    n = x.shape[0]
    device = x.device
    b0 = scheme.evaluate(x, 0)
    evals = torch.ones(n, dtype=torch.int64, device=device)
    pos = torch.zeros(n, dtype=torch.int64, device=device)
    noise = torch.zeros(scheme.noise_shape(x), device=device, dtype=x.dtype)
    total = torch.zeros_like(noise)
    if K > 1:
        p = 1.0 / K
        active = torch.arange(n, device=device)
        while active.numel() > 0:
            nxt = pos[active] + geometric(p, active.numel(), generator, device)
            keep = nxt <= K - 1
            active, nxt = active[keep], nxt[keep]
            if active.numel() == 0:
                break
            prev = pos[active]
            noise_at = scheme.advance_noise(noise[active], prev, nxt, generator)
            noise[active] = noise_at
            pos[active] = nxt
            y = scheme.frozen_mean(x[active], b0[active], nxt) + noise_at
            delta = scheme.evaluate(y, nxt) - b0[active]
            total.index_add_(0, active, scheme.correction(delta, nxt))
            evals.index_add_(0, active, torch.ones_like(active))
    end = torch.full_like(pos, K)
    noise = scheme.advance_noise(noise, pos, end, generator)
    x_new = scheme.frozen_mean(x, b0, end) + total + noise
    return x_new, evals

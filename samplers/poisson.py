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
    on ``1..K-1`` per chain, drawn for all chains at once as cumulative sums of Geometric(1/K)
    gaps along their index lines laid end to end (:func:`selections`), and the interpolant's
    noise is a Gauss–Markov process that is drawn only at the selected indices and at ``K``, by
    exact transitions, and summed along each chain by a doubling scan.  Cost and memory per step
    are ``O(d)`` per chain whatever ``K`` is; the scan takes ``ceil(log2 J)`` rounds for at most
    ``J`` selections per chain (``J`` is about ``log n / log log n`` for ``n`` chains, since the
    count is close to Poisson(1)).

A scheme is a :class:`LinearScheme` (a ``typing.Protocol``: the pieces both engines need, listed
there); its "drift" ``g`` is whatever the scheme evaluates (the gradient ``∇F`` for Langevin, so
that no sign flip costs a pass over the state), and its coefficients absorb the sign.  A scheme
with ``A_i = I`` and the same correction factor at every fine index is an
:class:`AdditiveScheme`, for which :func:`fast_step` takes a shorter path (fine LMC,
:class:`OverdampedScheme`, is one).  Implementations: :class:`OverdampedScheme` here,
``samplers.underdamped.UnderdampedScheme`` and ``samplers.diffusion.DDPMScheme``.
Engineering notes and timings: ``docs/performance.md``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import NamedTuple, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from ._common import MAX_K, check_K, gaussian, uniform

__all__ = ["LinearScheme", "AdditiveScheme", "OverdampedScheme", "reference_step", "fast_step", "geometric", "selections",
           "Selections", "MAX_K"]


@runtime_checkable
class LinearScheme(Protocol):
    """A linear fine scheme of ``K`` steps, ``X_{i+1} = A_i X_i + G_i g(X_i, t_i) + Gamma_i Z_i``
    (docs/method.md section 4), as the engines use it.

    ``Phi(j, i) = A_{j-1} ... A_i`` carries a state from fine index ``i`` to ``j``; the
    *interpolant* ``Y`` is the scheme with the drift frozen at ``g0 = g(X, t_0)``.  Per-row fine
    indices ``i``, ``j`` are ``[m]`` int64 tensors.  A scheme derives from this class explicitly,
    implements the abstract members and may override the three with defaults.
    """

    K: int

    @abstractmethod
    def evaluate(self, y: Tensor, i) -> Tensor:
        """``g`` at the states ``y`` and fine index ``i`` (an int or per row): one evaluation per row."""

    @abstractmethod
    def fine_step(self, y: Tensor, g: Tensor, i: int, z: Tensor) -> Tensor:
        """``A_i y + G_i g + Gamma_i z`` (the reference loop)."""

    @abstractmethod
    def end_mean(self, x: Tensor, g0: Tensor) -> Tensor:
        """The interpolant without noise at ``K``: ``Phi(K, 0) x + Psi(K, 0) g0``."""

    @abstractmethod
    def frozen_mean(self, x: Tensor, g0: Tensor, i: Tensor) -> Tensor:
        """The interpolant without noise at per-row fine indices ``i``."""

    @abstractmethod
    def fresh_noise(self, i: Tensor, j: Tensor, generator) -> Tensor:
        """The part of the interpolant's noise at ``j`` that is new since ``i`` (independent of
        everything up to ``i``), per row: ``sum_{i <= m < j} Phi(j, m+1) Gamma_m Z_m`` in law."""

    @abstractmethod
    def propagate(self, noise: Tensor, i: Tensor, j: Tensor) -> Tensor:
        """``Phi(j, i) noise``: how noise present at ``i`` is carried to ``j``."""

    @abstractmethod
    def add_correction(self, x_end: Tensor, rows: Tensor, delta: Tensor, i: Tensor) -> None:
        """``x_end[rows] += Phi(K, i+1) G_i K delta``, in place."""

    def noise_shape(self, x: Tensor) -> tuple:
        """The shape of one fine step's ``Z`` for the state ``x``."""
        return tuple(x.shape)

    def add_fresh_noise_(self, x: Tensor, i: Tensor, j: Tensor, generator) -> Tensor:
        """``x += fresh_noise(i, j)`` in place."""
        x += self.fresh_noise(i, j, generator)
        return x

    def add_single_step_noise_(self, x_end: Tensor, generator) -> Tensor:
        """``x_end`` plus the noise of one fine step (``K = 1``): ``fresh_noise`` from 0 to 1.

        Schemes override it to add the noise exactly as their one-step method does, so that
        ``K = 1`` reproduces that method bit for bit.
        """
        n = x_end.shape[0]
        zero = torch.zeros(n, dtype=torch.int64, device=x_end.device)
        return x_end + self.fresh_noise(zero, zero + 1, generator)


@runtime_checkable
class AdditiveScheme(LinearScheme, Protocol):
    """A :class:`LinearScheme` with ``A_i = I`` (so ``Phi = I``) and the same correction factor
    ``c = Phi(K, i+1) G_i K`` at every ``i`` (fine LMC: ``c = -eta``).

    Then ``X_K = end_mean(X, g0) - c N g0 + W_K + c sum_p g(Y_p)`` (``N`` selections, ``W_K``
    the interpolant's noise at ``K``): each selected pair adds ``c g(Y_p)`` to its chain, with
    no per-pair ``g(Y_p) - g0`` pass (:func:`fast_step`'s additive path).
    """

    correction_factor: float

    @abstractmethod
    def end_mean_counted(self, x: Tensor, g0: Tensor, counts: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """``end_mean(x, g0) - c N g0`` for per-row selection counts ``N`` (into ``out`` when given)."""

    @abstractmethod
    def frozen_mean_(self, x: Tensor, g0: Tensor, i: Tensor) -> Tensor:
        """``frozen_mean`` written in place into ``x`` (rows the engine owns)."""

    @abstractmethod
    def fresh_noise_parts(self, i: Tensor, j: Tensor, generator) -> tuple[Tensor, Tensor]:
        """``fresh_noise(i, j)`` as ``(z, scale)`` with ``fresh_noise = z * scale`` (the same draws)."""

    def propagate(self, noise: Tensor, i: Tensor, j: Tensor) -> Tensor:
        return noise  # Phi = I


class OverdampedScheme(AdditiveScheme):
    """Fine LMC with step ``h = eta / K`` on ``g = ∇F``: ``A = I``, ``G = -h``, ``Gamma = sqrt(2h)``.

    ``Phi = I``, so the interpolant at fine index ``i`` is ``X - i h g0 + sqrt(2h) S_i`` with
    ``S_i`` the partial sums of the Gaussians, and the correction is ``-eta (g(Y_i) - g0)``:
    an :class:`AdditiveScheme` with correction factor ``-eta``.
    """

    def __init__(self, target, step_size: float, K: int):
        self.target = target
        self.eta = float(step_size)
        self.K = int(K)
        self.h = self.eta / self.K
        self.correction_factor = -self.eta

    def end_mean_counted(self, x, g0, counts, out=None):
        # X - eta g0 + eta N g0 = X + eta (N - 1) g0: the end mean with the N selections' "- g0"
        # of the correction folded in (one pass, into ``out`` when given).
        return torch.addcmul(x, ((counts - 1).to(x.dtype) * self.eta).unsqueeze(-1), g0, out=out)

    def evaluate(self, y, i):
        return self.target.grad_potential(y)

    def fine_step(self, y, g, i, z):
        # As samplers.lmc.step writes it (K = 1 is LMC bit for bit).
        return torch.add(y, g, alpha=-self.h).add_(z, alpha=math.sqrt(2.0 * self.h))

    def end_mean(self, x, g0):
        # Written as in samplers.lmc.step, so that K = 1 reproduces LMC bit for bit.
        return torch.add(x, g0, alpha=-self.eta)

    def add_single_step_noise_(self, x_end, generator):
        # As samplers.lmc.step adds its noise (one fused pass), for K = 1 bit for bit.
        z = self._randn(x_end.shape[0], generator, x_end.device)
        return x_end.add_(z, alpha=math.sqrt(2.0 * self.h))

    def _frozen_drift_factor(self, i, dtype):
        # -i h per row, [rows, 1]: the interpolant's drift term at fine index i is -i h g0
        return (i.to(dtype) * -self.h).unsqueeze(-1)

    def frozen_mean(self, x, g0, i):
        return torch.addcmul(x, self._frozen_drift_factor(i, x.dtype), g0)

    def frozen_mean_(self, x, g0, i):
        # frozen_mean in place on x (which the engine owns: gathered rows), one pass
        return x.addcmul_(g0, self._frozen_drift_factor(i, x.dtype))

    def _std(self, i, j):
        # sqrt(2h) (S_j - S_i) ~ N(0, 2h (j - i) I), independent of everything up to i.
        # sqrt(2h) as math.sqrt, as LMC has it (torch.sqrt is not correctly rounded: sqrt(0.5) is
        # 1 ulp off in float64), so that K = 1 (j - i = 1, torch.sqrt(1) = 1) is LMC bit for bit.
        return math.sqrt(2.0 * self.h) * torch.sqrt((j - i).to(self.target.dtype)).unsqueeze(-1)

    def _randn(self, n, generator, device):
        return gaussian(generator, (n, self.target.dim), dtype=self.target.dtype, device=device)

    def fresh_noise(self, i, j, generator):
        z, scale = self.fresh_noise_parts(i, j, generator)
        return z.mul_(scale)

    def fresh_noise_parts(self, i, j, generator):
        # fresh_noise(i, j) as (standard normals, per-row scale), the same draws; the engine adds
        # z * scale block by block
        return self._randn(j.shape[0], generator, j.device), self._std(i, j)

    def add_fresh_noise_(self, x, i, j, generator):
        return x.addcmul_(self._randn(j.shape[0], generator, j.device), self._std(i, j))

    def add_correction(self, x_end, rows, delta, i):
        x_end.index_add_(0, rows, delta, alpha=-self.eta)


def geometric(p: float, n: int, generator: torch.Generator, device, cap: float = 2.0**62) -> torch.Tensor:
    """``n`` i.i.d. Geometric(p) draws on ``{1, 2, ...}`` (trials up to the first success),
    clamped at ``cap`` (default ``2^62``, so that they fit int64).

    Inverse CDF in float64: ``G = floor(log(1 - U) / log(1 - p)) + 1`` with ``U ~ U[0, 1)``,
    so ``P(G > k) = (1 - p)^k`` exactly up to float64 resolution of ``U``.
    """
    u = uniform(generator, n, dtype=torch.float64, device=device)
    if p >= 1.0:
        return torch.ones(n, dtype=torch.int64, device=device)
    return u.neg_().log1p_().div_(math.log1p(-p)).floor_().add_(1.0).clamp_(max=min(cap, 2.0**62)).to(torch.int64)


def reference_step(generator: torch.Generator, x: torch.Tensor, scheme: LinearScheme):
    """One coarse step by the plain loop over ``K`` fine steps, exactly as in the module docstring.

    Random draws, in order, for ``i = 0..K-1``: ``H_i`` (``[n]`` uniforms, for ``i >= 1``) then
    ``Z_i`` (a tensor of the state's shape).  Returns ``(x_new, grad_evals [n])``.
    """
    K = scheme.K
    n = x.shape[0]
    g0 = scheme.evaluate(x, 0)
    evals = torch.ones(n, dtype=torch.int64, device=x.device)
    y = x
    x_path = x
    for i in range(K):
        g_corr = g0
        if i > 0:
            selected = uniform(generator, n, dtype=torch.float64, device=x.device) < 1.0 / K
            rows = selected.nonzero().squeeze(-1)
            if rows.numel() > 0:
                delta = scheme.evaluate(y[rows], i) - g0[rows]
                g_corr = g0.index_add(0, rows, K * delta)
                evals = evals + selected.to(torch.int64)
        z = gaussian(generator, scheme.noise_shape(x), dtype=x.dtype, device=x.device)
        x_path = scheme.fine_step(x_path, g_corr, i, z)
        y = scheme.fine_step(y, g0, i, z)
    return x_path, evals


class Selections(NamedTuple):
    """The (chain, index) pairs of one coarse step: every ``i`` in ``1..K-1`` with ``H_i = 1``.

    Pairs are ordered by chain, then by index.  ``chain``, ``pos``, ``prev`` are ``[M]`` int64:
    the pair's chain, its index, and the same chain's previous selected index (0 for a chain's
    first pair).  ``counts`` ``[n]``: selections per chain; ``start`` ``[n]``: the index of each
    chain's first pair (``counts.cumsum() - counts``); ``pos_last`` ``[n]``: each chain's last
    selected index (0 for none).
    """

    chain: torch.Tensor
    pos: torch.Tensor
    prev: torch.Tensor
    counts: torch.Tensor
    start: torch.Tensor
    pos_last: torch.Tensor


def _line_chunk(L: int, p: float, n: int) -> int:
    """How many chains' lines (``L`` indices each) one run of Geometric gaps covers: the most
    (up to ``n``) whose total length ``T`` and batch of gaps ``B`` keep ``(B + 1)(T + 1) <= 2^62``,
    so that no cumulative sum of gaps clamped at ``T + 1`` overflows int64."""
    c = n
    while c > 1 and (_batch(c * L, p) + 1) * (c * L + 1) > 2**62:
        c = (c + 1) // 2
    return c


def _batch(T: int, p: float) -> int:
    """Geometric gaps drawn at a time on a line of ``T`` indices: the mean number of selections
    plus six standard deviations plus 16, so that one batch almost always covers the line."""
    mean = T * p
    return int(mean + 6.0 * math.sqrt(mean * (1.0 - p)) + 16.0)


def _bernoulli_line(p: float, T: int, generator, device) -> torch.Tensor:
    """The sorted indices ``j`` in ``1..T`` of a Bernoulli(p) process, ``[M]`` int64: cumulative
    sums of Geometric(p) gaps (clamped at ``T + 1``, which changes nothing below ``T + 1``), a
    batch at a time until they pass ``T``."""
    parts = []
    last = 0
    while True:
        cs = geometric(p, _batch(T, p), generator, device, cap=T + 1).cumsum_(0)
        if last:
            cs += last
        end = int(cs[-1])
        if end > T:
            parts.append(cs[cs <= T])
            break
        parts.append(cs)
        last = end
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def selections(K: int, n: int, generator: torch.Generator, device) -> Selections:
    """The selected (chain, index) pairs of one coarse step, ``H_i ~ Bernoulli(1/K)`` i.i.d. for
    every chain and ``i`` in ``1..K-1``.

    The chains' index sets are laid end to end on one line of ``n (K - 1)`` indices (chain ``c``'s
    index ``i`` at ``c (K - 1) + i``), on which i.i.d. Bernoulli(1/K) variables are a Bernoulli
    process: cumulative sums of Geometric(1/K) gaps, about ``n (1 - 1/K)`` draws in all (very long
    lines are cut into runs of whole chains so that no sum overflows int64).  So the pairs come
    out ordered by chain, then index, and the cost is ``O(n)`` whatever ``K`` is.  Exact: each
    gap is an inverse-CDF draw on a float64 uniform (:func:`geometric`).
    """
    K = check_K(K)
    if K == 1:  # no index to select
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        zeros = torch.zeros(n, dtype=torch.int64, device=device)
        return Selections(empty, empty, empty, zeros, zeros, zeros)
    L = K - 1
    p = 1.0 / K
    chains, positions = [], []
    per_run = max(1, _line_chunk(L, p, n))
    for c0 in range(0, n, per_run):
        c = min(per_run, n - c0)
        j = _bernoulli_line(p, c * L, generator, device) - 1
        chain = torch.div(j, L, rounding_mode="floor")
        positions.append(j.remainder_(L).add_(1))
        chains.append(chain + c0 if c0 else chain)
    chain = chains[0] if len(chains) == 1 else torch.cat(chains)
    pos = positions[0] if len(positions) == 1 else torch.cat(positions)
    counts = torch.bincount(chain, minlength=n)
    start = counts.cumsum(0) - counts
    prev = torch.zeros_like(pos)  # the same chain's previous selection, 0 for its first
    torch.mul(pos[:-1], chain[1:] == chain[:-1], out=prev[1:])
    pos_last = torch.zeros(n, dtype=torch.int64, device=device).scatter_reduce_(0, chain, pos, "amax")
    return Selections(chain, pos, prev, counts, start, pos_last)


def _carry_noise_forward_(noise, sel: Selections, propagate=None) -> None:
    """Turn each pair's fresh noise into the interpolant's noise at its index, in place:
    ``noise[p] = sum_{q <= p, same chain} Phi(pos_p, pos_q) fresh[q]``.

    A segmented inclusive scan by doubling (pairs are ordered by chain, then index): round ``k``
    adds ``Phi(pos_p, pos_{p - 2^k}) noise[p - 2^k]`` to every pair ``p`` that has at least
    ``2^k`` earlier pairs in its chain, the sources gathered before the round writes (``Phi``
    composes, so the association order is the only change from the plain running sum).
    ``ceil(log2 J)`` rounds for at most ``J`` selections per chain (usually 3); one host sync for
    ``J`` and one per round.  ``propagate`` is the scheme's ``Phi`` (``None`` for the identity, an
    :class:`AdditiveScheme`)."""
    most = int(sel.counts.max()) if sel.counts.numel() else 0
    if most < 2:
        return
    rank = torch.arange(sel.chain.numel(), device=sel.chain.device) - sel.start.index_select(0, sel.chain)
    step = 1
    while step < most:
        at = (rank >= step).nonzero().squeeze(-1)
        src = at - step
        carried = noise.index_select(0, src)
        if propagate is not None:
            carried = propagate(carried, sel.pos[src], sel.pos[at])
        noise.index_add_(0, at, carried)
        step *= 2


#: On the CPU the additive path works through the chains in blocks of about this many bytes of
#: state (``[rows, ...]``), evaluating each block's drift at ``X``, its end mean, its pairs'
#: interpolants and drifts and its contributions one after the other, so that a block's rows stay
#: in cache between one operation and the next (what that gains: ``docs/performance.md``).
CHAIN_BLOCK_BYTES = 2**20


def chain_block_rows(x: torch.Tensor) -> int | None:
    """Chains per block for the state ``x``: ``None`` (one block) off the CPU."""
    if x.device.type != "cpu":
        return None
    row_bytes = max(1, x[0].numel() * x.element_size()) if x.shape[0] else 1
    return max(1, CHAIN_BLOCK_BYTES // row_bytes)


def _chain_blocks(x: Tensor, sel: Selections) -> list[tuple[int, int, int, int]]:
    """``(c0, c1, p0, p1)``: the blocks of chains ``c0:c1`` (:func:`chain_block_rows`) and their
    runs of pairs ``p0:p1`` (pairs are ordered by chain); one block off the CPU."""
    n, M = x.shape[0], sel.chain.numel()
    rows = chain_block_rows(x) or n
    if rows >= n:
        return [(0, n, 0, M)]
    bounds = list(range(0, n, rows)) + [n]
    pair_bounds = torch.cat([sel.start, sel.start.new_tensor([M])])[bounds].tolist()
    return [(bounds[b], bounds[b + 1], pair_bounds[b], pair_bounds[b + 1]) for b in range(len(bounds) - 1)]


def _additive_end(generator, x: Tensor, scheme: AdditiveScheme, sel: Selections) -> Tensor:
    """``X_K`` of an :class:`AdditiveScheme`, chain block by chain block (:func:`_chain_blocks`).

    ``X_K = end_mean_counted(X, b0, N) + W_K + c sum_p b(Y_p)``: ``W_K`` is the interpolant's noise
    at ``K``, its value at the chain's last selection (after the scan) plus the fresh increment to
    ``K``, so each pair contributes ``c b(Y_p)``, plus the carried noise if it is its chain's
    last, to its chain in one scatter; ``b0`` is evaluated block by block.  All draws are made
    before the first block (pairs' noise, then the increments to ``K``), so blocking changes no
    draw.  (The scatter's source is built in the buffer of the drift at the pairs, and the
    interpolants in gathered rows, which the engine owns; ``b0`` may be the target's own tensor,
    even ``x`` itself, so it is never written.)
    """
    K, M = scheme.K, sel.chain.numel()
    noise = scheme.fresh_noise(sel.prev, sel.pos, generator)  # becomes the interpolant's noise in place
    _carry_noise_forward_(noise, sel)
    z, scale = scheme.fresh_noise_parts(sel.pos_last, torch.full_like(sel.pos_last, K), generator)
    # 1 for a chain's last pair (whose noise is carried to K), else 0: a [M, 1] factor in x's dtype
    last = torch.ones(M, 1, dtype=x.dtype, device=x.device)
    if M > 1:
        torch.ne(sel.chain[1:], sel.chain[:-1], out=last[:-1, 0])
    x_end = torch.empty_like(x)
    for c0, c1, p0, p1 in _chain_blocks(x, sel):
        xb = x[c0:c1]
        g0 = scheme.evaluate(xb, 0)
        xe = scheme.end_mean_counted(xb, g0, sel.counts[c0:c1], out=x_end[c0:c1])
        xe.addcmul_(z[c0:c1], scale[c0:c1])
        if p1 > p0:
            ch = sel.chain[p0:p1] - c0 if c0 else sel.chain[p0:p1]
            at, carried = sel.pos[p0:p1], noise[p0:p1]
            y = scheme.frozen_mean_(xb.index_select(0, ch), g0.index_select(0, ch), at).add_(carried)
            g_y = scheme.evaluate(y, at)
            xe.index_add_(0, ch, g_y.mul_(scheme.correction_factor).addcmul_(carried, last[p0:p1]))
    return x_end


def _generic_end(generator, x: Tensor, scheme: LinearScheme, sel: Selections) -> Tensor:
    """``X_K`` of any :class:`LinearScheme`, term by term as the module docstring writes it:

        X_K = Y_K + sum_p Phi(K, i_p + 1) G_{i_p} K (g(Y_{i_p}) - g0),
        Y_K = end_mean(X, g0) + W_K,   Y_{i_p} = frozen_mean(X, g0, i_p) + W_{i_p},

    with ``W`` the interpolant's noise, drawn only at the selected indices ``i_p`` (fresh parts,
    summed along each chain by the scan) and carried from each chain's last selection to ``K``.
    """
    K = scheme.K
    g0 = scheme.evaluate(x, 0)
    x_end = scheme.end_mean(x, g0)
    if sel.chain.numel():
        chain, pos = sel.chain, sel.pos
        w = scheme.fresh_noise(sel.prev, pos, generator)
        _carry_noise_forward_(w, sel, scheme.propagate)  # W at each selected index
        g0c = g0.index_select(0, chain)
        y = scheme.frozen_mean(x.index_select(0, chain), g0c, pos).add_(w)
        scheme.add_correction(x_end, chain, scheme.evaluate(y, pos).sub_(g0c), pos)
        has = (sel.counts > 0).nonzero().squeeze(-1)
        last = (sel.start + sel.counts - 1).index_select(0, has)  # each such chain's last pair
        x_end.index_add_(0, has, scheme.propagate(w.index_select(0, last), sel.pos_last[has],
                                                 torch.full_like(has, K)))
    return scheme.add_fresh_noise_(x_end, sel.pos_last, torch.full_like(sel.pos_last, K), generator)


def fast_step(generator: torch.Generator, x: Tensor, scheme: LinearScheme):
    """One coarse step by K-independent sampling (exact in law; see the module docstring).

    All selected evaluations depend only on ``X``, ``g0`` and the interpolant's noise, so they
    are made in batched drift calls over the (chain, index) pairs: **one** call on a GPU; on the
    CPU an :class:`AdditiveScheme` works through the chains in blocks that stay in cache
    (:data:`CHAIN_BLOCK_BYTES`).  Random draws, in order: the Geometric gaps (:func:`selections`),
    the interpolant's noise at the selected indices (pairs ordered by chain, then index), then
    the noise increment to ``K`` for every chain; blocking changes no draw.  With ``K = 1`` there
    is no index to select and the only draw is the final Gaussian, so PLMC with ``K = 1``
    reproduces LMC bit for bit under the same generator.

    Host syncs per step (none per chain or per pair): two per batch of Geometric gaps (usually
    one batch), the largest number of selections and one per round of the noise scan (usually
    3); the CPU blocks add one for their pair ranges, the generic path one for the last-noise
    rows.  Returns ``(x_new, grad_evals [n])``.
    """
    K = check_K(scheme.K)  # before any evaluation, also for a scheme built by hand
    evals = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
    if K == 1:  # nothing to select: the same operations as one fine (LMC) step
        g0 = scheme.evaluate(x, 0)
        return scheme.add_single_step_noise_(scheme.end_mean(x, g0), generator), evals
    sel = selections(K, x.shape[0], generator, x.device)
    evals += sel.counts
    # A scheme takes the additive path by deriving from AdditiveScheme (a nominal check: it costs
    # nothing per step, and any scheme is also right on the generic path).
    if AdditiveScheme in type(scheme).__mro__:
        return _additive_end(generator, x, scheme, sel), evals  # type: ignore[arg-type]
    return _generic_end(generator, x, scheme, sel), evals

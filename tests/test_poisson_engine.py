"""Tests of the Poisson-midpoint engine's pieces (``samplers/poisson.py``): the Geometric gaps,
the selected (chain, index) pairs, the carry of the interpolant's noise and the CPU blocks of
pairs.

Oracles: the Geometric and Binomial laws (exact pmfs, chi-square and z-tests with fixed seeds,
``ALPHA = 1e-3`` and ``Z = 5`` standard errors), a plain Python running sum for the carry, and
the engine's own one-block step for the blocked one.  The samplers built on the engine are
tested in law against exact Gaussian laws and the reference loop in ``tests/test_samplers.py``,
``tests/test_underdamped.py`` and ``tests/test_diffusion.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from samplers import plmc, poisson
from samplers.api import make_generator, sample
from targets import Gaussian

ALPHA = 1e-3
Z = 5.0
F64 = torch.float64


def chisquare_pvalue(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(stats.chisquare(observed, expected).pvalue)


def indicator_matrix(sel: poisson.Selections, n: int, K: int) -> np.ndarray:
    """``H[c, i]`` for ``i`` in ``0..K-1`` (column 0 is never selected) from the pairs."""
    H = np.zeros((n, K), dtype=np.int64)
    H[sel.chain.numpy(), sel.pos.numpy()] += 1
    return H


# ----------------------------------------------------------------------------------------------
# Geometric gaps
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.5, 0.1, 1e-3])
def test_geometric_draws_follow_the_geometric_law(p):
    n = 200_000
    g = poisson.geometric(p, n, make_generator(3, "cpu"), "cpu").numpy()
    assert g.dtype == np.int64 and g.min() >= 1
    edges = np.unique(np.quantile(np.arange(1, 50 / p), np.linspace(0, 1, 30)).astype(np.int64))
    # bins [e_k, e_{k+1}) of {1, 2, ...}; the last bin is the tail
    edges = np.concatenate([[1], edges[edges > 1]])
    observed = np.array([np.sum((g >= a) & (g < b)) for a, b in zip(edges[:-1], edges[1:])] + [np.sum(g >= edges[-1])])
    def sf(k):  # P(G >= k)
        return (1.0 - p) ** (k - 1)

    expected = n * np.array([sf(a) - sf(b) for a, b in zip(edges[:-1], edges[1:])] + [sf(edges[-1])])
    keep = expected >= 5
    observed = np.append(observed[keep], observed[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    assert chisquare_pvalue(observed, expected) > ALPHA


def test_geometric_cap_clamps_only_above_it():
    p, n, cap = 0.01, 100_000, 150
    a = poisson.geometric(p, n, make_generator(4, "cpu"), "cpu")
    b = poisson.geometric(p, n, make_generator(4, "cpu"), "cpu", cap=cap)
    assert torch.equal(b, a.clamp(max=cap))
    assert int(b.max()) == cap  # P(G > 150) = 0.22: the cap is hit


# ----------------------------------------------------------------------------------------------
# Selected pairs
# ----------------------------------------------------------------------------------------------
def check_structure(sel: poisson.Selections, n: int, K: int) -> None:
    chain, pos, prev = sel.chain, sel.pos, sel.prev
    M = chain.numel()
    assert chain.dtype == pos.dtype == prev.dtype == torch.int64
    assert sel.counts.shape == sel.start.shape == sel.pos_last.shape == (n,)
    if M:
        assert int(chain.min()) >= 0 and int(chain.max()) < n
        assert int(pos.min()) >= 1 and int(pos.max()) <= K - 1
    assert torch.equal(sel.counts, torch.bincount(chain, minlength=n))
    assert torch.equal(sel.start, sel.counts.cumsum(0) - sel.counts)
    # ordered by chain, then strictly increasing index within a chain
    same = chain[1:] == chain[:-1]
    assert bool((chain[1:] >= chain[:-1]).all())
    assert bool((pos[1:][same] > pos[:-1][same]).all())
    # prev: the same chain's previous index, 0 for a chain's first pair
    expect_prev = torch.zeros_like(pos)
    expect_prev[1:][same] = pos[:-1][same]
    assert torch.equal(prev, expect_prev)
    last = torch.zeros(n, dtype=torch.int64)
    for c, i in zip(chain.tolist(), pos.tolist()):
        last[c] = i
    assert torch.equal(sel.pos_last, last)


@settings(deadline=None)
@given(K=st.one_of(st.integers(1, 40), st.sampled_from([10**3, 10**6, 2**40, poisson.MAX_K])),
       n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_property_selections_are_well_formed_for_any_K_and_chain_count(K, n, seed):
    sel = poisson.selections(K, n, make_generator(seed, "cpu"), "cpu")
    check_structure(sel, n, K)
    if K == 1:
        assert sel.chain.numel() == 0


@pytest.mark.parametrize("K,n", [(2, 100_000), (5, 60_000), (1000, 40_000)])
def test_selections_are_iid_bernoulli_over_chains_and_indices(K, n):
    """Every (chain, index) is selected with probability 1/K, independently: per-index
    frequencies, per-chain counts Binomial(K - 1, 1/K), and no dependence between the last index
    of a chain and the first of the next (the chains' lines are laid end to end)."""
    p = 1.0 / K
    sel = poisson.selections(K, n, make_generator(11, "cpu"), "cpu")
    check_structure(sel, n, K)
    counts = sel.counts.numpy()
    # counts ~ Binomial(K - 1, p)
    pmf = stats.binom.pmf(np.arange(K), K - 1, p)
    top = int(np.max(np.nonzero(n * pmf >= 5.0)[0]))
    observed = np.array([np.sum(counts == k) for k in range(top)] + [np.sum(counts >= top)], float)
    expected = n * np.append(pmf[:top], stats.binom.sf(top - 1, K - 1, p))
    assert chisquare_pvalue(observed, expected) > ALPHA
    if K <= 5:
        H = indicator_matrix(sel, n, K)
        assert H[:, 0].sum() == 0 and H.max() <= 1
        freq = H[:, 1:].mean(0)
        se = math.sqrt(p * (1 - p) / n)
        assert np.all(np.abs(freq - p) < Z * se), (freq, p, se)
        # the boundary between chain c (index K-1) and chain c+1 (index 1): independent
        a, b = H[:-1, K - 1], H[1:, 1]
        table = np.array([[np.sum((a == u) & (b == v)) for v in (0, 1)] for u in (0, 1)], float)
        joint = np.outer([1 - p, p], [1 - p, p]) * (n - 1)
        assert chisquare_pvalue(table.ravel(), joint.ravel()) > ALPHA
        # and within a chain: indices 1 and 2 (K = 5)
        if K >= 3:
            both = (H[:, 1] * H[:, 2]).mean()
            assert abs(both - p * p) < Z * math.sqrt(p * p * (1 - p * p) / n)
    else:
        # positions uniform over 1..K-1 (10 equal bins)
        pos = sel.pos.numpy()
        observed = np.histogram(pos, bins=np.linspace(1, K, 11))[0]
        assert chisquare_pvalue(observed, np.full(10, pos.size / 10.0)) > ALPHA


def test_selections_cut_into_runs_have_the_same_law(monkeypatch):
    """A very long line is cut into runs of whole chains (so that no sum of gaps overflows);
    forced here to runs of 7 chains, the pairs are well formed and the law is unchanged."""
    monkeypatch.setattr(poisson, "_line_chunk", lambda L, p, n: 7)
    K, n = 4, 50_000
    sel = poisson.selections(K, n, make_generator(12, "cpu"), "cpu")
    check_structure(sel, n, K)
    p = 1.0 / K
    H = indicator_matrix(sel, n, K)
    se = math.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(H[:, 1:].mean(0) - p) < Z * se)
    counts = sel.counts.numpy()
    pmf = stats.binom.pmf(np.arange(K), K - 1, p)
    assert chisquare_pvalue(np.array([np.sum(counts == k) for k in range(K)], float), n * pmf) > ALPHA


def test_line_chunk_keeps_every_sum_of_gaps_inside_int64():
    for K in (2, 10, 10**6, 2**40, poisson.MAX_K):
        L, p = K - 1, 1.0 / K
        for n in (1, 10**4, 10**7, 10**9):
            c = poisson._line_chunk(L, p, n)
            assert 1 <= c <= n
            assert (poisson._batch(c * L, p) + 1) * (c * L + 1) <= 2**62


def test_K_beyond_the_engine_is_refused_before_any_work():
    too_big = poisson.MAX_K + 1
    with pytest.raises(ValueError, match=str(too_big)):
        poisson.selections(too_big, 3, make_generator(0, "cpu"), "cpu")

    class Untouchable(Gaussian):
        def grad_potential(self, x):
            raise AssertionError("evaluated before the check")

    target = Untouchable(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match=str(too_big)):
        plmc.step(make_generator(0, "cpu"), plmc.init(torch.zeros(3, 2, dtype=F64)), target, 0.1, too_big)
    with pytest.raises(ValueError, match=str(too_big)):
        sample("plmc", Gaussian.isotropic(2), 3, 1, 0.1, K=too_big)


# ----------------------------------------------------------------------------------------------
# The carry of the interpolant's noise
# ----------------------------------------------------------------------------------------------
def _decay(a: float):
    """A non-additive ``Phi(j, i) = a^(j - i)`` per row."""
    def propagate(noise, i, j):
        return noise * (a ** (j - i).to(noise.dtype)).unsqueeze(-1)

    propagate.a = a
    return propagate


@pytest.mark.parametrize("propagate", [None, _decay(0.93)], ids=["additive", "decay"])
def test_carry_equals_the_running_sum_chain_by_chain(propagate):
    """The doubling scan against a plain running sum ``v_p = Phi(pos_p, pos_{p-1}) v_{p-1} + z_p``,
    on chains with up to 20 selections (K = 3, many chains: every round of the scan is used)."""
    K, n, d = 3, 4000, 3
    gen = make_generator(21, "cpu")
    sel = poisson.selections(K, n, gen, "cpu")
    # make a few long chains by hand: chain 0 gets 20 pairs (indices 1..20 of a K = 21 line)
    extra = torch.arange(1, 21)
    chain = torch.cat([torch.zeros(20, dtype=torch.int64), sel.chain + 1])
    pos = torch.cat([extra, sel.pos])
    n2 = n + 1
    counts = torch.bincount(chain, minlength=n2)
    start = counts.cumsum(0) - counts
    prev = torch.zeros_like(pos)
    same = chain[1:] == chain[:-1]
    prev[1:][same] = pos[:-1][same]
    pos_last = torch.zeros(n2, dtype=torch.int64).scatter_reduce_(0, chain, pos, "amax")
    sel2 = poisson.Selections(chain, pos, prev, counts, start, pos_last)
    fresh = torch.randn(chain.numel(), d, generator=gen, dtype=F64)
    got = fresh.clone()
    poisson._carry_noise_forward_(got, sel2, propagate)
    a = getattr(propagate, "a", 1.0)
    want = fresh.clone()
    for q in range(1, chain.numel()):
        if chain[q] == chain[q - 1]:
            want[q] = a ** float(pos[q] - pos[q - 1]) * want[q - 1] + fresh[q]
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    assert int(counts.max()) == 20


# ----------------------------------------------------------------------------------------------
# Blocks of chains on the CPU
# ----------------------------------------------------------------------------------------------
def test_chain_blocks_change_only_rounding(monkeypatch):
    """The additive path's blocks of chains (forced to 5 chains) give the one-block step's result
    up to rounding, with the same random draws, evaluating the drift on whole rows, on each block
    of chains and on its own pairs."""
    target = Gaussian.rotated(6, kappa=5.0, seed=1)
    x = torch.randn(3000, 6, generator=make_generator(0, "cpu"), dtype=F64)
    monkeypatch.setattr(poisson, "CHAIN_BLOCK_BYTES", 10**9)
    assert poisson.chain_block_rows(x) >= 3000
    gen_one = make_generator(8, "cpu")
    one, evals_one = plmc.step(gen_one, plmc.init(x), target, 0.2, 7)
    monkeypatch.setattr(poisson, "CHAIN_BLOCK_BYTES", 5 * 6 * 8)
    assert poisson.chain_block_rows(x) == 5
    shapes = []

    class Counting(type(target)):
        def grad_potential(self, y):
            shapes.append(tuple(y.shape))
            return super().grad_potential(y)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(target.__dict__)
    gen_blocked = make_generator(8, "cpu")
    blocked, evals_blocked = plmc.step(gen_blocked, plmc.init(x), counting, 0.2, 7)
    assert torch.equal(gen_one.get_state(), gen_blocked.get_state())  # the same draws
    assert torch.equal(evals_one.grad_evals, evals_blocked.grad_evals)
    torch.testing.assert_close(blocked.x, one.x, rtol=1e-12, atol=1e-12)
    assert all(s[1] == 6 for s in shapes)
    # each of the 600 blocks: b0 on its 5 chains, then (when it has any) its pairs, at most 5 x 6
    assert 600 < len(shapes) <= 1200 and all(s[0] <= 30 for s in shapes)
    assert sum(s[0] for s in shapes) == int(evals_one.grad_evals.sum())


def test_chain_blocks_match_the_pairs_one_to_one(monkeypatch):
    """Every pair is evaluated in the block of its chain: with one chain per block, the drift
    calls alternate ``b0`` of one row and that chain's pairs (its number of selections)."""
    target = Gaussian.rotated(3, kappa=2.0, seed=2)
    x = torch.randn(40, 3, generator=make_generator(1, "cpu"), dtype=F64)
    rows = []

    class Counting(type(target)):
        def grad_potential(self, y):
            rows.append(y.shape[0])
            return super().grad_potential(y)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(target.__dict__)
    monkeypatch.setattr(poisson, "CHAIN_BLOCK_BYTES", 3 * 8)
    _, info = plmc.step(make_generator(3, "cpu"), plmc.init(x), counting, 0.1, 4)
    counts = (info.grad_evals - 1).tolist()
    want = []
    for c in counts:
        want.append(1)
        if c:
            want.append(c)
    assert rows == want


def test_chain_block_rows_is_one_block_off_the_cpu():
    x = torch.zeros(10, 100, dtype=F64)
    assert poisson.chain_block_rows(x) == poisson.CHAIN_BLOCK_BYTES // 800
    meta = torch.empty(10, 100, dtype=F64, device="meta")
    assert poisson.chain_block_rows(meta) is None


# ----------------------------------------------------------------------------------------------
# The two paths of fast_step: additive (chain blocks) and generic (term by term)
# ----------------------------------------------------------------------------------------------
def _end(path, scheme, x, seed):
    gen = make_generator(seed, "cpu")
    sel = poisson.selections(scheme.K, x.shape[0], gen, "cpu")
    return path(gen, x, scheme, sel)


@pytest.mark.parametrize("K", [2, 7, 1000])
def test_additive_and_generic_paths_make_the_same_step(monkeypatch, K):
    """Fine LMC through both paths under one seed: they draw the same numbers in the same order,
    so the states agree up to rounding (the additive path reorders sums), chain blocks included."""
    monkeypatch.setattr(poisson, "CHAIN_BLOCK_BYTES", 64 * 3 * 8)  # blocks of 64 chains
    target = Gaussian.rotated(3, 10.0, seed=4)
    x = torch.randn(3000, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    scheme = poisson.OverdampedScheme(target, 0.2, K)
    assert isinstance(scheme, poisson.AdditiveScheme) and isinstance(scheme, poisson.LinearScheme)
    a = _end(poisson._additive_end, scheme, x, seed=6)
    g = _end(poisson._generic_end, scheme, x, seed=6)
    torch.testing.assert_close(a, g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["additive", "generic"])
def test_each_path_has_the_exact_one_step_law_of_plmc(path):
    """From one point, one PLMC step's mean and variances through either path match the exact
    law (metrics.exact_laws) within 4.5 standard errors; the variances' errors use the sample
    fourth moment (PLMC's law is not Gaussian)."""
    from metrics.exact_laws import exact_law

    target = Gaussian.rotated(3, 10.0, seed=4)
    eta, K, n = 0.15, 8, 40_000
    x0 = torch.tensor([1.5, -0.5, 2.0], dtype=F64)
    law = exact_law("plmc", target, 1, eta, K, mean0=x0.numpy(), cov0=np.zeros((3, 3)))
    scheme = poisson.OverdampedScheme(target, eta, K)
    end = poisson._additive_end if path == "additive" else poisson._generic_end
    x = _end(end, scheme, x0.expand(n, 3).clone(), seed=7).numpy()
    mean, cov = law.means[-1], law.covs[-1]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 4.5 * se_mean), (x.mean(0), mean)
    c = x - x.mean(0)
    var, m4 = (c**2).mean(0), (c**4).mean(0)
    se_var = np.sqrt((m4 - var**2) / n)
    assert np.all(np.abs(var - np.diag(cov)) < 4.5 * se_var), (var, np.diag(cov))
    # the test discriminates: LMC's one-step variance differs from PLMC's by many standard errors
    lmc = exact_law("lmc", target, 1, eta, mean0=x0.numpy(), cov0=np.zeros((3, 3)))
    assert np.abs(np.diag(lmc.covs[-1]) - np.diag(cov)).max() > 10 * se_var.max() or \
        np.abs(lmc.means[-1] - mean).max() > 10 * se_mean.max()

"""PM-DDPM's block schedules and corrections (samplers/diffusion.py, metrics/diffusion_laws.py), each against an oracle.

Oracles: the schedules' definitions checked block by block (cover ``T..1`` once, caps, the stiffness
level and that no block could be longer); a model wrapper that counts every row it evaluates (the
call formulas of ``pm_calls``); DDPM itself, draw for draw (a hybrid schedule that is all tail, the
uniform schedule through the engine); the plain loop over fine steps written out symbolically and
averaged over every midpoint (the exact law of the new corrections, to 1e-10); Monte Carlo of the
real sampler, fast and reference engines (means and covariance entries within 4.5 standard errors at
fixed seeds, as tests/test_diffusion_laws.py does), which also rejects the wrong laws.
"""

import functools
import itertools
import math

import numpy as np
import pytest
import torch

import samplers.diffusion as D
from metrics import diffusion_laws as DL
from metrics.diffusion_laws import diffusion_law, mean_network_calls
from samplers import poisson
from targets import GaussianMixture
from targets.diffusion import DiffusedMixture, DiffusionSchedule

F64 = torch.float64
#: the short schedule of tests/test_diffusion_laws.py (abar_T = 0.078)
SCH = DiffusionSchedule(T=123, beta_start=1e-3, beta_end=0.04)
N = 20000
Z_OK = 4.5
DATA = {
    1: (np.array([0.4]), np.array([[0.06**2]])),
    3: (np.array([0.5, -0.3, 0.2]), np.array([[0.09, 0.02, 0.0], [0.02, 0.03, 0.004], [0.0, 0.004, 0.0049]])),
}


def _min_var(data):
    return float(np.linalg.eigvalsh(DATA[data][1])[0])


def _model(data, schedule=SCH):
    m, S = DATA[data]
    return DiffusedMixture(GaussianMixture(torch.ones(1), torch.from_numpy(m)[None], torch.from_numpy(S)[None]), schedule)


class Counting:
    def __init__(self, model):
        self.model, self.rows, self.calls = model, 0, 0

    def __call__(self, x, t):
        self.rows += x.shape[0]
        self.calls += 1
        return self.model(x, t)


def _covers(blocks, T):
    t = T
    for b in blocks:
        assert b.t_top == t and b.k >= 1 and b.mode in ("pm", "ddpm"), (b, t)
        t -= b.k
    assert t == 0


# ------------------------------------------------------------------------------------------------
# the block lists


@pytest.mark.parametrize("schedule", [SCH, DiffusionSchedule()], ids=["T123", "T1000"])
@pytest.mark.parametrize("K", [1, 7, 40, 123])
@pytest.mark.parametrize("level", [0.05, 0.5, 2.0])
def test_stiffness_blocks_cover_the_chain_respect_the_level_and_are_longest(schedule, K, level):
    min_var = 0.05**2
    blocks = D.pm_schedule(schedule, K, "stiffness", level=level, min_var=min_var)
    _covers(blocks, schedule.T)
    stiff = (schedule.betas * D.score_lipschitz_bound(schedule, min_var)).numpy()
    for t_top, k, mode in blocks:
        assert mode == "pm" and k <= K
        top = stiff[t_top - k + 1:t_top + 1].max()
        if k > 1:
            assert k * top <= level
        if k < min(K, t_top):  # the next step would break the level
            assert (k + 1) * max(top, stiff[t_top - k]) > level
    # the same blocks from the Lipschitz table itself
    L = D.score_lipschitz_bound(schedule, min_var).numpy()
    assert D.pm_schedule(schedule, K, "stiffness", level=level, lipschitz=L) == blocks


def test_stiffness_limits_and_the_uniform_schedule():
    assert D.pm_schedule(SCH, 25) == [D.PMBlock(t, k) for t, k in D.pm_blocks(123, 25)]
    assert D.pm_schedule(SCH, 25, "stiffness", level=1e9, min_var=1e-4) == D.pm_schedule(SCH, 25)
    assert all(b.k == 1 for b in D.pm_schedule(SCH, 25, "stiffness", level=1e-6, min_var=1.0))
    # default level, and the sharp end gets the short blocks
    b = D.pm_schedule(DiffusionSchedule(), 1000, "stiffness", min_var=0.05**2)
    assert b == D.pm_schedule(DiffusionSchedule(), 1000, "stiffness", min_var=0.05**2, level=D.DEFAULT_LEVEL)
    assert max(k for t, k, _ in b if t <= 50) <= 13 < min(k for t, k, _ in b if t > 300)


@pytest.mark.parametrize("K,t_switch,tail", [(25, 40, None), (25, 40, 7), (10, 1, None), (123, 123, None),
                                            (123, 123, 10), (30, 100, 1), (1, 50, 50)])
def test_hybrid_blocks(K, t_switch, tail):
    blocks = D.pm_schedule(SCH, K, "hybrid", t_switch=t_switch, tail_steps=tail)
    _covers(blocks, SCH.T)
    pm = [b for b in blocks if b.mode == "pm"]
    dd = [b for b in blocks if b.mode == "ddpm"]
    assert blocks == pm + dd and all(b.k <= K for b in pm)
    assert sum(b.k for b in pm) == SCH.T - t_switch and sum(b.k for b in dd) == t_switch
    assert len(dd) == (t_switch if tail is None else tail)
    assert dd[0].t_top == t_switch
    if tail is not None:  # strided as strided_timesteps strides T
        ts = [b.t_top for b in dd] + [0]
        assert ts == D.strided_timesteps(DiffusionSchedule(T=t_switch, beta_start=1e-3, beta_end=0.04), tail)


# ------------------------------------------------------------------------------------------------
# calls


@pytest.mark.parametrize("correction", D.PM_CORRECTIONS)
@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_call_counts_match_pm_calls(correction, engine):
    """Counted calls sum to the rows evaluated; their mean (and variance) match pm_calls within 5 SE;
    the one-midpoint corrections cost exactly 2 calls per block of k >= 2."""
    dm = _model(3)
    n = 3000
    xT = dm.sample_xt(n, SCH.T, torch.Generator().manual_seed(1))
    for kw in (dict(K=25), dict(K=60, block_schedule="stiffness", min_var=0.004, level=0.4),
               dict(K=20, block_schedule="hybrid", t_switch=30, tail_steps=6)):
        m = Counting(dm)
        res = D.pm_ddpm(m, xT, SCH, correction=correction, engine=engine, generator=torch.Generator().manual_seed(2),
                        **kw)
        assert int(res.nfe.sum()) == m.rows
        blocks = D.pm_schedule(SCH, **kw)
        mean, var = D.pm_calls(blocks, correction)
        assert mean == pytest.approx(mean_network_calls("pm_ddpm_small", SCH, correction=correction, **kw))
        if correction == "bernoulli":
            assert abs(res.nfe_mean - mean) < 5 * math.sqrt(var / n)
            assert abs(res.nfe.double().var().item() - var) < 5 * var * math.sqrt(2 / (n - 1)) + 0.05 * var
        else:
            assert var == 0.0 and (res.nfe == mean).all()
            assert mean == sum(2 if b.mode == "pm" and b.k > 1 else 1 for b in blocks)
    assert D.pm_calls(D.pm_schedule(SCH, 25)) == pytest.approx(
        (D.expected_pm_nfe(123, 25), sum((k - 1) / k * (1 - 1 / k) for _, k in D.pm_blocks(123, 25))))


# ------------------------------------------------------------------------------------------------
# bit for bit: the uniform schedule is unchanged; an all-tail hybrid is DDPM


def test_uniform_bernoulli_is_the_engine_block_by_block():
    dm = _model(3)
    xT = dm.sample_xt(300, SCH.T, torch.Generator().manual_seed(3))
    res = D.pm_ddpm(dm, xT, SCH, K=25, block_schedule="uniform", correction="bernoulli",
                    generator=torch.Generator().manual_seed(4))
    g, x = torch.Generator().manual_seed(4), xT
    for t_top, k in D.pm_blocks(SCH.T, 25):
        x, _ = poisson.fast_step(g, x, D.DDPMScheme(dm, SCH, t_top, k, "small", 3, x.device, x.dtype))
    assert torch.equal(res.x, x)
    assert torch.equal(D.sample("pm_ddpm_small", dm, xT, SCH, K=25, seed=5).x,
                       D.sample("pm_ddpm_small", dm, xT, SCH, K=25, seed=5, block_schedule="uniform").x)


@pytest.mark.parametrize("variance", ["small", "large"])
def test_hybrid_all_tail_is_ddpm(variance):
    dm = _model(1)
    xT = dm.sample_xt(200, SCH.T, torch.Generator().manual_seed(6))
    for tail, steps in ((None, None), (17, 17)):
        a = D.pm_ddpm(dm, xT, SCH, K=10, variance=variance, block_schedule="hybrid", t_switch=SCH.T, tail_steps=tail,
                      generator=torch.Generator().manual_seed(7))
        b = D.ddpm(dm, xT, SCH, steps=steps, variance=variance, generator=torch.Generator().manual_seed(7))
        assert torch.equal(a.x, b.x) and torch.equal(a.nfe, b.nfe)


def test_float32_and_the_callback():
    dm = _model(3).to(dtype=torch.float32)
    xT = dm.sample_xt(100, SCH.T, torch.Generator().manual_seed(8))
    seen = []
    for corr in D.PM_CORRECTIONS:
        res = D.sample("pm_ddpm_large", dm, xT, SCH, K=30, seed=0, correction=corr, block_schedule="hybrid", t_switch=10,
                       callback=seen.append)
        assert res.x.dtype == torch.float32 and torch.isfinite(res.x).all()
        assert res.settings["correction"] == corr and res.settings["t_switch"] == 10
    assert [c["mode"] for c in seen[:6]] == ["pm"] * 4 + ["ddpm"] * 2 and seen[-1]["s"] == 0


# ------------------------------------------------------------------------------------------------
# the exact law: brute force over every midpoint, and identities


def _patterns(schedule, t_top, k, correction, variance, m, lam):
    """Every selection pattern of one block on diagonal data ``N(m, diag(lam))``: ``(probability, a, c, noise)``
    with ``X_k = a X + c + noise`` per coordinate (``noise`` the variances), from the plain fine-step loop
    written out symbolically in ``(X, Z_0 .. Z_{k-1}, 1)``."""
    betas, alphas, abar = schedule.betas.numpy(), schedule.alphas.numpy(), schedule.alphas_cumprod.numpy()
    d = m.size

    def b(y, t):
        q = math.sqrt(1.0 - abar[t]) / (abar[t] * lam + 1.0 - abar[t])
        out = q[:, None] * y
        out[:, -1] += -q * math.sqrt(abar[t]) * m
        return out

    ts = [t_top - i for i in range(k)]
    A = [1.0 / math.sqrt(alphas[t]) for t in ts]
    G = [-betas[t] / (math.sqrt(alphas[t]) * math.sqrt(1.0 - abar[t])) for t in ts]
    var = [0.0 if t == 1 else (betas[t] * (1.0 - abar[t - 1]) / (1.0 - abar[t]) if variance == "small" else betas[t])
           for t in ts]
    if k == 1:
        patterns = [(1.0, ())]
    elif correction == "bernoulli":
        patterns = [(math.prod(1 / k if h else 1 - 1 / k for h in H), tuple(k * h for h in H))
                    for H in itertools.product((0, 1), repeat=k - 1)]
    else:
        pi = D.midpoint_probabilities(k, correction).numpy()
        patterns = [(pi[i], tuple(1 / pi[i] if j == i else 0.0 for j in range(k - 1))) for i in range(k - 1)]
    X = np.zeros((d, k + 2))
    X[:, 0] = 1.0
    for w, M in patterns:
        b0 = b(X, ts[0])
        Y, P = X.copy(), X.copy()
        for i in range(k):
            Z = np.zeros((d, k + 2))
            Z[:, 1 + i] = math.sqrt(var[i])
            g = b0 + (M[i - 1] * (b(Y, ts[i]) - b0) if i > 0 and M[i - 1] else 0.0)
            P = A[i] * P + G[i] * g + Z
            Y = A[i] * Y + G[i] * b0 + Z
        yield w, P[:, 0], P[:, -1], (P[:, 1:-1] ** 2).sum(1)


def _ddpm_step(schedule, t_top, k, variance, m, lam):
    """One DDPM step ``t_top -> t_top - k`` as ``(a, c, noise)`` per coordinate."""
    betas, alphas, abar = schedule.betas.numpy(), schedule.alphas.numpy(), schedule.alphas_cumprod.numpy()
    s = t_top - k
    a_ts = abar[t_top] / abar[s] if k > 1 else alphas[t_top]
    b_ts = 1.0 - a_ts if k > 1 else betas[t_top]
    q = math.sqrt(1.0 - abar[t_top]) / (abar[t_top] * lam + 1.0 - abar[t_top])
    c = b_ts / math.sqrt(1.0 - abar[t_top])
    v = 0.0 if s == 0 else (b_ts * (1.0 - abar[s]) / (1.0 - abar[t_top]) if variance == "small" else b_ts)
    return (1.0 - c * q) / math.sqrt(a_ts), c * q * math.sqrt(abar[t_top]) * m / math.sqrt(a_ts), v + 0.0 * lam


def _brute_force(schedule, blocks, correction, variance, m, lam, mean, cov):
    """Every PM block's selection patterns mixed with their probabilities; ``"ddpm"`` blocks as one DDPM step."""
    d = m.size
    for t_top, k, mode in blocks:
        if mode == "ddpm":
            a, c, v = _ddpm_step(schedule, t_top, k, variance, m, lam)
            mean, cov = a * mean + c, np.outer(a, a) * cov + np.diag(v)
            continue
        new_mean, second = np.zeros(d), np.zeros((d, d))
        for w, a, c, noise in _patterns(schedule, t_top, k, correction, variance, m, lam):
            mh = a * mean + c
            new_mean += w * mh
            second += w * (np.outer(a, a) * cov + np.diag(noise) + np.outer(mh, mh))
        mean, cov = new_mean, second - np.outer(new_mean, new_mean)
    return mean, cov


SMALL = DiffusionSchedule(T=11, beta_start=0.01, beta_end=0.2)


@pytest.mark.parametrize("correction", D.PM_CORRECTIONS)
@pytest.mark.parametrize("kw", [dict(K=4), dict(K=7), dict(K=6, block_schedule="stiffness", level=1.5, min_var=0.01),
                                dict(K=5, block_schedule="hybrid", t_switch=4), dict(K=3, block_schedule="hybrid",
                                                                                      t_switch=6, tail_steps=2)],
                         ids=["uniform4", "uniform7", "stiffness", "hybrid", "hybrid_strided"])
@pytest.mark.parametrize("variance", ["small", "large"])
def test_law_matches_brute_force_over_every_midpoint(kw, correction, variance):
    """T = 11, diagonal data with a correlated start (the shared selections couple the coordinates)."""
    m, lam = np.array([0.7, -0.2]), np.array([0.4, 0.01])
    mean0, cov0 = np.array([0.3, 0.1]), np.array([[1.0, 0.6], [0.6, 0.8]])
    blocks = D.pm_schedule(SMALL, **kw)
    assert any(b.k > 2 and b.mode == "pm" for b in blocks)
    want_mean, want_cov = _brute_force(SMALL, blocks, correction, variance, m, lam, mean0, cov0)
    law = diffusion_law(f"pm_ddpm_{variance}", m, np.diag(lam), SMALL, correction=correction, start=(mean0, cov0), **kw)
    np.testing.assert_allclose(law.mean, want_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(law.cov, want_cov, rtol=1e-10, atol=1e-12)


def test_law_identities():
    m, S = DATA[3]
    ddpm = diffusion_law("ddpm_large", m, S, SCH)
    for kw in (dict(block_schedule="hybrid", t_switch=SCH.T), dict(block_schedule="stiffness", min_var=1.0, level=1e-6)):
        law = diffusion_law("pm_ddpm_large", m, S, SCH, K=20, correction="one", **kw)
        np.testing.assert_allclose(law.cov, ddpm.cov, rtol=1e-12, atol=1e-14)
    strided = diffusion_law("ddpm_small", m, S, SCH, steps=9)
    law = diffusion_law("pm_ddpm_small", m, S, SCH, K=20, block_schedule="hybrid", t_switch=SCH.T, tail_steps=9)
    np.testing.assert_allclose(law.cov, strided.cov, rtol=1e-12, atol=1e-14)
    a = diffusion_law("pm_ddpm_small", m, S, SCH, K=25)
    b = diffusion_law("pm_ddpm_small", m, S, SCH, K=25, block_schedule="uniform", correction="bernoulli")
    np.testing.assert_array_equal(a.cov, b.cov)


# ------------------------------------------------------------------------------------------------
# Monte Carlo of the real sampler


@functools.lru_cache(maxsize=None)
def _mc(kw, data, seed=1):
    dm = _model(data)
    g = torch.Generator().manual_seed(1000 + seed)
    res = D.sample("pm_ddpm_small", dm, dm.sample_xt(N, SCH.T, g), SCH, seed=seed, **dict(kw))
    assert res.n_diverged == 0
    return res.x.numpy()


def _z(x, law) -> float:
    n = x.shape[0]
    mean = x.mean(0)
    zm = (mean - law.mean) / (x.std(0, ddof=1) / math.sqrt(n))
    xc = x - mean
    prods = xc[:, :, None] * xc[:, None, :]
    zc = (prods.sum(0) / (n - 1) - law.cov) / (prods.std(0, ddof=1) / math.sqrt(n))
    return float(max(np.abs(zm).max(), np.abs(zc).max()))


def _law(kw, data, **more):
    m, S = DATA[data]
    return diffusion_law("pm_ddpm_small", m, S, SCH, **dict(kw), **more)


# (settings, data, wrong laws that must be at least so many SE away)
MC = [
    ((("K", 25), ("correction", "one")), 1, [(dict(correction="bernoulli"), 50.0), (dict(_selection_variance=False), 15.0)]),
    ((("K", 25), ("correction", "one_linear")), 3, [(dict(correction="one"), 20.0), (dict(_shared_noise=False), 40.0)]),
    ((("K", 25), ("correction", "one"), ("engine", "reference")), 1, [(dict(correction="bernoulli"), 50.0)]),
    ((("K", 123), ("block_schedule", "stiffness"), ("min_var", 0.06**2), ("level", 0.8)), 1,
     [(dict(correction="one"), 8.0), (dict(_selection_variance=False), 10.0)]),
    ((("K", 123), ("block_schedule", "stiffness"), ("min_var", 0.0045), ("level", 0.6), ("correction", "one")), 3,
     [(dict(_shared_noise=False), 20.0)]),
    ((("K", 30), ("block_schedule", "hybrid"), ("t_switch", 20), ("tail_steps", 5), ("correction", "one")), 3,
     [(dict(correction="bernoulli"), 40.0), (dict(tail_steps=None), 15.0), (dict(t_switch=25), 5.0)]),
]


@pytest.mark.parametrize("kw,data,wrong", MC, ids=[f"{dict(kw)}-d{d}" for kw, d, _ in MC])
def test_sampler_matches_its_exact_law_and_rejects_wrong_ones(kw, data, wrong):
    x = _mc(kw, data)
    law_kw = tuple((k, v) for k, v in kw if k != "engine")
    assert _z(x, _law(law_kw, data)) < Z_OK
    for change, least in wrong:
        z = _z(x, _law(tuple((k, v) for k, v in law_kw if k not in change), data, **change))
        assert z > least, (kw, change, z)


# ------------------------------------------------------------------------------------------------
# the W2 of the mixture PM-DDPM's output is


@pytest.mark.parametrize("correction", ["bernoulli", "one_linear"])
def test_mixture_w2_against_every_selection_path(correction):
    """T = 11, K = 4 (blocks of 4, 4, 3): the output law is the mixture of every selection path's Gaussian
    (512 or 18 of them, each from the symbolic fine-step loop); its W2 to the data law by quantiles
    (bisection on the mixture's CDF) against pm_mixture_w2's sampled paths, and above Gelbrich's bound."""
    from scipy.special import ndtr, ndtri

    m, lam = np.array([0.3]), np.array([0.02])
    ab = SMALL.abar(SMALL.T)
    comps = [(1.0, math.sqrt(ab) * 0.3, ab * 0.02 + 1.0 - ab)]
    for t_top, k, _ in D.pm_schedule(SMALL, 4):
        pats = list(_patterns(SMALL, t_top, k, correction, "small", m, lam))
        comps = [(w * p, a[0] * mu + c[0], a[0] ** 2 * V + nv[0]) for w, mu, V in comps for p, a, c, nv in pats]
    w, mu, sd = (np.array(v) for v in zip(*comps))
    sd = np.sqrt(sd)
    u = (np.arange(4000) + 0.5) / 4000
    lo, hi = np.full_like(u, -5.0), np.full_like(u, 5.0)
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        below = (w * ndtr((mid[:, None] - mu) / sd)).sum(1) < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    exact = math.sqrt(float(np.mean((0.5 * (lo + hi) - 0.3 - math.sqrt(0.02) * ndtri(u)) ** 2)))
    got, se = DL.pm_mixture_w2("pm_ddpm_small", 0.3, 0.02, SMALL, K=4, correction=correction, n_selections=10000)
    assert abs(got - exact) < 5 * se + 0.01 * exact, (got, se, exact)
    assert got > DL.diffusion_law_w2("pm_ddpm_small", 0.3, 0.02, SMALL, K=4, correction=correction)


def test_mixture_w2_of_a_gaussian_output_is_its_w2():
    for kw in (dict(K=1), dict(K=40, block_schedule="hybrid", t_switch=SCH.T, tail_steps=9)):
        got, se = DL.pm_mixture_w2("pm_ddpm_large", 0.4, 0.06**2, SCH, n_selections=64, **kw)
        assert se == 0.0 and got == pytest.approx(DL.diffusion_law_w2("pm_ddpm_large", 0.4, 0.06**2, SCH, **kw), rel=1e-4)
    with pytest.raises(ValueError, match="takes a PM-DDPM sampler"):
        DL.pm_mixture_w2("ddim", 0.0, 1.0, SCH)
    with pytest.raises(ValueError, match="takes 1-D data"):
        DL.pm_mixture_w2("pm_ddpm_small", [0.0, 0.0], np.eye(2), SCH, K=5)


# ------------------------------------------------------------------------------------------------
# the documented numbers (docs/diffusion_laws.md), default schedule


def test_documented_schedule_numbers():
    sch = DiffusionSchedule()
    s2 = 0.05**2
    cases = [(dict(K=1000, block_schedule="stiffness", level=0.4126, min_var=s2), "small", 79.7, 0.9834),
             (dict(K=1000, block_schedule="stiffness", level=0.6837, min_var=s2, correction="one_linear"), "small", 50.0,
              0.9677),
             (dict(K=25, correction="one"), "small", 80.0, 5.121)]
    for kw, variance, calls, ratio in cases:
        assert mean_network_calls(f"pm_ddpm_{variance}", sch, **kw) == pytest.approx(calls, abs=0.05)
        law = diffusion_law(f"pm_ddpm_{variance}", 0.0, s2, sch, **kw)
        assert law.cov[0, 0] / s2 == pytest.approx(ratio, rel=1e-3)


# ------------------------------------------------------------------------------------------------
# bad input: one-line ValueErrors naming the value, before any call


BAD = [
    (dict(K=10, block_schedule="stiff"), r"block_schedule must be one of uniform, stiffness, hybrid, got 'stiff'"),
    (dict(K=10, correction="two"), r"correction must be one of bernoulli, one, one_linear, got 'two'"),
    (dict(K=10, block_schedule="stiffness", min_var=0.01, level=0), "level must be a finite number > 0, got 0"),
    (dict(K=10, block_schedule="stiffness", min_var=0.01, level=-0.5), "got -0.5"),
    (dict(K=10, block_schedule="stiffness", min_var=0.01, level=float("nan")), "got nan"),
    (dict(K=10, block_schedule="stiffness", min_var=-1.0), "min_var must be a finite number > 0, got -1.0"),
    (dict(K=10, block_schedule="stiffness"), "needs exactly one of min_var"),
    (dict(K=10, block_schedule="stiffness", min_var=0.1, lipschitz=np.ones(124)), "needs exactly one of min_var"),
    (dict(K=10, block_schedule="stiffness", lipschitz=np.ones(10)), "T \\+ 1 = 124 entries .*got 10"),
    (dict(K=10, block_schedule="hybrid", t_switch=0), r"t_switch must be an integer in 1..T=123, got 0"),
    (dict(K=10, block_schedule="hybrid", t_switch=124), "got 124"),
    (dict(K=10, block_schedule="hybrid", t_switch=2.5), "got 2.5"),
    (dict(K=10, block_schedule="hybrid"), "needs t_switch"),
    (dict(K=10, block_schedule="hybrid", t_switch=5, tail_steps=6), r"tail_steps must be an integer in 1..t_switch=5, got 6"),
    (dict(K=10, level=0.5), "block_schedule='uniform' takes no level"),
    (dict(K=10, block_schedule="hybrid", t_switch=5, min_var=0.1), "takes no min_var"),
    (dict(K=0, block_schedule="stiffness", min_var=0.1), "K must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("kw,match", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_settings_raise_before_any_call(kw, match):
    dm = _model(1)
    m = Counting(dm)
    x = dm.sample_xt(8, SCH.T, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match) as err:
        D.pm_ddpm(m, x, SCH, **kw)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        D.sample("pm_ddpm_small", m, x, SCH, **kw)
    assert m.rows == 0
    with pytest.raises(ValueError, match=match):
        diffusion_law("pm_ddpm_small", 0.0, 0.01, SCH, **kw)
    with pytest.raises(ValueError, match=match):
        mean_network_calls("pm_ddpm_small", SCH, **kw)


def test_other_samplers_take_no_pm_settings():
    with pytest.raises(ValueError, match="ddim takes no block_schedule"):
        diffusion_law("ddim", 0.0, 0.01, SCH, steps=5, block_schedule="stiffness")
    with pytest.raises(ValueError, match="takes no spacing_mode"):
        mean_network_calls("pm_ddpm_small", SCH, K=5, spacing_mode="x")
    with pytest.raises(ValueError, match="unknown data law 's=1'"):
        DL.schedules_table("s=1")

"""Exact laws of the diffusion samplers on Gaussian data (metrics/diffusion_laws.py), each against an oracle.

Oracles: Monte Carlo of the real samplers (``samplers.diffusion.sample`` on the exact model of
``targets.diffusion.DiffusedMixture``; means and covariance entries within 4.5 standard errors at
fixed seeds, d = 1 and d = 3 with a non-diagonal covariance); PM-DDPM's plain loop over fine steps
written out symbolically and averaged over all 2^(k-1) selections (closed form to 1e-10);
identities between samplers (PM-DDPM with K = 1 is DDPM, DDIM with eta = 1 is DDPM with the small
variance, DPM-Solver++ of order 1 is DDIM); rotation equivariance.  Each Monte Carlo test also
shows that a wrong law (the other variance, PM-DDPM without its selection variance or with
unshared noise, another order or start) is many standard errors away.
"""

import functools
import itertools
import math

import numpy as np
import pytest
import torch

import metrics
from metrics import diffusion_laws as DL
from metrics.diffusion_laws import diffusion_law, mean_network_calls
from samplers.diffusion import expected_pm_nfe, pm_blocks, sample
from targets import GaussianMixture
from targets.diffusion import DiffusedMixture, DiffusionSchedule

F64 = torch.float64
#: a short schedule (abar_T = 0.078; every sampler starts from the exact p_T, as the lab does).
#: T = 123 leaves a shorter last PM block for K = 2, 5 and 25 (1, 3 and 23 steps).
SCH = DiffusionSchedule(T=123, beta_start=1e-3, beta_end=0.04)
N = 20000
Z_OK = 4.5


def _rotation(d, seed=0):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


DATA = {
    1: (np.array([0.4]), np.array([[0.15**2]])),
    3: (np.array([0.5, -0.3, 0.2]), _rotation(3) @ np.diag([0.3, 0.15, 0.06]) ** 2 @ _rotation(3).T),
}


@functools.lru_cache(maxsize=None)
def _mc(name, kw, data, seed=1, start="marginal"):
    """``N`` samples of the real sampler (cached: the discrimination tests reuse them)."""
    m, S = DATA[data]
    dm = DiffusedMixture(GaussianMixture(torch.ones(1), torch.from_numpy(m)[None], torch.from_numpy(S)[None]), SCH)
    g = torch.Generator().manual_seed(1000 + seed)
    xT = dm.sample_xt(N, SCH.T, g) if start == "marginal" else torch.randn(N, m.size, generator=g, dtype=F64)
    res = sample(name, dm, xT, SCH, seed=seed, **dict(kw))
    assert res.n_diverged == 0
    return res.x.numpy()


def _z(x, law) -> float:
    """The largest |z| over the mean's entries and the covariance's entries (standard errors from
    the sample itself: the output of PM-DDPM is not Gaussian)."""
    n = x.shape[0]
    mean = x.mean(0)
    zm = (mean - law.mean) / (x.std(0, ddof=1) / math.sqrt(n))
    xc = x - mean
    prods = xc[:, :, None] * xc[:, None, :]
    cov = prods.sum(0) / (n - 1)
    zc = (cov - law.cov) / (prods.std(0, ddof=1) / math.sqrt(n))
    return float(max(np.abs(zm).max(), np.abs(zc).max()))


def _law(name, kw, data, **more):
    m, S = DATA[data]
    return diffusion_law(name, m, S, SCH, **dict(kw), **more)


# ------------------------------------------------------------------------------------------------
# Monte Carlo of every sampler


#: (sampler, settings, dimensions): d = 1, and d = 3 with a non-diagonal covariance
CASES = [
    ("ddpm_small", (), (1, 3)),
    ("ddpm_large", (), (1,)),
    ("ddpm_small", (("steps", 10),), (1, 3)),
    ("ddpm_large", (("steps", 10),), (1, 3)),
    ("ddpm_small", (("steps", 25), ("spacing", "logsnr")), (1, 3)),
    ("ddim", (("steps", 5),), (1, 3)),
    ("ddim", (("steps", 20),), (1, 3)),
    ("ddim", (("steps", 10), ("eta", 0.5)), (1, 3)),
    ("dpmpp_2m", (("steps", 6),), (1, 3)),
    ("dpmpp_2m", (("steps", 20),), (1, 3)),
    ("dpmpp_3m", (("steps", 6),), (1, 3)),
    ("dpmpp_3m", (("steps", 20), ("spacing", "logsnr")), (1, 3)),
    ("dpmpp_2m", (("steps", 10), ("order", 1)), (1, 3)),
    ("pm_ddpm_small", (("K", 2),), (3,)),
    ("pm_ddpm_small", (("K", 5),), (1, 3)),
    ("pm_ddpm_small", (("K", 25),), (1, 3)),
    ("pm_ddpm_large", (("K", 5),), (1, 3)),
    ("pm_ddpm_large", (("K", 25),), (1, 3)),
]


@pytest.mark.parametrize("name,kw,data", [(n, k, d) for n, k, dims in CASES for d in dims],
                         ids=[f"{n}-{dict(k)}-d{d}" for n, k, dims in CASES for d in dims])
def test_law_matches_monte_carlo(name, kw, data):
    z = _z(_mc(name, kw, data), _law(name, kw, data))
    assert z < Z_OK, (name, kw, data, z)


# (sampler, settings, data, the wrong law's changes, least |z| the wrong law must show)
WRONG = [
    ("ddpm_small", (), 3, dict(name="ddpm_large"), 16.0),
    ("ddpm_large", (), 1, dict(name="ddpm_small"), 10.0),
    ("ddpm_small", (("steps", 10),), 3, dict(name="ddpm_large"), 500.0),
    ("ddim", (("steps", 10), ("eta", 0.5)), 3, dict(kw=(("steps", 10),)), 5.0),
    ("ddim", (("steps", 10), ("eta", 0.5)), 1, dict(kw=(("steps", 10), ("eta", 1.0))), 15.0),
    ("dpmpp_3m", (("steps", 6),), 3, dict(name="dpmpp_2m"), 20.0),
    ("dpmpp_2m", (("steps", 6),), 1, dict(kw=(("steps", 6), ("order", 1))), 25.0),
    ("pm_ddpm_small", (("K", 5),), 3, dict(_selection_variance=False), 12.0),
    ("pm_ddpm_small", (("K", 5),), 3, dict(_shared_noise=False), 30.0),
    ("pm_ddpm_small", (("K", 5),), 3, dict(name="pm_ddpm_large"), 12.0),
    ("pm_ddpm_small", (("K", 25),), 3, dict(_selection_variance=False), 12.0),
    ("pm_ddpm_small", (("K", 25),), 3, dict(_shared_noise=False), 20.0),
    ("pm_ddpm_small", (("K", 2),), 3, dict(_shared_noise=False), 7.0),
    ("pm_ddpm_small", (("K", 25),), 1, dict(_selection_variance=False), 8.0),
]


@pytest.mark.parametrize("name,kw,data,wrong,least", WRONG)
def test_monte_carlo_rejects_wrong_laws(name, kw, data, wrong, least):
    """The Monte Carlo comparison discriminates: each wrong law is at least ``least`` SE away."""
    wrong = dict(wrong)
    wname, wkw = wrong.pop("name", name), wrong.pop("kw", kw)
    z = _z(_mc(name, kw, data), _law(wname, wkw, data, **wrong))
    assert z > least, (name, kw, wname, wkw, wrong, z)


def test_pm_ddpm_shared_selections_couple_the_coordinates():
    """Diagonal data covariance: DDPM's output covariance is diagonal; PM-DDPM's is too from the exact
    marginal start (the mean then stays on ``sqrt(abar_t) m`` and the selections only scale each
    coordinate's own spread), but not from ``N(0, I)`` with ``m != 0``: the selections, shared by a
    chain's coordinates, move both coordinates' conditional means together.  (The entry is far
    below Monte Carlo resolution here; the brute-force test checks its value.)"""
    m, S = np.array([1.0, -1.0]), np.diag([0.3, 0.06]) ** 2
    for start in ("marginal", "prior"):
        assert abs(diffusion_law("ddpm_small", m, S, SCH, start=start).cov[0, 1]) < 1e-15
    assert abs(diffusion_law("pm_ddpm_small", m, S, SCH, K=25).cov[0, 1]) < 1e-12
    cov = diffusion_law("pm_ddpm_small", m, S, SCH, K=25, start="prior").cov
    assert cov[0, 1] < -1e-3


def test_pm_ddpm_reference_engine_matches_the_law():
    kw = (("K", 5), ("engine", "reference"))
    law = _law("pm_ddpm_small", (("K", 5),), 1)
    x = _mc("pm_ddpm_small", kw, 1, seed=2)
    assert _z(x, law) < Z_OK
    assert _z(x, _law("pm_ddpm_small", (("K", 5),), 1, _shared_noise=False)) > 20.0
    assert _z(x, _law("pm_ddpm_small", (("K", 5),), 1, _selection_variance=False)) > 4.5


def test_prior_start():
    """``start="prior"`` is ``x_T ~ N(0, I)``; at ``abar_T = 0.078`` it differs from the marginal start."""
    kw = (("steps", 10),)
    x = _mc("ddim", kw, 3, start="prior")
    assert _z(x, _law("ddim", kw, 3, start="prior")) < Z_OK
    assert _z(x, _law("ddim", kw, 3)) > 6.0
    m, S = DATA[3]
    a = diffusion_law("ddim", m, S, SCH, steps=10, start=(np.zeros(3), np.eye(3)))
    b = _law("ddim", kw, 3, start="prior")
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# exact identities and the brute-force oracle


@pytest.mark.parametrize("variance", ["small", "large"])
@pytest.mark.parametrize("data", [1, 3])
def test_pm_ddpm_with_K_1_is_ddpm(variance, data):
    for start in ("marginal", "prior"):
        a = _law(f"pm_ddpm_{variance}", (("K", 1),), data, start=start)
        b = _law(f"ddpm_{variance}", (), data, start=start)
        np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=1e-12)


def test_ddim_identities():
    """DDIM with eta = 1 is DDPM with the small variance; DPM-Solver++ of order 1 is DDIM (eta = 0)."""
    for steps in (1, 7, 40, SCH.T):
        a = _law("ddim", (("steps", steps), ("eta", 1.0)), 3)
        b = _law("ddpm_small", (("steps", steps),), 3)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-9, atol=1e-12)
        c = _law("dpm_solver_pp", (("steps", steps), ("order", 1)), 3)
        d = _law("ddim", (("steps", steps),), 3)
        np.testing.assert_allclose(c.mean, d.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c.cov, d.cov, rtol=1e-9, atol=1e-12)


def _brute_force_pm(schedule, K, variance, m, lam, mean, cov):
    """PM-DDPM on diagonal data ``N(m, diag(lam))``: every block's plain fine-step loop written out
    symbolically in ``(X, Z_0 .. Z_{k-1}, 1)`` per coordinate, for each of the 2^(k-1) selections,
    and the moments mixed over the selections with their probabilities."""
    betas, alphas, abar = schedule.betas.numpy(), schedule.alphas.numpy(), schedule.alphas_cumprod.numpy()
    d = m.size
    for t_top, k in pm_blocks(schedule.T, K):
        ts = [t_top - i for i in range(k)]
        A = [1.0 / math.sqrt(alphas[t]) for t in ts]
        G = [-betas[t] / (math.sqrt(alphas[t]) * math.sqrt(1.0 - abar[t])) for t in ts]
        var = [0.0 if t == 1 else (betas[t] * (1.0 - abar[t - 1]) / (1.0 - abar[t]) if variance == "small" else betas[t])
               for t in ts]

        def b(y, t):  # eps_hat on the coefficient vectors [d, k + 2]: q y + o (o on the constant)
            q = math.sqrt(1.0 - abar[t]) / (abar[t] * lam + 1.0 - abar[t])
            out = q[:, None] * y
            out[:, -1] += -q * math.sqrt(abar[t]) * m
            return out

        X = np.zeros((d, k + 2))
        X[:, 0] = 1.0
        new_mean, second = np.zeros(d), np.zeros((d, d))
        for H in itertools.product((0, 1), repeat=k - 1):
            w = math.prod((1.0 / k) if h else (1.0 - 1.0 / k) for h in H)
            b0 = b(X, ts[0])
            Y, P = X.copy(), X.copy()
            for i in range(k):
                Z = np.zeros((d, k + 2))
                Z[:, 1 + i] = math.sqrt(var[i])
                g = b0 + (k * (b(Y, ts[i]) - b0) if i > 0 and H[i - 1] else 0.0)
                P = A[i] * P + G[i] * g + Z
                Y = A[i] * Y + G[i] * b0 + Z
            a, noise, c = P[:, 0], P[:, 1:-1], P[:, -1]
            mh = a * mean + c
            ch = np.outer(a, a) * cov + np.diag((noise**2).sum(1))
            new_mean += w * mh
            second += w * (ch + np.outer(mh, mh))
        mean, cov = new_mean, second - np.outer(new_mean, new_mean)
    return mean, cov


@pytest.mark.parametrize("start", ["marginal", "prior", "correlated"])
@pytest.mark.parametrize("K", [2, 3, 4, 7])
@pytest.mark.parametrize("variance", ["small", "large"])
def test_pm_ddpm_matches_brute_force_over_all_selections(K, variance, start):
    """T = 9: K = 2, 4, 7 leave a shorter last block (1, 1, 2 steps), K = 3 divides T.  From
    ``N(0, I)`` or a correlated start the shared selections couple the coordinates."""
    sch = DiffusionSchedule(T=9, beta_start=0.01, beta_end=0.2)
    m, lam = np.array([0.7, -0.2]), np.array([0.4, 0.01])
    ab = sch.abar(9)
    arg = start
    if start == "marginal":
        mean0, cov0 = math.sqrt(ab) * m, np.diag(ab * lam + 1.0 - ab)
    elif start == "prior":
        mean0, cov0 = np.zeros(2), np.eye(2)
    else:
        mean0, cov0 = np.array([0.3, 0.1]), np.array([[1.0, 0.6], [0.6, 0.8]])
        arg = (mean0, cov0)
    want_mean, want_cov = _brute_force_pm(sch, K, variance, m, lam, mean0, cov0)
    law = diffusion_law(f"pm_ddpm_{variance}", m, np.diag(lam), sch, K=K, start=arg)
    np.testing.assert_allclose(law.mean, want_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(law.cov, want_cov, rtol=1e-10, atol=1e-12)
    if start != "marginal":
        assert abs(want_cov[0, 1]) > 1e-6


@pytest.mark.parametrize("name,kw", [("ddpm_large", dict(steps=9)), ("dpmpp_3m", dict(steps=12)),
                                     ("pm_ddpm_small", dict(K=25)), ("ddim", dict(steps=15, eta=0.3))])
def test_rotation_equivariance(name, kw):
    """The law of rotated data is the rotated law (the eigenbasis is handled exactly)."""
    m, D = np.array([0.3, -0.5, 0.1]), np.diag([0.2, 0.05, 0.1]) ** 2
    Q = _rotation(3, seed=5)
    a = diffusion_law(name, m, D, SCH, **kw)
    b = diffusion_law(name, Q @ m, Q @ D @ Q.T, SCH, **kw)
    np.testing.assert_allclose(b.mean, Q @ a.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.cov, Q @ a.cov @ Q.T, rtol=1e-9, atol=1e-12)


def test_one_dimensional_numbers_and_w2():
    law = diffusion_law("ddpm_small", 0.4, 0.15**2, SCH, steps=10)
    ref = _law("ddpm_small", (("steps", 10),), 1)
    assert law.mean.shape == (1,) and law.cov.shape == (1, 1)
    np.testing.assert_allclose(law.cov, ref.cov, rtol=1e-14)
    w2 = DL.diffusion_law_w2("ddpm_small", 0.4, 0.15**2, SCH, steps=10)
    # marginal start: the mean is exact, so W2 is the gap between the standard deviations
    assert w2 == pytest.approx(abs(math.sqrt(law.cov[0, 0]) - 0.15), rel=1e-9)
    assert law.mean[0] == pytest.approx(0.4, rel=1e-12)
    assert metrics.w2_gaussian(law.mean, law.cov, [0.4], [[0.15**2]]) == pytest.approx(w2, rel=1e-12)


def test_mean_network_calls():
    assert mean_network_calls("ddim", SCH, steps=17) == 17.0
    assert mean_network_calls("ddpm_small", SCH) == float(SCH.T)
    for K in (1, 5, 25):
        assert mean_network_calls("pm_ddpm_large", SCH, K=K) == pytest.approx(expected_pm_nfe(SCH.T, K))
        assert mean_network_calls("pm_ddpm_large", SCH, K=K) == pytest.approx(
            sum(2.0 - 1.0 / k for _, k in pm_blocks(SCH.T, K)))


def test_documented_variance_ratios():
    """The numbers docs/diffusion_laws.md reports for N(0, 0.05^2) on the default schedule."""
    sch = DiffusionSchedule()
    for K, ratio in ((10, 1.434), (25, 20.22), (40, 134.1)):
        law = diffusion_law("pm_ddpm_small", 0.0, 0.05**2, sch, K=K)
        assert law.cov[0, 0] / 0.05**2 == pytest.approx(ratio, rel=1e-3)
    stiff = [(t, k) for t, k, v in DL.pm_block_stiffness(sch, 25, 0.05**2) if v > 1.0]
    assert stiff == [(50, 25), (25, 25)]


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("args,kw,match", [
    (("ddpm_small", [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), {}, "not positive definite"),
    (("ddpm_small", [0.0, 0.0], [[1.0, 0.0], [0.0, 0.0]]), {}, "not positive definite"),
    (("ddpm_small", 0.0, -0.5), {}, "not positive definite"),
    (("ddpm_small", [0.0, 0.0, 0.0], np.eye(2)), {}, r"\(2, 2\).*dimension 3"),
    (("ddpm_small", [0.0, float("nan")], np.eye(2)), {}, "data_mean must be finite"),
    (("ddpm_medium", 0.0, 1.0), {}, "unknown diffusion sampler 'ddpm_medium'"),
    (("pm_ddpm_small", 0.0, 1.0), dict(K=0), "K must be an integer >= 1, got 0"),
    (("pm_ddpm_small", 0.0, 1.0), dict(K=2.5), "got 2.5"),
    (("pm_ddpm_small", 0.0, 1.0), dict(K=124), "K must be at most T=123, got 124"),
    (("pm_ddpm_small", 0.0, 1.0), {}, "needs K"),
    (("pm_ddpm_small", 0.0, 1.0), dict(K=5, steps=10), "takes K, not steps"),
    (("ddim", 0.0, 1.0), dict(K=5, steps=10), "takes steps, not K"),
    (("ddim", 0.0, 1.0), {}, "give steps"),
    (("ddim", 0.0, 1.0), dict(steps=10, eta=-1.0), "eta must be a finite number >= 0, got -1.0"),
    (("ddim", 0.0, 1.0), dict(steps=10, variance="large"), "ddim takes no variance"),
    (("ddpm_small", 0.0, 1.0), dict(variance="medium"), "got 'medium'"),
    (("dpmpp_2m", 0.0, 1.0), dict(steps=10, order=4), "order must be 1, 2 or 3, got 4"),
    (("ddim", 0.0, 1.0), dict(steps=500), r"steps must be at most T=123 .*got 500"),
    (("ddim", 0.0, 1.0), dict(timesteps=[123, 50, 60, 0]), "decrease strictly"),
    (("ddim", 0.0, 1.0), dict(steps=10, start="noise"), "got 'noise'"),
])
def test_bad_input_raises_before_any_work(args, kw, match):
    with pytest.raises(ValueError, match=match):
        diffusion_law(*args, SCH, **kw)


def test_bad_schedule_and_stiffness_input():
    with pytest.raises(ValueError, match="DiffusionSchedule"):
        diffusion_law("ddim", 0.0, 1.0, {"T": 10}, steps=2)
    with pytest.raises(ValueError, match="K must be an integer >= 1, got 0"):
        DL.pm_block_stiffness(SCH, 0, 0.1)
    with pytest.raises(ValueError, match="data_var must be a finite number > 0, got -1"):
        DL.pm_block_stiffness(SCH, 5, -1)

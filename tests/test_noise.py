"""Tests of the noise modes (``samplers.noise``): the ``"fast"`` and ``"vector"`` paths' laws against the normal,
at the resolution of the draws and of the lab's metrics, and how the mode reaches every sampler.

Statistical checks have a fixed seed and a tolerance of ``Z = 5`` standard errors (binomial SEs
for tail counts, empirical SEs for moments and metric values; ``sqrt(se_1^2 + se_2^2)`` between
two runs) or a KS p-value above ``ALPHA = 1e-3``, so they fail only when the code is wrong.
The ``"fast"`` law is also computed exactly (:func:`samplers.noise.fast_tail_probability`): the
draws must match it, and it must sit within the stated distance of the normal.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

import samplers
from metrics.exact_laws import exact_law
from samplers import noise as N
from samplers._common import gaussian, nonfinite_rows, uniform
from samplers.api import METHODS, make_generator, sample
from targets import Gaussian, HolleyStroock

Z = 5.0
ALPHA = 1e-3
F64 = torch.float64
N_DRAWS = 2**25  # per mode, in chunks
CHUNK = 2**22
THRESHOLDS = (1.0, 2.0, 3.0, 4.0, 4.5, 5.0)


def _kw(method):
    spec = METHODS[method]
    return {"K": 4} if spec.takes("K") else {}


@pytest.fixture(scope="module")
def draw_stats():
    """Per mode: tail counts at THRESHOLDS, power sums of Z^1..Z^8, max |Z|, and a 10^6 sample."""
    out = {}
    edges = torch.tensor(THRESHOLDS, dtype=F64)
    for mode in N.NOISE_MODES:
        gen = make_generator(20240611, "cpu", mode)
        counts = torch.zeros(len(THRESHOLDS), dtype=torch.int64)
        sums = np.zeros(9)
        zmax = 0.0
        first = None
        for _ in range(N_DRAWS // CHUNK):
            z = gaussian(gen, (CHUNK,), dtype=F64, device="cpu")
            if first is None:
                first = z[: 10**6].numpy().copy()
            a = z.abs()
            zmax = max(zmax, float(a.max()))
            # number of |z| above each threshold, from one bucketize pass
            b = torch.bucketize(a, edges, right=False)  # i = number of edges < |z|
            hist = torch.bincount(b, minlength=len(THRESHOLDS) + 1)
            counts += hist.flip(0).cumsum(0).flip(0)[1:]
            p = torch.ones_like(z)
            for k in range(1, 9):
                p.mul_(z)
                sums[k] += float(p.sum())
        out[mode] = dict(counts=counts.numpy(), moments=sums / N_DRAWS, zmax=zmax, sample=first)
    return out


# ----------------------------------------------------------------------------------------------
# the fast path's exact law
# ----------------------------------------------------------------------------------------------
def test_fast_tail_probability_is_the_normal_tail_up_to_the_stated_deviations_and_zero_beyond_the_cut():
    rel = {t: N.fast_tail_probability(t) / (2 * stats.norm.sf(t)) - 1 for t in (2.0, 3.0, 4.0, 5.0, 5.5)}
    assert abs(rel[2.0]) < 1e-6 and abs(rel[3.0]) < 1e-5 and abs(rel[4.0]) < 3e-4, rel
    assert -3e-2 < rel[5.0] < -1e-2, rel  # float32's 24-bit radius grid thins the tail
    assert -0.3 < rel[5.5] < -0.1, rel
    assert N.fast_tail_probability(N.FAST_MAX_ABS + 1e-9) == 0.0
    assert N.fast_tail_probability(N.FAST_MAX_ABS - 1e-3) > 0.0
    assert N.FAST_MAX_ABS == pytest.approx(5.7681, abs=1e-4)
    assert 2 * stats.norm.sf(N.FAST_MAX_ABS) == pytest.approx(8.0e-9, rel=0.01)  # the mass cut
    with pytest.raises(ValueError, match="-1"):
        N.fast_tail_probability(-1)


# ----------------------------------------------------------------------------------------------
# the draws: tails, moments, KS
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", N.NOISE_MODES)
def test_tail_counts_match_the_normal_within_binomial_se(draw_stats, mode):
    counts = draw_stats[mode]["counts"]
    for t, c in zip(THRESHOLDS, counts):
        for label, p in (("normal", 2 * stats.norm.sf(t)), ("fast law", N.fast_tail_probability(t))):
            if label == "fast law" and mode != "fast":
                continue
            se = math.sqrt(N_DRAWS * p * (1 - p))
            assert abs(c - N_DRAWS * p) < Z * se, f"{mode}: P(|Z|>{t}): {c} draws vs {N_DRAWS * p:.1f} ({label})"


def test_fast_draws_never_exceed_the_float32_box_muller_radius_and_are_float32_values(draw_stats):
    assert draw_stats["fast"]["zmax"] <= N.FAST_MAX_ABS * (1 + 1e-6)
    assert draw_stats["fast"]["zmax"] > 5.0  # the tail is there up to the cut
    z = torch.from_numpy(draw_stats["fast"]["sample"])
    assert torch.equal(z, z.float().double())
    ze = torch.from_numpy(draw_stats["exact"]["sample"])
    assert not torch.equal(ze, ze.float().double())  # the exact path is float64 resolution


@pytest.mark.parametrize("mode", N.NOISE_MODES)
def test_moments_up_to_fourth_match_the_normal_within_se(draw_stats, mode):
    m = draw_stats[mode]["moments"]  # m[k] = mean of Z^k
    exact = {1: 0.0, 2: 1.0, 3: 0.0, 4: 3.0}
    for k, mu in exact.items():
        var = m[2 * k] - m[k] ** 2  # Var(Z^k) estimated from the same draws (E Z^{2k} up to k = 4)
        se = math.sqrt(var / N_DRAWS)
        assert abs(m[k] - mu) < Z * se, f"{mode}: E Z^{k} = {m[k]:.6g}, exact {mu}, SE {se:.2g}"


@pytest.mark.parametrize("mode", N.NOISE_MODES)
def test_ks_against_the_normal_and_between_modes(draw_stats, mode):
    x = draw_stats[mode]["sample"]
    assert stats.kstest(x, stats.norm.cdf).pvalue > ALPHA
    if mode != "exact":
        assert stats.ks_2samp(x, draw_stats["exact"]["sample"]).pvalue > ALPHA


# ----------------------------------------------------------------------------------------------
# the lab's metrics see no difference
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "vector"])
@pytest.mark.parametrize("method,K", [("lmc", None), ("plmc", 4), ("rlmc", None), ("ulmc", None)])
def test_fast_noise_runs_match_the_exact_law_moments_within_se(method, K, mode):
    """Mean and covariance of fast-noise chains on a rotated Gaussian against the exact recursion
    (what the lab's exact-law metrics compute) within Z empirical SE."""
    if method not in METHODS:
        pytest.skip(f"{method} not available")
    target = Gaussian.rotated(3, kappa=5.0, seed=3)
    eta, n, steps = 0.2, 40000, 15
    kw = {"K": K} if K is not None else {}
    out = sample(method, target, n, steps, eta, seed=11, noise=mode, **kw)
    law = exact_law(method, target, steps, eta, K)
    x = out.x.numpy()
    mean, cov = law.means[-1], law.covs[-1]
    m_hat, m_se = x.mean(0), x.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(m_hat - mean) < Z * m_se), (m_hat, mean, m_se)
    e = x - mean
    prod = e[:, :, None] * e[:, None, :]
    c_hat, c_se = prod.mean(0), prod.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(c_hat - cov) < Z * c_se), (c_hat, cov, c_se)


@pytest.mark.parametrize("metric", ["marginal_w2", "weak_m2"])
def test_sample_based_metrics_agree_between_noise_modes_within_their_se(metric):
    """The lab's sample-based metrics on LMC and PLMC chains: exact and fast noise give values that
    differ by less than Z combined standard errors (the fast path's deviations are far below)."""
    from labs.rate.measures import measure_samples

    target = HolleyStroock(16)
    for method, K in (("lmc", None), ("plmc", 8)):
        kw = {"K": K} if K is not None else {}
        vals = {}
        for mode in N.NOISE_MODES:
            out = sample(method, target, 4000, 40, 0.05, seed={"exact": 5, "fast": 6}.get(mode, 7), noise=mode, **kw)
            vals[mode] = measure_samples(metric, out.x, target, seed=0)
        a = vals["exact"]
        for mode in ("fast", "vector"):
            b = vals[mode]
            se = math.hypot(a["se"], b["se"])
            assert se > 0
            assert abs(a["value"] - b["value"]) < Z * se, f"{method} {metric}: exact {a}, {mode} {b}"


# ----------------------------------------------------------------------------------------------
# the mode reaches every sampler; seeds; API
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def spy(monkeypatch):
    """Records, for every Gaussian drawn through samplers._common.gaussian, its generator's mode
    and whether its float64 values are all float32 values."""
    seen = []
    real = N.gaussian

    def wrapped(generator, shape, dtype, device):
        z = real(generator, shape, dtype, device)
        seen.append((N.noise_mode(generator), z.dtype, bool(torch.equal(z, z.float().to(z.dtype)))))
        return z

    monkeypatch.setattr(N, "gaussian", wrapped)
    return seen


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_draws_its_gaussians_in_the_requested_mode(spy, method):
    target = Gaussian.rotated(4, kappa=3.0, seed=0)
    out = sample(method, target, 50, 3, 0.1, seed=1, noise="fast", **_kw(method))
    assert out.settings["noise"] == "fast"
    assert spy and all(mode == "fast" and dt == F64 and f32 for mode, dt, f32 in spy), spy
    spy.clear()
    sample(method, target, 50, 3, 0.1, seed=1, noise="exact", **_kw(method))
    assert spy and all(mode == "exact" for mode, _, _ in spy)
    assert not all(f32 for _, _, f32 in spy)


def test_diffusion_samplers_draw_in_the_mode_of_the_generator_they_are_given(spy):
    diffusion = getattr(samplers, "diffusion", None)
    if diffusion is None or not hasattr(diffusion, "DIFFUSION_SAMPLERS"):
        pytest.skip("samplers.diffusion not available")
    from targets import GaussianMixture
    from targets.diffusion import DiffusedMixture, DiffusionSchedule

    schedule = DiffusionSchedule()
    model = DiffusedMixture(GaussianMixture.bimodal(3), schedule)
    x = torch.randn(20, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    for name, kw in (("ddpm_small", dict(steps=10)), ("pm_ddpm_small", dict(K=100))):
        spy.clear()
        a = diffusion.sample(name, model.eps_hat, x, schedule, generator=make_generator(3, "cpu", "fast"), **kw)
        assert spy and all(mode == "fast" and f32 for mode, _, f32 in spy), name
        b = diffusion.sample(name, model.eps_hat, x, schedule, generator=make_generator(3, "cpu", "fast"), **kw)
        assert torch.equal(a.x, b.x)


@pytest.mark.parametrize("method", list(METHODS))
def test_fast_runs_repeat_bit_for_bit_and_differ_from_exact_runs(method):
    target = Gaussian.rotated(4, kappa=3.0, seed=0)
    a = sample(method, target, 30, 4, 0.1, seed=7, noise="fast", **_kw(method))
    b = sample(method, target, 30, 4, 0.1, seed=7, noise="fast", **_kw(method))
    c = sample(method, target, 30, 4, 0.1, seed=7, noise="exact", **_kw(method))
    assert torch.equal(a.x, b.x) and torch.equal(a.grad_evals, b.grad_evals)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("mode", ["fast", "vector"])
@pytest.mark.parametrize("ref", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_plmc_with_K1_equals_lmc_bit_for_bit_in_fast_mode(ref, dtype, mode):
    target = Gaussian.rotated(5, kappa=4.0, seed=2)
    for eta in (0.01, 0.137, 0.3):
        ref_out = sample("lmc", target, 40, 12, eta, seed=3, noise=mode, dtype=dtype)
        out = sample("plmc_ref" if ref else "plmc", target, 40, 12, eta, K=1, seed=3, noise=mode, dtype=dtype)
        assert torch.equal(out.x, ref_out.x), eta


def test_fast_mode_is_the_exact_mode_for_float32_states():
    target = Gaussian.rotated(4, kappa=3.0, seed=0)
    for method in ("lmc", "plmc", "rlmc"):
        kw = {"K": 10} if method == "plmc" else {}
        a = sample(method, target, 30, 5, 0.1, seed=2, noise="fast", dtype=torch.float32, **kw)
        b = sample(method, target, 30, 5, 0.1, seed=2, noise="exact", dtype=torch.float32, **kw)
        assert torch.equal(a.x, b.x), method


def test_noise_generator_is_a_torch_generator_that_keeps_its_mode_through_copies():
    g = make_generator(5, "cpu", "fast")
    assert isinstance(g, torch.Generator) and isinstance(g, N.NoiseGenerator)
    assert g.noise == "fast" and N.noise_mode(g) == "fast" and "fast" in repr(g)
    assert N.noise_mode(torch.Generator()) == "exact"
    torch.randn(3, generator=g)  # usable wherever a generator is
    for h in (copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert isinstance(h, N.NoiseGenerator) and h.noise == "fast"
        assert torch.equal(gaussian(h, (8,), dtype=F64, device="cpu"), gaussian(g.__deepcopy__({}), (8,), dtype=F64,
                                                                                    device="cpu"))
    # the same seed gives the same stream as a plain generator in exact mode
    plain = torch.Generator().manual_seed(5)
    assert torch.equal(gaussian(make_generator(5, "cpu"), (9,), dtype=F64, device="cpu"),
                       torch.randn(9, generator=plain, dtype=F64))
    # uniforms are the same in both modes
    assert torch.equal(uniform(make_generator(5, "cpu", "fast"), (9,), dtype=F64, device="cpu"),
                       uniform(make_generator(5, "cpu", "exact"), (9,), dtype=F64, device="cpu"))


@pytest.mark.parametrize("bad", ["Fast", "float32", "", None, 1])
def test_unknown_noise_mode_is_a_value_error_naming_it(bad):
    target = Gaussian.rotated(2, kappa=2.0, seed=0)
    with pytest.raises(ValueError, match="noise mode"):
        sample("lmc", target, 4, 2, 0.1, noise=bad)
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        make_generator(0, "cpu", bad)


def test_nonfinite_rows_is_isfinite_all_including_huge_finite_rows():
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(200, 7, generator=gen).to(dtype)
        big = torch.finfo(dtype).max
        x[3, 2] = float("nan")
        x[5, 0] = float("inf")
        x[7, 6] = -float("inf")
        x[9, :] = big  # finite, though its sum overflows
        x[11, 1] = float("nan")
        x[11, 2] = float("inf")
        x[13, :2] = torch.tensor([big, -big], dtype=dtype)
        assert torch.equal(nonfinite_rows(x), ~torch.isfinite(x).all(-1))
        assert nonfinite_rows(x).nonzero().flatten().tolist() == [3, 5, 7, 11]
    v = torch.randn(10, 2, 3, generator=gen)
    v[4, 1, 2] = float("nan")
    assert nonfinite_rows(v).nonzero().flatten().tolist() == [4]


def test_vector_mode_is_box_muller_on_float64_uniforms():
    """The "vector" draws are exactly R cos(2 pi U2), R sin(2 pi U2) from the generator's float64
    uniforms (an independent reimplementation with numpy), any shape, odd sizes included."""
    for shape in [(5,), (4, 3), (7, 1, 2)]:
        z = gaussian(make_generator(9, "cpu", "vector"), shape, dtype=F64, device="cpu")
        n = math.prod(shape)
        half = (n + 1) // 2
        u = torch.rand((2, half), generator=make_generator(9, "cpu", "exact"), dtype=F64).numpy()
        r = np.sqrt(-2.0 * np.log1p(-u[0]))
        expect = np.concatenate([r * np.cos(2 * np.pi * u[1]), r * np.sin(2 * np.pi * u[1])])[:n]
        assert z.shape == shape
        np.testing.assert_allclose(z.reshape(-1).numpy(), expect, rtol=1e-12, atol=1e-12)
    # float32 states: the plain torch.randn path, as in "exact"
    a = gaussian(make_generator(9, "cpu", "vector"), (6,), dtype=torch.float32, device="cpu")
    b = gaussian(make_generator(9, "cpu", "exact"), (6,), dtype=torch.float32, device="cpu")
    assert torch.equal(a, b)

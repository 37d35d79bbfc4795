"""Metrics against the exact law (metrics/exact_reference.py), each against an independent oracle:
scipy root finding and quadrature for the projected mixtures' quantiles and W2, the closed form
of a translated law, Monte Carlo and quadrature for the Fourier expectations, and the exact
errors of a scaled mixture for the debiased weak error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from metrics import exact_reference as er
from targets import GaussianMixture, HolleyStroock, make_target

F64 = torch.float64


def _mix3():
    return GaussianMixture([0.2, 0.5, 0.3], torch.tensor([[-2.0, 0.5], [0.0, 0.0], [3.0, -1.0]], dtype=F64),
                           torch.stack([torch.eye(2, dtype=F64) * 0.3, torch.tensor([[1.0, 0.4], [0.4, 0.8]], dtype=F64),
                                        torch.eye(2, dtype=F64) * 2.0]))


def _cdf_1d(w, m, s):
    """The 1-D mixture's CDF by scipy, scalar or vectorized."""
    return lambda q: np.sum(w * stats.norm.cdf(np.asarray(q, dtype=float)[..., None], m, s), axis=-1)


def test_mixture_quantiles_match_a_scipy_root_to_1e9_in_the_bulk_and_the_tails():
    t = _mix3()
    theta = er._unit_directions(2, 3, seed=1)
    w, m, s = er.projected_mixture(t, theta)
    u = np.array([1e-10, 1e-4, 0.1, 0.37, 0.5, 0.9, 1 - 1e-6, 1 - 1e-10])
    q = er.mixture_quantile(u, w, m, s)
    for p in range(3):
        F = _cdf_1d(w, m[p], s[p])
        def S(v):  # survival function, for the upper tail's digits
            return np.sum(w * stats.norm.sf(v, m[p], s[p]))
        for k, uk in enumerate(u):
            f = (lambda v: F(v) - uk) if uk <= 0.5 else (lambda v: (1.0 - uk) - S(v))
            ref = optimize.brentq(f, -60, 60, xtol=1e-14, rtol=1e-15)
            assert abs(q[p, k] - ref) < 1e-9 * max(1.0, abs(ref)), (p, uk)
    np.testing.assert_allclose(er.mixture_cdf(q, w, m, s), np.broadcast_to(u, q.shape), rtol=0, atol=1e-12)


def test_projected_mixture_is_the_law_of_the_projection():
    t = _mix3()
    theta = er._unit_directions(2, 2, seed=2)
    w, m, s = er.projected_mixture(t, theta)
    y = (t.sample(200_000, torch.Generator().manual_seed(3)).numpy() @ theta)
    for p in range(2):
        ks = stats.kstest(y[:, p], _cdf_1d(w, m[p], s[p]))
        assert ks.pvalue > 1e-3


def test_sliced_w2_per_direction_equals_quadrature_of_the_quantile_gap():
    """W2^2_p = sum_i int_{(i-1)/n}^{i/n} (y_(i) - Q_p(u))^2 du, by scipy quad with brentq quantiles."""
    t = _mix3()
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(4)) * 1.5
    r = er.sliced_w2_to_mixture(x, t, n_projections=2, seed=5)
    theta = r.extra["directions"]
    w, m, s = er.projected_mixture(t, theta)
    n = x.shape[0]
    for p in range(2):
        F = _cdf_1d(w, m[p], s[p])
        Q = lambda v: optimize.brentq(lambda z: F(z) - v, -80, 80, xtol=1e-13)  # noqa: E731
        ys = np.sort(x.numpy() @ theta[:, p])
        total = 0.0
        for i in range(n):
            a, b = i / n, (i + 1) / n
            total += integrate.quad(lambda v: (ys[i] - Q(v)) ** 2, a, b, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
        assert abs(r.extra["per_projection"][p] - total) < 1e-8 * max(1.0, total), p
    assert r.value == pytest.approx(math.sqrt(np.mean(r.extra["per_projection"])), rel=1e-12)


def test_sliced_w2_of_a_translated_law_is_the_mean_squared_shift_within_its_interval():
    """Chains = exact samples moved by delta: the projected laws are translates, W2_p = |theta_p . delta|."""
    t = make_target("mixture", dim=2)
    delta = torch.tensor([0.5, -0.2], dtype=F64)
    x = t.sample(20_000, torch.Generator().manual_seed(6)) + delta
    r = er.sliced_w2_to_mixture(x, t, n_projections=64, seed=7)
    truth = float(np.mean((delta.numpy() @ r.extra["directions"]) ** 2))
    se = r.extra["se_chains"]
    # the estimate also carries the n-point floor (a few 1e-4 here), far below 4 standard errors
    assert abs(r.extra["w2_squared"] - truth) < 4 * se + 2e-3
    assert r.ci[0] < math.sqrt(truth) < r.ci[1] + 2e-3
    exact = er.sliced_w2_to_mixture(t.sample(20_000, torch.Generator().manual_seed(8)), t, n_projections=64, seed=7)
    assert exact.value < 0.1 * r.value  # the metric resolves the shift far above the exact samples' value


def test_fourier_expectations_of_a_mixture_match_monte_carlo_and_1d_quadrature():
    t = _mix3()
    W, c = er.fourier_features(2, 12, scale=0.8, seed=9)
    exact = er.fourier_expectations(t, W, c)
    x = t.sample(1_000_000, torch.Generator().manual_seed(10)).numpy()
    f = np.cos(x @ W.T + c)
    se = f.std(0) / math.sqrt(x.shape[0])
    assert np.all(np.abs(f.mean(0) - exact) < 4.5 * se)
    # along one coordinate direction the expectation is a 1-D integral against the marginal mixture
    w = t.weights.numpy()
    m, sd = t.means.numpy()[:, 0], np.sqrt(t.covs.numpy()[:, 0, 0])
    Wx = np.array([[1.3, 0.0]])
    ref = integrate.quad(lambda v: math.cos(1.3 * v + 0.4) * np.sum(w * stats.norm.pdf(v, m, sd)), -40, 40,
                         epsabs=1e-13, limit=400)[0]
    assert abs(er.fourier_expectations(t, Wx, np.array([0.4]))[0] - ref) < 1e-10


def test_fourier_expectations_of_a_separable_target_match_quadrature_and_monte_carlo():
    t1 = HolleyStroock(1)
    z = integrate.quad(lambda v: math.exp(-(v * v / 2 + math.cos(2 * v))), -30, 30, epsabs=1e-14, limit=400)[0]
    ref = integrate.quad(lambda v: math.cos(0.7 * v + 1.1) * math.exp(-(v * v / 2 + math.cos(2 * v))) / z, -30, 30,
                         epsabs=1e-14, limit=400)[0]
    assert abs(er.fourier_expectations(t1, np.array([[0.7]]), np.array([1.1]))[0] - ref) < 1e-9
    t = HolleyStroock(3)
    W, c = er.fourier_features(3, 8, seed=11)
    exact = er.fourier_expectations(t, W, c)
    x = t.sample(400_000, torch.Generator().manual_seed(12)).numpy()
    f = np.cos(x @ W.T + c)
    assert np.all(np.abs(f.mean(0) - exact) < 4.5 * f.std(0) / math.sqrt(x.shape[0]))


def test_the_debiased_weak_error_is_unbiased_at_zero_and_right_for_a_scaled_mixture():
    t = make_target("mixture", dim=2)
    # exact samples: the debiased mean square averages to 0 over independent runs
    Ms = [er.fourier_weak_error(t.sample(400, torch.Generator().manual_seed(100 + k)), t, seed=1).extra["mean_squared"]
          for k in range(60)]
    assert abs(np.mean(Ms)) < 4 * np.std(Ms, ddof=1) / math.sqrt(len(Ms))
    # a law scaled by a = 1.05 is the mixture with means a mu and covariances a^2 S: its exact errors
    a = 1.05
    scaled = GaussianMixture(t.weights, a * t.means, a * a * t.covs)
    x = a * t.sample(40_000, torch.Generator().manual_seed(13))
    r = er.fourier_weak_error(x, t, seed=1)
    W, c = er.fourier_features(2, 32, scale=1 / math.sqrt(2), seed=1)
    e_true = er.fourier_expectations(scaled, W, c) - er.fourier_expectations(t, W, c)
    truth = float(np.mean(e_true**2))
    assert abs(r.extra["mean_squared"] - truth) < 4 * r.extra["mean_squared_se"]
    assert r.ci[0] > 0 and r.ci[0] <= math.sqrt(truth) * 1.3


def test_bad_input_is_refused_naming_it():
    t = make_target("mixture", dim=2)
    with pytest.raises(ValueError, match="GaussianMixture"):
        er.sliced_w2_to_mixture(torch.zeros(5, 2, dtype=F64), make_target("gaussian", dim=2))
    with pytest.raises(ValueError, match="dimension 3"):
        er.sliced_w2_to_mixture(torch.zeros(5, 3, dtype=F64), t)
    with pytest.raises(ValueError, match="n_projections"):
        er.sliced_w2_to_mixture(torch.zeros(5, 2, dtype=F64), t, n_projections=1)
    with pytest.raises(ValueError, match="u must be"):
        er.mixture_quantile(np.array([0.0, 0.5]), *er.projected_mixture(t, np.eye(2)))
    with pytest.raises(ValueError, match="Fourier expectations need"):
        er.fourier_weak_error(torch.zeros(5, 2, dtype=F64), make_target("logistic", dim=2))


def test_the_rate_sweep_measures_in_them_and_refuses_them_where_they_do_not_apply(tmp_path, capsys):
    from labs.rate import sweep as rs

    for metric, target in (("fourier_weak", "mixture"), ("fourier_weak", "holley_stroock"), ("sliced_w2_exact", "ring")):
        out = tmp_path / f"{metric}-{target}"
        assert rs.main(["--target", target, "--metric", metric, "--samplers", "lmc", "--budgets", "16,32",
                        "--dim", "2", "--chains", "400", "--out", str(out), "--no-progress"]) == 0
        rows = (out / "results.csv").read_text().splitlines()
        assert len(rows) == 1 + 1 + 2 and all(f",{metric}," in r for r in rows[1:])  # header, floor, 2 budgets
    assert rs.main(["--target", "holley_stroock", "--metric", "sliced_w2_exact", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "sliced_w2_exact" in err and "Gaussian mixture" in err and len(err.strip().splitlines()) == 1

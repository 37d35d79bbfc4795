"""The grid laws of metrics.grid_law against closed forms, exact moment recursions and Monte Carlo.

* Gaussian targets: LMC's law is Gaussian with a closed-form mean and variance, so its KL, TV
  (crossings of two normal densities) and W2 are closed-form; the grid agrees to 1e-12 relative
  (measured: 3e-14).
  PLMC (K = 2) is not Gaussian, but its mean and variance follow metrics.exact_laws exactly.
* Holley–Stroock and double well: moments against Monte Carlo of the real samplers (2e5 chains,
  4 standard errors), and grid refinement (halving the spacing moves KL, TV, W2 by < 1e-12).
* The mass a divergent chain sends off the grid against the chains that leave it.
* Products, refusals and bad inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import ndtr

import samplers
from metrics.exact_laws import exact_law
from metrics.grid_law import Density1D, density_1d, grid_errors, grid_laws, lmc_grid_law, plmc_grid_law
from targets import DoubleWell, Gaussian, GaussianMixture, HolleyStroock

M_T, LAM = 0.3, 2.0          # target N(M_T, 1/LAM)
MU0, V0 = -1.0, 0.5          # start N(MU0, V0)


def _lmc_moments(eta, n, mu0=MU0, v0=V0):
    a = 1.0 - eta * LAM
    v = v0
    for _ in range(n):
        v = a * a * v + 2.0 * eta
    return M_T + a**n * (mu0 - M_T), v


def _kl(mu, v, m, s2):
    return 0.5 * (v / s2 + (mu - m) ** 2 / s2 - 1.0 + math.log(s2 / v))


def _w2(mu, v, m, s2):
    return math.hypot(mu - m, math.sqrt(v) - math.sqrt(s2))


def _tv(mu1, v1, mu2, v2):
    """TV of two normals from the crossings of their densities (roots of a quadratic)."""
    a = 0.5 / v2 - 0.5 / v1
    b = mu1 / v1 - mu2 / v2
    c = 0.5 * mu2**2 / v2 - 0.5 * mu1**2 / v1 + 0.5 * math.log(v2 / v1)
    roots = sorted(np.roots([a, b, c]).real) if abs(a) > 0 else [-c / b]
    edges = np.array([-np.inf, *roots, np.inf])
    F1 = ndtr((edges - mu1) / math.sqrt(v1))
    F2 = ndtr((edges - mu2) / math.sqrt(v2))
    return 0.5 * float(np.abs(np.diff(F1) - np.diff(F2)).sum())


@pytest.fixture(scope="module")
def gauss():
    return Density1D.gaussian(M_T, 1.0 / LAM)


@pytest.mark.parametrize("eta,n", [(0.1, 7), (0.45, 12), (0.02, 40)])
def test_lmc_gaussian_closed_forms(gauss, eta, n):
    law = lmc_grid_law(gauss, eta, n, init=("normal", MU0, V0))
    mu, v = _lmc_moments(eta, n)
    s2 = 1.0 / LAM
    assert law.mass_lost < 1e-12
    assert law.mean() == pytest.approx(mu, rel=1e-12, abs=1e-13)
    assert law.var() == pytest.approx(v, rel=1e-12)
    assert law.kl() == pytest.approx(_kl(mu, v, M_T, s2), rel=1e-12)
    assert law.w2() == pytest.approx(_w2(mu, v, M_T, s2), rel=1e-12)
    tv = _tv(mu, v, M_T, s2)
    assert law.tv() == pytest.approx(tv, rel=1e-12)
    # an independent oracle for the closed form itself
    sd, sdt = math.sqrt(v), math.sqrt(s2)

    def gap(x):
        return abs(math.exp(-0.5 * ((x - mu) / sd) ** 2) / sd - math.exp(-0.5 * ((x - M_T) / sdt) ** 2) / sdt)

    q = 0.5 * quad(gap, -15, 15, points=[mu, M_T], limit=400, epsabs=1e-13)[0] / math.sqrt(2 * math.pi)
    assert tv == pytest.approx(q, rel=1e-8)


def test_lab_gaussian_target_is_accepted():
    g = Gaussian(torch.tensor([M_T], dtype=torch.float64), torch.tensor([[1.0 / LAM]], dtype=torch.float64))
    law = lmc_grid_law(g, 0.1, 5, init=("normal", MU0, V0))
    mu, v = _lmc_moments(0.1, 5)
    assert law.kl() == pytest.approx(_kl(mu, v, M_T, 1.0 / LAM), rel=1e-12)


def test_lmc_gaussian_stationary_law(gauss):
    # v = (1 - eta lam)^2 v + 2 eta  =>  v_inf = 2 / (lam (2 - eta lam))
    eta = 0.2
    v_inf = 2.0 / (LAM * (2.0 - eta * LAM))
    laws = grid_laws("lmc", gauss, eta, [0, 10, 400], init="target")
    assert laws[0].kl() == pytest.approx(0.0, abs=1e-14)
    assert laws[0].w2() < 1e-7 and laws[0].tv() == 0.0          # W2^2 at rounding level
    mu10, v10 = _lmc_moments(eta, 10, mu0=M_T, v0=1.0 / LAM)
    assert laws[1].kl() == pytest.approx(_kl(mu10, v10, M_T, 1.0 / LAM), rel=1e-12)
    assert laws[2].var() == pytest.approx(v_inf, rel=1e-12)
    assert laws[2].kl() == pytest.approx(_kl(M_T, v_inf, M_T, 1.0 / LAM), rel=1e-12)
    assert laws[2].w2() == pytest.approx(abs(math.sqrt(v_inf) - math.sqrt(1.0 / LAM)), rel=1e-12)


def test_plmc_k2_gaussian_moments_are_exact():
    g = Gaussian(torch.tensor([M_T], dtype=torch.float64), torch.tensor([[1.0 / LAM]], dtype=torch.float64))
    eta, n = 0.3, 9
    law = plmc_grid_law(g, eta, n, K=2, init=("normal", MU0, V0))
    ex = exact_law("plmc", g, n, eta, K=2, mean0=torch.tensor([MU0]), cov0=torch.tensor([[V0]]))
    assert law.mean() == pytest.approx(ex.means[-1, 0], rel=1e-12)
    assert law.var() == pytest.approx(ex.covs[-1, 0, 0], rel=1e-12)
    # its law is not Gaussian: the W2 exceeds the Gelbrich bound of its first two moments
    gelbrich = _w2(ex.means[-1, 0], ex.covs[-1, 0, 0], M_T, 1.0 / LAM)
    assert law.w2() >= gelbrich * (1.0 - 1e-10)
    # K = 1 is LMC
    k1 = plmc_grid_law(g, eta, n, K=1, init=("normal", MU0, V0))
    assert np.array_equal(k1.density, lmc_grid_law(g, eta, n, init=("normal", MU0, V0)).density)


def _mc(method, target, eta, n, x0_mean, x0_sd, K=None, chains=200_000):
    gen = torch.Generator().manual_seed(11)
    x0 = x0_mean + x0_sd * torch.randn((chains, 1), generator=gen, dtype=torch.float64)
    kw = {} if K is None else {"K": K}
    res = samplers.sample(method, target, chains, n, eta, x0=x0, seed=5, **kw)
    assert res.n_diverged == 0
    return res.x[:, 0].numpy()


@pytest.mark.parametrize("target,eta,n,start", [
    (HolleyStroock(1), 0.1, 20, (1.0, 0.5)),
    (DoubleWell(1), 0.02, 25, (1.0, 0.2)),
])
@pytest.mark.parametrize("method,K", [("lmc", None), ("plmc", 2)])
def test_moments_against_monte_carlo(target, eta, n, start, method, K):
    x = _mc(method, target, eta, n, *start, K=K)
    law = grid_laws(method, target, eta, [n], K=K, init=("normal", start[0], start[1] ** 2))[0]
    for k in (1, 2):
        se = (x**k).std() / math.sqrt(x.size)
        assert abs((x**k).mean() - law.moment(k)) < 4 * se, (k, (x**k).mean(), law.moment(k), se)


@pytest.mark.parametrize("target,eta,n", [(HolleyStroock(1), 0.1, 20), (DoubleWell(1), 0.02, 50),
                                          (GaussianMixture.bimodal(1, separation=4.0), 0.1, 20)])
def test_refinement_changes_nothing(target, eta, n):
    a = lmc_grid_law(target, eta, n, points_per_width=3.0)
    b = lmc_grid_law(target, eta, n, points_per_width=6.0)
    assert b.spacing < 0.51 * a.spacing
    assert abs(a.kl() - b.kl()) < 1e-12
    assert abs(a.tv() - b.tv()) < 1e-12
    assert abs(a.w2() - b.w2()) < 1e-12
    assert abs(a.moment(2) - b.moment(2)) < 1e-12
    assert a.kl() > 1e-5 and a.w2() > 1e-3        # far from the rounding level


def test_plmc_refinement():
    a = plmc_grid_law(HolleyStroock(1), 0.1, 10, K=2, points_per_width=3.0)
    b = plmc_grid_law(HolleyStroock(1), 0.1, 10, K=2, points_per_width=4.5)
    assert abs(a.kl() - b.kl()) < 1e-12 and abs(a.w2() - b.w2()) < 1e-12


def test_reference_law_matches_target_quadrature():
    hs = HolleyStroock(1)
    ref = density_1d(hs)
    t = np.linspace(-4, 4, 101)
    assert np.abs(ref.cdf(t) - hs.marginal_cdf(t)).max() < 1e-10
    assert np.abs(ref.cdf(t) + ref.sf(t) - 1.0).max() < 1e-14
    u = np.array([1e-9, 0.1, 0.5, 0.9])
    assert np.abs(ref.cdf(ref.quantile(u)) / u - 1.0).max() < 1e-12
    assert np.abs(ref.sf(ref.isf(u)) / u - 1.0).max() < 1e-12
    law = lmc_grid_law(hs, 0.1, 0)                         # the start law: the target itself
    assert abs(law.moment(2) - hs.marginal_moment(2)) < 1e-12
    assert law.kl() < 1e-14 and law.w2() < 1e-6


def test_product_laws():
    hs1, hs4 = HolleyStroock(1), HolleyStroock(4)
    law = lmc_grid_law(hs1, 0.1, 20)
    e = grid_errors(hs4, 0.1, 20)
    assert e["kl"] == pytest.approx(4 * law.kl(), rel=1e-12)
    assert e["w2"] == pytest.approx(2 * law.w2(), rel=1e-12)
    assert e["tv_marginal"] == pytest.approx(law.tv(), rel=1e-12)
    lo, hi = e["tv_bounds"]
    assert law.tv() <= lo <= hi <= min(1.0, 4 * law.tv())
    with pytest.raises(ValueError, match="'kl'.*plmc.*shares its selections"):
        grid_errors(hs4, 0.1, 20, method="plmc", K=2)
    assert grid_errors(hs4, 0.1, 5, method="plmc", K=2, metrics=("tv",))["tv_marginal"] > 0


@pytest.mark.parametrize("target,missing", [
    (GaussianMixture.bimodal(2), "dim=2 and is not separable"),
    (Gaussian.isotropic(2), "dim=2"),
])
def test_refusals_name_metric_target_and_what_is_missing(target, missing):
    with pytest.raises(ValueError, match=r"metric 'w2'.*" + missing):
        grid_errors(target, 0.1, 5, metrics=("w2",))


def test_refusal_of_a_target_without_a_1d_law():
    from targets import LogisticRegression

    with pytest.raises(ValueError, match="metric 'kl'.*LogisticRegression.*has none"):
        grid_errors(LogisticRegression(2), 0.1, 5, metrics=("kl",))


@pytest.mark.parametrize("kw,match", [
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=-0.1), "step_size"),
    (dict(n_steps=-1), "n_steps"),
    (dict(grid=(-8.0, 8.0, 50)), "grid spacing .* too coarse"),
    (dict(grid=(-1.0, 1.0, 101)), "loses mass"),
    (dict(init=("normal", 0.0, -1.0)), "init var"),
    (dict(init=3), "init must be"),
    (dict(points_per_width=0.5), "points_per_width"),
    (dict(step_size=1e-7), "max_points"),
])
def test_bad_inputs(kw, match):
    args = dict(step_size=0.1, n_steps=5)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        lmc_grid_law(HolleyStroock(1), args.pop("step_size"), args.pop("n_steps"), **args)


def test_bad_method_and_K():
    with pytest.raises(ValueError, match="K=3"):
        plmc_grid_law(HolleyStroock(1), 0.1, 5, K=3)
    with pytest.raises(ValueError, match="unknown grid method"):
        grid_laws("rlmc", HolleyStroock(1), 0.1, [5])
    with pytest.raises(ValueError, match="unknown grid metric"):
        grid_errors(HolleyStroock(1), 0.1, 5, metrics=("mmd",))


def test_escaping_mass_is_the_probability_of_divergence():
    # LMC at eta = 1/16 on the double well escapes with probability ~3e-3 over 32 steps: the grid
    # refuses by default, and with a loose tol its escaping mass matches the chains that left the grid
    dw = DoubleWell(1)
    with pytest.raises(ValueError, match="escapes"):
        lmc_grid_law(dw, 0.0625, 32)
    law = lmc_grid_law(dw, 0.0625, 32, tol=1e-2)
    x0 = dw.sample(200_000, torch.Generator().manual_seed(3))
    with pytest.warns(RuntimeWarning, match="diverged"):
        x = samplers.sample("lmc", dw, 200_000, 32, 0.0625, x0=x0, seed=4).x[:, 0]
    out = float(((~torch.isfinite(x)) | (x < law.x[0]) | (x > law.x[-1])).double().mean())
    se = math.sqrt(law.mass_lost * (1.0 - law.mass_lost) / x.numel())
    assert 1e-3 < law.mass_lost < 1e-2
    assert abs(out - law.mass_lost) < 4 * se


def test_bias_benchmark_runs_and_writes_its_csv(tmp_path, capsys):
    import csv
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "grid_law_bias.py"
    spec = importlib.util.spec_from_file_location("grid_law_bias", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--targets", "holley_stroock,double_well", "--budgets", "32,256", "--chains", "500,1000",
                     "--seeds", "2", "--floor-seeds", "2", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "grid_law_bias.csv")))
    # the double well at budget 32 (eta = 1/16) escapes: one row with its escape probability
    assert [r["status"] for r in rows].count("ok") == 6 and len(rows) == 7
    div = [r for r in rows if r["status"] == "diverges"]
    assert div[0]["target"] == "double_well" and 1e-3 < float(div[0]["mass_lost"]) < 1e-2
    hs = [r for r in rows if r["target"] == "holley_stroock" and r["budget"] == "32"]
    assert float(hs[0]["w2_exact"]) == pytest.approx(0.03752, abs=1e-5)
    assert "W2 exact" in capsys.readouterr().out

"""Diffused Gaussian mixtures (exact eps_hat) and the diffusion samplers, each against an oracle.

Oracles: autograd of log p_t and the independent GaussianMixture class (exact scores); the
forward Markov chain simulated step by step (marginals, Tweedie's identity); Gaussian
conditioning per component (the DDPM step's mean); an RK4 solution of the probability-flow ODE
with the exact score at continuous noise levels (DDIM, DPM-Solver++ orders); the plain loop over
fine steps (the Poisson-midpoint DDPM scheme's closed forms and its reference engine); a model
wrapper that counts every row it evaluates (network calls).  Statistical tests use fixed seeds
and 5 standard errors.
"""

import math
import warnings

import pytest
import torch

import samplers.diffusion as D
from samplers import poisson
from targets import GaussianMixture
from targets.diffusion import DiffusedMixture, DiffusionSchedule, random_mixture

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _ring(sigma=0.3, schedule=None):
    return DiffusedMixture(GaussianMixture.ring(8, 1.0, sigma), schedule or DiffusionSchedule())


class Counting:
    """A model wrapper that counts every row it is asked to evaluate."""

    def __init__(self, model):
        self.model = model
        self.rows = 0
        self.calls = 0

    def __call__(self, x, t):
        self.rows += x.shape[0]
        self.calls += 1
        return self.model(x, t)


# ------------------------------------------------------------------------------------------------
# schedules


def test_linear_schedule_is_ddpm():
    s = DiffusionSchedule()
    assert s.T == 1000 and s.betas.shape == (1001,)
    assert s.betas[0] == 0 and s.alphas_cumprod[0] == 1
    assert float(s.betas[1]) == pytest.approx(1e-4, rel=1e-12)
    assert float(s.betas[-1]) == pytest.approx(0.02, rel=1e-12)
    d = torch.diff(s.betas[1:])
    assert torch.allclose(d, torch.full_like(d, (0.02 - 1e-4) / 999), rtol=1e-9)
    prod = 1.0
    for t in range(1, 1001):  # abar_t = prod_{s <= t} (1 - beta_s), by a plain loop
        prod *= 1.0 - float(s.betas[t])
        if t in (1, 10, 500, 1000):
            assert float(s.alphas_cumprod[t]) == pytest.approx(prod, rel=1e-12)
    lam = s.lambdas
    assert math.isinf(float(lam[0]))
    assert float(lam[500]) == pytest.approx(0.5 * math.log(s.abar(500) / (1 - s.abar(500))), rel=1e-12)
    assert (torch.diff(lam[1:]) < 0).all()


def test_cosine_schedule_follows_its_formula():
    s = DiffusionSchedule(kind="cosine", T=1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 100, 500, 900):  # unclipped region: abar_t = f(t)/f(0)
        assert s.abar(t) == pytest.approx(f(t) / f(0), rel=1e-10)
    assert float(s.betas.max()) <= 0.999 + 1e-15
    assert s.abar(1000) > 0


def test_schedule_round_trips_through_dict_and_json():
    for s in (DiffusionSchedule(), DiffusionSchedule(kind="cosine", T=250, cosine_s=0.01)):
        assert DiffusionSchedule.from_dict(s.to_dict()) == s
        assert DiffusionSchedule.from_json(s.to_json()) == s
        assert torch.equal(DiffusionSchedule.from_json(s.to_json()).alphas_cumprod, s.alphas_cumprod)


@pytest.mark.parametrize("kw", [dict(kind="sigmoid"), dict(T=0), dict(T=2.5), dict(beta_start=0.03),
                                dict(beta_end=1.0), dict(beta_start=-1e-4), dict(max_beta=1.0)])
def test_bad_schedule_raises(kw):
    with pytest.raises(ValueError):
        DiffusionSchedule(**kw)


def test_schedule_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="betaa"):
        DiffusionSchedule.from_dict({"betaa": 1})
    with pytest.raises(ValueError):
        DiffusionSchedule.from_json("{not json")


# ------------------------------------------------------------------------------------------------
# exact scores


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("diagonal", [True, False])
def test_eps_hat_is_minus_sqrt_one_minus_abar_times_autograd_score(kind, diagonal):
    dm = DiffusedMixture(random_mixture(4, 3, seed=2, diagonal=diagonal), DiffusionSchedule(kind=kind))
    x = torch.randn(64, 4, generator=_gen(0), dtype=F64) * 1.5
    for t in (1, 7, 250, 999, 1000):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(dm.log_prob(xr, t).sum(), xr)
        a = dm.schedule.abar(t)
        assert torch.allclose(dm.eps_hat(x, t), -math.sqrt(1 - a) * g, rtol=1e-9, atol=1e-11)
        assert torch.allclose(dm.score(x, t), g, rtol=1e-9, atol=1e-9)


def test_log_prob_and_eps_match_the_mixture_class_at_every_time():
    # p_t built independently as a GaussianMixture(sqrt(abar) mu_k, abar S_k + (1 - abar) I)
    data = random_mixture(3, 4, seed=5, diagonal=False)
    dm = DiffusedMixture(data)
    x = torch.randn(50, 3, generator=_gen(1), dtype=F64)
    for t in (0, 1, 30, 600, 1000):
        a = dm.schedule.abar(t)
        pt = GaussianMixture(data.weights, math.sqrt(a) * data.means, a * data.covs + (1 - a) * torch.eye(3, dtype=F64))
        assert torch.allclose(dm.log_prob(x, t), pt.log_prob(x), rtol=1e-11, atol=1e-11)
        assert torch.allclose(dm.eps_hat(x, t), math.sqrt(1 - a) * pt.grad_potential(x), rtol=1e-9, atol=1e-11)


def test_per_row_timesteps_equal_one_call_per_timestep():
    dm = DiffusedMixture(random_mixture(5, 2, seed=3))
    x = torch.randn(30, 5, generator=_gen(2), dtype=F64)
    t = torch.randint(1, 1001, (30,), generator=_gen(3))
    rows = torch.stack([dm.eps_hat(x[i:i + 1], int(t[i]))[0] for i in range(30)])
    assert torch.allclose(dm.eps_hat(x, t), rows, rtol=1e-10, atol=1e-12)
    # the float64 fast path (shared time, diagonal covariances) equals the general path
    same = torch.full((30,), 17, dtype=torch.int64)
    assert torch.allclose(dm.eps_hat(x, 17), torch.stack([dm.eps_hat(x[i:i + 1], 17)[0] for i in range(30)]),
                          rtol=1e-10, atol=1e-12)
    assert torch.allclose(dm.eps_hat(x, same), dm.eps_hat(x, 17), rtol=1e-10, atol=1e-12)


def test_forward_chain_simulated_step_by_step_has_the_exact_marginal():
    """x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z from exact data: mean and covariance of p_t (5 SE)."""
    dm = _ring(sigma=0.2)
    s = dm.schedule
    n, t_end = 40000, 150
    g = _gen(4)
    x = dm.sample_data(n, g)
    for t in range(1, t_end + 1):
        x = math.sqrt(float(s.alphas[t])) * x + math.sqrt(float(s.betas[t])) * torch.randn(x.shape, generator=g, dtype=F64)
    for sample in (x, dm.sample_xt(n, t_end, _gen(5))):
        pt = dm.marginal(t_end)
        m, C = pt.mean, pt.cov
        se_m = torch.sqrt(torch.diagonal(C) / n)
        assert ((sample.mean(0) - m).abs() < 5 * se_m).all()
        c = sample - m
        for i in range(2):
            for j in range(2):
                v = c[:, i] * c[:, j]
                assert abs(float(v.mean() - C[i, j])) < 5 * float(v.std() / math.sqrt(n))


@pytest.mark.parametrize("t", [5, 100, 700])
def test_tweedie_eps_hat_is_the_conditional_mean_of_the_noise(t):
    """E[(eps - eps_hat(x_t, t)) f(x_t)] = 0 for f = 1, x (forward samples; 5 SE)."""
    dm = DiffusedMixture(random_mixture(3, 3, seed=1))
    n = 40000
    xt, _, eps = dm.sample_xt(n, t, _gen(6), return_noise=True)
    r = eps - dm.eps_hat(xt, t)
    for f in (torch.ones(n, 1, dtype=F64), xt):
        prod = (r[:, :, None] * f[:, None, :]).reshape(n, -1)
        assert ((prod.mean(0)).abs() < 5 * prod.std(0) / math.sqrt(n)).all()


def test_diffused_mixture_bad_input_raises():
    dm = _ring()
    x = torch.zeros(4, 2, dtype=F64)
    for bad in (-1, 1001, 2.0, torch.tensor([1.0] * 4), torch.tensor([1, 2]), torch.tensor([0, 1, 2, 1001])):
        with pytest.raises(ValueError):
            dm.eps_hat(x, bad)
    with pytest.raises(ValueError):
        dm.eps_hat(torch.zeros(4, 3, dtype=F64), 5)
    with pytest.raises(ValueError):
        dm.eps_hat(torch.zeros(4, 2, dtype=torch.float32), 5)
    with pytest.raises(ValueError):
        DiffusedMixture("not a mixture")
    with pytest.raises(ValueError):
        dm.eps_abar(x, 1.5)


def test_to_float32_keeps_the_law():
    dm = DiffusedMixture(random_mixture(3, 2, seed=0))
    d32 = dm.to(dtype=torch.float32)
    x = torch.randn(10, 3, generator=_gen(0), dtype=F64)
    assert d32.dtype == torch.float32
    assert torch.allclose(d32.eps_hat(x.float(), 300).double(), dm.eps_hat(x, 300), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# one step against closed forms


def _posterior_mean(dm, x, t, s):
    """E[x_s | x_t] by Gaussian conditioning within each component, weighted by P(k | x_t)."""
    data = dm.data
    ab = dm.schedule.alphas_cumprod
    ab_t, ab_s = float(ab[t]), float(ab[s])
    a = ab_t / ab_s
    eye = torch.eye(dm.dim, dtype=F64)
    r = dm.marginal(t).responsibilities(x)  # [n, k]
    out = torch.zeros_like(x)
    for k in range(data.n_components):
        ms = math.sqrt(ab_s) * data.means[k]
        Cs = ab_s * data.covs[k] + (1 - ab_s) * eye
        Ct = a * Cs + (1 - a) * eye
        gain = math.sqrt(a) * Cs @ torch.linalg.inv(Ct)
        out += r[:, k:k + 1] * (ms + (x - math.sqrt(a) * ms) @ gain.T)
    return out


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t,s", [(1000, 999), (300, 299), (2, 1), (500, 430), (90, 7)])
@pytest.mark.parametrize("variance", ["small", "large"])
def test_one_ddpm_step_is_the_closed_form_posterior(kind, t, s, variance):
    dm = DiffusedMixture(random_mixture(3, 3, seed=4, diagonal=False), DiffusionSchedule(kind=kind))
    x = dm.sample_xt(200, t, _gen(7))
    new = D.ddpm_update(x, dm.eps_hat(x, t), dm.schedule, t, s, variance, _gen(8))
    ab = dm.schedule.alphas_cumprod
    b = 1 - float(ab[t]) / float(ab[s])
    var = b * (1 - float(ab[s])) / (1 - float(ab[t])) if variance == "small" else b
    z = torch.randn(x.shape, generator=_gen(8), dtype=F64)
    assert torch.allclose(new, _posterior_mean(dm, x, t, s) + math.sqrt(var) * z, rtol=1e-8, atol=1e-10)


def test_last_ddpm_step_adds_no_noise_and_returns_tweedie():
    dm = _ring(0.1)
    x = dm.sample_xt(100, 1, _gen(9))
    a = dm.schedule.abar(1)
    x0 = (x - math.sqrt(1 - a) * dm.eps_hat(x, 1)) / math.sqrt(a)
    for variance in ("small", "large"):
        new = D.ddpm_update(x, dm.eps_hat(x, 1), dm.schedule, 1, 0, variance, _gen(10))
        assert torch.allclose(new, x0, rtol=1e-12, atol=1e-13)
        assert torch.allclose(new, _posterior_mean(dm, x, 1, 0), rtol=1e-9, atol=1e-10)


def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance():
    dm = _ring(0.2)
    xT = dm.sample_xt(300, 1000, _gen(11))
    a = D.ddim(dm, xT, dm.schedule, steps=37, eta=1.0, generator=_gen(12))
    b = D.ddpm(dm, xT, dm.schedule, steps=37, variance="small", generator=_gen(12))
    assert torch.allclose(a.x, b.x, rtol=1e-9, atol=1e-10)


def test_dpm_solver_pp_at_first_order_is_ddim():
    dm = DiffusedMixture(random_mixture(4, 3, seed=0))
    xT = dm.sample_xt(300, 1000, _gen(13))
    for steps, spacing in ((10, "uniform"), (49, "logsnr"), (1000, "uniform")):
        a = D.dpm_solver_pp(dm, xT, dm.schedule, steps=steps, order=1, spacing=spacing)
        b = D.ddim(dm, xT, dm.schedule, steps=steps, spacing=spacing)
        assert torch.allclose(a.x, b.x, rtol=1e-10, atol=1e-11)


# ------------------------------------------------------------------------------------------------
# the probability-flow limit (RK4 with exact scores at continuous noise levels)


def _probability_flow(dm, xT, sbar_end, n_log=2000, n_lin=50):
    """Solve dy/dsbar = eps_hat(sqrt(abar) y, abar), y = x / sqrt(abar), abar = 1/(1 + sbar^2),
    from sbar_T down to ``sbar_end`` (RK4 in log sbar), then linearly in sbar to 0 when sbar_end = 0."""
    ab = dm.schedule.alphas_cumprod

    def f(y, sb):
        a = 1.0 / (1.0 + sb * sb)
        return dm.eps_abar(math.sqrt(a) * y, a)

    def rk4(y, s0, s1, n, log):
        if log:
            g = lambda y, u: f(y, math.exp(u)) * math.exp(u)  # noqa: E731
            u, h = math.log(s0), (math.log(s1) - math.log(s0)) / n
        else:
            g, u, h = f, s0, (s1 - s0) / n
        for _ in range(n):
            k1 = g(y, u)
            k2 = g(y + 0.5 * h * k1, u + 0.5 * h)
            k3 = g(y + 0.5 * h * k2, u + 0.5 * h)
            k4 = g(y + h * k3, u + h)
            y, u = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), u + h
        return y

    sbar = lambda t: math.sqrt((1 - float(ab[t])) / float(ab[t]))  # noqa: E731
    y = rk4(xT / math.sqrt(float(ab[-1])), sbar(dm.T), sbar(1), n_log, True)
    if sbar_end == 0.0:
        return rk4(y, sbar(1), 0.0, n_lin, False)
    return y / math.sqrt(1 + sbar(1) ** 2)  # x at t = 1


@pytest.fixture(scope="module")
def flow():
    dm = _ring(0.3)
    xT = dm.sample_xt(150, 1000, _gen(14))
    return dm, xT, _probability_flow(dm, xT, 0.0), _probability_flow(dm, xT, 1.0)


def test_ddim_with_the_full_schedule_is_close_to_the_probability_flow(flow):
    dm, xT, x0_flow, _ = flow
    err = {n: float((D.ddim(dm, xT, dm.schedule, steps=n).x - x0_flow).norm(dim=1).max()) for n in (250, 500, 1000)}
    assert err[1000] < 0.01  # data scale: modes of std 0.3 on the unit circle
    # first order: halving the steps doubles the error
    assert 1.6 < err[250] / err[500] < 2.4 and 1.6 < err[500] / err[1000] < 2.4


def _at_t1(dm, xT, steps, order):
    out = {}

    def cb(d):
        if d["s"] == 1:
            out["x"] = d["x"].clone()

    D.dpm_solver_pp(dm, xT, dm.schedule, steps=steps, order=order, callback=cb)
    return out["x"]


def test_dpm_solver_pp_orders_against_the_probability_flow(flow):
    """Errors at t = 1 (before the last, first-order step to t = 0) fall like N^-1, N^-2 and faster."""
    dm, xT, _, x1_flow = flow
    err = {(o, n): float((_at_t1(dm, xT, n, o) - x1_flow).norm(dim=1).max()) for o in (1, 2, 3) for n in (100, 200)}
    r1, r2, r3 = (err[(o, 100)] / err[(o, 200)] for o in (1, 2, 3))
    assert 1.7 < r1 < 2.3
    assert 3.2 < r2 < 4.8
    assert r3 > 4.5
    assert err[(3, 200)] < err[(2, 200)] < err[(1, 200)]


# ------------------------------------------------------------------------------------------------
# Poisson-midpoint DDPM


def test_pm_blocks_cover_the_chain_with_a_last_shorter_block():
    assert D.pm_blocks(1000, 40) == [(1000 - 40 * i, 40) for i in range(25)]
    b = D.pm_blocks(1000, 30)
    assert sum(k for _, k in b) == 1000 and b[-1] == (10, 10) and len(b) == 34
    assert D.pm_blocks(7, 7) == [(7, 7)] and D.pm_blocks(5, 1) == [(5 - i, 1) for i in range(5)]
    assert D.expected_pm_nfe(1000, 40) == pytest.approx(25 * (2 - 1 / 40))
    assert D.expected_pm_nfe(1000, 25) == pytest.approx(40 * (2 - 1 / 25))


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_scheme_closed_forms_match_the_plain_loop(variance):
    """Phi, Psi, the noise variances and the correction factor of DDPMScheme against the fine loop."""
    dm = DiffusedMixture(random_mixture(3, 2, seed=0))
    s = dm.schedule
    for t_top, k in ((1000, 13), (13, 13), (5, 3)):
        sc = D.DDPMScheme(dm, s, t_top, k, variance, 3, torch.device("cpu"), F64)
        x = torch.randn(4, 3, generator=_gen(0), dtype=F64)
        g0 = torch.randn(4, 3, generator=_gen(1), dtype=F64)
        y, var, phi = x.clone(), 0.0, 1.0
        zero = torch.zeros_like(x)
        means, variances, phis = [x.clone()], [0.0], [1.0]
        for i in range(k):
            t = t_top - i
            a, b = float(s.alphas[t]), float(s.betas[t])
            ab, ab_prev = float(s.alphas_cumprod[t]), float(s.alphas_cumprod[t - 1])
            A, G = 1 / math.sqrt(a), -b / (math.sqrt(a) * math.sqrt(1 - ab))
            Gam2 = 0.0 if t == 1 else (b * (1 - ab_prev) / (1 - ab) if variance == "small" else b)
            assert sc.A[i] == pytest.approx(A, rel=1e-14) and sc.G[i] == pytest.approx(G, rel=1e-14)
            assert sc.Gamma[i] ** 2 == pytest.approx(Gam2, rel=1e-12, abs=1e-300)
            y = sc.fine_step(y, g0, i, zero)
            var, phi = A * A * var + Gam2, A * phi
            means.append(y.clone())
            variances.append(var)
            phis.append(phi)
        for i in range(k):
            idx = torch.full((4,), i, dtype=torch.int64)
            assert torch.allclose(sc.frozen_mean(x, g0, idx), means[i], rtol=1e-12, atol=1e-13)
            z = torch.ones(4, 3, dtype=F64)
            assert torch.allclose(sc.propagate(z, idx, torch.full_like(idx, k)), z * phis[k] / phis[i], rtol=1e-12)
            std = sc._std(idx, torch.full_like(idx, k))
            assert torch.allclose(std ** 2, torch.full((4,), variances[k] - variances[i] * (phis[k] / phis[i]) ** 2,
                                                      dtype=F64), rtol=1e-9, atol=1e-15)
            x_end = torch.zeros(4, 3, dtype=F64)
            sc.add_correction(x_end, torch.arange(4), torch.ones(4, 3, dtype=F64), idx)
            assert torch.allclose(x_end, torch.full_like(x_end, phis[k] / phis[i + 1] * sc.G[i] * k), rtol=1e-12)
        assert torch.allclose(sc.end_mean(x, g0), means[k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("variance", ["small", "large"])
@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_pm_ddpm_with_K_1_is_ddpm(variance, engine):
    dm = _ring(0.1)
    xT = dm.sample_xt(500, 1000, _gen(15))
    a = D.ddpm(dm, xT, dm.schedule, variance=variance, generator=_gen(16))
    b = D.pm_ddpm(dm, xT, dm.schedule, K=1, variance=variance, engine=engine, generator=_gen(16))
    assert torch.allclose(a.x, b.x, rtol=1e-10, atol=1e-11)
    assert (a.nfe == 1000).all() and (b.nfe == 1000).all()


def test_pm_ddpm_fast_and_reference_engines_agree_in_law():
    """Two-sample z-tests (5 SE) on means, second moments, a tail probability and the call counts;
    K = 30 does not divide T = 1000, so the last block (10 steps) is shorter."""
    dm = _ring(0.2)
    n = 20000
    xT = dm.sample_xt(n, 1000, _gen(17))
    a = D.pm_ddpm(dm, xT, dm.schedule, K=30, engine="fast", generator=_gen(18))
    b = D.pm_ddpm(dm, xT, dm.schedule, K=30, engine="reference", generator=_gen(19))
    stats = lambda x: torch.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1],  # noqa: E731
                                   (x.norm(dim=1) > 1.2).double()], 1)
    for sa, sb in ((stats(a.x), stats(b.x)), (a.nfe.double()[:, None], b.nfe.double()[:, None])):
        z = (sa.mean(0) - sb.mean(0)) / torch.sqrt(sa.var(0) / n + sb.var(0) / n)
        assert (z.abs() < 5).all(), z


def test_pm_ddpm_call_counts_are_exact():
    """Counts are made where the calls are: they sum to the rows the model evaluated, each block
    costs 1 + Binomial(k - 1, 1/k) calls (mean and variance within 5 SE)."""
    dm = _ring(0.2)
    n = 4000
    xT = dm.sample_xt(n, 1000, _gen(20))
    for K, engine in ((40, "fast"), (30, "reference"), (7, "fast")):
        m = Counting(dm)
        res = D.pm_ddpm(m, xT, dm.schedule, K=K, engine=engine, generator=_gen(21))
        assert int(res.nfe.sum()) == m.rows
        blocks = D.pm_blocks(1000, K)
        mean = sum(1 + (k - 1) / k for _, k in blocks)
        var = sum((k - 1) / k * (1 - 1 / k) for _, k in blocks)
        assert D.expected_pm_nfe(1000, K) == pytest.approx(mean)
        assert abs(res.nfe_mean - mean) < 5 * math.sqrt(var / n)
        v = res.nfe.double().var()
        assert abs(float(v) - var) < 5 * var * math.sqrt(2 / (n - 1)) + 0.05 * var
        assert int(res.nfe.min()) >= len(blocks) and int(res.nfe.max()) <= 1000
        assert res.nfe_std > 0


def test_pm_ddpm_fast_engine_is_the_poisson_engine():
    """pm_ddpm is one call of samplers.poisson.fast_step per block (no private copy of the engine)."""
    dm = _ring(0.2)
    xT = dm.sample_xt(200, 1000, _gen(22))
    res = D.pm_ddpm(dm, xT, dm.schedule, K=40, generator=_gen(23))
    g = _gen(23)
    x = xT
    for t_top, k in D.pm_blocks(1000, 40):
        x, _ = poisson.fast_step(g, x, D.DDPMScheme(dm, dm.schedule, t_top, k, "small", 2, x.device, x.dtype))
    assert torch.equal(res.x, x)


# ------------------------------------------------------------------------------------------------
# strided samplers: timesteps, counts, checks


@pytest.mark.parametrize("spacing", ["uniform", "logsnr"])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_strided_timesteps_decrease_from_T_to_zero(spacing, kind):
    s = DiffusionSchedule(kind=kind)
    for steps in (1, 2, 10, 49, 78, 333, 999, 1000):
        ts = D.strided_timesteps(s, steps, spacing)
        assert len(ts) == steps + 1 and ts[0] == 1000 and ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
        if steps > 1:
            assert ts[-2] == 1
    assert D.strided_timesteps(s, 1000, spacing) == list(range(1000, -1, -1))


@pytest.mark.parametrize("name", ["ddpm_small", "ddpm_large", "ddim", "dpmpp_2m", "dpmpp_3m"])
def test_strided_samplers_make_exactly_steps_calls_per_sample(name):
    dm = DiffusedMixture(random_mixture(3, 2, seed=0))
    xT = dm.sample_xt(64, 1000, _gen(24))
    for steps in (1, 3, 20):
        m = Counting(dm)
        res = D.sample(name, m, xT, dm.schedule, steps=steps, seed=1)
        assert (res.nfe == steps).all() and m.calls == steps and m.rows == 64 * steps
        assert res.nfe_std == 0.0 and res.n_diverged == 0
        assert torch.isfinite(res.x).all()


def test_samplers_run_in_float32_and_keep_the_dtype():
    dm = _ring(0.2).to(dtype=torch.float32)
    xT = dm.sample_xt(100, 1000, _gen(25))
    for name, kw in (("ddim", dict(steps=20)), ("dpmpp_2m", dict(steps=20)), ("pm_ddpm_small", dict(K=40))):
        res = D.sample(name, dm, xT, dm.schedule, seed=0, **kw)
        assert res.x.dtype == torch.float32 and torch.isfinite(res.x).all()


def test_a_diverging_model_is_reported_not_hidden():
    dm = _ring(0.2)
    xT = dm.sample_xt(10, 1000, _gen(26))

    def bad(x, t):
        out = dm.eps_hat(x, t)
        out[:3] = float("inf")
        return out

    with pytest.warns(RuntimeWarning, match="3 of 10"):
        res = D.ddim(bad, xT, dm.schedule, steps=5)
    assert res.n_diverged == 3 and res.diverged[:3].all()


@pytest.mark.parametrize("call", [
    lambda dm, x: D.ddpm(dm, x, dm.schedule, steps=0),
    lambda dm, x: D.ddpm(dm, x, dm.schedule, steps=1001),
    lambda dm, x: D.ddpm(dm, x, dm.schedule, steps=10, variance="medium"),
    lambda dm, x: D.ddim(dm, x, dm.schedule, steps=10, eta=-1.0),
    lambda dm, x: D.ddim(dm, x, dm.schedule),
    lambda dm, x: D.ddim(dm, x, dm.schedule, steps=5, spacing="quadratic"),
    lambda dm, x: D.ddim(dm, x, dm.schedule, timesteps=[1000, 500, 500, 0]),
    lambda dm, x: D.ddim(dm, x, dm.schedule, timesteps=[900, 0]),
    lambda dm, x: D.ddim(dm, x, dm.schedule, steps=5, timesteps=[1000, 0]),
    lambda dm, x: D.dpm_solver_pp(dm, x, dm.schedule, steps=10, order=4),
    lambda dm, x: D.pm_ddpm(dm, x, dm.schedule, K=0),
    lambda dm, x: D.pm_ddpm(dm, x, dm.schedule, K=1001),
    lambda dm, x: D.pm_ddpm(dm, x, dm.schedule, K=10, engine="turbo"),
    lambda dm, x: D.ddim(dm, x, "linear", steps=10),
    lambda dm, x: D.ddim(dm, x[0], dm.schedule, steps=10),
    lambda dm, x: D.ddim(dm, x * float("nan"), dm.schedule, steps=10),
    lambda dm, x: D.sample("euler", dm, x, dm.schedule, steps=10),
    lambda dm, x: D.sample("ddim", dm, x, dm.schedule, K=10),
    lambda dm, x: D.sample("pm_ddpm_small", dm, x, dm.schedule, steps=10),
])
def test_bad_sampler_input_raises_before_any_call(call):
    dm = _ring(0.2)
    m = Counting(dm)
    m.schedule = dm.schedule
    x = dm.sample_xt(8, 1000, _gen(27))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            call(m, x)
    assert m.rows == 0

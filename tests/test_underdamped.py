"""Underdamped Langevin: ULMC, PULMC (Poisson midpoint over ULMC) and Shen & Lee's RULMC.

Oracles: the coefficients against quadrature of their defining stochastic integrals and against
their small-step and large-friction limits; the exact (position, velocity) moment recursions
against brute-force enumeration of the Poisson selections, against an independent quadrature of
the randomized midpoint's Gaussian integrals, and against Monte Carlo of the real samplers; the
ULMC stationary law against the closed-form fixed point (a discrete Lyapunov equation).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch

import samplers
import targets
from metrics import underdamped_laws as UL
from metrics.exact_laws import exact_law, stationary_law
from samplers.underdamped import DEFAULT_FRICTION, ou_coefficients

Z_TOL = 5.0  # statistical tolerance, in standard errors


def _coef(tau, gamma):
    c = ou_coefficients(torch.tensor(float(tau), dtype=torch.float64), gamma)
    return {k: float(v) for k, v in c._asdict().items()}


# ------------------------------------------------------------------------------------------------
# coefficients


@pytest.mark.parametrize("gamma", [0.3, 2.0, 25.0])
@pytest.mark.parametrize("tau", [1e-7, 1e-3, 0.2, 0.249, 0.251, 1.7])
def test_coefficients_match_quadrature_of_the_stochastic_integrals(gamma, tau):
    """U(tau) = U + int_0^tau V, V(tau) = e^{-g tau} V + ... : every coefficient is an integral."""
    c = _coef(tau, gamma)
    q = lambda f: scipy.integrate.quad(f, 0.0, tau, epsabs=0.0, epsrel=1e-13, limit=200)[0]  # noqa: E731
    # velocity kernel e^{-g r} and position kernel (1 - e^{-g r})/g, r = time to the end
    kv = lambda r: math.exp(-gamma * r)  # noqa: E731
    ku = lambda r: -math.expm1(-gamma * r) / gamma  # noqa: E731
    expected = dict(
        E=math.exp(-gamma * tau),
        a=q(kv),                       # V's weight in U
        c_u=q(ku),                     # a constant drift's weight in U
        c_v=q(kv),                     # a constant drift's weight in V
        s_uu=2 * gamma * q(lambda r: ku(r) ** 2),
        s_uv=2 * gamma * q(lambda r: ku(r) * kv(r)),
        s_vv=2 * gamma * q(lambda r: kv(r) ** 2),
    )
    for k, v in expected.items():
        assert c[k] == pytest.approx(v, rel=1e-9, abs=0.0), k


def test_coefficients_small_step_limit_is_euler():
    gamma = 1.7
    for tau in (1e-4, 1e-6, 1e-9):
        c = _coef(tau, gamma)
        x = gamma * tau
        for k, v in dict(a=tau, c_u=tau**2 / 2, c_v=tau, s_uu=2 * gamma * tau**3 / 3, s_uv=gamma * tau**2,
                         s_vv=2 * gamma * tau).items():
            assert c[k] == pytest.approx(v, rel=3 * x), (k, tau)


def test_series_and_closed_forms_agree_at_the_switch():
    g = 1.0
    lo, hi = _coef(0.5 - 1e-12, g), _coef(0.5 + 1e-12, g)
    for k in lo:
        assert lo[k] == pytest.approx(hi[k], rel=1e-10), k


def test_large_friction_limit_is_overdamped_lmc():
    """Time rescaled by gamma: ULMC(gamma eta, gamma) -> LMC(eta) as gamma -> infinity."""
    eta = 0.05
    errs = []
    for gamma in (1e2, 1e3, 1e4):
        c = _coef(gamma * eta, gamma)
        errs.append(abs(c["c_u"] - eta) + abs(c["s_uu"] - 2 * eta) + abs(c["a"]))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3
    t = targets.Gaussian.diagonal(3, 5.0)
    lmc = exact_law("lmc", t, 40, eta)
    gaps = []
    for gamma in (1e2, 1e4):
        ul = exact_law("ulmc", t, 40, gamma * eta, friction=gamma)
        gaps.append(np.abs(ul.covs[-1] - lmc.covs[-1]).max() + np.abs(ul.means[-1] - lmc.means[-1]).max())
    assert gaps[1] < gaps[0] / 30 and gaps[1] < 1e-3


# ------------------------------------------------------------------------------------------------
# samplers: identities, counts, inputs


def test_pulmc_with_K1_is_ulmc_bit_for_bit():
    t = targets.Gaussian.rotated(4, 10.0, seed=1)
    a = samplers.sample("ulmc", t, 300, 25, 0.2, friction=1.3, seed=5)
    b = samplers.sample("pulmc", t, 300, 25, 0.2, K=1, friction=1.3, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.v, b.v)
    assert torch.equal(a.grad_evals, b.grad_evals)


def test_gradient_evaluation_counts():
    t = targets.Gaussian.isotropic(2)
    n, steps = 4000, 30
    assert (samplers.sample("ulmc", t, n, steps, 0.1, seed=0).grad_evals == steps).all()
    assert (samplers.sample("rulmc", t, n, steps, 0.1, seed=0).grad_evals == 2 * steps).all()
    for K in (1, 5, 1000):
        e = samplers.sample("pulmc", t, n, steps, 0.1, K=K, seed=0).grad_evals.double()
        # per step 1 + Binomial(K-1, 1/K): variance (K-1)/K (1 - 1/K)
        mean, var = steps * (2 - 1 / K), steps * (K - 1) / K * (1 - 1 / K)
        assert abs(e.mean().item() - mean) <= Z_TOL * math.sqrt(var / n) + 1e-12
        assert (e >= steps).all()


def test_counts_match_the_evaluations_made():
    base = targets.Gaussian.isotropic(3)

    class Counting(targets.Gaussian):
        calls = 0

        def grad_potential(self, x):
            Counting.calls += x.shape[0]
            return super().grad_potential(x)

    t = Counting(base.mean, base.cov)
    for method, K in (("ulmc", None), ("pulmc", 7), ("pulmc_ref", 7), ("rulmc", None)):
        Counting.calls = 0
        r = samplers.sample(method, t, 500, 10, 0.2, K=K, seed=2)
        assert Counting.calls == int(r.grad_evals.sum()), method


def test_velocities_returned_and_traced():
    t = targets.Gaussian.isotropic(2)
    r = samplers.sample("rulmc", t, 50, 6, 0.1, seed=0, record_every=2)
    assert r.v.shape == (50, 2) and r.trace_v.shape == (4, 50, 2) and r.trace.shape == (4, 50, 2)
    assert samplers.sample("lmc", t, 5, 2, 0.1).v is None


def test_default_velocities_are_standard_normal_and_given_ones_are_used():
    t = targets.Gaussian.isotropic(3)
    n = 40000
    r = samplers.sample("ulmc", t, n, 0, 0.1, seed=3)
    v = r.v.numpy()
    assert np.abs(v.mean(0)).max() < Z_TOL / math.sqrt(n)
    assert np.abs(v.var(0) - 1).max() < Z_TOL * math.sqrt(2 / n)
    v0 = torch.full((3,), 0.7, dtype=torch.float64)
    r = samplers.sample("pulmc", t, 10, 0, 0.1, K=3, v0=v0)
    assert torch.equal(r.v, v0.expand(10, 3))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "2", True, [1.0]])
def test_bad_friction_is_rejected(bad):
    t = targets.Gaussian.isotropic(2)
    with pytest.raises(ValueError, match="friction"):
        samplers.sample("ulmc", t, 10, 5, 0.1, friction=bad)
    with pytest.raises(ValueError, match="friction"):
        exact_law("pulmc", t, 5, 0.1, K=2, friction=bad)


def test_inputs_that_do_not_belong_are_rejected():
    t = targets.Gaussian.isotropic(2)
    with pytest.raises(ValueError, match="friction"):
        samplers.sample("lmc", t, 10, 5, 0.1, friction=1.0)
    with pytest.raises(ValueError, match="v0"):
        samplers.sample("plmc", t, 10, 5, 0.1, K=2, v0=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="v0 must have shape"):
        samplers.sample("ulmc", t, 10, 5, 0.1, v0=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="K"):
        samplers.sample("pulmc", t, 10, 5, 0.1)
    with pytest.raises(ValueError, match="takes no K"):
        samplers.sample("rulmc", t, 10, 5, 0.1, K=3)
    with pytest.raises(ValueError, match="friction"):
        exact_law("lmc", t, 5, 0.1, friction=2.0)


def test_divergence_is_flagged_not_hidden():
    t = targets.Gaussian.diagonal(3, 100.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        r = samplers.sample("ulmc", t, 20, 400, 3.0, friction=0.1, seed=0)
    assert r.n_diverged == 20


# ------------------------------------------------------------------------------------------------
# exact recursions


def _brute_force_pulmc_step(lam, eta, gamma, K, mu, S):
    """One PULMC step's exact mean and covariance by enumerating every selection pattern H.

    State ``[u (d), v (d)]`` in the eigenbasis (centred at the target mean).  For a pattern, the
    reference algorithm (K fine steps, interpolant with frozen drift, the same Gaussians) is an
    affine map of the state and the K fine Gaussians, written out as matrices.
    """
    d = lam.shape[0]
    h = eta / K
    c = _coef(h, gamma)
    I = np.eye(d)
    A = np.block([[I, c["a"] * I], [0 * I, c["E"] * I]])
    Gd = np.vstack([c["c_u"] * I, c["c_v"] * I])             # gradient -> state
    Lam = np.hstack([np.diag(lam), 0 * I])                    # state -> gradient (centred)
    L2 = np.linalg.cholesky(np.array([[c["s_uu"], c["s_uv"]], [c["s_uv"], c["s_vv"]]]))
    Gam = np.kron(L2, I)
    nz = 2 * d * K
    mean, second = np.zeros(2 * d), np.zeros((2 * d, 2 * d))
    R = S + np.outer(mu, mu)
    for H in itertools.product([0, 1], repeat=K - 1):
        H = (0,) + H
        prob = np.prod([(1 / K) if hi else (1 - 1 / K) for hi in H[1:]])
        # affine maps [state part | noise part]
        X = np.hstack([np.eye(2 * d), np.zeros((2 * d, nz))])
        Y = X.copy()
        g0 = Lam @ X
        for i in range(K):
            noise = np.zeros((2 * d, 2 * d + nz))
            noise[:, 2 * d * (i + 1): 2 * d * (i + 2)] = Gam
            g = g0 + (K * H[i]) * (Lam @ Y - g0) if i > 0 else g0
            X = A @ X - Gd @ g + noise
            Y = A @ Y - Gd @ g0 + noise
        M, N = X[:, :2 * d], X[:, 2 * d:]
        mean += prob * M @ mu
        second += prob * (M @ R @ M.T + N @ N.T)
    return mean, second - np.outer(mean, mean)


def _model_step(method, lam, eta, gamma, K, mu, S):
    """The same step by metrics.underdamped_laws, converting [u, v] <-> per-coordinate pairs."""
    d = lam.shape[0]
    mu2 = np.stack([mu[:d], mu[d:]], axis=-1)
    S4 = S.reshape(2, d, 2, d).transpose(1, 3, 0, 2)
    model = UL.step_model(method, eta, gamma, K)
    m, S_new = UL.propagate(model, lam, mu2, S4)
    return np.concatenate([m[:, 0], m[:, 1]]), S_new.transpose(2, 0, 3, 1).reshape(2 * d, 2 * d)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_pulmc_recursion_matches_enumeration_of_the_selections(K):
    rng = np.random.default_rng(K)
    lam = np.array([0.7, 3.0])
    d = 2
    mu = rng.normal(size=2 * d)
    B = rng.normal(size=(2 * d, 2 * d))
    S = B @ B.T / 4 + 0.1 * np.eye(2 * d)
    m1, S1 = _brute_force_pulmc_step(lam, 0.4, 1.3, K, mu, S)
    m2, S2 = _model_step("pulmc", lam, 0.4, 1.3, K, mu, S)
    np.testing.assert_allclose(m2, m1, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(S2, S1, rtol=1e-10, atol=1e-12)


def test_ulmc_recursion_is_pulmc_with_K1_and_matches_enumeration():
    lam = np.array([0.5, 2.0])
    mu = np.array([0.3, -1.0, 0.2, 0.5])
    S = np.diag([1.0, 0.5, 2.0, 0.7])
    m1, S1 = _brute_force_pulmc_step(lam, 0.3, 2.0, 1, mu, S)
    m2, S2 = _model_step("ulmc", lam, 0.3, 2.0, None, mu, S)
    np.testing.assert_allclose(m2, m1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(S2, S1, rtol=1e-12, atol=1e-14)


def _rulmc_step_by_quad(lam, eta, gamma, mu, S):
    """One RULMC step on a 1-D target: E over tau by adaptive quadrature, with the Gaussian
    integrals (W1, W2, W3) from their own closed-form 3x3 covariance (not the Markov split)."""

    def moments(tau):
        cm, ce = _coef(tau, gamma), _coef(eta, gamma)
        D = eta - tau
        ed = math.exp(-gamma * D)
        om = -math.expm1(-gamma * tau)
        # Cov(W1, W2) and Cov(W1, W3): stochastic integrals against the same path
        c12 = (2 / gamma) * (tau - om / gamma - ed * om / gamma + ed * (-math.expm1(-2 * gamma * tau)) / (2 * gamma))
        c13 = ed * om**2 / gamma
        C = np.array([[cm["s_uu"], c12, c13], [c12, ce["s_uu"], ce["s_uv"]], [c13, ce["s_uv"], ce["s_vv"]]])
        r = eta * np.array([-math.expm1(-gamma * D) / gamma, ed])
        # Y = [1, a(tau)] x - lam c_u(tau) x_u + W1 ;  x' = A(eta) x - lam r Y + (W2, W3)
        row = np.array([1.0, cm["a"]]) - lam * np.array([cm["c_u"], 0.0])
        M = np.array([[1.0, ce["a"]], [0.0, ce["E"]]]) - lam * np.outer(r, row)
        N = np.hstack([-lam * r[:, None], np.eye(2)])       # coefficients of (W1, W2, W3)
        m = M @ mu
        return m, M @ (S + np.outer(mu, mu)) @ M.T + N @ C @ N.T

    def integ(f):
        return scipy.integrate.quad(f, 0.0, eta, epsabs=1e-15, epsrel=1e-12, limit=200)[0] / eta

    mean = np.array([integ(lambda t, i=i: moments(t)[0][i]) for i in range(2)])
    sec = np.array([[integ(lambda t, i=i, j=j: moments(t)[1][i, j]) for j in range(2)] for i in range(2)])
    return mean, sec - np.outer(mean, mean)


@pytest.mark.parametrize("gamma,eta", [(2.0, 0.3), (0.5, 1.1), (8.0, 0.7)])
def test_rulmc_recursion_matches_independent_quadrature(gamma, eta):
    lam = np.array([1.7])
    mu = np.array([0.4, -0.9])
    S = np.array([[0.8, 0.1], [0.1, 1.3]])
    m1, S1 = _rulmc_step_by_quad(1.7, eta, gamma, mu, S)
    m2, S2 = _model_step("rulmc", lam, eta, gamma, None, mu, S)
    np.testing.assert_allclose(m2, m1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(S2, S1, rtol=1e-9, atol=1e-12)


def test_rulmc_quadrature_has_converged(monkeypatch):
    lam = np.array([0.5, 4.0, 30.0])
    a = UL.step_model("rulmc", 0.8, 3.0)
    monkeypatch.setattr(UL, "_GL_NODES", 2 * UL._GL_NODES)
    b = UL.step_model("rulmc", 0.8, 3.0)
    for f in ("Cbar", "T", "V"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-15)
    assert np.isfinite(a.extra(lam, lam)).all()


def _z_max(x, v, law, n):
    """Largest |z| over position/velocity means and covariance entries against the exact law."""
    zs = []
    for samp, m, S in ((x, law.means[-1], law.covs[-1]), (v, law.v_means[-1], law.v_covs[-1])):
        zs.append(np.abs(samp.mean(0) - m) / np.sqrt(np.diag(S) / n))
        C = np.cov(samp.T)
        # SE of a covariance entry under (near) Gaussianity: sqrt((S_ii S_jj + S_ij^2) / n)
        zs.append((np.abs(C - S) / np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)).ravel())
    xc = ((x - x.mean(0)).T @ (v - v.mean(0))) / (n - 1)
    Sx, Sv, Sxv = np.diag(law.covs[-1]), np.diag(law.v_covs[-1]), law.cross_covs[-1]
    zs.append((np.abs(xc - Sxv) / np.sqrt((np.outer(Sx, Sv) + Sxv**2) / n)).ravel())
    return float(np.concatenate(zs).max())


@pytest.mark.slow
@pytest.mark.parametrize("method,K", [("ulmc", None), ("pulmc", 3), ("pulmc_ref", 3), ("pulmc", 40),
                                      ("pulmc", 10**6), ("rulmc", None)])
def test_exact_recursions_match_monte_carlo(method, K):
    """Means, covariances and position-velocity cross-covariances of the real samplers after 6
    steps from N(0, I) x N(0, I), against the exact recursion, within 5 standard errors (the
    PULMC/RULMC laws are not Gaussian, so the covariance SE is approximate; it is conservative
    here because the laws are close to Gaussian)."""
    t = targets.Gaussian.rotated(3, 8.0, seed=4, mean=[0.5, -1.0, 2.0])
    n, eta, gamma = 60000, 0.35, 1.5
    law = exact_law(method, t, 6, eta, K, friction=gamma)
    r = samplers.sample(method, t, n, 6, eta, K=K, friction=gamma, seed=11)
    assert _z_max(r.x.numpy(), r.v.numpy(), law, n) < Z_TOL


def test_recursion_detects_a_wrong_coefficient():
    """The Monte Carlo comparison has power: halving the selection rate's variance term moves
    the exact covariance by many standard errors at this sample size."""
    t = targets.Gaussian.diagonal(2, 8.0)
    good = UL.step_model("pulmc", 0.6, 1.0, 4)
    bad = UL.StepModel(good.Cbar, good.T / 2, good.V)
    lam = np.linalg.eigvalsh(t.precision.numpy())
    mu = np.zeros((2, 2))
    S0 = np.zeros((2, 2, 2, 2))
    S0[[0, 1], [0, 1]] = np.eye(2)
    for _ in range(6):
        mu, S0 = UL.propagate(good, lam, mu, S0)
    mu2, S2 = np.zeros((2, 2)), np.zeros((2, 2, 2, 2))
    S2[[0, 1], [0, 1]] = np.eye(2)
    for _ in range(6):
        mu2, S2 = UL.propagate(bad, lam, mu2, S2)
    n = 60000
    var = S0[1, 1, 0, 0]
    assert abs(S2[1, 1, 0, 0] - var) / (var * math.sqrt(2 / n)) > 3 * Z_TOL


# ------------------------------------------------------------------------------------------------
# stationary laws


def test_ulmc_stationary_law_is_the_lyapunov_fixed_point():
    t = targets.Gaussian.rotated(4, 10.0, seed=3)
    eta, gamma = 0.25, 2.0
    lam, Q = np.linalg.eigh(t.precision.numpy())
    c = _coef(eta, gamma)
    blocks = []
    for l in lam:
        M = np.array([[1 - l * c["c_u"], c["a"]], [-l * c["c_v"], c["E"]]])
        V = np.array([[c["s_uu"], c["s_uv"]], [c["s_uv"], c["s_vv"]]])
        blocks.append(scipy.linalg.solve_discrete_lyapunov(M, V))
    blocks = np.array(blocks)
    m, cov = stationary_law("ulmc", t, eta, friction=gamma, velocities=True)
    d = 4
    np.testing.assert_allclose(cov[:d, :d], (Q * blocks[:, 0, 0]) @ Q.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov[d:, d:], (Q * blocks[:, 1, 1]) @ Q.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov[:d, d:], (Q * blocks[:, 0, 1]) @ Q.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m[:d], t.mean.numpy())
    # and the recursion run long converges to it
    law = exact_law("ulmc", t, 3000, eta, friction=gamma)
    np.testing.assert_allclose(law.covs[-1], cov[:d, :d], rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_ulmc_chains_reach_the_closed_form_stationary_law():
    t = targets.Gaussian.diagonal(3, 6.0)
    eta, gamma, n = 0.3, 2.0, 40000
    _, cov = stationary_law("ulmc", t, eta, friction=gamma, velocities=True)
    r = samplers.sample("ulmc", t, n, 150, eta, friction=gamma, seed=7)
    z = np.concatenate([r.x.numpy(), r.v.numpy()], axis=1)
    C = np.cov(z.T)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.abs((C - cov) / se).max() < Z_TOL
    # ... which is not the target: the discretization bias is resolved at this n
    var_target = np.diag(t.cov.numpy())
    assert np.abs(np.diag(C)[:3] - var_target).max() > 10 * np.sqrt(2 / n) * var_target.max()


@pytest.mark.parametrize("method,K", [("ulmc", None), ("pulmc", 8), ("rulmc", None)])
def test_stationary_bias_vanishes_with_the_step(method, K):
    t = targets.Gaussian.diagonal(3, 5.0)
    errs = []
    for eta in (0.2, 0.1, 0.05):
        kk = None if K is None else max(1, round(K * 0.2 / eta))
        _, cov = stationary_law(method, t, eta, kk)
        errs.append(np.abs(cov - t.cov.numpy()).max())
    assert errs[0] > errs[1] > errs[2]
    # orders: ULMC ~ eta, PULMC with K ~ 1/eta and RULMC faster
    order = math.log(errs[1] / errs[2]) / math.log(2)
    assert order > (0.8 if method == "ulmc" else 1.6), order


def test_stationary_law_rejects_unstable_steps():
    t = targets.Gaussian.diagonal(2, 100.0)
    with pytest.raises(ValueError, match="unstable"):
        stationary_law("ulmc", t, 5.0, friction=0.1)


def test_default_friction_is_documented_value():
    t = targets.Gaussian.isotropic(2)
    assert samplers.sample("ulmc", t, 3, 1, 0.1).settings["friction"] == DEFAULT_FRICTION == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact_law("rulmc", t, 3, 0.1)

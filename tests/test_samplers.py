"""Tests of ``samplers/`` (LMC, PLMC fast and reference, RLMC, MALA) and of the exact Gaussian
moment recursions they are checked against (``metrics.exact_laws``).

Every statistical test has a fixed seed and a tolerance of ``Z = 5`` standard errors, the SE
being estimated EMPIRICALLY from the samples (``std(f(x)) / sqrt(n)``), never from a Gaussian
formula: PLMC's and RLMC's laws are not Gaussian and have heavier tails.  Two-sample
comparisons use ``sqrt(se_1^2 + se_2^2)``; distribution comparisons use KS / chi-square
p-values against ``ALPHA = 1e-3``.  A test fails only when the code is wrong (or, for a
correct implementation, with probability ~1e-6 per comparison at a new seed).

Notation (docs/method.md): target ``N(m, A^{-1})``, drift ``b(x) = -A (x - m)``, step ``eta``,
PLMC sub-steps ``K``, ``h = eta / K``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import samplers
from metrics.exact_laws import exact_law, one_step_coefficients, stationary_law
from samplers import lmc, mala, plmc, rlmc
from samplers._common import StepInfo
from samplers.api import make_generator, sample
from targets import DoubleWell, Gaussian, GaussianMixture, HolleyStroock, Target

Z = 5.0  # tolerance, in (empirical) standard errors
ALPHA = 1e-3  # significance of KS / chi-square tests
F64 = torch.float64
ALL_METHODS = ("lmc", "plmc", "plmc_ref", "rlmc", "mala")
K_OF = {"plmc": 5, "plmc_ref": 5}  # K used when a test runs "every method"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def kw_for(method, K=None):
    """Keyword arguments that make ``sample(method, ...)`` valid (K only for PLMC)."""
    if method.startswith("plmc"):
        return {"K": K_OF[method] if K is None else K}
    return {}


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().to(F64).numpy()


def mean_se(v: np.ndarray):
    """Sample mean over axis 0 and its empirical standard error ``std / sqrt(n)``."""
    v = np.asarray(v, dtype=np.float64)
    n = v.shape[0]
    return v.mean(0), v.std(0, ddof=1) / math.sqrt(n)


def assert_within_se(est, exact, se, label: str, z: float = Z):
    """``|est - exact| < z * se`` entrywise, with a message that says by how much."""
    est, exact, se = np.broadcast_arrays(np.asarray(est, float), np.asarray(exact, float),
                                         np.asarray(se, float))
    assert np.all(np.isfinite(est)), f"{label}: non-finite estimate {est}"
    assert np.all(se > 0), f"{label}: zero standard error {se}"
    dev = np.abs(est - exact) / se
    worst = np.unravel_index(np.argmax(dev), dev.shape)
    assert dev[worst] < z, (f"{label}: {dev[worst]:.2f} SE off at {worst}: estimate {est[worst]:.6g}, "
                            f"exact {exact[worst]:.6g}, SE {se[worst]:.3g}")


def assert_same_law_moments(a: np.ndarray, b: np.ndarray, label: str):
    """Two independent samples ``[n, d]``: equal means and second moments within Z SE, and equal
    marginal laws by a two-sample KS test on every coordinate."""
    for name, f in (("mean", lambda v: v), ("E x^2", lambda v: v**2)):
        ma, sa = mean_se(f(a))
        mb, sb = mean_se(f(b))
        assert_within_se(ma, mb, np.hypot(sa, sb), f"{label} {name}")
    for j in range(a.shape[1]):
        p = stats.ks_2samp(a[:, j], b[:, j]).pvalue
        assert p > ALPHA, f"{label}: KS p-value {p:.2g} on coordinate {j}"


def assert_moments_match(x: np.ndarray, mean, cov, label: str):
    """Sample ``[n, d]`` against an exact mean ``[d]`` and covariance ``[d, d]``: the mean and every
    entry of ``E[(x - mean)(x - mean)^T]`` (centred at the EXACT mean, so the estimator is an
    unbiased average with an empirical SE) within Z SE."""
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    m_hat, m_se = mean_se(x)
    assert_within_se(m_hat, mean, m_se, f"{label} mean")
    e = x - mean
    c_hat, c_se = mean_se(e[:, :, None] * e[:, None, :])
    assert_within_se(c_hat, cov, c_se, f"{label} covariance")


def moment_deviation(x: np.ndarray, mean, cov) -> float:
    """Largest |estimate - exact| / SE over the mean and covariance entries (for power checks)."""
    m_hat, m_se = mean_se(x)
    e = x - np.asarray(mean, float)
    c_hat, c_se = mean_se(e[:, :, None] * e[:, None, :])
    return float(max((np.abs(m_hat - mean) / m_se).max(), (np.abs(c_hat - cov) / c_se).max()))


def lam_max(target: Gaussian) -> float:
    return float(torch.linalg.eigvalsh(target.precision.to(F64)).max())


def gaussian(mean, cov) -> Gaussian:
    return Gaussian(torch.as_tensor(mean, dtype=F64), torch.as_tensor(cov, dtype=F64))


class CountingTarget(Target):
    """Wraps a target and records the shape of every ``grad_potential`` / ``potential`` call.

    ``to`` keeps the same record lists, so counts survive the samplers' ``target.to(...)``.
    """

    name = "counting"

    def __init__(self, inner, grad_shapes=None, potential_shapes=None):
        self.inner = inner
        self.dim = inner.dim
        self.grad_shapes = [] if grad_shapes is None else grad_shapes
        self.potential_shapes = [] if potential_shapes is None else potential_shapes

    @property
    def device(self):
        return self.inner.device

    @property
    def dtype(self):
        return self.inner.dtype

    def to(self, device=None, dtype=None):
        inner = self.inner.to(device=device, dtype=dtype)
        return self if inner is self.inner else CountingTarget(inner, self.grad_shapes, self.potential_shapes)

    def potential(self, x):
        self.potential_shapes.append(tuple(x.shape))
        return self.inner.potential(x)

    def grad_potential(self, x):
        self.grad_shapes.append(tuple(x.shape))
        return self.inner.grad_potential(x)

    @property
    def grad_rows(self) -> int:
        return sum(s[0] for s in self.grad_shapes)


class Quartic(Target):
    """``F(x) = sum_i x_i^4 / 4``: ``∇F = x^3`` is not globally Lipschitz (LMC blows up far out)."""

    name = "quartic"
    _tensor_fields = ("_zero",)

    def __init__(self, dim: int):
        self.dim = dim
        self._zero = torch.zeros(dim, dtype=F64)

    def potential(self, x):
        return (x**4).sum(-1) / 4.0

    def grad_potential(self, x):
        return x**3


# ----------------------------------------------------------------------------------------------
# 1. PLMC with K = 1 is LMC exactly
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["plmc", "plmc_ref"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target_name", ["gaussian", "holley_stroock"])
def test_plmc_with_K1_equals_lmc_bit_for_bit_via_sample(method, seed, target_name):
    target = Gaussian.rotated(4, kappa=10, seed=3) if target_name == "gaussian" else HolleyStroock(4)
    eta = 0.3 / target.smoothness
    ref = sample("lmc", target, 64, 20, eta, seed=seed, record_every=1)
    out = sample(method, target, 64, 20, eta, K=1, seed=seed, record_every=1)
    assert torch.equal(out.trace, ref.trace)
    assert torch.equal(out.x, ref.x)
    assert torch.equal(out.grad_evals, ref.grad_evals)
    assert torch.equal(out.grad_evals, torch.full((64,), 20))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["plmc", "plmc_ref"])
def test_plmc_with_K1_equals_lmc_bit_for_bit_over_step_sizes_and_dtypes(method, dtype):
    """K = 1 is LMC bit for bit whatever the step size and dtype (fast_step's docstring has no
    restriction).  eta = 0.25 is in the grid on purpose: torch.sqrt(0.5) is 1 ulp off the correctly
    rounded math.sqrt(0.5) in float64, which once made the fast engine's noise scale differ."""
    target = Gaussian.rotated(4, kappa=10, seed=3)
    for eta in [0.25, 0.125, 0.5, *np.linspace(0.005, 0.15, 30)]:
        for n in (1, 5, 64):
            ref = sample("lmc", target, n, 3, float(eta), seed=1, dtype=dtype)
            out = sample(method, target, n, 3, float(eta), K=1, seed=1, dtype=dtype)
            assert torch.equal(out.x, ref.x), f"eta={eta}, n={n}"


@pytest.mark.parametrize("step_fn", [plmc.step, plmc.step_reference], ids=["fast", "reference"])
def test_plmc_with_K1_equals_lmc_bit_for_bit_via_step_functions(step_fn):
    """Same generator state in, same state AND same generator state out, step after step."""
    target = Gaussian.rotated(3, kappa=10, seed=1)
    eta = 0.5 / target.smoothness
    x0 = target.sample(100, make_generator(7, "cpu"))
    g_lmc, g_plmc = make_generator(123, "cpu"), make_generator(123, "cpu")
    s_lmc, s_plmc = lmc.init(x0), plmc.init(x0)
    for _ in range(10):
        s_lmc, i_lmc = lmc.step(g_lmc, s_lmc, target, eta)
        s_plmc, i_plmc = step_fn(g_plmc, s_plmc, target, eta, 1)
        assert torch.equal(s_lmc.x, s_plmc.x)
        assert torch.equal(i_lmc.grad_evals, i_plmc.grad_evals)
        assert torch.equal(g_lmc.get_state(), g_plmc.get_state())


# ----------------------------------------------------------------------------------------------
# 2. Fast and reference PLMC agree in law, and match the exact moment recursions
# ----------------------------------------------------------------------------------------------
def _law_targets():
    return {
        # 1-D Gaussian N(1, 1/2) (A = 2), started 2 away from the mean
        "gaussian_1d": (gaussian([1.0], [[0.5]]), torch.tensor([3.0], dtype=F64), 0.4),
        # non-Gaussian: a two-mode mixture (modes at ±1.5 (1, 1)/sqrt 2, unit variance) and Holley–Stroock
        "mixture_2d": (GaussianMixture.bimodal(2, separation=3.0), torch.tensor([1.5, -0.5], dtype=F64), 0.5),
        "holley_stroock_2d": (HolleyStroock(2), torch.tensor([0.3, 2.0], dtype=F64), 0.2),
    }


@pytest.mark.parametrize("K", [2, 7, 50])
@pytest.mark.parametrize("target_name", ["gaussian_1d", "mixture_2d", "holley_stroock_2d"])
def test_fast_and_reference_plmc_agree_in_law(K, target_name):
    """After 3 steps from a point: equal means, E x^2 (Z SE) and marginals (KS), and equal
    mean evaluation counts — on a Gaussian and on two non-Gaussian targets."""
    target, x0, eta = _law_targets()[target_name]
    n = 60_000
    fast = sample("plmc", target, n, 3, eta, K=K, x0=x0, seed=11)
    ref = sample("plmc_ref", target, n, 3, eta, K=K, x0=x0, seed=12)
    assert not fast.diverged.any() and not ref.diverged.any()
    assert_same_law_moments(to_np(fast.x), to_np(ref.x), f"{target_name} K={K}")
    ef, sf = mean_se(to_np(fast.grad_evals))
    er, sr = mean_se(to_np(ref.grad_evals))
    assert_within_se(ef, er, math.hypot(sf, sr), f"{target_name} K={K} grad_evals")


def _plmc_mean_map(A: np.ndarray, eta: float, K: int) -> np.ndarray:
    """docs/method.md section 9: ``I - eta A + (eta^2/2)(1 - 1/K) A^2``."""
    I = np.eye(A.shape[0])
    return I - eta * A + 0.5 * eta**2 * (1.0 - 1.0 / K) * A @ A


def _tilted_gaussian_2d():
    cov = np.linalg.inv(np.array([[2.0, 0.6], [0.6, 1.0]]))
    return gaussian([1.0, -1.0], cov)


@pytest.mark.parametrize("method,K", [("plmc", 1), ("plmc", 2), ("plmc", 7), ("plmc", 50),
                                      ("plmc", 1000), ("plmc", 10**6),
                                      ("plmc_ref", 2), ("plmc_ref", 7), ("plmc_ref", 50)])
def test_plmc_one_step_from_a_point_matches_exact_mean_map_and_second_moments(method, K):
    """Mean after one step from a point = m + (I - eta A + eta^2/2 (1 - 1/K) A^2)(x0 - m);
    covariance = exact_law's (which carries the random-H term)."""
    target = _tilted_gaussian_2d()
    A, m = to_np(target.precision), to_np(target.mean)
    x0 = torch.tensor([3.0, 1.0], dtype=F64)
    eta = 0.5  # eta * lambda_max ~ 1.15: the K-dependent eta^2 term is large
    n = 100_000
    out = sample(method, target, n, 1, eta, K=K, x0=x0, seed=21)
    mean_exact = m + _plmc_mean_map(A, eta, K) @ (to_np(x0) - m)
    law = exact_law(method, target, 1, eta, K=K, mean0=x0, cov0=torch.zeros(2, 2, dtype=F64))
    np.testing.assert_allclose(law.means[-1], mean_exact, rtol=1e-12, atol=1e-12)
    assert_moments_match(to_np(out.x), mean_exact, law.covs[-1], f"{method} K={K} one step")


@pytest.mark.parametrize("K", [1, 2, 3, 7, 20])
def test_exact_law_plmc_one_step_covariance_from_a_point_equals_brute_force_sums(K):
    """Pins the PLMC recursion of metrics.exact_laws down independently: from a point x
    (e = x - m), one step gives  e' = (M + c R A^2) e - eta sqrt(2h) A T + sqrt(2h) S_K  with
    R = sum_i H_i i, T = sum_i H_i S_i.  Its covariance
    c^2 Var(R) A^2 e e^T A^2 + 2h (K I - 2 eta E[T S_K] A + eta^2 E[T T^T] A^2)  is computed here by
    summing over i, j = 1..K-1 directly (E[H_i H_j] = p^2 + p(1-p) delta_ij, E[S_i S_j] = min(i, j))."""
    target = _tilted_gaussian_2d()
    A, m = to_np(target.precision), to_np(target.mean)
    eta, p, h, c = 0.7, 1.0 / K, 0.7 / K, 0.7**2 / K
    idx = np.arange(1, K)
    var_R = np.sum(p * (1 - p) * idx**2)
    ETS = np.sum(p * idx)  # E[T S_K] = sum_i p E[S_i S_K] = sum_i p i
    EHH = p**2 + p * (1 - p) * np.eye(K - 1)
    ETT = np.sum(EHH * np.minimum.outer(idx, idx))
    x0 = np.array([2.5, -3.0])
    e = x0 - m
    A2e = A @ A @ e
    cov = c**2 * var_R * np.outer(A2e, A2e) + 2 * h * (K * np.eye(2) - 2 * eta * ETS * A + eta**2 * ETT * A @ A)
    law = exact_law("plmc", target, 1, eta, K=K, mean0=torch.tensor(x0), cov0=torch.zeros(2, 2, dtype=F64))
    np.testing.assert_allclose(law.covs[-1], cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(law.means[-1], m + _plmc_mean_map(A, eta, K) @ e, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# 3. Bernoulli selections: per chain, shared by the coordinates; evaluations on whole rows
# ----------------------------------------------------------------------------------------------
STEP_FNS = {"fast": plmc.step, "reference": plmc.step_reference}


@pytest.mark.parametrize("engine,K", [("fast", 1), ("fast", 3), ("fast", 10**6), ("reference", 1), ("reference", 3)])
def test_plmc_evaluations_are_whole_rows_and_counted_per_chain(engine, K):
    """(a) StepInfo.grad_evals is an int64 [n] per-chain count >= 1; (b) every gradient call is on
    whole d-vectors and the rows evaluated add up to sum(grad_evals)."""
    d, n = 5, 2000
    target = CountingTarget(Gaussian.isotropic(d, variance=2.0))
    state = plmc.init(torch.randn(n, d, generator=make_generator(0, "cpu"), dtype=F64))
    gen = make_generator(1, "cpu")
    total = 0
    for _ in range(4):
        state, info = STEP_FNS[engine](gen, state, target, 0.3, K)
        assert isinstance(info, StepInfo)
        assert info.grad_evals.shape == (n,) and info.grad_evals.dtype == torch.int64
        assert (info.grad_evals >= 1).all() and (info.grad_evals <= K).all()
        total += int(info.grad_evals.sum())
    assert all(len(s) == 2 and s[1] == d for s in target.grad_shapes), target.grad_shapes
    assert target.grad_rows == total
    if K == 1:
        assert total == 4 * n


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_plmc_grad_evals_of_a_single_chain_equal_its_evaluated_rows(engine):
    """Per chain: with one chain, the count reported equals the rows the target was evaluated on
    (1 + the number of selections), over 300 independent steps."""
    target = Gaussian.isotropic(3)
    gen = make_generator(5, "cpu")
    seen = []
    for _ in range(300):
        ct = CountingTarget(target)
        _, info = STEP_FNS[engine](gen, plmc.init(torch.zeros(1, 3, dtype=F64)), ct, 0.5, 6)
        assert info.grad_evals.shape == (1,)
        assert int(info.grad_evals[0]) == ct.grad_rows
        seen.append(ct.grad_rows)
    assert len(set(seen)) >= 3  # the count is random per step (0, 1, 2, ... selections occur)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_plmc_selection_is_shared_by_the_coordinates_of_a_chain(engine):
    """d = 2, diagonal A = diag(1, 2), one step of eta = 1, K = 5 from the point x0 = (4, 4).

    With H per chain, e' = (M + c R A^2) e + noise shares R across coordinates, so
    Cov(x'_1, x'_2) = c^2 Var(R) A_11^2 A_22^2 e_1 e_2 (= exact_law's off-diagonal) — an
    implementation drawing H per coordinate gives 0.  And the chains with no selection
    (grad_evals == 1, probability (1 - 1/K)^(K-1)) are exactly LMC with the drift frozen at x0:
    both coordinates ~ N(x0 + eta b(x0), 2 eta)."""
    lam = np.array([1.0, 2.0])
    target = gaussian([0.0, 0.0], np.diag(1.0 / lam))
    K, eta, n = 5, 1.0, 100_000
    x0 = torch.tensor([4.0, 4.0], dtype=F64)
    state = plmc.init(x0.expand(n, 2).clone())
    new, info = STEP_FNS[engine](make_generator(31, "cpu"), state, target, eta, K)
    x, evals = to_np(new.x), to_np(info.grad_evals)
    law = exact_law("plmc", target, 1, eta, K=K, mean0=x0, cov0=torch.zeros(2, 2, dtype=F64))
    mu, cov = law.means[-1], law.covs[-1]
    c, p = eta**2 / K, 1.0 / K
    var_R = p * (1 - p) * sum(i * i for i in range(1, K))
    assert cov[0, 1] == pytest.approx(c**2 * var_R * lam[0] ** 2 * lam[1] ** 2 * 16.0, rel=1e-12)
    prod = (x[:, 0] - mu[0]) * (x[:, 1] - mu[1])
    est, se = mean_se(prod)
    assert_within_se(est, cov[0, 1], se, "cross-covariance")
    assert abs(est) > 20 * se, "cross-covariance indistinguishable from 0 (per-coordinate H?)"
    # chains without a selection
    none = evals == 1
    p0 = (1 - p) ** (K - 1)
    assert_within_se(none.mean(), p0, math.sqrt(p0 * (1 - p0) / n), "P(no selection)")
    frozen = to_np(x0) - eta * lam * to_np(x0)
    zscores = (x[none] - frozen) / math.sqrt(2 * eta)
    for j in range(2):
        pv = stats.kstest(zscores[:, j], "norm").pvalue
        assert pv > ALPHA, f"no-selection chains, coordinate {j}: KS p = {pv:.2g} vs N(0, 1)"
    # and a selection moves both coordinates: the selected chains' mean is far from frozen-LMC's
    sel = x[~none]
    shift, shift_se = mean_se(sel - frozen)
    assert np.all(np.abs(shift) > 20 * shift_se)


# ----------------------------------------------------------------------------------------------
# 4. Evaluations per PLMC step: 1 + Binomial(K - 1, 1/K), mean 2 - 1/K
# ----------------------------------------------------------------------------------------------
def _binomial_chisquare_pvalue(counts: np.ndarray, trials: int, p: float) -> float:
    n = counts.size
    pmf = stats.binom.pmf(np.arange(trials + 1), trials, p)
    last = int(np.max(np.nonzero(n * pmf >= 5.0)[0]))  # bins 0..last-1, then a tail bin >= last
    obs = np.array([np.sum(counts == k) for k in range(last)] + [np.sum(counts >= last)], float)
    exp = n * np.append(pmf[:last], stats.binom.sf(last - 1, trials, p))
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("engine,K", [("fast", 1), ("fast", 2), ("fast", 10), ("fast", 1000),
                                      ("fast", 10**6), ("reference", 1), ("reference", 2),
                                      ("reference", 10), ("reference", 100)])
def test_plmc_evaluations_per_step_are_one_plus_binomial(engine, K):
    n = 100_000
    target = Gaussian.isotropic(1)
    _, info = STEP_FNS[engine](make_generator(41, "cpu"), plmc.init(torch.zeros(n, 1, dtype=F64)), target, 0.5, K)
    counts = to_np(info.grad_evals) - 1.0
    if K == 1:
        assert np.all(counts == 0)
        return
    p = 1.0 / K
    m, se = mean_se(counts + 1)
    assert_within_se(m, 2.0 - 1.0 / K, se, f"mean evaluations per step, K={K}")
    v_exact = (K - 1) * p * (1 - p)
    v_hat, v_se = mean_se((counts - counts.mean()) ** 2)
    assert_within_se(v_hat, v_exact, v_se, f"variance of selections, K={K}")
    pv = _binomial_chisquare_pvalue(counts, K - 1, p)
    assert pv > ALPHA, f"selections not Binomial(K-1, 1/K): chi-square p = {pv:.2g}"


def test_plmc_evaluation_counts_through_sample_average_two_minus_one_over_K():
    n, steps, K = 20_000, 10, 4
    out = sample("plmc", Gaussian.isotropic(2), n, steps, 0.2, K=K, seed=3)
    m, se = mean_se(to_np(out.grad_evals) / steps)
    assert_within_se(m, 2 - 1 / K, se, "grad_evals / step")


# ----------------------------------------------------------------------------------------------
# 5. LMC's stationary variance on N(0, s^2): s^2 / (1 - eta / (2 s^2))
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [0.25, 0.75, 1.5])
def test_lmc_stationary_variance_on_1d_gaussian(eta):
    s2 = 2.0
    target = Gaussian.isotropic(1, variance=s2)
    v = s2 / (1.0 - eta / (2.0 * s2))
    _, cov = stationary_law("lmc", target, eta)
    assert abs(cov[0, 0] - v) < 1e-12 * v
    # from the target N(0, s^2): the gap to v contracts by (1 - eta/s^2)^2 per step
    n_steps = math.ceil(math.log(1e-12) / math.log((1 - eta / s2) ** 2))
    n = 200_000
    x0 = math.sqrt(s2) * torch.randn(n, 1, generator=make_generator(50, "cpu"), dtype=F64)
    out = sample("lmc", target, n, n_steps, eta, x0=x0, seed=51)
    est, se = mean_se(to_np(out.x)[:, 0] ** 2)
    assert_within_se(est, v, se, f"LMC stationary variance, eta={eta}")
    assert abs(est - s2) > 10 * se  # and the check can tell LMC's bias from no bias


# ----------------------------------------------------------------------------------------------
# 6. RLMC: stationary variance error O(eta^3); the independent-noise pitfall (RLMC and PLMC)
# ----------------------------------------------------------------------------------------------
def test_rlmc_exact_stationary_variance_error_is_order_eta_cubed():
    target = Gaussian.isotropic(1)
    etas = np.geomspace(1e-3, 3e-2, 8)
    err = np.array([abs(stationary_law("rlmc", target, e)[1][0, 0] - 1.0) for e in etas])
    slope = np.polyfit(np.log(etas), np.log(err), 1)[0]
    assert abs(slope - 3.0) < 0.1, slope
    # LMC on the same range is O(eta) (sanity of the fit): error = 1/(1 - eta/2) - 1
    err_lmc = np.array([abs(stationary_law("lmc", target, e)[1][0, 0] - 1.0) for e in etas])
    assert abs(np.polyfit(np.log(etas), np.log(err_lmc), 1)[0] - 1.0) < 0.1


def _rlmc_step_independent_noise(gen, x, target, eta):
    """THE PITFALL (not the method): the midpoint's noise independent of the final noise."""
    u = torch.rand(x.shape[0], 1, generator=gen, dtype=x.dtype)
    z1 = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    z2 = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    y = x - u * eta * target.grad_potential(x) + torch.sqrt(2 * u * eta) * z1
    return x - eta * target.grad_potential(y) + math.sqrt(2 * eta) * z2


def _rlmc_independent_noise_stationary_variance(eta, lam=1.0):
    """Exact fixed point of the pitfall on N(0, 1/lam): e' = (M + u eta^2 lam^2) e
    - sqrt(2) eta lam W'(u eta) + sqrt(2) W(eta), W' independent of W: noise eta^3 lam^2 + 2 eta."""
    m = 1 - eta * lam
    f = m * m + eta**2 * lam**2 * m + eta**4 * lam**4 / 3
    return (eta**3 * lam**2 + 2 * eta) / (1 - f)


def _stationary_mc_variance(step, n=100_000, n_steps=25, seed=60):
    """E x^2 (and SE) after n_steps of ``step(gen, x)`` from N(0, 1)."""
    gen = make_generator(seed, "cpu")
    x = torch.randn(n, 1, generator=gen, dtype=F64)
    for _ in range(n_steps):
        x = step(gen, x)
    return mean_se(to_np(x)[:, 0] ** 2)


def test_rlmc_shares_its_noise_and_the_independent_noise_pitfall_is_order_eta():
    target, eta = Gaussian.isotropic(1), 0.5
    v_exact = stationary_law("rlmc", target, eta)[1][0, 0]
    v_wrong = _rlmc_independent_noise_stationary_variance(eta)
    # the second moment contracts by F per step (same F for the pitfall): 25 steps forget the start
    assert one_step_coefficients("rlmc", np.array([1.0]), eta)[1][0, 0] ** 25 < 1e-9
    est, se = _stationary_mc_variance(lambda g, x: rlmc.step(g, rlmc.init(x), target, eta)[0].x)
    assert_within_se(est, v_exact, se, "RLMC stationary variance")
    est_w, se_w = _stationary_mc_variance(lambda g, x: _rlmc_step_independent_noise(g, x, target, eta))
    assert_within_se(est_w, v_wrong, se_w, "independent-noise RLMC stationary variance")
    assert abs(est_w - v_exact) > 50 * se_w
    # its error is O(eta) (slope 1), the method's is O(eta^3)
    etas = np.geomspace(1e-3, 3e-2, 8)
    err_w = np.abs([_rlmc_independent_noise_stationary_variance(e) - 1.0 for e in etas])
    assert abs(np.polyfit(np.log(etas), np.log(err_w), 1)[0] - 1.0) < 0.1


def _plmc_step_independent_noise(gen, x, target, eta, K):
    """THE PITFALL (not the method): interpolant Y_i built from Gaussians independent of the
    ones that make the final noise S_K (reference loop otherwise as in docs/method.md)."""
    h = eta / K
    b0 = -target.grad_potential(x)
    x_new, y = x + eta * b0, x.clone()
    for i in range(K):
        if i >= 1:
            sel = torch.rand(x.shape[0], 1, generator=gen, dtype=F64) < 1.0 / K
            x_new = x_new + eta * sel * (-target.grad_potential(y) - b0)
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        z_indep = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        x_new = x_new + math.sqrt(2 * h) * z
        y = y + h * b0 + math.sqrt(2 * h) * z_indep
    return x_new


def test_plmc_shares_its_noise_and_the_independent_noise_pitfall_is_far_off():
    """On N(0, 1), eta = 0.5, K = 4: fast and reference PLMC's Monte Carlo stationary variance
    matches stationary_law("plmc"); the independent-noise version's matches ITS exact fixed point
    (noise 2h (eta^2 tau + K) instead of 2h (eta^2 tau - eta (K - 1) + K): an extra
    2 eta^2 (1 - 1/K), i.e. a stationary error ~ eta (1 - 1/K), O(eta) even as K grows) and is
    far from the method's."""
    target, eta, K = Gaussian.isotropic(1), 0.5, 4
    v_exact = stationary_law("plmc", target, eta, K=K)[1][0, 0]
    a, F, noise = one_step_coefficients("plmc", np.array([1.0]), eta, K)
    v_wrong = (noise[0] + 2 * eta**2 * (1 - 1 / K)) / (1 - F[0, 0])
    assert F[0, 0] ** 25 < 1e-9  # 25 steps from N(0, 1) forget the start (same F for the pitfall)
    for fn in (plmc.step, plmc.step_reference):
        est, se = _stationary_mc_variance(lambda g, x: fn(g, plmc.init(x), target, eta, K)[0].x)
        assert_within_se(est, v_exact, se, f"PLMC ({fn.__name__}) stationary variance")
    est_w, se_w = _stationary_mc_variance(lambda g, x: _plmc_step_independent_noise(g, x, target, eta, K))
    assert_within_se(est_w, v_wrong, se_w, "independent-noise PLMC stationary variance")
    assert abs(est_w - v_exact) > 50 * se_w
    # with K ~ 1/eta the method's error is O(eta^2) while the pitfall's stays O(eta)
    etas = np.geomspace(1e-3, 2e-2, 6)
    Ks = [math.ceil(1 / e) for e in etas]
    err = [abs(stationary_law("plmc", target, e, K=k)[1][0, 0] - 1) for e, k in zip(etas, Ks)]
    err_w = []
    for e, k in zip(etas, Ks):
        _, F, noise = one_step_coefficients("plmc", np.array([1.0]), e, k)
        err_w.append(abs((noise[0] + 2 * e**2 * (1 - 1 / k)) / (1 - F[0, 0]) - 1))
    assert np.polyfit(np.log(etas), np.log(err), 1)[0] > 1.8
    assert abs(np.polyfit(np.log(etas), np.log(err_w), 1)[0] - 1.0) < 0.1


# ----------------------------------------------------------------------------------------------
# 7. MALA leaves the target invariant
# ----------------------------------------------------------------------------------------------
def test_mala_leaves_rotated_gaussian_invariant_and_the_check_has_power():
    target = Gaussian.rotated(5, kappa=10, seed=1)
    eta = 1.0 / target.smoothness  # large for MALA in d = 5: LMC at this step is visibly biased
    n = 100_000
    x0 = target.sample(n, make_generator(70, "cpu"))
    out = sample("mala", target, n, 20, eta, x0=x0, seed=71)
    assert out.acceptance.shape == (n,)
    assert ((out.acceptance >= 0) & (out.acceptance <= 1)).all()
    assert 0.2 < float(out.acceptance.mean()) < 0.99
    assert torch.equal(out.grad_evals, torch.full((n,), 21))
    assert_moments_match(to_np(out.x), to_np(target.mean), to_np(target.cov), "MALA from pi")
    # the same check flags LMC at this step size (so a biased MALA would not pass unseen)
    biased = sample("lmc", target, n, 20, eta, x0=x0, seed=71)
    assert moment_deviation(to_np(biased.x), to_np(target.mean), to_np(target.cov)) > 3 * Z


def test_mala_leaves_gaussian_mixture_invariant():
    target = GaussianMixture.bimodal(2, separation=3.0)
    n = 100_000
    x0 = target.sample(n, make_generator(72, "cpu"))
    out = sample("mala", target, n, 20, 0.8, x0=x0, seed=73)
    assert out.acceptance.shape == (n,)
    assert 0.2 < float(out.acceptance.mean()) < 0.99
    x = to_np(out.x)
    assert_moments_match(x, to_np(target.mean), to_np(target.cov), "MALA on the mixture")
    fresh = to_np(target.sample(n, make_generator(74, "cpu")))
    for j in range(2):
        pv = stats.ks_2samp(x[:, j], fresh[:, j]).pvalue
        assert pv > ALPHA, f"MALA mixture coordinate {j}: KS p = {pv:.2g} against exact samples"


def test_mala_state_caches_potential_and_gradient_of_its_current_point():
    target = GaussianMixture.bimodal(3)
    gen = make_generator(75, "cpu")
    state = mala.init(target.sample(500, gen), target)
    for _ in range(5):
        state, info = mala.step(gen, state, target, 1.0)
        assert info.accepted.shape == (500,) and info.accepted.dtype == torch.bool
    assert torch.allclose(state.potential, target.potential(state.x), rtol=0, atol=1e-12)
    assert torch.allclose(state.grad, target.grad_potential(state.x), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 8. One- and multi-step moments vs the exact recursions on an ill-conditioned Gaussian
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lmc", "rlmc", "plmc", "plmc_ref"])
def test_moments_match_exact_law_on_rotated_ill_conditioned_gaussian(method):
    """d = 3, kappa = 10, non-zero mean, default start N(0, I) (exact_law's default too):
    mean vector and all covariance entries after 1, 3 and 10 steps."""
    target = Gaussian.rotated(3, kappa=10, seed=2, mean=torch.tensor([1.0, -0.5, 0.25], dtype=F64))
    eta = 0.8 / target.smoothness
    K = 4 if method.startswith("plmc") else None
    n = 100_000
    out = sample(method, target, n, 10, eta, seed=80, record_every=1, **({"K": K} if K else {}))
    law = exact_law(method, target, 10, eta, K=K, record_every=1)
    assert list(law.steps) == out.trace_steps
    for k in (1, 3, 10):
        assert_moments_match(to_np(out.trace[k]), law.means[k], law.covs[k], f"{method} step {k}")


# ----------------------------------------------------------------------------------------------
# 9. Reproducibility, dtypes, default start
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL_METHODS)
def test_seeded_runs_repeat_bit_for_bit_and_seeds_differ(method):
    target = GaussianMixture.bimodal(3)
    a = sample(method, target, 200, 15, 0.2, seed=5, **kw_for(method))
    b = sample(method, target, 200, 15, 0.2, seed=5, **kw_for(method))
    c = sample(method, target, 200, 15, 0.2, seed=6, **kw_for(method))
    assert torch.equal(a.x, b.x) and torch.equal(a.grad_evals, b.grad_evals)
    if a.acceptance is not None:
        assert torch.equal(a.acceptance, b.acceptance)
    assert not torch.equal(a.x, c.x)
    assert (a.x != c.x).all(dim=1).float().mean() > 0.5


@pytest.mark.parametrize("method,K", [("lmc", None), ("plmc", 5), ("plmc", 10**6), ("plmc_ref", 5),
                                      ("rlmc", None), ("mala", None)])
def test_float32_runs_are_finite_and_agree_in_law_with_float64(method, K):
    target = Gaussian.rotated(2, kappa=4, seed=9)
    n, eta = 50_000, 0.3
    kw = {"K": K} if K else {}
    r32 = sample(method, target, n, 5, eta, seed=90, dtype=torch.float32, **kw)
    r64 = sample(method, target, n, 5, eta, seed=91, dtype=torch.float64, **kw)
    assert r32.x.dtype == torch.float32 and r64.x.dtype == torch.float64
    assert torch.isfinite(r32.x).all() and not r32.diverged.any()
    assert_same_law_moments(to_np(r32.x), to_np(r64.x), f"{method} float32 vs float64")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_default_start_is_the_same_standard_normal_draw_for_every_method(dtype):
    target = Gaussian.rotated(3, kappa=10, seed=0)
    n, seed = 50, 17
    expected = torch.randn((n, 3), generator=make_generator(seed, "cpu"), dtype=dtype)
    for method in ALL_METHODS:
        out = sample(method, target, n, 2, 0.05, seed=seed, dtype=dtype, record_every=1, **kw_for(method))
        assert torch.equal(out.trace[0], expected), method


@pytest.mark.parametrize("method", ALL_METHODS)
def test_sample_is_the_step_functions_run_from_the_seeded_generator(method):
    """sample() = draw x0 from the seeded generator, then the method's step function in a loop."""
    target = HolleyStroock(2)
    n, steps, eta, seed = 30, 6, 0.1, 3
    out = sample(method, target, n, steps, eta, seed=seed, record_every=1, **kw_for(method))
    spec = samplers.METHODS[method]
    gen = make_generator(seed, "cpu")
    x0 = torch.randn((n, 2), generator=gen, dtype=F64)
    state = spec.init(x0, target)
    kernel = spec.build_kernel(target, eta, **kw_for(method))
    for k in range(1, steps + 1):
        state, _ = kernel(gen, state)
        assert torch.equal(out.trace[k], state.x)


# ----------------------------------------------------------------------------------------------
# 10. Bad inputs: ValueError naming the value, before any gradient evaluation
# ----------------------------------------------------------------------------------------------
BAD_CALLS = [
    # (description, method, overrides, regex that must appear in the message)
    ("step 0", "lmc", {"step_size": 0}, r"step_size.*\b0\b"),
    ("step 0.0", "plmc", {"step_size": 0.0, "K": 3}, r"step_size.*0\.0"),
    ("step negative", "rlmc", {"step_size": -0.1}, r"step_size.*-0\.1"),
    ("step nan", "mala", {"step_size": float("nan")}, r"step_size.*nan"),
    ("step inf", "lmc", {"step_size": float("inf")}, r"step_size.*inf"),
    ("step string", "lmc", {"step_size": "0.1"}, r"step_size.*'0\.1'"),
    ("step bool", "lmc", {"step_size": True}, r"step_size.*True"),
    ("K=0", "plmc", {"K": 0}, r"K.*\b0\b"),
    ("K=-1", "plmc_ref", {"K": -1}, r"K.*-1"),
    ("K=2.5", "plmc", {"K": 2.5}, r"K.*2\.5"),
    ("K=True", "plmc", {"K": True}, r"K.*True"),
    ("K missing", "plmc", {}, r"K.*None"),
    ("K missing ref", "plmc_ref", {}, r"K.*None"),
    ("K to lmc", "lmc", {"K": 3}, r"takes no K.*3"),
    ("K to rlmc", "rlmc", {"K": 3}, r"takes no K.*3"),
    ("K to mala", "mala", {"K": 1}, r"takes no K.*1"),
    ("unknown method", "ulmcc", {}, r"unknown method 'ulmcc'"),
    ("n_chains 0", "lmc", {"n_chains": 0}, r"n_chains.*\b0\b"),
    ("n_chains -3", "lmc", {"n_chains": -3}, r"n_chains.*-3"),
    ("n_chains 2.0", "lmc", {"n_chains": 2.0}, r"n_chains.*2\.0"),
    ("n_steps -1", "lmc", {"n_steps": -1}, r"n_steps.*-1"),
    ("record_every 0", "lmc", {"record_every": 0}, r"record_every.*\b0\b"),
    ("x0 wrong shape", "lmc", {"x0": torch.zeros(4, 3, dtype=F64)}, r"x0.*\[4, 3\]"),
    ("x0 wrong dim", "plmc", {"x0": torch.zeros(3, dtype=F64), "K": 2}, r"x0.*\[3\]"),
    ("x0 float32", "lmc", {"x0": torch.zeros(8, 2, dtype=torch.float32)}, r"x0.*float32"),
    ("x0 nan", "lmc", {"x0": torch.full((8, 2), float("nan"), dtype=F64)}, r"x0.*non-finite"),
    ("x0 list", "lmc", {"x0": [[0.0, 0.0]] * 8}, r"x0.*list"),
    ("dtype int", "lmc", {"dtype": torch.int64}, r"dtype.*int64"),
    ("device nonsense", "lmc", {"device": "nonsense"}, r"device.*nonsense"),
]


@pytest.mark.parametrize("desc,method,overrides,pattern", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_rejected_before_any_work_with_a_message_naming_it(desc, method, overrides, pattern):
    target = CountingTarget(Gaussian.isotropic(2))
    args = dict(n_chains=8, n_steps=3, step_size=0.1)
    args.update(overrides)
    with pytest.raises(ValueError, match=pattern):
        sample(method, target, **args)
    assert target.grad_shapes == [] and target.potential_shapes == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_is_a_value_error():
    target = CountingTarget(Gaussian.isotropic(2))
    with pytest.raises(ValueError, match=r"'cuda'"):
        sample("lmc", target, 8, 3, 0.1, device="cuda")
    assert target.grad_shapes == []


def test_step_functions_reject_bad_step_size_and_K():
    target = Gaussian.isotropic(2)
    gen = make_generator(0, "cpu")
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"step_size.*-1"):
        lmc.step(gen, lmc.init(x), target, -1)
    with pytest.raises(ValueError, match=r"step_size.*nan"):
        rlmc.step(gen, rlmc.init(x), target, float("nan"))
    with pytest.raises(ValueError, match=r"step_size.*\b0\b"):
        mala.step(gen, mala.init(x, target), target, 0)
    for fn in (plmc.step, plmc.step_reference):
        with pytest.raises(ValueError, match=r"K.*\b0\b"):
            fn(gen, plmc.init(x), target, 0.1, 0)
        with pytest.raises(ValueError, match=r"K.*None"):
            fn(gen, plmc.init(x), target, 0.1, None)
    with pytest.raises(ValueError, match=r"takes no K.*3"):
        exact_law("lmc", target, 2, 0.1, K=3)
    with pytest.raises(ValueError, match=r"unstable"):
        stationary_law("lmc", target, 2.5)


# ----------------------------------------------------------------------------------------------
# 11. Divergence is flagged, warned about, and never raises
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lmc", "plmc", "plmc_ref", "rlmc"])
def test_a_step_far_beyond_two_over_L_diverges_every_chain_with_a_warning(method):
    target = Gaussian.rotated(3, kappa=10, seed=0)
    eta = 1000.0 / target.smoothness  # |1 - eta lambda_max| ~ 1000: overflow in ~100 steps
    with pytest.warns(RuntimeWarning, match=r"10 of 10 chains diverged"):
        out = sample(method, target, 10, 200, eta, seed=1, **kw_for(method))
    assert out.diverged.shape == (10,) and out.diverged.all()
    assert out.n_diverged == 10
    assert not torch.isfinite(out.x).all(dim=1).any()


def test_mala_rejects_non_finite_proposals_instead_of_diverging():
    target = Gaussian.rotated(3, kappa=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sample("mala", target, 10, 50, 1e6, seed=1)
    assert not out.diverged.any() and torch.isfinite(out.x).all()
    assert float(out.acceptance.max()) < 0.2


@pytest.mark.parametrize("method", ["lmc", "plmc", "plmc_ref", "rlmc"])
def test_only_the_chains_that_blow_up_are_flagged(method):
    """DoubleWell (∇F ~ 8 t^3): at eta = 0.01 a chain near the wells is stable (it would need
    |t| > 2.9, where the potential is ~110 above the wells), one started at t = 50 overflows."""
    target = DoubleWell(2)
    n = 400
    far = torch.zeros(n, dtype=torch.bool)
    far[::7] = True
    x0 = torch.where(far[:, None], torch.tensor([50.0, 0.5], dtype=F64), torch.tensor([1.0, -1.0], dtype=F64))
    with pytest.warns(RuntimeWarning, match=rf"{int(far.sum())} of {n} chains diverged"):
        out = sample(method, target, n, 30, 0.01, x0=x0, seed=2, **kw_for(method))
    assert torch.equal(out.diverged, far)
    assert torch.isfinite(out.x[~far]).all()
    assert not torch.isfinite(out.x[far]).all(dim=1).any()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_stable_run_emits_no_warning(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sample(method, Gaussian.isotropic(2), 100, 20, 0.1, seed=0, **kw_for(method))
    assert out.n_diverged == 0


# ----------------------------------------------------------------------------------------------
# 12. record_every, trace bookkeeping, callback
# ----------------------------------------------------------------------------------------------
PER_STEP = {"lmc": 1, "rlmc": 2, "mala": 1}


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("n_steps,every,expected_steps", [(10, 3, [0, 3, 6, 9, 10]), (10, 5, [0, 5, 10]),
                                                         (4, 10, [0, 4]), (0, 2, [0])])
def test_record_every_trace_and_cumulative_grad_evals(method, n_steps, every, expected_steps):
    n, d = 40, 3
    calls = []
    out = sample(method, HolleyStroock(d), n, n_steps, 0.1, seed=4, record_every=every,
                 callback=lambda k, state, info: calls.append((k, info.grad_evals.clone())), **kw_for(method))
    R = len(expected_steps)
    assert out.trace_steps == expected_steps
    assert out.trace.shape == (R, n, d) and out.trace_grad_evals.shape == (R, n)
    assert torch.equal(out.trace[-1], out.x)
    assert torch.equal(out.trace_grad_evals[-1], out.grad_evals)
    start = 1 if method == "mala" else 0
    assert (out.trace_grad_evals[0] == start).all()
    assert (out.trace_grad_evals.diff(dim=0) >= 0).all()
    # the callback: once per step, in order, and its counts add up to the cumulative ones
    assert [k for k, _ in calls] == list(range(1, n_steps + 1))
    cum = torch.full((n,), start, dtype=torch.int64)
    by_step = {0: cum.clone()}
    for k, g in calls:
        cum = cum + g
        by_step[k] = cum.clone()
    for r, k in enumerate(expected_steps):
        assert torch.equal(out.trace_grad_evals[r], by_step[k])
        if method in PER_STEP:
            assert (out.trace_grad_evals[r] == start + PER_STEP[method] * k).all()
        else:
            assert (out.trace_grad_evals[r] >= k).all() and (out.trace_grad_evals[r] <= K_OF[method] * k).all()
    if n_steps == 0:
        assert torch.equal(out.x, out.trace[0])


def test_no_trace_without_record_every():
    out = sample("lmc", Gaussian.isotropic(2), 5, 3, 0.1)
    assert out.trace is None and out.trace_grad_evals is None and out.trace_steps == []
    assert out.settings["method"] == "lmc" and out.settings["n_steps"] == 3


# ----------------------------------------------------------------------------------------------
# 13. Properties over random settings (hypothesis)
# ----------------------------------------------------------------------------------------------
@given(d=st.integers(1, 6), n=st.integers(1, 12), steps=st.integers(0, 4),
       K=st.one_of(st.integers(1, 30), st.sampled_from([1000, 10**6])),
       frac=st.floats(0.05, 0.95), seed=st.integers(0, 2**31 - 1))
def test_property_plmc_counts_shapes_and_finiteness(d, n, steps, K, frac, seed):
    kappa = 1.0 if d == 1 else 10.0
    base = Gaussian.rotated(d, kappa=kappa, seed=seed % 1000)
    eta = frac / base.smoothness
    for method in ("plmc", "plmc_ref") if K <= 30 else ("plmc",):
        target = CountingTarget(base)
        out = sample(method, target, n, steps, eta, K=K, seed=seed)
        assert out.x.shape == (n, d) and out.x.dtype == F64
        assert out.grad_evals.shape == (n,) and out.diverged.shape == (n,)
        assert torch.isfinite(out.x).all() and not out.diverged.any()
        assert (out.grad_evals >= steps).all() and (out.grad_evals <= K * steps).all()
        assert target.grad_rows == int(out.grad_evals.sum())
        assert all(len(s) == 2 and s[1] == d for s in target.grad_shapes)
        if K == 1:
            assert torch.equal(out.x, sample("lmc", base, n, steps, eta, seed=seed).x)


@given(method=st.sampled_from(ALL_METHODS), d=st.integers(1, 5), n=st.integers(1, 10),
       steps=st.integers(0, 5), frac=st.floats(0.05, 0.9), seed=st.integers(0, 2**31 - 1),
       every=st.one_of(st.none(), st.integers(1, 6)))
def test_property_every_method_shapes_counts_and_determinism(method, d, n, steps, frac, seed, every):
    base = HolleyStroock(d)
    eta = frac / base.smoothness
    target = CountingTarget(base)
    out = sample(method, target, n, steps, eta, seed=seed, record_every=every, **kw_for(method))
    assert out.x.shape == (n, d) and torch.isfinite(out.x).all()
    assert out.grad_evals.dtype == torch.int64 and out.grad_evals.shape == (n,)
    assert target.grad_rows == int(out.grad_evals.sum())
    if method in PER_STEP:
        assert (out.grad_evals == (method == "mala") + PER_STEP[method] * steps).all()
    if every is not None:
        R = len(out.trace_steps)
        assert out.trace.shape == (R, n, d)
        assert out.trace_steps[0] == 0 and out.trace_steps[-1] == steps
    again = sample(method, base, n, steps, eta, seed=seed, **kw_for(method))
    assert torch.equal(out.x, again.x) and torch.equal(out.grad_evals, again.grad_evals)


class _IdentityGradient(Gaussian):
    """N(0, I) whose gradient is returned as the input tensor itself (no copy), as a user's
    ``grad_potential = lambda x: x`` would: the samplers must never write into it."""

    def grad_potential(self, x):
        return x


@pytest.mark.parametrize("method,params", [("lmc", {}), ("plmc", {"K": 1}), ("plmc", {"K": 7}),
                                           ("plmc", {"K": 10**6}), ("plmc_ref", {"K": 5}), ("rlmc", {}),
                                           ("mala", {})])
def test_a_step_never_writes_into_its_input_state_even_when_the_gradient_aliases_it(method, params):
    target = Gaussian.isotropic(3)
    target.__class__ = _IdentityGradient
    reference = Gaussian.isotropic(3)
    spec = samplers.METHODS[method]
    x = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    out = {}
    for name, t in (("aliasing", target), ("plain", reference)):
        state = spec.init(x, t)
        out[name], _ = spec.build_kernel(t, 0.1, **params)(make_generator(4, "cpu"), state)
    assert torch.equal(x, x_before)
    assert torch.equal(out["aliasing"].x, out["plain"].x)  # the same step as with a copied gradient

"""Property tests (hypothesis) on the bias of the samplers, over generated Gaussian targets.

A generated target is ``N(m, Q diag(1/lam) Q^T)``: dimension 1..4, precision eigenvalues
``lam`` with the largest ``L`` in ``[0.5, 4]`` and the others anywhere down to ``L / 16``, a
Haar rotation ``Q`` from a drawn seed and a mean with entries in ``[-5, 5]``.  Step sizes are
``eta = frac / L`` with ``frac`` inside the range where every method's moment recursion is
stable (``frac <= 0.9``; PLMC's second moments blow up for ``frac`` a little above 1 at large
``K``).  Everything random in a test (chains, starts) is seeded from the drawn example, so an
example is reproducible; under the default "ci" profile the examples themselves are
derandomized (the same every run), ``HYPOTHESIS_PROFILE=deep`` explores fresh ones.

What is checked, on the real samplers (``samplers.sample``) and the exact moment recursions
(``metrics.exact_laws``):

1. the exact mean and covariance after ``n`` steps agree with Monte Carlo of the samplers;
2. stationary bias ordering: PLMC with ``K ~ 1/eta`` and RLMC below LMC (exact recursions at
   small steps, and the real samplers at moderate steps where the gaps are resolvable);
3. LMC's bias grows with the step size; PLMC(``eta``, ``K``)'s bias is LMC(``eta/K``)'s up to a
   second-order term that does not grow with ``K``, and falls as ``K`` grows;
4. equivariance: rotating and translating the target and the start together rotates and
   translates the law (exact laws, the samplers in law, and translations path by path);
5. ``K = 1`` identities, evaluation counts, seed reproducibility, finite output for valid input;
6. the underdamped samplers' exact (position, velocity) recursions agree with Monte Carlo.

Statistical tolerances: each Monte Carlo comparison is a z-test whose standard error is
estimated from the samples themselves; with ``m`` comparisons in one example the threshold is
the Bonferroni normal quantile at family-wise level ``1e-6`` (``z`` about 5.3 to 5.8), so a
correct implementation fails an example with probability below ``1e-6``.

The bias of a law in eigen-direction ``k`` is measured as the relative variance error
``r_k = lam_k Var_k - 1``.  Closed forms behind the thresholds (per direction, ``x = eta lam_k``):
LMC ``r = x / (2 - x)``; PLMC(``eta``, ``K``) ``r = r_LMC(eta/K) + x^2 (2K-1)(K-1) / (6K^2) + O(x^3)``
(so ``0 <= r_PLMC - r_LMC(eta/K) <= x^2/3 (1 + 4x)`` for ``x <= 1/2`` and every ``K``); RLMC
``r = O(x^3)``.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import samplers
from metrics.exact_laws import exact_law, one_step_coefficients, stationary_law
from targets import Gaussian, HolleyStroock, random_rotation

F64 = torch.float64
EXACT_METHODS = ("lmc", "plmc", "plmc_ref", "rlmc")
ALL_METHODS = EXACT_METHODS + ("mala",)
FAMILY_ALPHA = 1e-6  # family-wise false-alarm rate of one example's z-tests

# The ci profile derandomizes these tests (the same examples every run, so a statistical
# assertion cannot flake in CI); the deep profile draws new examples every run.
_DEEP = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "deep"
randomized = settings(derandomize=not _DEEP)


# ----------------------------------------------------------------------------------------------
# strategies and helpers
# ----------------------------------------------------------------------------------------------
@st.composite
def gaussian_targets(draw, max_dim: int = 4, max_spread: float = 16.0):
    """``N(m, Q diag(1/lam) Q^T)`` with ``max(lam) = L in [0.5, 4]``, ``lam >= L / max_spread``."""
    d = draw(st.integers(1, max_dim))
    L = draw(st.floats(0.5, 4.0))
    fractions = draw(st.lists(st.floats(0.0, 1.0), min_size=d - 1, max_size=d - 1))
    lam = np.array([L] + [L * max_spread ** (-f) for f in fractions])
    q = random_rotation(d, draw(st.integers(0, 2**31 - 1)))
    mean = draw(st.lists(st.floats(-5.0, 5.0), min_size=d, max_size=d))
    return Gaussian.from_eigen(torch.from_numpy(1.0 / lam), q, torch.tensor(mean, dtype=F64))


def precision_spectrum(target) -> np.ndarray:
    """Precision eigenvalues ``lam`` in the order of ``target.eigenvectors``' columns."""
    return 1.0 / target.cov_eigenvalues.numpy()


def relative_variance_errors(target, cov: np.ndarray) -> np.ndarray:
    """``r_k = lam_k v_k^T cov v_k - 1`` along the target's eigenvectors ``v_k``."""
    V = target.eigenvectors.numpy()
    return precision_spectrum(target) * np.einsum("ik,ij,jk->k", V, cov, V) - 1.0


def bonferroni_z(m: int) -> float:
    """Two-sided normal threshold for ``m`` comparisons at family-wise level ``FAMILY_ALPHA``."""
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * m)))


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().to(F64).numpy()


def assert_moments_match(x: np.ndarray, mean: np.ndarray, cov: np.ndarray, what: str) -> None:
    """Sample mean and covariance entries against exact values, z-tests with empirical SEs.

    The covariance is checked through ``E[(x_i - m_i)(x_j - m_j)] = cov_ij`` centred at the
    EXACT mean, an unbiased sample mean of products whose SE is its sample sd / sqrt(n).
    """
    n, d = x.shape
    c = x - mean
    iu = np.triu_indices(d)
    prods = c[:, iu[0]] * c[:, iu[1]]
    est = np.concatenate([c.mean(0), prods.mean(0)])
    se = np.concatenate([c.std(0, ddof=1), prods.std(0, ddof=1)]) / math.sqrt(n)
    exact = np.concatenate([np.zeros(d), cov[iu]])
    z = bonferroni_z(est.size)
    dev = np.abs(est - exact)
    bad = dev > z * se + 1e-12
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {est.size} moments off by more than {z:.2f} SE; worst "
        f"|z| = {float(np.max(dev / np.maximum(se, 1e-300))):.2f} (estimates {est[bad]}, exact {exact[bad]})"
    )


def assert_same_moments(x: np.ndarray, y: np.ndarray, what: str) -> None:
    """Two independent samples have the same mean and second moments (two-sample z-tests)."""
    n, d = x.shape
    iu = np.triu_indices(d)
    center = y.mean(0)  # a common fixed centring keeps the comparison of second moments linear

    def stats_of(a):
        c = a - center
        f = np.concatenate([c, c[:, iu[0]] * c[:, iu[1]]], axis=1)
        return f.mean(0), f.std(0, ddof=1) / math.sqrt(a.shape[0])

    mx, sx = stats_of(x)
    my, sy = stats_of(y)
    se = np.sqrt(sx**2 + sy**2)
    z = bonferroni_z(mx.size)
    dev = np.abs(mx - my)
    bad = dev > z * se + 1e-12
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {mx.size} moments differ by more than {z:.2f} SE; worst "
        f"|z| = {float(np.max(dev / np.maximum(se, 1e-300))):.2f}"
    )


def k_of(method: str, K):
    return {"K": K} if method.startswith("plmc") else {}


class CountingTarget:
    """Wraps a target and counts the rows at which its gradient is evaluated."""

    def __init__(self, base):
        self.base = base
        self.dim = base.dim
        self.grad_rows = 0

    def to(self, device=None, dtype=None):
        self.base = self.base.to(device=device, dtype=dtype)
        return self

    def grad_potential(self, x):
        self.grad_rows += x.shape[0]
        return self.base.grad_potential(x)

    def potential(self, x):
        return self.base.potential(x)

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def device(self):
        return self.base.device


methods_with_K = st.one_of(
    st.tuples(st.sampled_from(["lmc", "rlmc"]), st.none()),
    st.tuples(st.just("plmc"), st.one_of(st.integers(1, 64), st.sampled_from([1000, 10**6]))),
    st.tuples(st.just("plmc_ref"), st.integers(1, 12)),
)
seeds = st.integers(0, 2**31 - 1)


# ----------------------------------------------------------------------------------------------
# 1. exact moment recursions == Monte Carlo of the real samplers
# ----------------------------------------------------------------------------------------------
@randomized
@given(target=gaussian_targets(), K=st.one_of(st.integers(1, 64), st.sampled_from([1000, 10**6])),
       K_ref=st.integers(1, 12), frac=st.floats(0.05, 0.9), n_steps=st.integers(1, 6),
       start=st.sampled_from(["standard", "point", "target"]), radius=st.floats(3.0, 10.0),
       direction=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4), seed=seeds)
def test_exact_moment_recursions_agree_with_monte_carlo(target, K, K_ref, frac, n_steps, start, radius, direction,
                                                        seed):
    """After 1..6 steps from N(0, I), a point, or the target itself, the chains' sample mean
    and covariance equal ``exact_law``'s within Bonferroni z-tests (20 000 chains), for LMC,
    RLMC, PLMC (``K`` up to 1e6) and the K-loop PLMC.

    A point start far from the mean (3 to 10 away) makes the variance that the random
    coefficients (PLMC's ``H``, RLMC's ``u``) add, ``Var(coefficient) (x - m)^2``, the leading
    term, so the terms of the recursions that come from that randomness are tested sharply."""
    d, n = target.dim, 20_000
    eta = frac / precision_spectrum(target).max()
    gen = torch.Generator().manual_seed(seed)
    if start == "standard":  # sample()'s default start and exact_law's default start law
        x0, law0 = None, {}
    elif start == "point":
        u = torch.tensor(direction[:d], dtype=F64)
        u = u / u.norm() if u.norm() > 1e-3 else torch.ones(d, dtype=F64) / math.sqrt(d)
        p = target.mean + radius * u
        x0, law0 = p, dict(mean0=p, cov0=torch.zeros(d, d, dtype=F64))
    else:
        x0, law0 = target.sample(n, gen), dict(mean0=target.mean, cov0=target.cov)
    for i, (method, k) in enumerate((("lmc", None), ("rlmc", None), ("plmc", K), ("plmc_ref", K_ref))):
        out = samplers.sample(method, target, n, n_steps, eta, x0=x0, seed=seed + 1 + i, **k_of(method, k))
        law = exact_law(method, target, n_steps, eta, K=k, **law0)
        assert not out.diverged.any()
        assert_moments_match(to_np(out.x), law.means[-1], law.covs[-1],
                             f"{method} K={k} frac={frac:.3g} steps={n_steps} start={start} d={d}")


@randomized
@given(target=gaussian_targets(max_dim=3), K=st.one_of(st.integers(1, 32), st.sampled_from([1000, 10**6])),
       K_ref=st.integers(1, 8), frac=st.floats(0.05, 0.9), friction=st.floats(0.5, 4.0),
       n_steps=st.integers(1, 5), seed=seeds)
def test_underdamped_exact_recursions_agree_with_monte_carlo(target, K, K_ref, frac, friction, n_steps, seed):
    """The (position, velocity) law of ULMC, RULMC, PULMC (``K`` up to 1e6) and the K-loop PULMC
    after 1..5 steps from the default start (x ~ N(0, I), v ~ N(0, I)): the joint mean and
    covariance of the 2d-vector ``(x, v)`` equal ``exact_law``'s within Bonferroni z-tests
    (20 000 chains).  Steps ``eta = frac / L`` with ``friction >= 0.5`` stay inside the
    stable range of the frozen-gradient integrator (it needs ``friction`` above about ``L eta / 2``)."""
    d, n = target.dim, 20_000
    eta = frac / precision_spectrum(target).max()
    for i, (method, k) in enumerate((("ulmc", None), ("rulmc", None), ("pulmc", K), ("pulmc_ref", K_ref))):
        kw = {"K": k} if k is not None else {}
        out = samplers.sample(method, target, n, n_steps, eta, seed=seed + 1 + i, friction=friction, **kw)
        law = exact_law(method, target, n_steps, eta, K=k, friction=friction)
        assert not out.diverged.any()
        joint = np.concatenate([to_np(out.x), to_np(out.v)], axis=1)
        mean = np.concatenate([law.means[-1], law.v_means[-1]])
        c = law.cross_covs[-1]
        cov = np.block([[law.covs[-1], c], [c.T, law.v_covs[-1]]])
        assert_moments_match(joint, mean, cov,
                             f"{method} K={k} frac={frac:.3g} friction={friction:.3g} steps={n_steps} d={d}")


@randomized
@given(target=gaussian_targets(), frac=st.floats(0.05, 0.9), n_steps=st.integers(1, 6), seed=seeds)
def test_mala_started_at_the_target_keeps_the_target_moments(target, frac, n_steps, seed):
    """MALA has no linear moment recursion, but it leaves the target exactly invariant: its
    exact law after any number of steps from the target is the target."""
    n = 20_000
    x0 = target.sample(n, torch.Generator().manual_seed(seed))
    eta = frac / precision_spectrum(target).max()
    out = samplers.sample("mala", target, n, n_steps, eta, x0=x0, seed=seed + 1)
    assert_moments_match(to_np(out.x), target.mean.numpy(), target.cov.numpy(),
                         f"mala frac={frac:.3g} steps={n_steps} d={target.dim}")


# ----------------------------------------------------------------------------------------------
# 2-3. stationary bias: ordering and its dependence on eta and K (exact recursions)
# ----------------------------------------------------------------------------------------------
def _r(method, target, eta, K=None) -> np.ndarray:
    mean, cov = stationary_law(method, target, eta, K)
    np.testing.assert_allclose(mean, target.mean.numpy(), rtol=0, atol=1e-12)  # no mean bias
    return relative_variance_errors(target, cov)


@randomized
@given(target=gaussian_targets(), frac=st.floats(0.01, 0.5))
def test_stationary_bias_plmc_with_K_about_one_over_eta_is_below_lmc(target, frac):
    """``K = ceil(1/(eta L))``: in every eigen-direction ``|r_PLMC| < |r_LMC|``.

    Leading orders (module docstring): ``r_LMC ~ x/2`` against ``r_PLMC ~ x/(2K) + x^2/3 <=
    (5/6) x eta L``, so the ordering holds with room to spare for ``eta L <= 1/2``."""
    lam = precision_spectrum(target)
    eta = frac / lam.max()
    K = math.ceil(1.0 / frac - 1e-12)
    r_lmc, r_plmc = _r("lmc", target, eta), _r("plmc", target, eta, K)
    assert (r_lmc > 0).all()
    assert (np.abs(r_plmc) < r_lmc).all(), (frac, K, r_plmc, r_lmc)
    # and the gain grows as the step shrinks: |r_PLMC| / r_LMC <= (5/3) eta L (1 + eta L)
    assert (np.abs(r_plmc) / r_lmc <= 5.0 / 3.0 * frac * (1.0 + frac)).all(), (frac, K, r_plmc / r_lmc)


@randomized
@given(target=gaussian_targets(), frac=st.floats(0.01, 0.9))
def test_stationary_bias_rlmc_is_below_lmc_and_third_order(target, frac):
    """``|r_RLMC| < |r_LMC|`` per direction, and ``|r_RLMC| <= x^3`` (third order in the step)."""
    lam = precision_spectrum(target)
    eta = frac / lam.max()
    r_lmc, r_rlmc = _r("lmc", target, eta), _r("rlmc", target, eta)
    assert (np.abs(r_rlmc) < r_lmc).all(), (frac, r_rlmc, r_lmc)
    x = eta * lam
    assert (np.abs(r_rlmc) <= x**3 + 1e-13).all(), (frac, r_rlmc, x**3)


@randomized
@given(target=gaussian_targets(), f1=st.floats(0.01, 0.9), f2=st.floats(0.01, 0.9))
def test_stationary_bias_of_lmc_grows_with_the_step_size(target, f1, f2):
    """``r_LMC`` is increasing in ``eta`` in every direction, and equals ``x/(2-x)``."""
    assume(abs(f1 - f2) > 1e-3)
    lo, hi = sorted((f1, f2))
    L = precision_spectrum(target).max()
    r_lo, r_hi = _r("lmc", target, lo / L), _r("lmc", target, hi / L)
    assert (r_lo < r_hi).all(), (lo, hi, r_lo, r_hi)
    x = hi / L * precision_spectrum(target)
    np.testing.assert_allclose(r_hi, x / (2.0 - x), rtol=1e-9, atol=1e-13)


@randomized
@given(target=gaussian_targets(), frac=st.floats(0.01, 0.5),
       Ks=st.lists(st.one_of(st.integers(1, 200), st.sampled_from([1000, 10**4])), min_size=2, max_size=5,
                   unique=True))
def test_stationary_bias_of_plmc_tracks_lmc_at_eta_over_K(target, frac, Ks):
    """PLMC(``eta``, ``K``)'s bias is LMC(``eta/K``)'s plus a second-order term that does not
    grow with ``K``:  ``0 <= r_PLMC(eta, K) - r_LMC(eta/K) <= x^2/3 (1 + 4x)`` (equality at
    ``K = 1``), a vanishing fraction ``<= 1.25 x`` of what LMC(``eta``) loses against
    LMC(``eta/K``); and it falls as ``K`` grows (for ``eta L <= 0.3``, where the ``1/K`` term
    dominates the second-order one)."""
    lam = precision_spectrum(target)
    eta = frac / lam.max()
    x = eta * lam
    r_lmc = _r("lmc", target, eta)
    prev = None
    for K in sorted(Ks):
        r_p = _r("plmc", target, eta, K)
        y = x / K
        r_ref = y / (2.0 - y)  # LMC(eta/K) in closed form (stationary_law would lose digits at tiny steps)
        gap = r_p - r_ref
        assert (gap >= -1e-12).all() and (gap <= x**2 / 3.0 * (1.0 + 4.0 * x) + 1e-12).all(), (K, frac, gap, x)
        if K == 1:
            np.testing.assert_allclose(r_p, r_lmc, rtol=1e-12, atol=1e-14)
        else:
            assert (gap <= 1.25 * x * (r_lmc - r_ref)).all(), (K, frac, gap, r_lmc - r_ref)
        if prev is not None and frac <= 0.3:
            assert (r_p <= prev + 1e-14).all(), (K, frac, r_p, prev)
        prev = r_p


@st.composite
def well_conditioned_targets(draw):
    """Condition number <= 3, so that a run of ~20 steps at eta L ~ 1/2 reaches stationarity."""
    return draw(gaussian_targets(max_dim=3, max_spread=3.0))


@settings(randomized, max_examples=max(5, settings.default.max_examples // 3))
@given(target=well_conditioned_targets(), frac=st.floats(0.4, 0.6), seed=seeds)
def test_real_samplers_stationary_bias_ordering(target, frac, seed):
    """The same orderings, measured on the real samplers (100 000 chains started at the target,
    run for a time ``T`` with ``T lam_min >= 3``, where the law is stationary up to ``e^{-6}``).

    Statistic: the Mahalanobis second moment ``q = E[(x-m)^T A (x-m)] - d = sum_k r_k`` (+ mean
    terms), unbiasedly estimated by a sample mean.  Asserted, each beyond Bonferroni z:
    ``q_RLMC < q_LMC(eta)``, ``q_PLMC(eta, K) < q_LMC(eta)`` (``K = ceil(1/(eta L))``),
    ``q_LMC(eta/K) < q_LMC(eta)`` (bias grows with the step), and
    ``|q_PLMC(eta, K) - q_LMC(eta/K)| < q_LMC(eta) - q_LMC(eta/K)`` (PLMC sits on LMC(eta/K)'s
    side); and every ``q`` agrees with the exact recursion's value."""
    lam = precision_spectrum(target)
    L, d, n = lam.max(), target.dim, 100_000
    eta = frac / L
    K = math.ceil(1.0 / frac - 1e-12)
    n_steps = math.ceil(3.0 / (lam.min() * eta))
    x0 = target.sample(n, torch.Generator().manual_seed(seed))
    A, m = target.precision.numpy(), target.mean.numpy()
    runs = {"lmc": ("lmc", n_steps, eta, None), "lmc_fine": ("lmc", n_steps * K, eta / K, None),
            "plmc": ("plmc", n_steps, eta, K), "rlmc": ("rlmc", n_steps, eta, None)}
    q, se = {}, {}
    for i, (name, (method, steps, h, kk)) in enumerate(runs.items()):
        out = samplers.sample(method, target, n, steps, h, x0=x0, seed=seed + 1 + i, **k_of(method, kk))
        c = to_np(out.x) - m
        v = np.einsum("ni,ij,nj->n", c, A, c) - d
        q[name], se[name] = v.mean(), v.std(ddof=1) / math.sqrt(n)
        law = exact_law(method, target, steps, h, K=kk, mean0=target.mean, cov0=target.cov)
        mu = law.means[-1] - m
        q_exact = float(np.trace(A @ law.covs[-1]) + mu @ A @ mu) - d
        z = bonferroni_z(8)
        assert abs(q[name] - q_exact) <= z * se[name], (name, q[name], q_exact, se[name])

    def below(a, b):  # a < b beyond noise (x0 is shared, so the SE of the difference is
        # bounded by the sum of the SEs whatever the correlation)
        return q[b] - q[a] > bonferroni_z(8) * (se[a] + se[b])

    assert below("rlmc", "lmc"), q
    assert below("plmc", "lmc"), q
    assert below("lmc_fine", "lmc"), q
    gap_p = abs(q["plmc"] - q["lmc_fine"])
    assert q["lmc"] - q["lmc_fine"] - gap_p > bonferroni_z(8) * (se["lmc"] + 2 * se["lmc_fine"] + se["plmc"]), q


# ----------------------------------------------------------------------------------------------
# 4. equivariance under rotations and translations
# ----------------------------------------------------------------------------------------------
def transformed(target, Q: torch.Tensor, c: torch.Tensor):
    """The target pushed forward by ``x -> Q x + c``."""
    V = Q @ target.eigenvectors
    return Gaussian.from_eigen(target.cov_eigenvalues, V, Q @ target.mean + c)


@st.composite
def rigid_motions(draw, d):
    Q = random_rotation(d, draw(seeds))
    if draw(st.booleans()):  # include reflections
        Q = Q.clone()
        Q[:, 0] = -Q[:, 0]
    c = torch.tensor(draw(st.lists(st.floats(-10.0, 10.0), min_size=d, max_size=d)), dtype=F64)
    return Q, c


@randomized
@given(data=st.data(), target=gaussian_targets(), mk=methods_with_K, frac=st.floats(0.05, 0.9),
       n_steps=st.integers(1, 8))
def test_exact_law_is_equivariant_under_rotation_and_translation(data, target, mk, frac, n_steps):
    """``exact_law`` of the moved target from the moved start = the moved ``exact_law``."""
    method, K = mk
    d = target.dim
    Q, c = data.draw(rigid_motions(d))
    moved = transformed(target, Q, c)
    mean0 = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=d, max_size=d)), dtype=F64)
    B = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d)), dtype=F64).view(d, d)
    cov0 = B @ B.T + 0.1 * torch.eye(d, dtype=F64)
    eta = frac / precision_spectrum(target).max()
    a = exact_law(method, target, n_steps, eta, K=K, mean0=mean0, cov0=cov0)
    b = exact_law(method, moved, n_steps, eta, K=K, mean0=Q @ mean0 + c, cov0=Q @ cov0 @ Q.T)
    Qn, cn = Q.numpy(), c.numpy()
    scale = 1.0 + np.abs(a.covs[-1]).max()
    np.testing.assert_allclose(b.means[-1], Qn @ a.means[-1] + cn, rtol=0, atol=1e-9 * (1 + np.abs(cn).max()))
    np.testing.assert_allclose(b.covs[-1], Qn @ a.covs[-1] @ Qn.T, rtol=0, atol=1e-9 * scale)


@randomized
@given(data=st.data(), target=gaussian_targets(), method=st.sampled_from(ALL_METHODS),
       K=st.integers(1, 20), frac=st.floats(0.05, 0.9), n_steps=st.integers(1, 6), seed=seeds)
def test_samplers_are_equivariant_in_law_under_rotation_and_translation(data, target, method, K, frac,
                                                                        n_steps, seed):
    """Chains on the moved target from the moved start, moved back, have the law of the
    original chains (two independent runs, two-sample z-tests on means and second moments).
    Holds for every method, MALA included (no exact law needed)."""
    d, n = target.dim, 20_000
    Q, c = data.draw(rigid_motions(d))
    moved = transformed(target, Q, c)
    x0 = target.mean + torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=d, max_size=d)), dtype=F64)
    eta = frac / precision_spectrum(target).max()
    kw = k_of(method, K)
    a = samplers.sample(method, target, n, n_steps, eta, x0=x0, seed=seed, **kw)
    b = samplers.sample(method, moved, n, n_steps, eta, x0=Q @ x0 + c, seed=seed + 1, **kw)
    back = (b.x - c) @ Q  # Q^T (x - c), row-wise
    assert_same_moments(to_np(back), to_np(a.x), f"{method} K={K} d={d} frac={frac:.3g} steps={n_steps}")


@randomized
@given(data=st.data(), target=gaussian_targets(), method=st.sampled_from(ALL_METHODS),
       K=st.one_of(st.integers(1, 20), st.just(10**6)), frac=st.floats(0.05, 0.9), n_steps=st.integers(1, 10),
       seed=seeds)
def test_translating_target_and_start_translates_every_path(data, target, method, K, frac, n_steps, seed):
    """A translation changes no random draw, so with the same seed each chain is the original
    chain translated (to rounding), and the evaluation counts are identical."""
    if method == "plmc_ref":
        K = min(K, 20)
    d, n = target.dim, 64
    c = torch.tensor(data.draw(st.lists(st.floats(-10.0, 10.0), min_size=d, max_size=d)), dtype=F64)
    moved = transformed(target, torch.eye(d, dtype=F64), c)
    x0 = target.mean + torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    eta = frac / precision_spectrum(target).max()
    kw = k_of(method, K)
    a = samplers.sample(method, target, n, n_steps, eta, x0=x0, seed=seed, **kw)
    b = samplers.sample(method, moved, n, n_steps, eta, x0=x0 + c, seed=seed, **kw)
    assert torch.equal(a.grad_evals, b.grad_evals)
    if method == "mala":
        assert torch.equal(a.acceptance, b.acceptance)
    scale = 1.0 + float(c.abs().max()) + float(target.mean.abs().max())
    torch.testing.assert_close(b.x - c, a.x, rtol=0, atol=1e-9 * scale)


# ----------------------------------------------------------------------------------------------
# 5. K = 1, evaluation counts, reproducibility, finiteness
# ----------------------------------------------------------------------------------------------
@randomized
@given(target=gaussian_targets(), frac=st.floats(0.01, 0.9), n_steps=st.integers(0, 8), seed=seeds)
def test_plmc_with_K_equal_one_is_lmc(target, frac, n_steps, seed):
    """PLMC(``eta``, 1) is LMC(``eta``): the same chains bit for bit (both engines), the same
    exact law, the same stationary law and the same one-step coefficients."""
    eta = frac / precision_spectrum(target).max()
    ref = samplers.sample("lmc", target, 50, n_steps, eta, seed=seed)
    for method in ("plmc", "plmc_ref"):
        out = samplers.sample(method, target, 50, n_steps, eta, K=1, seed=seed)
        assert torch.equal(out.x, ref.x), method
        assert torch.equal(out.grad_evals, ref.grad_evals), method
    lam = precision_spectrum(target)
    for u, v in zip(one_step_coefficients("plmc", lam, eta, 1), one_step_coefficients("lmc", lam, eta)):
        np.testing.assert_allclose(u, v, rtol=1e-14, atol=1e-15)
    a, b = exact_law("plmc", target, n_steps, eta, K=1), exact_law("lmc", target, n_steps, eta)
    np.testing.assert_allclose(a.covs, b.covs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.means, b.means, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stationary_law("plmc", target, eta, 1)[1], stationary_law("lmc", target, eta)[1],
                               rtol=1e-12, atol=1e-14)


@randomized
@given(target=gaussian_targets(), mk=methods_with_K | st.tuples(st.just("mala"), st.none()),
       frac=st.floats(0.05, 0.9), n_steps=st.integers(0, 8), n=st.integers(1, 300), seed=seeds)
def test_evaluation_counts(target, mk, frac, n_steps, n, seed):
    """Counts are what each chain really evaluated: LMC 1 per step, RLMC 2, MALA 1 + 1 per step,
    PLMC 1 + Binomial(K-1, 1/K) per step (between 1 and K, mean 2 - 1/K: z-test with the exact
    binomial variance); the target sees exactly ``sum(grad_evals)`` gradient rows."""
    method, K = mk
    eta = frac / precision_spectrum(target).max()
    counting = CountingTarget(target)
    out = samplers.sample(method, counting, n, n_steps, eta, seed=seed, **k_of(method, K))
    g = out.grad_evals
    assert g.dtype == torch.int64 and g.shape == (n,)
    assert counting.grad_rows == int(g.sum())
    if method == "lmc":
        assert (g == n_steps).all()
    elif method == "rlmc":
        assert (g == 2 * n_steps).all()
    elif method == "mala":
        assert (g == 1 + n_steps).all()
    else:
        assert (g >= n_steps).all() and (g <= K * n_steps).all()
        extra = (g - n_steps).double()
        trials = n_steps * (K - 1)
        mean, var = trials / K, trials * (1 / K) * (1 - 1 / K)
        if var > 0:
            z = abs(float(extra.mean()) - mean) / math.sqrt(var / n)
            assert z <= bonferroni_z(1), (K, n_steps, float(extra.mean()), mean)
        else:
            assert (extra == 0).all()


@randomized
@given(target=gaussian_targets(), method=st.sampled_from(ALL_METHODS), K=st.integers(2, 30),
       frac=st.floats(0.05, 0.9), n_steps=st.integers(1, 6), seed=seeds)
def test_seeds_reproduce_bit_for_bit_and_different_seeds_differ(target, method, K, frac, n_steps, seed):
    eta = frac / precision_spectrum(target).max()
    kw = k_of(method, K)
    a = samplers.sample(method, target, 40, n_steps, eta, seed=seed, **kw)
    b = samplers.sample(method, target, 40, n_steps, eta, seed=seed, **kw)
    c = samplers.sample(method, target, 40, n_steps, eta, seed=seed + 1, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.grad_evals, b.grad_evals)
    # with other noise (and another default start) essentially every chain moves elsewhere
    assert (a.x != c.x).any(dim=1).all()


@randomized
@given(target=gaussian_targets(), method=st.sampled_from(ALL_METHODS),
       K=st.one_of(st.integers(1, 50), st.sampled_from([10**4, 10**9])), frac=st.floats(1e-8, 0.9),
       n_steps=st.integers(1, 30), far=st.floats(0.0, 1e3), dtype=st.sampled_from([F64, torch.float32]),
       separable=st.booleans(), seed=seeds)
def test_valid_input_never_gives_non_finite_output(target, method, K, frac, n_steps, far, dtype, separable, seed):
    """Stable step sizes (Gaussian ``eta L <= 0.9``; Holley–Stroock ``eta L <= 0.9``), starts
    up to 1000 away, ``K`` up to 1e9, float32 or float64: every chain stays finite, none is
    flagged, no warning is raised, and the exact law (Gaussians) is finite too."""
    if method == "plmc_ref":
        K = min(K, 50)
    tgt = HolleyStroock(target.dim) if separable else target
    L = tgt.smoothness
    eta = frac / L
    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(25, tgt.dim, generator=gen, dtype=F64) * far).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = samplers.sample(method, tgt, 25, n_steps, eta, x0=x0, seed=seed, dtype=dtype, **k_of(method, K))
    assert out.x.dtype == dtype
    assert torch.isfinite(out.x).all() and not out.diverged.any()
    if not separable and method != "mala":
        law = exact_law(method, target, n_steps, eta, K=K if method.startswith("plmc") else None,
                        mean0=x0[0].to(F64), cov0=torch.zeros(target.dim, target.dim, dtype=F64))
        assert np.isfinite(law.means).all() and np.isfinite(law.covs).all()


def test_stable_range_used_above_is_stable_for_every_K():
    """The step sizes the properties use (``eta lam <= 0.9``) keep every method's moment
    recursion stable for every ``K``: ``|a| < 1`` and ``F_kk < 1`` (direct check on a grid),
    while slightly beyond it PLMC's is not (so the bound is not vacuous)."""
    x = np.linspace(1e-4, 0.9, 400)
    for method, Ks in (("lmc", [None]), ("rlmc", [None]), ("plmc", [1, 2, 3, 5, 10, 100, 10**4, 10**6])):
        for K in Ks:
            a, F, _ = one_step_coefficients(method, x, 1.0, K)
            assert (np.abs(a) < 1).all() and (np.diag(F) < 1).all(), (method, K)
    a, F, _ = one_step_coefficients("plmc", np.array([1.5]), 1.0, 10**6)
    assert F[0, 0] >= 1.0
    with pytest.raises(ValueError, match="unstable"):
        stationary_law("plmc", Gaussian.isotropic(2), 1.5, 10**6)

"""Tests of `targets`: every formula against an independent oracle.

Oracles: torch.autograd (gradients, Hessians), scipy.stats (Gaussian and mixture densities,
normal CDF/quantile, KS test), scipy.integrate.quad on potentials re-written here in numpy
(normalisers, CDFs, moments, LSI inequalities), closed forms (Gumbel law, mixture moments,
Gaussian LSI equality case) and numpy eigen-decompositions (spectra, constants).

Statistical tests use fixed seeds and tolerances of 5 standard errors (or a KS p-value
threshold of 1e-3), so they fail only when the code is wrong.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

import targets
from targets import (
    TARGET_NAMES,
    DoubleWell,
    Gaussian,
    GaussianMixture,
    HolleyStroock,
    LogisticRegression,
    MarginalQuadrature,
    SeparableTarget,
    Target,
    check_points,
    make_target,
    random_rotation,
)

F64 = torch.float64
HYP = settings(max_examples=20, deadline=None, derandomize=True)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def gen(seed: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def autograd_grad(target: Target, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(target.potential(x).sum(), x)
    return g


def random_points(n, d, seed=0, scale=2.0, dtype=F64):
    return scale * torch.randn((n, d), generator=gen(seed), dtype=dtype)


def random_spd(d: int, seed: int, spread: float = 10.0) -> torch.Tensor:
    """A random SPD matrix with eigenvalues in [1/spread, 1] and a random basis."""
    g = gen(seed)
    q, _ = torch.linalg.qr(torch.randn((d, d), generator=g, dtype=F64))
    lam = spread ** (-torch.rand(d, generator=g, dtype=F64))
    c = (q * lam) @ q.T
    return 0.5 * (c + c.T)


def all_targets(dim=3):
    """One instance of every registry target (ring is 2-D)."""
    return {n: make_target(n, dim=2 if n == "ring" else dim) for n in TARGET_NAMES}


def assert_mean_cov_within_se(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, z: float = 5.0):
    """Sample mean/covariance of ``x`` within ``z`` standard errors of the exact values.

    SE of the mean from the exact covariance; SE of each covariance entry from the sample's
    own fourth moments, ``sd((x_i - m_i)(x_j - m_j)) / sqrt(n)``.
    """
    x = x.to(F64)
    mean, cov = mean.to(F64), cov.to(F64)
    n = x.shape[0]
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() <= z * se_mean).all(), (x.mean(0), mean, se_mean)
    y = x - mean  # exact mean: the product average is unbiased for cov
    prods = y[:, :, None] * y[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    err = (prods.mean(0) - cov).abs()
    assert (err <= z * se_cov).all(), (err / se_cov).max()


# numpy versions of the 1-D potentials, written independently of the package
def v_hs(t, s, c, w):
    return t * t / (2 * s * s) + c * np.cos(w * t)


def v_dw(t, b, a):
    return b * ((t / a) ** 2 - 1) ** 2


def quad_all(f, **kw):
    val, _ = integrate.quad(f, -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=1000, **kw)
    return val


# ---------------------------------------------------------------------------------------------
# the common contract, on every registry target
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_contract_shapes_dtypes_and_reproducible_sampling(name):
    t = make_target(name, dim=2 if name == "ring" else 3)
    assert isinstance(t, Target) and isinstance(t.name, str) and t.name
    x = random_points(7, t.dim)
    assert t.potential(x).shape == (7,) and t.potential(x).dtype == F64
    assert t.grad_potential(x).shape == (7, t.dim) and t.grad_potential(x).dtype == F64
    torch.testing.assert_close(t.score(x), -t.grad_potential(x))
    r = repr(t)
    assert r.startswith(type(t).__name__ + "(") and len(r) < 120
    for const in (t.strong_convexity, t.smoothness, t.lsi_constant):
        assert const is None or (isinstance(const, float) and const > 0)
    if t.has_sampler:
        a, b = t.sample(11, gen(3)), t.sample(11, gen(3))
        assert a.shape == (11, t.dim) and a.dtype == F64
        assert torch.equal(a, b), "same seed must give the same samples"
        assert not torch.equal(a, t.sample(11, gen(4)))
        assert t.sample(0, gen(0)).shape == (0, t.dim)
        assert t.mean.shape == (t.dim,) and t.cov.shape == (t.dim, t.dim)
    else:
        with pytest.raises(NotImplementedError):
            t.sample(3, gen(0))
        assert t.mean is None and t.cov is None


@pytest.mark.parametrize("name", TARGET_NAMES)
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_grad_potential_matches_autograd(name, dim):
    if name == "ring" and dim != 2:
        pytest.skip("ring is 2-D")
    kappa = 30.0 if name.startswith("gaussian") and dim > 1 else 1.0
    t = make_target(name, dim=dim, kappa=kappa)
    x = random_points(16, dim, seed=dim)
    torch.testing.assert_close(t.grad_potential(x), autograd_grad(t, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_check_points_rejects_bad_input(name):
    t = make_target(name, dim=2 if name == "ring" else 3)
    for bad in (torch.zeros(4, t.dim + 1, dtype=F64), torch.zeros(t.dim, dtype=F64),
                torch.zeros(4, t.dim, dtype=torch.int64), np.zeros((4, t.dim))):
        with pytest.raises(ValueError):
            t.potential(bad)
        with pytest.raises(ValueError):
            t.grad_potential(bad)
    with pytest.raises(ValueError):
        check_points([[0.0, 1.0]], 2)


@pytest.mark.parametrize("name", ["gaussian", "mixture", "logistic"])
def test_dtype_mismatch_is_a_clear_error(name):
    t = make_target(name, dim=3)
    with pytest.raises(ValueError, match="dtype"):
        t.potential(torch.zeros(2, 3, dtype=torch.float32))


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_float32_round_trip(name):
    t64 = make_target(name, dim=2 if name == "ring" else 3)
    assert t64.to() is t64 and t64.to(device="cpu", dtype=F64) is t64
    t32 = t64.to(dtype=torch.float32)
    assert t32 is not t64 and t32.dtype == torch.float32 and t64.dtype == F64
    for field in t64._tensor_fields:  # the original is untouched, the copy converted
        assert getattr(t64, field).dtype in (F64, torch.int64)
        if getattr(t64, field).is_floating_point():
            assert getattr(t32, field).dtype == torch.float32
    x = random_points(9, t64.dim, scale=1.0)
    f64, f32 = t64.potential(x), t32.potential(x.float())
    g64, g32 = t64.grad_potential(x), t32.grad_potential(x.float())
    assert f32.dtype == torch.float32 and g32.dtype == torch.float32
    tol = 1e-4 * (1.0 + f64.abs().max().item())
    assert (f32.double() - f64).abs().max() <= tol
    assert (g32.double() - g64).abs().max() <= 1e-4 * (1.0 + g64.abs().max().item())
    if t64.has_sampler:
        s = t32.sample(5, gen(0))
        assert s.dtype == torch.float32 and torch.isfinite(s).all()
        assert t32.mean.dtype == torch.float32 and t32.cov.dtype == torch.float32
    back = t32.to(dtype=F64)
    for field in t64._tensor_fields:
        torch.testing.assert_close(getattr(back, field), getattr(t64, field), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_device_round_trip(name, device):
    t = make_target(name, dim=2 if name == "ring" else 3).to(device=device)
    assert t.device.type == device
    x = random_points(4, t.dim).to(device)
    assert t.potential(x).device.type == device and t.grad_potential(x).device.type == device
    if t.has_sampler:
        s = t.sample(6, gen(1, device))
        assert s.device.type == device and s.dtype == F64
        assert t.mean.device.type == device and t.cov.device.type == device
    back = t.to(device="cpu")
    assert back.device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------------
@HYP
@given(d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_gaussian_log_prob_and_grad_against_scipy_and_autograd(d, seed):
    cov = random_spd(d, seed)
    mean = torch.randn(d, generator=gen(seed + 1), dtype=F64)
    g = Gaussian(mean, cov)
    x = random_points(8, d, seed=seed + 2)
    ref = stats.multivariate_normal(mean.numpy(), cov.numpy()).logpdf(x.numpy()).reshape(-1)
    np.testing.assert_allclose(g.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-10)
    # potential is unnormalised but its differences are exact log-density differences
    np.testing.assert_allclose((g.potential(x) - g.potential(x[:1])).numpy(), -(ref - ref[0]), atol=1e-9)
    assert abs(g.potential(mean[None]).item()) < 1e-14
    torch.testing.assert_close(g.grad_potential(x), autograd_grad(g, x), rtol=1e-10, atol=1e-10)


def test_gaussian_fields_and_constants():
    cov = random_spd(5, 7, spread=50.0)
    g = Gaussian(torch.arange(5.0, dtype=F64), cov.tolist())  # lists are accepted too
    eye = torch.eye(5, dtype=F64)
    torch.testing.assert_close(g.precision @ cov, eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(g.cov_cholesky @ g.cov_cholesky.T, cov, atol=1e-12, rtol=0)
    assert torch.equal(g.cov_cholesky, torch.tril(g.cov_cholesky))
    v, lam = g.eigenvectors, g.cov_eigenvalues
    torch.testing.assert_close((v * lam) @ v.T, cov, atol=1e-12, rtol=0)
    lam_np = np.linalg.eigvalsh(cov.numpy())
    assert g.strong_convexity == pytest.approx(1 / lam_np.max(), rel=1e-12)
    assert g.lsi_constant == pytest.approx(1 / lam_np.max(), rel=1e-12)
    assert g.smoothness == pytest.approx(1 / lam_np.min(), rel=1e-12)
    assert g.condition_number == pytest.approx(lam_np.max() / lam_np.min(), rel=1e-12)
    assert g.log_normalizer == pytest.approx(0.5 * np.linalg.slogdet(2 * np.pi * cov.numpy())[1], rel=1e-12)
    iso = Gaussian.isotropic(4, variance=2.0, mean=[1.0, 2.0, 3.0, 4.0])
    assert iso.strong_convexity == iso.smoothness == iso.lsi_constant == 0.5
    torch.testing.assert_close(iso.cov, 2.0 * torch.eye(4, dtype=F64))
    torch.testing.assert_close(iso.mean, torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64))


def test_gaussian_infers_dtype_and_device_from_tensors():
    g = Gaussian(torch.zeros(2), torch.eye(2))  # float32 tensors -> float32 target
    assert g.dtype == torch.float32
    assert Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).dtype == F64
    assert Gaussian(torch.zeros(2), torch.eye(2), dtype=F64).dtype == F64


@pytest.mark.parametrize("dim", [2, 5, 50])
@pytest.mark.parametrize("kappa", [1.0, 10.0, 1000.0])
def test_gaussian_factories_have_the_requested_condition_number(dim, kappa):
    diag = Gaussian.diagonal(dim, kappa)
    rot = Gaussian.rotated(dim, kappa, seed=3)
    expected = np.array([kappa ** (i / (dim - 1)) for i in range(dim)])
    for g in (diag, rot):
        prec = np.linalg.eigvalsh(g.precision.numpy())
        np.testing.assert_allclose(np.sort(prec), expected, rtol=1e-10)
        assert prec.max() / prec.min() == pytest.approx(kappa, rel=1e-10)
        assert g.smoothness / g.strong_convexity == pytest.approx(kappa, rel=1e-12)
        assert g.strong_convexity == pytest.approx(1.0, rel=1e-12)  # precision 1 is the small end
        torch.testing.assert_close(g.precision @ g.cov, torch.eye(dim, dtype=F64), atol=1e-9 * kappa, rtol=0)
    # diagonal: coordinate 0 has precision 1, the last precision kappa
    torch.testing.assert_close(diag.precision, torch.diag(torch.tensor(expected)), atol=1e-12, rtol=1e-12)
    # rotated: orthogonal eigenvectors
    v = rot.eigenvectors
    torch.testing.assert_close(v.T @ v, torch.eye(dim, dtype=F64), atol=1e-12, rtol=0)


def test_random_rotation_is_orthogonal_sign_fixed_and_seeded():
    q = random_rotation(6, seed=11)
    torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=F64), atol=1e-13, rtol=0)
    # it is the sign-fixed Q of the QR of the seeded Gaussian matrix: Q^T G upper triangular, diag > 0
    g = torch.randn((6, 6), generator=gen(11), dtype=F64)
    r = q.T @ g
    torch.testing.assert_close(torch.tril(r, -1), torch.zeros(6, 6, dtype=F64), atol=1e-12, rtol=0)
    assert (torch.diagonal(r) > 0).all()
    assert torch.equal(q, random_rotation(6, seed=11))
    assert not torch.allclose(q, random_rotation(6, seed=12))
    assert torch.equal(Gaussian.rotated(6, 10.0, seed=5).precision, Gaussian.rotated(6, 10.0, seed=5).precision)
    assert not torch.allclose(Gaussian.rotated(6, 10.0, seed=5).precision, Gaussian.rotated(6, 10.0, seed=6).precision)


def test_gaussian_sampler_matches_mean_and_cov():
    g = Gaussian.rotated(4, 10.0, seed=1, mean=[1.0, -2.0, 0.5, 3.0])
    n = 40_000
    x = g.sample(n, gen(0))
    se_mean = torch.sqrt(torch.diagonal(g.cov) / n)
    assert ((x.mean(0) - g.mean).abs() <= 5 * se_mean).all()
    # Gaussian SE of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    s = g.cov
    se_cov = torch.sqrt((torch.outer(torch.diagonal(s), torch.diagonal(s)) + s**2) / n)
    y = x - g.mean
    assert ((y.T @ y / n - s).abs() <= 5 * se_cov).all()


BAD_COVS = [
    ([[1.0, 0.5], [0.0, 1.0]], "symmetric"),
    ([[1.0, 2.0], [2.0, 1.0]], "positive definite.*-1"),  # eigenvalues 3 and -1
    ([[1.0, 0.0], [0.0, 0.0]], "positive definite.*smallest eigenvalue 0"),
    ([[1.0, 0.0], [0.0, 1e-20]], "singular"),
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "shape"),
    ([1.0, 1.0], "shape"),
    ([[1.0, float("nan")], [float("nan"), 1.0]], "finite"),
    ([[float("inf"), 0.0], [0.0, 1.0]], "finite"),
]


@pytest.mark.parametrize("cov,message", BAD_COVS)
def test_gaussian_rejects_bad_covariances(cov, message):
    with pytest.raises(ValueError, match=message):
        Gaussian([0.0, 0.0], cov)


def test_gaussian_accepts_rounding_asymmetry_and_symmetrises():
    c = torch.tensor([[2.0, 0.3], [0.3 + 1e-15, 1.0]], dtype=F64)
    g = Gaussian([0.0, 0.0], c)
    assert torch.equal(g.cov, g.cov.T)


@pytest.mark.parametrize(
    "call",
    [
        lambda: Gaussian([0.0, float("nan")], torch.eye(2)),
        lambda: Gaussian([[0.0, 0.0]], torch.eye(2)),
        lambda: Gaussian([], torch.eye(0)),
        lambda: Gaussian.isotropic(0),
        lambda: Gaussian.isotropic(2.5),
        lambda: Gaussian.isotropic(True),
        lambda: Gaussian.isotropic(3, variance=0.0),
        lambda: Gaussian.isotropic(3, variance=-1.0),
        lambda: Gaussian.isotropic(3, mean=[0.0, 0.0]),
        lambda: Gaussian.diagonal(3, 0.5),
        lambda: Gaussian.diagonal(3, float("inf")),
        lambda: Gaussian.diagonal(3, float("nan")),
        lambda: Gaussian.diagonal(1, 10.0),
        lambda: Gaussian.rotated(0, 10.0),
        lambda: Gaussian.rotated(3, 10.0, seed=-1),
        lambda: Gaussian.from_eigen([1.0, 2.0], [[1.0, 1.0], [0.0, 1.0]]),
        lambda: Gaussian.from_eigen([1.0, -2.0], torch.eye(2)),
    ],
)
def test_gaussian_rejects_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------------------------
# Gaussian mixtures
# ---------------------------------------------------------------------------------------------
def random_mixture(k=3, d=3, seed=0):
    g = gen(seed)
    w = torch.rand(k, generator=g, dtype=F64) + 0.2
    mu = 3.0 * torch.randn((k, d), generator=g, dtype=F64)
    covs = torch.stack([random_spd(d, seed + 10 + j, spread=5.0) for j in range(k)])
    return w, mu, covs


def scipy_mixture_logpdf(w, mu, covs, x):
    w = w / w.sum()
    terms = [np.log(w[j]) + stats.multivariate_normal(mu[j], covs[j]).logpdf(x) for j in range(len(w))]
    return special.logsumexp(np.stack(terms).reshape(len(w), -1), axis=0)


@HYP
@given(k=st.integers(1, 4), d=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_mixture_log_prob_and_grad_against_scipy_and_autograd(k, d, seed):
    w, mu, covs = random_mixture(k, d, seed)
    m = GaussianMixture(w, mu, covs)
    x = random_points(10, d, seed=seed + 1, scale=4.0)
    ref = scipy_mixture_logpdf(w.numpy(), mu.numpy(), covs.numpy(), x.numpy())
    np.testing.assert_allclose(m.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.potential(x).numpy(), -ref, rtol=1e-10, atol=1e-10)  # normalised
    torch.testing.assert_close(m.grad_potential(x), autograd_grad(m, x), rtol=1e-9, atol=1e-10)
    r = m.responsibilities(x)
    torch.testing.assert_close(r.sum(1), torch.ones(10, dtype=F64))


@pytest.mark.parametrize("factory", [lambda: GaussianMixture.bimodal(3), lambda: GaussianMixture(*random_mixture())])
def test_mixture_is_stable_far_from_the_modes(factory):
    m = factory()
    x = torch.tensor([[400.0] * m.dim, [-1e3] + [0.0] * (m.dim - 1)], dtype=F64)
    f, g = m.potential(x), m.grad_potential(x)
    assert torch.isfinite(f).all() and torch.isfinite(g).all()
    torch.testing.assert_close(g, autograd_grad(m, x), rtol=1e-9, atol=1e-9)
    # far away the nearest-in-Mahalanobis component dominates: F ~ quadratic of that component
    ref = scipy_mixture_logpdf(m.weights.numpy(), m.means.numpy(), m.covs.numpy(), x.numpy())
    np.testing.assert_allclose(f.numpy(), -ref, rtol=1e-12)


def test_mixture_sampler_moments_and_projection_ks():
    w, mu, covs = random_mixture(3, 3, seed=5)
    m = GaussianMixture(w, mu, covs)
    x = m.sample(40_000, gen(0))
    assert_mean_cov_within_se(x, m.mean, m.cov)
    # exact closed-form moments recomputed here with numpy
    wn = w.numpy() / w.numpy().sum()
    mean = wn @ mu.numpy()
    second = sum(wn[j] * (covs[j].numpy() + np.outer(mu[j], mu[j])) for j in range(3))
    np.testing.assert_allclose(m.mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(m.cov.numpy(), second - np.outer(mean, mean), atol=1e-10)
    # a 1-D projection of a mixture is the mixture of the projected Gaussians: exact CDF
    v = np.array([0.3, -0.5, 0.8])
    locs = mu.numpy() @ v
    scales = np.sqrt(np.einsum("i,kij,j->k", v, covs.numpy(), v))

    def cdf(t):
        return sum(wn[j] * stats.norm.cdf(t, locs[j], scales[j]) for j in range(3))

    assert stats.kstest(x.numpy()[:20_000] @ v, cdf).pvalue > 1e-3
    # power: the same samples against the wrong weights are rejected
    wrong = np.roll(wn, 1)
    def wrong_cdf(t):
        return sum(wrong[j] * stats.norm.cdf(t, locs[j], scales[j]) for j in range(3))

    assert stats.kstest(x.numpy()[:20_000] @ v, wrong_cdf).pvalue < 1e-6


def test_mixture_weights_are_normalised_and_validated():
    m = GaussianMixture([1.0, 3.0], [[0.0], [1.0]], [[[1.0]], [[2.0]]])
    torch.testing.assert_close(m.weights, torch.tensor([0.25, 0.75], dtype=F64))
    shared = GaussianMixture([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], torch.eye(2))  # one [d, d] cov shared
    assert shared.covs.shape == (2, 2, 2)
    ok_means, ok_covs = [[0.0], [1.0]], [[[1.0]], [[1.0]]]
    for w in ([0.0, 1.0], [-1.0, 2.0], [float("nan"), 1.0], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="weights"):
            GaussianMixture(w, ok_means, ok_covs)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([0.5, 0.5], [[0.0], [1.0], [2.0]], ok_covs)
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture([0.5, 0.5], ok_means, [[[1.0]], [[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="positive definite.*component 1"):
        GaussianMixture([0.5, 0.5], ok_means, [[[1.0]], [[-1.0]]])
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]])


@pytest.mark.parametrize("dim", [1, 2, 7])
def test_bimodal_geometry_and_closed_form_moments(dim):
    m = GaussianMixture.bimodal(dim, separation=5.0, sigma=0.7)
    u = torch.ones(dim, dtype=F64) / math.sqrt(dim)
    torch.testing.assert_close(m.means, torch.stack([2.5 * u, -2.5 * u]))
    assert torch.linalg.norm(m.means[0] - m.means[1]).item() == pytest.approx(5.0, rel=1e-14)
    torch.testing.assert_close(m.weights, torch.tensor([0.5, 0.5], dtype=F64))
    torch.testing.assert_close(m.mean, torch.zeros(dim, dtype=F64))
    torch.testing.assert_close(m.cov, 0.49 * torch.eye(dim, dtype=F64) + 6.25 * torch.outer(u, u))
    assert m.strong_convexity is None and m.smoothness is None and m.lsi_constant is None


def test_ring_geometry_and_closed_form_moments():
    m = GaussianMixture.ring(n_modes=8, radius=3.0, sigma=0.5)
    radii = torch.linalg.norm(m.means, dim=1)
    torch.testing.assert_close(radii, torch.full((8,), 3.0, dtype=F64))
    angles = torch.atan2(m.means[:, 1], m.means[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8, dtype=F64) * (2 * math.pi / 8), atol=1e-12, rtol=0)
    torch.testing.assert_close(m.mean, torch.zeros(2, dtype=F64), atol=1e-14, rtol=0)
    # n >= 3 equally spaced points on a circle: second moment (r^2/2) I
    torch.testing.assert_close(m.cov, (0.25 + 4.5) * torch.eye(2, dtype=F64))
    x = m.sample(20_000, gen(2))
    assert_mean_cov_within_se(x, m.mean, m.cov)
    with pytest.raises(ValueError):
        GaussianMixture.ring(n_modes=0)
    with pytest.raises(ValueError):
        GaussianMixture.bimodal(2, sigma=0.0)


# ---------------------------------------------------------------------------------------------
# separable targets and the 1-D quadrature engine
# ---------------------------------------------------------------------------------------------
SEPARABLE_CASES = [
    (lambda: HolleyStroock(2), lambda t: v_hs(t, 1.0, 1.0, 2.0)),
    (lambda: HolleyStroock(2, s=2.0, c=0.5, w=3.0), lambda t: v_hs(t, 2.0, 0.5, 3.0)),
    (lambda: HolleyStroock(2, s=0.5, c=-0.3, w=1.0), lambda t: v_hs(t, 0.5, -0.3, 1.0)),
    (lambda: DoubleWell(2), lambda t: v_dw(t, 2.0, 1.0)),
    (lambda: DoubleWell(2, barrier=6.0, scale=0.7), lambda t: v_dw(t, 6.0, 0.7)),
]


@pytest.mark.parametrize("make,v_np", SEPARABLE_CASES)
def test_separable_quadrature_against_scipy_quad(make, v_np):
    t = make()
    assert isinstance(t, SeparableTarget)
    z = quad_all(lambda s: np.exp(-v_np(s)))
    assert t.log_normalizer_1d == pytest.approx(np.log(z), abs=1e-10)
    for k in range(1, 5):
        mk = quad_all(lambda s: s**k * np.exp(-v_np(s))) / z
        assert t.marginal_moment(k) == pytest.approx(mk, rel=1e-10, abs=1e-12)
    var = t.marginal_moment(2) - t.marginal_moment(1) ** 2
    assert t.marginal_var == pytest.approx(var, rel=1e-10)
    torch.testing.assert_close(t.mean, torch.full((2,), t.marginal_moment(1), dtype=F64))
    torch.testing.assert_close(t.cov, var * torch.eye(2, dtype=F64))
    pts = np.linspace(-3.0, 3.0, 13)
    cdf_ref = np.array([integrate.quad(lambda s: np.exp(-v_np(s)), -np.inf, p, epsabs=0, epsrel=1e-13, limit=1000)[0]
                        for p in pts]) / z
    np.testing.assert_allclose(t.marginal_cdf(pts), cdf_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(t.marginal_pdf(pts), np.exp(-v_np(pts)) / z, rtol=1e-12)
    # log_prob is the exact normalised product density
    x = random_points(5, 2, scale=1.0)
    ref = -v_np(x.numpy()).sum(1) - 2 * np.log(z)
    np.testing.assert_allclose(t.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-10)


def test_holley_stroock_without_perturbation_is_exactly_gaussian():
    s = 1.3
    t = HolleyStroock(3, s=s, c=0.0)
    u = np.concatenate([np.logspace(-8, -1, 30), np.linspace(0.01, 0.99, 199), 1 - np.logspace(-8, -1, 30)])
    np.testing.assert_allclose(t.marginal_quantile(u), stats.norm.ppf(u, scale=s), atol=1e-7, rtol=0)
    grid = np.linspace(-12 * s, 12 * s, 4001)
    np.testing.assert_allclose(t.marginal_cdf(grid), stats.norm.cdf(grid, scale=s), atol=1e-12, rtol=0)
    np.testing.assert_allclose(t.marginal_pdf(grid), stats.norm.pdf(grid, scale=s), atol=1e-15, rtol=1e-12)
    assert t.log_normalizer_1d == pytest.approx(0.5 * np.log(2 * np.pi * s * s), abs=1e-13)
    for k, mk in enumerate([1.0, 0.0, s**2, 0.0, 3 * s**4, 0.0, 15 * s**6]):
        assert t.marginal_moment(k) == pytest.approx(mk, rel=1e-12, abs=1e-14)
    assert t.strong_convexity == t.smoothness == t.lsi_constant == pytest.approx(1 / s**2)
    assert t.log_concave


def test_quadrature_engine_on_an_asymmetric_closed_form_gumbel():
    # V(t) = t + exp(-t): p(t) = exp(-t - e^{-t}) is the standard Gumbel law (Z = 1)
    q = MarginalQuadrature(lambda t: t + torch.exp(-t))
    assert q.log_normalizer == pytest.approx(0.0, abs=1e-13)
    assert q.mean == pytest.approx(np.euler_gamma, rel=1e-12)
    assert q.var == pytest.approx(np.pi**2 / 6, rel=1e-12)
    grid = np.linspace(-3.0, 20.0, 2001)
    np.testing.assert_allclose(q.cdf(grid), stats.gumbel_r.cdf(grid), atol=1e-12, rtol=0)
    u = np.linspace(1e-6, 1 - 1e-6, 501)
    np.testing.assert_allclose(q.quantile(u), stats.gumbel_r.ppf(u), atol=1e-8, rtol=0)
    assert q.interpolation_error <= 1e-12


def test_quadrature_refines_panels_until_the_self_check_passes():
    # a strongly oscillating density needs more than the default 2^14 panels
    t = HolleyStroock(1, s=2.0, c=3.0, w=5.0)
    q = t.quadrature
    assert q.n_panels > 2**14 and q.interpolation_error <= 1e-12
    pts = np.linspace(-4.0, 4.0, 9)
    v = lambda s: v_hs(s, 2.0, 3.0, 5.0)  # noqa: E731
    lim = dict(epsabs=0, epsrel=1e-13, limit=2000)
    z = integrate.quad(lambda s: np.exp(-v(s)), -30, 30, **lim)[0]
    ref = np.array([integrate.quad(lambda s: np.exp(-v(s)), -30, p, **lim)[0] for p in pts]) / z
    np.testing.assert_allclose(t.marginal_cdf(pts), ref, atol=1e-10, rtol=0)


def test_quadrature_engine_rejects_non_normalisable_potentials():
    with pytest.raises(ValueError, match="normalisable"):
        MarginalQuadrature(lambda t: 0.0 * t)
    with pytest.raises(ValueError, match="normalisable"):
        MarginalQuadrature(lambda t: -t * t)
    with pytest.raises(ValueError, match="NaN"):
        MarginalQuadrature(lambda t: torch.full_like(t, math.nan))


@pytest.mark.parametrize("make", [lambda: HolleyStroock(1), lambda: DoubleWell(1, barrier=4.0)])
def test_separable_cdf_quantile_round_trips_and_edge_cases(make):
    t = make()
    grid = np.linspace(-4.0, 4.0, 4001)
    cdf = t.marginal_cdf(grid)
    assert np.all(np.diff(cdf) >= 0)
    keep = t.marginal_pdf(grid) > 1e-6
    np.testing.assert_allclose(t.marginal_quantile(cdf[keep]), grid[keep], atol=1e-9, rtol=0)
    u = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(t.marginal_cdf(t.marginal_quantile(u)), u, atol=1e-14, rtol=0)
    assert t.marginal_cdf(-1e6) == 0.0 and t.marginal_cdf(1e6) == 1.0
    assert np.isnan(t.marginal_quantile(np.array([-0.1, 1.1]))).all()
    assert np.isnan(t.marginal_cdf(np.array([np.nan]))).all()


def test_separable_marginals_return_the_kind_they_are_given():
    t = HolleyStroock(2)
    for f in (t.marginal_pdf, t.marginal_cdf, t.marginal_quantile):
        a = f(np.array([0.2, 0.4]))
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (2,)
        b = f(torch.tensor([[0.2, 0.4]], dtype=torch.float32))
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float32 and b.shape == (1, 2)
        np.testing.assert_allclose(b.numpy()[0], a, rtol=1e-6)
        assert isinstance(f(0.3), float)
    assert isinstance(t.marginal_moment(2), float)


def independent_cdf(v_np, lo=-15.0, hi=15.0, n=300_001):
    """A CDF built here from ``V`` alone: cumulative Simpson on a fine grid, linear interpolation."""
    grid = np.linspace(lo, hi, n)
    dens = np.exp(-(v_np(grid) - v_np(grid).min()))
    cum = integrate.cumulative_simpson(dens, x=grid, initial=0.0)
    cum /= cum[-1]
    return lambda t: np.interp(t, grid, cum)


@pytest.mark.parametrize(
    "make,v_np",
    [
        (lambda: DoubleWell(4), lambda t: v_dw(t, 2.0, 1.0)),
        (lambda: HolleyStroock(4), lambda t: v_hs(t, 1.0, 1.0, 2.0)),
        (lambda: HolleyStroock(4, s=2.0, c=0.5, w=3.0), lambda t: v_hs(t, 2.0, 0.5, 3.0)),
    ],
)
def test_separable_samples_pass_ks_and_match_moments(make, v_np):
    t = make()
    x = t.sample(5_000, gen(0))
    flat = x.reshape(-1).numpy()  # 20,000 iid coordinates
    oracle = independent_cdf(v_np)
    np.testing.assert_allclose(t.marginal_cdf(np.linspace(-5, 5, 101)), oracle(np.linspace(-5, 5, 101)), atol=1e-8)
    assert stats.kstest(flat, oracle).pvalue > 1e-3
    assert stats.kstest(flat, t.marginal_cdf).pvalue > 1e-3
    assert_mean_cov_within_se(x, t.mean, t.cov)
    # power: the same coordinates against another target's marginal are rejected
    other = HolleyStroock(1, s=1.0, c=0.0)
    assert stats.kstest(flat, other.marginal_cdf).pvalue < 1e-6


@HYP
@given(
    s=st.floats(0.3, 3.0), c=st.floats(-2.0, 2.0), w=st.floats(0.0, 4.0),
    b=st.floats(0.1, 8.0), a=st.floats(0.3, 3.0), seed=st.integers(0, 1000),
)
def test_separable_gradients_match_autograd(s, c, w, b, a, seed):
    x = random_points(6, 3, seed=seed)
    for t in (HolleyStroock(3, s=s, c=c, w=w), DoubleWell(3, barrier=b, scale=a)):
        torch.testing.assert_close(t.grad_potential(x), autograd_grad(t, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("s,c,w", [(1.0, 1.0, 2.0), (1.0, 0.2, 2.0), (2.0, 0.05, 1.5), (0.7, -0.5, 3.0)])
def test_holley_stroock_curvature_constants(s, c, w):
    t = HolleyStroock(1, s=s, c=c, w=w)
    grid = torch.linspace(-10, 10, 200_001, dtype=F64)
    # V'' by double autograd, an oracle independent of the closed forms
    g = grid.clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(t.potential_1d(g).sum(), g, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), g)
    assert t.smoothness == pytest.approx(d2.abs().max().item(), rel=1e-6)
    log_concave = d2.min().item() >= 0
    assert t.log_concave == log_concave == (abs(c) * w * w * s * s <= 1)
    if log_concave:
        assert t.strong_convexity == pytest.approx(d2.min().item(), rel=1e-6)
    else:
        assert t.strong_convexity is None
    assert t.lsi_constant == pytest.approx(math.exp(-2 * abs(c)) / s**2)


def test_holley_stroock_default_is_non_log_concave_and_bimodal():
    t = HolleyStroock(2)
    assert not t.log_concave and t.strong_convexity is None
    assert (t.s, t.c, t.w) == (1.0, 1.0, 2.0)
    p = t.marginal_pdf(np.array([0.0, 1.2372]))
    assert p[0] < p[1]  # a local minimum of the density at 0, modes near +-1.24


def _entropy_and_energy(v_np, f, df, half_width=40.0):
    """``Ent(f^2)`` and ``E f'^2`` under ``exp(-V)/Z`` by quad on ``[-40, 40]`` (mass outside < e^-300)."""

    def integral(h):
        val, _ = integrate.quad(lambda s: h(s) * np.exp(-v_np(s)), -half_width, half_width,
                                epsabs=0, epsrel=1e-12, limit=1000, points=[0.0])
        return val

    z = integral(lambda s: 1.0)

    def e(h):
        return integral(h) / z

    ef2 = e(lambda s: f(s) ** 2)
    ent = e(lambda s: f(s) ** 2 * np.log(f(s) ** 2)) - ef2 * np.log(ef2)
    return ent, e(lambda s: df(s) ** 2)


TEST_FUNCTIONS = [
    (lambda s: np.exp(0.7 * s), lambda s: 0.7 * np.exp(0.7 * s)),
    (lambda s: np.exp(-0.3 * s), lambda s: -0.3 * np.exp(-0.3 * s)),
    (lambda s: 1.5 + np.tanh(2 * s), lambda s: 2 / np.cosh(2 * s) ** 2),
    (lambda s: 1.2 + np.sin(3 * s), lambda s: 3 * np.cos(3 * s)),
    (lambda s: np.exp(s**2 / 8), lambda s: s / 4 * np.exp(s**2 / 8)),
]


@pytest.mark.parametrize("s,c,w", [(1.0, 1.0, 2.0), (1.5, 0.5, 3.0)])
def test_holley_stroock_lsi_bound_holds_for_test_functions(s, c, w):
    t = HolleyStroock(1, s=s, c=c, w=w)
    alpha = t.lsi_constant
    for f, df in TEST_FUNCTIONS:
        ent, energy = _entropy_and_energy(lambda x: v_hs(x, s, c, w), f, df)
        assert ent <= (2 / alpha) * energy * (1 + 1e-9)
    # LSI implies Poincare with the same constant: Var(t) <= 1/alpha
    assert t.marginal_var <= 1 / alpha


def test_lsi_convention_is_tight_on_the_gaussian():
    # N(0, s^2): alpha = 1/s^2 and f = exp(a t) attains Ent(f^2) = (2/alpha) E f'^2
    s = 1.3
    t = HolleyStroock(1, s=s, c=0.0)
    ent, energy = _entropy_and_energy(lambda x: v_hs(x, s, 0.0, 1.0), lambda x: np.exp(0.4 * x), lambda x: 0.4 * np.exp(0.4 * x))
    assert ent == pytest.approx((2 / t.lsi_constant) * energy, rel=1e-9)


def test_double_well_constants_and_shape():
    t = DoubleWell(3, barrier=3.0, scale=1.5)
    assert t.strong_convexity is None and t.smoothness is None and t.lsi_constant is None
    v = t.potential_1d(torch.tensor([0.0, 1.5, -1.5], dtype=F64))
    torch.testing.assert_close(v, torch.tensor([3.0, 0.0, 0.0], dtype=F64))  # barrier height, minima at +-scale
    p = t.marginal_pdf(np.array([0.0, 1.5]))
    assert p[1] / p[0] == pytest.approx(math.exp(3.0))


@pytest.mark.parametrize(
    "call",
    [
        lambda: DoubleWell(0), lambda: DoubleWell(2, barrier=0.0), lambda: DoubleWell(2, barrier=-1.0),
        lambda: DoubleWell(2, scale=0.0), lambda: DoubleWell(2, barrier=float("nan")),
        lambda: HolleyStroock(0), lambda: HolleyStroock(2, s=0.0), lambda: HolleyStroock(2, s=-1.0),
        lambda: HolleyStroock(2, c=float("inf")), lambda: HolleyStroock(2, w=float("nan")),
        lambda: HolleyStroock(2).sample(-1, gen(0)),
    ],
)
def test_separable_rejects_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------------------------
# logistic regression
# ---------------------------------------------------------------------------------------------
def test_logistic_potential_gradient_and_hessian_against_independent_formulas():
    t = LogisticRegression(4, n_data=60, prior_var=2.0, seed=3)
    x, y = t.data_x.numpy(), t.data_y.numpy()
    theta = random_points(7, 4, seed=1)
    z = theta.numpy() @ x.T
    ref = (np.logaddexp(0.0, z) - y * z).sum(1) + (theta.numpy() ** 2).sum(1) / 4.0
    np.testing.assert_allclose(t.potential(theta).numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(t.grad_potential(theta), autograd_grad(t, theta), rtol=1e-10, atol=1e-10)
    for i in range(3):
        h = torch.autograd.functional.hessian(lambda th: t.potential(th[None])[0], theta[i])
        torch.testing.assert_close(t.hessian_potential(theta[i : i + 1])[0], h, rtol=1e-10, atol=1e-10)


def test_logistic_hessian_spectrum_within_the_constants():
    t = LogisticRegression(5, n_data=80, prior_var=0.5, seed=0)
    lam = np.linalg.eigvalsh(t.data_x.numpy().T @ t.data_x.numpy())
    assert t.smoothness == pytest.approx(1 / 0.5 + lam.max() / 4, rel=1e-12)
    assert t.strong_convexity == t.lsi_constant == 1 / 0.5
    thetas = torch.cat([random_points(20, 5, seed=4, scale=3.0), torch.zeros(1, 5, dtype=F64)])
    for th in thetas:
        h = torch.autograd.functional.hessian(lambda v: t.potential(v[None])[0], th)
        e = torch.linalg.eigvalsh(h)
        assert e.min().item() >= t.strong_convexity * (1 - 1e-12)
        assert e.max().item() <= t.smoothness * (1 + 1e-12)
    # at theta = 0 every sigmoid' is exactly 1/4: the smoothness bound is attained
    e0 = torch.linalg.eigvalsh(t.hessian_potential(torch.zeros(1, 5, dtype=F64))[0])
    assert e0.max().item() == pytest.approx(t.smoothness, rel=1e-12)


def test_logistic_data_are_seeded_and_follow_the_model():
    a, b = LogisticRegression(6, n_data=50, seed=9), LogisticRegression(6, n_data=50, seed=9)
    for f in ("data_x", "data_y", "theta_true"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    c = LogisticRegression(6, n_data=50, seed=10)
    assert not torch.equal(a.data_x, c.data_x)
    assert a.data_x.shape == (50, 6) and a.data_y.shape == (50,) and a.theta_true.shape == (6,)
    assert set(a.data_y.unique().tolist()) <= {0.0, 1.0}
    # larger data set for the statistical checks of the generating model
    t = LogisticRegression(4, n_data=20_000, seed=1)
    n = t.n_data * t.dim
    sd = t.data_x.std().item()
    assert abs(sd - 0.5) <= 5 * 0.5 / math.sqrt(2 * n)  # x_scale = 1/sqrt(d) = 0.5
    p = torch.sigmoid(t.data_x @ t.theta_true)
    se = torch.sqrt((p * (1 - p)).sum()).item()
    assert abs((t.data_y - p).sum().item()) <= 5 * se


def test_logistic_extreme_logits_are_stable():
    t = LogisticRegression(3, n_data=40, seed=0)
    theta = torch.tensor([[1e4, -1e4, 3e3], [-1e5, 0.0, 1e5]], dtype=F64)
    f, g = t.potential(theta), t.grad_potential(theta)
    assert torch.isfinite(f).all() and torch.isfinite(g).all()
    z = theta.numpy() @ t.data_x.numpy().T
    ref = (np.logaddexp(0.0, z) - t.data_y.numpy() * z).sum(1) + (theta.numpy() ** 2).sum(1) / 2
    np.testing.assert_allclose(f.numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(g, autograd_grad(t, theta), rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize(
    "kw", [dict(dim=0), dict(dim=2, n_data=0), dict(dim=2, prior_var=0.0), dict(dim=2, seed=-1), dict(dim=2, x_scale=-1.0)]
)
def test_logistic_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        LogisticRegression(**kw)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def test_registry_names_and_defaults():
    assert TARGET_NAMES == ("gaussian", "gaussian_diag", "mixture", "ring", "double_well", "holley_stroock", "logistic")
    assert targets.make_target is make_target
    built = all_targets(dim=3)
    assert isinstance(built["gaussian"], Gaussian) and built["gaussian"].condition_number == pytest.approx(1.0)
    assert isinstance(built["mixture"], GaussianMixture) and built["mixture"].n_components == 2
    assert isinstance(built["ring"], GaussianMixture) and built["ring"].n_components == 8
    assert isinstance(built["double_well"], DoubleWell) and built["double_well"].barrier == 2.0
    assert isinstance(built["holley_stroock"], HolleyStroock)
    assert isinstance(built["logistic"], LogisticRegression) and built["logistic"].n_data == 100
    torch.testing.assert_close(built["gaussian"].cov, torch.eye(3, dtype=F64))


def test_registry_gaussians_follow_kappa_and_seed():
    rot = make_target("gaussian", dim=4, kappa=50.0, seed=2)
    assert rot.condition_number == pytest.approx(50.0, rel=1e-10)
    off_diag = rot.precision - torch.diag(torch.diagonal(rot.precision))
    assert off_diag.abs().max() > 1e-3  # rotated, not axis-aligned
    torch.testing.assert_close(rot.precision, Gaussian.rotated(4, 50.0, seed=2).precision)
    assert not torch.allclose(rot.precision, make_target("gaussian", dim=4, kappa=50.0, seed=3).precision)
    diag = make_target("gaussian_diag", dim=4, kappa=50.0)
    torch.testing.assert_close(diag.precision, torch.diag(torch.diagonal(diag.precision)))
    assert diag.condition_number == pytest.approx(50.0, rel=1e-12)


def test_registry_passes_options_and_rejects_misuse():
    assert make_target("mixture", dim=3, separation=6.0).means[0].norm().item() == pytest.approx(3.0)
    assert make_target("holley_stroock", dim=2, c=0.1).log_concave
    assert make_target("logistic", dim=3, seed=4).seed == 4
    assert make_target("double_well", dim=2, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="gaussian, gaussian_diag, mixture, ring, double_well, holley_stroock, logistic"):
        make_target("banana")
    with pytest.raises(ValueError, match="2-D"):
        make_target("ring", dim=3)
    with pytest.raises(ValueError, match="kappa"):
        make_target("double_well", dim=2, kappa=10.0)
    with pytest.raises(ValueError, match="kappa"):
        make_target("gaussian", dim=2, kappa=0.5)
    with pytest.raises(ValueError, match="dim"):
        make_target("gaussian", dim=0)

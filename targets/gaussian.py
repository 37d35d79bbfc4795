"""Gaussian targets ``N(m, Sigma)``: the lab's exactly solvable case.

    F(x)       = 1/2 (x - m)^T P (x - m),          P = Sigma^{-1}  (the "precision")
    ∇F(x)      = P (x - m)
    log pi(x)  = -F(x) - d/2 log(2 pi) - 1/2 log det Sigma

``potential`` is ``F`` WITHOUT the normalising constant (``F(m) = 0``); ``log_prob`` is the
exact normalised log density.  The drift of Langevin dynamics is ``b(x) = -P (x - m)``, so the
exact-law recursions of docs/method.md section 9 use ``target.precision`` (``A = P``) and
``target.mean``.

Constants (``lambda`` = eigenvalues of ``Sigma``): ``∇²F = P`` everywhere, so
``strong_convexity = 1/lambda_max``, ``smoothness = 1/lambda_min`` and, by Bakry–Émery (sharp
for a Gaussian), ``lsi_constant = 1/lambda_max``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .validation import (
    as_float64_cpu,
    check_int,
    check_n_samples,
    check_real,
    check_same_dtype,
    check_spd,
    resolve_dtype_device,
)
from .base import Target, check_points

__all__ = ["Gaussian", "random_rotation"]


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    """A Haar-distributed random orthogonal ``[dim, dim]`` matrix (float64, CPU).

    QR of a standard Gaussian matrix drawn from ``torch.Generator().manual_seed(seed)``, with
    the sign fix ``Q <- Q diag(sign(diag R))`` that makes the law exactly Haar (Mezzadri 2007).
    """
    dim = check_int(dim, "dim", 1)
    seed = check_int(seed, "seed", 0)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g = torch.randn((dim, dim), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def _mean_vector(mean, dim: Optional[int], name: str = "mean") -> torch.Tensor:
    if mean is None:
        if dim is None:
            raise ValueError(f"{name}: give a mean or a dimension")
        return torch.zeros(dim, dtype=torch.float64)
    m = as_float64_cpu(mean, name)
    if m.ndim != 1 or (dim is not None and m.shape[0] != dim):
        want = f"[{dim}]" if dim is not None else "[d]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(m.shape)}")
    if m.shape[0] < 1:
        raise ValueError(f"{name} must have at least one entry, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{name} must be finite, got {m.tolist()!r}")
    return m


class Gaussian(Target):
    """``N(mean, cov)`` on ``R^d``.

    Args:
        mean: ``[d]`` (tensor, array or list).
        cov: ``[d, d]`` symmetric positive definite (symmetry checked relative to ``max|C|``,
            then symmetrised).
        dtype, device: of the stored parameters; default: those of ``mean`` (or ``cov``) if it
            is a floating tensor, else float64 on the CPU.

    Attributes (tensors, moved by ``to``):
        precision ``P = Sigma^{-1}`` ``[d, d]`` (so ``∇F(x) = P (x - m)``),
        cov_cholesky ``L`` lower triangular with ``L L^T = Sigma``,
        cov_eigenvalues ``[d]`` ascending, eigenvectors ``[d, d]`` (columns; shared by ``Sigma``
        and ``P``, ``Sigma = V diag(lambda) V^T``).
    Floats: ``log_det_cov``, ``log_normalizer`` (``d/2 log 2pi + 1/2 log det Sigma``),
    ``condition_number`` (``lambda_max / lambda_min``), and the constants.
    """

    name = "gaussian"
    _tensor_fields = ("_mean", "_cov", "precision", "cov_cholesky", "cov_eigenvalues", "eigenvectors")

    def __init__(self, mean, cov, *, dtype=None, device=None):
        dtype, device = resolve_dtype_device(dtype, device, mean, cov)
        m = _mean_vector(mean, None)
        d = m.shape[0]
        c = check_spd(cov, as_float64_cpu(cov, "cov"), d, "cov")
        evals, evecs = torch.linalg.eigh(c)
        self._build(m, c, evals, evecs, dtype, device)

    # -- construction ----------------------------------------------------------------------
    def _build(self, m, c, evals, evecs, dtype, device):
        """Set every field from float64 CPU ``mean``, ``cov`` and its eigendecomposition."""
        self.dim = int(m.shape[0])
        precision = (evecs / evals) @ evecs.T
        precision = 0.5 * (precision + precision.T)
        chol = torch.linalg.cholesky(c)
        lam_min, lam_max = float(evals[0]), float(evals[-1])
        self.log_det_cov = float(torch.log(evals).sum())
        self.log_normalizer = 0.5 * self.dim * math.log(2.0 * math.pi) + 0.5 * self.log_det_cov
        self.condition_number = lam_max / lam_min
        self.strong_convexity = 1.0 / lam_max
        self.smoothness = 1.0 / lam_min
        self.lsi_constant = 1.0 / lam_max
        kw = dict(dtype=dtype, device=device)
        self._mean = m.to(**kw)
        self._cov = c.to(**kw)
        self.precision = precision.to(**kw)
        self.cov_cholesky = chol.to(**kw)
        self.cov_eigenvalues = evals.to(**kw)
        self.eigenvectors = evecs.to(**kw)

    @classmethod
    def from_eigen(cls, cov_eigenvalues, eigenvectors, mean=None, *, dtype=None, device=None) -> "Gaussian":
        """``N(mean, V diag(lambda) V^T)`` built from an exact spectrum.

        ``cov_eigenvalues`` ``lambda`` ``[d]`` > 0, ``eigenvectors`` ``V`` ``[d, d]`` orthogonal
        (checked to 1e-10).  The precision is formed as ``V diag(1/lambda) V^T``, so its
        spectrum is exactly ``1/lambda`` up to rounding (no matrix inversion).
        """
        dtype, device = resolve_dtype_device(dtype, device, mean, cov_eigenvalues)
        lam = as_float64_cpu(cov_eigenvalues, "cov_eigenvalues")
        if lam.ndim != 1 or lam.shape[0] < 1:
            raise ValueError(f"cov_eigenvalues must have shape [d], got {tuple(lam.shape)}")
        d = lam.shape[0]
        if not torch.isfinite(lam).all() or not (lam > 0).all():
            raise ValueError(f"cov_eigenvalues must be finite and > 0, got {lam.tolist()!r}")
        v = as_float64_cpu(eigenvectors, "eigenvectors")
        if v.shape != (d, d):
            raise ValueError(f"eigenvectors must have shape ({d}, {d}), got {tuple(v.shape)}")
        err = float((v.T @ v - torch.eye(d, dtype=torch.float64)).abs().max())
        if not err <= 1e-10:
            raise ValueError(f"eigenvectors must be orthogonal: max|V^T V - I| = {err:.3g} > 1e-10")
        m = _mean_vector(mean, d)
        order = torch.argsort(lam)
        lam, v = lam[order], v[:, order]
        c = (v * lam) @ v.T
        c = 0.5 * (c + c.T)
        self = cls.__new__(cls)
        self._build(m, c, lam, v, dtype, device)
        return self

    @classmethod
    def isotropic(cls, dim: int, variance: float = 1.0, mean=None, *, dtype=None, device=None) -> "Gaussian":
        """``N(mean, variance * I_dim)`` (mean defaults to 0)."""
        dim = check_int(dim, "dim", 1)
        variance = check_real(variance, "variance", positive=True)
        lam = torch.full((dim,), variance, dtype=torch.float64)
        return cls.from_eigen(lam, torch.eye(dim, dtype=torch.float64), mean, dtype=dtype, device=device)

    @staticmethod
    def precision_spectrum(dim: int, kappa: float) -> torch.Tensor:
        """``[dim]`` precision eigenvalues ``kappa^(i/(dim-1))``, ``i = 0..dim-1`` (float64).

        Log-uniformly spaced from exactly 1 (first) to exactly ``kappa`` (last), so the condition
        number is exactly ``kappa``; ``dim = 1`` requires ``kappa = 1``.
        """
        dim = check_int(dim, "dim", 1)
        kappa = check_real(kappa, "kappa", minimum=1.0)
        if dim == 1:
            if kappa != 1.0:
                raise ValueError(f"a 1-D Gaussian has condition number 1; got kappa={kappa!r} with dim=1")
            return torch.ones(1, dtype=torch.float64)
        return torch.tensor([kappa ** (i / (dim - 1)) for i in range(dim)], dtype=torch.float64)

    @classmethod
    def diagonal(cls, dim: int, kappa: float, mean=None, *, dtype=None, device=None) -> "Gaussian":
        """Axis-aligned ``N(mean, diag(1/p_i))`` with precision ``p_i = kappa^(i/(dim-1))``.

        Coordinate 0 has precision 1 (variance 1, the widest direction) and coordinate
        ``dim-1`` has precision ``kappa`` (variance ``1/kappa``).  Hence ``strong_convexity = 1``,
        ``smoothness = kappa`` and the condition number is exactly ``kappa``.
        """
        p = cls.precision_spectrum(dim, kappa)
        return cls.from_eigen(1.0 / p, torch.eye(p.shape[0], dtype=torch.float64), mean, dtype=dtype, device=device)

    @classmethod
    def rotated(cls, dim: int, kappa: float, seed: int = 0, mean=None, *, dtype=None, device=None) -> "Gaussian":
        """``diagonal(dim, kappa)`` rotated by a seeded Haar orthogonal matrix ``Q``.

        ``P = Q diag(p) Q^T`` with ``p`` as in ``diagonal`` and ``Q = random_rotation(dim, seed)``
        (QR with sign fix).  ``eigenvectors`` holds ``Q``'s columns (reordered so the covariance
        eigenvalues ascend).
        """
        p = cls.precision_spectrum(dim, kappa)
        q = random_rotation(p.shape[0], seed)
        return cls.from_eigen(1.0 / p, q, mean, dtype=dtype, device=device)

    # -- density ----------------------------------------------------------------------------
    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``F(x) = 1/2 (x - m)^T P (x - m)`` (unnormalised: ``F(m) = 0``), ``[n]``."""
        check_points(x, self.dim)
        check_same_dtype(self, x)
        y = x - self._mean
        return 0.5 * ((y @ self.precision) * y).sum(-1)

    def grad_potential(self, x: torch.Tensor) -> torch.Tensor:
        """``∇F(x) = P (x - m)``, ``[n, d]``."""
        check_points(x, self.dim)
        check_same_dtype(self, x)
        return (x - self._mean) @ self.precision  # P is symmetric

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact normalised ``log N(x; m, Sigma) = -F(x) - log_normalizer``, ``[n]``."""
        return -self.potential(x) - self.log_normalizer

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``m + L z`` with ``z ~ N(0, I)`` drawn from ``generator``; ``[n, d]``."""
        n = check_n_samples(n)
        z = torch.randn((n, self.dim), generator=generator, device=self.device, dtype=self.dtype)
        return self._mean + z @ self.cov_cholesky.T

    @property
    def mean(self) -> torch.Tensor:
        return self._mean

    @property
    def cov(self) -> torch.Tensor:
        return self._cov

    def __repr__(self) -> str:
        return f"Gaussian(dim={self.dim}, kappa={self.condition_number:.4g})"

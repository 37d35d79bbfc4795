"""Closed-form distances between Gaussian laws (used on exact moment recursions).

All functions accept torch tensors or numpy arrays (any device / dtype; computed in CPU
float64) with means of shape ``[d]`` and covariances ``[d, d]``; for ``d = 1`` plain floats
(mean, *variance*) are accepted too.  Covariances must be symmetric up to a relative
tolerance of ``1e-8`` (they are then symmetrised).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg

from ._validation import to_numpy

__all__ = ["kl_gaussian", "w2_gaussian", "w2_gaussian_squared", "gaussian_moment_errors"]

_SYM_RTOL = 1e-8


def _mean(m, name: str) -> np.ndarray:
    a = np.atleast_1d(to_numpy(m))
    if a.ndim != 1:
        raise ValueError(f"{name} must be a vector [d], got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a


def _cov(S, name: str, d: int) -> np.ndarray:
    a = to_numpy(S)
    if a.ndim == 0 or (a.ndim == 1 and a.size == 1):
        a = a.reshape(1, 1)
    if a.shape != (d, d):
        raise ValueError(f"{name} must have shape [{d}, {d}] to match the mean, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    scale = max(np.abs(a).max(), np.finfo(float).tiny)
    asym = np.abs(a - a.T).max()
    if asym > _SYM_RTOL * scale:
        raise ValueError(f"{name} is not symmetric (max |S - S^T| = {asym:.3g})")
    return 0.5 * (a + a.T)


def _chol(S: np.ndarray, name: str) -> np.ndarray:
    try:
        L = linalg.cholesky(S, lower=True)
    except linalg.LinAlgError:
        raise ValueError(f"{name} is not symmetric positive definite (Cholesky failed)") from None
    if not np.all(np.diag(L) > 0):
        raise ValueError(f"{name} is not symmetric positive definite (zero pivot)")
    return L


def _sqrt_psd(S: np.ndarray, name: str) -> np.ndarray:
    """Symmetric square root by ``eigh``; eigenvalues below ``-1e-10 * max|eig|`` are an error,
    smaller negative ones (round-off) are clipped to zero."""
    w, V = linalg.eigh(S)
    top = max(abs(w).max(), np.finfo(float).tiny)
    if w.min() < -1e-10 * top:
        raise ValueError(
            f"{name} is not positive semi-definite (smallest eigenvalue {w.min():.3g})"
        )
    w = np.clip(w, 0.0, None)
    return (V * np.sqrt(w)) @ V.T


def _pair(m0, S0, m1, S1):
    m0 = _mean(m0, "m0")
    m1 = _mean(m1, "m1")
    if m0.size != m1.size:
        raise ValueError(f"m0 and m1 have different dimensions: {m0.size} vs {m1.size}")
    d = m0.size
    return m0, _cov(S0, "S0", d), m1, _cov(S1, "S1", d)


def kl_gaussian(m0, S0, m1, S1) -> float:
    """``KL(N(m0, S0) || N(m1, S1))`` in nats (a plain float).

        KL = 1/2 [ tr(S1^{-1} S0) + (m1-m0)^T S1^{-1} (m1-m0) - d + log det S1 - log det S0 ]

    computed with Cholesky factors ``S_i = L_i L_i^T``: ``tr(S1^{-1} S0) = ||L1^{-1} L0||_F^2``,
    the Mahalanobis term ``||L1^{-1}(m1-m0)||^2`` and ``log det S_i = 2 sum log diag L_i``
    (triangular solves, no inverse). Both covariances must be symmetric positive definite
    (ValueError otherwise). Round-off below zero is clipped: the result is ``>= 0``.
    """
    m0, S0, m1, S1 = _pair(m0, S0, m1, S1)
    d = m0.size
    L0 = _chol(S0, "S0")
    L1 = _chol(S1, "S1")
    A = linalg.solve_triangular(L1, L0, lower=True)
    b = linalg.solve_triangular(L1, m1 - m0, lower=True)
    logdet = 2.0 * (np.log(np.diag(L1)).sum() - np.log(np.diag(L0)).sum())
    kl = 0.5 * (np.sum(A * A) + np.dot(b, b) - d + logdet)
    return float(max(kl, 0.0))


def w2_gaussian_squared(m0, S0, m1, S1) -> float:
    """``W2^2`` between two Gaussians (squared; see :func:`w2_gaussian`)."""
    m0, S0, m1, S1 = _pair(m0, S0, m1, S1)
    R0 = _sqrt_psd(S0, "S0")
    R1 = _sqrt_psd(S1, "S1")
    # Bures term: min over orthogonal U of ||R0 - R1 U||_F^2 = tr S0 + tr S1 - 2 ||R1 R0||_*,
    # attained at the polar factor U = P Q^T of R1 R0 = P diag(s) Q^T. Evaluating the
    # Frobenius norm of the difference (instead of the trace formula) avoids the cancellation
    # tr S0 + tr S1 - 2 tr(...) when S0 ~ S1: it is a sum of squares, >= 0 by construction.
    P, _, Qt = linalg.svd(R1 @ R0)
    U = P @ Qt
    bures = float(np.sum((R0 - R1 @ U) ** 2))
    dm = m0 - m1
    return float(np.dot(dm, dm) + bures)


def w2_gaussian(m0, S0, m1, S1) -> float:
    """2-Wasserstein distance ``W2`` (NOT squared) between ``N(m0, S0)`` and ``N(m1, S1)``.

    Bures formula:

        W2^2 = |m0 - m1|^2 + tr S0 + tr S1 - 2 tr( (S1^{1/2} S0 S1^{1/2})^{1/2} )

    with symmetric square roots from ``eigh`` (tiny negative eigenvalues from round-off
    clipped to 0; covariances may be singular, i.e. PSD is enough). The covariance term is
    evaluated in the equivalent, cancellation-free form ``||S0^{1/2} - S1^{1/2} U||_F^2`` with
    ``U`` the orthogonal polar factor of ``S1^{1/2} S0^{1/2}`` (this equals the trace formula
    exactly; absolute accuracy ~1e-16 * ||S||, so small distances between nearly equal,
    ill-conditioned covariances keep their relative accuracy).
    """
    return math.sqrt(w2_gaussian_squared(m0, S0, m1, S1))


def gaussian_moment_errors(m, S, m_ref, S_ref) -> dict:
    """Errors of a mean/covariance pair against a reference, as a dict of floats.

    * ``mean_error`` = ``|m - m_ref|`` (Euclidean norm),
    * ``cov_error_fro`` = ``||S - S_ref||_F`` (Frobenius norm),
    * ``cov_error_op`` = ``||S - S_ref||_2`` (operator norm = largest singular value).
    """
    m, S, m_ref, S_ref = _pair(m, S, m_ref, S_ref)
    D = S - S_ref
    return {
        "mean_error": float(np.linalg.norm(m - m_ref)),
        "cov_error_fro": float(np.linalg.norm(D, "fro")),
        "cov_error_op": float(np.linalg.norm(D, 2)),
    }

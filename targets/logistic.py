"""Bayesian logistic regression on synthetic data: a strongly log-concave, non-Gaussian target.

Data (reproducible from ``seed``; drawn on the CPU in float64 from
``torch.Generator().manual_seed(seed)``, in this order):

    theta_true ~ N(0, I_d)
    x_i        ~ N(0, x_scale^2 I_d),  i = 1..n_data      (x_scale defaults to 1/sqrt(d),
                                                           so x_i . theta_true is O(1))
    y_i        ~ Bernoulli(sigmoid(x_i . theta_true))

Posterior potential (unnormalised), with ``z_i = x_i . theta``:

    F(theta)  = sum_i [ softplus(z_i) - y_i z_i ] + |theta|^2 / (2 prior_var)
    ∇F(theta) = X^T (sigmoid(X theta) - y) + theta / prior_var
    ∇²F(theta) = X^T diag(sigmoid'(z)) X + I / prior_var,   0 < sigmoid' <= 1/4

so ``strong_convexity = 1/prior_var``, ``smoothness = 1/prior_var + lambda_max(X^T X)/4`` and,
by Bakry–Émery, ``lsi_constant = 1/prior_var`` (a lower bound on the best constant).
``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` is evaluated in that stable form (no
threshold approximation), so ``F`` and ``∇F`` stay exact for any logits.

No exact sampler; ``mean`` and ``cov`` are ``None``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .validation import check_int, check_real, check_same_dtype, resolve_dtype_device
from .base import Target, check_points

__all__ = ["LogisticRegression"]


def _softplus(z: torch.Tensor) -> torch.Tensor:
    return torch.clamp(z, min=0.0) + torch.log1p(torch.exp(-z.abs()))


class LogisticRegression(Target):
    """Posterior of a logistic regression with ``N(0, prior_var I)`` prior on synthetic data.

    Args:
        dim: number of features ``d`` (>= 1).
        n_data: number of observations (>= 1).
        prior_var: prior variance (> 0).
        seed: data seed (>= 0).
        x_scale: standard deviation of the features; default ``1/sqrt(dim)``.
        dtype, device: of the stored data (default float64 on the CPU); the data are always
            generated in float64 on the CPU, then converted.

    Attributes: ``data_x`` ``[n_data, d]``, ``data_y`` ``[n_data]`` (0./1.), ``theta_true``
    ``[d]`` (tensors, moved by ``to``); ``gram_lambda_max`` ``lambda_max(X^T X)`` (float).
    """

    name = "logistic"
    _tensor_fields = ("data_x", "data_y", "theta_true")

    def __init__(
        self,
        dim: int,
        n_data: int = 100,
        prior_var: float = 1.0,
        seed: int = 0,
        x_scale: Optional[float] = None,
        *,
        dtype=None,
        device=None,
    ):
        self.dim = check_int(dim, "dim", 1)
        self.n_data = check_int(n_data, "n_data", 1)
        self.prior_var = check_real(prior_var, "prior_var", positive=True)
        self.seed = check_int(seed, "seed", 0)
        self.x_scale = (
            1.0 / math.sqrt(self.dim) if x_scale is None else check_real(x_scale, "x_scale", positive=True)
        )
        dtype, device = resolve_dtype_device(dtype, device)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        f64 = dict(dtype=torch.float64)
        theta = torch.randn(self.dim, generator=gen, **f64)
        x = self.x_scale * torch.randn((self.n_data, self.dim), generator=gen, **f64)
        prob = torch.sigmoid(x @ theta)
        y = (torch.rand(self.n_data, generator=gen, **f64) < prob).to(torch.float64)

        self.gram_lambda_max = float(torch.linalg.eigvalsh(x.T @ x)[-1])
        self.strong_convexity = 1.0 / self.prior_var
        self.smoothness = 1.0 / self.prior_var + 0.25 * self.gram_lambda_max
        self.lsi_constant = 1.0 / self.prior_var
        kw = dict(dtype=dtype, device=device)
        self.theta_true = theta.to(**kw)
        self.data_x = x.to(**kw)
        self.data_y = y.to(**kw)

    def potential(self, theta: torch.Tensor) -> torch.Tensor:
        """``F(theta) = sum_i [softplus(z_i) - y_i z_i] + |theta|^2/(2 prior_var)``, ``[n]``."""
        check_points(theta, self.dim)
        check_same_dtype(self, theta)
        z = theta @ self.data_x.T  # [n, n_data]
        nll = _softplus(z).sum(-1) - z @ self.data_y
        return nll + (theta * theta).sum(-1) / (2.0 * self.prior_var)

    def grad_potential(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇F(theta) = X^T (sigmoid(X theta) - y) + theta/prior_var``, ``[n, d]``."""
        check_points(theta, self.dim)
        check_same_dtype(self, theta)
        z = theta @ self.data_x.T
        return (torch.sigmoid(z) - self.data_y) @ self.data_x + theta / self.prior_var

    def hessian_potential(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇²F(theta) = X^T diag(sigmoid(z)(1 - sigmoid(z))) X + I/prior_var``, ``[n, d, d]``."""
        check_points(theta, self.dim)
        check_same_dtype(self, theta)
        sz = torch.sigmoid(theta @ self.data_x.T)
        wts = sz * (1.0 - sz)  # [n, n_data]
        h = torch.einsum("nk,ki,kj->nij", wts, self.data_x, self.data_x)
        eye = torch.eye(self.dim, dtype=theta.dtype, device=theta.device)
        return h + eye / self.prior_var

    def __repr__(self) -> str:
        return (
            f"LogisticRegression(dim={self.dim}, n_data={self.n_data}, "
            f"prior_var={self.prior_var:g}, seed={self.seed})"
        )

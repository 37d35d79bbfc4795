"""The `Target` interface shared by every density in the lab.

A target is a density ``pi(x) ∝ exp(-F(x))`` on ``R^d``.  Every method is batched over chains:
``x`` is an ``[n, d]`` tensor and ``potential`` returns ``[n]``, ``grad_potential`` ``[n, d]``.

Parameters are held as tensors on one device and dtype; ``target.to(device=..., dtype=...)``
returns a converted copy (the samplers call it, so a target built on the CPU in float64 runs
anywhere).

Known constants follow one convention throughout the lab:

* ``strong_convexity`` ``m``: ``∇²F ⪰ m I`` everywhere (``None`` if ``F`` is not strongly convex).
* ``smoothness`` ``L``: ``∇F`` is ``L``-Lipschitz (``None`` if it is not globally Lipschitz).
* ``lsi_constant`` ``alpha``: ``Ent_pi(f^2) <= (2/alpha) E_pi |∇f|^2`` (larger is better; a
  ``m``-strongly log-concave target has ``alpha >= m``).  Where only a bound is known the
  docstring of the target says so; ``None`` where nothing is known.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

__all__ = ["Target", "SeparableTarget", "check_points"]


def check_points(x: torch.Tensor, dim: int) -> None:
    """Raise ValueError unless ``x`` is a floating ``[n, dim]`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape [n, {dim}], got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected points of shape [n, {dim}], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got dtype {x.dtype}")


class Target:
    """Base class: a density ``exp(-F)`` on ``R^dim``.

    Subclasses set ``dim``, implement ``potential`` and ``grad_potential`` analytically, and
    list their tensor attributes in ``_tensor_fields`` so that ``to`` can move them.
    """

    name: str = "target"
    dim: int
    _tensor_fields: tuple[str, ...] = ()

    # ---- densities -------------------------------------------------------------------------
    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``F(x)`` up to an additive constant, shape ``[n]``."""
        raise NotImplementedError

    def grad_potential(self, x: torch.Tensor) -> torch.Tensor:
        """``∇F(x)``, shape ``[n, d]`` (analytic, not autograd)."""
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``∇ log pi(x) = -∇F(x)``, the drift of overdamped Langevin dynamics."""
        return -self.grad_potential(x)

    # ---- exact sampling and moments ----------------------------------------------------------
    @property
    def has_sampler(self) -> bool:
        return type(self).sample is not Target.sample

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` exact independent samples, shape ``[n, d]``, on the target's device and dtype."""
        raise NotImplementedError(f"{self.name} has no exact sampler")

    @property
    def mean(self) -> Optional[torch.Tensor]:
        """Exact mean ``[d]``, or ``None`` if not known."""
        return None

    @property
    def cov(self) -> Optional[torch.Tensor]:
        """Exact covariance ``[d, d]``, or ``None`` if not known."""
        return None

    # ---- constants ---------------------------------------------------------------------------
    strong_convexity: Optional[float] = None
    smoothness: Optional[float] = None
    lsi_constant: Optional[float] = None

    # ---- device and dtype --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return getattr(self, self._tensor_fields[0]).device

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self._tensor_fields[0]).dtype

    def to(self, device=None, dtype=None) -> "Target":
        """A copy with every tensor parameter moved to ``device`` / cast to ``dtype``.

        Returns ``self`` when nothing changes.
        """
        device = torch.device(device) if device is not None else self.device
        dtype = dtype if dtype is not None else self.dtype
        if device == self.device and dtype == self.dtype:
            return self
        new = copy.copy(self)
        for field in self._tensor_fields:
            value = getattr(self, field)
            if value.is_floating_point():
                value = value.to(device=device, dtype=dtype)
            else:
                value = value.to(device=device)
            setattr(new, field, value)
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class SeparableTarget(Target):
    """A product of identical 1-D densities: ``F(x) = sum_i V(x_i)``.

    Subclasses implement ``V`` and ``V'`` (``potential_1d``, ``grad_potential_1d``) on tensors.
    Exact 1-D marginal quantities (``marginal_pdf``, ``marginal_cdf``, ``marginal_quantile``,
    ``marginal_moment``) come from quadrature; see ``targets.separable``.
    """

    def marginal_pdf(self, t):
        raise NotImplementedError

    def marginal_cdf(self, t):
        raise NotImplementedError

    def marginal_quantile(self, u):
        raise NotImplementedError

    def marginal_moment(self, k: int) -> float:
        raise NotImplementedError

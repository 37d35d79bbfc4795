"""Shared pieces of the samplers: the per-step info record and input checks."""

from __future__ import annotations

from typing import NamedTuple

import torch

from targets.validation import check_int as check_positive_int
from targets.validation import check_positive

from . import noise as _noise

__all__ = ["StepInfo", "MAX_K", "check_step_size", "check_K", "check_positive_int", "gaussian", "uniform",
           "nonfinite_rows"]


class StepInfo(NamedTuple):
    """Diagnostics of one step, per chain.

    grad_evals: ``[n]`` int64, gradient evaluations this step made for each chain.
    accepted:   ``[n]`` bool for Metropolis-adjusted methods, else ``None``.
    """

    grad_evals: torch.Tensor
    accepted: torch.Tensor | None = None


def check_step_size(step_size) -> float:
    """Return ``step_size`` as a float, or raise ValueError unless it is finite and > 0."""
    return check_positive(step_size, "step_size")


#: The largest number of Poisson-midpoint sub-steps ``K``: the engine lays the chains' ``K - 1``
#: indices end to end and adds Geometric gaps along them in int64 (``samplers.poisson.selections``).
MAX_K = 2**56


def check_K(K) -> int:
    """Return the number of Poisson-midpoint sub-steps ``K`` as an int in ``1..MAX_K``, or raise."""
    if K is None:
        raise ValueError("K (the number of Poisson-midpoint sub-steps) is required, got None")
    K = check_positive_int(K, "K", 1)
    if K > MAX_K:
        raise ValueError(f"K must be at most 2^56 = {MAX_K} (the Poisson-midpoint engine's int64 "
                         f"index line), got {K!r}")
    return K


def gaussian(generator: torch.Generator, shape, *, dtype: torch.dtype, device) -> torch.Tensor:
    """Standard normal draws of ``shape`` from ``generator``: every sampler's Gaussian noise.

    All samplers draw their Gaussians through this one function, so how noise is made is decided
    in one place: by the noise mode of ``generator`` (a :class:`samplers.noise.NoiseGenerator`;
    ``"exact"`` for a plain ``torch.Generator``), see :mod:`samplers.noise`.
    """
    return _noise.gaussian(generator, shape, dtype, device)


def uniform(generator: torch.Generator, shape, *, dtype: torch.dtype, device) -> torch.Tensor:
    """``U[0, 1)`` draws of ``shape`` from ``generator`` (selections, midpoints, acceptances).

    The same in every noise mode (``torch.rand`` in ``dtype``).
    """
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """``[n]`` bool: the rows of ``x`` ``[n, ...]`` holding a NaN or an infinity.

    The same as ``~torch.isfinite(x).all(-1)`` (rows of a 2-D ``x``), in two reductions and no
    ``[n, d]`` temporaries: ``amax`` and ``amin`` propagate NaN, and a row is finite exactly when
    its largest and smallest entries are.  No host synchronisation.
    """
    x = x.reshape(x.shape[0], -1)
    return ~(torch.isfinite(x.amax(-1)) & torch.isfinite(x.amin(-1)))

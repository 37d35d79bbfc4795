"""Build a target by name: ``make_target(name, dim=..., kappa=..., seed=..., **kw)``.

=================  ===================================================================
name               target
=================  ===================================================================
``gaussian``       ``Gaussian.rotated(dim, kappa, seed)`` if ``kappa > 1`` else
                   ``Gaussian.isotropic(dim)`` (extra ``kw`` go to that factory)
``gaussian_diag``  ``Gaussian.diagonal(dim, kappa)``
``mixture``        ``GaussianMixture.bimodal(dim, separation=4, sigma=1)``
``ring``           ``GaussianMixture.ring(n_modes=8, radius=3, sigma=0.5)``; ``dim`` must be 2
``double_well``    ``DoubleWell(dim, barrier=2, scale=1)``
``holley_stroock`` ``HolleyStroock(dim, s=1, c=1, w=2)``
``logistic``       ``LogisticRegression(dim, n_data=100, prior_var=1, seed=seed)``
=================  ===================================================================

``kappa`` is used only by the Gaussian targets; any other target rejects ``kappa != 1``.
``seed`` is used by ``gaussian`` (the rotation) and ``logistic`` (the data); the other targets
are deterministic and ignore it.  ``dtype`` (default float64) and ``device`` (default CPU) are
passed to every constructor.
"""

from __future__ import annotations

import torch

from ._validate import check_int, check_real
from .gaussian import Gaussian
from .logistic import LogisticRegression
from .mixture import GaussianMixture
from .separable import DoubleWell, HolleyStroock

__all__ = ["TARGET_NAMES", "make_target"]

TARGET_NAMES = ("gaussian", "gaussian_diag", "mixture", "ring", "double_well", "holley_stroock", "logistic")


def make_target(name: str, dim: int = 2, kappa: float = 1.0, seed: int = 0, *, dtype=torch.float64, device=None, **kw):
    """The target called ``name`` (one of ``TARGET_NAMES``); see the module docstring."""
    if name not in TARGET_NAMES:
        raise ValueError(f"unknown target {name!r}; known targets: {', '.join(TARGET_NAMES)}")
    dim = check_int(dim, "dim", 1)
    kappa = check_real(kappa, "kappa", minimum=1.0)
    seed = check_int(seed, "seed", 0)
    if not name.startswith("gaussian") and kappa != 1.0:
        raise ValueError(f"kappa={kappa!r} applies only to the Gaussian targets, not to {name!r}")
    common = dict(dtype=dtype, device=device)
    if name == "gaussian":
        if kappa > 1.0:
            return Gaussian.rotated(dim, kappa, seed, **kw, **common)
        return Gaussian.isotropic(dim, **kw, **common)
    if name == "gaussian_diag":
        return Gaussian.diagonal(dim, kappa, **kw, **common)
    if name == "mixture":
        return GaussianMixture.bimodal(dim, **kw, **common)
    if name == "ring":
        if dim != 2:
            raise ValueError(f"the 'ring' target is 2-D only, got dim={dim}")
        return GaussianMixture.ring(**kw, **common)
    if name == "double_well":
        return DoubleWell(dim, **kw, **common)
    if name == "holley_stroock":
        return HolleyStroock(dim, **kw, **common)
    assert name == "logistic"
    return LogisticRegression(dim, seed=seed, **kw, **common)

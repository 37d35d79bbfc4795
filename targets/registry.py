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

``kappa`` is used only by the targets registered with ``takes_kappa=True`` (the Gaussians);
any other target rejects ``kappa != 1``.  ``seed`` is used by ``gaussian`` (the rotation) and
``logistic`` (the data); the other targets are deterministic and ignore it.  ``dtype`` (default
float64) and ``device`` (default CPU) are passed to every factory.

More targets join with :func:`register_target` (``docs/extending.md``); the labs then accept
their names (``python -m labs.rate_sweep --target NAME``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .validation import check_int, check_real
from .gaussian import Gaussian
from .logistic import LogisticRegression
from .mixture import GaussianMixture
from .separable import DoubleWell, HolleyStroock

__all__ = ["TARGET_NAMES", "TARGETS", "TargetEntry", "make_target", "register_target"]


@dataclass(frozen=True)
class TargetEntry:
    """A named target: ``factory(dim, kappa, seed, *, dtype, device, **kw) -> Target``.

    takes_kappa: the factory uses ``kappa`` (a condition number); otherwise ``kappa != 1`` is
                 refused before the factory runs.
    """

    name: str
    factory: Callable
    description: str = ""
    takes_kappa: bool = False


#: Every registered target by name, in registration order.
TARGETS: dict[str, TargetEntry] = {}


def register_target(name: str, factory: Callable, *, description: str = "", takes_kappa: bool = False,
                    replace: bool = False) -> TargetEntry:
    """Make ``make_target(name, ...)`` call ``factory(dim, kappa, seed, dtype=, device=, **kw)``.

    A name already taken is an error unless ``replace=True``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a target's name must be a Python identifier, got {name!r}")
    if not callable(factory):
        raise ValueError(f"target {name!r}: factory must be callable, got {type(factory).__name__}")
    if name in TARGETS and not replace:
        raise ValueError(f"target {name!r} is already registered (pass replace=True to replace it)")
    TARGETS[name] = entry = TargetEntry(name, factory, description, takes_kappa)
    return entry


def make_target(name: str, dim: int = 2, kappa: float = 1.0, seed: int = 0, *, dtype=torch.float64, device=None, **kw):
    """The target called ``name`` (a key of :data:`TARGETS`); see the module docstring."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}")
    entry = TARGETS[name]
    dim = check_int(dim, "dim", 1)
    kappa = check_real(kappa, "kappa", minimum=1.0)
    seed = check_int(seed, "seed", 0)
    if not entry.takes_kappa and kappa != 1.0:
        raise ValueError(f"kappa={kappa!r} applies only to the Gaussian targets, not to {name!r}")
    return entry.factory(dim, kappa, seed, dtype=dtype, device=device, **kw)


def _gaussian(dim, kappa, seed, **kw):
    if kappa > 1.0:
        return Gaussian.rotated(dim, kappa, seed, **kw)
    return Gaussian.isotropic(dim, **kw)


def _ring(dim, kappa, seed, **kw):
    if dim != 2:
        raise ValueError(f"the 'ring' target is 2-D only, got dim={dim}")
    return GaussianMixture.ring(**kw)


register_target("gaussian", _gaussian, description="rotated Gaussian with condition number kappa",
                takes_kappa=True)
register_target("gaussian_diag", lambda dim, kappa, seed, **kw: Gaussian.diagonal(dim, kappa, **kw),
                description="diagonal Gaussian with condition number kappa", takes_kappa=True)
register_target("mixture", lambda dim, kappa, seed, **kw: GaussianMixture.bimodal(dim, **kw),
                description="two-component Gaussian mixture")
register_target("ring", _ring, description="eight Gaussians on a circle (2-D)")
register_target("double_well", lambda dim, kappa, seed, **kw: DoubleWell(dim, **kw),
                description="separable double well")
register_target("holley_stroock", lambda dim, kappa, seed, **kw: HolleyStroock(dim, **kw),
                description="separable Holley-Stroock perturbation of a Gaussian (LSI)")
register_target("logistic", lambda dim, kappa, seed, **kw: LogisticRegression(dim, seed=seed, **kw),
                description="Bayesian logistic regression on synthetic data")

#: The built-in targets' names (every registered name: :data:`TARGETS`).
TARGET_NAMES = tuple(TARGETS)

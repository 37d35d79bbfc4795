"""One descriptor per sampling method: everything the lab knows about a method, in one place.

A method is a :class:`SamplingAlgorithm`, in the spirit of BlackJAX's ``SamplingAlgorithm``:

* ``init(x, target, v=None) -> state``: the state at positions ``x`` ``[n, d]`` (and velocities
  ``v`` for a method with ``velocities=True``); the state has ``.x`` (and ``.v``);
* ``build_kernel(target, step_size, **params) -> step``, with
  ``step(generator, state) -> (state, StepInfo)``: one step of every chain.  The kernel factory
  checks ``step_size`` and the parameters and builds whatever the steps share (a scheme, its
  coefficients) **once**; the steps only compute;
* metadata that the samplers' entry point, the exact laws and the labs read, so that none of them
  names a method: the parameters with their checks (:class:`Param`), the mean gradient
  evaluations per step, the evaluations ``init`` makes, the base method whose fine scheme a
  method imitates, the one-step moment model on Gaussian targets (exact laws) and whether that
  law is exactly Gaussian.

Methods are registered by name in :data:`METHODS` (:func:`register`); :func:`samplers.sample`
runs any registered method, and ``python -m labs.rate_sweep --samplers NAME`` measures it.
``docs/extending.md`` adds a method step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import torch

from ._common import StepInfo, gaussian, uniform

# What a kernel needs besides torch: ``StepInfo`` (what a step reports) and the noise draws
# ``gaussian`` / ``uniform`` (they honour the run's noise mode, samplers.noise).
__all__ = ["Param", "REQUIRED", "SamplingAlgorithm", "Kernel", "METHODS", "register", "get_method",
           "StepInfo", "gaussian", "uniform"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a parameter that the caller must give.
REQUIRED: Any = _Required()


class Kernel(Protocol):
    """One step of every chain: ``step(generator, state) -> (new_state, StepInfo)``."""

    def __call__(self, generator: torch.Generator, state: Any) -> tuple[Any, StepInfo]: ...


@dataclass(frozen=True)
class Param:
    """A method's parameter: its name, a check that returns the normalised value or raises
    ``ValueError`` naming the bad value, a default (:data:`REQUIRED` if the caller must give
    it) and a line of help."""

    name: str
    check: Callable[[Any], Any]
    default: Any = REQUIRED
    help: str = ""


def _never_gaussian(**params) -> bool:
    return False


@dataclass(frozen=True)
class SamplingAlgorithm:
    """A sampling method, described once (see the module docstring).

    name:                the registry key (``samplers.sample(name, ...)``, ``--samplers name``).
    description:         one line for listings.
    init:                ``init(x, target, v=None) -> state``.
    build_kernel:        ``build_kernel(target, step_size, **params) -> step``.
    mean_evals_per_step: ``mean_evals_per_step(**params) -> float``, gradient evaluations per
                         chain and step on average (what a budget of evaluations buys).
    params:              the method's parameters, checked by :meth:`check_params`.
    init_evals:          gradient evaluations ``init`` makes per chain (MALA caches one).
    velocities:          the state carries velocities (underdamped methods): ``sample`` draws
                         ``v0`` from their stationary law ``N(0, I)`` unless it is given.
    metropolis:          steps report ``StepInfo.accepted``; ``sample`` returns acceptance rates.
    base:                the method whose fine scheme this one imitates with fewer evaluations
                         (PLMC: ``"lmc"``, PULMC: ``"ulmc"``): the labs report the slope ratio
                         against it and the theorem study compares with it; else ``None``.
    exact_moments:       the one-step moment model on a Gaussian target, or ``None`` where the
                         law has no exact moment recursion.  Overdamped: ``(lam, step_size,
                         **params) -> (a, F, noise)`` in the target's eigenbasis
                         (:mod:`metrics.exact_laws`); with velocities: ``(step_size, **params)
                         -> StepModel`` (:mod:`metrics.underdamped_laws`).
    gaussian_law:        ``gaussian_law(**params) -> bool``: is the chain's law on a Gaussian
                         target exactly Gaussian (then its KL and W2 are exact; otherwise the
                         W2 of its moments is a lower bound)?
    """

    name: str
    description: str
    init: Callable[..., Any]
    build_kernel: Callable[..., Kernel]
    mean_evals_per_step: Callable[..., float]
    params: tuple[Param, ...] = ()
    init_evals: int = 0
    velocities: bool = False
    metropolis: bool = False
    base: Optional[str] = None
    exact_moments: Optional[Callable[..., Any]] = None
    gaussian_law: Callable[..., bool] = field(default=_never_gaussian)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def takes(self, name: str) -> bool:
        """Whether the method has a parameter called ``name``."""
        return name in self.param_names

    def check_params(self, **given) -> dict:
        """The method's parameters, checked and with defaults filled in; ``None`` counts as not
        given.  Raises ``ValueError`` naming an unknown or a bad parameter, or a missing one."""
        unknown = [k for k, v in given.items() if v is not None and not self.takes(k)]
        if unknown:
            k = unknown[0]
            takes = ", ".join(self.param_names) or "no parameters"
            raise ValueError(f"method {self.name!r} takes no {k}, got {k}={given[k]!r} (it takes: {takes})")
        out = {}
        for p in self.params:
            value = given.get(p.name)
            if value is None:
                if p.default is REQUIRED:
                    raise ValueError(f"method {self.name!r} needs {p.name} ({p.help or 'no default'}), got None")
                value = p.default
            out[p.name] = p.check(value)
        return out


#: Every registered method by name, in registration order.
METHODS: dict[str, SamplingAlgorithm] = {}


def register(method: SamplingAlgorithm, *, replace: bool = False) -> SamplingAlgorithm:
    """Add ``method`` to :data:`METHODS` under ``method.name`` and return it.

    A name already taken is an error unless ``replace=True``.  A ``base`` must be registered.
    """
    if not isinstance(method, SamplingAlgorithm):
        raise ValueError(f"register takes a SamplingAlgorithm, got {type(method).__name__}")
    if not method.name or not method.name.isidentifier():
        raise ValueError(f"a method's name must be a Python identifier, got {method.name!r}")
    if method.name in METHODS and not replace:
        raise ValueError(f"method {method.name!r} is already registered (pass replace=True to replace it)")
    if method.base is not None and method.base not in METHODS:
        raise ValueError(f"method {method.name!r} has base {method.base!r}, which is not registered")
    METHODS[method.name] = method
    return method


def get_method(method) -> SamplingAlgorithm:
    """The descriptor of ``method`` (a registered name, or a descriptor, returned as is)."""
    if isinstance(method, SamplingAlgorithm):
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    return METHODS[method]

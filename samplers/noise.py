"""How the samplers' Gaussian noise is drawn: the ``noise`` option of :func:`samplers.sample`.

Every Gaussian a sampler draws goes through :func:`samplers._common.gaussian`, which looks at the
generator it is handed.  A :class:`NoiseGenerator` is a ``torch.Generator`` (it can go wherever
one goes, e.g. ``torch.randn(..., generator=g)``) that also carries a noise *mode*:

``"exact"`` (the default)
    ``torch.randn`` in the state's dtype.  In float64 on the CPU this is torch's Box–Muller on
    53-bit uniforms, computed with scalar ``log``/``sqrt``/``cos``/``sin``: about 15 ms per 10^6
    draws on one core, most of an LMC step at ``d = 100``.

``"fast"``
    float64 states get float32 ``torch.randn`` draws, up-cast to float64 (other dtypes are drawn
    as in ``"exact"``).  On the CPU torch draws float32 normals by a vectorized Box–Muller on
    24-bit uniforms: about 3.5 ms per 10^6 draws including the up-cast, four times cheaper.  Its
    law differs from ``N(0, 1)`` only at float32 resolution:

    * the radius ``sqrt(-2 log U)`` with ``U`` on the grid ``{2^-24, ..., 1}`` never exceeds
      ``sqrt(48 log 2) = 5.768``, so ``|Z| <= 5.768``: the mass ``P(|Z| > 5.768) = 8.0e-9`` is cut
      (the exact path cuts at ``8.57``, mass ``1e-17``);
    * tail probabilities ``P(|Z| > t)`` are those of the grid: relative deviation from the normal
      ``-5e-7`` at ``t = 2``, ``-7e-6`` at 3, ``-2.6e-4`` at 4, ``-2.0e-2`` at 5, ``-0.21`` at
      5.5 (:func:`fast_tail_probability` computes them exactly; ``tests/test_noise.py`` checks
      draws against it and against the normal);
    * each draw is rounded to float32 (relative error ``<= 6e-8``); ``E Z^2`` is low by
      ``5.5e-7`` and ``E Z^4`` by ``5.1e-6`` relative (odd moments vanish by symmetry).

    A rate measurement resolves errors no smaller than its metric's standard error (about
    ``1e-4`` with ``10^4``-``10^5`` chains), far above these deviations; ``tests/test_noise.py``
    checks that the lab's sample-based metrics agree between the modes within their standard
    errors.  Uniform draws (selections, midpoints, acceptances) are float64 in both modes.

``"vector"``
    float64 states get the exact path's law, computed differently: Box–Muller on 53-bit float64
    uniforms (``torch.rand``), vectorized over the whole tensor with torch's elementwise
    ``log1p``/``sqrt``/``cos``/``sin`` (both outputs of each uniform pair used), where torch's own
    float64 ``randn`` runs a scalar loop.  Same law as ``"exact"`` (the radius
    ``sqrt(-2 log(1 - U))`` with ``1 - U`` on the grid ``{2^-53, ..., 1}``, so ``|Z| <= 8.57``),
    different numbers, about twice as cheap on the CPU (8 ms against 19 ms per 10^6 draws on
    2 threads here).  ``tests/test_noise.py`` checks its tails, moments and KS distance like the
    others'.  Other dtypes are drawn as in ``"exact"``.

On CUDA all modes draw with torch's Philox generator; ``"fast"`` draws float32 there too.  With
a plain ``torch.Generator`` the mode is ``"exact"``.  Within one mode, the same seed gives the
same numbers bit for bit on the CPU; different modes give different (equally distributed) chains.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NOISE_MODES", "NoiseGenerator", "check_noise", "noise_mode", "make_generator",
           "fast_tail_probability", "FAST_MAX_ABS"]

NOISE_MODES = ("exact", "fast", "vector")

# Largest |Z| the "fast" (float32 Box–Muller) path can produce: sqrt(-2 log 2^-24).
FAST_MAX_ABS = math.sqrt(48.0 * math.log(2.0))


def check_noise(noise) -> str:
    """Return ``noise`` if it is one of :data:`NOISE_MODES`, else raise ValueError naming it."""
    if not isinstance(noise, str) or noise not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {noise!r}; known: {', '.join(NOISE_MODES)}")
    return noise


class NoiseGenerator(torch.Generator):
    """A ``torch.Generator`` with a noise mode (``"exact"``, ``"fast"`` or ``"vector"``; see the module docstring).

    ``NoiseGenerator(device, noise="fast")``; seed it with ``manual_seed`` as any generator.
    """

    def __new__(cls, device="cpu", noise: str = "exact"):
        return super().__new__(cls, device=torch.device(device))  # type: ignore[call-arg]

    def __init__(self, device="cpu", noise: str = "exact"):
        self.noise = check_noise(noise)

    def __repr__(self) -> str:
        return f"NoiseGenerator(device={self.device}, noise={self.noise!r})"

    def __reduce__(self):
        return (_rebuild, (str(self.device), self.noise, self.get_state()))

    def __deepcopy__(self, memo):
        return _rebuild(str(self.device), self.noise, self.get_state().clone())


def _rebuild(device, noise, state):
    g = NoiseGenerator(device, noise)
    g.set_state(state)
    return g


def noise_mode(generator) -> str:
    """The noise mode of ``generator``: its ``noise`` attribute, ``"exact"`` for a plain generator."""
    return getattr(generator, "noise", "exact")


def make_generator(seed: int, device, noise: str = "exact") -> NoiseGenerator:
    """A :class:`NoiseGenerator` on ``device`` in mode ``noise``, seeded with ``seed``."""
    gen = NoiseGenerator(device, check_noise(noise))
    gen.manual_seed(int(seed))
    return gen


def gaussian(generator, shape, dtype: torch.dtype, device) -> torch.Tensor:
    """Standard normal draws in the mode of ``generator`` (called by ``_common.gaussian``)."""
    if dtype == torch.float64:
        mode = noise_mode(generator)
        if mode == "fast":
            return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(dtype)
        if mode == "vector":
            return _box_muller_float64(generator, shape, device)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def _box_muller_float64(generator, shape, device) -> torch.Tensor:
    """Standard normals by Box–Muller on float64 uniforms, vectorized (the ``"vector"`` mode).

    A pair ``(U_1, U_2)`` gives ``R cos(2 pi U_2)`` and ``R sin(2 pi U_2)`` with
    ``R = sqrt(-2 log(1 - U_1))``: two independent ``N(0, 1)`` (``1 - U_1`` is in ``(0, 1]``, so the
    logarithm is finite).  The cosines fill the first half of the output, the sines the second.
    """
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    numel = math.prod(shape)
    half = (numel + 1) // 2
    u = torch.rand((2, half), generator=generator, device=device, dtype=torch.float64)
    radius = u[0].neg_().log1p_().mul_(-2.0).sqrt_()
    angle = u[1].mul_(2.0 * math.pi)
    out = torch.empty(2 * half, dtype=torch.float64, device=device)
    torch.mul(radius, torch.cos(angle), out=out[:half])
    torch.mul(radius, angle.sin_(), out=out[half:])
    return out[:numel].view(shape)


def fast_tail_probability(t) -> float:
    """``P(|Z| > t)`` for one draw ``Z`` of the ``"fast"`` mode on the CPU, computed exactly.

    torch's vectorized float32 Box–Muller turns a pair of 24-bit uniforms ``(u_1, u_2)`` into
    ``R cos(2 pi u_2)`` and ``R sin(2 pi u_2)`` with ``R = sqrt(-2 log(1 - u_1))``, ``1 - u_1``
    uniform on ``{k 2^-24 : k = 1..2^24}``.  So ``P(|Z| > t) = 2^-24 sum_k P(|cos Theta| > t / r_k)``
    with ``r_k = sqrt(-2 log(k 2^-24))`` and ``P(|cos Theta| > c) = (2/pi) arccos(c)`` (the angle's
    24-bit grid changes this by less than ``1e-7`` relative).  Only ``k`` with ``r_k > t`` count.
    """
    import numpy as np

    t = float(t)
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t!r}")
    n = 2**24
    kmax = min(n, int(math.floor(n * math.exp(-0.5 * t * t))) + 1)
    k = np.arange(1, kmax + 1, dtype=np.float64)
    r = np.sqrt(-2.0 * np.log(k / n))
    c = np.clip(t / np.maximum(r, 1e-300), 0.0, 1.0)
    return float((2.0 / math.pi) * np.arccos(c).sum() / n)

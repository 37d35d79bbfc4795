"""Exact laws of LMC (and of PLMC with ``K = 2``) in one dimension, by propagating the density on a grid.

In 1-D the LMC step ``X' = X - eta V'(X) + sqrt(2 eta) Z`` has the transition density
``k(x, y) = N(y; m(x), s^2)``, ``m(x) = x - eta V'(x)``, ``s^2 = 2 eta``, so the law of the chain
evolves by ``p_{n+1}(y) = ∫ p_n(x) k(x, y) dx``.  This module computes that integral on a uniform
grid, to rounding-level accuracy, and from the grid density the exact ``KL``, ``TV`` and ``W2``
to the target ``pi = exp(-V)/Z``.  It is an oracle for the sample-based estimators: the chains'
law is known, so an estimator's bias can be measured rather than guessed.

**Propagation.**  On the grid ``x_j = lo + j Delta``:

    p_{n+1}(x_k) = Delta sum_j p_n(x_j) N(x_k; m(x_j), s^2)

(a banded sparse matrix, built once: entries beyond ``13 s`` from ``m(x_j)``, below
``e^{-84}`` of the peak, are dropped).  The sum is the trapezoid rule in ``x`` for an integrand
that decays at both ends of the grid; such a sum converges *spectrally*: its error is of the
order of the integrand's Fourier transform at ``2 pi / Delta``.  The kernel's factor, as a
function of ``x``, is a Gaussian of width ``s / |m'(x)|``, and ``p_n`` (for ``n >= 1``) is a
mixture of Gaussians of width ``s``, so with

    Delta <= min(s / M', 1 / sqrt(max |V''|), init sd) / points_per_width,    M' = max(1, max |1 - eta V''|)

(``V''`` by central differences of ``V'`` where the target's or the start's density is above
``1e-16`` of its peak; ``points_per_width = 3`` by default) the error is below
``exp(-2 pi^2 (points_per_width/sqrt 2)^2) ~ 1e-38`` per step in the Gaussian model.  Measured
(``tests/test_grid_law.py``, which asserts ``1e-12``): on Gaussian targets, where the law is known
in closed form, the mean, variance, KL, TV and W2 agree to ``3e-14`` relative; halving the
spacing on the Holley–Stroock, double-well and bimodal-mixture targets changes KL, TV, W2 and
``E X^2`` by less than ``4e-14``.  ``W2^2`` carries an absolute rounding error of about
``1e-15 E[X^2]``, so a ``W2`` below ``~1e-7`` is not resolved (the distance of the target to
itself comes out between ``1e-10`` and ``6e-8``).  The number of points grows like
``n_grid ~ (hi - lo) M' points_per_width / sqrt(2 eta)``: ``~ eta^{-1/2}`` as ``eta -> 0``
(290 points at ``eta = 0.1`` on Holley–Stroock, 1560 at ``eta = 1e-3``); a grid beyond
``max_points`` (default ``2e4``) is refused, naming the step size and the size it would need.

**Support and lost mass.**  The grid spans the target's bracket (where ``V - min V < 60``: the
target's mass outside is ``< 1e-25``) and the start law's (``mean +- 12 sd`` for a normal start),
padded by ``12 sqrt(2 eta)``.  Every step the mass the kernel sends outside ``[lo, hi]`` is
computed exactly (``Phi`` tails of each Gaussian row) and accumulated as ``mass_lost``; when it
exceeds ``tol`` (``1e-12``) an automatic grid is widened and the run repeated, a given grid is
refused.  Laws are renormalised only after that check, so every metric is exact up to
``mass_lost`` (recorded on the law) plus rounding.  Mass that keeps leaving however wide the
grid is the chain escaping to infinity (LMC on the double well at ``eta = 1/16``): that is
refused with the escaping mass, which is the probability that a chain has left the grid by
step ``n`` (it matches the chains' frequency within its standard error); with a larger ``tol``
the law returned is that of the chains still on the grid.

**From the grid to the metrics** (all against a :class:`Density1D` reference, by default the
target; ``p`` normalised):

* ``KL = Delta sum_j p_j (log p_j - log pi(x_j))`` (trapezoid rule on a smooth integrand:
  spectral again).
* The CDF: ``p`` is band-limited on the grid (its spectrum at the Nyquist frequency is below
  ``exp(-pi^2 points_per_width^2 / 2)``), so it equals its sinc (Whittaker–Shannon) series and
  integrates exactly:

      F(x) = Delta sum_j p_j (1/2 + Si(pi (x - x_j) / Delta) / pi),

  ``1 - F`` by the mirrored sum (each tail keeps its own absolute precision, ``~1e-16``).
* ``W2^2 = ∫ (x - T(x))^2 p(x) dx`` with ``T = G^{-1} o F`` the monotone map onto the
  reference (``G^{-1}`` of ``F`` below the median, ``G``'s inverse survival function of ``1 - F``
  above), trapezoid rule on the grid.  ``W2`` is NOT squared.
* ``TV = (1/2) sum_I |P(I) - Pi(I)|`` over the intervals ``I`` between the crossings of ``p``
  and ``pi`` (each located to rounding by Brent's method on the sinc interpolant, wherever a
  sign change between grid points carries mass above ``1e-18``), with ``P(I)`` from the sinc CDF
  and ``Pi(I)`` from the reference's CDF: no kink is ever integrated by a quadrature rule.

**Separable targets in d dimensions.**  LMC on ``pi = p^{⊗d}`` started from an i.i.d. law moves
each coordinate as an independent 1-D chain, so the law is ``p_n^{⊗d}`` and exactly
``KL_d = d KL_1``, ``W2_d^2 = d W2_1^2``.  TV of a product is not a function of the marginal TV;
:meth:`GridLaw.product_tv_bounds` gives the exact bracket ``max(TV_1, 1 - BC^d) <= TV_d <=
min(1, d TV_1, sqrt(1 - BC^{2d}))`` from the Bhattacharyya coefficient ``BC = ∫ sqrt(p pi)``,
which does factorise.  PLMC's selections are shared by a chain's coordinates, so PLMC's
coordinates are dependent: its 1-D law here is the exact law of each coordinate (what a pooled
marginal metric measures), and the product formulas do not apply to it.

**PLMC with K = 2** (``h = eta/2``, one selectable index, ``H ~ Bernoulli(1/2)``; docs/method.md
section 3).  With ``H = 0`` the step is LMC's; with ``H = 1``, writing the interpolant
``Y = X - h V'(X) + sqrt(2h) Z_0`` and ``sqrt(2h) Z_0 = Y - X + h V'(X)``,

    X' = Y - eta V'(Y) + h V'(X) + sqrt(2h) Z_1,

so the transition density is
``(1/2) N(y; m(x), 2 eta) + (1/2) ∫ N(u; x - h V'(x), 2h) N(y; u - eta V'(u) + h V'(x), 2h) du``,
an exact 1-D integral over the interpolant, done on the same grid (trapezoid in ``u``; the
spacing rule takes ``s = sqrt(2h)`` and the slopes of both maps).  See docs/grid_law.md for what
is and is not exactly computable for larger ``K`` and for RLMC.

The API: :class:`Density1D` (a 1-D reference law: Gaussian, mixture or potential), its converter
:func:`density_1d` from the lab's targets, :func:`grid_laws` / :func:`lmc_grid_law` /
:func:`plmc_grid_law` returning :class:`GridLaw` objects, and :func:`grid_errors` (the metrics of
a d-dimensional separable target, refused by name where a target lacks what a metric needs).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.special import logsumexp, ndtr, ndtri, sici

from targets.validation import check_choice, check_int, check_positive, check_real

__all__ = ["Density1D", "density_1d", "GridLaw", "grid_laws", "lmc_grid_law", "plmc_grid_law", "grid_errors",
           "GRID_METRICS"]

#: The metrics :func:`grid_errors` computes.
GRID_METRICS = ("kl", "tv", "w2")

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_TAIL_Z = 11.5          # normal brackets: mean +- 11.5 sd (mass outside 1e-30)
_CUT = 13.0             # kernel rows are cut 13 sd from their centre (e^{-84.5} of the peak)
_CUT_PLMC = 10.0        # PLMC's two nested Gaussians: 10 sd each (e^{-50} of the peak)
_GL_NODES = 10


def _as_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# 1-D reference laws


class Density1D:
    """A 1-D law with exact ``log_pdf``, ``cdf``, ``sf`` (``1 - cdf`` with its own tail precision),
    quantiles, and the gradient of its potential ``V = -log pdf`` (what LMC needs).

    Build one with :meth:`gaussian`, :meth:`mixture` or :meth:`from_potential`, or from a lab
    target with :func:`density_1d`.  ``lower``, ``upper``: a bracket outside which the mass is
    below ``1e-25``.  Arrays in, float64 arrays out.
    """

    name: str = "density"
    lower: float
    upper: float

    # -- to implement --------------------------------------------------------------------------
    def log_pdf(self, x) -> np.ndarray:
        raise NotImplementedError

    def cdf(self, x) -> np.ndarray:
        raise NotImplementedError

    def sf(self, x) -> np.ndarray:
        raise NotImplementedError

    def grad_potential(self, x) -> np.ndarray:
        """``V'(x) = -(log pdf)'(x)``."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    def pdf(self, x) -> np.ndarray:
        return np.exp(self.log_pdf(x))

    def curvature(self, x) -> np.ndarray:
        """``V''(x)`` by central differences of :meth:`grad_potential` (step ``1e-5`` relative)."""
        x = _as_array(x)
        d = 1e-5 * max(1.0, self.upper - self.lower)
        return (self.grad_potential(x + d) - self.grad_potential(x - d)) / (2.0 * d)

    def _table(self):
        if getattr(self, "_tab", None) is None:
            t = np.linspace(self.lower, self.upper, 4097)
            self._tab = (t, self.cdf(t), self.sf(t))
        return self._tab

    def quantile(self, u) -> np.ndarray:
        """``G^{-1}(u)`` (``u`` in ``[0, 1]``; values beyond the bracket's are clamped to it)."""
        return self._invert(_as_array(u), upper=False)

    def isf(self, v) -> np.ndarray:
        """The point with survival probability ``v`` (``G^{-1}(1 - v)`` without forming ``1 - v``)."""
        return self._invert(_as_array(v), upper=True)

    def _invert(self, q: np.ndarray, upper: bool) -> np.ndarray:
        """Safeguarded Newton on the tabulated bracket: ``cdf(t) = q`` (or ``sf(t) = q``), to
        ``|residual| <= 1e-14 q`` or a step below ``1e-15 (1 + |t|)``."""
        t_tab, c_tab, s_tab = self._table()
        shape = q.shape
        q = q.reshape(-1)
        if upper:   # sf decreasing: search on -sf
            key = -s_tab
            j = np.searchsorted(key, -q, side="left") - 1
        else:
            key = c_tab
            j = np.searchsorted(key, q, side="right") - 1
        below = j < 0
        above = j >= t_tab.size - 1
        j = np.clip(j, 0, t_tab.size - 2)
        lo, hi = t_tab[j].copy(), t_tab[j + 1].copy()
        f0, f1 = (-s_tab[j], -s_tab[j + 1]) if upper else (c_tab[j], c_tab[j + 1])
        target = -q if upper else q
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(f1 > f0, (target - f0) / (f1 - f0), 0.5)
        t = lo + np.clip(frac, 0.0, 1.0) * (hi - lo)
        active = np.flatnonzero(~(below | above))
        for _ in range(100):
            if active.size == 0:
                break
            ta = t[active]
            val = self.sf(ta) if upper else self.cdf(ta)
            r = (q[active] - val) if upper else (val - q[active])        # increasing in t
            lo[active] = np.where(r <= 0, ta, lo[active])
            hi[active] = np.where(r > 0, ta, hi[active])
            dens = self.pdf(ta)
            with np.errstate(divide="ignore", invalid="ignore"):
                new = ta - r / dens
            ok = np.isfinite(new) & (new > lo[active]) & (new < hi[active])
            new = np.where(ok, new, 0.5 * (lo[active] + hi[active]))
            done = (np.abs(r) <= 1e-14 * q[active]) | (np.abs(new - ta) <= 1e-15 * (1.0 + np.abs(ta)))
            t[active] = np.where(np.abs(r) <= 1e-14 * q[active], ta, new)
            active = active[~done]
        t[below] = self.upper if upper else self.lower
        t[above] = self.lower if upper else self.upper
        return t.reshape(shape)

    # -- factories -----------------------------------------------------------------------------
    @staticmethod
    def gaussian(mean: float, var: float, name: Optional[str] = None) -> "Density1D":
        """``N(mean, var)``: closed-form CDF and quantiles (``ndtr``, ``ndtri``)."""
        return _Gaussian1D(check_real(mean, "mean"), check_real(var, "var", positive=True), name)

    @staticmethod
    def mixture(weights, means, sds, name: Optional[str] = None) -> "Density1D":
        """``sum_k w_k N(mu_k, sd_k^2)`` (weights normalised): closed-form CDF, Newton quantiles."""
        return _Mixture1D(weights, means, sds, name)

    @staticmethod
    def from_potential(potential: Callable, grad: Callable, *, center: float = 0.0, scale: float = 1.0,
                       bracket: Optional[tuple] = None, n_panels: int = 4096, name: Optional[str] = None) -> "Density1D":
        """``exp(-V)/Z`` from an elementwise ``potential`` ``V`` and its derivative ``grad`` (numpy
        arrays in and out): ``Z``, the CDF and the survival function by composite
        ``10``-point Gauss–Legendre over ``n_panels`` panels of the bracket (its error ``O(h^20)``;
        checked against a rule with half the panels).  ``bracket``: where ``V - min V < 60``
        (found from ``center``/``scale`` by doubling when not given)."""
        return _Potential1D(potential, grad, center=center, scale=scale, bracket=bracket, n_panels=n_panels,
                            name=name)

    def __repr__(self) -> str:
        return f"Density1D({self.name})"


class _Gaussian1D(Density1D):
    def __init__(self, mean: float, var: float, name: Optional[str]):
        self.mean, self.var = mean, var
        self.sd = math.sqrt(var)
        self.lower, self.upper = mean - _TAIL_Z * self.sd, mean + _TAIL_Z * self.sd
        self.name = name or f"N({mean:g}, {var:g})"

    def log_pdf(self, x):
        z = (_as_array(x) - self.mean) / self.sd
        return -0.5 * z * z - math.log(self.sd * _SQRT_2PI)

    def cdf(self, x):
        return ndtr((_as_array(x) - self.mean) / self.sd)

    def sf(self, x):
        return ndtr((self.mean - _as_array(x)) / self.sd)

    def grad_potential(self, x):
        return (_as_array(x) - self.mean) / self.var

    def curvature(self, x):
        return np.full_like(_as_array(x), 1.0 / self.var)

    def quantile(self, u):
        return self.mean + self.sd * ndtri(np.clip(_as_array(u), 0.0, 1.0))

    def isf(self, v):
        return self.mean - self.sd * ndtri(np.clip(_as_array(v), 0.0, 1.0))


class _Mixture1D(Density1D):
    def __init__(self, weights, means, sds, name: Optional[str]):
        w, m, s = (_as_array(a).reshape(-1) for a in (weights, means, sds))
        if not (w.size == m.size == s.size) or w.size == 0:
            raise ValueError(f"a 1-D mixture needs as many weights, means and sds, got {w.size}, {m.size}, {s.size}")
        if not (np.all(np.isfinite(w)) and np.all(w > 0) and np.all(np.isfinite(m)) and np.all(np.isfinite(s))
                and np.all(s > 0)):
            raise ValueError("a 1-D mixture needs finite weights > 0, finite means and finite sds > 0")
        self.w, self.m, self.s = w / w.sum(), m, s
        self.lower = float((m - _TAIL_Z * s).min())
        self.upper = float((m + _TAIL_Z * s).max())
        self.name = name or f"mixture of {w.size} normals"

    def _z(self, x):
        x = _as_array(x)
        return (x[..., None] - self.m) / self.s

    def log_pdf(self, x):
        z = self._z(x)
        return logsumexp(np.log(self.w) - 0.5 * z * z - np.log(self.s * _SQRT_2PI), axis=-1)

    def cdf(self, x):
        return (self.w * ndtr(self._z(x))).sum(-1)

    def sf(self, x):
        return (self.w * ndtr(-self._z(x))).sum(-1)

    def grad_potential(self, x):
        z = self._z(x)
        logits = np.log(self.w) - 0.5 * z * z - np.log(self.s)
        r = np.exp(logits - logits.max(-1, keepdims=True))
        r /= r.sum(-1, keepdims=True)
        return (r * z / self.s).sum(-1)


class _Potential1D(Density1D):
    def __init__(self, potential, grad, *, center, scale, bracket, n_panels, name):
        if not callable(potential) or not callable(grad):
            raise ValueError("from_potential needs callable potential and grad (numpy arrays in and out)")
        self.V, self.dV = potential, grad
        self.name = name or "exp(-V)/Z"
        n_panels = check_int(n_panels, "n_panels", 16)
        if bracket is None:
            center = check_real(center, "center")
            scale = check_real(scale, "scale", positive=True)
            radius = 4.0 * scale
            while True:
                g = np.linspace(center - radius, center + radius, 4097)
                v = _as_array(potential(g))
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"the potential is not finite on [{g[0]:g}, {g[-1]:g}]")
                inside = (v - v.min()) < 60.0
                if not inside[0] and not inside[-1]:
                    break
                radius *= 2.0
                if radius > 1e8 * scale:
                    raise ValueError(f"the potential does not grow by 60 within {radius:g} of {center:g}")
            idx = np.flatnonzero(inside)
            bracket = (g[max(idx[0] - 1, 0)], g[min(idx[-1] + 1, g.size - 1)])
        lo, hi = (check_real(b, "bracket") for b in bracket)
        if not hi > lo:
            raise ValueError(f"bracket must have lower < upper, got {bracket!r}")
        self.lower, self.upper = lo, hi
        self.n_panels = n_panels
        self.h = (hi - lo) / n_panels
        xg, wg = np.polynomial.legendre.leggauss(_GL_NODES)
        self._xg, self._wg = xg, wg
        edges = lo + self.h * np.arange(n_panels + 1)
        v_nodes = self._v_at(edges[:-1, None] + 0.5 * self.h * (xg + 1.0))
        self._vmin = float(v_nodes.min())
        masses = (np.exp(-(v_nodes - self._vmin)) * (0.5 * self.h * wg)).sum(1)
        z_rel = float(masses.sum())
        # the same integral with half the panels: the rule's error, checked
        v2 = self._v_at(edges[:-1:2, None] + self.h * (xg + 1.0))
        z_half = float((np.exp(-(v2 - self._vmin)) * (self.h * wg)).sum()) if n_panels % 2 == 0 else z_rel
        self.normalizer_error = abs(z_half - z_rel) / z_rel
        if self.normalizer_error > 1e-12:
            raise ValueError(f"{self.name}: {n_panels} Gauss-Legendre panels leave a relative error "
                             f"{self.normalizer_error:.2g} in the normaliser; pass more n_panels")
        self.log_normalizer = math.log(z_rel) - self._vmin
        self._z_rel = z_rel
        self._edges = edges
        self._left = np.concatenate([[0.0], np.cumsum(masses)]) / z_rel
        self._right = np.concatenate([np.cumsum(masses[::-1])[::-1], [0.0]]) / z_rel

    def _v_at(self, x):
        v = _as_array(self.V(np.ascontiguousarray(x).reshape(-1))).reshape(np.shape(x))
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{self.name}: the potential is not finite on its bracket")
        return v

    def log_pdf(self, x):
        x = _as_array(x)
        return -_as_array(self.V(x.reshape(-1))).reshape(x.shape) - self.log_normalizer

    def grad_potential(self, x):
        x = _as_array(x)
        return _as_array(self.dV(x.reshape(-1))).reshape(x.shape)

    def _partial(self, a, b):
        """``∫_a^b p`` by one Gauss–Legendre panel (``b - a <= h``)."""
        nodes = 0.5 * (a + b)[:, None] + 0.5 * (b - a)[:, None] * self._xg
        f = np.exp(-(self._v_at(nodes) - self._vmin)) * self._wg
        return 0.5 * (b - a) * f.sum(1) / self._z_rel

    def _locate(self, x):
        x = _as_array(x).reshape(-1)
        xc = np.clip(x, self.lower, self.upper)
        i = np.clip(np.floor((xc - self.lower) / self.h).astype(np.int64), 0, self.n_panels - 1)
        return x, xc, i

    def cdf(self, x):
        shape = np.shape(x)
        x, xc, i = self._locate(x)
        out = self._left[i] + self._partial(self._edges[i], xc)
        out = np.where(x <= self.lower, 0.0, np.where(x >= self.upper, 1.0, out))
        return out.reshape(shape)

    def sf(self, x):
        shape = np.shape(x)
        x, xc, i = self._locate(x)
        out = self._right[i + 1] + self._partial(xc, self._edges[i + 1])
        out = np.where(x <= self.lower, 1.0, np.where(x >= self.upper, 0.0, out))
        return out.reshape(shape)


def _torch_1d(fn):
    import torch

    def wrapped(x):
        return fn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).detach().cpu().double().numpy()

    return wrapped


def density_1d(target, metric: str = "the grid law") -> Density1D:
    """The 1-D law a grid computation runs on, from a lab target, or ValueError naming ``metric``,
    the target and what it lacks.

    * a :class:`Density1D`: itself;
    * ``targets.QuadratureSeparableTarget`` (``HolleyStroock``, ``DoubleWell``; any ``dim``): its
      per-coordinate law ``exp(-potential_1d)/Z`` (own Gauss–Legendre tables on the target's
      quadrature bracket);
    * ``targets.GaussianMixture`` with ``dim = 1``: the closed-form mixture;
    * ``targets.Gaussian`` with ``dim = 1``: the closed-form normal.
    """
    if isinstance(target, Density1D):
        return target
    from targets import Gaussian, GaussianMixture, QuadratureSeparableTarget

    if isinstance(target, QuadratureSeparableTarget):
        q = target.quadrature
        return Density1D.from_potential(_torch_1d(target.potential_1d), _torch_1d(target.grad_potential_1d),
                                        bracket=(q.lower, q.upper), name=f"{target!r} (one coordinate)")
    dim = getattr(target, "dim", None)
    if isinstance(target, GaussianMixture):
        if dim != 1:
            raise ValueError(f"{metric} needs a 1-D law; {target!r} has dim={dim} and is not separable "
                             "(a mixture's coordinates are dependent): use dim=1")
        sds = target.covs.detach().cpu().double().reshape(-1).sqrt().numpy()
        return Density1D.mixture(target.weights.detach().cpu().double().numpy(),
                                 target.means.detach().cpu().double().reshape(-1).numpy(), sds, name=repr(target))
    if isinstance(target, Gaussian):
        if dim != 1:
            raise ValueError(f"{metric} needs a 1-D law; {target!r} has dim={dim} (use metrics.exact_laws, exact "
                             "for Gaussians in any dimension)")
        return Density1D.gaussian(float(target.mean.reshape(-1)[0]), float(target.cov.reshape(-1)[0]), name=repr(target))
    raise ValueError(f"{metric} needs a 1-D law (a Density1D, a separable target with potential_1d and its "
                     f"quadrature, or a 1-D GaussianMixture or Gaussian); {type(target).__name__} "
                     f"{target!r} has none")


# ------------------------------------------------------------------------------------------------
# the grid and the propagation


def _init_law(init, ref: Density1D):
    """``(pdf, law or None, scale or None)`` of the start: ``law`` is a :class:`Density1D` other
    than the target, ``scale`` a normal start's sd."""
    if isinstance(init, str):
        check_choice(init, "init", ("target",))
        return ref.pdf, None, None
    if isinstance(init, Density1D):
        return init.pdf, init, None
    if isinstance(init, tuple) and len(init) == 3 and init[0] == "normal":
        mean = check_real(init[1], "init mean")
        var = check_real(init[2], "init var", positive=True)
        g = Density1D.gaussian(mean, var)
        return g.pdf, g, math.sqrt(var)
    if callable(init):
        return init, None, None
    raise ValueError(f"init must be 'target', ('normal', mean, var), a Density1D or a callable pdf, got {init!r}")


@dataclass
class _Plan:
    lo: float
    hi: float
    n: int
    spacing: float
    slope: float       # M'
    auto: bool


def _plan(ref: Density1D, init: Optional[Density1D], init_scale, eta: float, K: int, grid, ppw: float,
          max_points: int) -> _Plan:
    s_min = math.sqrt(2.0 * eta / K)
    lo, hi = ref.lower, ref.upper
    if init is not None:
        lo, hi = min(lo, init.lower), max(hi, init.upper)
    # the slopes and curvatures that set the spacing count where the target or the start has mass
    # (density above 1e-16 of its peak); beyond, an integrand 1e-16 smaller tolerates a spacing
    # several times too coarse for it without any visible error
    probe = np.linspace(lo, hi, 8193)
    logp = ref.log_pdf(probe)
    region = logp >= logp.max() - 37.0
    if init is not None:
        logq = init.log_pdf(probe)
        region |= logq >= logq.max() - 37.0
    curv = ref.curvature(probe[region])
    if not np.all(np.isfinite(curv)):
        raise ValueError(f"V'' of {ref.name} is not finite on [{lo:g}, {hi:g}]")
    slope = max(1.0, float(np.abs(1.0 - eta * curv).max()))
    if K == 2:
        slope = max(slope, float(np.abs(1.0 - 0.5 * eta * curv).max()))
    scales = [s_min / slope, 1.0 / math.sqrt(max(float(np.abs(curv).max()), 1e-300))]
    if init_scale is not None:
        scales.append(init_scale)
    need = min(scales) / ppw
    if grid is not None:
        if not (isinstance(grid, (tuple, list)) and len(grid) == 3):
            raise ValueError(f"grid must be (lo, hi, n_points), got {grid!r}")
        glo, ghi = check_real(grid[0], "grid lo"), check_real(grid[1], "grid hi")
        n = check_int(grid[2], "grid n_points", 16)
        if not ghi > glo:
            raise ValueError(f"grid needs lo < hi, got lo={glo!r}, hi={ghi!r}")
        spacing = (ghi - glo) / (n - 1)
        if spacing > need * (1.0 + 1e-9):
            raise ValueError(f"grid spacing {spacing:.4g} is too coarse for step_size={eta:g}: it must be <= {need:.4g} "
                             f"(n_points >= {math.ceil((ghi - glo) / need) + 1} over [{glo:g}, {ghi:g}])")
        return _Plan(glo, ghi, n, spacing, slope, False)
    pad = 12.0 * math.sqrt(2.0 * eta)
    lo, hi = lo - pad, hi + pad
    n = math.ceil((hi - lo) / need) + 1
    if n > max_points:
        raise ValueError(f"step_size={eta:g} needs a grid of {n} points over [{lo:.3g}, {hi:.3g}] (spacing <= "
                         f"sqrt(2 eta/K)/(points_per_width M') = {need:.3g}), more than max_points={max_points}")
    return _Plan(lo, hi, n, (hi - lo) / (n - 1), slope, True)


def _outside(center, sd, lo, hi):
    """Mass of ``N(center, sd^2)`` outside ``[lo, hi]``: (below, above)."""
    return ndtr((lo - center) / sd), ndtr((center - hi) / sd)


def _band(centers, sd, x0, dx, n, cut=_CUT):
    """Column indices ``[m, W]`` (``-1`` where off the grid) within ``cut sd`` of each centre."""
    W = int(math.floor(2.0 * cut * sd / dx)) + 2
    k0 = np.ceil((centers - cut * sd - x0) / dx).astype(np.int64)
    cols = k0[:, None] + np.arange(W)[None, :]
    return np.where((cols >= 0) & (cols < n), cols, -1)


def _gauss_rows(centers, sd, x, dx):
    """Sparse ``[m, n]``: ``dx N(x_k; centers_j, sd^2)`` within the band."""
    n = x.size
    cols = _band(centers, sd, x[0], dx, n)
    valid = cols >= 0
    z = (x[np.where(valid, cols, 0)] - centers[:, None]) / sd
    vals = np.where(valid, dx * np.exp(-0.5 * z * z) / (sd * _SQRT_2PI), 0.0)
    rows = np.broadcast_to(np.arange(centers.size)[:, None], cols.shape)
    return sp.csr_matrix((vals[valid], (rows[valid], cols[valid])), shape=(centers.size, n))


def _lmc_kernel(ref: Density1D, eta: float, x: np.ndarray, dx: float):
    """``(K [n, n] sparse, lost_below [n], lost_above [n])`` of one LMC step from each grid point."""
    s = math.sqrt(2.0 * eta)
    m = x - eta * ref.grad_potential(x)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"V' of {ref.name} is not finite on the grid")
    below, above = _outside(m, s, x[0], x[-1])
    return _gauss_rows(m, s, x, dx), below, above


def _plmc2_kernel(ref: Density1D, eta: float, x: np.ndarray, dx: float, chunk_work: int = 1_000_000):
    """The K = 2 PLMC step (module docstring): half LMC, half the interpolant integral."""
    n = x.size
    h = 0.5 * eta
    s1 = math.sqrt(2.0 * h)
    g = ref.grad_potential(x)
    if not np.all(np.isfinite(g)):
        raise ValueError(f"V' of {ref.name} is not finite on the grid")
    K_lmc, b_l, a_l = _lmc_kernel(ref, eta, x, dx)
    mu = x - h * g                       # interpolant's centre from x_j
    shift = h * g                        # + h V'(x_j) in the final centre
    a_map = x - eta * g                  # u -> u - eta V'(u) at the interpolant's grid points u = x_l
    ycols = _band(mu, s1, x[0], dx, n, _CUT_PLMC)   # [n, Wy]
    Wy = ycols.shape[1]
    Wx = int(math.floor(2.0 * _CUT_PLMC * s1 / dx)) + 2
    rows_per = max(1, chunk_work // (Wy * Wx))
    lost_b = 0.5 * b_l
    lost_a = 0.5 * a_l
    yb, ya = _outside(mu, s1, x[0], x[-1])
    lost_b = lost_b + 0.5 * yb
    lost_a = lost_a + 0.5 * ya
    blocks = []
    for r0 in range(0, n, rows_per):
        r1 = min(n, r0 + rows_per)
        yc = ycols[r0:r1]
        yv = yc >= 0
        yi = np.where(yv, yc, 0)
        zy = (x[yi] - mu[r0:r1, None]) / s1
        wy = np.where(yv, dx * np.exp(-0.5 * zy * zy) / (s1 * _SQRT_2PI), 0.0)          # [m, Wy]
        cen = a_map[yi] + shift[r0:r1, None]                                            # [m, Wy]
        ob, oa = _outside(cen, s1, x[0], x[-1])
        lost_b[r0:r1] += 0.5 * (wy * ob).sum(1)
        lost_a[r0:r1] += 0.5 * (wy * oa).sum(1)
        k0 = np.ceil((cen - _CUT_PLMC * s1 - x[0]) / dx).astype(np.int64)
        kc = k0[:, :, None] + np.arange(Wx)                                             # [m, Wy, Wx]
        kv = (kc >= 0) & (kc < n) & yv[:, :, None]
        zx = (x[np.where(kv, kc, 0)] - cen[:, :, None]) / s1
        vals = np.where(kv, (0.5 * dx) * wy[:, :, None] * np.exp(-0.5 * zx * zx) / (s1 * _SQRT_2PI), 0.0)
        m = r1 - r0
        flat = (np.arange(m)[:, None, None] * n + np.where(kv, kc, 0)).reshape(-1)
        dense = np.bincount(flat, weights=vals.reshape(-1), minlength=m * n).reshape(m, n)
        blocks.append(sp.csr_matrix(dense))
    K_sel = sp.vstack(blocks, format="csr")
    return 0.5 * K_lmc + K_sel, lost_b, lost_a


# ------------------------------------------------------------------------------------------------
# the law on the grid


def _sinc_weights(n: int) -> np.ndarray:
    """``w_m = 1/2 + Si(pi m)/pi`` for ``m = -(n-1) .. n-1``."""
    m = np.arange(-(n - 1), n, dtype=np.float64)
    return 0.5 + sici(np.pi * m)[0] / np.pi


@dataclass
class GridLaw:
    """The exact law of a 1-D chain after ``n_steps`` steps, as density values on a uniform grid.

    x:             ``[n]`` grid points ``lo + j spacing``.
    density:       ``[n]`` the density at ``x`` (normalised: ``spacing * sum = 1``).
    reference:     the :class:`Density1D` the chain targets; the default for every metric.
    mass_lost:     mass sent outside the grid over all steps (exact accounting; ``<= tol``),
                   the bound on every metric's error from the truncation.
    slope:         ``M' = max(1, max |1 - eta V''|)`` (and ``|1 - (eta/2) V''|`` for PLMC) that set
                   the spacing.
    iid_product:   whether the d-dimensional chain is the product of such 1-D chains (LMC from an
                   i.i.d. start), so that :meth:`product_errors` applies.
    """

    method: str
    step_size: float
    K: Optional[int]
    n_steps: int
    x: np.ndarray
    density: np.ndarray
    spacing: float
    reference: Density1D
    mass_lost: float
    slope: float
    points_per_width: float
    iid_product: bool
    _cache: dict = field(default_factory=dict, repr=False)

    # -- the law itself ------------------------------------------------------------------------
    def _cum(self):
        """``(F, S)`` at the grid points: the sinc series' exact cumulative sums (module docstring)."""
        if "cum" not in self._cache:
            n = self.x.size
            w = _sinc_weights(n)
            p = self.density * self.spacing
            F = np.convolve(p, w)[n - 1:2 * n - 1]          # sum_j p_j w_{k - j}
            S = np.convolve(p, w[::-1])[n - 1:2 * n - 1]    # sum_j p_j w_{j - k}
            self._cache["cum"] = (np.clip(F, 0.0, 1.0), np.clip(S, 0.0, 1.0))
        return self._cache["cum"]

    def _sinc_eval(self, t: np.ndarray, cumulative: bool) -> np.ndarray:
        t = _as_array(t)
        out = np.empty(t.size)
        flat = t.reshape(-1)
        p = self.density * self.spacing
        for i in range(0, flat.size, 256):
            u = (flat[i:i + 256, None] - self.x[None, :]) / self.spacing
            if cumulative:
                out[i:i + 256] = (p * (0.5 + sici(np.pi * u)[0] / np.pi)).sum(1)
            else:
                out[i:i + 256] = (self.density * np.sinc(u)).sum(1)
        return out.reshape(t.shape)

    def pdf(self, t) -> np.ndarray:
        """The density anywhere on ``[lo, hi]`` (sinc interpolation of the grid values; 0 outside)."""
        t = _as_array(t)
        inside = (t >= self.x[0]) & (t <= self.x[-1])
        return np.where(inside, np.maximum(self._sinc_eval(t, False), 0.0), 0.0)

    def cdf(self, t) -> np.ndarray:
        """``P(X <= t)`` (exact integral of the sinc series)."""
        return np.clip(self._sinc_eval(_as_array(t), True), 0.0, 1.0)

    def moment(self, k: int) -> float:
        """``E[X^k]`` (trapezoid rule on the grid: spectrally accurate)."""
        k = check_int(k, "k", 0)
        return float(self.spacing * np.sum(self.density * self.x**k))

    def mean(self) -> float:
        return self.moment(1)

    def var(self) -> float:
        mu = self.mean()
        return float(self.spacing * np.sum(self.density * (self.x - mu) ** 2))

    # -- distances -----------------------------------------------------------------------------
    def _ref(self, reference) -> Density1D:
        return self.reference if reference is None else density_1d(reference)

    def kl(self, reference=None) -> float:
        """``KL(law || reference)`` (trapezoid rule on ``p log(p / pi)``)."""
        ref = self._ref(reference)
        p = self.density
        pos = p > 0
        terms = np.zeros_like(p)
        terms[pos] = p[pos] * (np.log(p[pos]) - ref.log_pdf(self.x[pos]))
        return float(self.spacing * terms.sum())

    def bhattacharyya(self, reference=None) -> float:
        """``BC = ∫ sqrt(p pi)`` (it factorises over the coordinates of a product law)."""
        ref = self._ref(reference)
        return float(self.spacing * np.sum(np.sqrt(self.density) * np.exp(0.5 * ref.log_pdf(self.x))))

    def w2(self, reference=None) -> float:
        """``W2`` (NOT squared) to the reference: ``∫ (x - G^{-1}(F(x)))^2 p(x) dx`` on the grid."""
        if reference is None and "w2" in self._cache:
            return self._cache["w2"]
        ref = self._ref(reference)
        F, S = self._cum()
        low = F <= S
        T = np.empty_like(F)
        T[low] = ref.quantile(np.maximum(F[low], 1e-300))
        T[~low] = ref.isf(np.maximum(S[~low], 1e-300))
        w2 = math.sqrt(max(float(self.spacing * np.sum(self.density * (self.x - T) ** 2)), 0.0))
        if reference is None:
            self._cache["w2"] = w2
        return w2

    def tv(self, reference=None) -> float:
        """``TV = sup_A |P(A) - Pi(A)|`` from the crossings of ``p`` and ``pi`` (module docstring)."""
        ref = self._ref(reference)
        p = self.density
        q = ref.pdf(self.x)
        g = p - q
        big = np.maximum(np.abs(p), np.abs(q))
        floor = 1e-18 * max(float(big.max()), 1e-300)
        s = np.sign(g)
        cells = np.flatnonzero((s[:-1] * s[1:] < 0) & (np.maximum(big[:-1], big[1:]) > floor))
        roots = []

        def f(t: float) -> float:
            return float(self.pdf(np.array([t]))[0] - ref.pdf(np.array([t]))[0])

        for j in cells:
            a, b = self.x[j], self.x[j + 1]
            fa, fb = f(a), f(b)
            if fa == 0.0:
                roots.append(a)
            elif fa * fb < 0:
                roots.append(brentq(f, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200))
            else:   # the interpolant disagrees with the grid values in sign: keep the grid cell's middle
                roots.append(0.5 * (a + b))
        r = np.asarray(roots)
        if r.size == 0:
            return 0.0
        # P and Pi of the intervals between consecutive crossings (first and last unbounded)
        Fc = self.cdf(r)
        Gc = np.where(ref.cdf(r) <= 0.5, ref.cdf(r), 1.0 - ref.sf(r))
        Fe = np.concatenate([[0.0], Fc, [1.0]])
        Ge = np.concatenate([[0.0], Gc, [1.0]])
        return float(0.5 * np.abs(np.diff(Fe) - np.diff(Ge)).sum())

    # -- d-dimensional separable targets -------------------------------------------------------
    def product_tv_bounds(self, dim: int, reference=None) -> tuple[float, float]:
        """Exact bounds on ``TV(p^{⊗d}, pi^{⊗d})``: ``max(TV_1, 1 - BC^d)`` and
        ``min(1, d TV_1, sqrt(1 - BC^{2d}))`` (``BC`` the Bhattacharyya coefficient)."""
        dim = check_int(dim, "dim", 1)
        tv1 = self.tv(reference)
        bc = min(1.0, self.bhattacharyya(reference))
        return max(tv1, 1.0 - bc**dim), min(1.0, dim * tv1, math.sqrt(max(0.0, 1.0 - bc ** (2 * dim))))

    def product_errors(self, dim: int, metrics: Sequence[str] = GRID_METRICS, reference=None) -> dict:
        """The metrics of the d-dimensional product law (module docstring): ``kl = d KL_1``,
        ``w2 = sqrt(d) W2_1``, ``tv`` = the marginal TV with ``tv_bounds`` for the product."""
        dim = check_int(dim, "dim", 1)
        for m in metrics:
            check_choice(m, "grid metric", GRID_METRICS)
        if dim > 1 and not self.iid_product and any(m in ("kl", "w2") for m in metrics):
            raise ValueError(f"metric kl/w2 of the {dim}-dimensional law: {self.method} with these settings does not "
                             "move the coordinates independently (PLMC shares its selections; a non-i.i.d. start), "
                             "so only the 1-D marginal is exact")
        out: dict = {"dim": dim}
        if "kl" in metrics:
            out["kl"] = dim * self.kl(reference)
        if "w2" in metrics:
            out["w2"] = math.sqrt(dim) * self.w2(reference)
        if "tv" in metrics:
            out["tv_marginal"] = self.tv(reference)
            if dim > 1 and self.iid_product:
                out["tv_bounds"] = self.product_tv_bounds(dim, reference)
        return out


def _resolve_method(method: str, K) -> int:
    method = check_choice(method, "grid method", ("lmc", "plmc"))
    if method == "lmc":
        if K is not None:
            raise ValueError(f"method 'lmc' takes no K, got K={K!r}")
        return 1
    if K is None:
        raise ValueError("method 'plmc' needs K (1 or 2 on the grid)")
    K = check_int(K, "K", 1)
    if K > 2:
        raise ValueError(f"K={K}: PLMC's law is exact on a 1-D grid only for K <= 2 (a step with N selections is an "
                         "(N+1)-dimensional integral; docs/grid_law.md)")
    return K


def grid_laws(method: str, target, step_size: float, steps: Sequence[int], *, K: Optional[int] = None,
              init: Union[str, tuple, Density1D, Callable] = "target", grid=None, points_per_width: float = 3.0,
              tol: float = 1e-12, max_points: int = 20000) -> list[GridLaw]:
    """The exact 1-D laws of ``method`` (``"lmc"``, or ``"plmc"`` with ``K`` 1 or 2) after each of
    ``steps`` steps of ``step_size`` on ``target`` (a :class:`Density1D` or a lab target accepted by
    :func:`density_1d`).

    init: ``"target"`` (the lab's default start: exact target samples), ``("normal", mean, var)``
          (``("normal", 0, 1)`` is :func:`samplers.sample`'s default ``N(0, I)`` start), a
          :class:`Density1D`, or a callable pdf on numpy arrays (normalised on the grid; the grid
          must resolve it: pass ``grid`` if it is narrower than the target).
    grid: ``None`` (automatic, module docstring; widened while the lost mass exceeds ``tol``) or
          ``(lo, hi, n_points)`` (refused if coarser than the spacing rule or if it loses more
          than ``tol``).
    All inputs are checked before any work; a bad one raises ValueError naming it.
    """
    K_eff = _resolve_method(method, K)
    eta = check_positive(step_size, "step_size")
    if isinstance(steps, (numbers.Integral,)) or not hasattr(steps, "__iter__"):
        raise ValueError(f"steps must be a sequence of step counts, got {steps!r}")
    steps = [check_int(s, "n_steps", 0) for s in steps]
    if not steps:
        raise ValueError("steps is empty")
    ppw = check_real(points_per_width, "points_per_width", minimum=1.0)
    tol = check_real(tol, "tol", positive=True)
    max_points = check_int(max_points, "max_points", 16)
    ref = density_1d(target, f"the {method} grid law")
    init_pdf, init_law, init_scale = _init_law(init, ref)
    plan = _plan(ref, init_law, init_scale, eta, K_eff, grid, ppw, max_points)
    iid = K_eff == 1
    name = "lmc" if K_eff == 1 else "plmc"
    previous = math.inf
    for _attempt in range(8):
        x = plan.lo + plan.spacing * np.arange(plan.n)
        kern, lost_b, lost_a = (_lmc_kernel if K_eff == 1 else _plmc2_kernel)(ref, eta, x, plan.spacing)
        KT = kern.T.tocsr()
        p = np.maximum(_as_array(init_pdf(x)).reshape(-1), 0.0)
        if p.shape != x.shape or not np.all(np.isfinite(p)):
            raise ValueError("init pdf must return finite values of the grid's shape")
        mass0 = plan.spacing * p.sum()
        if not mass0 > 0:
            raise ValueError("init pdf has no mass on the grid")
        p = p / mass0
        # the start's mass in the outermost cells, then the mass sent below / above the grid
        lost = [plan.spacing * float(p[:3].sum() + p[-3:].sum()), 0.0, 0.0]
        snaps: dict[int, tuple] = {}
        done = 0
        for target_step in sorted(set(steps)):
            while done < target_step:
                lost[1] += plan.spacing * float(p @ lost_b)
                lost[2] += plan.spacing * float(p @ lost_a)
                p = KT @ p
                done += 1
            snaps[target_step] = (p.copy(), sum(lost))
        total = sum(lost)
        if total <= tol:
            break
        where = f"(below {lost[1]:.2g}, above {lost[2]:.2g}, the start's edges {lost[0]:.2g})"
        if not plan.auto:
            raise ValueError(f"grid [{plan.lo:g}, {plan.hi:g}] loses mass {total:.3g} > tol={tol:g} over {max(steps)} "
                             f"steps {where}: widen it")
        if total > 0.1 * previous:
            raise ValueError(f"step_size={eta:g}: {name} sends mass {total:.3g} > tol={tol:g} beyond every grid tried "
                             f"{where}, up to [{plan.lo:.3g}, {plan.hi:.3g}]: the chain escapes (diverges) with about "
                             "that probability; pass a larger tol to accept it")
        previous = total
        width = plan.hi - plan.lo
        lo = plan.lo - (0.25 * width if lost[1] + lost[0] > tol / 3 else 0.0)
        hi = plan.hi + (0.25 * width if lost[2] + lost[0] > tol / 3 else 0.0)
        n = math.ceil((hi - lo) / plan.spacing) + 1
        if n > max_points:
            raise ValueError(f"step_size={eta:g}: the grid loses mass {total:.3g} > tol={tol:g} {where} and widening "
                             f"it needs {n} points, more than max_points={max_points}")
        plan = _Plan(lo, hi, n, (hi - lo) / (n - 1), plan.slope, True)
    else:
        raise ValueError(f"step_size={eta:g}: the grid still loses mass {total:.3g} > tol={tol:g} after widening")
    out: list[GridLaw] = []
    for s in steps:
        dens, lost_s = snaps[s]
        dens = dens / (plan.spacing * dens.sum())
        out.append(GridLaw(name, eta, None if name == "lmc" else K_eff, s, x, dens, plan.spacing, ref, lost_s,
                           plan.slope, ppw, iid))
    return out


def lmc_grid_law(target, step_size: float, n_steps: int, **kw) -> GridLaw:
    """The exact 1-D law of LMC after ``n_steps`` steps (:func:`grid_laws`)."""
    return grid_laws("lmc", target, step_size, [check_int(n_steps, "n_steps", 0)], **kw)[0]


def plmc_grid_law(target, step_size: float, n_steps: int, K: int = 2, **kw) -> GridLaw:
    """The exact 1-D law of PLMC with ``K`` in ``{1, 2}`` after ``n_steps`` steps (:func:`grid_laws`)."""
    return grid_laws("plmc", target, step_size, [check_int(n_steps, "n_steps", 0)], K=K, **kw)[0]


def grid_errors(target, step_size: float, n_steps: int, *, method: str = "lmc", K: Optional[int] = None,
                metrics: Sequence[str] = GRID_METRICS, init="target", **grid_kw) -> dict:
    """The exact metrics of ``method`` after ``n_steps`` on ``target`` in its own dimension.

    A separable target in ``d`` dimensions (``HolleyStroock``, ``DoubleWell``) gives, for LMC from
    an i.i.d. start, ``kl = d KL_1``, ``w2 = sqrt(d) W2_1``, ``tv_marginal`` and ``tv_bounds`` (no
    closed form for the product's TV: :meth:`GridLaw.product_tv_bounds`).  A target without a 1-D
    law for the metric (a mixture or Gaussian with ``dim > 1``, a non-separable target), or PLMC's
    KL/W2 in ``d > 1`` (its coordinates are dependent), is refused with a ValueError naming the
    metric, the target and what is missing, before any work.
    """
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty")
    for m in metrics:
        check_choice(m, "grid metric", GRID_METRICS)
    dim = getattr(target, "dim", 1)
    for m in metrics:
        density_1d(target, f"metric {m!r} on the grid")
    K_eff = _resolve_method(method, K)
    if dim > 1 and K_eff == 2:
        for m in metrics:
            if m in ("kl", "w2"):
                raise ValueError(f"metric {m!r} of plmc (K=2) on {target!r}: PLMC shares its selections across the "
                                 f"{dim} coordinates, so its law is not the product of its 1-D laws; only the "
                                 "marginal is exact (use grid_laws and the 1-D metrics)")
    law = grid_laws(method, target, step_size, [n_steps], K=K, init=init, **grid_kw)[0]
    out = law.product_errors(dim, metrics)
    out.update(mass_lost=law.mass_lost, n_grid=law.x.size, spacing=law.spacing)
    return out

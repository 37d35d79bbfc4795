"""The lab's input checks, shared by targets, samplers, metrics and labs.

Every check returns the normalised value or raises ``ValueError`` with a message that names the
offending value, before any work starts.  ``targets`` is the package every other one builds on,
so the checks live here and the other packages import them from ``targets.validation``.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_real",
    "check_positive",
    "check_probability",
    "check_choice",
    "check_dtype",
    "check_device",
    "check_n_samples",
    "resolve_dtype_device",
    "as_float64_cpu",
    "check_spd",
    "check_same_dtype",
]


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    value,
    name: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    minimum: Optional[float] = None,
) -> float:
    """``value`` as a finite float, or ValueError (optionally also > 0, >= 0 or >= minimum)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not out > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and not out >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if minimum is not None and not out >= minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def check_positive(value, name: str) -> float:
    """``value`` as a float, or ValueError unless it is a finite real number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return out


def check_probability(value, name: str = "level") -> float:
    """``value`` as a float in the open interval (0, 1), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a probability in (0, 1), got {value!r}")
    return float(value)


def check_choice(value, name: str, known) -> str:
    """``value`` if it is one of ``known``, else ValueError listing them."""
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    return value


def check_dtype(dtype) -> torch.dtype:
    """``dtype`` if it is a floating ``torch.dtype``, else ValueError."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device``; ValueError for an unknown one, or CUDA without CUDA."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def check_n_samples(n) -> int:
    return check_int(n, "n (the number of samples)", minimum=0)


def resolve_dtype_device(dtype, device, *like) -> tuple[torch.dtype, torch.device]:
    """Pick the dtype/device of a new target.

    ``dtype``: as given; else the dtype of the first floating torch tensor in ``like``; else
    float64.  ``device``: as given; else the device of the first torch tensor in ``like``;
    else the CPU.
    """
    if dtype is None:
        dtype = next(
            (v.dtype for v in like if isinstance(v, torch.Tensor) and v.is_floating_point()),
            torch.float64,
        )
    check_dtype(dtype)
    if device is None:
        device = next((v.device for v in like if isinstance(v, torch.Tensor)), torch.device("cpu"))
    return dtype, torch.device(device)


def as_float64_cpu(value, name: str) -> torch.Tensor:
    """``value`` (tensor, array, list or number) as a float64 CPU tensor, or ValueError."""
    try:
        if isinstance(value, torch.Tensor):
            out = value.detach().to(device="cpu", dtype=torch.float64)
        else:
            out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be an array of real numbers, got {value!r} ({err})") from None
    return out


def _input_rtol(value) -> float:
    """Relative symmetry tolerance, loose enough for rounding in the input's precision."""
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16, torch.float32):
        return 1e-4
    if isinstance(value, np.ndarray) and value.dtype in (np.float16, np.float32):
        return 1e-4
    return 1e-9


def check_spd(cov_raw, cov: torch.Tensor, dim: int, name: str = "cov") -> torch.Tensor:
    """Check that ``cov`` (float64 CPU, ``[..., dim, dim]``) is symmetric positive definite.

    ``cov_raw`` is the user's original object (used only to choose the symmetry tolerance).
    Symmetric means ``max|C - C^T| <= rtol * max|C|`` with ``rtol = 1e-9`` (``1e-4`` for
    float32/float16 input).  Positive definite means the smallest eigenvalue is ``> 0`` and not
    below ``dim * eps_float64 * (largest eigenvalue)`` (numerically singular), and the Cholesky
    factorisation succeeds.  Returns the symmetrised ``0.5 (C + C^T)``.
    """
    if cov.ndim < 2 or cov.shape[-1] != dim or cov.shape[-2] != dim:
        raise ValueError(
            f"{name} has shape {tuple(cov.shape)}, expected (..., {dim}, {dim}) to match the "
            f"dimension {dim}"
        )
    if not torch.isfinite(cov).all():
        bad = int((~torch.isfinite(cov)).sum())
        raise ValueError(f"{name} must be finite: it contains {bad} non-finite entries (NaN or inf)")
    scale = cov.abs().amax(dim=(-2, -1))
    asym = (cov - cov.transpose(-1, -2)).abs().amax(dim=(-2, -1))
    rtol = _input_rtol(cov_raw)
    asym_bad = asym > rtol * scale
    if asym_bad.any():
        i = int(asym_bad.nonzero()[0, 0]) if asym_bad.ndim else None
        where = "" if i is None else f" (component {i})"
        a = asym.reshape(-1)[0 if i is None else i].item()
        s = scale.reshape(-1)[0 if i is None else i].item()
        raise ValueError(
            f"{name} is not symmetric{where}: max|C - C^T| = {a:.3g} exceeds {rtol:g} * max|C| "
            f"= {rtol * s:.3g}"
        )
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    evals = torch.linalg.eigvalsh(cov)
    lo, hi = evals[..., 0], evals[..., -1]
    for j, (l, h) in enumerate(zip(lo.reshape(-1).tolist(), hi.reshape(-1).tolist())):
        where = "" if cov.ndim == 2 else f" (component {j})"
        if not l > 0.0:
            raise ValueError(
                f"{name} is not positive definite{where}: smallest eigenvalue {l:.6g} <= 0"
            )
        if l <= dim * torch.finfo(torch.float64).eps * h:
            raise ValueError(
                f"{name} is numerically singular{where}: smallest eigenvalue {l:.6g} vs largest "
                f"{h:.6g} (condition number {h / l:.3g} beyond float64 precision)"
            )
    _, info = torch.linalg.cholesky_ex(cov)
    if (info != 0).any():
        raise ValueError(f"{name} is not positive definite: its Cholesky factorisation failed")
    return cov


def check_same_dtype(target, x: torch.Tensor) -> None:
    """ValueError if ``x`` has another floating dtype than the target's parameters."""
    if x.dtype != target.dtype:
        raise ValueError(
            f"points have dtype {x.dtype} but {target!r} holds {target.dtype}; convert one of "
            f"them (target.to(dtype=...))"
        )

"""Input checks shared by every metric (private).

Every public metric accepts torch tensors (any device, any floating dtype) or numpy arrays of
shape ``[n, d]`` and rejects, with a ``ValueError`` naming the problem:

* something that is not a 2-D array (``[n]`` is refused: say ``x[:, None]`` for 1-D data),
* an empty sample (``n == 0``) or zero dimensions,
* non-finite values (reported as the number of rows affected: a diverged chain is a row),
* two samples of different dimensions.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from targets.validation import check_int as check_positive_int
from targets.validation import check_probability

__all__ = [
    "as_numpy_points",
    "as_torch_points",
    "check_same_dim",
    "check_level",
    "check_positive_int",
    "to_numpy",
]


def _describe(x) -> str:
    return type(x).__name__


def _check_array(x, name: str, min_rows: int) -> None:
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise ValueError(
            f"{name} must be a torch.Tensor or numpy array of shape [n, d], got {_describe(x)}"
        )
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape [n, d] (2-D), got shape {tuple(x.shape)}"
            + ("; for 1-D data pass x[:, None]" if x.ndim == 1 else "")
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 dimensions (shape {tuple(x.shape)})")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} has {x.shape[0]} rows; this metric needs at least {min_rows}")
    if isinstance(x, torch.Tensor):
        if x.is_complex() or not (x.is_floating_point() or x.dtype in _TORCH_INTS):
            raise ValueError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    else:
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{name} must be a real floating-point array, got dtype {x.dtype}")


_TORCH_INTS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_finite_numpy(a: np.ndarray, name: str) -> None:
    finite_rows = np.isfinite(a).all(axis=1)
    bad = int(a.shape[0] - finite_rows.sum())
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite row{'s' if bad != 1 else ''} "
            f"(of {a.shape[0]}; diverged chains?)"
        )


def to_numpy(x) -> np.ndarray:
    """CPU float64 numpy copy/view of a tensor or array (no checks)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def as_numpy_points(x, name: str = "x", min_rows: int = 1) -> np.ndarray:
    """Validate ``x`` and return it as a CPU float64 numpy array ``[n, d]``."""
    _check_array(x, name, min_rows)
    a = to_numpy(x)
    _check_finite_numpy(a, name)
    return a


def as_torch_points(
    x, name: str = "x", min_rows: int = 1, device: Optional[torch.device] = None
) -> torch.Tensor:
    """Validate ``x`` and return it as a float64 torch tensor on its own device (or ``device``)."""
    _check_array(x, name, min_rows)
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    else:
        t = x.detach()
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    finite_rows = torch.isfinite(t).all(dim=1)
    bad = int(t.shape[0] - int(finite_rows.sum()))
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite row{'s' if bad != 1 else ''} "
            f"(of {t.shape[0]}; diverged chains?)"
        )
    return t


def check_same_dim(x, y, xname: str = "x", yname: str = "y") -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{xname} and {yname} have different dimensions: "
            f"{xname} is [{x.shape[0]}, {x.shape[1]}], {yname} is [{y.shape[0]}, {y.shape[1]}]"
        )


def check_level(level: float) -> None:
    check_probability(level, "level")

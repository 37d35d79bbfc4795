"""Keep freed memory for reuse: the CPU allocator setting the samplers run fastest with.

Every sampler step makes a few ``[n, d]`` tensors (a gradient, a noise draw, the new state) and
frees the last step's.  On Linux, glibc's ``malloc`` serves blocks of more than 32 MiB with a
fresh ``mmap`` and returns them with ``munmap`` when freed, and gives free memory at the top of
the heap back to the system past a threshold (128 KiB, raised on the fly to at most 64 MiB).
Either way the next step's tensor lands on pages the kernel has to fault in and zero again, one
4 KiB page at a time.  Measured on 2 cores (``benchmarks/bench_samplers.py``, float64,
``d = 100``): with ``10^5`` chains (80 MB per tensor, always a fresh ``mmap``) this setting
makes LMC 1.5x (float64 noise) to 1.9x ("fast" noise) and PLMC 1.3x to 1.4x faster per
chain-step (PLMC's engine works through the chains in small blocks, so fewer of its tensors are
large); with ``10^4`` chains (8 MB per tensor, which glibc's own adaptive threshold mostly keeps
in the heap) it makes no difference beyond the run-to-run spread (0.91-1.01x).

:func:`tune` sets two ``mallopt`` parameters of the running process so that freed blocks stay
with the process and are reused:

* ``M_MMAP_MAX = 0``: every block comes from the heap (``brk``), none from its own ``mmap``
  (glibc still falls back to ``mmap`` if the heap cannot grow);
* ``M_TRIM_THRESHOLD = 2^31 - 1``: free memory at the top of the heap is given back to the
  system only beyond 2 GiB.

It changes no result (the same numbers bit for bit).  It costs memory: freed blocks stay counted
in the process's resident size until the process ends (or until more than 2 GiB lie free at the
top of the heap), and the heap fragments (a small allocation can split a freed ``[n, d]``
block), so the peak resident size of a sampler run is higher.  Measured at ``10^5 x 100``: LMC
7.1-7.6 ``[n, d]`` float64 states against 4.1-4.6 when every freed tensor is unmapped at once,
PLMC 9.3-10.7 against 7.4.

Opt-in: nothing happens at ``import samplers``.  The labs' command lines (``python -m
labs.rate_sweep``, ``python -m labs.diffusion_sweep``) and ``benchmarks/bench_samplers.py`` call
:func:`tune` once when they start; a script or notebook that wants the same speed calls
``samplers.allocator.tune()`` itself.  Set the environment variable ``LAB_MALLOC=system`` to make
:func:`tune` keep glibc's defaults (where memory is tighter than time); any other value than
``tuned`` or ``system`` is refused when :func:`tune` runs.  Elsewhere (not Linux, or not glibc,
e.g. musl) it does nothing.  ``benchmarks/bench_samplers.py`` measures both settings in the same
run (its ``allocator`` section); docs/performance.md has the tables.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune", "status", "ENV_VAR"]

ENV_VAR = "LAB_MALLOC"

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int

_status: str | None = None


def _glibc():
    """The C library of this process if it is glibc (it has ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        _ = libc.gnu_get_libc_version  # AttributeError on musl and others
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def tune() -> str:
    """Set glibc's ``M_MMAP_MAX = 0`` and ``M_TRIM_THRESHOLD = 2^31 - 1`` once per process.

    Returns the status (also :func:`status`): ``"tuned"``, or why nothing was changed.
    Idempotent; honours ``LAB_MALLOC=system``.
    """
    global _status
    if _status is not None:
        return _status
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting not in ("", "tuned", "system"):
        raise ValueError(f"{ENV_VAR} must be 'tuned' or 'system', got {os.environ[ENV_VAR]!r}")
    if setting == "system":
        _status = f"system defaults ({ENV_VAR}=system)"
        return _status
    libc = _glibc()
    if libc is None:
        _status = "system defaults (not glibc)"
        return _status
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    _status = "tuned" if ok else "system defaults (mallopt refused)"
    return _status


def status() -> str:
    """What :func:`tune` did in this process (``"not set"`` before it ran)."""
    return _status if _status is not None else "not set"

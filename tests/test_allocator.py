"""samplers.allocator: the opt-in glibc malloc setting, its opt-out and its bad values.

The setting is process-wide and made once, so every case runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

RUN = """
import hashlib, sys
import samplers
from targets import Gaussian
samplers.allocator.tune()
out = samplers.sample("plmc", Gaussian.rotated(20, kappa=5.0, seed=0), 3000, 15, 0.05, K=7, seed=3,
                      noise=sys.argv[1])
print(samplers.allocator.status())
print(hashlib.sha256(out.x.numpy().tobytes()).hexdigest(), int(out.grad_evals.sum()))
"""


def _python(code: str, *args: str, malloc: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LAB_MALLOC"}
    if malloc is not None:
        env["LAB_MALLOC"] = malloc
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("noise", ["exact", "fast"])
def test_the_setting_changes_no_number(noise):
    tuned = _python(RUN, noise)
    system = _python(RUN, noise, malloc="system")
    assert tuned.returncode == 0, tuned.stderr
    assert system.returncode == 0, system.stderr
    t_status, t_result = tuned.stdout.splitlines()
    s_status, s_result = system.stdout.splitlines()
    assert t_status == ("tuned" if GLIBC else "system defaults (not glibc)")
    assert s_status == "system defaults (LAB_MALLOC=system)"
    assert t_result == s_result  # the same chains bit for bit, the same evaluation count


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_parameters_are_set_in_the_process():
    # glibc's malloc_info reports the heap; with M_MMAP_MAX = 0 a 64 MiB tensor must not be mmapped
    code = """
import ctypes, sys, samplers, torch
if sys.argv[1] == "tune":
    samplers.allocator.tune()
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
x = torch.empty(8 * 2**20, dtype=torch.float64)
x.fill_(1.0)
info = libc.mallinfo2()
print(samplers.allocator.status(), info.hblkhd >= 64 * 2**20)
"""
    tuned = _python(code, "tune")
    system = _python(code, "tune", malloc="system")
    imported = _python(code, "import only")
    assert tuned.returncode == 0 and system.returncode == 0, tuned.stderr + system.stderr
    assert imported.returncode == 0, imported.stderr
    assert tuned.stdout.split() == ["tuned", "False"]  # from the heap, not an mmap
    assert system.stdout.split()[-1] == "True"  # glibc's default: an mmap of its own
    assert imported.stdout.split() == ["not", "set", "True"]  # importing the package changes nothing


def test_importing_the_package_sets_nothing_and_the_lab_command_lines_opt_in():
    out = _python("import samplers, labs.rate_sweep, labs.diffusion_sweep; print(samplers.allocator.status())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "not set"
    # the command line tunes when it starts: --help exits before any work, after the tuning
    code = ("import sys, samplers\nfrom labs import rate_sweep\ntry:\n    rate_sweep.main(['--help'])\n"
            "except SystemExit:\n    pass\nprint(samplers.allocator.status(), file=sys.stderr)")
    out = _python(code)
    assert out.stderr.strip().splitlines()[-1] == ("tuned" if GLIBC else "system defaults (not glibc)")


def test_a_bad_setting_is_refused_naming_it():
    out = _python("import samplers; samplers.allocator.tune()", malloc="jemalloc")
    assert out.returncode != 0
    assert "LAB_MALLOC must be 'tuned' or 'system', got 'jemalloc'" in out.stderr


def test_tune_is_idempotent_and_reports_its_status():
    import samplers

    first = samplers.allocator.tune()
    assert first != "not set"
    assert samplers.allocator.status() == first
    assert samplers.allocator.tune() == first

"""Bit-for-bit pins: the same seeds give the same chains as the recorded run.

``tests/data/pinned_chains.json`` holds the sha256 (first 32 hex digits) of the final states of
every Langevin sampler in every noise mode, and of every diffusion sampler, under fixed seeds,
with their gradient / network call counts.  A refactoring that changes any draw or any rounding
fails here.  The file was written by ``python tests/test_pinned_chains.py --write`` before the
samplers were reorganised around their descriptors; rewrite it only on purpose, when a change of
numbers is intended and stated.

The diffusion samplers' scores go through matrix products, whose rounding depends on the CPU's
BLAS kernels.  A canary (the score of the pinned mixture at fixed points) tells whether this
machine rounds them as the recording machine did: if it does, the diffusion pins are compared bit
for bit; if not, each is compared by the sum and the sum of squares of its final state, to 1e-9
relative (a change of any draw moves them by far more).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PINS = Path(__file__).parent / "data" / "pinned_chains.json"
CANARY = "canary/diffusion_score"

LANGEVIN_RUNS = [("lmc", {}), ("plmc", {"K": 1}), ("plmc", {"K": 7}), ("plmc", {"K": 1000}),
                 ("plmc_ref", {"K": 5}), ("rlmc", {}), ("mala", {}), ("ulmc", {}),
                 ("pulmc", {"K": 6, "friction": 1.5}), ("pulmc_ref", {"K": 4}), ("rulmc", {"friction": 3.0})]
DIFFUSION_RUNS = [("ddpm_small", {"steps": 20}), ("ddpm_large", {"steps": 20}), ("ddim", {"steps": 20}),
                  ("dpmpp_2m", {"steps": 10}), ("pm_ddpm_small", {"K": 40}), ("pm_ddpm_large", {"K": 25})]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:32]


def _key(prefix: str, kw: dict) -> str:
    return prefix + "/" + ",".join(f"{k}={v}" for k, v in sorted(kw.items()))


def compute() -> dict:
    """Every pinned run's ``[digest, count]``, keyed as in the JSON file."""
    import samplers
    from samplers import diffusion
    from targets import DiffusedMixture, DiffusionSchedule, GaussianMixture, make_target

    out = {}
    targets = (("gaussian", make_target("gaussian", dim=3, kappa=5.0, seed=1)),
               ("holley_stroock", make_target("holley_stroock", dim=4)))
    for tname, target in targets:
        for noise in ("exact", "fast", "vector"):
            for method, kw in LANGEVIN_RUNS:
                r = samplers.sample(method, target, 257, 9, 0.07, seed=3, noise=noise, **kw)
                out[_key(f"{tname}/{noise}/{method}", kw)] = [_digest(r.x), int(r.grad_evals.sum())]
    dm = DiffusedMixture(GaussianMixture.ring(8, 1.0, 0.1), DiffusionSchedule())
    xT = torch.randn(129, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for name, kw in DIFFUSION_RUNS:
        r = diffusion.sample(name, dm, xT.clone(), dm.schedule, seed=4, **kw)
        x = r.x.double()
        out[_key(f"diffusion/{name}", kw)] = [_digest(r.x), float(r.nfe.float().sum()),
                                              [float(x.sum()), float((x * x).sum())]]
    t = torch.arange(1, 130, dtype=torch.int64) * 7
    out[CANARY] = _digest(dm.eps_hat(xT, t))
    return out


@pytest.fixture(scope="module")
def computed():
    return compute()


@pytest.mark.parametrize("key", sorted(k for k in json.loads(PINS.read_text()) if k != CANARY))
def test_chain_is_bit_identical_to_the_pinned_run(key, computed):
    pinned = json.loads(PINS.read_text())
    got, want = computed[key], pinned[key]
    if key.startswith("diffusion/") and computed[CANARY] != pinned[CANARY]:
        # this CPU rounds the score's matrix products differently: compare the state's moments
        assert got[1] == want[1], key
        np.testing.assert_allclose(got[2], want[2], rtol=1e-9, err_msg=key)
        return
    assert got == want, key


def test_every_run_is_pinned(computed):
    assert sorted(computed) == sorted(json.loads(PINS.read_text()))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    PINS.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")

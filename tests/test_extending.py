"""Extending the lab without editing it: docs/extending.md's worked examples run, and a method
defined in this file alone runs through samplers.sample and every study of labs.rate_sweep."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

import samplers
from labs.rate import sweep as rs
from metrics.exact_laws import exact_law
from samplers.base import METHODS, SamplingAlgorithm, StepInfo, gaussian
from targets import Gaussian

ROOT = Path(__file__).resolve().parents[1]


def test_the_worked_examples_of_docs_extending_run():
    """Every ```python block of docs/extending.md, in order, in one fresh interpreter (its
    registrations stay out of this process); each block asserts its own oracle checks."""
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 10, "docs/extending.md lost its worked examples"
    code = "\n\n".join(blocks)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"docs/extending.md failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "lm: bias within 3 standard errors" in proc.stdout and "lmc: bias of E X^2" in proc.stdout


# ------------------------------------------------------------------------------------------------
# A toy method, defined here only: LMC that takes every step as two half steps.  It spends two
# gradients per step, so at a budget of N evaluations it is LMC(eta/2) with the same N: the same
# law and, drawing its noise in the same order, the same numbers.


class ToyState(NamedTuple):
    x: torch.Tensor


def _toy_init(x, target=None):
    return ToyState(x)


def _toy_kernel(target, step_size, halves=2):
    h = step_size / halves
    scale = math.sqrt(2.0 * h)

    def step(generator, state):
        x = state.x
        for _ in range(halves):  # LMC's own operations, so that the numbers are LMC's bit for bit
            x = torch.add(x, target.grad_potential(x), alpha=-h)
            x.add_(gaussian(generator, x.shape, dtype=x.dtype, device=x.device), alpha=scale)
        return ToyState(x), StepInfo(torch.full((x.shape[0],), halves, dtype=torch.int64, device=x.device))

    return step


def _toy_moments(lam, step_size, halves=2):
    m = (1.0 - step_size / halves * np.asarray(lam, dtype=np.float64)) ** halves
    noise = sum((1.0 - step_size / halves * lam) ** (2 * j) for j in range(halves)) * 2.0 * step_size / halves
    return m, np.outer(m, m), noise


def _check_halves(h):
    if isinstance(h, bool) or not isinstance(h, int) or h < 1:
        raise ValueError(f"halves must be an integer >= 1, got {h!r}")
    return h


TOY = SamplingAlgorithm(
    name="toy", description="LMC in sub-steps (a test method)", init=_toy_init, build_kernel=_toy_kernel,
    mean_evals_per_step=lambda halves: float(halves),
    params=(samplers.Param("halves", _check_halves, 2, "sub-steps per step"),),
    exact_moments=_toy_moments, gaussian_law=lambda halves: True,
)


@pytest.fixture
def toy():
    samplers.register(TOY)
    yield TOY
    del METHODS["toy"]


def test_toy_method_runs_through_sample_and_equals_lmc_at_half_the_step(toy):
    t = Gaussian.rotated(3, 5.0, seed=1)
    a = samplers.sample("toy", t, 50, 20, 0.1, seed=3)
    b = samplers.sample("lmc", t, 50, 40, 0.05, seed=3)
    assert torch.equal(a.x, b.x)
    assert a.grad_evals.eq(40).all() and a.settings["halves"] == 2
    with pytest.raises(ValueError, match="halves must be an integer >= 1, got 0"):
        samplers.sample("toy", t, 5, 2, 0.1, halves=0)
    with pytest.raises(ValueError, match="takes no K"):
        samplers.sample("toy", t, 5, 2, 0.1, K=4)


def test_toy_exact_law_is_lmc_at_half_the_step(toy):
    t = Gaussian.rotated(4, 10.0, seed=2)
    a = exact_law("toy", t, 30, 0.08)
    b = exact_law("lmc", t, 60, 0.04)
    np.testing.assert_allclose(a.covs[-1], b.covs[-1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.means[-1], b.means[-1], rtol=1e-12, atol=1e-14)
    assert a.grad_evals[-1] == b.grad_evals[-1] == 60


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_toy_method_in_the_rate_sweep_matches_lmc_budget_for_budget(toy, tmp_path):
    """``--samplers toy`` on the exact-law Gaussian: the toy's value at each budget is LMC's (the
    same law), and on Holley-Stroock its chains are LMC(eta/2)'s, so the values agree too."""
    out = tmp_path / "rs"
    assert rs.main(["--samplers", "lmc,toy", "--target", "gaussian,holley_stroock", "--dim", "4",
                    "--budgets", "40,80,160", "--chains", "1000", "--out", str(out), "--no-progress"]) == 0
    rows = [r for r in _rows(out) if r["kind"] != "floor"]
    by = {(r["target"], r["sampler"], r["budget"]): r for r in rows}
    for target in ("gaussian", "holley_stroock"):
        for budget in ("40", "80", "160"):
            a, b = by[(target, "toy", budget)], by[(target, "lmc", budget)]
            assert a["status"] == b["status"] == "ok"
            assert float(a["grad_evals"]) == float(b["grad_evals"]) == float(budget)
            np.testing.assert_allclose(float(a["value"]), float(b["value"]), rtol=1e-9)


def test_toy_method_in_the_bias_and_theorem_studies(toy, tmp_path):
    out = tmp_path / "bias"
    assert rs.main(["--study", "bias", "--samplers", "toy", "--target", "gaussian", "--dim", "3",
                    "--out", str(out), "--no-progress"]) == 0
    assert {r["sampler"] for r in _rows(out)} == {"toy"}
    # the theorem study needs a method with a base: a toy without one is refused by name
    with pytest.raises(ValueError, match="none of --samplers toy has one"):
        rs.plan_cells(rs.SweepConfig(study="theorem", samplers=["toy"], targets=["gaussian"]).validate())


def test_an_unknown_sampler_is_refused_before_any_work(tmp_path, capsys):
    assert rs.main(["--samplers", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown sampler 'nope'" in err and "lmc" in err
    assert not (tmp_path / "results.csv").exists()

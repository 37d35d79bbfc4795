"""Coupled runs (samplers/coupled.py) and the coupled weak error (metrics.weak.coupled_weak_error),
against the exact laws on a Gaussian target: the estimates must match the exact differences of
moments within their standard errors at three step sizes per method, and each chain must keep
its own method's law."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.exact_laws import exact_law
from metrics.weak import coupled_weak_error
from samplers.coupled import coupled_run
from targets import make_target

N = 20_000


@pytest.fixture(scope="module")
def setting():
    t = make_target("gaussian", dim=3, kappa=5.0, seed=1)
    x0 = t.sample(N, torch.Generator().manual_seed(0))
    return t, x0, dict(mean0=t.mean.numpy(), cov0=t.cov.numpy())


def _m2(law):
    return float(np.trace(law.covs[-1]) + law.means[-1] @ law.means[-1])


@pytest.mark.parametrize("method,K,eta", [("lmc", None, 0.3), ("lmc", None, 0.15), ("lmc", None, 0.075),
                                          ("plmc", 3, 0.3), ("plmc", 4, 0.15), ("plmc", 8, 0.075)])
def test_coupled_weak_error_matches_the_exact_laws_difference(setting, method, K, eta):
    t, x0, start = setting
    steps, R = int(round(1.5 / eta)), 4
    r = coupled_run(method, t, N, steps, eta, refine=R, K=K, x0=x0, seed=11)
    assert not r.diverged.any() and r.ref_step == pytest.approx(eta / ((K or 1) * R))
    law = exact_law(method, t, steps, eta, K, **start)
    ref = exact_law("lmc", t, steps * (K or 1) * R, r.ref_step, **start)
    for f, exact in ((lambda z: (z**2).sum(-1), _m2(law) - _m2(ref)),
                     (lambda z: z[:, 0], float(law.means[-1][0] - ref.means[-1][0]))):
        m = coupled_weak_error(r.x, r.x_ref, f)
        assert abs(m.value - exact) < 4.5 * m.se, (m.value, exact, m.se)
    # coupling pays: the second moment's difference is resolved better than by independent chains,
    # by far once eta L <= 0.75 (L = 5 here); at eta L = 1.5 PLMC's random selections (K = 3)
    # keep its strong error large and the gain is small
    m2 = coupled_weak_error(r.x, r.x_ref, lambda z: (z**2).sum(-1))
    assert m2.extra["variance_reduction"] > (4.0 if eta * 5.0 <= 0.75 else 1.0)
    # evaluations: LMC one per step; PLMC 1 + Binomial(K - 1, 1/K) per step
    mean_evals = float(r.grad_evals.double().mean()) / steps
    want = 1.0 if method == "lmc" else 2.0 - 1.0 / K
    sd = 0.0 if method == "lmc" else math.sqrt((K - 1) / K * (1 - 1 / K) / (steps * N))
    assert abs(mean_evals - want) <= 5 * sd + 1e-12


def test_each_chain_keeps_its_own_law(setting):
    """The summed fine increments must make the method's own law: E|X|^2 of the coupled LMC and
    PLMC chains against their exact laws (independent-chain standard errors)."""
    t, x0, start = setting
    for method, K in (("lmc", None), ("plmc", 4)):
        r = coupled_run(method, t, N, 10, 0.3, refine=3, K=K, x0=x0, seed=12)
        for x, law in ((r.x, exact_law(method, t, 10, 0.3, K, **start)),
                       (r.x_ref, exact_law("lmc", t, 10 * (K or 1) * 3, r.ref_step, **start))):
            v = (x**2).sum(-1)
            assert abs(float(v.mean()) - _m2(law)) < 4.5 * float(v.std()) / math.sqrt(N)


def test_bad_input_is_refused_before_any_work(setting):
    t, x0, _ = setting
    with pytest.raises(ValueError, match="unknown coupled method 'mala'"):
        coupled_run("mala", t, 4, 1, 0.1)
    with pytest.raises(ValueError, match="rlmc' takes no K"):
        coupled_run("rlmc", t, 4, 1, 0.1, K=2)
    with pytest.raises(ValueError, match="control variates are for PLMC"):
        coupled_run("lmc", t, 4, 1, 0.1, control=lambda z: z[:, 0])
    with pytest.raises(ValueError, match="unknown noise"):
        coupled_run("lmc", t, 4, 1, 0.1, noise="bogus")
    with pytest.raises(ValueError, match="takes no K"):
        coupled_run("lmc", t, 4, 1, 0.1, K=3)
    with pytest.raises(ValueError, match="K"):
        coupled_run("plmc", t, 4, 1, 0.1)
    with pytest.raises(ValueError, match="refine"):
        coupled_run("lmc", t, 4, 1, 0.1, refine=0)
    with pytest.raises(ValueError, match="step_size"):
        coupled_run("lmc", t, 4, 1, -0.1)
    with pytest.raises(ValueError, match=r"x0 must have shape \[4, 3\]"):
        coupled_run("lmc", t, 4, 1, 0.1, x0=x0[:5])
    with pytest.raises(ValueError, match="paired"):
        coupled_weak_error(x0[:10], x0[:11], lambda z: z[:, 0])


@pytest.mark.parametrize("method,K,eta", [("lmc", None, 0.15), ("plmc", 4, 0.15), ("plmc", 8, 0.075)])
def test_the_extrapolated_reference_measures_the_error_to_the_target(setting, method, K, eta):
    """With a second reference at twice the fine step, 2 f(x_ref) - f(x_ref_half) removes the
    reference's first-order bias: the estimate is E f(X_N) - E_pi f, checked against the exact law
    and the target's own moment; the residual is the reference's second-order error, O(h_f^2)."""
    t, x0, start = setting
    steps = int(round(1.5 / eta))
    r = coupled_run(method, t, N, steps, eta, refine=4, K=K, x0=x0, seed=13, half_reference=True)
    assert r.x_ref_half is not None and not r.diverged.any()
    m = coupled_weak_error(r.x, r.x_ref, lambda z: (z**2).sum(-1), x_ref_coarse=r.x_ref_half)
    m2_pi = float(torch.trace(t.cov) + t.mean @ t.mean)
    error = _m2(exact_law(method, t, steps, eta, K, **start)) - m2_pi      # the method's weak error
    n_fine = steps * (K or 1) * 4
    ref_left = (2 * _m2(exact_law("lmc", t, n_fine, r.ref_step, **start))
                - _m2(exact_law("lmc", t, n_fine // 2, 2 * r.ref_step, **start)) - m2_pi)
    # the estimate's expectation is exactly the method's error minus what is left of the
    # reference's (second order in h_f), both from the exact laws
    assert abs(m.value - (error - ref_left)) < 4.5 * m.se, (m.value, error, ref_left, m.se)
    assert abs(ref_left) < 0.1 * abs(error)  # and what is left of the reference's error is small
    with pytest.raises(ValueError, match=r"K \* refine must be even"):
        coupled_run(method, t, 4, 1, eta, refine=3, K=3 if K else None, half_reference=True)


def test_the_rate_sweep_coupled_metric_matches_the_exact_laws(tmp_path, capsys):
    """``--metric coupled_weak`` on a Gaussian, where LMC's law is Gaussian and every expectation of
    the lab's test function is closed-form: each budget's value is |E f(LMC) - (2 E f(ref) - E f(ref/2))|
    within 4.5 standard errors; no noise-floor rows; other samplers are refused by name."""
    from labs.rate import sweep as rs
    from labs.rate.measures import coupled_refine, coupled_test_function

    out = tmp_path / "c"
    assert rs.main(["--target", "gaussian", "--dim", "2", "--kappa", "4", "--metric", "coupled_weak",
                    "--samplers", "lmc,plmc", "--budgets", "20,40,80", "--chains", "4000", "--out", str(out),
                    "--no-progress"]) == 0
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"estimate"} and {r["status"] for r in rows} == {"ok"}
    t = rs.build_target("gaussian", 2, 4.0)
    f = coupled_test_function(2)
    rng = np.random.default_rng(20240)
    W, c = rng.standard_normal((8, 2)) / math.sqrt(2), rng.uniform(0.0, 2.0 * math.pi, 8)
    start = dict(mean0=t.mean.numpy(), cov0=t.cov.numpy())

    def Ef(law):  # E f under the Gaussian law N(mean, cov)
        m, S = law.means[-1], law.covs[-1]
        return (np.trace(S) + m @ m) / 2 + np.sum(np.cos(W @ m + c) * np.exp(-0.5 * np.einsum("fd,de,fe->f", W, S, W)))

    assert abs(f(torch.zeros(1, 2, dtype=torch.float64)).item() - (0 + np.sum(np.cos(c)))) < 1e-12  # the same W, c
    for r in (r for r in rows if r["sampler"] == "lmc"):
        n, eta = int(r["n_steps"]), float(r["step_size"])
        R = coupled_refine("lmc", None)
        hf = eta / R
        want = (Ef(exact_law("lmc", t, n, eta, **start)) - 2 * Ef(exact_law("lmc", t, n * R, hf, **start))
                + Ef(exact_law("lmc", t, n * R // 2, 2 * hf, **start)))
        assert abs(float(r["value"]) - abs(want)) < 4.5 * float(r["se"]), (r["budget"], r["value"], want, r["se"])
        assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
    assert rs.main(["--target", "gaussian", "--metric", "coupled_weak", "--samplers", "lmc,mala",
                    "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "'mala'" in err and "coupled_weak" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("eta", [0.3, 0.15, 0.075])
def test_rlmc_coupled_keeps_its_law_and_its_weak_error_matches_the_exact_laws(setting, eta):
    """RLMC's midpoint W(u eta) comes from the fine path by a Brownian bridge: the coupled RLMC chain
    must have RLMC's exact law (E|X|^2, independent-chain SE), and the coupled weak error of |x|^2
    against the extrapolated reference must equal the exact laws' difference within 4.5 SE, at
    three step sizes."""
    t, x0, start = setting
    steps, R = int(round(1.5 / eta)), 4
    r = coupled_run("rlmc", t, N, steps, eta, refine=R, x0=x0, seed=21, half_reference=True)
    law = exact_law("rlmc", t, steps, eta, **start)
    v = (r.x**2).sum(-1)
    assert abs(float(v.mean()) - _m2(law)) < 4.5 * float(v.std()) / math.sqrt(N)
    assert torch.equal(r.grad_evals, torch.full((N,), 2 * steps))
    ref = 2 * _m2(exact_law("lmc", t, steps * R, eta / R, **start)) - _m2(exact_law("lmc", t, steps * R // 2, 2 * eta / R, **start))
    m = coupled_weak_error(r.x, r.x_ref, lambda z: (z**2).sum(-1), x_ref_coarse=r.x_ref_half)
    assert abs(m.value - (_m2(law) - ref)) < 4.5 * m.se, (m.value, _m2(law) - ref, m.se)
    # coupling pays once eta L <= 0.75 (L = 5); at eta L = 1.5 the strong error is large
    assert m.extra["variance_reduction"] > (4.0 if eta * 5.0 <= 0.75 else 1.0)


def test_plmc_selection_control_is_mean_zero_and_reduces_variance(setting):
    """The control variate of PLMC's selections has mean exactly 0 (a sum of (K H_i - 1) times
    quantities independent of H_i): over 4 seeds its mean is within 4.5 SE of 0; the controlled
    estimate still matches the exact laws' difference, with a smaller standard error."""
    t, x0, start = setting
    f = lambda z: (z**2).sum(-1)  # noqa: E731
    eta, K, steps = 0.15, 8, 10
    law = exact_law("plmc", t, steps, eta, K, **start)
    ref = (2 * _m2(exact_law("lmc", t, steps * K * 2, eta / (2 * K), **start))
           - _m2(exact_law("lmc", t, steps * K, eta / K, **start)))
    cs = []
    for seed in range(4):
        r = coupled_run("plmc", t, N, steps, eta, refine=2, K=K, x0=x0, seed=30 + seed, half_reference=True, control=f)
        assert r.control is not None and r.control.shape == (N,)
        cs.append(r.control)
        plain = coupled_weak_error(r.x, r.x_ref, f, x_ref_coarse=r.x_ref_half)
        m = coupled_weak_error(r.x, r.x_ref, f, x_ref_coarse=r.x_ref_half, control=r.control)
        assert abs(m.value - (_m2(law) - ref)) < 4.5 * m.se, (m.value, _m2(law) - ref, m.se)
        assert m.se < plain.se / 1.2 and m.extra["control_variance_reduction"] > 1.5
    c = torch.cat(cs)
    assert abs(float(c.mean())) < 4.5 * float(c.std()) / math.sqrt(c.numel())
    with pytest.raises(ValueError, match="control has 3 values"):
        coupled_weak_error(r.x, r.x_ref, f, control=r.control[:3])

"""Floor bias in the rate fits: a synthetic error curve of known slope, measured through the lab's
real sample metric at a finite number of chains, must be fitted without bias once the noise
floor's square is removed (labs.fitting.debias_floor, applied by the rate study's summarize), where
the raw values, pushed up towards sqrt(W2^2 + floor^2), flatten the slope."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labs.fitting import debias_floor, fit_slope
from labs.rate import sweep as rs
from labs.rate.measures import measure_samples, noise_floor_samples

SLOPE = -2.0
BUDGETS = [16, 23, 32, 45, 64, 91]


def _curve(target, n: int, seed: int) -> list[dict]:
    """Rows of the rate study for chains that are exact samples shifted by delta(N) = c N^SLOPE:
    the marginal W2 of a shift is exactly |delta|, so the true curve has slope SLOPE."""
    base = dict(study="rate", target="holley_stroock", dim=target.dim, kappa="", metric="marginal_w2", chains=n,
                k_schedule="", K="", status="ok")
    fl = noise_floor_samples("marginal_w2", target, n, seed=1000 + seed)
    rows = [dict(base, kind="floor", sampler="exact", step_size="", grad_evals="", **fl)]
    for b in BUDGETS:
        delta = 0.25 * (b / BUDGETS[0]) ** SLOPE
        x = target.sample(n, torch.Generator().manual_seed(10 * seed + b)) + delta
        m = measure_samples("marginal_w2", x, target, seed=b)
        rows.append(dict(base, kind="estimate", sampler="lmc", budget=b, grad_evals=b, step_size=2.0 / b, **m))
    return rows


def test_debiased_fit_recovers_the_known_slope_where_raw_values_flatten_it():
    target = rs.build_target("holley_stroock", 8, 10.0)
    cfg = rs.SweepConfig(targets=["holley_stroock"], samplers=["lmc"])
    debiased, raw = [], []
    for seed in range(12):
        rows = _curve(target, 4000, seed)
        fit = rs.summarize(rows, cfg)["fits"][0]
        assert fit["floor_debiased"] and fit["slope"] is not None
        debiased.append(fit["slope"])
        est = rows[1:]
        x = np.array([r["grad_evals"] for r in est], float)
        v = np.array([r["value"] for r in est])
        lo_x, hi_x = fit["x_range"]
        mask = (x >= lo_x) & (x <= hi_x)  # the same points, their raw values
        raw.append(fit_slope(x, v, np.array([r["se"] for r in est]), mask=mask).slope)
    d, r = np.array(debiased), np.array(raw)
    se_d = d.std(ddof=1) / math.sqrt(d.size)
    print("debiased", d.round(3), "raw", r.round(3))
    assert abs(d.mean() - SLOPE) < 3.5 * se_d, (d.mean(), se_d)
    # on the same points the raw values give a flatter slope, by a margin the replicates resolve
    gap = r - d
    assert gap.mean() > 3.0 * gap.std(ddof=1) / math.sqrt(gap.size) and abs(r.mean() - SLOPE) > abs(d.mean() - SLOPE)


def test_debias_floor_closed_form():
    v, lo, hi, se = debias_floor([0.5, 0.3, 0.1], [0.45, 0.25, 0.05], [0.55, 0.35, 0.15], [0.02, 0.02, 0.02], 0.04, 0.0)
    assert v == pytest.approx(np.sqrt([0.25 - 0.04, 0.09 - 0.04, 0.0]))
    assert lo == pytest.approx(np.sqrt([0.45**2 - 0.04, 0.25**2 - 0.04, 0.0]))
    assert hi == pytest.approx(np.sqrt([0.55**2 - 0.04, 0.35**2 - 0.04, 0.15**2 - 0.04 if 0.15**2 > 0.04 else 0.0]))
    assert se[0] == pytest.approx(0.5 * 0.02 / v[0]) and np.isinf(se[2])
    # the floor's own uncertainty widens the interval on both sides
    _, lo2, hi2, _ = debias_floor([0.5], [0.45], [0.55], [0.02], 0.04, 0.005)
    assert lo2[0] < lo[0] and hi2[0] > hi[0]


def test_resolution_is_reported_per_fit():
    """summary.json's fits carry the budgets measured and resolved, the level a point must exceed
    and the chains that would resolve every budget (the level falls like 1/sqrt(chains))."""
    target = rs.build_target("holley_stroock", 8, 10.0)
    rows = _curve(target, 4000, 0)
    fit = rs.summarize(rows, rs.SweepConfig(targets=["holley_stroock"], samplers=["lmc"]))["fits"][0]
    res = fit["resolution"]
    assert res["budgets"] == len(BUDGETS) and 3 <= res["budgets_resolved"] <= len(BUDGETS)
    assert res["level"] == pytest.approx(rows[0]["ci_high"]) and res["chains"] == 4000
    pred = math.exp(fit["intercept"] + fit["slope"] * math.log(max(BUDGETS)))
    assert res["chains_to_resolve_all"] == math.ceil(4000 * max(1.0, (2 * res["level"] / pred) ** 2))
    line = rs._resolution_line(fit)
    assert f"{res['budgets_resolved']} of {len(BUDGETS)} budgets resolved" in line and "floor bias removed" in line


def test_target_options_reach_the_target_and_bad_ones_are_refused(tmp_path, capsys):
    t = rs.build_target("mixture", 2, 10.0, options="separation=6")
    assert float(t.means[0].norm() * 2) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        rs.parse_target_options("separation")
    with pytest.raises(ValueError, match="must be a number"):
        rs.parse_target_options("separation=wide")
    assert rs.main(["--target", "mixture", "--target-options", "bogus=1", "--out", str(tmp_path)]) == 2
    assert "does not take the options 'bogus=1'" in capsys.readouterr().err
    cells = rs.plan_cells(rs.SweepConfig(targets=["mixture"], target_options="separation=6", samplers=["lmc"]))
    plain = rs.plan_cells(rs.SweepConfig(targets=["mixture"], samplers=["lmc"]))
    assert {c["target_options"] for c in cells} == {"separation=6"} and "target_options" not in plain[0]
    assert not ({c["cell"] for c in cells} & {c["cell"] for c in plain})


def _row(sampler, budget, value, status="ok", n_div=0):
    ci = dict(ci_low=value * 0.99, ci_high=value * 1.01, se=value * 0.005) if value else dict(ci_low="", ci_high="", se="")
    return dict(study="rate", target="double_well", dim="4", kappa="", metric="marginal_w2", sampler=sampler, kind="estimate",
                budget=budget, grad_evals=budget, step_size=2.0 / budget, chains=1000, value=value, status=status,
                n_diverged=n_div, K="", k_schedule="growing", k_scale=1.0, **ci)


def test_divergences_are_stated_in_the_verdict_even_when_a_sampler_diverged_everywhere():
    cfg = rs.SweepConfig(targets=["double_well"], samplers=["lmc", "plmc"])
    lmc = [_row("lmc", b, 0.5 * (16 / b)) for b in (16, 32, 64, 128)]
    plmc = [_row("plmc", b, "", "diverged", n) for b, n in ((16, 1000), (32, 40), (64, 3), (128, 1))]
    s = rs.summarize(lmc + plmc, cfg)
    (v,) = s["verdicts"]
    assert "no verdict" in v and "PLMC: 0 of 4 budgets resolved, diverged at 4 budget(s) (1 to 1000 of 1000 chains)" in v
    assert "LMC: 4 of 4 budgets resolved" in v
    fit = next(f for f in s["fits"] if f["sampler"] == "plmc")
    assert fit["slope"] is None and "diverged at all 4 budgets" in fit["note"] and fit["divergences"]["budgets"] == 4
    # a ratio that can be fitted still names the divergences left out
    plmc = [_row("plmc", b, 0.5 * (16 / b) ** 2) for b in (16, 32, 64, 128)] + [_row("plmc", 256, "", "diverged", 7)]
    (v,) = rs.summarize(lmc + plmc, cfg)["verdicts"]
    assert "slope ratio 2.00" in v and "divergences (left out): PLMC at 1 budget(s)" in v

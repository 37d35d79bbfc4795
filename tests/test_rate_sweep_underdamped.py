"""labs.rate_sweep with the underdamped samplers: slopes, the PULMC/ULMC ratio, theorem and bias."""

import csv

import pytest

from labs.rate import sweep as rs
from labs.rate.config import SweepConfig


def _run(tmp_path, name="out", **kw):
    cfg = SweepConfig(out=str(tmp_path / name), progress=False, **kw)
    return rs.run_sweep(cfg), tmp_path / name


def _fit(summary, sampler):
    (f,) = [f for f in summary["fits"] if f["sampler"] == sampler]
    return f


def test_gaussian_ulmc_slope_one_pulmc_two_and_their_ratio(tmp_path):
    """Exact laws, so the slopes are deterministic: ULMC about -1, PULMC (K ~ 1/eta) about -2."""
    summary, out = _run(tmp_path, targets=["gaussian"], dim=4, kappa=10.0, samplers=["ulmc", "pulmc", "rulmc"],
                        budgets=[100, 200, 400, 800])
    assert _fit(summary, "ulmc")["slope"] == pytest.approx(-1.0, abs=0.1)
    assert _fit(summary, "pulmc")["slope"] == pytest.approx(-2.0, abs=0.2)
    assert _fit(summary, "rulmc")["slope"] < -2.0
    (sp,) = summary["speedup"]
    assert (sp["numerator"], sp["denominator"]) == ("pulmc", "ulmc")
    assert sp["ratio"] == pytest.approx(2.0, abs=0.2) and sp["friction"] == 2.0
    assert any("PULMC/ULMC" in v for v in summary["verdicts"])
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["friction"] for r in rows} == {"2.0"}
    assert {r["kind"] for r in rows if r["sampler"] == "ulmc"} == {"exact"}
    assert {r["kind"] for r in rows if r["sampler"] != "ulmc"} == {"lower_bound"}


def test_both_families_side_by_side(tmp_path):
    summary, out = _run(tmp_path, targets=["gaussian"], dim=3, samplers=["lmc", "plmc", "ulmc", "pulmc"],
                        budgets=[100, 200, 400])
    pairs = {(s["numerator"], s["denominator"]) for s in summary["speedup"]}
    assert pairs == {("plmc", "lmc"), ("pulmc", "ulmc")}
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["friction"] for r in rows if r["sampler"] in ("lmc", "plmc")} == {""}


def test_friction_changes_the_results(tmp_path):
    a, _ = _run(tmp_path, "a", targets=["gaussian"], dim=3, samplers=["ulmc"], budgets=[50, 100, 200])
    b, _ = _run(tmp_path, "b", targets=["gaussian"], dim=3, samplers=["ulmc"], budgets=[50, 100, 200], friction=0.5)
    assert _fit(a, "ulmc")["intercept"] != _fit(b, "ulmc")["intercept"]


def test_theorem_study_compares_pulmc_with_ulmc_at_the_fine_step(tmp_path):
    summary, out = _run(tmp_path, study="theorem", targets=["gaussian"], dim=3, samplers=["ulmc", "pulmc"],
                        Ks=[4], step_sizes=[0.2, 0.1, 0.05])
    names = {f["sampler"] for f in summary["fits"]}
    assert names == {"pulmc~ulmc(eta/4)", "ulmc~ulmc(eta/4)"}
    pm, base = _fit(summary, "pulmc~ulmc(eta/4)"), _fit(summary, "ulmc~ulmc(eta/4)")
    # the corrected coarse chain stays closer to the fine chain, at a higher order in eta
    assert pm["slope"] > base["slope"] + 0.5


def test_bias_study_orders_of_the_underdamped_samplers(tmp_path):
    summary, _ = _run(tmp_path, study="bias", targets=["gaussian"], dim=3, samplers=["ulmc", "pulmc", "rulmc"],
                      step_sizes=[0.2, 0.1, 0.05, 0.025])
    assert _fit(summary, "ulmc")["slope"] == pytest.approx(1.0, abs=0.2)
    assert _fit(summary, "pulmc")["slope"] > 1.6
    assert _fit(summary, "rulmc")["slope"] > 1.6


def test_sample_based_metric_on_a_non_log_concave_target(tmp_path):
    summary, out = _run(tmp_path, targets=["holley_stroock"], dim=4, samplers=["ulmc", "pulmc"], chains=1000,
                        budgets=[8, 16], quick=True)
    with open(out / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] != "floor"]
    assert {r["sampler"] for r in rows} == {"ulmc", "pulmc"} and all(r["status"] == "ok" for r in rows)
    assert all(float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in rows)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_bad_friction_is_a_one_line_error(tmp_path, value, capsys):
    assert rs.main(["--friction", value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "friction" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.csv").exists()

"""labs.rate_sweep: the command line, outputs, resume, reproducibility and the Gaussian acceptance."""

import csv
import json
import math
import subprocess
import sys

import pytest

from labs.rate import sweep as rs
from labs.rate.config import SweepConfig


def _run(tmp_path, name="out", **kw):
    cfg = SweepConfig(out=str(tmp_path / name), progress=False, **kw)
    return rs.run_sweep(cfg), tmp_path / name


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _fit(summary, sampler, **match):
    for f in summary["fits"]:
        if f["sampler"] == sampler and all(f[k] == v for k, v in match.items()):
            return f
    raise KeyError(sampler)


# ---- acceptance: LMC slope -1, PLMC (growing K) slope -2, ratio 2, on several Gaussians -----------

@pytest.mark.parametrize("dim,kappa", [(10, 10.0), (2, 1.0), (50, 100.0)])
def test_gaussian_w2_slopes_lmc_minus_one_plmc_minus_two(tmp_path, dim, kappa, capsys):
    summary, out = _run(tmp_path, targets=["gaussian"], dim=dim, kappa=kappa, samplers=["lmc", "plmc"])
    lmc, plmc = _fit(summary, "lmc"), _fit(summary, "plmc")
    assert lmc["slope"] == pytest.approx(-1.0, abs=0.1)
    assert plmc["slope"] == pytest.approx(-2.0, abs=0.2)
    (sp,) = summary["speedup"]
    assert sp["ratio"] == pytest.approx(2.0, abs=0.2)
    assert sp["ratio_ci"][0] > 1.0  # the interval excludes "no speed-up"
    assert "quadratic speed-up observed" in sp["verdict"]
    assert plmc["kind"] == "lower_bound" and lmc["kind"] == "exact"


def test_fixed_K_gives_lmc_rate(tmp_path):
    summary, _ = _run(tmp_path, targets=["gaussian"], samplers=["lmc", "plmc"], k_schedule="fixed", k_fixed=4)
    assert _fit(summary, "plmc")["slope"] == pytest.approx(-1.0, abs=0.1)
    assert "fixed K=4" in summary["speedup"][0]["verdict"]


# ---- outputs -----------------------------------------------------------------------------------------

def test_outputs_tidy_rows_summary_and_figure(tmp_path):
    summary, out = _run(tmp_path, targets=["gaussian", "holley_stroock"], quick=True, chains=2000, dim=4)
    rows = _rows(out)
    assert list(rows[0].keys()) == rs.COLUMNS
    assert {r["target"] for r in rows} == {"gaussian", "holley_stroock"}
    plmc = [r for r in rows if r["sampler"] == "plmc"]
    assert plmc and all(r["k_schedule"] == "growing" and int(r["K"]) >= 1 for r in plmc)
    for r in plmc:  # K = ceil(k_scale / eta) is recorded with the step size that produced it
        assert int(r["K"]) == math.ceil(1.0 / float(r["step_size"]) - 1e-9)
    floors = [r for r in rows if r["kind"] == "floor"]
    assert floors and all(r["target"] == "holley_stroock" for r in floors)
    data = json.loads((out / "summary.json").read_text())
    assert set(data) >= {"fits", "speedup", "settings"}
    for f in data["fits"]:
        assert set(f) >= {"target", "sampler", "metric", "slope", "slope_ci", "n_points"}
    for s in data["speedup"]:
        assert set(s) >= {"target", "metric", "numerator", "denominator", "ratio", "ratio_ci"}
    assert data["settings"]["chains"] == 2000
    assert (out / "rate_sweep.png").stat().st_size > 10_000


def test_sample_based_points_carry_intervals_and_budget_is_measured(tmp_path):
    _, out = _run(tmp_path, targets=["holley_stroock"], dim=4, quick=True, chains=2000, samplers=["lmc", "plmc"])
    for r in _rows(out):
        if r["kind"] == "estimate":
            assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
            assert float(r["grad_evals"]) == pytest.approx(float(r["budget"]), rel=0.1)


# ---- resume and reproducibility ----------------------------------------------------------------------

def test_interrupted_sweep_resumes_without_duplicates_and_same_numbers(tmp_path, monkeypatch):
    kw = dict(targets=["holley_stroock"], dim=4, quick=True, chains=1000, samplers=["lmc", "plmc"])
    _, full = _run(tmp_path, "full", **kw)
    reference = _rows(full)

    real = rs.run_cell
    calls = {"n": 0}

    def flaky(cell, cache):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(cell, cache)

    monkeypatch.setattr(rs, "run_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "cut", **kw)
    assert len({r["cell"] for r in _rows(tmp_path / "cut")}) == 3  # finished cells were kept
    monkeypatch.setattr(rs, "run_cell", real)
    summary, out = _run(tmp_path, "cut", resume=True, **kw)
    assert summary["settings"]["cells_run_now"] == summary["settings"]["cells"] - 3
    resumed = _rows(out)
    key = lambda r: r["cell"]  # noqa: E731
    assert sorted(resumed, key=key) == sorted(reference, key=key)  # same seed, same numbers, no duplicates


def test_noise_mode_reaches_the_sampler_keys_cells_and_is_recorded(tmp_path, monkeypatch):
    import samplers

    kw = dict(targets=["holley_stroock"], dim=4, quick=True, chains=1000, samplers=["lmc", "plmc"])
    seen = []
    real = samplers.sample

    def spy(*args, **kwargs):
        seen.append(kwargs.get("noise"))
        return real(*args, **kwargs)

    monkeypatch.setattr(samplers, "sample", spy)
    vector_summary, _ = _run(tmp_path, "vector", **kw)
    assert seen and set(seen) == {"vector"} and vector_summary["settings"]["noise"] == "vector"  # the default
    seen.clear()
    exact_summary, exact_out = _run(tmp_path, "exact", noise="exact", **kw)
    assert seen and set(seen) == {"exact"}
    seen.clear()
    fast_summary, fast_out = _run(tmp_path, "fast", noise="fast", **kw)
    assert seen and set(seen) == {"fast"}
    assert exact_summary["settings"]["noise"] == "exact" and fast_summary["settings"]["noise"] == "fast"
    exact_rows, fast_rows = _rows(exact_out), _rows(fast_out)
    assert {r["noise"] for r in exact_rows} == {"exact"} and {r["noise"] for r in fast_rows} == {"fast"}
    # the mode is part of every cell's settings: no cell key is shared between the modes
    assert not ({r["cell"] for r in exact_rows} & {r["cell"] for r in fast_rows})
    # resuming a folder of one mode in the other runs every cell again (nothing is mixed)
    seen.clear()
    mixed, _ = _run(tmp_path, "exact", noise="fast", resume=True, **{k: v for k, v in kw.items()})
    assert mixed["settings"]["cells_run_now"] == mixed["settings"]["cells"]
    assert set(seen) == {"fast"}
    # the fast mode's estimates agree with the exact mode's within their intervals' reach
    for e, f in zip(exact_rows, fast_rows):
        if e["kind"] == "estimate":
            assert (e["sampler"], e["budget"]) == (f["sampler"], f["budget"])
            tol = 4 * math.hypot(float(e["se"]), float(f["se"]))
            assert abs(float(e["value"]) - float(f["value"])) <= tol


def test_bad_noise_mode_is_refused_before_work(tmp_path, capsys):
    code = rs.main(["--noise", "exactish", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "exactish" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="float32"):
        SweepConfig(noise="float32").validate()


def test_rerun_without_resume_starts_afresh(tmp_path):
    kw = dict(targets=["gaussian"], samplers=["lmc"], budgets=[400, 800, 1600])
    _run(tmp_path, **kw)
    _, out = _run(tmp_path, **kw)
    assert len(_rows(out)) == 3


# ---- command line ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--dim", "-3"], "-3"),
    (["--samplers", "lmc,foo"], "foo"),
    (["--target", "nope"], "nope"),
    (["--budgets", "10,abc"], "abc"),
    (["--budgets", "0"], "0"),
    (["--chains", "ten"], "ten"),
    (["--kappa", "0.5"], "0.5"),
    (["--metric", "wasser"], "wasser"),
    (["--target", "holley_stroock", "--metric", "w2"], "w2"),
    (["--target", "ring", "--dim", "3"], "dim=3"),
    (["--config", "/nonexistent.json"], "nonexistent"),
    (["--device", "tpu"], "tpu"),
])
def test_bad_values_exit_nonzero_with_one_line_naming_the_value(argv, needle, tmp_path, capsys):
    code = None
    try:
        code = rs.main(argv + ["--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_cli_runs_as_a_module_and_help_documents_flags(tmp_path):
    r = subprocess.run([sys.executable, "-m", "labs.rate_sweep", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--target", "--dim", "--kappa", "--samplers", "--metric", "--budgets", "--chains", "--seeds",
                 "--device", "--dtype", "--config", "--out", "--resume", "--quick", "--study"):
        assert flag in r.stdout
    r = subprocess.run([sys.executable, "-m", "labs.rate_sweep", "--dim", "-1", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "-1" in r.stderr


def test_config_file_round_trips_and_flags_override(tmp_path):
    cfg = SweepConfig(targets=["gaussian"], samplers=["lmc", "plmc"], budgets=[400, 800, 1600], kappa=5.0)
    cfg.save(tmp_path / "c.json")
    got = rs.config_from_args(["--config", str(tmp_path / "c.json"), "--kappa", "7"])
    assert got.targets == ["gaussian"] and got.budgets == [400, 800, 1600] and got.kappa == 7.0
    (tmp_path / "c.toml").write_text('targets = ["mixture"]\nchains = 123\n')
    got = rs.config_from_args(["--config", str(tmp_path / "c.toml")])
    assert got.targets == ["mixture"] and got.chains == 123
    (tmp_path / "bad.json").write_text('{"chainz": 3}')
    with pytest.raises(ValueError, match="chainz"):
        rs.config_from_args(["--config", str(tmp_path / "bad.json")])


# ---- schedules ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["lmc", "plmc", "rlmc", "mala"])
def test_schedule_spends_the_budget_over_the_horizon(sampler):
    cfg = SweepConfig()
    for budget in (37, 400, 12800):
        n_steps, eta, K = rs.schedule_for_budget(sampler, budget, 5.0, cfg)
        assert n_steps * eta == pytest.approx(5.0)
        per = {"lmc": 1.0, "mala": 1.0, "rlmc": 2.0}.get(sampler) or 2.0 - 1.0 / K
        assert abs(n_steps * per - budget) <= per
        if sampler == "plmc":
            assert K == math.ceil(1.0 / eta - 1e-9)
        else:
            assert K is None


# ---- other studies -----------------------------------------------------------------------------------

def test_bias_study_orders_in_step_size(tmp_path):
    summary, _ = _run(tmp_path, study="bias", targets=["gaussian"], samplers=["lmc", "plmc", "rlmc"])
    assert _fit(summary, "lmc")["slope"] == pytest.approx(1.0, abs=0.1)   # stationary W2 bias ~ eta
    assert _fit(summary, "plmc")["slope"] == pytest.approx(2.0, abs=0.2)  # K ~ 1/eta: ~ eta^2
    assert _fit(summary, "rlmc")["slope"] == pytest.approx(3.0, abs=0.3)  # variance error ~ eta^3


def test_theorem_study_plmc_is_closer_to_fine_lmc_than_coarse_lmc(tmp_path):
    _, out = _run(tmp_path, study="theorem", targets=["gaussian"], Ks=[4, 16])
    rows = [r for r in _rows(out) if r["kind"] != "floor"]
    by = {}
    for r in rows:
        by.setdefault((r["step_size"], r["K_ref"]), {})[r["sampler"]] = float(r["value"])
    assert len(by) == 8
    for pair in by.values():
        assert pair["plmc"] < pair["lmc"]


def test_target_without_exact_sampler_starts_at_standard_normal_and_has_no_floor(tmp_path):
    summary, out = _run(tmp_path, targets=["logistic"], samplers=["lmc"], chains=300, budgets=[64, 128, 256])
    rows = _rows(out)
    assert rows and all(r["kind"] != "floor" and r["start"] == "standard" and r["metric"] == "ksd" for r in rows)
    (fit,) = summary["fits"]
    assert fit["noise_floor"] is None
    # a point is used only when its interval excludes zero
    used = [r for r in rows if float(r["ci_low"]) > 0]
    assert fit["n_points"] == len(used)


def test_diverging_chains_are_reported_not_turned_into_numbers(tmp_path):
    summary, out = _run(tmp_path, targets=["double_well"], dim=4, samplers=["lmc"], chains=500,
                        budgets=[20, 40, 4000], horizon=20.0)
    rows = [r for r in _rows(out) if r["kind"] != "floor"]
    bad = [r for r in rows if r["status"] == "diverged"]
    assert bad and all(r["value"] == "" and int(r["n_diverged"]) > 0 for r in bad)
    assert any("diverged" in p for p in summary["problems"])

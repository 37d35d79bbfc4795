"""Smoke test of the benchmarks: they run end to end and write the JSON they promise.

No timing is asserted (the numbers depend on the machine and its load).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_samplers_quick_runs_and_writes_expected_json(tmp_path):
    out = tmp_path / "samplers.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_samplers.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "chain-steps/s" in res.stdout
    report = json.loads(out.read_text())
    assert {"settings", "environment", "results", "memory_baseline_peak_mb",
            "plmc_over_lmc_time_per_step", "plmc_over_lmc_time_per_step_best"} <= set(report)
    assert report["settings"]["quick"] is True and report["settings"]["dtype"] == "float64"
    results = report["results"]
    assert {"minimal_loop", "lmc", "plmc_K10", "plmc_K1000000", "plmc_ref_K10", "rlmc", "mala"} <= set(results)
    for name, r in results.items():
        assert {"method", "K", "noise", "steps", "chain_steps_per_s", "evals_per_step", "slowdown_vs_minimal",
                "slowdown_vs_lmc", "peak_rss_delta_mb", "peak_rss_mb", "slowdown_vs_minimal_best",
                "slowdown_vs_lmc_best"} <= set(r), name
        c = r["chain_steps_per_s"]
        assert len(c["all"]) == report["settings"]["repeats"]
        assert 0 < c["min"] <= c["median"] <= c["max"] and math.isfinite(c["max"])
        assert isinstance(r["peak_rss_delta_mb"], float)
    # evaluation counts are exact bookkeeping, not timing: they can be asserted
    assert results["lmc"]["evals_per_step"] == 1.0
    assert results["rlmc"]["evals_per_step"] == 2.0
    assert results["mala"]["evals_per_step"] == 1.0
    assert 1.0 <= results["plmc_K10"]["evals_per_step"] <= 10.0
    assert set(report["plmc_over_lmc_time_per_step"]) == {n for n in results if n.startswith("plmc")}
    # both noise modes are timed; a mode's "x LMC" ratio is against LMC in the same mode
    assert results["lmc"]["noise"] == "exact" and results["lmc_fast"]["noise"] == "fast"
    assert results["lmc_fast"]["slowdown_vs_lmc"] == 1.0
    # memory: flat-in-K and over-sizes entries exist and are numbers
    goals = report["goals"]
    assert all(isinstance(v, float) for v in goals["plmc_peak_memory_mb_over_K"])
    assert len(goals["lmc_peak_memory_in_states_over_sizes"]) == len(report["memory"]["scaling"]) >= 2
    # allocator: LMC and PLMC (K = 10^6) of each mode also timed with glibc's defaults, or skipped with why
    alloc = report["allocator"]
    if alloc["compared"]:
        assert alloc["this_process"] == "tuned"
        assert set(alloc["results"]) == {"lmc", "plmc_K1000000", "lmc_fast", "plmc_K1000000_fast"}
        for a in alloc["results"].values():
            assert len(a["system_chain_steps_per_s"]["all"]) == report["settings"]["repeats"]
            assert a["speedup_tuned_over_system"] > 0
        for name in ("lmc", "plmc_K1000000"):  # peak memory with the tuned allocator, beside glibc's
            assert isinstance(report["memory"]["per_config"][name]["tuned_malloc_delta_mb"], float)
    else:
        assert alloc["note"]
    # BlackJAX: either measured in the same run or skipped with the reason
    bj = report["blackjax"]
    if bj["available"]:
        assert bj["chain_steps_per_s"]["median"] > 0 and bj["dtype"] == "float64"
        assert results["lmc"]["speedup_vs_blackjax"] > 0 and "lmc_over_blackjax_ula" in goals
    else:
        assert bj["note"]


def test_bench_samplers_rejects_bad_arguments(tmp_path, capsys):
    """In-process (the argument errors come before any timing or subprocess): exit status 2 and a
    message naming the bad value, and nothing written."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_samplers", ROOT / "benchmarks" / "bench_samplers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for bad, needle in ((["--noise", "exactish"], "exactish"), (["--only", "lmcx"], "lmcx"),
                        (["--threads", "0"], "--threads"), (["--profile", "nope"], "nope"),
                        (["--device", "tpu"], "tpu")):
        with pytest.raises(SystemExit) as exc:
            bench.main(["--quick", "--no-memory", "--no-blackjax", "--out", str(tmp_path / "x.json"), *bad])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and needle in err, (bad, err)
        assert not (tmp_path / "x.json").exists()


def test_bench_floor_quick_reports_levels_and_times(tmp_path):
    out = tmp_path / "floor.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_floor.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["target"], r["chains"]) for r in rows] == [("holley_stroock", 1000), ("mixture", 1000),
                                                         ("holley_stroock", 4000), ("mixture", 4000)]
    for r in rows:
        assert r["level"] > 0 and r["cell_seconds"] > 0 and math.isfinite(r["cell_value"])
    # the floor falls with the chains (4x the chains: about half the floor)
    hs = [r for r in rows if r["target"] == "holley_stroock"]
    assert hs[1]["floor_mean"] < hs[0]["floor_mean"]

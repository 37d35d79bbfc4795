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
        assert {"method", "K", "steps", "chain_steps_per_s", "grad_evals_per_step", "slowdown_vs_minimal",
                "slowdown_vs_lmc", "peak_rss_delta_mb", "peak_rss_mb", "slowdown_vs_minimal_best",
                "slowdown_vs_lmc_best"} <= set(r), name
        c = r["chain_steps_per_s"]
        assert len(c["all"]) == report["settings"]["repeats"]
        assert 0 < c["min"] <= c["median"] <= c["max"] and math.isfinite(c["max"])
        assert isinstance(r["peak_rss_delta_mb"], float)
    # evaluation counts are exact bookkeeping, not timing: they can be asserted
    assert results["lmc"]["grad_evals_per_step"] == 1.0
    assert results["rlmc"]["grad_evals_per_step"] == 2.0
    assert 1.0 <= results["plmc_K10"]["grad_evals_per_step"] <= 10.0
    assert set(report["plmc_over_lmc_time_per_step"]) == {n for n in results if n.startswith("plmc")}

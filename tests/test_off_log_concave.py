"""labs.off_log_concave: the quick profile's table, the RLMC/LMC ratio, bad input and resume."""

import csv
import io
import json
import math

import pytest

from labs import off_log_concave as olc
from labs.rate import sweep as rs
from labs.rate.config import SweepConfig

TINY = dict(quick=True, separations=[2.0, 6.0], barriers=[2.0], k_scales=[1.0, 4.0], chains=300, progress=False)


def _table(out):
    with open(out / "table.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("olc") / "out"
    text = io.StringIO()
    summary = olc.run(olc.OffLogConcaveConfig(out=str(out), **TINY), file=text)
    return out, summary, text.getvalue()


def test_quick_profile_writes_the_table(tiny_run):
    out, summary, printed = tiny_run
    rows = _table(out)
    assert list(rows[0].keys()) == olc.TABLE_COLUMNS
    got = [(r["target"], r["parameter"], float(r["value"]), float(r["k_scale"])) for r in rows]
    assert got == [("mixture", "separation", 2.0, 1.0), ("mixture", "separation", 2.0, 4.0),
                   ("mixture", "separation", 6.0, 1.0), ("mixture", "separation", 6.0, 4.0),
                   ("double_well", "barrier", 2.0, 1.0), ("double_well", "barrier", 2.0, 4.0)]
    assert [r["log_concave"] for r in rows] == ["True", "True", "False", "False", "False", "False"]
    for r in rows:
        assert r["chains"] == "300" and r["metric"] == olc.FAMILIES[r["target"]].metric
        assert r["budgets"] == ",".join(map(str, olc.FAMILIES[r["target"]].quick_budgets))
        for s in ("plmc", "rlmc"):  # a ratio with its interval, or the reason there is none
            if r[f"{s}_ratio"]:
                assert float(r[f"{s}_ci_low"]) <= float(r[f"{s}_ratio"]) <= float(r[f"{s}_ci_high"])
            else:
                assert r[f"{s}_verdict"].startswith("unresolved: ") and "budget" in r[f"{s}_verdict"]
            assert "no verdict" not in r[f"{s}_verdict"]
        sweep = json.loads((out / r["folder"] / "summary.json").read_text())
        sp = next(s for s in sweep["speedup"] if s["numerator"] == "plmc")  # PLMC/LMC is the sweep's own
        if sp["ratio"] is not None:
            assert float(r["plmc_ratio"]) == pytest.approx(sp["ratio"], rel=1e-12)
            assert r["plmc_verdict"] == sp["verdict"]
        diverged = [x for x in _sweep_rows(out / r["folder"]) if x["status"] == "diverged"]
        assert sum(int(r[f"diverged_cells_{s}"]) for s in olc.SAMPLERS) == len(diverged)
    # the k=4 sweeps take LMC's and RLMC's cells from the k=1 sweep of the same setting
    shared = {(r["target"], r["value"]): int(r["cells_shared"]) for r in rows if r["k_scale"] == "4.0"}
    assert shared[("mixture", "2.0")] == 2 * 4 and shared[("double_well", "2.0")] == 2 * 4 + 1  # + its floor
    assert (out / "table.md").read_text().startswith("| target |")
    assert len(summary["rows"]) == 6 and json.loads((out / "summary.json").read_text())["rows"]
    assert "PLMC/LMC" in printed and "6 sweeps in" in printed


def _sweep_rows(folder):
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_runs_nothing_again(tiny_run, monkeypatch):
    out, summary, _ = tiny_run

    def refuse(cell, cache):
        raise AssertionError(f"cell run again: {cell}")

    monkeypatch.setattr(rs, "run_cell", refuse)
    again = olc.run(olc.OffLogConcaveConfig(out=str(out), resume=True, **TINY), file=io.StringIO())
    assert [r["cells_run_now"] for r in again["rows"]] == [0] * 6
    assert [r["cells_shared"] for r in again["rows"]] == [0] * 6
    for a, b in zip(again["rows"], summary["rows"]):
        assert (a["plmc_ratio"], a["rlmc_ratio"], a["rlmc_ci_low"]) == (b["plmc_ratio"], b["rlmc_ratio"], b["rlmc_ci_low"])


# ---- the RLMC/LMC ratio on hand-built rows ---------------------------------------------------------

SLOPES = {"lmc": -1.0, "plmc": -2.0, "rlmc": -1.5}
BUDGETS = [16, 32, 64, 128, 256]


def _rows(se_rel=0.0, diverged=()):
    rows = []
    for sampler, s in SLOPES.items():
        for n in BUDGETS:
            row = {c: "" for c in rs.COLUMNS}
            row.update(study="rate", target="mixture", dim="2", kappa="", sampler=sampler, metric="coupled_weak",
                       kind="estimate", budget=str(n), grad_evals=str(float(n)), step_size=str(2.0 / n),
                       chains="1000", status="ok", n_diverged="0", cell=f"{sampler}-{n}",
                       K=str(math.ceil(n / 2)) if sampler == "plmc" else "",
                       k_schedule="growing" if sampler == "plmc" else "")
            if (sampler, n) in diverged:
                row.update(status="diverged", n_diverged="17")
            else:
                v = 0.5 * n**s  # an exact power law
                row.update(value=repr(v), ci_low=repr(0.8 * v), ci_high=repr(1.2 * v), se=repr(se_rel * v))
            rows.append(row)
    return rows


def test_rlmc_ratio_of_an_exact_power_law_is_exact():
    res = olc.rlmc_ratio(_rows(), SweepConfig())
    assert res["ratio"] == pytest.approx(1.5, rel=1e-12)
    assert res["ratio_ci"] == pytest.approx([1.5, 1.5], rel=1e-9)  # exact points: no spread
    assert res["numerator"]["n_points"] == res["denominator"]["n_points"] == len(BUDGETS)
    # points with standard errors: weighted fit, the same exact ratio inside a bootstrap interval
    res = olc.rlmc_ratio(_rows(se_rel=0.05), SweepConfig())
    assert res["ratio"] == pytest.approx(1.5, rel=1e-9)
    assert res["ratio_ci"][0] < 1.5 < res["ratio_ci"][1]
    # and PLMC/LMC from the same fits is the summary's ratio, 2
    assert olc.rlmc_ratio(_rows(), SweepConfig(), numerator="plmc")["ratio"] == pytest.approx(2.0, rel=1e-12)
    (sp,) = rs.summarize(_rows(), SweepConfig())["speedup"]
    assert sp["ratio"] == pytest.approx(2.0, rel=1e-12)


def test_rlmc_without_a_fit_is_unresolved_with_its_reason():
    rows = _rows(diverged={("rlmc", 16), ("rlmc", 32), ("rlmc", 64)})
    res = olc.rlmc_ratio(rows, SweepConfig())
    assert res["ratio"] is None and res["numerator"]["n_points"] == 2 and res["denominator"]["slope"] is not None
    entries = {"lmc": res["denominator"], "rlmc": res["numerator"]}
    divs = {s: olc._divergences(rows, s) for s in olc.SAMPLERS}
    why = olc._unresolved("rlmc", "lmc", entries, divs, len(BUDGETS), 1000)
    assert why.startswith("unresolved: RLMC: diverged at N=16,32,64 (51 of 3000 chains)")
    assert "2 of the 2 other budget(s) resolved" in why and "LMC" not in why.replace("RLMC", "")
    every = _rows(diverged={("rlmc", n) for n in BUDGETS})
    res = olc.rlmc_ratio(every, SweepConfig())
    assert res["ratio"] is None and (res["numerator"] is None or res["numerator"]["slope"] is None)
    entries = {"lmc": res["denominator"], "rlmc": res["numerator"]}
    why = olc._unresolved("rlmc", "lmc", entries, {s: olc._divergences(every, s) for s in olc.SAMPLERS}, len(BUDGETS), 1000)
    assert "no budget is left to fit" in why


def test_log_concavity_of_the_mixture_ends_at_separation_two():
    assert olc.log_concavity("mixture", 1.0)[0] and olc.log_concavity("mixture", 2.0)[0]
    assert not olc.log_concavity("mixture", 2.5)[0] and not olc.log_concavity("double_well", 1.0)[0]


# ---- command line ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--only", "ring"], "ring"),
    (["--k-scales", "0"], "k_scale"),
    (["--separations", "2,x"], "x"),
    (["--barriers", "-1"], "-1"),
    (["--chains", "ten"], "ten"),
    (["--separations", "2,2"], "repeated"),
])
def test_bad_input_is_a_one_line_error(argv, needle, tmp_path, capsys):
    try:
        code = olc.main(argv + ["--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()

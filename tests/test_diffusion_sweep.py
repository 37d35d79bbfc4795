"""labs.diffusion_sweep: the command line, outputs, resume after an interrupt, verdict logic, bad input."""

import csv
import json

import pytest

from labs.diffusion import sweep as ds
from samplers.diffusion import expected_pm_nfe

TINY = ["--targets", "ring,gmm", "--dim", "4", "--chains", "400", "--nfe", "10,1000", "--Ks", "40,25",
        "--samplers", "ddpm_small,ddim,dpmpp_2m:logsnr,pm_ddpm_small", "--w2-points", "100", "--mmd-points", "200",
        "--floor-reps", "2", "--no-progress"]


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = ds.main(TINY + ["--out", str(out)])
    assert rc == 0
    return out, buf.getvalue()


def test_outputs_rows_summary_figures_and_table(tiny):
    out, printed = tiny
    rows = _rows(out)
    assert list(rows[0]) == ds.COLUMNS
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"results", "settings", "noise_floor", "verdicts"}
    for r in summary["results"]:
        assert set(r) >= {"sampler", "nfe", "metric", "value", "ci"}
        lo, hi = r["ci"]
        assert lo <= r["value"] <= hi
    assert {r["metric"] for r in summary["results"]} == set(ds.METRICS)
    assert {f["target"] for f in summary["noise_floor"]} == {"ring", "gmm"}
    assert summary["settings"]["chains"] == 400 and summary["settings"]["headline_Ks"] == [40, 25]
    # the ODE solvers are also run at PM-DDPM's own mean calls (49 and 78), not only at --nfe
    assert summary["settings"]["strided_nfe"] == [10, 49, 78, 1000]
    assert (out / "error_vs_calls.png").stat().st_size > 20_000
    assert (out / "samples_2d.png").stat().st_size > 20_000
    assert "Verdict" in printed and "noise floor" in printed
    assert printed.count("vs DDPM (beta_tilde) with 1000 calls") == 4  # 2 targets x 2 K
    assert printed.count("vs ODE solvers at") == 4
    assert "Claim 'PM-DDPM at 50-80 calls matches 1000-step DDPM': held in" in printed
    assert "Claim 'PM-DDPM beats ODE solvers at equal calls': held in" in printed


def test_call_counts_in_rows_are_exact(tiny):
    out, _ = tiny
    for r in _rows(out):
        if r["kind"] != "run":
            continue
        if r["sampler"].startswith("pm_"):
            K = int(r["K"])
            nfe, sd = float(r["nfe"]), float(r["nfe_sd"])
            blocks = 1000 // K
            var = blocks * (K - 1) / K * (1 - 1 / K)
            assert abs(nfe - expected_pm_nfe(1000, K)) < 5 * (var / 400) ** 0.5
            assert sd > 0 and int(r["nfe_min"]) >= blocks
        else:
            assert float(r["nfe"]) == int(r["steps"]) == int(r["nfe_min"]) == int(r["nfe_max"])
            assert float(r["nfe_sd"]) == 0.0


def test_cells_are_plain_data_and_run_cell_is_pure():
    cfg = ds.config_from_args(TINY + ["--out", "unused"])
    cells = ds.plan_cells(cfg)
    json.dumps(cells)  # a distributed executor can ship them
    assert len({c["cell"] for c in cells}) == len(cells)
    cell = next(c for c in cells if c["sampler"] == "pm_ddpm_small" and c["target"] == "gmm")
    shared = {}
    ds.run_cell(cells[0], shared)
    a = ds.run_cell(cell, shared)
    b = ds.run_cell(dict(cell), {})
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)


def test_interrupt_keeps_finished_cells_and_resume_completes(tmp_path, monkeypatch, capsys):
    args = ["--targets", "ring", "--chains", "200", "--nfe", "5,20", "--Ks", "100", "--samplers",
            "ddim,pm_ddpm_small", "--metrics", "sliced_w2,mmd", "--mmd-points", "100", "--floor-reps", "2",
            "--no-progress"]
    fresh = tmp_path / "fresh"
    assert ds.main(args + ["--out", str(fresh)]) == 0
    real = ds.run_cell
    calls = {"n": 0}

    def flaky(cell, cache):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(cell, cache)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(ds, "run_cell", flaky)
    assert ds.main(args + ["--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    kept = _rows(out)
    assert len({r["cell"] for r in kept}) == 2
    with open(out / "results.csv", "a") as f:  # a write cut in the middle
        f.write("ring,2,{partial")
    monkeypatch.setattr(ds, "run_cell", real)
    assert ds.main(args + ["--out", str(out), "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["cells_run_now"] == summary["settings"]["cells"] - 2
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows),  # noqa: E731
                                key=lambda r: (r["cell"], r["metric"]))
    assert strip(_rows(out)) == strip(_rows(fresh))


def test_config_file_and_flags(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"targets": ["gmm"], "dim": 8, "Ks": [40]}))
    cfg = ds.config_from_args(["--config", str(p), "--dim", "16"])
    assert cfg.targets == ["gmm"] and cfg.dim == 16 and cfg.Ks == [40]
    t = tmp_path / "c.toml"
    t.write_text('targets = ["ring"]\nchains = 500\n')
    assert ds.config_from_args(["--config", str(t)]).chains == 500
    cfg = ds.DiffusionSweepConfig()
    assert ds.DiffusionSweepConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("argv, needle", [
    (["--targets", "moon"], "moon"),
    (["--samplers", "euler"], "euler"),
    (["--samplers", "pm_ddpm_small:logsnr"], "spacing"),
    (["--samplers", "ddim:cubic"], "cubic"),
    (["--nfe", "0"], "nfe"),
    (["--nfe", "2000"], "2000"),
    (["--Ks", "0"], "K"),
    (["--Ks", "5000"], "5000"),
    (["--chains", "10"], "chains"),
    (["--metrics", "kl"], "kl"),
    (["--schedule", "quadratic"], "quadratic"),
    (["--T", "0"], "T"),
    (["--ring-sigma", "-1"], "ring_sigma"),
    (["--gmm-std", "0.3,0.1"], "gmm_std"),
    (["--device", "tpu"], "tpu"),
    (["--dtype", "float16"], "float16"),
    (["--floor-reps", "1"], "floor_reps"),
    (["--config", "/nonexistent/c.json"], "does not exist"),
])
def test_bad_values_give_one_line_errors(tmp_path, capsys, argv, needle):
    assert ds.main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffusion_sweep: error:") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "results.csv").exists()


def test_unparsable_flag_and_unknown_config_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ds.main(["--dim", "abc"])
    assert e.value.code == 2 and "abc" in capsys.readouterr().err
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"chain": 5}))
    assert ds.main(["--config", str(p)]) == 2
    assert "chain" in capsys.readouterr().err


def test_quick_mode_shrinks_only_what_was_not_set():
    cfg = ds.DiffusionSweepConfig(quick=True, chains=777)
    ds.apply_quick(cfg)
    assert cfg.chains == 777 and cfg.nfe == ds.QUICK["nfe"] and cfg.Ks == ds.QUICK["Ks"]
    assert len(ds.plan_cells(cfg)) < len(ds.plan_cells(ds.DiffusionSweepConfig()))


# ---- the verdict logic on hand-made rows ----------------------------------------------------------

def _r(v, lo, hi):
    return {"value": v, "ci_low": lo, "ci_high": hi}


def test_compare_uses_disjoint_intervals_and_the_noise_floor():
    floor = _r(0.01, 0.005, 0.02)
    assert ds._compare(_r(0.5, 0.4, 0.6), _r(0.1, 0.05, 0.2), floor) == "higher"
    assert ds._compare(_r(0.1, 0.05, 0.2), _r(0.5, 0.4, 0.6), floor) == "lower"
    assert ds._compare(_r(0.3, 0.15, 0.45), _r(0.1, 0.05, 0.2), floor) == "tie"
    # both inside the floor's prediction interval: a tie even if the intervals are disjoint
    assert ds._compare(_r(0.019, 0.0185, 0.0195), _r(0.006, 0.0055, 0.0065), floor) == "tie"
    assert ds.at_floor(0.01, floor) and not ds.at_floor(0.03, floor) and not ds.at_floor(0.01, None)


def test_summary_verdicts_on_hand_made_rows():
    cfg = ds.DiffusionSweepConfig(targets=["ring"], samplers=["ddpm_small", "ddim", "pm_ddpm_small"],
                                  Ks=[40], nfe=[1000], metrics=["mmd"])
    base = dict(target="ring", dim="2", metric="mmd", status="ok", n_diverged="0", nfe_sd="0", n_points="100",
                chains="100", seconds="0", steps="", K="")
    floor = dict(base, kind="floor", sampler="exact", value="0", ci_low="-0.001", ci_high="0.001")

    def rows(pm, full, ode):
        return [floor,
                dict(base, kind="run", sampler="pm_ddpm_small", K="40", nfe="49.4", nfe_sd="4.8", **pm),
                dict(base, kind="run", sampler="ddpm_small", steps="1000", nfe="1000", **full),
                dict(base, kind="run", sampler="ddim", steps="49", nfe="49", **ode)]

    s = ds.summarize(rows(dict(value="0.05", ci_low="0.04", ci_high="0.06"), dict(value="0.0", ci_low="-0.001",
                     ci_high="0.001"), dict(value="0.01", ci_low="0.008", ci_high="0.012")), cfg)
    assert "did NOT match" in s["verdicts"][0] and "DDIM: NOT beaten (PM-DDPM higher on 1/1" in s["verdicts"][1]
    assert "held in 0 of 1" in s["overall"][0] and "held in 0 of 1" in s["overall"][1]
    s = ds.summarize(rows(dict(value="0.0005", ci_low="-0.0005", ci_high="0.0015"), dict(value="0.0", ci_low="-0.001",
                     ci_high="0.001"), dict(value="0.01", ci_low="0.008", ci_high="0.012")), cfg)
    assert "MATCHED" in s["verdicts"][0] and "DDIM: BEATEN by PM-DDPM" in s["verdicts"][1]
    assert "held in 1 of 1" in s["overall"][0] and "held in 1 of 1" in s["overall"][1]
    assert s["results"][0]["at_noise_floor"] is True

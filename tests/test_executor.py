"""labs.executor: the rate sweep's cells on a local Dask cluster give the serial run's rows, row for row,
and a lost worker or a killed driver loses no finished cell."""

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

distributed = pytest.importorskip("distributed")

from labs import executor as ex  # noqa: E402
from labs.rate import sweep as rs  # noqa: E402
from labs.rate.config import SweepConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# 17 cells: the exact-law Gaussian (8) and the sampled Holley-Stroock target with its noise floor (9).
SMALL = dict(targets=["holley_stroock", "gaussian"], dim=4, quick=True, chains=1000, samplers=["lmc", "plmc"])
SMALL_ARGS = ["--target", "holley_stroock,gaussian", "--dim", "4", "--quick", "--chains", "1000",
              "--samplers", "lmc,plmc"]


def _rows(out):
    with open(Path(out) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _by_cell(rows):
    return sorted(rows, key=lambda r: r["cell"])


def _complete_cells(path) -> set:
    """Cells in a results file being written by another process, read without touching the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return set()
    lines = data[: data.rfind(b"\n") + 1].decode().splitlines()
    return {r["cell"] for r in csv.DictReader(lines) if r.get("cell")}


def _sweep(out, **kw):
    cfg = SweepConfig(out=str(out), progress=False, **dict(SMALL, **kw))
    return rs.run_sweep(cfg)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    summary = _sweep(out)
    return summary, _rows(out)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}) as c:
        yield c


# ---- functions that run on the workers (imported there by reference) -----------------------------

def _slow_cell(delay, cell, cache):
    time.sleep(delay)
    return rs.run_cell(cell, cache)


def _dies_once(victim, marker, results, cell, cache):
    """Kill this worker process in the middle of cell ``victim``, once, after two cells are stored."""
    time.sleep(0.2)
    if cell["cell"] == victim and not os.path.exists(marker):
        deadline = time.time() + 30
        while len(_complete_cells(results)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return rs.run_cell(cell, cache)
        stored = sorted(_complete_cells(results))
        os.write(fd, (f"{os.getpid()}\n" + "\n".join(stored)).encode())
        os.close(fd)
        os._exit(1)
    return rs.run_cell(cell, cache)


def _gpu_probe():
    """A cell function reporting the GPU its worker sees (defined locally: shipped by value, no imports)."""
    def which_gpu(cell, cache):
        import os
        import time

        time.sleep(0.3)
        return [{"cell": cell["cell"], "value": os.environ.get("CUDA_VISIBLE_DEVICES")}]

    return which_gpu


class _ListStore:
    def __init__(self):
        self.rows = []

    def append(self, rows):
        self.rows.extend(rows)


# ---- same rows whichever executor ran them ---------------------------------------------------------

def test_two_local_workers_give_the_serial_rows_row_for_row(serial, tmp_path):
    ref_summary, ref = serial
    summary = _sweep(tmp_path / "dask", executor="dask", workers=2)
    rows = _rows(tmp_path / "dask")
    assert len(rows) == len(ref) == summary["settings"]["cells"] == 17
    assert len({r["cell"] for r in rows}) == len(rows)  # each cell once
    assert _by_cell(rows) == _by_cell(ref)              # every value equal, as text, exactly
    assert summary["fits"] == ref_summary["fits"] and summary["speedup"] == ref_summary["speedup"]
    assert summary["settings"]["executor"] == "dask" and summary["settings"]["workers"] == 2


# ---- a worker lost mid-sweep ------------------------------------------------------------------------

def test_worker_killed_mid_cell_loses_no_finished_cell_and_the_sweep_completes(serial, cluster, tmp_path,
                                                                                monkeypatch):
    _, ref = serial
    out = tmp_path / "killed"
    cells = rs.plan_cells(SweepConfig(**SMALL))
    victim = cells[6]["cell"]
    marker = tmp_path / "killed-worker"
    with distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
    monkeypatch.setattr(rs, "run_cell", functools.partial(_dies_once, victim, str(marker), str(out / "results.csv")))
    summary = _sweep(out, executor="dask", address=cluster.scheduler_address)

    assert marker.exists(), "no worker was killed"
    pid, *stored_at_kill = marker.read_text().splitlines()
    assert int(pid) in worker_pids                                 # one of the cluster's two workers
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert len(stored_at_kill) >= 2 and victim not in stored_at_kill  # killed mid-sweep, mid-cell
    rows = _rows(out)
    assert set(stored_at_kill) <= {r["cell"] for r in rows}       # nothing finished was lost
    assert len({r["cell"] for r in rows}) == len(rows) == 17      # the killed cell ran again, once
    assert _by_cell(rows) == _by_cell(ref)
    assert summary["settings"]["cells_run_now"] == 17


# ---- the diffusion lab on the same engine --------------------------------------------------------

DIFFUSION_TINY = ["--targets", "ring", "--chains", "400", "--nfe", "10,49", "--Ks", "25",
                  "--samplers", "ddpm_small,ddim,pm_ddpm_small", "--metrics", "sliced_w2,mmd",
                  "--mmd-points", "200", "--floor-reps", "2", "--no-progress"]


def test_diffusion_sweep_on_a_cluster_gives_the_serial_rows(cluster, tmp_path, capsys):
    from labs.diffusion import sweep as ds

    import torch

    # Workers run torch on one thread; the serial run must too for bit-identical reductions
    # (a sum over a kernel matrix is split by the thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert ds.main(DIFFUSION_TINY + ["--out", str(tmp_path / "serial")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert ds.main(DIFFUSION_TINY + ["--out", str(tmp_path / "dask"), "--executor", "dask",
                                     "--address", cluster.scheduler_address]) == 0
    capsys.readouterr()

    def strip_time(rows):  # "seconds" is each cell's wall time: the one column that may differ
        return _by_cell([{k: v for k, v in r.items() if k != "seconds"} for r in rows])

    serial, dask_rows = _rows(tmp_path / "serial"), _rows(tmp_path / "dask")
    assert len(dask_rows) == len(serial) > 0
    assert strip_time(dask_rows) == strip_time(serial)
    a = json.loads((tmp_path / "serial" / "summary.json").read_text())
    b = json.loads((tmp_path / "dask" / "summary.json").read_text())
    untimed = [[{k: v for k, v in r.items() if k != "seconds"} for r in x["results"]] for x in (a, b)]
    assert untimed[0] == untimed[1] and a["verdicts"] == b["verdicts"]
    assert b["settings"]["executor"] == "dask"


def test_diffusion_sweep_refuses_bad_executor_settings(tmp_path, capsys):
    from labs.diffusion import sweep as ds

    assert ds.main(["--executor", "ray", "--out", str(tmp_path / "o")]) == 2
    assert "ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert "--executor" in ds.build_parser().format_help()


# ---- a driver killed mid-sweep, then --resume --------------------------------------------------------

DRIVER = """
import sys, time
from labs.rate import sweep as rs  # noqa: E402
real = rs.run_cell
def slow(cell, cache):
    time.sleep(0.4)
    return real(cell, cache)
rs.run_cell = slow
sys.exit(rs.main(sys.argv[1:]))
"""


def test_killed_driver_keeps_finished_cells_and_resume_completes_them(serial, cluster, tmp_path):
    _, ref = serial
    out = tmp_path / "driver"
    results = out / "results.csv"
    argv = [sys.executable, "-c", DRIVER, *SMALL_ARGS, "--executor", "dask", "--workers", "2",
            "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    descendants = []
    try:
        deadline = time.time() + 60
        while len(_complete_cells(results)) < 3 and time.time() < deadline and proc.poll() is None:
            descendants = psutil.Process(proc.pid).children(recursive=True) or descendants
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(descendants, timeout=15)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for p in psutil.wait_procs(descendants, timeout=0)[1]:
            p.kill()
    assert not alive, f"worker processes outlived the killed driver: {[p.pid for p in alive]}"

    kept = _rows(out)
    assert 3 <= len(kept) < 17
    reference = {r["cell"]: r for r in ref}
    assert all(r == reference[r["cell"]] for r in kept)  # every stored row whole and right
    summary = _sweep(out, executor="dask", address=cluster.scheduler_address, resume=True)
    assert summary["settings"]["cells_run_now"] == 17 - len(kept)
    rows = _rows(out)
    assert len({r["cell"] for r in rows}) == len(rows) == 17
    assert _by_cell(rows) == _by_cell(ref)


def test_a_cell_that_raises_stops_the_sweep_keeping_finished_cells(cluster, tmp_path, monkeypatch):
    cells = rs.plan_cells(SweepConfig(**SMALL))
    bad = dict(cells[5], dtype="float16")  # run_cell raises KeyError on an unknown dtype
    store = _ListStore()
    with pytest.raises(KeyError, match="float16"):
        ex.run_cells(cells[:5] + [bad], rs.run_cell, store, executor="dask", address=cluster.scheduler_address,
                     retries=0)
    done = {r["cell"] for r in store.rows}
    assert bad["cell"] not in done and done <= {c["cell"] for c in cells[:5]}


# ---- GPUs: one per worker through the engine's resources ---------------------------------------------

def test_gpu_cells_ask_for_the_gpu_resource_and_each_worker_sees_one_gpu(tmp_path):
    specs = ex.gpu_worker_specs(["3", "5"])
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == ["3", "5"]
    assert all(s["options"]["resources"] == {"GPU": 1} for s in specs.values())
    scheduler = {"cls": distributed.Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                                          "dashboard_address": ":0"}}
    # A third worker without the resource must never get a GPU cell.
    specs["cpu"] = {"cls": distributed.Nanny, "options": {"host": "127.0.0.1", "nthreads": 2, "dashboard": False,
                                                         "env": {"CUDA_VISIBLE_DEVICES": "none"}}}
    cells = [{"cell": f"c{i}"} for i in range(6)]
    with distributed.SpecCluster(scheduler=scheduler, workers=specs) as c:
        store = _ListStore()
        ex.run_cells(cells, _gpu_probe(), store, executor="dask", address=c.scheduler_address, device="cuda")
    seen = {r["value"] for r in store.rows}
    assert sorted(r["cell"] for r in store.rows) == [c["cell"] for c in cells]
    assert seen <= {"3", "5"} and "none" not in seen


def test_gpu_cells_refuse_a_cluster_without_gpu_workers(cluster):
    with pytest.raises(ValueError, match="GPU"):
        ex.run_cells([{"cell": "x"}], _gpu_probe(), _ListStore(), executor="dask",
                     address=cluster.scheduler_address, device="cuda")


def test_gpu_specs_refuse_missing_or_too_few_gpus():
    with pytest.raises(ValueError, match="no GPU"):
        ex.gpu_worker_specs([])
    with pytest.raises(ValueError, match="workers=3"):
        ex.gpu_worker_specs(["0", "1"], workers=3)


# ---- settings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--executor", "ray"], "ray"),
    (["--executor", "dask", "--workers", "0"], "0"),
    (["--workers", "2"], "workers=2"),
    (["--address", "tcp://127.0.0.1:8786"], "tcp://127.0.0.1:8786"),
    (["--executor", "dask", "--workers", "2", "--address", "tcp://h:1"], "tcp://h:1"),
    (["--executor", "dask", "--device", "cuda:1"], "cuda:1"),
    (["--executor", "dask", "--workers", "two"], "two"),
])
def test_bad_executor_settings_exit_nonzero_naming_the_value(argv, needle, tmp_path, capsys):
    try:
        code = rs.main(argv + ["--out", str(tmp_path / "o")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


def test_unreachable_scheduler_is_a_value_error_naming_it(tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ValueError, match="tcp://127.0.0.1:9"):
            ex.run_cells([{"cell": "x"}], _gpu_probe(), _ListStore(), executor="dask", address="tcp://127.0.0.1:9")


def test_help_documents_the_executor_flags():
    text = rs.build_parser().format_help()
    for flag in ("--executor", "--address", "--workers"):
        assert flag in text

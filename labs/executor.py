"""Run a lab's cells here, one after another, or on a Dask cluster: ``run_cells``.

A lab is a list of *cells* (plain settings dicts, each with a ``"cell"`` key) and a pure function
``run_cell(cell, cache) -> list[dict]`` that turns one cell into rows.  ``cache`` is a dict the
function may fill with things that depend only on the settings (targets, exact start samples),
so that they are built once per process rather than once per cell.  Every cell is a pure
function of its settings and seed, so the rows are the same whichever executor runs them; only
their order in the results file differs.  (Up to the last bit where torch splits a large
reduction by its thread count: Dask workers run on one thread, a serial driver on torch's
default; run the serial sweep with ``OMP_NUM_THREADS=1`` for bit-identical files.)

``executor="local"`` (the default)
    The cells run one after another in this process.

``executor="dask"``
    Each cell is a Dask task.  ``address`` connects to a running scheduler (a cluster started by
    ``dask scheduler`` / ``dask worker``, by ``dask-jobqueue`` on Slurm/PBS/SGE, ...);
    ``workers=N`` (or neither) starts a ``LocalCluster`` of ``N`` single-threaded worker processes
    on this machine (default: one per CPU core).  Rows come back to this process and are
    appended to the results store as each task finishes (``distributed.as_completed``), so a
    lost worker or a killed driver loses only the cells that had not finished: Dask reschedules a
    lost worker's cells on the others (``distributed.scheduler.allowed-failures`` times, 3 by
    default), a cell that raised is retried ``retries`` times, and a killed driver leaves every
    finished cell in the store for ``--resume``.

GPUs: when ``device`` is ``cuda`` every cell asks the scheduler for one unit of the ``GPU``
resource, so a worker runs one cell at a time on its GPU, and each worker sees exactly one GPU
through ``CUDA_VISIBLE_DEVICES``, set where the worker is started: by Slurm for a job that asks
for one GPU (``--gres=gpu:1``), by ``dask-cuda`` (``dask cuda worker``) on a node with several, or
here, for a local cluster, one worker per visible GPU.  Workers advertise the resource with
``--resources GPU=1``.  The driver never picks a device for a cell.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Callable, Iterable, Optional

__all__ = ["EXECUTORS", "check_executor", "run_cells", "run_planned"]

EXECUTORS = ("local", "dask")

# Per worker process: the cache handed to ``run_cell``, kept between the cells of one sweep and
# dropped when a new sweep (a new token) arrives, so a long-lived cluster does not accumulate it.
_WORKER_CACHE: dict = {"token": None, "cache": {}}


def check_executor(executor: str, address: Optional[str] = None, workers: Optional[int] = None,
                   device: str = "cpu") -> None:
    """Raise ``ValueError`` naming the bad value, before any work starts."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if address is not None:
        if not isinstance(address, str) or not address.strip() or any(c.isspace() for c in address):
            raise ValueError(f"address must be a scheduler address like tcp://host:8786, got {address!r}")
        if executor != "dask":
            raise ValueError(f"address {address!r} is for the dask executor, not {executor!r}")
        if workers is not None:
            raise ValueError(f"workers={workers} starts a local cluster; it cannot be combined with "
                             f"address {address!r} (an existing cluster)")
    if workers is not None and executor != "dask":
        raise ValueError(f"workers={workers} is for the dask executor, not {executor!r}")
    if executor == "dask" and str(device).startswith("cuda:"):
        raise ValueError(f"device {device!r}: with the dask executor use 'cuda'; each worker sees "
                         "one GPU, chosen where the worker is started")


def run_cells(cells: Iterable[dict], run_cell: Callable[[dict, dict], list], store, *,
              executor: str = "local", address: Optional[str] = None, workers: Optional[int] = None,
              device: str = "cpu", progress: bool = False, desc: str = "cells", retries: int = 1) -> int:
    """Run ``run_cell`` over ``cells`` and append each cell's rows to ``store`` as it finishes.

    ``store`` needs only an ``append(rows)`` method (``labs.store.ResultStore``); it is called in
    this process, one cell at a time.  Returns the number of cells run.  An exception raised by a
    cell (after its retries) stops the sweep: the cells that had finished are kept, the others
    cancelled, and the exception propagates, as in the serial loop.
    """
    cells = list(cells)
    check_executor(executor, address, workers, device)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if executor == "local":
        from tqdm import tqdm

        cache: dict = {}
        for cell in tqdm(cells, desc=desc, disable=not progress, unit="cell"):
            store.append(run_cell(cell, cache))
        return len(cells)
    if not cells:
        return 0
    return _run_dask(cells, run_cell, store, address=address, workers=workers,
                     gpu=str(device).startswith("cuda"), progress=progress, desc=desc, retries=retries)


def run_planned(cfg, cells: list, run_cell: Callable[[dict, dict], list], columns: list, desc: str):
    """A lab's driver loop: the planned ``cells`` into ``cfg.out/results.csv``, then every row of them.

    ``cfg`` is a lab's settings (``out``, ``resume``, ``device``, ``progress``, ``executor``,
    ``address``, ``workers`` and ``save(path)``).  Without ``resume`` the results file starts
    empty; with it, finished cells are skipped.  The settings are saved to ``settings.json``.
    Returns ``(rows, cells_run_now, seconds)``, the rows in planned order, whatever order the
    cells finished in (so fits and bootstraps see the same sequence as a serial run).
    """
    import time
    from pathlib import Path

    import torch

    from labs.store import ResultStore

    if str(cfg.device).startswith("cuda") and cfg.address is None and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} requested but CUDA is not available")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / "results.csv", columns)
    if not cfg.resume:
        store.reset()
    done = store.done_cells()
    todo = [c for c in cells if c["cell"] not in done]
    cfg.save(out / "settings.json")
    t0 = time.time()
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    run_cells(todo, run_cell, store, executor=cfg.executor, address=cfg.address, workers=cfg.workers,
              device=cfg.device, progress=show, desc=desc)
    elapsed = time.time() - t0
    order = {c["cell"]: i for i, c in enumerate(cells)}
    rows = sorted((r for r in store.read() if r["cell"] in order), key=lambda r: order[r["cell"]])
    return rows, len(todo), elapsed


# ------------------------------------------------------------------------------------------------
# Dask


def _run_on_worker(run_cell, cell: dict, token: str) -> list:
    """The task: one cell, with this worker process's cache for the current sweep.  A worker
    process opts in to the allocator tuning as the command line does (:mod:`samplers.allocator`;
    once per process, ``LAB_MALLOC=system`` honoured)."""
    import samplers

    samplers.allocator.tune()
    if _WORKER_CACHE["token"] != token:
        _WORKER_CACHE["token"], _WORKER_CACHE["cache"] = token, {}
    return run_cell(cell, _WORKER_CACHE["cache"])


def _describe(cell: dict, limit: int = 160) -> str:
    text = ", ".join(f"{k}={v}" for k, v in cell.items() if k != "cell" and v not in ("", None))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_dask(cells, run_cell, store, *, address, workers, gpu, progress, desc, retries) -> int:
    from distributed import as_completed
    from tqdm import tqdm

    with _connect(address, workers, gpu) as client:
        if gpu:
            _check_gpu_workers(client, address)
        token = uuid.uuid4().hex
        resources = {"GPU": 1} if gpu else None
        futures = {}
        for cell in cells:
            fut = client.submit(_run_on_worker, run_cell, cell, token, key=f"{desc}-{cell['cell']}-{token[:8]}",
                                resources=resources, retries=retries, pure=False)
            futures[fut] = cell
        saved = set()
        bar = tqdm(total=len(cells), desc=desc, disable=not progress, unit="cell")
        try:
            for fut in as_completed(futures):
                rows = _result(fut, futures[fut])
                store.append(rows)
                saved.add(fut.key)
                bar.update()
        except BaseException:
            # Keep whatever else has finished by now; cancel the rest.
            for fut in futures:
                if fut.key not in saved and fut.status == "finished":
                    try:
                        store.append(fut.result(timeout=10))
                        saved.add(fut.key)
                    except Exception:
                        pass
            client.cancel([f for f in futures if f.key not in saved])
            raise
        finally:
            bar.close()
    return len(cells)


def _result(fut, cell):
    from distributed import KilledWorker

    try:
        return fut.result()
    except KilledWorker as exc:
        raise RuntimeError(f"cell {cell['cell']} ({_describe(cell)}) was running on every worker that "
                           f"died while running it: {exc}") from exc


class _Connection:
    """A ``Client`` and, when we started it, the local cluster behind it (closed together)."""

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _connect(address, workers, gpu) -> _Connection:
    from distributed import Client

    if address is not None:
        try:
            client = Client(address)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach a Dask scheduler at address {address!r}: {exc}") from None
        return _Connection(client)
    import dask

    # Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's adaptive mmap
    # threshold: every large torch temporary is then a fresh mmap, and the time in the kernel grows
    # several-fold.  Workers started here keep glibc's default (OMP_NUM_THREADS=1 stays).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        if gpu:
            cluster = _local_gpu_cluster(_visible_gpus(), workers)
        else:
            from distributed import LocalCluster

            n = workers if workers is not None else _cpu_count()
            # no dashboard; the scheduler's small HTTP server on any free port
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": ":0"})
    try:
        return _Connection(Client(cluster), cluster)
    except BaseException:
        cluster.close()
        raise


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [s.strip() for s in env.split(",") if s.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_worker_specs(gpus: list[str], workers: Optional[int] = None) -> dict:
    """Dask worker specs for a local GPU cluster: one single-threaded worker per GPU.

    Each worker is a ``Nanny`` that starts its process with ``CUDA_VISIBLE_DEVICES`` set to its
    own GPU (so ``cuda`` means that GPU inside it) and advertises ``resources={"GPU": 1}``.
    """
    if not gpus:
        raise ValueError("device 'cuda' with the dask executor, but no GPU is visible "
                         "(CUDA_VISIBLE_DEVICES / torch.cuda.device_count())")
    if workers is not None and workers > len(gpus):
        raise ValueError(f"workers={workers} but only {len(gpus)} GPU(s) visible ({','.join(gpus)}): "
                         "one worker per GPU")
    from distributed import Nanny

    chosen = gpus if workers is None else gpus[:workers]
    return {f"gpu-{g}": {"cls": Nanny, "options": {"host": "127.0.0.1", "nthreads": 1, "dashboard": False,
                                                   "resources": {"GPU": 1},
                                                   "env": {"CUDA_VISIBLE_DEVICES": g}}}
            for g in chosen}


def _local_gpu_cluster(gpus, workers):
    from distributed import Scheduler, SpecCluster

    specs = gpu_worker_specs(gpus, workers)
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                               "dashboard_address": ":0"}}
    return SpecCluster(scheduler=scheduler, workers=specs)


def _check_gpu_workers(client, address) -> None:
    """A cluster whose workers advertise no GPU would hold the cells forever: refuse it."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        print(f"executor: no worker connected to {address or 'the cluster'} yet; cells wait for workers "
              "started with --resources GPU=1", file=sys.stderr)
        return
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()):
        raise ValueError(f"device 'cuda' but no worker of the cluster at {address or 'here'} advertises a GPU "
                         "resource: start each worker with --resources GPU=1 and one visible GPU")

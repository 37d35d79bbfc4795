"""What every lab shares: the :class:`Study` protocol, the run settings and the driver.

A study plans **cells** (one unit of resumable work each: a mapping of settings), runs one cell
into tidy rows, summarizes the rows and draws them.  :func:`run_study` does everything else the
same way for every study:

1. checks the settings (``cfg.validate()``), applies ``--quick`` (:func:`apply_quick`: every
   setting of ``study.quick`` that was left at its default takes the quick value);
2. plans the cells and gives each its key (a hash of its settings, :func:`labs.store.cell_key`);
3. runs the cells not yet in ``cfg.out/results.csv`` (all of them unless ``cfg.resume``), here
   or on Dask (:mod:`labs.executor`), appending each finished cell's rows at once, so an
   interrupted run keeps its work;
4. summarizes, writes ``summary.json`` (with the settings, the cell counts and the torch
   version), draws the figures and prints the table.

:func:`run_main` is the command line around it (exit status 2 with a one-line error on bad
settings, 130 on an interrupt).  ``docs/extending.md`` builds a study step by step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

import torch

__all__ = ["Study", "RunConfig", "run_study", "apply_quick", "run_main", "as_float", "print_block"]


class Study(Protocol):
    """A lab's experiment, as :func:`run_study` drives it.

    name:        the command's name (``rate_sweep``), used in progress bars and messages.
    columns:     the columns of ``results.csv``; a row's other keys are refused.
    quick:       ``--quick``: settings and their quick values, applied where left at default.
    """

    name: str
    columns: Sequence[str]
    quick: Mapping[str, Any]

    def plan(self, cfg) -> list[dict]:
        """Every cell the run needs, in a fixed order (the fits read rows in this order)."""

    def run_cell(self, cell: dict, cache: dict) -> list[dict]:
        """One cell's rows.  ``cache`` persists between the cells one process runs."""

    def summarize(self, rows: list[dict], cfg) -> dict:
        """Fits and verdicts from the rows (values read back from the CSV are strings)."""

    def plot(self, rows: list[dict], summary: dict, cfg, out: Path) -> None:
        """Draw the figures into the folder ``out``."""

    def print_table(self, summary: dict, cfg, elapsed: float, out: Path) -> None:
        """Print what a reader of the terminal needs: the numbers and the verdicts."""


@dataclass
class RunConfig:
    """The settings every lab shares; a study's settings derive from it and add their own.

    ``validate()`` checks these (device, dtype, executor) and returns ``self``; a subclass checks
    its own settings and then calls ``super().validate()``.
    """

    device: str = "cpu"
    dtype: str = "float64"
    out: str = "results/study"
    resume: bool = False
    quick: bool = False
    progress: Optional[bool] = None      # None: on when stderr is a terminal
    executor: str = "local"              # "local" (serial, here) or "dask" (labs/executor.py)
    address: Optional[str] = None        # dask: scheduler of an existing cluster, e.g. tcp://host:8786
    workers: Optional[int] = None        # dask: start a local cluster of this many workers

    def validate(self):
        from labs.cli import check_run_settings

        check_run_settings(self)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> None:
        from labs.cli import json_default

        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=json_default) + "\n")


def apply_quick(cfg, quick: Mapping[str, Any]):
    """``--quick``: each setting in ``quick`` that ``cfg`` left at its default takes the quick
    value (a setting given explicitly is kept).  Returns ``cfg``, validated."""
    defaults = type(cfg)()
    names = {f.name for f in fields(cfg)}
    for k, v in quick.items():
        if k not in names:
            raise ValueError(f"quick setting {k!r} is not a setting of {type(cfg).__name__}")
        if getattr(cfg, k) == getattr(defaults, k):
            setattr(cfg, k, list(v) if isinstance(v, list) else v)
    return cfg.validate()


def run_study(study: Study, cfg) -> dict:
    """Run ``study`` with settings ``cfg`` (see the module docstring); returns the summary."""
    from labs.cli import json_default
    from labs.executor import run_planned
    from labs.store import cell_key

    cfg.validate()
    if cfg.quick:
        apply_quick(cfg, study.quick)
    t0 = time.time()
    cells = study.plan(cfg)
    for c in cells:
        c.setdefault("cell", cell_key(c))
    rows, n_run, _ = run_planned(cfg, cells, study.run_cell, list(study.columns), study.name)
    out = Path(cfg.out)
    summary = study.summarize(rows, cfg)
    study.plot(rows, summary, cfg, out)
    elapsed = time.time() - t0
    settings = dict(cfg.to_dict(), cells=len(cells), cells_run_now=n_run, torch=torch.__version__)
    summary["settings"] = dict(settings, **summary.get("settings", {}))
    summary["elapsed_s"] = elapsed
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=json_default) + "\n")
    study.print_table(summary, cfg, elapsed, out)
    return summary


def run_main(study: Study, make_config) -> int:
    """The command line of a study: ``run_study(study, make_config())`` with the labs' exit
    statuses (:func:`labs.cli.run_main`)."""
    from labs import cli

    return cli.run_main(study.name, make_config, lambda cfg: run_study(study, cfg))


def as_float(value) -> float:
    """A CSV cell as a float; ``""`` (a missing value) and anything else unparsable as NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def print_block(p, title: str, lines) -> None:
    """A titled block of a study's printed table (``p`` prints a line): a blank line, ``title``,
    then each line indented; nothing when there are no lines."""
    lines = list(lines)
    if not lines:
        return
    p("")
    p(title)
    for line in lines:
        p(f"  {line}")

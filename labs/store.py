"""A tidy results file that survives interruption: one CSV, appended one finished cell at a time.

Every row carries a ``cell`` key (a hash of the settings that produced it).  A cell's rows are
written together and flushed to disk before the next cell starts, so an interrupted sweep keeps
every finished cell; ``done_cells()`` tells a resumed sweep which cells to skip, so no row is
duplicated.  A partial last line (a kill in the middle of a write) is dropped on reading.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

__all__ = ["ResultStore", "cell_key"]


def cell_key(settings: dict) -> str:
    """A stable short hash of a cell's settings (JSON with sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class ResultStore:
    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        self.columns = list(columns)

    def _clean_tail(self) -> None:
        """Drop a partial last line left by an interrupted write."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        self._clean_tail()
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames and list(reader.fieldnames) != self.columns:
                raise ValueError(
                    f"{self.path} has columns {reader.fieldnames}, expected {self.columns}: "
                    "it was written by another version; use a new --out folder")
            return [row for row in reader if row.get("cell")]

    def done_cells(self) -> set[str]:
        return {row["cell"] for row in self.read()}

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def append(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        self._clean_tail()
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="raise")
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({c: row.get(c, "") for c in self.columns})
            f.flush()
            os.fsync(f.fileno())

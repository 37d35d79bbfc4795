"""Every notebook in ``notebooks/`` runs to the end at small size, and is committed clean.

Each ``notebooks/*.ipynb`` (found by a glob, so notebooks added later are picked up) is executed
with nbclient:

* in a fresh kernel of THIS interpreter: a kernel spec pointing at ``sys.executable`` is written
  to a temporary folder put first on ``JUPYTER_PATH``, so no user-wide or system kernel (with
  another Python and other packages) can be picked up, whatever machine runs the suite;
* with ``LAB_NOTEBOOK_SIZE=small`` (every notebook reads its size from that one variable) and
  ``LAB_NOTEBOOK_FIGURES`` unset (nothing is saved);
* with a temporary working directory, so a notebook cannot write into the repository;
* with a timeout per cell; any cell error fails the test with the cell's traceback.

The committed notebooks carry no outputs (the outputs are stripped: clean diffs and no
machine-specific paths); ``python notebooks/run_notebooks.py --strip`` strips them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "poisson-midpoint-lab-tests"
CELL_TIMEOUT_S = 300
# absolute paths that would tie a committed notebook to one machine
MACHINE_PATH = re.compile(r"(/home/|/Users/|/work/|/tmp/|/private/var/|site-packages|[A-Za-z]:\\\\)")


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory) -> Path:
    """A JUPYTER_PATH folder holding one kernel spec that runs ``sys.executable -m ipykernel_launcher``."""
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path_factory.mktemp("jupyter")
    spec = write_kernel_spec(str(root / "kernels" / KERNEL_NAME))
    text = (Path(spec) / "kernel.json").read_text()
    assert sys.executable in text.replace("\\\\", "\\"), text  # the kernel is this interpreter
    return root


def test_notebooks_are_found():
    """The numbered notebooks are in place (others are picked up as they come)."""
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_"):
        assert any(n.startswith(prefix) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_at_small_size(path, tmp_path, monkeypatch, kernel_dir):
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    monkeypatch.setenv("LAB_NOTEBOOK_SIZE", "small")
    monkeypatch.delenv("LAB_NOTEBOOK_FIGURES", raising=False)
    # a last cell reports where the kernel ran and with which interpreter
    nb.cells.append(nbformat.v4.new_code_cell("import os, sys; print(os.getcwd()); print(sys.executable)"))
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S, startup_timeout=120,
                            allow_errors=False, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises nbclient.exceptions.CellExecutionError (with the traceback) on any error
    cwd, exe = nb.cells[-1].outputs[0]["text"].split()
    assert Path(cwd).resolve() == tmp_path.resolve()
    assert Path(exe) == Path(sys.executable)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_stripped_and_portable(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {i} has outputs"
    match = MACHINE_PATH.search(path.read_text())
    assert match is None, f"{path.name} holds a machine-specific path near {match.group(0)!r}"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "LAB_NOTEBOOK_SIZE" in first.source, f"{path.name}: the first code cell must read LAB_NOTEBOOK_SIZE"

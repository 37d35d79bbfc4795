"""Run, time and strip the notebooks in this folder.

    ./lab python notebooks/run_notebooks.py                    # every notebook at full size, timed
    ./lab python notebooks/run_notebooks.py --size small       # what the test suite runs
    ./lab python notebooks/run_notebooks.py --figures          # and write figures to notebooks/figures/
    ./lab python notebooks/run_notebooks.py --executed DIR     # and keep executed copies (with outputs) in DIR
    ./lab python notebooks/run_notebooks.py 01 03              # only the notebooks whose names start so
    ./lab python notebooks/run_notebooks.py --strip            # strip outputs from the committed notebooks

Notebooks run in a kernel of this interpreter (a kernel spec written to a temporary folder),
in a temporary working directory, with ``LAB_NOTEBOOK_SIZE`` set to ``--size``. With
``--figures`` the variable ``LAB_NOTEBOOK_FIGURES`` names ``notebooks/figures/``, where the
notebooks that save figures write them (notebook 1 writes the figure the top-level README shows).
The committed notebooks are kept without outputs: ``--strip`` removes outputs, execution counts
and per-cell execution metadata in place (after editing a notebook in Jupyter, run it before
committing).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "poisson-midpoint-lab"


def notebooks(prefixes) -> list[Path]:
    found = sorted(HERE.glob("*.ipynb"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(x) for x in prefixes)]
    return found


def strip(path: Path) -> bool:
    """Remove outputs, execution counts, execution metadata and the local kernel's name; return
    whether the file changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    changed = nbformat.writes(nb) != before
    if changed:
        nbformat.write(nb, path)
    return changed


def run(path: Path, size: str, figures: bool, executed: Path | None, cell_timeout: int) -> float:
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        write_kernel_spec(os.path.join(tmp, "jupyter", "kernels", KERNEL_NAME))
        os.environ["JUPYTER_PATH"] = os.path.join(tmp, "jupyter")
        os.environ["LAB_NOTEBOOK_SIZE"] = size
        if figures:
            os.environ["LAB_NOTEBOOK_FIGURES"] = str(HERE / "figures")
        else:
            os.environ.pop("LAB_NOTEBOOK_FIGURES", None)
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=cell_timeout, startup_timeout=120,
                                resources={"metadata": {"path": work}})
        t0 = time.time()
        client.execute()
        elapsed = time.time() - t0
    if executed is not None:
        executed.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed / path.name)
    return elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prefixes", nargs="*", help="run only notebooks whose file names start with these")
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--figures", action="store_true", help="write figures into notebooks/figures/")
    p.add_argument("--executed", type=Path, help="folder for executed copies (with outputs); not committed")
    p.add_argument("--strip", action="store_true", help="strip outputs from the committed notebooks and exit")
    p.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = p.parse_args(argv)
    paths = notebooks(args.prefixes)
    if not paths:
        print("run_notebooks: no notebook matches", file=sys.stderr)
        return 2
    if args.strip:
        for path in paths:
            print(f"{path.name}: {'stripped' if strip(path) else 'already clean'}")
        return 0
    for path in paths:
        elapsed = run(path, args.size, args.figures, args.executed, args.cell_timeout)
        print(f"{path.name}: ran at size {args.size!r} in {elapsed:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

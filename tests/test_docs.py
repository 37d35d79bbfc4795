"""Every repository path that the code and the docs cite exists.

Scanned: the ``*.py``, ``*.md`` and ``*.ipynb`` files that git knows about (tracked, plus new
files that are not ignored), read from the working tree; a notebook is read cell by cell.

Checked:

1. **cited paths**: ``docs/<name>.md`` and any path under a top-level folder of the repository
   (``targets/``, ``samplers/``, ``metrics/``, ``labs/``, ``benchmarks/``, ``notebooks/``,
   ``tests/``, ``docs/``) that ends in ``.py``, ``.md``, ``.ipynb``, ``.json``, ``.sh`` or
   ``.toml`` must exist, relative to the repository root;
2. **relative links** in Markdown (``[text](target)`` in ``*.md`` files and notebook Markdown
   cells, outside code blocks) must resolve relative to the file that holds them;
3. **nothing outside the repository**: no file cites a path starting with ``../`` that leaves
   the repository (taken relative to the citing file in Markdown, where links are relative, and
   relative to the repository root elsewhere), such as a folder next to the checkout;
4. **section citations**: every "docs/method.md section N" (also "sections 3 and 4", and
   "method.md section N" in the docs) names a numbered heading of ``docs/method.md``
   (``## N. Title``, or ``### N.M Title`` for "section N.M").

Exclusions, kept to what cannot be a source file:

* a cited path that git *ignores* is a generated output (``results/...``,
  ``benchmarks/results/samplers.json``): it exists only after a run, so it is not required;
* :data:`PLACEHOLDERS`: names in worked examples that stand for a file the reader writes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_FOLDERS = ("targets", "samplers", "metrics", "labs", "benchmarks", "notebooks", "tests", "docs")
EXTENSIONS = ("py", "md", "ipynb", "json", "sh", "toml")
METHOD_DOC = "docs/method.md"

#: Paths cited in examples as files the reader creates; none so far.  Add a path here only when
#: the text around it says it is the reader's own file.
PLACEHOLDERS: frozenset = frozenset()

# A path under a top-level folder, not preceded by a character that would make it the tail of a
# longer path (``/x/labs/a.py``, ``.venv/...``) and not followed by more path characters.
PATH_RE = re.compile(
    r"(?<![\w./-])((?:" + "|".join(TOP_FOLDERS) + r")/[\w./-]*?\.(?:" + "|".join(EXTENSIONS) + r"))(?![\w/-])"
)
# A path starting with "../" (not inside a longer relative path such as "a/../b").
PARENT_RE = re.compile(r"(?<![\w./-])((?:\.\./)+[\w.-][\w./-]*)")
# "docs/method.md section 2", "method.md section 9", "`docs/method.md` sections 3 and 4",
# "[method.md](method.md) section 11".
SECTION_RE = re.compile(
    r"method\.md[`)\]]*(?:\([^)\s]*\))?,?\s+sections?\s+(\d+(?:\.\d+)*(?:\s*(?:,|and|or|&)\s*\d+(?:\.\d+)*)*)"
)
HEADING_RE = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", re.M)
MD_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _git_available() -> bool:
    try:
        _git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


pytestmark = pytest.mark.skipif(not _git_available(), reason="needs a git checkout to list the files")


def _scanned_files() -> list[str]:
    out = _git("ls-files", "--cached", "--others", "--exclude-standard", "--", "*.py", "*.md", "*.ipynb")
    return sorted({p for p in out.splitlines() if (ROOT / p).is_file()})


def _texts(rel: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pieces of a file: ``"md"`` for Markdown, ``"text"`` for anything else."""
    raw = (ROOT / rel).read_text(encoding="utf-8")
    if rel.endswith(".md"):
        return [("md", raw)]
    if rel.endswith(".ipynb"):
        cells = json.loads(raw).get("cells", [])
        pieces = []
        for cell in cells:
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            pieces.append(("md" if cell.get("cell_type") == "markdown" else "text", src))
        return pieces
    return [("text", raw)]


def _ignored(paths: set) -> set:
    """The paths among ``paths`` that git ignores (generated outputs)."""
    if not paths:
        return set()
    proc = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, input="\n".join(sorted(paths)),
                          capture_output=True, text=True)
    return set(proc.stdout.splitlines())


def _inside_repository(base: Path, rel_path: str) -> bool:
    resolved = Path(os.path.normpath(base / rel_path))
    return resolved == ROOT or ROOT in resolved.parents


def _scan():
    """``(cited, links, parents, sections)``: dicts from what is cited to the files citing it."""
    cited, links, parents, sections = (defaultdict(set) for _ in range(4))
    for rel in _scanned_files():
        for kind, text in _texts(rel):
            for m in PATH_RE.finditer(text):
                cited[m.group(1).rstrip(".")].add(rel)
            base = (ROOT / rel).parent if kind == "md" else ROOT
            for m in PARENT_RE.finditer(text):
                if not _inside_repository(base, m.group(1)):
                    parents[m.group(1)].add(rel)
            for m in SECTION_RE.finditer(text):
                for number in re.findall(r"\d+(?:\.\d+)*", m.group(1)):
                    sections[number].add(rel)
            if kind == "md":
                for m in MD_LINK_RE.finditer(FENCE_RE.sub("", text)):
                    target = m.group(1).split("#", 1)[0]
                    if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                        continue  # an anchor in the same file, or a URL
                    links[(Path(rel).parent / target).as_posix()].add(rel)
    return cited, links, parents, sections


def _report(missing: dict) -> str:
    return "\n".join(f"  {path}  (cited in {', '.join(sorted(by))})" for path, by in sorted(missing.items()))


def test_files_are_scanned():
    files = _scanned_files()
    assert "README.md" in files and METHOD_DOC in files
    assert any(f.endswith(".ipynb") for f in files) and any(f.startswith("samplers/") for f in files)


def test_every_cited_repository_path_exists():
    cited, _, _, _ = _scan()
    absent = {p: by for p, by in cited.items() if not (ROOT / p).exists() and p not in PLACEHOLDERS}
    outputs = _ignored(set(absent))
    missing = {p: by for p, by in absent.items() if p not in outputs}
    assert not missing, "cited paths that do not exist:\n" + _report(missing)


def test_every_relative_markdown_link_resolves():
    _, links, _, _ = _scan()
    missing = {p: by for p, by in links.items() if not (ROOT / p).exists()}
    assert not missing, "Markdown links to files that do not exist:\n" + _report(missing)


def test_nothing_cites_a_path_outside_the_repository():
    _, _, parents, _ = _scan()
    assert not parents, "paths starting with ../ (outside the repository):\n" + _report(parents)


def test_every_cited_method_section_exists():
    _, _, _, sections = _scan()
    headings = set(HEADING_RE.findall((ROOT / METHOD_DOC).read_text(encoding="utf-8")))
    assert {"2", "3", "4", "5", "6", "7", "9"} <= headings  # the sections the code cites today
    missing = {f"{METHOD_DOC} section {n}": by for n, by in sections.items() if n not in headings}
    assert not missing, "cited sections that docs/method.md does not have:\n" + _report(missing)
    assert sections, "no section citation found: the pattern no longer matches the code's citations"

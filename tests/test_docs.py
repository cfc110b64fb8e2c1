"""The README and docs/ stay consistent with the repository.

Every relative link resolves (file and heading anchor), every script and
repository path the pages name exists, the README stays short, and it holds
the two commands CI runs verbatim.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_REPO_PATH = re.compile(r"(?<![\w/.$~-])((?:costmodel|benchmarks|tests|bindings|tvm_passes|docs|\.ci)/[\w./<>*-]*)")
_SCRIPT = re.compile(r"(?<![\w/.-])([A-Za-z0-9_]+\.(?:py|sh))\b")
_PRIVATE_MODULE = re.compile(r"\bcostmodel(?:\.\w+)*\._\w+")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    body = _FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M)}


def _links(page: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", page.read_text()))


def _ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


def test_pages_exist():
    names = {p.name for p in PAGES}
    assert "README.md" in names and len(PAGES) > 5, names
    assert (ROOT / "docs" / "README.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_resolve(page):
    bad = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} is missing")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_cited_repository_paths_exist(page):
    text = page.read_text()
    bad = []
    for path in sorted(set(_REPO_PATH.findall(text))):
        path = path.rstrip(".")
        pattern = re.sub(r"<[^>]*>", "*", path)
        if not glob.glob(str(ROOT / pattern)):
            bad.append(path)
    assert not bad, f"{page.name} cites paths that do not exist: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_named_scripts_exist(page):
    """Every `benchmarks/x.py` exists, and so does every bare script name (`gnn_llm_text.py`)."""
    text = page.read_text()
    bad = []
    for name in sorted(set(_SCRIPT.findall(text))):
        if not (list((ROOT / "benchmarks").glob(name)) or list((ROOT / "tests").rglob(name))):
            bad.append(name)
    for path in sorted(set(re.findall(r"benchmarks/[\w-]+\.(?:py|sh)", text))):
        if not (ROOT / path).is_file():
            bad.append(path)
    assert not bad, f"{page.name} names scripts that do not exist: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_no_private_module_paths(page):
    """Pages name public API, not private modules that move (the C extensions' names excepted)."""
    found = set(_PRIVATE_MODULE.findall(page.read_text())) - {"costmodel._roofline", "costmodel._nodes"}
    assert not found, f"{page.name} names private modules: {sorted(found)}"


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines; move detail into docs/"


def test_readme_holds_the_ci_commands():
    readme = README.read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    expected = [
        "pip install . && costmodel predict torchvision:resnet50 --batch 8 --device h200",
        'pip install ".[test]" && python -m pytest -q',
    ]
    for line in expected:
        assert line in ci, f".ci/run no longer runs {line!r}"
        assert line in readme, f"README.md lacks the CI command {line!r}"

"""The project cites only what it holds: every Markdown link to a file of the project, and every Markdown file a
text file names, is there (a clone has no notes but its own; the references live in docs/references.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

TEXT = ("*.md", "*.py", "*.yaml", "*.yml", "*.toml", "*.cfg", "Makefile", ".ci/*")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title"), ![alt](target)
URL = re.compile(r"[a-z][a-z0-9+.-]*:(//)?[^\s)>\]]*")  # a link off the project (https:, mailto:)
MD_NAME = re.compile(r"(?<![\w./<>{}*-])([\w./-]*\w\.md)\b")  # a Markdown file named in any text (no templates)


def project_files() -> list[str]:
    """The project's files as a clone would have them: tracked, plus new ones not ignored (this working tree's)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the project's file list comes from git")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]  # a deleted file not yet committed is gone


def missing_references(path: str, text: str, files: set[str]) -> list[str]:
    """What ``text`` (the content of the project file ``path``) refers to that the project does not hold: a
    Markdown link's relative target (in a .md file), or a Markdown file named anywhere."""
    here = Path(path).parent
    names = {Path(f).name for f in files}
    dirs = {str(parent) for f in files for parent in Path(f).parents}

    def held(target: str, link: bool) -> bool:
        target = target.split("#")[0].split("?")[0]
        if not target:  # an anchor in the same file
            return True
        if link:  # relative to the file, or to the project's root with a leading /
            candidates = [Path(target.lstrip("/"))] if target.startswith("/") else [here / target]
        else:  # prose names a path from the root or from the file, or a file by its name alone
            candidates = [Path(target), here / target]
            if "/" not in target and target in names:
                return True
        return any("/".join(_collapse(c.parts)) in files | dirs for c in candidates)

    missing = []
    if path.endswith(".md"):
        for target in LINK.findall(text):
            if not URL.match(target) and not held(target, link=True):
                missing.append(f"{path}: link to {target}")
    for name in MD_NAME.findall(URL.sub(" ", text)):
        if not held(name, link=False):
            missing.append(f"{path}: names {name}")
    return missing


def _collapse(parts: tuple[str, ...]) -> list[str]:
    """A relative path's parts with ``.`` and ``..`` resolved."""
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        elif part != ".":
            out.append(part)
    return out


def test_no_file_refers_to_a_file_the_project_does_not_hold():
    files = project_files()
    held = set(files)
    # this file's own examples of broken references are not references
    text_files = [f for f in files if any(Path(f).match(p) for p in TEXT) and f != "tests/test_references.py"]
    assert "README.md" in text_files and "docs/references.md" in text_files
    missing = [m for f in text_files for m in missing_references(f, (ROOT / f).read_text(errors="replace"), held)]
    assert missing == [], "\n".join(missing)


def test_the_checker_finds_what_a_clone_lacks():
    """What the README and wsrl/report/paper.py said before the references moved into the project is caught; what they
    say now, and names that are not file references, pass."""
    files = {"README.md", "docs/references.md", "docs/architecture.md", "wsrl/report/paper.py", "experiments/README.md"}
    notes, paper = "FACTS" ".md", "paper" ".md"  # written apart, so that a search for the names finds none here
    assert missing_references("README.md", f"the pilots ({notes}; TD3 reaches 70)", files) == [
        f"README.md: names {notes}"]
    assert missing_references("wsrl/report/paper.py", f"# The paper's numbers ({paper}): Table 1", files) == [
        f"wsrl/report/paper.py: names {paper}"]
    assert missing_references("README.md", "see [the notes](docs/notes.md#top) and ![fig](docs/fig.png)", files) == [
        "README.md: link to docs/notes.md#top", "README.md: link to docs/fig.png", "README.md: names docs/notes.md"]
    fine = ("[refs](references.md#d4rl), [arch](architecture.md) from docs, [up](../README.md), "
            "[web](https://example.org/x.md), [anchor](#here), table<N>.md, `experiments/README.md`")
    assert missing_references("docs/x.md", fine, files) == []

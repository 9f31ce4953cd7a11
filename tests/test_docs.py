"""The documentation matches the code: the configuration page against the schema and ``conf/``, the README's size,
and every relative link in the README and ``docs/``."""

from __future__ import annotations

import ast
import re
import typing
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from pathlib import Path

import pytest

from wsrl.core.config import TrainConfig
from wsrl.datasets.suite import ROBOT

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GROUPS = ["env", "method", "sampler", "policy", "experiment", "hydra/launcher"]  # conf/<group>/<option>.yaml
README_LIMIT = 8192  # bytes: the README is read in five minutes; the detail lives in docs/


def schema_fields(schema: type = TrainConfig, prefix: str = "") -> dict[str, tuple[object, type]]:
    """Dotted key -> (default, type) of every leaf field of the schema."""
    hints = typing.get_type_hints(schema)
    out: dict[str, tuple[object, type]] = {}
    for f in fields(schema):
        kind = hints[f.name]
        if is_dataclass(kind):
            out.update(schema_fields(kind, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (f.default if f.default is not MISSING else f.default_factory(), kind)
    return out


SCHEMA = schema_fields()
SECTIONS = {key.split(".")[0] for key in SCHEMA if "." in key}


def page_section(text: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next heading of the same level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"{CONFIG_PAGE.name} has no '## {heading}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row (the header and separator rows included)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in text.splitlines() if line.startswith("|")]


def documented_fields() -> dict[str, tuple[str, str]]:
    """Key -> (default cell, whole row) of the configuration page's field tables."""
    out: dict[str, tuple[str, str]] = {}
    for cells in table_rows(page_section(CONFIG_PAGE.read_text(), "Fields")):
        if re.fullmatch(r"`[\w.]+`", cells[0]):
            key = cells[0].strip("`")
            assert key not in out, f"{key} is listed twice in {CONFIG_PAGE.name}"
            out[key] = (cells[1], " | ".join(cells))
    return out


def parse_default(cell: str) -> object:
    """A default as the page writes it (YAML-like: null, true, ???, numbers, lists, bare strings)."""
    assert re.fullmatch(r"`[^`]*`", cell), f"a default is written in backticks, not {cell!r}"
    text = cell.strip("`")
    literal = {"null": None, "true": True, "false": False, "???": "???"}
    if text in literal:
        return literal[text]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def test_configuration_page_lists_every_schema_field_with_its_default():
    page = documented_fields()
    missing = sorted(set(SCHEMA) - set(page))
    assert not missing, f"{CONFIG_PAGE.name} lacks these fields of wsrl/core/config.py: {missing}"
    for key, (default, _) in SCHEMA.items():
        written = parse_default(page[key][0])
        expected = plain(default)
        assert written == expected and isinstance(written, bool) == isinstance(expected, bool), (
            f"{CONFIG_PAGE.name} gives {key} the default {page[key][0]}, the schema {expected!r}")


def test_configuration_page_names_only_fields_that_exist():
    unknown = sorted(set(documented_fields()) - set(SCHEMA))
    assert not unknown, f"{CONFIG_PAGE.name} lists fields the schema does not have: {unknown}"
    pattern = re.compile(rf"`(?:[^`]*\s)?((?:{'|'.join(SECTIONS)})\.\w+)(?:=[^`]*)?`")
    for page in PAGES:
        named = set(pattern.findall(page.read_text()))
        unknown = sorted(named - set(SCHEMA))
        assert not unknown, f"{page.relative_to(ROOT)} names config keys that do not exist: {unknown}"


def test_configuration_page_lists_every_choice_of_a_field():
    page = documented_fields()
    for key, (_, kind) in SCHEMA.items():
        if isinstance(kind, type) and issubclass(kind, Enum):
            row = page[key][1]
            lacking = [m.value for m in kind if f"`{m.value}`" not in row]
            assert not lacking, f"{CONFIG_PAGE.name}: the row of {key} does not name its choices {lacking}"


@pytest.mark.parametrize("group", GROUPS)
def test_configuration_page_lists_every_option_of_a_group(group):
    options = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
    rows = {cells[0]: cells[1] for cells in table_rows(page_section(CONFIG_PAGE.read_text(), "Groups"))}
    listed = set(re.findall(r"`(\w+)`", rows.get(f"`{group}`", "")))
    assert options <= listed, f"{CONFIG_PAGE.name}: group {group} does not list {sorted(options - listed)}"
    if group != "hydra/launcher":  # Hydra's own launchers are listed beside the project's
        assert listed <= options, f"{CONFIG_PAGE.name}: group {group} lists options with no file: {listed - options}"


def test_readme_fits_in_8_kib():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    broken = [t for t in local if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to files that do not exist: {broken}"


def test_the_results_page_names_every_field_of_the_record():
    from wsrl.running.results import RunResults

    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## `results.json`"):text.index("## `conf/`")]
    named = set(re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", section, flags=re.M))
    documented = {name for row in named for name in re.findall(r"`(\w+)`", row)}
    assert documented == {f.name for f in fields(RunResults)}


def named_in_docs() -> set[str]:
    """Every ``wsrl/...`` path and ``wsrl.x.y`` dotted name in the README, docs/ and experiments/README.md; not the
    dataset ids (``wsrl/<robot>/...``), the cache folder (``~/.cache/wsrl/...``) or the lock file (``.wsrl.lock``)."""
    pages = [*PAGES, ROOT / "experiments" / "README.md"]
    text = "\n".join(p.read_text() for p in pages)
    names = set(re.findall(r"(?<![\w./])wsrl(?:[./][A-Za-z_]\w*)+", text))
    return {n for n in names if n.split("/")[1:2] not in ([r] for r in ROBOT)}


def resolves(name: str) -> bool:
    """A path that exists (``.py`` or a folder), or a module with the attributes after it."""
    import importlib

    if "/" in name:
        return (ROOT / name).exists() or (ROOT / f"{name}.py").exists()
    parts = name.rstrip(".").split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_module_and_name_the_docs_mention_exists():
    missing = sorted(name for name in named_in_docs() if not resolves(name))
    assert not missing, f"the docs name what the code does not have: {missing}"

"""The layers of docs/architecture.md, checked on the source: every module imports only its own layer or lower."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [  # bottom first; keep in step with docs/architecture.md
    {"wsrl", "wsrl.environ", "wsrl.datasets.suite", "wsrl.datasets.store", "wsrl.files", "wsrl.episodes",
     "wsrl.weighting", "wsrl.launch"},
    {"wsrl.datasets", "wsrl.datasets.behavior", "wsrl.datasets.generate", "wsrl.datasets.importers",
     "wsrl.datasets.sources", "wsrl.datasets.info", "wsrl.datasets.__main__"},
    {"wsrl.config"},
    {"wsrl.policies", "wsrl.data", "wsrl.module", "wsrl.evaluation", "wsrl.video", "wsrl.conditioning",
     "wsrl.dashboard", "wsrl.statistics", "wsrl.tables", "wsrl.weight_mass", "wsrl.stacked.model",
     "wsrl.stacked.draws"},
    {"wsrl.runs", "wsrl.build", "wsrl.stacked.group", "wsrl.stacked.record"},
    {"wsrl.cli", "wsrl.train", "wsrl.report", "wsrl.stacked", "wsrl.stacked.launch"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported wsrl module, whether at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "wsrl":
            for alias in node.names:  # `from wsrl import dashboard` imports the module wsrl.dashboard
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in LAYER else node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.split(".")[0] == "wsrl"]
    return found


SOURCES = sorted((ROOT / "wsrl").rglob("*.py"))


def test_every_module_has_a_layer():
    assert {module_name(p) for p in SOURCES} == set(LAYER)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_down(path):
    source = module_name(path)
    upward = [target for target, _ in imports(path) if LAYER[target] > LAYER[source]]
    assert not upward, f"{source} (layer {LAYER[source]}) imports {upward} from a higher layer"


def test_no_import_cycles_at_module_level():
    graph = {module_name(p): {t for t, top in imports(p) if top and t != module_name(p)} for p in SOURCES}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    assert not [m for m in graph if m in reachable(m)]

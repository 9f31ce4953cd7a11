"""The package tree of docs/architecture.md, checked on the source: packages import only the packages below them,
modules inside a package only the modules before them, and no import (lazy ones included) closes a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {  # package: the packages it may import, besides itself; keep in step with docs/architecture.md
    "wsrl": {"wsrl.common"},  # the root __init__: the subnormal flush, MuJoCo without OpenGL
    "wsrl.common": set(),
    "wsrl.datasets": {"wsrl.common"},
    "wsrl.core": {"wsrl.common", "wsrl.datasets"},
    "wsrl.evaluation": {"wsrl.common", "wsrl.datasets", "wsrl.core"},
    "wsrl.running": {"wsrl.common", "wsrl.datasets", "wsrl.core", "wsrl.evaluation"},
    "wsrl.stacked": {"wsrl.common", "wsrl.datasets", "wsrl.core", "wsrl.evaluation", "wsrl.running"},
    "wsrl.report": {"wsrl.common", "wsrl.datasets", "wsrl.core", "wsrl.evaluation", "wsrl.running"},
    "wsrl.train": {"wsrl.common", "wsrl.datasets", "wsrl.core", "wsrl.evaluation", "wsrl.running"},
    "hydra_plugins": {"wsrl.core", "wsrl.stacked"},
    "experiments": {"wsrl.common", "wsrl.datasets", "wsrl.core", "wsrl.evaluation", "wsrl.running", "wsrl.stacked",
                    "wsrl.train"},
}
INSIDE = {  # a package's modules, bottom first: each imports only modules listed before it
    "wsrl.common": ["__init__", "environ", "files", "locks", "figures", "episodes"],
    "wsrl.datasets": ["__init__", "suite", "store", "behavior", "importers", "generate", "parallel", "sources", "info",
                      "__main__"],
    "wsrl.datasets.behavior": ["__init__", "locations", "learners", "actors", "training", "selection", "plots",
                               "__main__"],  # a sub-package: its own order inside, one place ("behavior") above
    "wsrl.core": ["__init__", "weighting", "diagnostics", "policies", "methods", "config", "validation", "data",
                  "module"],
    "wsrl.evaluation": ["__init__", "scores", "video", "conditioning", "media", "__main__"],
    "wsrl.running": ["__init__", "lightning_fixes", "gpus", "damaged", "results", "rundir", "refusals", "build",
                     "datasets"],
    "wsrl.stacked": ["__init__", "model", "draws", "group", "record", "clock", "launch"],
    "wsrl.report": ["__init__", "statistics", "tables", "weight_mass", "paper", "collect", "rows", "curves", "upload",
                    "write", "__main__"],
}
SOURCES = sorted([*(ROOT / "wsrl").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py"),
                  *(ROOT / "experiments").rglob("*.py")])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) == 2 else parts)


def package(module: str, inner: bool = False) -> str:
    """The package a module belongs to: ``wsrl.<package>``, the root ``wsrl``, ``wsrl.train`` or a top folder (the
    unit of BELOW); with ``inner``, the innermost package of INSIDE that holds it, such as ``wsrl.datasets.behavior``
    for its modules (the unit of an order inside)."""
    parts = module.split(".")
    if parts[0] != "wsrl":
        return parts[0]
    for n in range(len(parts) - 1, 2, -1) if inner else ():
        if ".".join(parts[:n]) in INSIDE:
            return ".".join(parts[:n])
    return ".".join(parts[:2])


def rank(module: str, within: str | None = None) -> int:
    """Where a module sits in the order of ``within`` (default: its package); a sub-package, such as
    ``datasets.behavior``, is one place in the order of the package above it."""
    within = within or package(module)
    parts, depth = module.split("."), within.count(".") + 1
    order = INSIDE.get(within)
    if order is None or len(parts) <= depth:
        return 0
    return order.index(parts[depth])


def known(name: str) -> str:
    """The module an imported name refers to: the longest prefix that is a source file."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return name


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported wsrl module, whether at module level) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "wsrl":
            for alias in node.names:  # `from wsrl.report import tables` imports the module wsrl.report.tables
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else known(node.module), id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(known(a.name), id(node) in top) for a in node.names if a.name.split(".")[0] == "wsrl"]
    return found


MODULES = {module_name(p) for p in SOURCES}


def upward(source: str, target: str) -> bool:
    """Whether ``source`` importing ``target`` breaks the tree: a package not below it, or a module not before it
    in the innermost package holding both (a sub-package's modules all sit at its place in the package above)."""
    if package(target) != package(source):
        return package(target) not in BELOW[package(source)]
    inner = package(source, inner=True)
    within = inner if package(target, inner=True) == inner else package(source)
    return within in INSIDE and rank(target, within) >= rank(source, within)


def test_every_package_and_module_has_a_place():
    assert {package(m) for m in MODULES} <= set(BELOW)
    for module in MODULES:
        parts = module.split(".")
        for pkg, order in INSIDE.items():
            depth = pkg.count(".") + 1
            if module.startswith(pkg + ".") and len(parts) > depth:
                assert parts[depth] in order, f"{module} is not listed in INSIDE[{pkg!r}]"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_down(path):
    source = module_name(path)
    wrong = [target for target, _ in imports(path)
             if target not in ("wsrl", source) and not target.startswith(source + ".") and upward(source, target)]
    assert not wrong, f"{source} imports {wrong}: not below it in the tree"


def test_no_import_cycles_even_through_lazy_imports():
    graph = {module_name(p): {t for t, _ in imports(p) if t != module_name(p)} for p in SOURCES}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    assert not [m for m in graph if m in reachable(m)]


def test_the_checks_can_fail():
    """Upward imports are seen, between packages, inside one, inside a sub-package and out of it."""
    assert upward("wsrl.core.module", "wsrl.running.build")
    assert upward("wsrl.core.weighting", "wsrl.core.config") and not upward("wsrl.core.config", "wsrl.core.weighting")
    assert upward("wsrl.datasets.behavior.actors", "wsrl.datasets.behavior.training")
    assert not upward("wsrl.datasets.behavior.training", "wsrl.datasets.behavior.actors")
    assert upward("wsrl.datasets.behavior.actors", "wsrl.datasets.generate")  # behavior sits below generate
    assert not upward("wsrl.datasets.generate", "wsrl.datasets.behavior.actors")
    assert not upward("wsrl.datasets.behavior.__init__", "wsrl.datasets.suite")

"""The layers of docs/architecture.md, checked on the source: each layer imports only the
layers it may, and no two modules import each other (directly or round a longer circle).

Imports are read with ``ast`` (nothing is executed), function-level imports included: a
lazy import is still a dependency. Imports under ``if TYPE_CHECKING:`` are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "videolens"

# layer -> the layers it may import (besides itself). The order of docs/architecture.md:
# io -> models -> tasks -> library -> pipelines -> cli / web, text beside io.
ALLOWED = {
    "errors": set(),
    "io": {"errors"},
    "text": {"errors"},
    "models": {"errors"},
    "tasks": {"errors", "models"},
    "library": {"errors", "io"},
    "eval": {"errors", "io", "text", "models", "tasks"},
    "train": {"errors", "io", "text", "models", "tasks", "eval"},
    "pipelines": {"errors", "io", "text", "models", "tasks", "library", "eval"},
    "web": {"errors", "io", "text", "models", "tasks", "library", "pipelines", "__init__"},
    "cli": {"errors", "io", "text", "models", "tasks", "library", "pipelines", "eval",
            "train", "web", "__init__"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (SRC / Path(*name.split(".")) / "__init__.py").exists()


def is_module(name: str) -> bool:
    return is_package(name) or (SRC / Path(*name.split("."))).with_suffix(".py").exists()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """videolens modules imported by the file at ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "videolens")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "videolens":
                continue
            if target == "videolens" and all(a.name == "__version__" for a in node.names):
                continue  # the version string, not the lazily-importing public API
            submodules = [f"{target}.{a.name}" for a in node.names
                          if is_module(f"{target}.{a.name}")]
            found.update(submodules or [target])
    found.discard(name)
    return found


def layer(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_module_imports_only_allowed_layers(module):
    own = layer(module)
    if own == "__init__":
        return  # the public API imports each verb lazily
    allowed = ALLOWED[own] | {own}
    wrong = sorted(m for m in GRAPH[module] if layer(m) not in allowed)
    assert not wrong, (f"{module} ({own}) must not import {wrong}; "
                       f"{own} may import {sorted(allowed)}")


def test_no_import_circles():
    circles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            # a package importing its own submodules (re-exports) is not a circle back into it
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_checker_sees_imports():
    # guards the test itself: a checker that found no imports would pass everything
    assert "videolens.models.base" in GRAPH["videolens.models.clip"]
    assert "videolens.library.store" in GRAPH["videolens.pipelines.index"] or (
        "videolens.library" in GRAPH["videolens.pipelines.index"])
    assert all(layer(m) != "io" for m in GRAPH["videolens.tasks.localize"])
    assert layer("videolens.io.decode") == "io"

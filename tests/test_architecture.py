"""The import directions docs/architecture.md states: each layer imports only from itself
and the layers below it (imports inside functions and under TYPE_CHECKING count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vlp

SRC = Path(vlp.__file__).parent
FOUNDATION = {"vlp.errors", "vlp.config", "vlp.fileio", "vlp.safe_pickle", "vlp"}

# layer → the layers it may import from, besides itself (docs/architecture.md's table)
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "eval": {"foundation"},
    "data": {"foundation"},
    "layers": {"data", "foundation"},
    "models": {"layers", "data", "foundation"},
    "objectives": {"models", "layers", "data", "foundation"},
    "convert": {"objectives", "models", "layers", "data", "foundation"},
    "tasks": {"convert", "objectives", "models", "layers", "data", "eval", "foundation"},
    "world": {"data", "eval", "foundation"},
    "train": {"tasks", "world", "convert", "objectives", "models", "layers", "data", "eval",
              "foundation"},
}


def layer_of(module: str) -> str:
    """The layer a ``vlp.*`` module belongs to."""
    if module in FOUNDATION:
        return "foundation"
    if module.startswith("vlp.convert"):
        return "convert"
    layer = module.split(".")[1]
    assert layer in ALLOWED, f"{module}: a package docs/architecture.md does not place"
    return layer


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: str | None = None) -> set[str]:
    """Every ``vlp.*`` module ``path`` imports, wherever the import statement is
    (``package``: the one relative imports resolve against, by default the file's own)."""
    if package is None:
        package = module_name(path) if path.name == "__init__.py" else \
            module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vlp"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "vlp":
                found.add(base)
                # `from vlp import world`, `from .. import tasks`: the names may be modules
                found |= {f"{base}.{a.name}" for a in node.names
                          if (SRC.parent / base.replace(".", "/") / a.name).exists()
                          or (SRC.parent / f"{base.replace('.', '/')}/{a.name}.py").exists()}
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    assert {layer_of(module_name(p)) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_go_down_the_layers(path: Path) -> None:
    here = layer_of(module_name(path))
    wrong = sorted(m for m in imports_of(path)
                   if (there := layer_of(m)) != here and there not in ALLOWED[here])
    assert not wrong, (f"{module_name(path)} ({here}) imports {wrong}, which "
                       f"docs/architecture.md puts above it")


def test_the_layer_graph_has_no_cycle() -> None:
    """The allowed directions themselves form a DAG (so no two packages import each other)."""
    seen: dict[str, int] = {}

    def depth(layer: str, stack: tuple[str, ...] = ()) -> int:
        assert layer not in stack, f"cycle: {' → '.join((*stack, layer))}"
        if layer not in seen:
            seen[layer] = 1 + max((depth(b, (*stack, layer)) for b in ALLOWED[layer]),
                                  default=0)
        return seen[layer]

    for layer in ALLOWED:
        depth(layer)


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """A data module importing the world inside a function, or the tasks relatively, is
    caught (the check can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from vlp.world import scene\n    from ..tasks import vqa\n"
                     "    from vlp import train\n    from .. import objectives\n")
    found = imports_of(probe, package="vlp.data")
    assert found >= {"vlp.world", "vlp.tasks", "vlp.train", "vlp.objectives"}
    wrong = {layer_of(m) for m in found} - ALLOWED["data"] - {"data", "foundation"}
    assert wrong == {"world", "tasks", "train", "objectives"}

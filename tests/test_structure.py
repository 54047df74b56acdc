"""The package's shape: no import cycles, no module grown past what one person reads at once,
and clients (CLI, node) that never reach into the server's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "blendfarm"
LONGEST = 450  # lines; past ~400 a module usually holds two things
INSIDE_BLENDER = {"blendfarm.node.blender_script"}  # runs in Blender's Python, imports bpy


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, known: frozenset[str] = frozenset()) -> set[str]:
    """The blendfarm modules `path` imports when it is imported (not inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("blendfarm"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("blendfarm"):
                    subs = {f"{target}.{a.name}" for a in node.names}
                    modules = subs & known
                    # `from . import sub` imports the submodule, not the package's own body
                    found.update(modules if modules == subs else {target} | modules)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    known = frozenset(modules)
    return {
        name: {m for m in module_imports(path, known) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_module_imports_itself_back_through_others() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_clients_never_import_the_server() -> None:
    edges = graph()
    clients = [m for m in edges if m.startswith(("blendfarm.cli", "blendfarm.node"))]
    clients += ["blendfarm.client", "blendfarm.protocol", "blendfarm.settings"]
    reached = {c: sorted(m for m in edges[c] if m.startswith("blendfarm.server")) for c in clients}
    assert not {c: r for c, r in reached.items() if r}


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_is_longer_than_one_reads_at_once(path: Path) -> None:
    if module_name(path) in INSIDE_BLENDER:
        return
    assert len(path.read_text().splitlines()) <= LONGEST

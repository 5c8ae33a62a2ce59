"""The package's shape, read from the source with ast (lazy imports count too): no import
cycle anywhere in engine/, engine.config imports nothing of the rest of the engine (it is
handed its registry), and CLI command modules import only engine.cli.common."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ENGINE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The engine modules ``name`` imports, anywhere in its body (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(component)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_in_the_engine():
    assert [sorted(c) for c in _cycles(_graph())] == []


def test_config_is_a_leaf_package():
    graph = _graph()
    outside = {
        name: sorted(d for d in deps if not d.startswith("engine.config"))
        for name, deps in graph.items()
        if name.startswith("engine.config")
    }
    assert {name: deps for name, deps in outside.items() if deps} == {}


def test_no_import_cycle_runs_through_the_cli():
    graph = _graph()
    assert "engine.cli.common" in graph
    through_cli = [sorted(c) for c in _cycles(graph) if any(m.startswith("engine.cli") for m in c)]
    assert through_cli == []
    # nor between engine.cli and another package, module by module or as packages
    packages: dict[str, set[str]] = {}
    for name, deps in graph.items():
        for dep in deps:
            a, b = ".".join(name.split(".")[:2]), ".".join(dep.split(".")[:2])
            if a != b:
                packages.setdefault(a, set()).add(b)
    assert not any("engine.cli" in packages.get(p, ()) for p in packages.get("engine.cli", ()))


def test_command_modules_import_only_common():
    graph = _graph()
    commands = sorted(m for m in graph if m.startswith("engine.cli.") and m != "engine.cli.common")
    assert len(commands) >= 8, commands
    for name in commands:
        cli_deps = {d for d in graph[name] if d.startswith("engine.cli")}
        assert cli_deps <= {"engine.cli.common"}, (name, cli_deps)
    assert not {d for d in graph["engine.cli.common"] if d.startswith("engine.cli")}


def test_main_registers_every_command_module():
    import engine.cli as cli
    from engine.cli import common

    registered = set(cli.cli.commands.values())
    for path in sorted((ENGINE / "cli").glob("*.py")):
        if path.stem in ("__init__", "common"):
            continue
        module = getattr(cli, path.stem)
        assert module.COMMANDS, path.stem
        assert set(module.COMMANDS) <= registered, path.stem
    assert common.DEFAULT_CONFIG == "routes.yaml"

"""The package layering DESIGN.md promises, checked on the source: agent and collector never import
each other, hushmetric imports neither, and the collector's modules form no import cycle — function-local
imports included, since a cycle hidden in a function is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` and the modules it imports anywhere in its body (absolute names)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "_pb2" in path.name:
            continue
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                # `from collector.cli import ops` imports the module collector.cli.ops
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[_module_name(path)] = found
    return graph


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_agent_collector_and_hushmetric_keep_to_their_side() -> None:
    forbidden = {"agent": {"collector"}, "collector": {"agent"}, "hushmetric": {"agent", "collector"}}
    crossings = [
        (module, imported)
        for package, banned in forbidden.items()
        for module, imported_names in _imports(package).items()
        for imported in imported_names
        if _top(imported) in banned
    ]
    assert crossings == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules of ``graph`` (as a path), or None."""
    # A module's own parent packages are loaded before it whatever it imports: not an edge of a cycle.
    edges = {
        m: sorted(n for n in deps if n in graph and n != m and not m.startswith(n + "."))
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in edges[m]:
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (found := visit(n)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_the_collector_has_no_import_cycle() -> None:
    graph = _imports("collector")
    assert "collector.report.render" in graph  # the walk found the packages
    assert _cycle(graph) is None


def test_the_cycle_check_finds_a_hidden_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_the_agent_cli_is_the_outer_shell() -> None:
    """Commands import the agent's stages, never the other way round, and the CLI's own modules form
    no cycle (its command modules import only kit and tables, and the package imports them)."""
    graph = _imports("agent")
    cli = {m: deps for m, deps in graph.items() if m == "agent.cli" or m.startswith("agent.cli.")}
    assert "agent.cli.kit" in cli  # the walk found the package
    assert _cycle(cli) is None
    into_cli = [
        (m, n)
        for m, deps in graph.items()
        if m not in cli
        for n in deps
        if n == "agent.cli" or n.startswith("agent.cli.")
    ]
    assert into_cli == []

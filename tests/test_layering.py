"""The layout's rules, read from the code's imports (every import, lazy ones included): pipeline/
imports no Airflow; core/ imports no stage; a stage package imports only the ones below it
(core < ops < data < model < monitoring < steps, cli); no two modules import each other, even
through others (no cycles)."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "pipeline"
ORDER = ["core", "ops", "data", "model", "monitoring"]  # low to high; the rest of pipeline/ is the top


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module of pipeline/ (or outside it) that the file imports, resolved to module names."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return found


def _rank(module: str) -> int:
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else len(ORDER)


GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_pipeline_never_imports_airflow():
    offenders = {m: sorted(i for i in _imports(p) if i.split(".")[0] == "airflow") for m, p in MODULES.items()}
    assert not {m: i for m, i in offenders.items() if i}


def test_arrows_only_point_down_between_stage_packages():
    upward = sorted(
        f"{m} -> {i}" for m, targets in GRAPH.items() for i in targets if _rank(i) > _rank(m) and _rank(m) < len(ORDER)
    )
    assert upward == []
    core = sorted(f"{m} -> {i}" for m, targets in GRAPH.items() if _rank(m) == 0 for i in targets if _rank(i) > 0)
    assert core == []


def test_no_import_cycles_between_modules():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package's __init__ re-exporting its modules is not a cycle of logic.
            logic = [c for c in component if MODULES[c].name != "__init__.py"]
            if len(logic) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def test_no_module_over_450_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}

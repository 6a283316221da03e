"""The layering rule of docs/architecture.md, checked on every module's imports (module level and
inside functions): imports point down the layers only, and no two files import each other,
directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top to bottom. A module may import its own layer (without a cycle) and any layer below it.
LAYERS = [
    ("rewind", "rewind.cli"),          # the public API facade and the command line
    ("rewind.bench",),                 # the harness and its studies
    ("rewind.transfer",),              # Net2Net runs, distillation, Deep Compression
    ("rewind.run",),                   # loop, checkpoints, logs, experiment assembly, the search driver
    ("rewind.controllers",),           # ENAS controller and spaces, curriculum teachers
    ("rewind.agents",),                # the Agent interface and the learners
    ("rewind.envs",),
    ("rewind.buffers",),
    ("rewind.config", "rewind.errors", "rewind.files", "rewind.configs"),
]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer: add its folder to LAYERS and docs/architecture.md"
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["rewind", *parts])


def source_modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        if rel[0] in ("tests", "build", "runs") or any(p.startswith(".") for p in rel):
            continue
        out[module_name(path)] = path
    return out


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every rewind module `path` imports, resolved to a file's module name."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("rewind"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "rewind")
    return out


def import_graph() -> dict[str, set[str]]:
    mods = source_modules()
    return {m: {t for t in imports_of(p, mods) if t != m} for m, p in mods.items()}


def upward_imports(graph) -> list[str]:
    return [f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) < layer_of(a)]


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_sits_in_a_layer():
    for m in source_modules():
        layer_of(m)


def test_imports_point_down_the_layers_only():
    assert upward_imports(import_graph()) == []


def test_no_two_files_import_each_other():
    assert cycles(import_graph()) == []


def test_the_checker_finds_an_upward_import_and_a_cycle():
    # The checks above must be able to fail: feed them a graph with one of each.
    graph = {"rewind.agents.dqn": {"rewind.run.loop"}, "rewind.run.loop": {"rewind.run.checkpoint"},
             "rewind.run.checkpoint": {"rewind.run.loop"}}
    assert upward_imports(graph) == ["rewind.agents.dqn -> rewind.run.loop"]
    assert cycles(graph) == [["rewind.run.checkpoint", "rewind.run.loop"]]

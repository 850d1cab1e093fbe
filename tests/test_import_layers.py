"""Imports flow one way: adamp (torch only) <- data/models <- tasks <- training <- engine <- CLI, and analysis
reads only the results store. Checked on the source (every import statement, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> modules it must never import
FORBIDDEN = {
    "adamp": ("benchmarks",),
    "benchmarks/analysis": ("benchmarks.tasks", "benchmarks.training", "benchmarks.engine", "benchmarks.data",
                            "benchmarks.models", "benchmarks.registry"),
    "benchmarks/data": ("benchmarks.tasks", "benchmarks.training", "benchmarks.engine", "benchmarks.analysis"),
    "benchmarks/models": ("benchmarks.tasks", "benchmarks.training", "benchmarks.engine", "benchmarks.analysis"),
    "benchmarks/tasks": ("benchmarks.engine", "benchmarks.analysis", "benchmarks.cli"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_flow_one_way(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)

"""The rules that keep docs/architecture.md true: who may import whom, no cycles, torch only where needed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gps_env"

#: Each part of the package (a top-level module or subpackage) and the other parts it may import, at module
#: level or inside a function. Data flows one way: obs -> agent -> action -> env -> engine -> verifier -> GRPO
#: -> ledger -> obs; the bench and the trainer integrations sit on top. docs/architecture.md draws this table.
ALLOWED: dict[str, set[str]] = {
    "_lazy": set(),
    "ledger": set(),
    "metrics": set(),
    "actions": set(),
    "history": set(),
    "spec": set(),
    "checkpoint": set(),
    "tasks": set(),
    "models": set(),
    "grpo": set(),
    "engines": set(),
    "pool": {"tasks"},
    "policy": {"tasks"},
    "contract": {"actions", "history", "ledger", "metrics"},
    "env": {"actions", "contract", "engines", "grpo", "policy", "pool"},
    "simulated": {"contract"},
    "selectors": {"metrics"},
    "agents": {"_lazy", "actions", "spec", "selectors", "models", "metrics"},
    "wrappers": {"selectors"},
    "integrations": {"agents", "spec", "history", "pool"},
    "bench": {"agents", "env", "simulated", "engines", "policy", "models", "metrics"},
}

#: Modules that must import without torch (a numpy-only world, the contract, the selection layer, the
#: model-free agents and the registry that names every agent).
TORCH_FREE = (
    "gps_env", "gps_env.contract", "gps_env.simulated", "gps_env.metrics", "gps_env.history", "gps_env.spec",
    "gps_env.actions", "gps_env.ledger", "gps_env.selectors", "gps_env.agents", "gps_env.agents.uniform",
    "gps_env.agents.mopps", "gps_env.agents.dynamic_sampling", "gps_env.agents.pairing",
    "gps_env.agents.registry", "gps_env.integrations", "gps_env.wrappers",
)


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gps_env" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    """Every ``gps_env`` module a file imports, anywhere in it (module level, functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("gps_env")}


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 2:
            continue  # the package's lazy export table names every part by string, not by import
        me = rel.parts[1]
        for target in _imports(path):
            part = _part(target)
            if part is not None and part != me and ((PACKAGE / part).exists() or (PACKAGE / f"{part}.py").exists()):
                edges.setdefault(me, set()).add(part)
    return edges


def test_every_part_is_in_the_table():
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts == set(ALLOWED), "add the new part to ALLOWED here and to docs/architecture.md"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_follow_the_data_flow(part):
    extra = _edges().get(part, set()) - ALLOWED[part]
    assert not extra, f"gps_env.{part} imports {sorted(extra)}, which docs/architecture.md does not allow"


def test_no_import_cycles_between_parts():
    edges = _edges()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node):
            visit(node, [])


def test_torch_free_modules_import_without_torch():
    code = (f"import sys, importlib\nfor m in {TORCH_FREE!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"torch was imported: {out.strip()[:200]}"


def test_no_file_over_400_lines_without_a_reason():
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 420 and "longer than 400 lines" not in text[:2000]:
            long.append(f"{path.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert not long, f"split these or say at the top why they are long: {long}"

"""The code's shape stays readable: no import cycles between rlaif's modules (imports inside
functions and for types included), six modules at most at the top (besides `__init__.py`),
judge providers below the judging service, no module over 500 lines, and the stage table is
the one place a stage is declared."""

import ast
from pathlib import Path

import rlaif
from rlaif.run.run_dir import OUTPUT_DIRS
from rlaif.run.stage_table import NAMES
from rlaif.run.stage_table import STAGES as TABLE

PACKAGE = Path(rlaif.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """rlaif modules ``path`` imports, at its top, inside a function or under ``if
    TYPE_CHECKING`` alike: the first two run sooner or later, and a type-only import still
    ties the two modules' designs together."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from package import submodule`` imports the submodule, not a name from it
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_no_import_cycles():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports(path, set(files)) - {name} for name, path in files.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_imports_inside_functions_and_for_types_count(tmp_path):
    """The checker sees a function-level import (the kind that hides a cycle until run
    time) and one under ``TYPE_CHECKING``."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from rlaif.typed import T\n"
        "def f():\n    from rlaif.late import g\n    return g\n"
    )
    assert imports(module, {"rlaif.typed", "rlaif.late"}) == {"rlaif.typed", "rlaif.late"}


def test_at_most_six_modules_at_the_top():
    """Everything else lives in a folder named for its concern."""
    assert len([p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]) <= 6


def test_judge_providers_import_no_executor_or_service():
    """``rlaif.judges`` holds providers only: dispatch, the store and Ray are above it."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    above = {
        m for m in modules if m.startswith(("rlaif.executors", "rlaif.judging", "rlaif.stages"))
    }
    for path in (PACKAGE / "judges").glob("*.py"):
        assert imports(path, modules) & above == set(), path.name


def test_no_module_over_500_lines():
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}


def test_stages_are_declared_once():
    assert tuple(s.name for s in TABLE) == NAMES
    assert {s.name: s.output for s in TABLE} == OUTPUT_DIRS
    for stage in TABLE:
        assert stage.upstream is None or NAMES.index(stage.upstream) < NAMES.index(stage.name)

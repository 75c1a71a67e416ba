"""The code's shape stays readable: no import cycles between rlaif's modules, no module over
600 lines, and the stage table is the one place a stage is declared."""

import ast
from pathlib import Path

import rlaif
from rlaif.config import STAGES
from rlaif.run_dir import OUTPUT_DIRS
from rlaif.stage_table import NAMES
from rlaif.stage_table import STAGES as TABLE

PACKAGE = Path(rlaif.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def eager_imports(path: Path, modules: set[str]) -> set[str]:
    """rlaif modules imported when ``path`` is imported: top-level imports, not those under
    ``if TYPE_CHECKING`` or inside functions."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
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
    graph = {name: eager_imports(path, set(files)) - {name} for name, path in files.items()}
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


def test_no_module_over_600_lines():
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}


def test_stages_are_declared_once():
    assert STAGES == NAMES == tuple(s.name for s in TABLE)
    assert {s.name: s.output for s in TABLE} == OUTPUT_DIRS
    for stage in TABLE:
        assert stage.upstream is None or NAMES.index(stage.upstream) < NAMES.index(stage.name)

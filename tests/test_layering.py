"""The package layout is the data flow: a stage imports only the stages below it, at module
level or inside a function, and no module imports itself back through another
(docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import zconvert

PACKAGE = Path(zconvert.__file__).resolve().parent

# Each stage and the stages it may import besides itself; core is the bottom, cli the top.
MAY_IMPORT = {
    "core": set(),
    "zipread": {"core"},
    "sinks": {"core"},
    "stores": {"core", "sinks"},
    "run": {"core", "zipread", "sinks", "stores"},
    "read": {"core", "zipread", "sinks", "stores"},
    "cli": {"core", "zipread", "sinks", "stores", "run", "read"},
}
# The package's own files: the public API, `python -m zconvert`, the version every stage reads.
TOP_LEVEL = {"__init__.py", "__main__.py", "_version.py"}


def _module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(root: Path, dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def imports(root: Path) -> list[tuple[str, int, str, bool]]:
    """(module, line, imported module, at module level) for every import of the package at
    `root`, relative or absolute, wherever it is written (functions, TYPE_CHECKING blocks)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    base_name = ".".join([*base, node.module] if node.module else base)
                else:
                    base_name = node.module or ""
                # `from . import worker_env` imports a module; `from .records import Task` a name.
                targets = [
                    f"{base_name}.{a.name}"
                    if _is_module(root, f"{base_name}.{a.name}")
                    else base_name
                    for a in node.names
                ]
            else:
                continue
            for target in targets:
                if target == root.name or target.startswith(root.name + "."):
                    found.append((module, node.lineno, target, id(node) in top))
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(root: Path) -> list[str]:
    """One line per import that goes against the layering."""
    problems = []
    for module, line, target, _ in imports(root):
        stage, other = _stage(module), _stage(target)
        if stage not in MAY_IMPORT or other in ("", "_version") or other == stage:
            continue  # the API and `python -m` import anything; anyone reads the version
        if other not in MAY_IMPORT[stage]:
            allowed = ", ".join(sorted(MAY_IMPORT[stage])) or "nothing else of zconvert"
            problems.append(f"{module}:{line} imports {target}; {stage} may import {allowed}")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """Modules that import themselves back through others, lazily or not."""
    graph: dict[str, set[str]] = {}
    for module, _, target, _ in imports(root):
        if target != module:
            graph.setdefault(module, set()).add(target)
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            # A package's __init__ is imported with each of its modules; that is no cycle.
            if not module.startswith(target + "."):
                visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_every_module_sits_in_a_stage() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert top == TOP_LEVEL, "a new module goes into the stage that owns its job"
    assert folders == set(MAY_IMPORT)


def test_no_stage_imports_a_stage_above_it() -> None:
    assert upward_imports(PACKAGE) == []


def test_no_import_cycles() -> None:
    assert import_cycles(PACKAGE) == []


@pytest.mark.parametrize("stage", sorted(MAY_IMPORT))
def test_each_stage_says_what_it_owns_and_may_import(stage: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())) or ""
    doc = " ".join(doc.split())
    start = doc.find("May import") if "May import" in doc else doc.find("Imports nothing")
    rule = doc[start : doc.find(".", start) + 1]  # the sentence that states the rule
    named = {s for s in MAY_IMPORT if s in rule.replace(",", " ").replace(".", " ").split()}
    if stage == "cli":
        assert "every stage" in rule
    elif stage == "core":
        assert "nothing else of zconvert" in rule
    else:
        assert named == MAY_IMPORT[stage], doc


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "zconvert"
    for stage in MAY_IMPORT:
        (root / stage).mkdir(parents=True)
        (root / stage / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_the_check_finds_upward_imports_wherever_they_are_written(tmp_path: Path) -> None:
    root = _fake_package(
        tmp_path,
        {
            "run/worker.py": "from ..core import records\n",
            "zipread/archive.py": """\
                from typing import TYPE_CHECKING
                from ..core.errors import ArchiveError
                if TYPE_CHECKING:
                    from ..sinks import ArraySpec
                def inflate():
                    from ..run import worker
                    import zconvert.read
            """,
            "core/errors.py": "ArchiveError = None\n",
        },
    )
    assert upward_imports(root) == [
        "zconvert.zipread.archive:4 imports zconvert.sinks; zipread may import core",
        "zconvert.zipread.archive:6 imports zconvert.run.worker; zipread may import core",
        "zconvert.zipread.archive:7 imports zconvert.read; zipread may import core",
    ]


def test_the_check_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    root = _fake_package(
        tmp_path,
        {
            "run/resume.py": "def f():\n    from .worker import convert_task\n",
            "run/worker.py": "from .resume import f\n",
        },
    )
    assert import_cycles(root) == [
        ["zconvert.run.resume", "zconvert.run.worker", "zconvert.run.resume"]
    ]


def test_architecture_doc_states_the_same_rules() -> None:
    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].strip("`") in MAY_IMPORT:
            rows[cells[0].strip("`")] = cells[2]
    assert set(rows) == set(MAY_IMPORT)
    for stage, rule in rows.items():
        named = {s.strip("` ") for s in rule.split(",")} & set(MAY_IMPORT)
        expected = {"every stage"} if stage == "cli" else MAY_IMPORT[stage]
        assert (named or {rule}) == (expected or {"nothing else of zconvert"}), stage

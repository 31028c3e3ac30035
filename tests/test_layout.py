"""The house rules, checked: `ls swat_edge` reads as the pipeline and imports flow one way.

Stages and what each may import (besides itself). core is the top-level errors, files, console, model, data;
cli, views (the CLI's tables) and the package's own __init__/__main__ may import anything. Type-only imports (under TYPE_CHECKING) are
allowed one step further: runs annotates with search's result types without importing torch.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from clirun import python_without_torch

PACKAGE = Path(__file__).resolve().parent.parent / "swat_edge"
CORE = {"errors", "files", "console", "model", "data"}
ENTRY = {"__main__", "cli", "views"}  # the CLI and its rendering of every stage's results
STAGES = ("compile", "device", "export", "measure", "search", "runs")
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "compile": {"core"},
    "device": {"core", "compile"},
    "export": {"core", "compile"},
    "measure": {"core", "compile", "device", "export"},
    "search": {"core", "compile", "device"},
    "runs": {"core", "compile", "device", "export", "measure"},
}
TYPE_ONLY_ALLOWED: dict[str, set[str]] = {"runs": {"search"}}
TORCH_FREE = ("core", "compile", "device", "export", "measure", "runs")
# Inside core, the order is errors <- files <- {console, model, data}.
CORE_ALLOWED = {"errors": set(), "files": {"errors"}, "console": {"errors", "files"}, "model": {"errors", "files"},
                "data": {"errors", "files"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ENTRY:
        return "entry"
    if parts[1] in CORE:
        return "core"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(absolute module, type_only, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    type_only_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                type_only_lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno in type_only_lines, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from . import x" may name a submodule: count it as importing that submodule
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found += [(name, node.lineno in type_only_lines, node.lineno) for name in names]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_tree_reads_as_the_pipeline() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert folders == set(STAGES)
    assert modules - {"views"} == CORE | ENTRY - {"views"} | {"__init__"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_says_what_it_is(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path.name} has no module docstring"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    source_stage = _stage(_module_name(path))
    if source_stage == "entry":
        return
    for target, type_only, line in _imports(path):
        if target.split(".")[0] != "swat_edge" or target in ("swat_edge", "swat_edge.__version__"):
            continue  # the version string lives in the package root
        target_stage = _stage(target)
        if target_stage == source_stage:
            if source_stage == "core":
                src, dst = _module_name(path).split(".")[1], target.split(".")[1]
                assert dst == src or dst in CORE_ALLOWED[src], f"{path.name}:{line} core module {src} imports {dst}"
            continue
        allowed = ALLOWED[source_stage] | (TYPE_ONLY_ALLOWED.get(source_stage, set()) if type_only else set())
        assert target_stage in allowed, f"{path.relative_to(PACKAGE)}:{line}: {source_stage} imports {target}"


def test_the_embedding_never_imports_the_search() -> None:
    # search uses embedding/, never the other way round (decode is the embedding's bridge to SparseMLP).
    for path in sorted((PACKAGE / "search" / "embedding").rglob("*.py")):
        for target, _, line in _imports(path):
            if target.startswith("swat_edge.search.") and not target.startswith("swat_edge.search.embedding"):
                pytest.fail(f"search/embedding/{path.name}:{line} imports {target}")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_device_side_never_imports_torch(path: Path) -> None:
    if _stage(_module_name(path)) not in TORCH_FREE:
        return
    for target, type_only, line in _imports(path):
        assert type_only or target.split(".")[0] != "torch", f"{path.name}:{line} imports torch"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_back_doors(path: Path) -> None:
    # A private name (_x) is used only inside its own stage folder: another stage goes through a public name.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stage = _stage(_module_name(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("swat_edge"):
            target = node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            target = dict((t, t) for t, _, ln in _imports(path) if ln == node.lineno).popitem()[0] if node.module else ""
        else:
            continue
        private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
        if private and _stage(target) != stage:
            pytest.fail(f"{path.name}:{node.lineno} imports private {private} from another stage ({target})")
        if node.module and any(part.startswith("_") for part in node.module.split(".")) and _stage(target) != stage:
            pytest.fail(f"{path.name}:{node.lineno} imports the private module {node.module} from another stage")


def test_torch_free_stages_import_without_torch() -> None:
    # Import every module of the device-side stages in a process where torch cannot be imported.
    modules = [_module_name(p) for p in SOURCES if _stage(_module_name(p)) in TORCH_FREE]
    result = python_without_torch(
        f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\nimport swat_edge.cli\n"
        "print('ok', len(sys.modules))\n", timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def test_the_rules_can_fail(tmp_path: Path) -> None:
    # The checker itself: a device-side module importing the search is caught.
    assert "search" not in ALLOWED["export"] and "search" not in ALLOWED["runs"]
    assert _stage("swat_edge.runs.folder") == "runs" and _stage("swat_edge.model") == "core"
    fake = PACKAGE / "export" / "_layout_probe.py"
    try:
        fake.write_text('"""probe"""\nfrom ..search.latent import fine_tune\nimport torch\n', encoding="utf-8")
        with pytest.raises(AssertionError):
            test_imports_flow_one_way(fake)
        with pytest.raises(AssertionError):
            test_device_side_never_imports_torch(fake)
    finally:
        fake.unlink()

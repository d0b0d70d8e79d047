"""The core is headless: nothing under babylon_console.core imports Textual, statically or at run time."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import babylon_console.core as core

CORE = Path(core.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_core_module_imports_textual_or_the_tui() -> None:
    offenders = {}
    for path in CORE.rglob("*.py"):
        bad = {
            m
            for m in _imported_modules(path)
            if m.split(".")[0] == "textual" or m.startswith("babylon_console.tui")
        }
        if bad:
            offenders[str(path.relative_to(CORE))] = bad
    assert offenders == {}
    assert len(list(CORE.rglob("*.py"))) > 5  # the scan really looked at the core


def test_importing_every_core_module_loads_no_textual() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import babylon_console.core as core\n"
        "mods = [m.name for m in pkgutil.walk_packages(core.__path__, 'babylon_console.core.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert len(mods) > 5, mods\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(len(mods), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    """The layering of pyproject.toml's [tool.importlinter] contracts: core headless, widgets and
    dialogs never import the app, screens or controllers, only the console's data layer and runners import the
    core, commands never import cli.py."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, timeout=300,
                            cwd=Path(core.__file__).parents[2])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "6 kept, 0 broken" in result.stdout


def _core_import_graph() -> dict[str, set[str]]:
    """Each core module -> the core modules it imports anywhere in its body (inside functions too:
    an import made late to dodge a circle is still a dependency)."""
    modules = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                found = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in found:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's __init__ is not a dependency of its own modules' imports of siblings
                if target and target != name and not name.startswith(target + "."):
                    targets.add(target)
        graph[name] = targets
    return graph


def test_no_import_circle_among_core_modules() -> None:
    graph = _core_import_graph()
    assert len(graph) > 30 and any(graph.values())  # the scan found the core and its imports
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle among core modules: {' -> '.join(exc.args[1])}") from None

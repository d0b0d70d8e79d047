"""Subcommands are imported only when invoked, and `--help` lists them without importing any."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babylon_console.cli import COMMANDS, app, load_command

COMMAND_MODULES = sorted(p.stem for p in (Path(__file__).parents[1] / "babylon_console" / "commands").glob("*.py")
                         if p.stem != "__init__")


def first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name, COMMANDS[name])
    assert COMMANDS[name].help == first_paragraph(command.help or "")


def test_every_registered_command_is_listed() -> None:
    registered = set()
    for module in COMMAND_MODULES:
        sub = importlib.import_module(f"babylon_console.commands.{module}").app
        registered |= {c.name for c in sub.registered_commands} | {g.name for g in sub.registered_groups}
    assert registered == set(COMMANDS)


PROBE = """
import sys
from babylon_console.cli import main
sys.argv = ["babylon-console", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.startswith("babylon_console.commands."))
print("LOADED", ",".join(loaded) or "-", "numpy" in sys.modules, "asyncpg" in sys.modules)
"""


def probe(*args: str) -> tuple[list[str], bool, bool, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    line = next(x for x in result.stdout.splitlines() if x.startswith("LOADED"))
    _, modules, numpy, asyncpg = line.split()
    return [] if modules == "-" else modules.split(","), numpy == "True", asyncpg == "True", result.stdout


def test_help_imports_no_command_module() -> None:
    modules, numpy, asyncpg, output = probe("--help")
    assert modules == [] and not numpy and not asyncpg
    for name in COMMANDS:
        assert re.search(rf"│ {name}\s", output), name


def test_a_command_imports_only_its_module() -> None:
    modules, numpy, _, output = probe("windows", "--help")
    assert modules == ["babylon_console.commands.windows"] and not numpy and "--min-agents" in output
    modules, _, _, output = probe("db", "status", "--help")
    assert modules == ["babylon_console.commands.db"] and "Show which migrations are applied" in output


def test_help_still_lists_groups_and_suggests_close_names() -> None:
    runner = CliRunner()
    models = runner.invoke(app, ["models", "--help"])
    assert models.exit_code == 0 and all(c in models.output for c in ("list", "promote", "rollback"))
    typo = runner.invoke(app, ["windws"])
    assert typo.exit_code == 2 and "Did you mean 'windows'?" in typo.output


def test_garbage_collection_is_off_only_through_start_up() -> None:
    """main() turns the collector off for start-up; a headless command runs with it on again."""
    code = ("import atexit, gc, sys\n"
            "import babylon_console.cli as cli\n"
            "atexit.register(lambda: print('GC enabled:', gc.isenabled()))\n"
            "sys.argv = ['babylon-console', '--database-url', 'postgresql://x@127.0.0.1:1/db', 'windows']\n"
            "cli.main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "GC enabled: True" in result.stdout

"""`--read-only` and `--attach` given before the subcommand reach the console (`console`, `demo`),
and are refused for headless commands instead of being ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.tui.app import ConsoleApp


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[ConsoleApp]:
    apps: list[ConsoleApp] = []
    monkeypatch.setattr(ConsoleApp, "run", lambda self, *a, **k: apps.append(self))
    return apps


@pytest.mark.parametrize("args", [["--read-only"], ["--read-only", "console"], ["console", "--read-only"],
                                  ["--read-only", "demo"], ["demo", "--read-only"]])
def test_read_only_is_honoured_wherever_it_is_given(args: list[str], opened: list[ConsoleApp],
                                                    tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(opened) == 1 and opened[0].read_only and opened[0].data.read_only


def test_attach_before_console_attaches(opened: list[ConsoleApp], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--attach", "console"], catch_exceptions=False)
    assert result.exit_code == 0 and opened[0].attach


@pytest.mark.parametrize("args", [["--read-only", "status"], ["--attach", "windows"], ["--attach", "demo"]])
def test_console_flags_before_other_commands_are_refused(args: list[str], opened: list[ConsoleApp]) -> None:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2 and result.output.startswith("error: ") and not opened

"""The exit codes the README documents, and the one error policy behind them: a `ConsoleError`
prints one line `error: <message>` on stderr and exits with its code, without a traceback."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest
import typer
from typer.testing import CliRunner

from babylon_console.cli import app
from babylon_console.cli_support import run_command
from babylon_console.core import errors
from babylon_console.core.errors import ConsoleError, DatabaseUnavailable, Failed, InvalidInput, Outage, Refused

runner = CliRunner()
UNREACHABLE = ["--database-url", "postgresql://x@127.0.0.1:1/db"]


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_documented_values() -> None:
    documented = {"EXIT_OK": 0, "EXIT_FAILED": 1, "EXIT_UNAVAILABLE": 2, "EXIT_NOTHING_TO_DO": 3, "EXIT_BUSY": 4,
                  "EXIT_INTERRUPTED": 130}
    assert {name: getattr(errors, name) for name in documented} == documented


@pytest.mark.parametrize("args", [
    [*UNREACHABLE, "windows"],
    [*UNREACHABLE, "status"],
    [*UNREACHABLE, "models", "promote", "some-model", "-y"],
    [*UNREACHABLE, "db", "migrate"],
])
def test_unreachable_database_given_on_the_command_line_is_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect") and "127.0.0.1:1" in lines[0]


@pytest.mark.parametrize("args", [["no-such-command"], ["windows", "--no-such-option"], ["models", "promote"]])
def test_a_wrong_command_line_is_2(args: list[str]) -> None:
    assert invoke(*args).exit_code == 2


def test_a_declined_confirmation_is_1() -> None:
    assert runner.invoke(app, ["models", "rollback"], input="n\n").exit_code == 1


def test_an_invalid_setting_is_2() -> None:
    result = invoke("status", env={"BABYLON_MIN_AGENTS": "zero"})
    assert result.exit_code == 2 and "error: invalid configuration: BABYLON_MIN_AGENTS" in result.output


async def test_refused_and_failed_actions_are_1(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    unknown = await asyncio.to_thread(invoke, "models", "promote", "no-such-model", "-y", env=env)
    # an unknown model id is invalid input (2), as in every command that takes one (tests/checkpoints/test_rollouts.py)
    assert unknown.exit_code == 2 and "error: no checkpoint with model id 'no-such-model'" in unknown.output
    no_engine = await asyncio.to_thread(invoke, "control", "pause", env=env)
    assert no_engine.exit_code == 1 and "error: no engine is running" in no_engine.output
    idle = await asyncio.to_thread(invoke, "status", env=env)
    assert idle.exit_code == 0 and "No engine has run" in idle.output


async def test_train_while_another_engine_trains_the_model_is_4(pool: asyncpg.Pool, database_url: str) -> None:
    from babylon_console.core.engine.runs import LOCK_NAMESPACE
    from babylon_console.core.names import training_key

    async with pool.acquire() as holder:  # what a running engine holds for its model
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_NAMESPACE,
                                     training_key("offline", "babylon-agent"))
        result = await asyncio.to_thread(invoke, "train", "-q", "--backend", "offline", "--model-name", "babylon-agent",
                                         env={"DATABASE_URL": database_url})
        await holder.execute("SELECT pg_advisory_unlock_all()")
    assert result.exit_code == 4, result.output
    assert result.output.startswith("error: another engine is already training model 'babylon-agent'")


def _raising(exc: BaseException):
    async def body() -> None:
        raise exc

    return body


@pytest.mark.parametrize(("exc", "code"), [
    (Outage("server gone"), 2),
    (Refused("not now"), 1),
    (InvalidInput("bad id"), 2),
    (Failed("it broke"), 1),
    (Refused("another engine trains this model", exit_code=4), 4),
    (DatabaseUnavailable("cannot connect to PostgreSQL at h:5432"), 2),
    (KeyboardInterrupt(), 130),
])
def test_run_command_exits_with_the_errors_code_in_one_line(exc: BaseException, code: int,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        run_command(_raising(exc))
    assert exited.value.exit_code == code
    captured = capsys.readouterr()
    message = exc.message if isinstance(exc, ConsoleError) else str(exc) or "interrupted"
    assert captured.out == "" and captured.err == f"error: {message}\n"


def test_messages_are_printed_as_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        run_command(_raising(Refused("window [bold]x[/bold] is [red]")))
    assert capsys.readouterr().err == "error: window [bold]x[/bold] is [red]\n"


def test_a_console_error_outside_run_command_gets_the_same_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import babylon_console.commands.windows as windows

    def refuse(**_: object) -> None:
        raise Refused("not while the game migrates", exit_code=4)

    monkeypatch.setattr(windows, "load_settings", refuse)
    result = invoke("windows")
    assert result.exit_code == 4 and result.output == "error: not while the game migrates\n"


@pytest.mark.parametrize(("exc", "code", "starts"), [
    (ConnectionRefusedError(111, "Connection refused"), 2,
     "error: the database stopped answering during the command: [Errno 111] Connection refused"),
    (asyncpg.exceptions.DivisionByZeroError("division by zero"), 1, "error: division by zero"),
])
def test_library_errors_mid_command_are_mapped_to_one_line(exc: BaseException, code: int, starts: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A database or OS failure in the middle of a command is not a bug: one line, the mapped code."""
    with pytest.raises(typer.Exit) as exited:
        run_command(_raising(exc))
    err = capsys.readouterr().err
    assert exited.value.exit_code == code
    assert err.startswith(starts) and err.count("\n") == 1 and "Traceback" not in err


def test_library_warnings_with_a_traceback_are_one_line_unless_verbose() -> None:
    """asyncpg's pool logs a warning with the traceback of a lost connection while it retries: a
    headless command shows it as one line (the traceback is for --verbose)."""
    import logging

    from babylon_console.cli_support import OneLineFormatter

    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        record = logging.getLogger("asyncpg.pool").makeRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "Failed to restore the pool connection floor; retrying",
            (), sys.exc_info())
    text = OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert text == ("WARNING asyncpg.pool: Failed to restore the pool connection floor; retrying "
                    "(ConnectionRefusedError: [Errno 111] Connection refused)")
    assert "Traceback" in logging.Formatter().format(record)  # what it replaces

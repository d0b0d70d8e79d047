"""The `babylon-console` command: the console by default, subcommands for headless use.

Every command shares one error policy (`run_command`): a database that cannot be reached or a bad
configuration prints one line on stderr and exits 2, without a traceback. Secrets never reach the
output: settings are shown through `Settings.public_view()` and URLs through `masked_dsn`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import orjson
import typer
from pydantic import ValidationError
from rich.console import Console

from .core.config import Settings
from .core.database import DatabaseUnavailable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2  # also click's code for usage errors: "could not do what was asked"

app = typer.Typer(
    name="babylon-console",
    help="Babylon Console: turn recorded Babylon agent games into better agents (GRPO via OpenPipe ART).",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema: apply and inspect migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class CliState:
    """Options given before the subcommand, applied on top of env and `.env`."""

    overrides: dict[str, Any] = {}  # noqa: RUF012 - set once per process by the callback
    env_file: Path | None = None

    @classmethod
    def settings(cls, **more: Any) -> Settings:
        env_file = cls.env_file if cls.env_file is not None else Path(".env")
        base = Settings(_env_file=env_file)  # type: ignore[call-arg]
        return base.with_overrides(**cls.overrides, **more)


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def run_command[T](coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body with the shared error policy."""
    try:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    except DatabaseUnavailable as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from None
    except ValidationError as exc:
        raise fail(_config_error(exc), EXIT_UNAVAILABLE) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def run_with_pool[T](settings: Settings, body: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Open the (migrated) database, run `body(pool)`, close the pool: the shared error policy applies."""

    async def wrapped() -> T:
        from .core.database import open_pool

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
        raise fail(_config_error(exc), EXIT_UNAVAILABLE) from None


def _config_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    return f"invalid configuration: {where.upper()}: {first['msg']}"


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL URL (default: $DATABASE_URL, else embedded).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (embedded database, checkpoints).")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Read settings from this file instead of ./.env.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Console only: watch, and refuse every action.")
    ] = False,
    attach: Annotated[
        bool, typer.Option("--attach", help="Console only: follow a headless `engine` through its events.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if env_file is not None and not env_file.is_file():
        raise fail(f"--env-file {env_file}: no such file", EXIT_UNAVAILABLE)
    CliState.env_file = env_file
    CliState.overrides = {"database_url": database_url, "data_dir": data_dir}
    if ctx.invoked_subcommand is None:
        from .commands.console import open_console

        open_console(read_only=read_only, attach=attach)


def main() -> None:
    app()


# Subcommands register themselves on `app` / `db_app` when imported.
from .commands import console, db, doctor, inspect, models, seed, status, train, windows  # noqa: E402, F401

"""The `babylon-console` command: the console by default, subcommands for headless use.

Subcommands live in `commands/`, one module per group, and are imported only when invoked: the
console's start-up path never loads the simulator or numpy for `seed`, nor the registry for `models`.
`--help` lists them from `COMMANDS` without importing any. The error policy they share is in
`cli_support`.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from .cli_support import CliState, OneLineFormatter, error_exit, fail, interrupts
from .core.errors import EXIT_UNAVAILABLE, ConsoleError


@dataclass(frozen=True, slots=True)
class LazyCommand:
    target: str  # "module:attr", a Typer app that registers the command under its name
    help: str  # what `--help` lists (the first paragraph of the command's help, on one line)


# In the order `--help` lists them. tests/test_cli_lazy.py checks each help against the command's own.
COMMANDS: dict[str, LazyCommand] = {
    "console": LazyCommand("babylon_console.commands.console:app",
                           "Open the operators' console (what `babylon-console` with no subcommand does)."),
    "demo": LazyCommand("babylon_console.commands.console:app",
                        "The whole loop offline, in a database of its own (an embedded PostgreSQL under "
                        "<data dir>/demo, with its checkpoints): a live simulated market, the outcome judge and the "
                        "offline backend, with the engine training continuously. Agents driven by the promoted "
                        "checkpoint trade in the live market."),
    "doctor": LazyCommand("babylon_console.commands.doctor:app",
                          "Check configuration and connectivity. Exits 1 if any check fails. Never prints a secret."),
    "inspect": LazyCommand("babylon_console.commands.inspect:app",
                           "Show a trajectory: every step's state, LLM calls, action and reward, and the judge's "
                           "verdicts."),
    "seed": LazyCommand("babylon_console.commands.seed:app",
                        "Fill the database with a simulated Babylon market: agents, trajectories, LLM call logs and "
                        "market outcomes, written exactly as the game writes them. Re-running with the same seed "
                        "skips windows already written."),
    "status": LazyCommand("babylon_console.commands.status:app",
                          "Engines: the latest run of each model, its state, current stage and for how long, and its "
                          "last heartbeat (stale after 3 missed beats, dead after 6). Exits 1 when a run is stale or "
                          "dead."),
    "control": LazyCommand("babylon_console.commands.status:app",
                           "Pause, resume or stop an engine running in another process or machine, through the "
                           "database. The engine acknowledges; exits 1 when no engine is running or none answers in "
                           "time."),
    "train": LazyCommand("babylon_console.commands.train:app",
                         "Train for a number of iterations on ready windows. Exit codes: 0 trained, 1 the engine or "
                         "every step it tried failed, 2 database/configuration, 3 nothing was ready to train, 4 "
                         "another engine trains this model."),
    "engine": LazyCommand("babylon_console.commands.train:app",
                          "Headless, continuous engine: trains each window as it becomes ready, until Ctrl-C / "
                          "SIGTERM. Consoles anywhere can watch it through its events."),
    "windows": LazyCommand("babylon_console.commands.windows:app",
                           "Readiness of every window: agents, trajectories, steps, P&L, outcomes, and why not ready."),
    "db": LazyCommand("babylon_console.commands.db:app",
                      "Database: apply and inspect migrations; return a simulated database to the wall clock; "
                      "roles (who may act, enforced by the server)."),
    "models": LazyCommand("babylon_console.commands.models:app",
                          "Trained checkpoints: list, promote, roll back, A/B readout."),
    "holdout": LazyCommand("babylon_console.commands.holdout:app",
                           "The hold-out: the share of windows reserved for evaluation, recorded in the database so "
                           "that every engine, `train`, `windows`, evaluation and console honours the same one. "
                           "Without --share: show it (who set it, when, why) and its history; with --share: set or "
                           "change it (audited)."),
    "health": LazyCommand("babylon_console.commands.health:app",
                          "Training health per step (groups with no reward spread, reward, KL, entropy, tokens per "
                          "call, the action mix, the judge's rank correlation with realised P&L, trends) and the "
                          "alarms raised, per training key. `health ack ID` acknowledges an alarm."),
    "gateway": LazyCommand("babylon_console.commands.gateway:app",
                           "An OpenAI-compatible endpoint for the game's agents, serving the model the registry says: "
                           "the alias (BABYLON_GATEWAY_MODEL) is the live model, or the candidate for its share of "
                           "agents during an A/B rollout; every call is logged. Runs until Ctrl-C / SIGTERM."),
}


Command = TyperCommand | TyperGroup  # what Typer builds from a command or a sub-app


@cache
def _load_group(target: str) -> TyperGroup:
    module, _, attr = target.partition(":")
    return typer.main.get_group(getattr(importlib.import_module(module), attr))


def load_command(name: str, entry: LazyCommand) -> Command:
    command = _load_group(entry.target).commands.get(name)
    if command is None:
        raise LookupError(f"{entry.target} registers no command {name!r}")
    return command  # type: ignore[return-value]


class _LazyCommands(MutableMapping[str, Command]):
    """A group's commands: a lazy one is imported on first access, while the names (for listing and
    "did you mean") cost nothing."""

    def __init__(self, lazy: dict[str, LazyCommand], eager: MutableMapping[str, Command]) -> None:
        self.lazy = dict(lazy)
        self.loaded = dict(eager)

    def __getitem__(self, name: str) -> Command:
        if name not in self.loaded:
            self.loaded[name] = load_command(name, self.lazy[name])  # KeyError: no such command
        return self.loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.loaded.pop(name, None)
        self.lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self.lazy or name in self.loaded

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.lazy, *self.loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self.lazy, *self.loaded]))


class LazyGroup(TyperGroup):
    """A Typer group whose subcommands (`lazy`: name -> LazyCommand) are imported when invoked.
    Its own `--help` lists them from their stored help, importing none."""

    lazy: ClassVar[dict[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.lazy, self.commands)
        self._listing = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's would import every command

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Command | None:
        commands = self.commands
        if self._listing and isinstance(commands, _LazyCommands) and cmd_name not in commands.loaded:
            entry = commands.lazy.get(cmd_name)  # a stand-in that only carries the help to list
            return TyperCommand(cmd_name, help=entry.help) if entry else None
        return commands.get(cmd_name)  # type: ignore[return-value]

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class BabylonGroup(LazyGroup):
    lazy = COMMANDS

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        if args and args[0] in INTERRUPTIBLE_COMMANDS:
            interrupts.arm()  # before their heavy imports: Ctrl+C works (and says so) from the first moment
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConsoleError as exc:  # raised outside `run_command`: the same one line and exit code
            raise error_exit(exc) from None


app = typer.Typer(
    name="babylon-console",
    cls=BabylonGroup,
    help="Babylon Console: turn recorded Babylon agent games into better agents (GRPO via OpenPipe ART).",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    handler = logging.StreamHandler(sys.stderr)
    form = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(form) if verbose else OneLineFormatter(form))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    if env_file is not None and not env_file.is_file():
        raise fail(f"--env-file {env_file}: no such file", EXIT_UNAVAILABLE)
    CliState.env_file = env_file
    CliState.overrides = {"database_url": database_url, "data_dir": data_dir}
    CliState.read_only, CliState.attach, CliState.verbose = read_only, attach, verbose
    if (read_only or attach) and ctx.invoked_subcommand not in CONSOLE_COMMANDS:
        raise fail(f"--read-only and --attach apply to the console only, not to `{ctx.invoked_subcommand}`",
                   EXIT_UNAVAILABLE)
    if ctx.invoked_subcommand not in CONSOLE_COMMANDS:
        gc.enable()  # a headless command: collect as usual (the console enables it at its first frame)
    if ctx.invoked_subcommand is None:
        from .commands.console import open_console

        open_console(read_only=read_only, attach=attach)


CONSOLE_COMMANDS = (None, "console", "demo")
INTERRUPTIBLE_COMMANDS = ("train", "engine")  # Ctrl+C: "stopping…", exit 130 within 2 s (cli_support.Interrupts)


def main() -> None:
    # Start-up creates hundreds of thousands of objects that all stay alive (modules, classes,
    # pydantic schemas): collecting them is wasted work (~60-100 ms before the console's first
    # frame). Off until the command runs; the console turns it on once its first frame is painted.
    gc.disable()
    app()

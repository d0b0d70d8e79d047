"""`babylon-console` (the console), `babylon-console console` and `babylon-console demo`.

The Textual app is imported only when a console is opened, so headless subcommands stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..cli_support import CliState, err, fail, load_settings, run_command
from ..core.errors import EXIT_UNAVAILABLE

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked

ReadOnly = Annotated[bool, typer.Option("--read-only", help="Watch only: every action (engine control, promote, "
                                        "rollback) is refused, with a note saying why.")]
Attach = Annotated[bool, typer.Option("--attach", help="Follow a headless `babylon-console engine` through its "
                                      "events; this console does not start or steer an engine.")]


def open_console(read_only: bool = False, attach: bool = False, demo: object = None) -> None:
    """Open the console on the configured database (DATABASE_URL, or the embedded server). The
    global `--read-only` / `--attach` (given before the subcommand) count as well."""
    read_only, attach = read_only or CliState.read_only, attach or CliState.attach
    settings = load_settings()
    from ..tui.app import ConsoleApp
    from ..tui.data import ConsoleData

    data = ConsoleData(settings, read_only=read_only)
    ConsoleApp(data, read_only=read_only, attach=attach, demo=demo).run()  # type: ignore[arg-type]


@app.command("console")
def console_command(read_only: ReadOnly = False, attach: Attach = False) -> None:
    """Open the operators' console (what `babylon-console` with no subcommand does)."""
    open_console(read_only=read_only, attach=attach)


@app.command("demo")
def demo_command(
    read_only: ReadOnly = False,
    windows: Annotated[int, typer.Option(help="Hours of simulated history to seed when the database has none.",
                                         min=1, max=24 * 30)] = 24,
    agents: Annotated[int, typer.Option(help="Agents in the simulated market.", min=2, max=200)] = 12,
    steps: Annotated[int, typer.Option(help="Steps per agent per window.", min=1, max=200)] = 12,
    seconds_per_window: Annotated[float, typer.Option(help="Real seconds per simulated hour.", min=1.0)] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated market.")] = 7,
    reset: Annotated[bool, typer.Option("--reset", help="Start afresh: drop the demo's database (recreated empty) "
                                        "and remove its checkpoints; refused while a demo runs.")] = False,
) -> None:
    """The whole loop offline, in a database of its own (an embedded PostgreSQL under <data dir>/demo,
    with its checkpoints): a live simulated market, the outcome judge and the offline backend, with the
    engine training continuously. Agents driven by the promoted checkpoint trade in the live market."""
    from ..core.simgame.demo import demo_settings, reset_demo, where
    from ..tui.runners.demo import DemoSettings

    read_only = read_only or CliState.read_only
    if CliState.attach:
        raise fail("demo runs its own engine: --attach does not apply (use `babylon-console --attach`)",
                   EXIT_UNAVAILABLE)
    if reset and read_only:
        raise fail("demo: --reset changes the demo's database; it cannot be read-only", EXIT_UNAVAILABLE)
    operator_settings = load_settings()
    settings = demo_settings(operator_settings)
    err.print(f"demo: runs in its own {where(settings)}, with its checkpoints; "
              f"{'DATABASE_URL' if operator_settings.database_url else 'your embedded database'} is not used "
              f"(the CLI reaches the demo with --data-dir {settings.data_dir})", soft_wrap=True)
    if reset:
        err.print(run_command(lambda: reset_demo(settings)).summary, soft_wrap=True)
    demo = DemoSettings(windows=windows, agents=agents, steps=steps, seed=seed,
                        seconds_per_window=seconds_per_window, policy_agents=max(2, agents // 2))
    from ..tui.app import ConsoleApp
    from ..tui.data import ConsoleData

    data = ConsoleData(settings, read_only=read_only, preferences_dir=operator_settings.data_dir)
    ConsoleApp(data, read_only=read_only, demo=demo).run()

"""`babylon-console status` (each model's latest engine run, its stage, whether it is alive) and
`babylon-console control` (pause, resume or stop an engine elsewhere, through the database)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..cli_support import fail, load_settings, out, print_json, require_permission, run_with_pool
from ..core.engine import control, runs
from ..core.engine.control import Command, default_operator
from ..core.errors import EXIT_FAILED
from ..core.game import market_clock

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked

_STYLE = {runs.Liveness.LIVE: "green", runs.Liveness.STALE: "yellow", runs.Liveness.DEAD: "red",
          runs.Liveness.ENDED: "dim"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@app.command("status")
def status_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Engines: the latest run of each model, its state, current stage and for how long, and its last
    heartbeat (stale after 3 missed beats, dead after 6). Exits 1 when a run is stale or dead."""
    settings = load_settings()

    async def body(pool) -> tuple[list[runs.RunRow], dict[str, object]]:
        return await runs.latest_per_model(pool), market_clock.describe(await market_clock.current_clock(pool))

    rows, clock = run_with_pool(settings, body)
    if as_json:
        print_json({"runs": [{**r.model_dump(mode="json"), "liveness": r.liveness.value} for r in rows],
                    "clock": clock})
    elif not rows:
        out.print("No engine has run on this database yet (babylon-console engine, or E in the console).")
    else:
        table = Table(show_header=True, header_style="bold")
        table.add_column("model", overflow="fold")
        table.add_column("liveness", no_wrap=True, min_width=8)  # never the column that gives way
        table.add_column("state", no_wrap=True)
        table.add_column("stage", overflow="fold")
        table.add_column("heartbeat", no_wrap=True, min_width=9)
        table.add_column("step", justify="right", no_wrap=True)
        for r in rows:
            active = r.liveness is not runs.Liveness.ENDED
            stage = f"{r.stage} ({_age(r.stage_age_s)})" if active and r.stage else "-"
            table.add_row(f"{r.model_name} ({r.backend})", f"[{_STYLE[r.liveness]}]{r.liveness.value}[/]", r.state,
                          stage, f"{_age(r.heartbeat_age_s)} ago", str(r.step))
        out.print(table)
        for r in rows:
            line = f"[dim]{r.model_name} ({r.backend}):[/] run {r.id} on {r.host}, pid {r.pid}"
            if r.error and r.liveness is not runs.Liveness.LIVE:
                line += f"; {r.error}"
            out.print(line, soft_wrap=True)
    if not as_json and clock["kind"] == "simulated":
        out.print(_clock_line(clock), soft_wrap=True)
    if any(r.liveness in (runs.Liveness.STALE, runs.Liveness.DEAD) for r in rows):
        raise typer.Exit(EXIT_FAILED)


def _clock_line(clock: dict[str, object]) -> str:
    """A simulated database says so: its "now" is the market's (windows, train and engines agree on it)."""
    state = f"running, {clock['speed']:g}x" if clock["running"] else "paused: its market is stopped"
    return f"Clock: simulated market time {str(clock['now'])[:16].replace('T', ' ')} UTC ({state})"


@app.command("control")
def control_command(
    command: Annotated[Command, typer.Argument(help="pause, resume or stop.")],
    run: Annotated[str | None, typer.Option("--run", help="The run (default: the latest active one).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only runs of this model name.")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the engine's answer.")] = 10.0,
    operator: Annotated[str | None, typer.Option(help="Recorded with the command (default: user@host).")] = None,
) -> None:
    """Pause, resume or stop an engine running in another process or machine, through the database.
    The engine acknowledges; exits 1 when no engine is running or none answers in time."""
    settings = load_settings()
    who = operator or default_operator()

    async def body(pool) -> tuple[runs.RunRow | None, control.CommandRow | None]:
        await require_permission(pool, "engine_commands", f"{command} an engine")
        candidates = [r for r in await runs.latest_per_model(pool)
                      if (run is None or r.id == run) and (model is None or r.model_name == model)]
        if run is not None and not candidates:
            candidates = [r for r in await runs.latest(pool, 200) if r.id == run]
        target = next((r for r in candidates if r.liveness in (runs.Liveness.LIVE, runs.Liveness.STALE)), None)
        if target is None:
            return None, None
        command_id = await control.send(pool, target.id, command, who)
        return target, await control.wait_ack(pool, command_id, timeout_s)

    target, acked = run_with_pool(settings, body)
    if target is None:
        raise fail("no engine is running" + (f" as run {run}" if run else "") + (f" for model {model}" if model
                   else "") + " (babylon-console status lists them)", EXIT_FAILED)
    if acked is None:
        raise fail(f"run {target.id} ({target.model_name}, {target.backend}) did not answer within {timeout_s:g} s; "
                   "the command stays queued and applies if it comes back", EXIT_FAILED)
    out.print(f"run {target.id}: {command} acknowledged ({acked.result}), sent by {who}")

"""`babylon-console seed`: simulated history (and optionally a live market) in the game's tables."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..cli_support import err, load_settings, out, print_json, run_command
from ..core.db.connections import open_database
from ..core.errors import InvalidInput
from ..core.game import market_clock
from ..core.sim.simulation import Simulation
from ..core.simgame.demo import is_demo
from ..core.simgame.live_market import LiveMarket
from ..core.simgame.seeding import SeedReport, seed_history
from ..core.simgame.serving import GatewayAgents

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked


# A live market's clock becomes its database's clock for every process (one clock per database):
# never by accident on the operator's database.
LIVE_CLOCK_REFUSAL = (
    "seed --live would make this database's clock the simulated market's, for every process that reads it "
    "(engines, `train`, `windows`, consoles) and after the market stops: run it on the demo's database "
    "(`babylon-console --data-dir <data dir>/demo seed --live`) or a scratch one, or pass --simulated-database "
    "to accept (`babylon-console db wall-clock` returns a database to the wall clock)")


@app.command("seed")
def seed_command(
    windows: Annotated[int, typer.Option(help="Hours of history, ending at the last closed hour.", min=1,
                                         max=24 * 365)] = 48,
    agents: Annotated[int, typer.Option(help="Agents in the simulated population.", min=1, max=10_000)] = 12,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same rows.")] = 7,
    steps: Annotated[int, typer.Option(help="Steps per agent per window.", min=1, max=500)] = 20,
    live: Annotated[bool, typer.Option("--live", help="Then keep writing windows with an accelerated clock.")] = False,
    seconds_per_window: Annotated[
        float, typer.Option(help="With --live: real seconds per simulated hour.", min=0.5)
    ] = 10.0,
    live_windows: Annotated[
        int | None, typer.Option(help="With --live: stop after this many live windows (default: run until Ctrl-C).",
                                 min=1)
    ] = None,
    policy_agents: Annotated[
        int, typer.Option(help="With --live: agents that call the market's own gateway, which serves them the live "
                               "model (the candidate for its share of them during an A/B rollout); 0: none.", min=0)
    ] = 6,
    simulated_database: Annotated[bool, typer.Option(
        "--simulated-database", help="With --live on a database without a market clock yet: accept that the "
        "market's accelerated clock becomes this database's clock for every process (until `db wall-clock`)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Fill the database with a simulated Babylon market: agents, trajectories, LLM call logs and
    market outcomes, written exactly as the game writes them. Re-running with the same seed skips
    windows already written."""
    settings = load_settings()
    sim = Simulation(seed=seed, n_agents=agents, steps_per_window=steps)

    async def body() -> tuple[SeedReport, list[str]]:
        target, pool = await open_database(settings)
        started = time.perf_counter()
        try:
            unclocked = live and not simulated_database and not is_demo(settings)
            if unclocked and not await market_clock.has_market_clock(pool):
                raise InvalidInput(LIVE_CLOCK_REFUSAL)
            now = (await market_clock.current_clock(pool)).now()  # a simulated database's history ends at its time
            with Progress(
                TextColumn("[bold]seeding[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                TimeRemainingColumn(), console=err, disable=as_json, transient=True,
            ) as progress:
                task = progress.add_task("seed", total=windows)
                report = await seed_history(pool, sim, windows, now,
                                            progress=lambda done, _r: progress.update(task, completed=done))
            if not as_json:
                elapsed = time.perf_counter() - started
                out.print(
                    f"Wrote {report.windows_written} window(s) ({report.trajectories:,} trajectories, "
                    f"{report.llm_calls:,} LLM calls, {report.market_outcomes:,} market outcomes) "
                    f"from {report.first_window} to {report.last_window} in {elapsed:.1f} s; "
                    f"{report.windows_skipped} already present.", soft_wrap=True,
                )
            live_written: list[str] = []
            if live:
                # the same market as the demo console's: the driven agents call a gateway started
                # here, as the game's agents would, and it serves them the live model or the candidate
                market = LiveMarket(pool, target.dsn, settings, sim, seconds_per_window, policy_agents,
                                    on_warning=lambda m: err.print(f"[yellow]warning:[/] {m}", soft_wrap=True))

                def announce(served: GatewayAgents) -> None:
                    if not as_json:
                        out.print(f"Live market: one simulated hour every {seconds_per_window:g} s "
                                  f"(Ctrl-C to stop); {policy_agents} agent(s) call the gateway at "
                                  f"{served.server.base_url} for {served.alias!r}.", soft_wrap=True)

                live_written = await market.run(
                    max_windows=live_windows, on_live=announce,
                    on_window=None if as_json else lambda r: out.print(
                        f"  window {r.window_id}: {len(r.trajectories)} trajectories written"
                        + _served_note(market.gateway)),
                )
            return report, live_written
        finally:
            await pool.close()

    report, live_written = run_command(body)
    if as_json:
        print_json({
            "seed": seed, "agents": agents, "steps": steps, "namespace": sim.namespace,
            "windows_written": report.windows_written, "windows_skipped": report.windows_skipped,
            "trajectories": report.trajectories, "llm_calls": report.llm_calls,
            "market_outcomes": report.market_outcomes, "first_window": report.first_window,
            "last_window": report.last_window, "live_windows": live_written,
        })


def _served_note(served: GatewayAgents) -> str:
    roles = [f"{s.role} {s.model_id} ({s.share:.0%})" for s in served.served]
    return f"; serving {', '.join(roles)}" if roles else ""

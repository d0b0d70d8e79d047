"""`babylon-console windows`: the readiness table and a verdict (the seed's check_windows)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated

import asyncpg
import typer
from rich.table import Table

from ..cli import app, load_settings, out, print_json, run_with_pool
from ..core import simclock
from ..core.backends.factory import training_key
from ..core.repository import GameStore
from ..core.windows import ReadinessCriteria, WindowReadiness, WindowState

_STATE_STYLE = {
    WindowState.READY: "bold green",
    WindowState.OPEN: "cyan",
    WindowState.SETTLING: "cyan",
    WindowState.TRAINED: "dim",
    WindowState.TOO_FEW_AGENTS: "yellow",
    WindowState.UNUSABLE: "red",
    WindowState.INVALID: "red",
}


def _pnl(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f}"


def verdict(windows: list[WindowReadiness], criteria: ReadinessCriteria) -> str:
    ready = [w for w in windows if w.ready]
    rule = (
        f"min {criteria.min_agents} agents with >= {criteria.min_steps} step(s), "
        f"settle {criteria.settle_seconds}s"
    )
    if not windows:
        return f"No windows with trajectories in range ({rule})."
    if ready:
        return f"{len(ready)} of {len(windows)} windows ready for training ({rule})."
    counts = ", ".join(f"{n} {state.value}" for state, n in Counter(w.state for w in windows).most_common())
    return f"No window ready of {len(windows)} ({rule}): {counts}."


def readiness_table(windows: list[WindowReadiness]) -> Table:
    table = Table(title_justify="left", header_style="bold")
    for col, justify in (
        ("window (UTC)", "left"),
        ("state", "left"),
        ("agents", "right"),
        ("traj", "right"),
        ("steps", "right"),
        ("P&L min / avg / max", "right"),
        ("outcomes", "right"),
        ("why not", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "why not")  # type: ignore[arg-type]
    for w in windows:
        table.add_row(
            w.window_id,
            f"[{_STATE_STYLE[w.state]}]{w.state.value}[/]",
            f"{w.qualified_agents}/{w.agents}",
            str(w.trajectories),
            f"{w.steps:,}",
            f"{_pnl(w.pnl_min)} / {_pnl(w.pnl_avg)} / {_pnl(w.pnl_max)}",
            f"{w.stock_outcomes}s {w.prediction_outcomes}p" if w.outcomes_present else "[yellow]none[/]",
            "; ".join([*w.reasons, *(f"[yellow]{x}[/]" for x in w.warnings)]),
        )
    return table


@app.command("windows")
def windows_command(
    min_agents: Annotated[int | None, typer.Option(help="Distinct agents a window needs.", min=1)] = None,
    min_steps: Annotated[int | None, typer.Option(help="Steps each of those agents needs.", min=1)] = None,
    lookback_hours: Annotated[int | None, typer.Option(help="How far back to look (hours).", min=1)] = None,
    settle_seconds: Annotated[
        int | None, typer.Option(help="Delay after a window ends before it counts as closed.", min=0)
    ] = None,
    all_windows: Annotated[bool, typer.Option("--all", help="Every window, ignoring the lookback.")] = False,
    ready_only: Annotated[bool, typer.Option("--ready", help="Only list ready windows.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Readiness of every window: agents, trajectories, steps, P&L, outcomes, and why not ready."""
    settings = load_settings(
        min_agents=min_agents,
        min_steps=min_steps,
        lookback_hours=lookback_hours,
        settle_seconds=settle_seconds,
    )
    criteria = ReadinessCriteria(
        min_agents=settings.min_agents, min_steps=settings.min_steps, settle_seconds=settings.settle_seconds
    )

    async def body(pool: asyncpg.Pool) -> tuple[datetime, list[WindowReadiness]]:
        # While a live simulation runs, its accelerated clock decides what is open or closed.
        now = (await simclock.current_clock(pool)).now()
        return now, await GameStore(pool).window_readiness(
            criteria, now, None if all_windows else settings.lookback_hours,
            training_key(settings.backend, settings.model_name),
        )

    now, windows = run_with_pool(settings, body)
    shown = [w for w in windows if w.ready] if ready_only else windows
    line = verdict(windows, criteria)
    if as_json:
        print_json(
            {
                "now": now.isoformat(),
                "criteria": criteria.model_dump(),
                "lookback_hours": None if all_windows else settings.lookback_hours,
                "ready": sum(w.ready for w in windows),
                "total": len(windows),
                "verdict": line,
                "windows": [w.model_dump(mode="json") for w in shown],
            }
        )
        return
    if shown:
        out.print(readiness_table(shown))
    out.print(line, soft_wrap=True)

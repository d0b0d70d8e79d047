"""`babylon-console windows`: the readiness table and a verdict (the seed's check_windows)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..cli_support import load_settings, out, print_json, run_with_pool
from ..core.checkpoints.holdout import read_checked, share_of
from ..core.config import ReadinessCriteria
from ..core.game import market_clock
from ..core.game.store import GameStore
from ..core.game.windows import WindowReadiness, WindowState
from ..core.names import training_key

app = typer.Typer()  # this module's commands; cli.py mounts them when one of them is invoked

_STATE_STYLE = {
    WindowState.READY: "bold green",
    WindowState.OPEN: "cyan",
    WindowState.SETTLING: "cyan",
    WindowState.TRAINED: "dim",
    WindowState.HELD_OUT: "blue",
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


# Columns in the order shown. At a narrow width (80 columns, or a pipe) the low-value ones are left out,
# `gives_way` first to last, and a footnote names them: the window id and its state are never cut, and
# "why not" wraps.
@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    cell: Callable[[WindowReadiness], Text]
    justify: Literal["left", "right"] = "right"
    gives_way: int = 0  # 0: always shown


def _outcomes(w: WindowReadiness) -> Text:
    if not w.outcomes_present:
        return Text("none", style="yellow")
    return Text(f"{w.stock_outcomes}s {w.prediction_outcomes}p")


_COLUMNS = (
    _Column("window (UTC)", lambda w: Text(w.window_id), "left"),
    _Column("state", lambda w: Text(w.state.value, style=_STATE_STYLE[w.state]), "left"),
    _Column("agents", lambda w: Text(f"{w.qualified_agents}/{w.agents}"), gives_way=5),
    _Column("traj", lambda w: Text(str(w.trajectories)), gives_way=1),
    _Column("steps", lambda w: Text(f"{w.steps:,}"), gives_way=3),
    _Column("P&L min / avg / max", lambda w: Text(f"{_pnl(w.pnl_min)} / {_pnl(w.pnl_avg)} / {_pnl(w.pnl_max)}"),
            gives_way=2),
    _Column("outcomes", _outcomes, gives_way=4),
)
_WHY_NOT_MIN = 20  # "why not" wraps, though not to a word a line
_CELL_EXTRA = 3  # padding on each side and one border per column (plus the table's last border)


def _why_not(w: WindowReadiness) -> Text:
    return Text("; ").join([Text(r) for r in w.reasons] + [Text(x, style="yellow") for x in w.warnings])


def _fitted(windows: list[WindowReadiness], width: int) -> list[_Column]:
    """The columns that fit `width` next to the window id, its state and a readable "why not"."""
    natural = {c: max([len(c.header), *(c.cell(w).cell_len for w in windows)]) for c in _COLUMNS}
    why_not = min(_WHY_NOT_MIN, max([len("why not"), *(_why_not(w).cell_len for w in windows)]))
    shown = list(_COLUMNS)
    for column in sorted((c for c in _COLUMNS if c.gives_way), key=lambda c: c.gives_way):
        if sum(natural[c] + _CELL_EXTRA for c in shown) + why_not + _CELL_EXTRA + 1 <= width:
            break
        shown.remove(column)
    return shown


def readiness_table(windows: list[WindowReadiness], width: int | None = None) -> tuple[Table, list[str]]:
    """The table for `width` columns (None: every column) and the headers left out to fit it."""
    shown = list(_COLUMNS) if width is None else _fitted(windows, width)
    table = Table(title_justify="left", header_style="bold")
    for c in shown:
        table.add_column(c.header, justify=c.justify, no_wrap=True)
    table.add_column("why not", overflow="fold")
    for w in windows:
        table.add_row(*(c.cell(w) for c in shown), _why_not(w))
    return table, [c.header for c in _COLUMNS if c not in shown]


def print_readiness(console: Console, windows: list[WindowReadiness]) -> None:
    table, hidden = readiness_table(windows, console.width)
    console.print(table)
    if hidden:
        console.print(f"[dim]Columns not shown at this width: {', '.join(hidden)} (a wider terminal shows them; "
                      "--json has every field).[/]")


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
        min_agents=settings.min_agents, min_steps=settings.min_steps, settle_seconds=settings.settle_seconds,
    )

    async def body(pool: asyncpg.Pool) -> tuple[datetime, list[WindowReadiness]]:
        # the hold-out is the database's record (BABYLON_HOLDOUT_SHARE, if given, must agree with it)
        criteria.holdout_share = share_of(await read_checked(pool, settings.holdout_share))
        # While a live simulation runs, its accelerated clock decides what is open or closed.
        now = (await market_clock.current_clock(pool)).now()
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
        print_readiness(out, shown)
    out.print(line, soft_wrap=True)

"""`windows` at narrow or piped widths: window ids and states are never cut; other columns give way."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from datetime import timedelta

import asyncpg
import pytest
from rich.console import Console

from babylon_console.commands.windows import print_readiness
from babylon_console.core.clock import SystemClock
from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.windows import WindowReadiness, WindowState, window_id_for
from tests.factories import trajectory_row, user_row

ROWS = [
    WindowReadiness(window_id="2026-12-01T22:00", state=WindowState.TOO_FEW_AGENTS, trajectories=1_234, agents=1_200,
                    qualified_agents=1_100, steps=123_456, pnl_min=-12_345, pnl_avg=1_234, pnl_max=98_765,
                    stock_outcomes=12, prediction_outcomes=3,
                    reasons=["1100 agent(s) with >= 20 step(s), needs 2000", "settling until 23:05:00 UTC"],
                    warnings=["7 row(s) with out-of-range numbers left out of the figures"]),
    WindowReadiness(window_id="2026-12-01T23:00", state=WindowState.TRAINED, trajectories=12, agents=12,
                    qualified_agents=12, steps=240, pnl_min=-5, pnl_avg=0, pnl_max=7,
                    reasons=["already trained on"]),
    WindowReadiness(window_id="2026-12-02T00:00", state=WindowState.SETTLING, reasons=["settling until 01:05:00 UTC"]),
    WindowReadiness(window_id="not-an-hour", state=WindowState.INVALID, reasons=["does not parse"]),
]


def render(width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    print_readiness(console, ROWS)
    return console.export_text()


def assert_intact(text: str, ids_and_states: list[tuple[str, str]]) -> None:
    """Each window id appears whole, with its whole state on the same line."""
    lines = text.splitlines()
    for window_id, state in ids_and_states:
        row = next((line for line in lines if window_id in line), None)
        assert row is not None, f"{window_id} cut:\n{text}"
        assert state in row, f"state of {window_id} cut:\n{text}"


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_ids_and_states_are_never_cut(width: int) -> None:
    text = render(width)
    assert_intact(text, [(w.window_id, w.state.value) for w in ROWS])
    assert all(len(line) <= width for line in text.splitlines()), text


def test_columns_left_out_at_narrow_widths_are_named() -> None:
    narrow, wide = render(60), render(200)
    assert "P&L" in wide and "not shown at this width" not in wide
    assert "not shown at this width" in narrow and "--json" in narrow


async def test_piped_output_keeps_ids_and_states(pool: asyncpg.Pool, database_url: str) -> None:
    now = SystemClock().now()
    windows = [window_id_for(now - timedelta(hours=h)) for h in (0, 3)]
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row(f"w{i}") for i in range(3)])
        await copy_rows(conn, "trajectories", [trajectory_row(w, f"w{i}", steps=4) for w in windows for i in range(3)])
    for columns in ("80", None):  # COLUMNS=80, and a pipe with no terminal at all (rich falls back to 80)
        env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", **({"COLUMNS": columns} if columns else {})}
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "babylon_console", "windows", "--all", "--min-agents", "5"],
            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert_intact(result.stdout, [(windows[0], "open"), (windows[1], "too few agents")])
        table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]  # the verdict soft-wraps
        assert table and all(len(line) <= 80 for line in table) and "…" not in result.stdout, result.stdout

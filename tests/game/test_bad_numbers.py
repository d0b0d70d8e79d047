"""One absurd row never takes a read down: readiness, window reads and the engine tolerate
non-finite and absurd numbers, impossible timestamps and window ids that do not parse; such rows
are counted and reported with a reason."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.game.bounds import MAX_ABS_PNL
from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.store import GameStore
from babylon_console.core.game.windows import WindowState
from tests.factories import trajectory_row, user_row

NOW = datetime(2026, 11, 24, 12, 20)
BAD = "2026-11-24T09:00"
GOOD = "2026-11-24T10:00"
CRITERIA = ReadinessCriteria(min_agents=3, min_steps=1, settle_seconds=0)


async def _rows(pool: asyncpg.Pool) -> None:
    agents = [f"a{i}" for i in range(6)]
    rows = [trajectory_row(w, a, steps=3, pnl=float(i)) for w in (BAD, GOOD) for i, a in enumerate(agents)]
    start = datetime(2026, 11, 24, 9, 10)
    rows += [
        trajectory_row(BAD, "a0", pnl=1e300),  # squares of it overflow PostgreSQL's float8 avg
        trajectory_row(BAD, "a1", pnl=float("nan")),
        trajectory_row(BAD, "a2", pnl=float("-inf")),
        trajectory_row(BAD, "a2", total_reward=1e300),  # not in the readiness figures; rejected when read
        trajectory_row(BAD, "a3", episodeLength=2_000_000_000),
        trajectory_row(BAD, "a4", startTime=start, endTime=start - timedelta(hours=5)),
        trajectory_row(BAD, "a5", durationMs=-5),
        trajectory_row(GOOD, "a0", windowId="garbage-window"),
    ]
    async with pool.acquire() as conn:
        await copy_rows(conn, "User", [user_row(a) for a in agents])
        await copy_rows(conn, "trajectories", rows)


async def test_readiness_survives_absurd_numbers_and_reports_them(pool: asyncpg.Pool) -> None:
    await _rows(pool)
    readiness = {w.window_id: w for w in await GameStore(pool).window_readiness(CRITERIA, NOW, None)}
    bad, good = readiness[BAD], readiness[GOOD]
    assert good.ready and good.suspect_rows == 0 and good.pnl_max == 5.0
    assert bad.ready  # the window is still usable: its sane rows are
    assert bad.suspect_rows == 4  # 1e300, NaN, -inf P&L and an episode length no hour allows
    assert bad.pnl_max == 10.0 and bad.pnl_min == 0.0  # figures from the sane P&L values only
    assert any("out-of-range numbers" in w for w in bad.warnings)
    assert readiness["garbage-window"].state is WindowState.INVALID


async def test_window_reads_reject_absurd_rows_with_reasons(pool: asyncpg.Pool) -> None:
    await _rows(pool)
    data = await GameStore(pool).window_trajectories(BAD)
    assert len(data.trajectories) == 6
    reasons = sorted(r.reason for r in data.rejections)
    assert len(reasons) == 7, reasons
    for needle in ("finalPnL", "not a finite number", "totalReward", "episodeLength", "endTime", "durationMs"):
        assert any(needle in r for r in reasons), (needle, reasons)
    assert any(f"{MAX_ABS_PNL:g}" in r for r in reasons)


async def test_windows_command_and_engine_read_past_bad_rows(pool: asyncpg.Pool, database_url: str) -> None:
    import asyncio
    from pathlib import Path

    import orjson
    from typer.testing import CliRunner

    from babylon_console.cli import app
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig

    await _rows(pool)
    await pool.execute("INSERT INTO console_window_verdicts (window_id, model_name, verdict, reason) VALUES "
                       "($1, 'offline:babylon-agent', 'unusable', 'none of 4 recorded calls is trainable')", GOOD)
    env = {"DATABASE_URL": database_url, "BABYLON_SETTLE_SECONDS": "0", "BABYLON_MIN_AGENTS": "3"}
    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, app, ["windows", "--all", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    states = {w["window_id"]: w for w in orjson.loads(shown.output)["windows"]}
    assert states[GOOD]["state"] == "unusable" and states[BAD]["suspect_rows"] == 4
    table = await asyncio.to_thread(runner.invoke, app, ["windows", "--all"], env=env)
    assert table.exit_code == 0 and "unusable" in table.output

    class Clock:
        def now(self) -> datetime:
            return NOW

    config = EngineConfig(iterations=1, min_agents=3, min_steps=1, settle_seconds=0, lookback_hours=48)
    summary = await Engine(pool, config, settings=Settings(BABYLON_DATA_DIR=str(Path.cwd() / "data")),  # type: ignore[call-arg]
                           clock=Clock()).run()
    # Read, grouped and judged past the bad rows; the hand-made prompts are not simulator prompts,
    # so the offline stand-in then trains nothing and says so (test_empty_steps.py covers that).
    assert summary.state.value == "stopped" and summary.windows_failed == [BAD], summary
    warning = await pool.fetchval("SELECT payload->>'message' FROM console_events WHERE kind = 'warning' "
                                  "AND payload->>'message' LIKE '%unusable trajectories%'")
    assert "7 unusable trajectories skipped" in warning

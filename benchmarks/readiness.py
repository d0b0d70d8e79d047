"""Readiness and window-read benchmark (issue: foundation).

Builds 1,000,000 trajectories in 20,000 hourly windows with COPY (kept between runs; pass --rebuild
to start over), then prints p50/p95 of
  - the `windows` query for the last 7 days,
  - a full-table readiness query,
  - a naive GROUP BY "windowId" over the whole table, and the ratios against it;
and p50/p95 of reading + parsing one window of 64 trajectories x 20 steps (goal p50 <= 50 ms).

Run: .venv/bin/python benchmarks/readiness.py [--rebuild] [--trajectories N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.config import ReadinessCriteria
from babylon_console.core.game.bulk import copy_rows
from babylon_console.core.game.parsing import parse_rows
from babylon_console.core.game.schema import TRAJECTORY_COLUMNS, USER_COLUMNS
from babylon_console.core.game.store import GameStore
from babylon_console.core.game.windows import lookback_start_id, window_id_for
from benchmarks._common import bench_database, fmt, p50, timed

WINDOWS = 20_000
AGENTS = 200
FIRST_WINDOW = datetime(2024, 8, 1)
PARSE_WINDOW = "2020-01-01T00:00"  # outside the 7-day range

NAIVE_SQL = """
SELECT "windowId", count(*), count(DISTINCT "agentId"), sum("episodeLength"),
       min("finalPnL"), avg("finalPnL"), max("finalPnL")
FROM trajectories GROUP BY "windowId"
"""


def _row(i: int, window_index: int, agent: int, steps_json: str, steps: int) -> tuple:
    start = FIRST_WINDOW + timedelta(hours=window_index, minutes=agent % 50)
    values = {
        "id": f"b{i}",
        "trajectoryId": f"bt{i}",
        "agentId": f"agent-{agent}",
        "startTime": start,
        "endTime": start + timedelta(minutes=5),
        "durationMs": 300_000,
        "windowId": window_id_for(FIRST_WINDOW + timedelta(hours=window_index)),
        "windowHours": 1,
        "episodeId": f"e{i}",
        "scenarioId": None,
        "batchId": None,
        "stepsJson": steps_json,
        "rewardComponentsJson": "{}",
        "metricsJson": "{}",
        "metadataJson": "{}",
        "totalReward": 0.5,
        "episodeLength": steps,
        "finalStatus": "completed",
        "finalBalance": 1000.0,
        "finalPnL": float((i * 7919) % 200 - 100),
        "tradesExecuted": 3,
        "postsCreated": 0,
        "isTrainingData": True,
        "isEvaluation": False,
        "usedInTraining": False,
        "createdAt": start,
        "updatedAt": start,
    }
    return tuple(values[c] for c in TRAJECTORY_COLUMNS)


async def build(url: str, total: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        now = datetime(2026, 1, 1)
        await copy_rows(
            conn,
            "User",
            [(f"agent-{a}", f"agent-{a}", f"Agent {a}", True, now, now) for a in range(AGENTS)],
            USER_COLUMNS,
        )
        per_window = total // WINDOWS
        steps_json = '[{"stepNumber":0,"reward":0.1}]'
        started = time.perf_counter()
        chunk: list[tuple] = []
        i = 0
        for w in range(WINDOWS):
            for k in range(per_window):
                chunk.append(_row(i, w, (w * 7 + k) % AGENTS, steps_json, 10 + k % 15))
                i += 1
            if len(chunk) >= 50_000:
                await copy_rows(conn, "trajectories", chunk)
                chunk.clear()
                print(f"\r  copied {i:,} / {total:,} trajectories", end="", flush=True)
        await copy_rows(conn, "trajectories", chunk)
        elapsed = time.perf_counter() - started
        print(f"\r  copied {i:,} trajectories in {elapsed:.1f} s ({i / elapsed:,.0f} rows/s)")
        print("  VACUUM ANALYZE (so the planner can use index-only scans) ...")
        await conn.execute("VACUUM ANALYZE trajectories")
        await conn.execute("VACUUM ANALYZE market_outcomes")
    finally:
        await conn.close()


def _parse_window_rows(n_traj: int = 64, n_steps: int = 20) -> list[tuple]:
    prompt = "MARKET STATE " + "AAPL 187.2 +0.4% | TSLA 241.0 -1.2% | " * 12
    steps = [
        {
            "stepNumber": s,
            "timestamp": 1_900_000_000_000 + s * 1000,
            "environmentState": {
                "agentBalance": 1000.0,
                "agentPnL": 3.2,
                "openPositions": 2,
                "activeMarkets": 9,
            },
            "providerAccesses": [
                {"providerName": "BABYLON_MARKETS", "data": {"AAPL": 187.2}, "purpose": "prices"}
            ],
            "llmCalls": [
                {
                    "model": "agent",
                    "systemPrompt": "You are a trader. " * 20,
                    "userPrompt": prompt,
                    "response": '{"action":{"actionType":"OPEN_LONG","parameters":{"ticker":"AAPL"}}}',
                    "reasoning": "momentum",
                    "temperature": 0.8,
                    "maxTokens": 200,
                    "latencyMs": 300,
                    "purpose": "action",
                    "actionType": "OPEN_LONG",
                }
            ],
            "action": {
                "actionType": "OPEN_LONG",
                "parameters": {"ticker": "AAPL", "size": 100},
                "success": True,
                "result": {"filled": 100},
                "error": None,
                "reasoning": "momentum",
            },
            "reward": 0.01,
        }
        for s in range(n_steps)
    ]
    steps_json = orjson.dumps(steps).decode()
    rows = []
    for t in range(n_traj):
        row = list(_row(10_000_000 + t, 0, t % AGENTS, steps_json, n_steps))
        row[TRAJECTORY_COLUMNS.index("windowId")] = PARSE_WINDOW
        rows.append(tuple(row))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the benchmark database")
    parser.add_argument("--trajectories", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    url = await bench_database("bc_bench_readiness", fresh=args.rebuild)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    count = await pool.fetchval('SELECT count(*) FROM trajectories WHERE "windowId" <> $1', PARSE_WINDOW)
    if count < args.trajectories:
        if count:
            await pool.close()
            url = await bench_database("bc_bench_readiness", fresh=True)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            assert pool is not None
        print(f"Building {args.trajectories:,} trajectories in {WINDOWS:,} windows with COPY ...")
        await build(url, args.trajectories)
        async with pool.acquire() as conn:
            await copy_rows(conn, "trajectories", _parse_window_rows())
            await conn.execute("ANALYZE trajectories")
    total = await pool.fetchval("SELECT count(*) FROM trajectories")
    windows = await pool.fetchval('SELECT count(DISTINCT "windowId") FROM trajectories')
    print(f"Table: {total:,} trajectories in {windows:,} windows\n")

    store = GameStore(pool)
    criteria = ReadinessCriteria(min_agents=5, min_steps=5)
    last = FIRST_WINDOW + timedelta(hours=WINDOWS)
    since_7d = lookback_start_id(last, 7 * 24)

    recent = await timed(lambda: store.window_figures(since_7d, criteria.min_steps), args.repeat)
    full = await timed(lambda: store.window_figures("", criteria.min_steps), max(5, args.repeat // 3))
    naive = await timed(lambda: pool.fetch(NAIVE_SQL), max(5, args.repeat // 3))
    n_recent = len(await store.window_figures(since_7d, criteria.min_steps))

    print(fmt(f"windows query, last 7 days ({n_recent} windows)", recent))
    print(fmt("full-table readiness query", full))
    print(fmt('naive GROUP BY "windowId" (whole table)', naive))
    print(f"ratio naive / 7-day query:   {p50(naive) / p50(recent):8.1f}x")
    print(f"ratio naive / full readiness: {p50(naive) / p50(full):7.2f}x")
    goal = "met" if p50(recent) <= 100 else "NOT met"
    print(f"goal windows query p50 <= 100 ms: {goal}\n")

    rows = await pool.fetch(
        f"SELECT {', '.join(chr(34) + c + chr(34) for c in TRAJECTORY_COLUMNS)} FROM trajectories "
        'WHERE "windowId" = $1',
        PARSE_WINDOW,
    )
    read_parse = await timed(lambda: store.window_trajectories(PARSE_WINDOW), args.repeat)

    async def parse_only() -> None:
        parse_rows(rows)

    parse = await timed(parse_only, args.repeat)
    result = await store.window_trajectories(PARSE_WINDOW)
    assert len(result.trajectories) == 64 and not result.rejections, result.rejections[:1]
    print(fmt("read + parse one window (64 x 20 steps)", read_parse))
    print(fmt("parse only, same rows", parse))
    goal = "met" if p50(read_parse) <= 50 else "NOT met"
    print(f"goal read+parse p50 <= 50 ms: {goal}")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Faults benchmark: a long training run through kill -9s, database restarts and a flaky judge.

On an embedded server of its own, with N seeded windows, engine processes (`--worker`) train one
window per iteration with the `outcome` judge failing 30% of its calls. Meanwhile the controller
kills the engine with SIGKILL at random moments (20 times by default) and restarts the database
twice, then lets a last engine finish and stops it with SIGTERM. Printed:

- batches completed / failed; windows trained once / twice / never (ready windows left untrained);
- checkpoints lost (a completed batch without its `trained_models` row, or a row without one);
- recovery time after each fault: kill -9 -> a new engine at work again (past its repairs);
  database back -> the engine resumed (its "database was unreachable" event). p50 and max.
Goal: 0 lost, 0 trained twice, 0 never-trained ready windows; recovery <= 5 s after the database
is back.

Run: .venv/bin/python benchmarks/faults.py [--windows 40] [--kills 20] [--restarts 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.db.embedded import start_embedded_again, start_embedded_server, stop_embedded_now
from benchmarks._common import BENCH_DATA, bench_database

NOW = datetime(2026, 6, 1, 12, 30)
STATE = BENCH_DATA / "faults"


class Clock:
    def now(self) -> datetime:
        return NOW


# -- the engine process ------------------------------------------------------------------------


async def worker(dsn: str, data_dir: Path, seed: int) -> None:
    from babylon_console.core.config import Settings
    from babylon_console.core.engine.loop import Engine
    from babylon_console.core.engine.run_config import EngineConfig
    from babylon_console.core.training.judges import JudgeError, OutcomeJudge

    class FlakyJudge(OutcomeJudge):
        """The outcome judge, failing 30% of its calls (a judge service that errors)."""

        rng = random.Random(seed)

        async def judge(self, item: Any) -> Any:
            if self.rng.random() < 0.3:
                raise JudgeError(item.window_id, "the judge failed (injected, 30% of calls)")
            return await super().judge(item)

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
    settings = Settings(BABYLON_DATA_DIR=str(data_dir))  # type: ignore[call-arg]
    config = EngineConfig(iterations=None, windows_per_iteration=1, min_agents=3, min_steps=1, settle_seconds=0,
                          lookback_hours=24 * 30, poll_seconds=0.2, heartbeat_s=0.5)
    engine = Engine(pool, config, settings=settings, clock=Clock(), judge=FlakyJudge())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, engine.stop)
    await engine.run()
    await pool.close()


# -- the controller ----------------------------------------------------------------------------


async def _query(dsn: str, sql: str, *args: Any) -> Any:
    """One query on a fresh connection (the database may have been restarted in between)."""
    for _ in range(100):
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    raise RuntimeError("the database did not come back")


async def _at_work_since(dsn: str, after: float, limit_s: float = 60) -> float | None:
    """Seconds until some engine run is past start-up and repairs (a stage beyond 'starting'),
    beating after `after` (a time.time())."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rows = await _query(dsn, "SELECT extract(epoch FROM heartbeat_at) AS beat, stage FROM console_runs "
                                 "WHERE state = 'running' ORDER BY started_at DESC LIMIT 1")
        if rows and rows[0]["stage"] not in (None, "starting") and float(rows[0]["beat"]) > after:
            return time.time() - after
        await asyncio.sleep(0.1)
    return None


def _spawn(dsn: str, data_dir: Path, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--worker", "--dsn", dsn, "--data-dir", str(data_dir),
                             "--seed", str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _p(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    from babylon_console.core.sim.simulation import Simulation
    from babylon_console.core.simgame.seeding import seed_history

    shutil.rmtree(STATE, ignore_errors=True)
    pgdata, data_dir = STATE / "pgdata", STATE / "data"
    url = start_embedded_server(pgdata)
    dsn = await bench_database("faults", fresh=True, server=url)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await seed_history(pool, Simulation(seed=args.seed, n_agents=6, steps_per_window=4), args.windows, now=NOW)
    await pool.close()
    started = time.monotonic()

    kill_recovery: list[float] = []
    db_recovery: list[float] = []
    restart_after = sorted(rng.sample(range(2, max(3, args.kills)), min(args.restarts, max(0, args.kills - 2))))
    proc = _spawn(dsn, data_dir, rng.randrange(10**6))
    for k in range(args.kills):
        if k in restart_after:  # a database restart while an engine works
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            stop_embedded_now(pgdata)
            await asyncio.sleep(1.5)
            start_embedded_again(pgdata, url)
            back = time.time()
            resumed = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and resumed is None:
                rows = await _query(dsn, "SELECT extract(epoch FROM created_at) AS at FROM console_events WHERE "
                                         "payload->>'message' LIKE 'database was unreachable%' AND "
                                         "extract(epoch FROM created_at) > $1", back - 1)
                resumed = float(rows[0]["at"]) - back if rows else None
                await asyncio.sleep(0.1)
            db_recovery.append(max(0.0, resumed) if resumed is not None else float("inf"))
            print(f"  restart: database down 1.5 s; engine resumed {db_recovery[-1]:.2f} s after it was back")
        await asyncio.sleep(rng.uniform(1.0, 8.0))  # a random moment: start-up, judging, training, registering
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = time.time()
        proc = _spawn(dsn, data_dir, rng.randrange(10**6))
        recovery = await _at_work_since(dsn, killed)
        kill_recovery.append(recovery if recovery is not None else float("inf"))
        print(f"  kill {k + 1:2d}/{args.kills}: a new engine at work {kill_recovery[-1]:.2f} s after the kill")

    # Let the last engine finish every window it can (judging failures are retried), then stop it.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        rows = await _query(dsn, "SELECT count(*) AS n FROM console_trained_windows")
        if rows[0]["n"] >= args.windows:
            break
        await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    elapsed = time.monotonic() - started

    batches = await _query(dsn, "SELECT status, count(*) AS n FROM training_batches GROUP BY status")
    by_status = {r["status"]: r["n"] for r in batches}
    trained = await _query(dsn, "SELECT window_id FROM console_trained_windows")
    per_batch = await _query(dsn, "SELECT b.\"batchId\", b.status, m.\"modelId\" FROM training_batches b "
                                  "FULL JOIN trained_models m ON m.\"trainingBatch\" = b.\"batchId\"")
    # A window trained twice would need two completed batches holding it.
    holders = await _query(dsn, "SELECT \"scenarioId\" AS windows FROM training_batches WHERE status = 'completed'")
    counts: dict[str, int] = {}
    for row in holders:
        for w in (row["windows"] or "").split(","):
            counts[w] = counts.get(w, 0) + 1
    windows = {r["window_id"] for r in trained}
    lost = [r for r in per_batch if (r["status"] == "completed") != (r["modelId"] is not None)]
    never = args.windows - len(windows)
    twice = sum(1 for n in counts.values() if n > 1)
    stuck = by_status.get("training", 0) + by_status.get("pending", 0)
    stopped_engines = await _query(dsn, "SELECT count(*) AS n FROM console_runs")

    print(f"\n{args.windows} windows, {args.kills} kill -9s, {args.restarts} database restarts, judge failing 30%, "
          f"{stopped_engines[0]['n']} engine runs, {elapsed:.0f} s")
    print(f"batches: completed {by_status.get('completed', 0)}, failed {by_status.get('failed', 0)}, "
          f"left training/pending {stuck}")
    print(f"windows: trained once {len(windows) - twice}, twice {twice}, never {never}")
    print(f"checkpoints lost: {len(lost)}")
    print(f"recovery after kill -9 (kill -> new engine at work, start-up included): {_p(kill_recovery)}")
    print(f"recovery after a database restart (database back -> engine resumed): {_p(db_recovery)}")
    ok = not lost and twice == 0 and never == 0 and stuck == 0 and all(r <= 5.0 for r in db_recovery)
    print(f"RESULT: {'goals met' if ok else 'goals NOT met'} (0 lost, 0 twice, 0 never, recovery <= 5 s after "
          "the database is back)")
    stop_embedded_now(pgdata)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--worker", action="store_true")
        parser.add_argument("--dsn", required=True)
        parser.add_argument("--data-dir", type=Path, required=True)
        parser.add_argument("--seed", type=int, default=0)
        a = parser.parse_args()
        asyncio.run(worker(a.dsn, a.data_dir, a.seed))
    else:
        asyncio.run(main())

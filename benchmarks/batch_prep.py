"""Batch preparation benchmark (issue: engine).

From the database to ART groups: for each window, fetch its trajectories, parse them leniently,
pick one per agent, build the training messages and the `art.TrajectoryGroup`. Prints
trajectory-steps per second (goal >= 20,000) and the ratio to plain JSON parsing (orjson.loads)
of the same `stepsJson` bytes.

Run: .venv/bin/python benchmarks/batch_prep.py [--windows 24] [--agents 32] [--steps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.groups import build_window_group
from babylon_console.core.repository import GameStore
from babylon_console.core.seeding import seed_history
from babylon_console.core.sim.simulation import Simulation
from benchmarks._common import bench_database


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import art  # noqa: F401 - imported once up front so its ~3 s start-up is not counted as preparation

    url = await bench_database("bc_bench_batch", fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    sim = Simulation(seed=3, n_agents=args.agents, steps_per_window=args.steps)
    await seed_history(pool, sim, args.windows, now=datetime(2026, 1, 2))
    windows = [r[0] for r in await pool.fetch('SELECT DISTINCT "windowId" FROM trajectories ORDER BY 1')]
    store = GameStore(pool)

    async def prepare() -> int:
        steps = 0
        for window in windows:
            data = await store.window_trajectories(window)
            group = build_window_group(window, data.trajectories, max_per_group=args.agents, dropout=0.0, seed=0)
            group.rewards = [0.5] * len(group.trajectories)
            group.to_art()
            steps += sum(len(t.steps) for t in data.trajectories)
        return steps

    await prepare()  # warm-up
    best_prep = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        steps = await prepare()
        best_prep = min(best_prep, time.perf_counter() - started)

    blobs = [r[0] for r in await pool.fetch('SELECT "stepsJson" FROM trajectories')]
    best_json = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for blob in blobs:
            orjson.loads(blob)
        best_json = min(best_json, time.perf_counter() - started)
    await pool.close()

    rate = steps / best_prep
    print(f"{len(windows)} windows, {len(blobs):,} trajectories, {steps:,} trajectory-steps "
          f"({sum(map(len, blobs)) / 1e6:.0f} MB of stepsJson)")
    print(f"database -> ART groups: {best_prep * 1000:8.0f} ms = {rate:10,.0f} trajectory-steps/s "
          f"(goal >= 20,000: {'met' if rate >= 20_000 else 'NOT met'})")
    print(f"orjson.loads only:      {best_json * 1000:8.0f} ms = {steps / best_json:10,.0f} trajectory-steps/s")
    print(f"ratio preparation / plain JSON parsing time: {best_prep / best_json:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

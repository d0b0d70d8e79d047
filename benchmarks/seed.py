"""Seeding throughput benchmark (issue: simulator).

Writes 100,000 simulated trajectories of 20 steps, with their LLM call logs and market outcomes,
into a fresh database on the embedded server, exactly as `babylon-console seed` does (one
transaction and COPY per window), and prints trajectories per second. Generation is split across
worker processes by agent (each worker owns a slice of the population and its own connection);
every worker simulates the same seeded market, so the rows are those of a single-process run.
Then it measures row-by-row INSERT of a sample of the same rows and prints the ratio.

Run: .venv/bin/python benchmarks/seed.py [--trajectories 100000] [--agents 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.game.bulk import copy_rows, insert_rows
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import ensure_agents, prepare_bulk_session
from benchmarks._common import bench_database

START = datetime(2025, 6, 1)
SEED = 7


def _worker(url: str, agents: list[int], windows: int, n_agents: int, steps: int, write_outcomes: bool,
            record_messages: bool, out: mp.Queue) -> None:
    async def run() -> tuple[int, int, float]:
        sim = Simulation(seed=SEED, n_agents=n_agents, steps_per_window=steps, record_messages=record_messages)
        conn = await asyncpg.connect(url)
        await prepare_bulk_session(conn)
        n_traj = n_calls = 0
        started = time.perf_counter()
        try:
            for w in range(windows):
                result = sim.simulate_window(START + timedelta(hours=w), agents=agents)
                async with conn.transaction():
                    await copy_rows(conn, "trajectories", result.trajectories)
                    await copy_rows(conn, "llm_call_logs", result.llm_calls)
                    if write_outcomes:
                        await copy_rows(conn, "market_outcomes", result.market_outcomes)
                n_traj += len(result.trajectories)
                n_calls += len(result.llm_calls)
                out.put(("progress", len(result.trajectories)))
        finally:
            await conn.close()
        return n_traj, n_calls, time.perf_counter() - started

    out.put(("done", asyncio.run(run())))


async def row_by_row_sample(url: str, n_agents: int, steps: int, sample: int, record_messages: bool) -> float:
    """Trajectories per second with plain INSERTs (executemany) of a sample window's rows."""
    sim = Simulation(seed=SEED + 1, n_agents=sample, steps_per_window=steps, namespace="insert-sample",
                     record_messages=record_messages)
    conn = await asyncpg.connect(url)
    try:
        await ensure_agents(conn, sim)
        result = sim.simulate_window(START + timedelta(days=400))
        started = time.perf_counter()
        async with conn.transaction():
            await insert_rows(conn, "trajectories", result.trajectories)
            await insert_rows(conn, "llm_call_logs", result.llm_calls)
            await insert_rows(conn, "market_outcomes", result.market_outcomes)
        return len(result.trajectories) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=1000, help="agents per window (trajectories per window)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=300, help="trajectories in the row-by-row INSERT sample")
    parser.add_argument("--no-messages", action="store_true",
                        help="leave llm_call_logs.messagesJson empty (the game may)")
    args = parser.parse_args()

    windows = max(1, args.trajectories // args.agents)
    url = await bench_database("bc_bench_seed", fresh=True)
    sim = Simulation(seed=SEED, n_agents=args.agents, steps_per_window=args.steps)
    conn = await asyncpg.connect(url)
    await ensure_agents(conn, sim)
    await conn.close()
    slices = [list(range(i, args.agents, args.workers)) for i in range(args.workers)]
    queue: mp.Queue = mp.Queue()
    ctx = mp.get_context("fork")
    print(f"Seeding {windows * args.agents:,} trajectories x {args.steps} steps ({windows} windows x "
          f"{args.agents} agents) with {args.workers} worker process(es), COPY per window ...")
    started = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(url, s, windows, args.agents, args.steps, i == 0,
                                               not args.no_messages, queue)) for i, s in enumerate(slices)]
    for p in procs:
        p.start()
    done, written, results = 0, 0, []
    total = windows * args.agents
    while done < len(procs):
        kind, value = await asyncio.to_thread(queue.get)
        if kind == "progress":
            written += value
            elapsed = time.perf_counter() - started
            print(f"\r  {written:,} / {total:,} trajectories  {written / elapsed:,.0f}/s", end="", flush=True)
        else:
            done += 1
            results.append(value)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    n_traj = sum(r[0] for r in results)
    n_calls = sum(r[1] for r in results)
    check = await asyncpg.connect(url)
    in_db = await check.fetchval("SELECT count(*) FROM trajectories")
    calls_db = await check.fetchval("SELECT count(*) FROM llm_call_logs")
    size = await check.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    await check.close()
    assert in_db == n_traj and calls_db == n_calls, (in_db, n_traj, calls_db, n_calls)
    print(f"\nCOPY:    {n_traj:,} trajectories, {n_calls:,} LLM call logs in {elapsed:.1f} s "
          f"= {n_traj / elapsed:,.0f} trajectories/s ({size} on disk)")
    projected = 100_000 / (n_traj / elapsed)
    goal = "met" if projected <= 60 else "NOT met"
    print(f"goal 100,000 trajectories in <= 60 s: {goal} ({projected:.1f} s at this rate)")
    insert_rate = await row_by_row_sample(url, args.agents, args.steps, args.sample, not args.no_messages)
    print(f"INSERT:  row by row (executemany), sample of {args.sample}: {insert_rate:,.0f} trajectories/s")
    print(f"ratio COPY / row-by-row INSERT: {n_traj / elapsed / insert_rate:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

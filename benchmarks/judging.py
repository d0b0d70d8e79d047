"""Judging throughput: RulerJudge over many windows at bounded concurrency (issue: judges).

Starts the fake OpenAI-compatible judge (tests/fake_openai.py) on 127.0.0.1 with a fixed latency L,
builds W simulated windows of G trajectories each, and judges them all with `judge_windows` and the
real RULER path (ART + litellm) at several concurrencies. For each it prints the wall time, the bound
1.2 x L x ceil(W / c), whether the bound is met, the peak number of judge requests in flight, and the
speed-up of each concurrency over the sequential run (c = 1). The offline outcome judge is timed on
the same windows for reference.

Run: .venv/bin/python benchmarks/judging.py [--windows 24] [--group 8] [--latency 0.2] [--concurrency 1 4 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the remote price list
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.game.parsing import parse_rows
from babylon_console.core.game.rows import MarketOutcome, WindowGroundTruth
from babylon_console.core.game.schema import MARKET_OUTCOME_COLUMNS, TRAJECTORY_COLUMNS
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.training.groups import build_window_group
from babylon_console.core.training.judges import JudgeError, JudgeInput, OutcomeJudge, RulerJudge, judge_windows
from tests.fake_openai import FakeOpenAI

_TRAJECTORY_ID = re.compile(r'<trajectory id="(\d+)">')


def build_windows(n_windows: int, group: int, steps: int) -> list[JudgeInput]:
    sim = Simulation(seed=42, n_agents=group, steps_per_window=steps)
    start = datetime(2026, 1, 1)
    items = []
    for h in range(n_windows):
        res = sim.simulate_window(start + timedelta(hours=h))
        trajectories, rejected = parse_rows([dict(zip(TRAJECTORY_COLUMNS, r, strict=True)) for r in res.trajectories])
        assert not rejected, rejected
        outcomes = [
            MarketOutcome.model_validate(dict(zip(MARKET_OUTCOME_COLUMNS, r, strict=True)))
            for r in res.market_outcomes
        ]
        gt = WindowGroundTruth(
            window_id=res.window_id,
            stocks=[o for o in outcomes if o.is_stock],
            predictions=[o for o in outcomes if not o.is_stock],
        )
        window = build_window_group(res.window_id, trajectories, max_per_group=len(trajectories), dropout=0.0, seed=0)
        items.append(window.judge_input(gt))  # as the engine judges it: every call of every agent
    return items


class RulerJudgeReplies:
    """The fake judge's behaviour: wait the fixed latency, then answer like RULER (one score per
    trajectory). Counts requests in flight."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, body: dict[str, Any]) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        ids = _TRAJECTORY_ID.findall(text)
        return json.dumps({"scores": [
            {"trajectory_id": i, "explanation": f"trajectory {i}", "score": int(i) / (len(ids) + 1)} for i in ids
        ]})


class Counted:
    """Wraps a judge to count windows with the judge at once (= judge requests in flight)."""

    def __init__(self, inner: RulerJudge) -> None:
        self.inner = inner
        self.name = inner.name
        self.in_flight = 0
        self.peak = 0

    async def judge(self, item: JudgeInput) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.judge(item)
        finally:
            self.in_flight -= 1


async def serve(latency: float) -> None:
    """The fake judge in its own process (as a real judge is remote): prints its base URL, serves
    until stdin closes, then prints how many requests it answered."""
    async with FakeOpenAI(RulerJudgeReplies(latency)) as fake:
        print(fake.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(len(fake.requests), flush=True)


async def start_server(latency: float) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--latency", str(latency),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc, line.decode().strip()


async def stop_server(proc: asyncio.subprocess.Process) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    out = await proc.stdout.read()
    await proc.wait()
    return int(out.decode().split()[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--group", type=int, default=8, help="trajectories per window")
    parser.add_argument("--steps", type=int, default=8, help="steps per trajectory")
    parser.add_argument("--latency", type=float, default=0.2, help="judge latency L in seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await serve(args.latency)
        return
    levels = sorted(set(args.concurrency) | {1})

    t0 = time.perf_counter()
    items = build_windows(args.windows, args.group, args.steps)
    chars = sum(len(json.dumps(m)) for it in items for m in it.messages)
    print(f"windows: {len(items)} x {args.group} trajectories x {args.steps} steps "
          f"({chars / len(items) / 1024:.0f} KiB of messages per window), built in {time.perf_counter() - t0:.2f} s")

    proc, base_url = await start_server(args.latency)
    try:
        judge = Counted(RulerJudge("judge-bench", base_url=base_url, timeout_s=30))
        t0 = time.perf_counter()
        await judge.judge(items[0])  # warm-up: imports ART + litellm, opens the HTTP client
        print(f"warm-up (imports ART + litellm, first call): {time.perf_counter() - t0:.2f} s")
        print(f"fake judge in its own process on {base_url}, latency L = {args.latency:.3f} s\n")
        print(f"{'c':>3} {'wall s':>8} {'bound s':>8} {'met':>4} {'peak in flight':>15} {'speed-up vs c=1':>16}")
        walls: dict[int, float] = {}
        for c in levels:
            judge.peak = 0
            t0 = time.perf_counter()
            out = await judge_windows(judge, items, c)
            wall = time.perf_counter() - t0
            failed = [r for r in out if isinstance(r, JudgeError)]
            assert not failed, failed[0]
            walls[c] = wall
            bound = 1.2 * args.latency * math.ceil(len(items) / c)
            print(f"{c:>3} {wall:>8.3f} {bound:>8.3f} {'yes' if wall <= bound else 'NO':>4} {judge.peak:>15} "
                  f"{walls[1] / wall:>15.2f}x")
    finally:
        answered = await stop_server(proc)
    assert answered == 1 + len(levels) * len(items), answered
    overhead = walls[1] / len(items) - args.latency
    print(f"\nper-call overhead beyond L (from c=1): {overhead * 1000:.1f} ms; the client's share of it is CPU "
          "(litellm + openai SDK + RULER) that concurrent calls share on one event loop, so the bound "
          f"holds while c x overhead stays under ~0.2 x L = {0.2 * args.latency * 1000:.0f} ms")

    t0 = time.perf_counter()
    await judge_windows(OutcomeJudge(), items, 8)
    print(f"\noutcome judge, same {len(items)} windows: {(time.perf_counter() - t0) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())

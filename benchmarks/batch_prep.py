"""Batch preparation benchmark: database -> trainable ART groups with token ids.

For each window: fetch its trajectories, parse them leniently, pick one per agent, take every
recorded call, render each prompt with the chat template and tokenize prompts and responses, and
build the `art.TrajectoryGroup` of tokenized `Choice`s. Printed, measured in one run:

- trajectory-steps/s and tokens/s of that whole path;
- the tokenizer's own batch encoding of the same texts (every rendered prompt and response, one
  `tokenizer(texts)` call per window): the limit. Goal: our total <= 1.25x the tokenizer's time;
- the time for one window of 64 trajectories x 20 calls. Goal: <= 1 s.

Tokenizer: the offline stand-in (byte-level BPE, 4,096 tokens) unless --tokenizer names another.

Run: .venv/bin/python benchmarks/batch_prep.py [--windows 12] [--agents 64] [--steps 20] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.game.store import GameStore
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.groups import build_window_group
from babylon_console.core.training.standin_tokenizer import ensure_standin_tokenizer
from babylon_console.core.training.tokenization import load_tokenizer, render_prompt
from benchmarks._common import bench_database


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokenizer", default=None, help="A tokenizer directory or Hugging Face id.")
    args = parser.parse_args()

    import gc

    import art  # noqa: F401 - imported once up front so its ~3 s start-up is not counted as preparation

    gc.freeze()  # as the engine does once ART is loaded (TrainingSession.ensure_model)

    source = args.tokenizer or str(ensure_standin_tokenizer(Path(tempfile.mkdtemp())))
    tokenizer = load_tokenizer(source)
    url = await bench_database("bc_bench_batch", fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    sim = Simulation(seed=3, n_agents=args.agents, steps_per_window=args.steps)
    await seed_history(pool, sim, args.windows, now=datetime(2026, 1, 2))
    windows = [r[0] for r in await pool.fetch('SELECT DISTINCT "windowId" FROM trajectories ORDER BY 1')]
    store = GameStore(pool)

    parts = {"read + parse": 0.0, "group + tokenize": 0.0, "ART objects": 0.0}

    async def prepare(window: str) -> tuple[int, int, int, list[str]]:
        t0 = time.perf_counter()
        data = await store.window_trajectories(window)
        t1 = time.perf_counter()
        group = build_window_group(window, data.trajectories, max_per_group=args.agents, dropout=0.0, seed=0)
        stats = group.tokenize(tokenizer)
        t2 = time.perf_counter()
        group.rewards = [i / len(group.trajectories) for i in range(len(group.trajectories))]
        group.to_art()
        t3 = time.perf_counter()
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[name] += dt
        texts = [t for calls in group.calls for c in calls for t in (c.system_prompt, c.user_prompt, c.response)]
        steps = sum(len(t.steps) for t in data.trajectories)
        return steps, stats.prompt_tokens + stats.completion_tokens, stats.trainable_calls, texts

    # The same texts the tokenizer is given by the path above: rendered prompts and responses.
    corpus: dict[str, list[str]] = {}
    for window in windows:
        *_, texts = await prepare(window)
        rendered = [render_prompt(tokenizer, texts[i], texts[i + 1]) for i in range(0, len(texts), 3)]
        corpus[window] = rendered + texts[2::3]

    for name in parts:
        parts[name] = 0.0
    best_prep = best_tok = float("inf")
    per_window: list[float] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        steps = tokens = calls = 0
        for window in windows:
            t0 = time.perf_counter()
            s, k, c, _ = await prepare(window)
            per_window.append(time.perf_counter() - t0)
            steps, tokens, calls = steps + s, tokens + k, calls + c
        best_prep = min(best_prep, time.perf_counter() - started)
        started = time.perf_counter()
        for window in windows:
            tokenizer(corpus[window], add_special_tokens=False)
        best_tok = min(best_tok, time.perf_counter() - started)
    await pool.close()

    ratio = best_prep / best_tok
    p50 = statistics.median(per_window)
    print(f"{len(windows)} windows x {args.agents} trajectories x {args.steps} steps: {steps:,} trajectory-steps, "
          f"{calls:,} trainable calls, {tokens:,} tokens (tokenizer {source})")
    print(f"database -> trainable ART groups: {best_prep * 1000:8.0f} ms = {steps / best_prep:10,.0f} "
          f"trajectory-steps/s, {tokens / best_prep:12,.0f} tokens/s")
    print(f"tokenizer batch encoding only:     {best_tok * 1000:8.0f} ms = {tokens / best_tok:12,.0f} tokens/s "
          "(the same rendered prompts and responses)")
    total = sum(parts.values())
    print("  where the time goes: " + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items()))
    print(f"ratio ours / tokenizer: {ratio:.2f}x (goal <= 1.25x: {'met' if ratio <= 1.25 else 'NOT met'})")
    p95 = sorted(per_window)[int(0.95 * (len(per_window) - 1))]
    print(f"one window of {args.agents} x {args.steps}: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {max(per_window) * 1000:.0f} ms "
          f"(goal <= 1 s: {'met' if max(per_window) <= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    asyncio.run(main())

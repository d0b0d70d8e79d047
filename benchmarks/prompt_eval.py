"""Held-out evaluation of served checkpoints on recorded prompts: does it tell a better model from a
worse one, does it stay quiet between two equal ones, and how fast is it?

Per seed (a fresh database each): H simulated hours are seeded; the held-out windows
(BABYLON_HOLDOUT_SHARE) are evaluated with the real `core.checkpoints.evaluation.evaluate` (prompt path) against
a local OpenAI-compatible server on 127.0.0.1 standing in for vLLM (`tests/fake_openai.py`, a
latency per request). It serves LocalBackend-style checkpoints:

- *skilled-p* for each p of --skills: on each prompt, a position on the stock that moved most in
  the window, with the move with probability p (a hash of prompt and model decides), against it
  otherwise;
- *coin-a*, *coin-b*: the same, right with probability 0.5 (different hashes).

Measured with the outcome judge: each skilled model vs coin-a, the windows it took until the 95% CI
of the paired difference first stayed above zero (prefixes of the stored per-window differences,
oldest first), and the final CI; coin-b vs coin-a, whether the CI wrongly excludes zero (a false
detection). On the first seed the comparison of the middle skill with the RULER judge (a second
local server with its own latency, scoring an answer with the move 0.8 and one against it 0.3)
gives the judge's wall time and calls. Exit 1 on a false detection, or when the most skilled model
is missed.

Run: .venv/bin/python benchmarks/prompt_eval.py [--seeds 5] [--hours 200] [--holdout 0.2] [--prompts 8]
     [--skills 0.6 0.7 0.8]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the remote price list
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from babylon_console.core.checkpoints.evaluation import evaluate
from babylon_console.core.checkpoints.prompt_eval import held_out_prompts
from babylon_console.core.config import Settings
from babylon_console.core.game.rows import WindowGroundTruth
from babylon_console.core.sim.actions import Action, format_response
from babylon_console.core.sim.observation import Observation
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.stats import paired_difference
from benchmarks._common import BENCH_DATA, bench_database
from tests.fake_openai import FakeOpenAI

NOW = datetime(2026, 11, 1, 0, 0)
BASE = "Qwen/Qwen3-0.6B"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--hours", type=int, default=200, help="simulated hours of history per seed")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--prompts", type=int, default=8, help="recorded prompts per held-out window")
    p.add_argument("--skills", type=float, nargs="+", default=[0.6, 0.7, 0.8],
                   help="how often each skilled model is right")
    p.add_argument("--latency", type=float, default=0.02, help="seconds per answer at the model server")
    p.add_argument("--judge-latency", type=float, default=0.05, help="seconds per RULER call")
    return p.parse_args(argv)


def storage(name: str) -> str:
    return f"local-lora://{BENCH_DATA}/lora/{name}?base={BASE}"


def chance(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8]) / 2**64


def models(skills: Sequence[float]) -> dict[str, float]:
    """Model name -> how often it is right."""
    return {**{f"skilled-{p:g}": p for p in skills}, "coin-a": 0.5, "coin-b": 0.5}


def answerer(truth: dict[str, WindowGroundTruth], skills: Sequence[float]) -> Any:
    by_path = {storage(n): (n, p) for n, p in models(skills).items()}

    def reply(body: dict[str, Any]) -> str:
        name, p_right = by_path[body["model"]]
        prompt = body["messages"][-1]["content"]
        obs, gt = Observation.from_prompt(prompt), truth[prompt]
        shown = {q.ticker for q in obs.stocks} if obs else set()
        moves = [s for s in gt.stocks if s.stock_ticker in shown and s.change_percent is not None]
        if not moves:
            return format_response(Action("HOLD"), "nothing to read")
        move = max(moves, key=lambda s: abs(s.change_percent or 0))
        right = chance(name, prompt) < p_right
        kind = "OPEN_LONG" if ((move.change_percent or 0) > 0) == right else "OPEN_SHORT"
        return format_response(Action(kind, ticker=move.stock_ticker, size=20),
                               "with the move" if right else "against the move")
    return reply


def ruler_reply(body: dict[str, Any]) -> str:
    import orjson

    text = next(m["content"] for m in body["messages"] if m["role"] == "user")
    blocks = re.findall(r'<trajectory id="(\d+)">(.*?)</trajectory>', text, re.S)
    return orjson.dumps({"scores": [{"trajectory_id": i, "explanation": "judged",
                                     "score": 0.8 if "with the move" in b else 0.3} for i, b in blocks]}).decode()


def windows_to_detect(diffs: list[float]) -> int | None:
    """The first n >= 3 from which the CI of the first n differences stays above zero."""
    first = None
    for n in range(3, len(diffs) + 1):
        d = paired_difference(diffs[:n])
        above = d is not None and d.ci_low is not None and d.ci_low > 0
        first = (first or n) if above else None
    return first


async def one_seed(seed: int, args: argparse.Namespace, ruler: bool) -> dict[str, Any]:
    url = await bench_database(f"bench_prompt_eval_{seed}", fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    try:
        await seed_history(pool, Simulation(seed=seed, n_agents=8, steps_per_window=5), args.hours, NOW)
        truth = {p.messages[-1]["content"]: w.ground_truth
                 for w in await held_out_prompts(pool, args.holdout, 10_000, 10_000) for p in w.prompts}
        for name in models(args.skills):
            await pool.execute(
                'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, '
                '"storagePath", "createdAt", "updatedAt") VALUES ($1, $1, $1, $2, $3, $4, $5, now(), now())',
                name, BASE, f"batch-{name}", "registered", storage(name))
        out: dict[str, Any] = {"seed": seed}
        async with FakeOpenAI(answerer(truth, args.skills), latency=args.latency) as server:
            settings = Settings(BABYLON_DATA_DIR=str(BENCH_DATA), BABYLON_LOCAL_INFERENCE_URL=server.base_url,  # type: ignore[call-arg]
                                BABYLON_EVAL_PROMPTS=args.prompts)
            out["skilled"] = {}
            started = time.perf_counter()
            for p in args.skills:
                good = await evaluate(pool, BENCH_DATA, args.holdout, f"skilled-{p:g}", "coin-a", windows=10_000,
                                      settings=settings)
                out["skilled"][p] = (good, windows_to_detect(list(reversed(good.window_diffs))))  # oldest first
            out["answers_per_s"] = len(server.requests) / (time.perf_counter() - started)  # all skills
            same = await evaluate(pool, BENCH_DATA, args.holdout, "coin-b", "coin-a", windows=10_000,
                                  settings=settings)
            out.update(n=same.n, prompts=same.prompts, same=same)
            if ruler:
                async with FakeOpenAI(ruler_reply, latency=args.judge_latency) as judge:
                    ruled = settings.with_overrides(judge="ruler", judge_model="judge-model",
                                                    judge_base_url=judge.base_url)
                    started = time.perf_counter()
                    middle = sorted(args.skills)[len(args.skills) // 2]
                    out["ruler_skill"] = middle
                    out["ruler"] = await evaluate(pool, BENCH_DATA, args.holdout, f"skilled-{middle:g}", "coin-a",
                                                  windows=10_000, settings=ruled)
                    out["ruler_wall_s"] = time.perf_counter() - started
                    out["ruler_calls"] = len(judge.requests)
        return out
    finally:
        await pool.close()


def ci(r: Any) -> str:
    return f"{r.mean_diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"


async def run(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
    started = time.perf_counter()
    rows = [await one_seed(seed, args, ruler=seed == 1) for seed in range(1, args.seeds + 1)]
    print(f"held-out evaluation on recorded prompts: {args.seeds} seeds, {args.hours} h each, hold-out "
          f"{args.holdout:.0%}, {args.prompts} prompts per window, {args.latency * 1000:.0f} ms per answer")
    print(f"{'seed':>4}  {'windows':>7}  {'prompts':>7}  " + "  ".join(
        f"{f'right {p:.0%} - coin':>26}  {'detected':>8}" for p in args.skills) + f"  {'coin - coin':>26}  "
        f"{'answers/s':>9}")
    for r in rows:
        cells = []
        for p in args.skills:
            good, detect = r["skilled"][p]
            cells.append(f"{ci(good):>26}  {'never' if detect is None else detect:>8}")
        print(f"{r['seed']:>4}  {r['n']:>7}  {r['prompts']:>7}  " + "  ".join(cells)
              + f"  {ci(r['same']):>26}  {r['answers_per_s']:>9.0f}")
    missed_best = 0
    for p in args.skills:
        found = [r["skilled"][p][1] for r in rows if r["skilled"][p][1] is not None]
        missed = sum(1 for r in rows if not (r["skilled"][p][0].ci_low or 0) > 0)
        if p == max(args.skills):
            missed_best = missed
        print(f"right {p:.0%} of the time (coin: 50%): detected in {len(rows) - missed}/{len(rows)} seeds; windows "
              f"until the CI stayed above zero: median {statistics.median(found) if found else '-'}, "
              f"max {max(found) if found else '-'}")
    false = sum(1 for r in rows if (r["same"].ci_low or 0) > 0 or (r["same"].ci_high or 0) < 0)
    print(f"false detections between two equal models: {false}/{len(rows)}")
    first = rows[0]
    if "ruler" in first:
        print(f"RULER judge (seed 1, right {first['ruler_skill']:.0%} - coin, {args.judge_latency * 1000:.0f} ms per "
              f"call): {ci(first['ruler'])} over {first['ruler'].n} windows, {first['ruler_calls']} judge calls for "
              f"{first['ruler'].prompts} prompts (identical answers are not judged), {first['ruler_wall_s']:.1f} s")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if missed_best == 0 and false == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())

"""Offline training loop, end to end: train K iterations, promote the best checkpoint, A/B it on held-out windows.

1. Training (K rounds). A seeded simulated market (seed S) with scripted agents and "policy agents"
   driven by the newest checkpoint. Each round writes W closed hourly windows into an embedded
   PostgreSQL database (`seed_history`), then the real `Engine` (offline backend, outcome judge)
   selects those windows, judges them, trains one GRPO step and registers the checkpoint; the policy
   agents of the next round load it from its `trained_models."storagePath"`.
2. Promotion. Every checkpoint (step 0..K) trades on validation windows of another market (seed
   S + 1000), all steps in the same windows, agents rotating over the steps; the trained step with
   the highest mean validation P&L is promoted with `Registry.promote`.
3. Held-out A/B (seed S + 2000, never used before). In every window half of the policy agents run the
   promoted checkpoint (loaded from the live model's storagePath) and half the initial policy (step 0,
   uniform over the candidate actions); the halves swap agent indices from one window to the next.
   Printed: mean P&L per arm, the paired-by-window difference with a 95% CI (primary) and the Welch
   interval over agent-windows. Exit code 0 when the promoted arm wins with the paired CI above zero.

Agents are price takers (prices and resolutions depend only on (seed, hour)), so scripted agents, which
take part in training, are left out of the validation and test populations: they could not change
any policy agent's P&L.

Run: .venv/bin/python benchmarks/offline_loop.py [--iterations 20] [--test-windows 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.checkpoints.registry import Registry
from babylon_console.core.config import Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.engine.run_state import EngineState
from babylon_console.core.sim.market import DEFAULT_TICKERS
from babylon_console.core.sim.policy import LinearSoftmaxPolicy
from babylon_console.core.sim.simulation import Simulation, WindowResult
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.backends.factory import checkpoint_root
from babylon_console.core.training.backends.offline import OfflineBackend
from babylon_console.core.training.judges import Judge
from benchmarks._common import BENCH_DATA, bench_database

DB_NAME = "bench_offline_loop"
# A fixed "now" keeps window ids, and so every market draw, identical from run to run.
NOW = datetime(2025, 6, 2, 0, 0)
Z95 = 1.959963984540054
VALIDATION_SEED_OFFSET, TEST_SEED_OFFSET = 1000, 2000


class FixedClock:
    """The engine's clock: a fixed instant after every training window has closed and settled."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", "-k", type=int, default=20, help="training rounds K (one GRPO step each)")
    p.add_argument("--windows-per-iteration", type=int, default=4, help="windows written and trained per round")
    p.add_argument("--agents", type=int, default=16, help="agents in the training market")
    p.add_argument("--policy-agents", type=int, default=10,
                   help="of which driven by the newest checkpoint (the rest are scripted)")
    p.add_argument("--steps", type=int, default=20, help="decisions per agent per window")
    p.add_argument("--prediction-markets", type=int, default=3, help="prediction markets in the market")
    p.add_argument("--validation-windows", type=int, default=100, help="windows to rank the checkpoints on")
    p.add_argument("--validation-agents-per-step", type=int, default=4, help="agents per checkpoint per window")
    p.add_argument("--test-windows", type=int, default=400, help="held-out windows of the A/B test")
    p.add_argument("--test-agents", type=int, default=16, help="policy agents per held-out window (half per arm)")
    p.add_argument("--learning-rate", type=float, default=1e-5, help="ART learning rate given to the engine")
    p.add_argument("--seed", type=int, default=0, help="training market seed S (validation S+1000, test S+2000)")
    p.add_argument("--wandb", action="store_true",
                   help="keep the engine's offline W&B run per round (a side channel; off: WANDB_MODE=disabled)")
    a = p.parse_args(argv)
    if a.iterations < 1 or a.windows_per_iteration < 1:
        p.error("--iterations and --windows-per-iteration must be >= 1")
    if not 1 <= a.policy_agents <= a.agents:
        p.error("--policy-agents must be in [1, --agents]")
    if a.agents < 5:
        p.error("--agents must be >= 5 (the engine's min_agents readiness rule)")
    if a.test_agents < 2 or a.test_agents % 2:
        p.error("--test-agents must be an even number >= 2")
    if a.test_windows < 2 or a.validation_windows < 1 or a.validation_agents_per_step < 1:
        p.error("--test-windows must be >= 2, the validation sizes >= 1")
    return a


# -- statistics ------------------------------------------------------------------------------------


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, standard error, 95% half-width) of independent observations (normal approximation)."""
    m = float(x.mean())
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return m, se, Z95 * se


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), standard error, Welch-Satterthwaite degrees of freedom)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(a.mean() - b.mean()), se, df


# -- training ----------------------------------------------------------------------------------------


async def train_rounds(pool: asyncpg.Pool, settings: Settings, backend: OfflineBackend,
                       args: argparse.Namespace, judge: Judge | None = None) -> list[dict[str, Any]]:
    k, w = args.iterations, args.windows_per_iteration
    sim = Simulation(seed=args.seed, n_agents=args.agents, steps_per_window=args.steps,
                     n_prediction_markets=args.prediction_markets)
    policy_idx = list(range(args.agents - args.policy_agents, args.agents))
    config = EngineConfig(
        iterations=1, windows_per_iteration=w, max_per_group=args.agents, lookback_hours=k * w + 48,
        learning_rate=args.learning_rate, seed=args.seed, pause_on_alarm=getattr(args, "pause_on_alarm", False),
    )
    base = NOW - timedelta(hours=k * w + 1)  # the last round's windows close an hour before NOW
    storage: str | None = None  # the newest checkpoint's inference name; None: step 0
    curve: list[dict[str, Any]] = []
    for r in range(k):
        # Policy agents on the newest checkpoint, as the promoted model would serve them.
        # (Step 0 is written when the engine first registers the model: before that, the same zeros.)
        policy = (backend.load_policy(storage) if storage
                  else LinearSoftmaxPolicy.zeros(name=f"{config.model_name}:step0", metadata={"step": 0}))
        for i in policy_idx:
            sim.set_policy(i, policy)
        results: list[WindowResult] = []

        def keep(_i: int, res: WindowResult | None, out: list[WindowResult] = results) -> None:
            if res is not None:
                out.append(res)

        t0 = time.perf_counter()
        await seed_history(pool, sim, w, base + timedelta(hours=(r + 1) * w), progress=keep)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine = Engine(pool, config, settings=settings, clock=FixedClock(NOW), judge=judge)
        summary = await engine.run()
        t_train = time.perf_counter() - t0
        if summary.state is not EngineState.STOPPED or len(summary.steps) != 1 or summary.windows_failed:
            raise RuntimeError(f"round {r + 1}: engine did not train one step: {summary.model_dump()}")
        if sorted(summary.windows_trained) != sorted(res.window_id for res in results):
            raise RuntimeError(f"round {r + 1}: engine trained {summary.windows_trained}, "
                               f"expected the round's windows {[res.window_id for res in results]}")
        row = await pool.fetchrow('SELECT "modelId", "storagePath", "avgReward" FROM trained_models '
                                  'WHERE "modelId" = $1', summary.checkpoints[0])
        storage = row["storagePath"]
        scores = dict(await pool.fetch("SELECT trajectory_id, score FROM console_judgments WHERE run_id = $1",
                                       engine.run_id))
        pol = [s for res in results for s in res.stats if s.agent_index in policy_idx]
        scr = [s for res in results for s in res.stats if s.agent_index not in policy_idx]
        metrics = backend.read_meta(storage)["metrics"]
        curve.append({
            "step": summary.steps[0], "model_id": row["modelId"], "storage": storage,
            "policy_step": policy.metadata.get("step"),
            "avg_reward": row["avgReward"],
            "policy_reward": statistics.fmean(scores[s.trajectory_id] for s in pol),
            "scripted_reward": statistics.fmean(scores[s.trajectory_id] for s in scr) if scr else float("nan"),
            "policy_pnl": statistics.fmean(s.final_pnl for s in pol),
            "loss": metrics["loss/train"], "entropy": metrics["loss/entropy"], "kl": metrics["loss/kl_div"],
            "turns": metrics["data/step_num_trajectories"], "t_sim": t_sim, "t_train": t_train,
        })
        c = curve[-1]
        print(f"  {c['step']:>4} {c['policy_step']:>6} {c['policy_pnl']:>+10.1f} {c['policy_reward']:>8.3f} "
              f"{c['scripted_reward']:>8.3f} {c['avg_reward']:>8.3f} {c['loss']:>+9.4f} {c['entropy']:>8.3f} "
              f"{c['kl']:>8.4f} {t_sim:>6.1f}s {t_train:>6.1f}s", flush=True)
    return curve


# -- evaluation ----------------------------------------------------------------------------------


def validate(policies: list[LinearSoftmaxPolicy], args: argparse.Namespace) -> np.ndarray:
    """(windows, checkpoints) mean P&L of each checkpoint's agents in each validation window.

    Every checkpoint trades in every window with `validation_agents_per_step` agents; the mapping
    agent index -> checkpoint rotates by one each window, so no checkpoint owns an agent's stream."""
    n = len(policies)
    m = args.validation_agents_per_step
    sim = Simulation(seed=args.seed + VALIDATION_SEED_OFFSET, n_agents=n * m, steps_per_window=args.steps,
                     n_prediction_markets=args.prediction_markets, record_messages=False)
    out = np.zeros((args.validation_windows, n))
    for v in range(args.validation_windows):
        arm = [(i + v) % n for i in range(n * m)]
        for i, j in enumerate(arm):
            sim.set_policy(i, policies[j])
        res = sim.simulate_window(NOW + timedelta(hours=v))
        for s in res.stats:
            out[v, arm[s.agent_index]] += s.final_pnl / m
    return out


def ab_test(promoted: LinearSoftmaxPolicy, initial: LinearSoftmaxPolicy,
            args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(windows, agents/2) P&L of the promoted arm and of the initial arm on held-out windows."""
    n = args.test_agents
    sim = Simulation(seed=args.seed + TEST_SEED_OFFSET, n_agents=n, steps_per_window=args.steps,
                     n_prediction_markets=args.prediction_markets, record_messages=False)
    pro = np.zeros((args.test_windows, n // 2))
    ini = np.zeros((args.test_windows, n // 2))
    for v in range(args.test_windows):
        on_promoted = [(i + v) % 2 == 0 for i in range(n)]  # even agents in even windows, odd in odd ones
        for i in range(n):
            sim.set_policy(i, promoted if on_promoted[i] else initial)
        res = sim.simulate_window(NOW + timedelta(hours=v))
        pro[v] = [s.final_pnl for s in res.stats if on_promoted[s.agent_index]]
        ini[v] = [s.final_pnl for s in res.stats if not on_promoted[s.agent_index]]
    return pro, ini


# -- main -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data_dir = BENCH_DATA / "offline_loop"
    shutil.rmtree(data_dir, ignore_errors=True)  # checkpoints of an earlier run would be trained on
    data_dir.mkdir(parents=True)
    # No .env and no W&B key: nothing leaves this machine, whatever the environment holds.
    settings = Settings(_env_file=None, BABYLON_DATA_DIR=data_dir, wandb_api_key=None)  # type: ignore[call-arg]
    # The engine's checkpoint tree, read-only here.
    backend = OfflineBackend(checkpoint_root(settings.data_dir, "offline"))

    print("Offline training loop benchmark (offline backend = CPU stand-in for LLM training, outcome judge)")
    print(f"  market: tickers {','.join(DEFAULT_TICKERS)} (default), {args.prediction_markets} prediction "
          f"market(s){' (default)' if args.prediction_markets == 3 else ' (NOT the default 3)'}, "
          f"{args.steps} steps per window")
    print(f"  seeds: training {args.seed}, validation {args.seed + VALIDATION_SEED_OFFSET}, "
          f"held-out test {args.seed + TEST_SEED_OFFSET}")
    print(f"  training: K={args.iterations} rounds x {args.windows_per_iteration} windows, {args.agents} agents "
          f"({args.agents - args.policy_agents} scripted, {args.policy_agents} on the newest checkpoint), "
          f"learning rate {args.learning_rate:g}; W&B offline run {'on' if args.wandb else 'disabled'}")
    print(f"  engine per round: Engine.run() with iterations=1, windows_per_iteration={args.windows_per_iteration}, "
          f"max_per_group={args.agents} (every agent of a window in its group), backend offline, judge outcome")

    t0 = time.perf_counter()
    url = await bench_database(DB_NAME, fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    t_db = time.perf_counter() - t0
    print(f"  database: fresh {DB_NAME} on the embedded server ({t_db:.1f}s); checkpoints under {data_dir}")
    try:
        print("\nTraining curve (policy P&L and rewards: the round's windows, played by the previous checkpoint)")
        print(f"  {'step':>4} {'played':>6} {'policyP&L':>10} {'polRwd':>8} {'scrRwd':>8} {'avgRwd':>8} "
              f"{'loss':>9} {'entropy':>8} {'kl':>8} {'sim':>7} {'train':>7}")
        t0 = time.perf_counter()
        curve = await train_rounds(pool, settings, backend, args)
        t_training = time.perf_counter() - t0
        print("  (played: checkpoint step the policy agents used; polRwd/scrRwd: mean judge score of policy/"
              "scripted agents; avgRwd: trained_models.avgReward of the batch)")

        # -- promotion on validation windows
        t0 = time.perf_counter()
        ref = curve[0]["storage"]
        policies = [backend.load_policy(ref, step=s) for s in range(args.iterations + 1)]
        val = validate(policies, args)
        t_val = time.perf_counter() - t0
        means = val.mean(axis=0)
        diffs = val - val[:, [0]]
        best = 1 + int(np.argmax(means[1:]))
        print(f"\nValidation (seed {args.seed + VALIDATION_SEED_OFFSET}, {args.validation_windows} windows, "
              f"{args.validation_agents_per_step} agents per checkpoint per window, {t_val:.1f}s)")
        print(f"  {'step':>4} {'mean P&L':>10} {'vs step 0 (paired, 95% CI)':>32}")
        for s in range(args.iterations + 1):
            if s == 0:
                print(f"  {s:>4} {means[s]:>+10.1f}")
                continue
            m, _, h = mean_ci(diffs[:, s])
            print(f"  {s:>4} {means[s]:>+10.1f} {m:>+14.1f} [{m - h:>+7.1f}, {m + h:>+7.1f}]"
                  f"{'  <- best' if s == best else ''}")

        model_id = curve[best - 1]["model_id"]
        registry = Registry(pool)
        result = await registry.promote(model_id, operator="benchmark",
                                        note=f"offline_loop: best mean validation P&L of steps 1..{args.iterations}")
        live = await registry.live()
        assert live is not None and live.model_id == model_id
        promoted = backend.load_policy(live.storage_path)
        initial = backend.load_policy(live.storage_path, step=0)
        if not np.array_equal(initial.weights, LinearSoftmaxPolicy.zeros().weights):
            raise RuntimeError("step 0 is not the all-zero initial policy")
        print(f"\nPromoted: {result.message}; storagePath {live.storage_path}")

        # -- held-out A/B
        t0 = time.perf_counter()
        pro, ini = ab_test(promoted, initial, args)
        t_test = time.perf_counter() - t0
        half = args.test_agents // 2
        paired = pro.mean(axis=1) - ini.mean(axis=1)
        pm, pse, ph = mean_ci(paired)
        wd, wse, wdf = welch(pro.reshape(-1), ini.reshape(-1))
        print(f"\nHeld-out A/B (seed {args.seed + TEST_SEED_OFFSET}, never used in training or validation): "
              f"{args.test_windows} windows x {args.test_agents} policy agents ({half} per arm, arms swap agent "
              f"indices every window), {t_test:.1f}s")
        for name, x in ((f"promoted ({promoted.name})", pro), (f"initial ({initial.name}, uniform)", ini)):
            m, _, h = mean_ci(x.mean(axis=1))  # over windows: agents of one window share its market
            print(f"  {name:<38} mean P&L {m:>+8.2f}  95% CI [{m - h:+.2f}, {m + h:+.2f}]  "
                  f"(sd per agent-window {x.std(ddof=1):.1f}, n={x.size})")
        print(f"  difference, paired by window         {pm:>+8.2f}  95% CI [{pm - ph:+.2f}, {pm + ph:+.2f}]  "
              f"(SE {pse:.2f}, sd of window differences {paired.std(ddof=1):.1f}, n={len(paired)} windows, "
              f"{pm / pse:.1f} SE)")
        print(f"  difference, Welch (agent-windows)    {wd:>+8.2f}  95% CI [{wd - Z95 * wse:+.2f}, "
              f"{wd + Z95 * wse:+.2f}]  (SE {wse:.2f}, df {wdf:.0f})")
        print("  (Welch treats the agent-windows as independent; agents of one window share its market, so it "
              "understates the\n   uncertainty: the paired interval is the one the result is decided on)")
        print(f"  promoted arm ahead in {int((paired > 0).sum())} of {len(paired)} windows")

        elapsed = time.perf_counter() - started
        t_write, t_engine = sum(c["t_sim"] for c in curve), sum(c["t_train"] for c in curve)
        print(f"\nTimings: database {t_db:.1f}s, training {t_training:.1f}s "
              f"(simulate+write {t_write:.1f}s, engine {t_engine:.1f}s), "
              f"validation {t_val:.1f}s, held-out test {t_test:.1f}s; total elapsed {elapsed:.1f}s")
        wins = pm - ph > 0
        print("RESULT: promoted arm wins" if wins else "RESULT: not significant")
        return 0 if wins else 1
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    if args.wandb:
        os.environ.setdefault("WANDB_SILENT", "true")
    else:
        os.environ["WANDB_MODE"] = "disabled"  # as the tests run the engine; metrics stay in meta.json
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

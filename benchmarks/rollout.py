"""Rollouts judged by their evidence, offline: does the gate promote a checkpoint that truly improves
and roll back a harmful one automatically, and how fast?

1. Training, once: the offline loop's training rounds (`offline_loop.train_rounds`: the real Engine,
   offline backend, outcome judge) give checkpoints 1..K; the best on validation windows (seed
   S + 1000) is the *good* candidate. The *harmful* candidate is the same policy with its
   preferences reversed (weights negated), written as an offline checkpoint of its own.
2. Rollouts, per seed (a fresh database each): the initial policy (step 0) is live at 100%, the
   candidate gets a 50% A/B rollout through the real registry. Each window the market is simulated
   with the real serving rule (`core.simgame.serving.ServedPolicies`: the candidate's share of the served
   agents trade with it, the rest with the live model), written as game rows, and the real
   `Engine.watch_rollout` (auto rollback on) reads the live A/B evidence (`core.checkpoints.evidence`) from
   those rows and acts. Stops at the first verdict: "promote" (N = windows it took) or "rollback"
   (M = windows until the rollout was gone), or after --max-windows.
3. Printed: N and M (median, max), false rollbacks of the good candidate, false promotions of the
   harmful one, and the candidate's served share measured from the rows; beside them, the windows the
   previous rule (below) would have needed on the same per-window differences.
4. Detection experiment: --detect-rollouts rollouts of the good candidate and as many of the harmful one,
   simulated window by window without the database like the null experiment (below), each judged after every
   window by the gate's rule and by the previous rule on the same windows. Printed: how many reached their
   verdict, the windows it took (median, max) and the median counting a rollout without it as --max-windows;
   the gate's over the previous rule's is the speed goal's ratio (five seeds through the database are too
   few for a median: one seed moves it by a third).
5. Skill experiment (synthetic, no market): equal models whose arms' agents differ in standing skill, kept
   on their arm as the gateway keeps them. Printed: the gate's false verdicts, and in how many the balance
   check (the readout's warning that the arms' agents already differed before the rollout) had spoken.
6. Null experiment: --null-rollouts rollouts of two equal models (the step-0 policy in both arms, the
   same serving rule: the candidate's share of the served agents), simulated window by window without
   the database, looked at after every window for --null-windows windows. The per-window differences
   are judged by the gate's own rule (`core.checkpoints.evidence.verdict_of_differences`) and by the
   previous rule; any promotion or rollback is false. Printed: the false promotion and false rollback
   rates of each.

The previous rule (the gate before it read an anytime-valid bound, reimplemented here for comparison
only): the plain 95% Student's t CI after every window from `min_windows` on; "promote" once it stayed
above zero for 3 consecutive windows, "rollback" the first time it is below zero.

Goal: 0 false rollbacks and 0 false promotions over >= 5 seeds; M <= 12 windows. Null experiment: false
rates <= 5% each for the gate. Detection experiment: its windows to a verdict no more than 1.5x the previous
rule's (median).

Run: .venv/bin/python benchmarks/rollout.py [--seeds 5] [--iterations 10] [--max-windows 48]
     [--null-rollouts 200] [--null-windows 40] [--detect-rollouts 100]
     [--skill-rollouts 200] [--skill-sd 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babylon_console.core.checkpoints.balance import balance_of
from babylon_console.core.checkpoints.evidence import ab_readout, verdict_of_differences
from babylon_console.core.checkpoints.registry import Registry, Served
from babylon_console.core.config import GateSettings, Settings
from babylon_console.core.engine.loop import Engine
from babylon_console.core.engine.run_config import EngineConfig
from babylon_console.core.names import offline_name, parse_offline_name
from babylon_console.core.sim.policy import LinearSoftmaxPolicy
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import ensure_agents, prepare_bulk_session, write_window
from babylon_console.core.simgame.serving import ServedPolicies, assignment
from babylon_console.core.stats import out_earn_share, paired_difference
from babylon_console.core.training.backends.factory import checkpoint_root
from babylon_console.core.training.backends.offline import OfflineBackend
from benchmarks import offline_loop
from benchmarks._common import BENCH_DATA, bench_database

ROLLOUT_SEED_OFFSET = 5000
NULL_SEED_OFFSET = 9000
DETECT_SEED_OFFSET = 20000
SKILL_SEED_OFFSET = 30000
SHARE = 0.5
PREVIOUS_PROMOTE_AFTER = 3  # the previous rule's default
LOOSER_ALPHA = 0.10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="rollout markets (each with its own seed)")
    p.add_argument("--iterations", "-k", type=int, default=10, help="training rounds for the good checkpoint")
    p.add_argument("--max-windows", type=int, default=48, help="windows per rollout before giving up on a verdict")
    p.add_argument("--agents", type=int, default=20, help="agents in the rollout market")
    p.add_argument("--served-agents", type=int, default=16,
                   help="of which served by the registry (the live model, and the candidate's share of them)")
    p.add_argument("--steps", type=int, default=20, help="decisions per agent per window")
    p.add_argument("--null-rollouts", type=int, default=200, help="null experiment: rollouts of two equal models")
    p.add_argument("--null-windows", type=int, default=40, help="null experiment: windows looked at per rollout")
    p.add_argument("--detect-rollouts", type=int, default=100,
                   help="detection experiment: simulated rollouts of each candidate (good, harmful)")
    p.add_argument("--skill-rollouts", type=int, default=200,
                   help="skill experiment: synthetic rollouts of equal models whose arms' agents differ in skill")
    p.add_argument("--skill-sd", type=float, default=0.5, help="skill experiment: sd of the agents' standing skill")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="null experiment: processes simulating")
    a = p.parse_args(argv)
    if not 2 <= a.served_agents <= a.agents:
        p.error("--served-agents must be in [2, --agents]")
    return a


async def train_good(pool: asyncpg.Pool, settings: Settings, backend: OfflineBackend,
                     k: int) -> tuple[str, str, LinearSoftmaxPolicy]:
    """(step-0 storage, best storage, best policy) from the offline loop's training and validation."""
    args = offline_loop.parse_args(["--iterations", str(k), "--validation-windows", "60"])
    curve = await offline_loop.train_rounds(pool, settings, backend, args)
    ref = curve[0]["storage"]
    policies = [backend.load_policy(ref, step=s) for s in range(k + 1)]
    means = offline_loop.validate(policies, args).mean(axis=0)
    best = 1 + int(np.argmax(means[1:]))
    project, run, _ = parse_offline_name(ref)
    print(f"  validation mean P&L: step 0 {means[0]:+.1f}, best step {best} {means[best]:+.1f}")
    return offline_name(project, run, 0), offline_name(project, run, best), policies[best]


def write_reversed(backend: OfflineBackend, good_storage: str, good: LinearSoftmaxPolicy) -> str:
    """The good policy with its preferences reversed, as an offline checkpoint of its own."""
    project, run, step = parse_offline_name(good_storage)
    name = f"{run}-reversed"
    path = backend.run_dir(project, name) / "checkpoints" / f"{step:04d}" / "policy.json"
    LinearSoftmaxPolicy(-good.weights, temperature=good.temperature, name=f"{name}:step{step}").save(path)
    return offline_name(project, name, step)


def previous_rule(windows: list[tuple[float, float]], gate: GateSettings) -> str:
    """THE PREVIOUS RULE, for comparison only (the gate no longer uses it): after every window from
    `min_windows` on, the plain 95% t CI of the per-window differences; "promote" once it has been above
    zero for 3 consecutive windows, "rollback" the first time it is below zero."""
    diffs = [d for d, _ in windows]
    streak = 0
    verdict = "hold"
    for t in range(gate.min_windows, len(diffs) + 1):
        d = paired_difference(diffs[:t])
        assert d is not None and d.ci_low is not None and d.ci_high is not None
        streak = streak + 1 if d.ci_low > 0 else 0
        verdict = "rollback" if d.ci_high < 0 else "promote" if streak >= PREVIOUS_PROMOTE_AFTER else "hold"
    return verdict


def first_verdict(windows: list[tuple[float, float]], judge: Any) -> tuple[str, int]:
    """(the first "promote" or "rollback" of `judge` looked at after every window, the windows it took);
    ("none", len(windows)) when neither came. `windows`: per window, (P&L difference, out-earn share)."""
    for t in range(1, len(windows) + 1):
        verdict = judge(windows[:t])
        if verdict in ("promote", "rollback"):
            return verdict, t
    return "none", len(windows)


def gate_rule(gate: GateSettings, *, on_pnl: bool = False) -> Any:
    """The gate's rule; `on_pnl`: the one-sided Student-t sequence on the mean P&L difference instead of
    the betting bounds on the out-earn share (the gate's method before, for comparison)."""
    return lambda w: verdict_of_differences([d for d, _ in w], gate, None if on_pnl else [x for _, x in w])[0]


def simulated_differences(live: LinearSoftmaxPolicy, candidate: LinearSoftmaxPolicy, seed: int, windows: int,
                          args: argparse.Namespace) -> list[tuple[float, float]]:
    """Per window of one rollout simulated without the database (`live` and `candidate` drive their arms,
    assigned by the real serving rule, `assignment`): the candidate's mean P&L minus the live arm's, and the
    out-earn share."""
    sim = Simulation(seed=seed, n_agents=args.agents, steps_per_window=args.steps, record_messages=False)
    served = [Served("live", "live", "live", 1.0), Served("candidate", "candidate", "candidate", SHARE)]
    arm = {}
    for index, s in assignment(args.agents, args.served_agents, served):
        arm[index] = s.role if s is not None else None
        if arm[index] is not None:
            sim.set_policy(index, candidate if arm[index] == "candidate" else live)
    diffs = []
    for i in range(windows):
        result = sim.simulate_window(offline_loop.NOW + timedelta(hours=i))
        pnl = {role: [st.final_pnl for st in result.stats if arm.get(st.agent_index) == role]
               for role in ("candidate", "live")}
        diffs.append((statistics.fmean(pnl["candidate"]) - statistics.fmean(pnl["live"]),
                      out_earn_share(pnl["candidate"], pnl["live"]) or 0.0))
    return diffs


def simulate_rollouts(live: LinearSoftmaxPolicy, candidate: LinearSoftmaxPolicy, n: int, windows: int,
                      seed_offset: int, args: argparse.Namespace) -> list[list[tuple[float, float]]]:
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(simulated_differences, [live] * n, [candidate] * n, range(seed_offset, seed_offset + n),
                             [windows] * n, [args] * n))


def null_experiment(policy: LinearSoftmaxPolicy, gate: GateSettings, args: argparse.Namespace) -> bool:
    """Prints the false promotion and rollback rates of the gate and of the previous rule; True when
    the gate's are <= 5% each."""
    print(f"\nNull experiment: {args.null_rollouts} rollouts of two equal models (the step-0 policy in both arms), "
          f"looked at after every window for {args.null_windows} windows")
    t0 = time.perf_counter()
    rollouts = simulate_rollouts(policy, policy, args.null_rollouts, args.null_windows, NULL_SEED_OFFSET, args)
    spread = statistics.fmean(statistics.stdev(d for d, _ in r) for r in rollouts)
    print(f"  simulated in {time.perf_counter() - t0:.0f} s; per-window difference: mean "
          f"{statistics.fmean(d for r in rollouts for d, _ in r):+.1f}, sd within a rollout {spread:.1f}; "
          f"out-earn share - 1/2: mean {statistics.fmean(x for r in rollouts for _, x in r):+.3f}")
    ok = True
    for label, judge in (("previous rule (plain 95% CI, promote after 3)", lambda d: previous_rule(d, gate)),
                         (f"the gate at alpha {LOOSER_ALPHA:g} (comparison only)", gate_rule(looser(gate))),
                         ("Student-t sequence on mean P&L, one-sided (comparison only)", gate_rule(gate, on_pnl=True)),
                         (f"anytime-valid gate (alpha {gate.alpha:g}, horizon {gate.horizon:g}, "
                          f"promote after {gate.promote_after})", gate_rule(gate))):
        verdicts = [first_verdict(d, judge)[0] for d in rollouts]
        promoted, rolled = verdicts.count("promote") / len(verdicts), verdicts.count("rollback") / len(verdicts)
        print(f"  {label:<64} false promotions {promoted:6.1%}  false rollbacks {rolled:6.1%}")
        ok = promoted <= 0.05 and rolled <= 0.05  # the gate's, printed last
    return ok


def windows_to(rollouts: list[list[tuple[float, float]]], verdict: str, judge: Any) -> tuple[list[int], int, int]:
    """(windows to `verdict` where it came, rollouts with the opposite verdict, rollouts without one)."""
    found = [first_verdict(r, judge) for r in rollouts]
    return ([t for v, t in found if v == verdict], sum(v not in (verdict, "none") for v, _ in found),
            sum(v == "none" for v, _ in found))


def detection_experiment(live: LinearSoftmaxPolicy, good: LinearSoftmaxPolicy, harmful: LinearSoftmaxPolicy,
                         gate: GateSettings, args: argparse.Namespace) -> dict[str, float]:
    """Windows to a verdict of the gate and of the previous rule, side by side on the same simulated
    rollouts (--detect-rollouts of the good candidate, as many of the harmful one, --max-windows each):
    five seeds through the database are too few to compare medians (one seed moves them by a third).
    Prints them and returns, per verdict, the gate's median over the previous rule's, a rollout without the
    verdict counted as --max-windows (as `slowdown` does)."""
    n, w = args.detect_rollouts, args.max_windows
    print(f"\nDetection experiment: {n} rollouts of the good candidate and {n} of the harmful one against the "
          f"step-0 policy, simulated without the database ({w} windows each, no drawdown rule), each rule looked "
          "at after every window")
    t0 = time.perf_counter()
    cases = {"promote": simulate_rollouts(live, good, n, w, DETECT_SEED_OFFSET, args),
             "rollback": simulate_rollouts(live, harmful, n, w, DETECT_SEED_OFFSET + n, args)}
    print(f"  simulated in {time.perf_counter() - t0:.0f} s")
    ratios = {}
    for verdict, rollouts in cases.items():
        medians = []
        for label, judge in (("previous rule", lambda d: previous_rule(d, gate)),
                             ("anytime-valid gate", gate_rule(gate))):
            reached, wrong, none = windows_to(rollouts, verdict, judge)
            censored = statistics.median(reached + [w] * (len(rollouts) - len(reached)))
            medians.append(censored)
            print(f"  {verdict:<8} {label:<20} {len(reached):>3} of {len(rollouts)} in {w} windows: "
                  f"{summary(reached)}; median counting none as {w}: {censored:g}; wrong verdict {wrong}, none {none}")
        ratios[verdict] = medians[1] / medians[0]
    return ratios


def skill_experiment(gate: GateSettings, args: argparse.Namespace) -> None:
    """Two equal models whose arms' agents differ in skill (synthetic, no market): each agent earns its own
    standing offset (normal, sd --skill-sd) plus noise (sd 1) in every window, 8 agents per arm kept on
    their arm for the whole rollout as the gateway keeps them. Before the rollout, 24 windows on the live
    model alike; then 40 windows looked at after each by the gate. Prints the gate's false verdicts and in
    how many of them the balance check (`core.checkpoints.balance`, the readout's warning) had spoken."""
    print(f"\nSkill experiment: {args.skill_rollouts} rollouts of two equal models whose arms' agents differ in "
          "standing skill, 8 agents per arm kept on their arm, 24 windows before the rollout, 40 looked at")
    judge = gate_rule(gate)
    for sd in (0.0, args.skill_sd):
        found: dict[str, list[int]] = {"promote": [0, 0], "rollback": [0, 0], "none": [0, 0]}
        for k in range(args.skill_rollouts):
            rnd = np.random.default_rng(SKILL_SEED_OFFSET + k)
            skill = rnd.normal(0.0, sd, 16) if sd > 0 else np.zeros(16)
            before = skill + rnd.normal(0.0, 1.0, (24, 16))
            pre = [(f"w{w:02d}", str(a), float(before[w, a])) for w in range(24) for a in range(16)]
            balance = balance_of(pre, {str(a) for a in range(8)}, {str(a) for a in range(8, 16)}, "w00")
            during = skill + rnd.normal(0.0, 1.0, (40, 16))
            windows = [(float(p[:8].mean() - p[8:].mean()), out_earn_share(list(p[:8]), list(p[8:])) or 0.0)
                       for p in during]
            verdict = first_verdict(windows, judge)[0]
            found[verdict][0] += 1
            found[verdict][1] += bool(balance and balance.imbalanced)
        n = args.skill_rollouts
        print(f"  skill sd {sd:g} (noise sd 1): " + "; ".join(
            f"{'false ' if v != 'none' else ''}{v} {c / n:.1%} (balance warned in {w} of {c})"
            for v, (c, w) in found.items()))


def looser(gate: GateSettings) -> GateSettings:
    """The gate at LOOSER_ALPHA, printed for comparison: its two-sided guarantee is 10%, so each kind of
    error is held to 10% (about 5% each when the differences are symmetric), and it decides sooner."""
    return gate.model_copy(update={"alpha": LOOSER_ALPHA})


class _MarketClock:
    """The benchmark market's time when the rollout starts: its windows are dated from offline_loop.NOW."""

    def now(self) -> datetime:
        return offline_loop.NOW


async def register(pool: asyncpg.Pool, model_id: str, storage: str) -> None:
    await pool.execute(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"createdAt", "updatedAt") VALUES ($1, $1, $2, $3, $4, $5, $6, now(), now())',
        model_id, "bench", "offline/linear-softmax-policy", f"batch-{model_id}", "registered", storage)


async def rollout(seed: int, case: str, live_storage: str, candidate_storage: str, settings: Settings,
                  args: argparse.Namespace) -> dict[str, Any]:
    url = await bench_database(f"bench_rollout_{case}_{seed}", fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await register(pool, "initial", live_storage)
        await register(pool, case, candidate_storage)
        registry = Registry(pool, clock=_MarketClock())  # the rollout starts at the market's first window
        await registry.promote("initial", share=1.0, operator="benchmark")
        await registry.promote(case, share=SHARE, operator="benchmark")
        sim = Simulation(seed=ROLLOUT_SEED_OFFSET + seed, n_agents=args.agents, steps_per_window=args.steps,
                         record_messages=False)
        served = ServedPolicies(pool, settings.data_dir, args.served_agents)
        engine = Engine(pool, EngineConfig(auto_rollback=True), settings=settings)
        await ensure_agents(pool, sim)
        start = offline_loop.NOW
        gate = settings.gate()
        verdict, windows, shares, decided = "none", 0, [], None
        previous: tuple[str, int] = ("none", 0)
        at_looser: tuple[str, int] = ("none", 0)
        on_pnl: tuple[str, int] = ("none", 0)
        async with pool.acquire() as conn:
            await prepare_bulk_session(conn)
        for i in range(args.max_windows):
            await served.refresh()
            served.before_window(sim, "")
            result = await asyncio.to_thread(sim.simulate_window, start + timedelta(hours=i))
            async with pool.acquire() as conn:
                await write_window(conn, result)
            readout = await ab_readout(pool, gate)
            await engine.watch_rollout()  # the product's path: auto rollback acts on the same evidence
            if readout.served:
                shares = [w.served for w in readout.served]
            windows_so_far = list(zip(readout.window_diffs, readout.window_scores, strict=True))
            previous = first_verdict(windows_so_far, lambda w: previous_rule(w, gate))
            at_looser = first_verdict(windows_so_far, gate_rule(looser(gate)))
            on_pnl = first_verdict(windows_so_far, gate_rule(gate, on_pnl=True))
            if decided is None:
                windows, decided = i + 1, readout
                if readout.verdict in ("promote", "rollback"):
                    verdict = readout.verdict
                else:
                    decided = None
            # after a "promote" the rollout goes on: it runs until the previous rule has decided too
            if decided is not None and (verdict == "rollback" or previous[0] != "none"):
                break
        decided = decided or readout
        rolled_back = await registry.rollout() is None
        if verdict == "rollback" and not rolled_back:
            raise RuntimeError(f"{case} seed {seed}: the gate said rollback but the rollout still runs")
        diff = decided.difference
        return {"seed": seed, "case": case, "verdict": verdict, "windows": windows, "rolled_back": rolled_back,
                "previous": previous, "looser": at_looser, "on_pnl": on_pnl,
                "served": statistics.fmean(shares) if shares else float("nan"),
                "diff": diff.mean if diff else float("nan"),
                "cs": (diff.cs_low, diff.cs_high) if diff and diff.cs_low is not None else None,
                "ci": (diff.ci_low, diff.ci_high) if diff and diff.ci_low is not None else None,
                "reason": "; ".join(decided.reasons)}
    finally:
        await pool.close()


def slowdown(cases: list[dict[str, Any]], verdict: str, max_windows: int) -> float | None:
    """Median windows the gate needed for `verdict` over the previous rule's median, on the seeds where
    the previous rule could be watched to a verdict or to the end (not those the gate ended first on
    other grounds, e.g. drawdown); a seed without the verdict counts as `max_windows`."""
    pairs = [(r["windows"] if r["verdict"] == verdict else max_windows,
              r["previous"][1] if r["previous"][0] == verdict else max_windows)
             for r in cases if r["previous"][0] != "none" or r["windows"] >= max_windows]
    if not pairs:
        return None
    return statistics.median(p[0] for p in pairs) / statistics.median(p[1] for p in pairs)


def summary(values: list[int]) -> str:
    return f"median {statistics.median(values):g}, max {max(values)}" if values else "none"


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data_dir = BENCH_DATA / "rollout"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = Settings(_env_file=None, BABYLON_DATA_DIR=data_dir, wandb_api_key=None)  # type: ignore[call-arg]
    backend = OfflineBackend(checkpoint_root(settings.data_dir, "offline"))
    gate = settings.gate()
    print("Rollout benchmark: live A/B evidence, gate and automatic rollback (offline backend, simulated market)")
    print(f"  gate: >= {gate.min_windows} paired windows; promote once the anytime-valid one-sided "
          f"{1 - gate.alpha:.0%} lower bound (betting) on the share of agent pairs the candidate's agent "
          f"out-earned, minus 1/2, is above zero for {gate.promote_after} window(s); roll back when its upper "
          f"bound is below zero or drawdown > {gate.max_drawdown:.0%}")
    print(f"  rollouts: {args.seeds} seeds x (good, harmful), {SHARE:.0%} A/B, {args.agents} agents of which "
          f"{args.served_agents} served by the registry, {args.steps} steps, at most {args.max_windows} windows")
    print(f"\nTraining the good checkpoint ({args.iterations} rounds, the offline loop's training):")
    url = await bench_database("bench_rollout_train", fresh=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        t0 = time.perf_counter()
        live_storage, good_storage, good = await train_good(pool, settings, backend, args.iterations)
        print(f"  trained in {time.perf_counter() - t0:.0f} s; good = {good_storage}")
    finally:
        await pool.close()
    harmful_storage = write_reversed(backend, good_storage, good)
    print(f"  harmful = {harmful_storage} (the good policy's weights negated)")

    rows = []
    print(f"\n  {'seed':>4} {'case':<8} {'verdict':<9} {'windows':>7} {'previous':>15} {'served':>7} {'diff':>9} "
          f"{'out-earn - 1/2':>20} {'plain 95% CI':>20}")
    for seed in range(args.seeds):
        for case, storage in (("good", good_storage), ("harmful", harmful_storage)):
            r = await rollout(seed, case, live_storage, storage, settings, args)
            rows.append(r)
            cs = f"[{r['cs'][0]:+8.3f}, {r['cs'][1]:+8.3f}]" if r["cs"] else "unbounded"
            ci = f"[{r['ci'][0]:+8.1f}, {r['ci'][1]:+8.1f}]" if r["ci"] else ""
            prev = f"{r['previous'][0]} {r['previous'][1]}" if r["previous"][0] != "none" else "none yet"
            print(f"  {seed:>4} {case:<8} {r['verdict']:<9} {r['windows']:>7} {prev:>15} {r['served']:>6.0%} "
                  f"{r['diff']:>+9.1f} {cs:>20} {ci:>20}", flush=True)
    good_rows = [r for r in rows if r["case"] == "good"]
    bad_rows = [r for r in rows if r["case"] == "harmful"]
    n = [r["windows"] for r in good_rows if r["verdict"] == "promote"]
    m = [r["windows"] for r in bad_rows if r["verdict"] == "rollback"]
    n_prev = [r["previous"][1] for r in good_rows if r["previous"][0] == "promote"]
    m_prev = [r["previous"][1] for r in bad_rows if r["previous"][0] == "rollback"]
    n_loose = [r["looser"][1] for r in good_rows if r["looser"][0] == "promote"]
    m_loose = [r["looser"][1] for r in bad_rows if r["looser"][0] == "rollback"]
    n_pnl = [r["on_pnl"][1] for r in good_rows if r["on_pnl"][0] == "promote"]
    m_pnl = [r["on_pnl"][1] for r in bad_rows if r["on_pnl"][0] == "rollback"]
    false_rollbacks = sum(r["verdict"] == "rollback" for r in good_rows)
    false_promotes = sum(r["verdict"] == "promote" for r in bad_rows)
    served = statistics.fmean(r["served"] for r in rows)
    print(f"\n  good checkpoint reaches 'promote' in N windows: {summary(n)} ({len(n)} of {len(good_rows)} seeds; "
          f"{sum(r['verdict'] == 'none' for r in good_rows)} without a verdict in {args.max_windows}); "
          f"previous rule: {summary(n_prev)} ({len(n_prev)} of {len(good_rows)})")
    print(f"  harmful checkpoint rolled back automatically in M windows: {summary(m)} ({len(m)} of {len(bad_rows)}); "
          f"previous rule: {summary(m_prev)} ({len(m_prev)} of {len(bad_rows)}, counted until the gate rolled back)")
    print(f"  the gate at alpha {LOOSER_ALPHA:g} on the same windows (comparison only, no drawdown rule): promote "
          f"{summary(n_loose)} ({len(n_loose)} of {len(good_rows)}), rollback {summary(m_loose)} "
          f"({len(m_loose)} of {len(bad_rows)})")
    print(f"  the one-sided Student-t sequence on mean P&L (comparison only, censored where the gate ended the "
          f"rollout): promote {summary(n_pnl)} ({len(n_pnl)} of {len(good_rows)}), rollback {summary(m_pnl)} "
          f"({len(m_pnl)} of {len(bad_rows)})")
    print(f"  false rollbacks (good): {false_rollbacks}/{len(good_rows)}; false promotions (harmful): "
          f"{false_promotes}/{len(bad_rows)}")
    print(f"  candidate's served share measured from the rows: {served:.1%} (asked {SHARE:.0%})")
    ok = not false_rollbacks and not false_promotes and len(m) == len(bad_rows) and max(m, default=99) <= 12
    print(f"  goal (0 false rollbacks, 0 false promotions, M <= 12): {'met' if ok else 'NOT met'}")
    few = {name: slowdown(cases, name, args.max_windows) for name, cases in (("promote", good_rows),
                                                                             ("rollback", bad_rows))}
    print(f"  gate / previous rule, median windows on these {args.seeds} seeds (too few to compare; see the detection "
          f"experiment): {', '.join(f'{k} {r:.2f}x' if r is not None else f'{k} n/a' for k, r in few.items())}")
    live = backend.load_policy(live_storage)
    null_ok = null_experiment(live, gate, args)
    ratios = detection_experiment(live, backend.load_policy(good_storage), backend.load_policy(harmful_storage),
                                  gate, args)
    skill_experiment(gate, args)
    fast = all(r <= 1.5 for r in ratios.values())
    print(f"  goal (gate's false rates <= 5% each; median windows to a verdict <= 1.5x the previous rule's on the "
          f"detection experiment, no verdict counted as {args.max_windows}: "
          f"{', '.join(f'{k} {r:.2f}x' for k, r in ratios.items())}): "
          f"{'met' if null_ok and fast else 'NOT met'}; {time.perf_counter() - started:.0f} s")
    return 0 if ok and null_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "disabled")
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

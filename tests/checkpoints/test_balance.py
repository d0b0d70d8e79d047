"""The balance check: were the two arms' agents alike before the rollout? The gateway keeps an agent on one
arm for the whole rollout, so a standing gap in skill between the two groups reads as a model difference;
the same comparison over the windows before the rollout (both groups served alike) says so."""

from __future__ import annotations

import random

import asyncpg
import orjson

from babylon_console.core.checkpoints.balance import PRE_WINDOWS, balance_of, balance_warning
from babylon_console.core.checkpoints.evidence import ArmTraffic, ab_readout, rejudged

from .test_evidence import CAND, GATE, LIVE, _harmful_history, _insert_window, _models

CANDIDATE_AGENTS, LIVE_AGENTS = {"agent-c", "agent-d"}, {"agent-a", "agent-b"}


def _rows(windows: int, edge: float, seed: int = 1) -> list[tuple[str, str, float]]:
    rnd = random.Random(seed)
    return [(f"2026-11-23T{w:02d}:00", agent, rnd.gauss(edge if agent in CANDIDATE_AGENTS else 0.0, 10.0))
            for w in range(windows) for agent in sorted(CANDIDATE_AGENTS | LIVE_AGENTS)]


def test_agents_that_already_out_earned_are_named_and_alike_ones_are_not() -> None:
    skilled = balance_of(_rows(12, edge=25.0), CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00")
    assert skilled is not None and skilled.windows == 12 and skilled.imbalanced and skilled.ci_low > 0
    warning = balance_warning(skilled, 7)
    assert warning is not None and "before rollout 7 started" in warning and "already out-earned" in warning
    alike = balance_of(_rows(12, edge=0.0), CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00")
    assert alike is not None and not alike.imbalanced and balance_warning(alike, 7) is None


def test_a_share_that_never_moved_is_not_an_interval_of_zero_width() -> None:
    """One agent a side, the candidate's winning three windows of three: a t interval of zero width
    'excluded zero' though three coin flips coming up alike is a quarter's chance. Eight of eight with
    two agents a side (each window 4 pairs of 4) is a gap."""
    rows = [(f"2026-11-23T0{w}:00", agent, pnl) for w in range(3)
            for agent, pnl in (("agent-c", 5.0), ("agent-a", 1.0))]
    found = balance_of(rows, {"agent-c"}, {"agent-a"}, "2026-11-23T00:00")
    assert found is not None and found.share == 0.5 and found.ci_low < 0 < found.ci_high and not found.imbalanced
    rows = [(f"2026-11-23T0{w}:00", agent, 5.0 if agent in CANDIDATE_AGENTS else 1.0) for w in range(8)
            for agent in sorted(CANDIDATE_AGENTS | LIVE_AGENTS)]
    found = balance_of(rows, CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00")
    assert found is not None and found.share == 0.5 and found.ci_low > 0 and found.imbalanced


def test_thin_history_says_no_interval() -> None:
    assert balance_of([], CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00") is None
    two = balance_of(_rows(2, edge=25.0), CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00")
    assert two is not None and two.ci_low is None and not two.imbalanced  # under 3 windows: no interval
    one_side = [(w, a, p) for w, a, p in _rows(6, edge=25.0) if a in CANDIDATE_AGENTS]
    assert balance_of(one_side, CANDIDATE_AGENTS, LIVE_AGENTS, "2026-11-23T00:00") is None


async def _before(pool: asyncpg.Pool, edge: float, hours: range) -> None:
    """Windows on 2026-11-23 (before the rollout) where every agent was served the live model and the
    candidate arm's agents earn `edge` more."""
    rnd = random.Random(3)
    for hour in hours:
        served = {a: LIVE[1] for a in sorted(CANDIDATE_AGENTS | LIVE_AGENTS)}
        pnl = {a: rnd.gauss(edge if a in CANDIDATE_AGENTS else 0.0, 5.0) for a in served}
        await _insert_window(pool, f"2026-11-23T{hour:02d}:00", served, pnl)


async def test_the_readout_warns_when_the_arms_agents_already_differed(pool: asyncpg.Pool) -> None:
    await _models(pool)
    await _harmful_history(pool)  # the candidate's agents (c, d) lose during the rollout
    await _before(pool, edge=30.0, hours=range(16, 24))  # ... and out-earned a and b before it, on one model
    await _insert_window(pool, "2026-11-22T10:00", {"agent-a": LIVE[1], "agent-c": LIVE[1]},
                         {"agent-a": 0.0, "agent-c": 999.0})  # older than the PRE_WINDOWS read: not counted
    # the window the rollout started in (at 00:30): half of it served on the rollout's arms, not counted
    await _insert_window(pool, "2026-11-24T00:00", {"agent-a": LIVE[1], "agent-c": CAND[1]},
                         {"agent-a": 0.0, "agent-c": 999.0})
    readout = await ab_readout(pool, GATE)
    assert readout.candidate_model_id == CAND[0] and readout.balance is not None
    assert (readout.balance.windows, readout.balance.first_window) == (8, "2026-11-23T00:00")
    assert PRE_WINDOWS == 24 and readout.balance.imbalanced and readout.balance.share > 0.4
    said = [w for w in readout.warnings if "already out-earned the live arm's 2" in w]
    assert len(said) == 1, readout.warnings
    # judged again with new gateway traffic (what the console's cached readout does every 10 s): still said
    again = rejudged(readout, {"live": ArmTraffic(requests=5, errors=0, p50_ms=1.0, p99_ms=2.0)}, GATE)
    assert said[0] in again.warnings and again.arms[0].requests == 5
    assert orjson.loads(again.model_dump_json())["balance"]["imbalanced"] is True  # `models ab --json`


async def test_no_warning_when_the_agents_were_alike(pool: asyncpg.Pool) -> None:
    await _models(pool)
    await _harmful_history(pool)
    await _before(pool, edge=0.0, hours=range(16, 24))
    readout = await ab_readout(pool, GATE)
    assert readout.balance is not None and readout.balance.windows == 8 and not readout.balance.imbalanced
    assert not any("before rollout" in w for w in readout.warnings), readout.warnings


async def test_the_engine_says_the_balance_warning_once_per_rollout_as_its_figures_move() -> None:
    """The two groups are the agents seen so far in the rollout's windows, so the warning's counts and
    interval move as agents appear: said once per rollout, not once per wording (a toast each window)."""
    from babylon_console.core.checkpoints.balance import ArmBalance
    from babylon_console.core.checkpoints.evidence import ABReadout
    from babylon_console.core.engine.rollout_watch import RolloutWatch

    def readout(agents: int, low: float) -> ABReadout:
        balance = ArmBalance(first_window="2026-11-23T00:00", windows=24, candidate_agents=agents,
                             live_agents=agents, share=low + 0.1, ci_low=low, ci_high=low + 0.2)
        warning = balance_warning(balance, 3)
        assert warning is not None
        return ABReadout(rollout_id=3, candidate_model_id=CAND[0], live_model_id=LIVE[0], balance=balance,
                         warnings=[warning], verdict="hold")

    class Readouts:
        def __init__(self) -> None:
            self.queue = [readout(1, 0.05), readout(2, 0.08), readout(3, 0.02)]

        async def get(self, pool: object) -> ABReadout:
            return self.queue.pop(0)

    said: list[str] = []

    async def emit(event: object, conn: object = None) -> None:
        said.append(event.message)  # type: ignore[attr-defined]

    watch = RolloutWatch(None, GATE, auto_rollback=False, run_id="run-1", emit=emit)  # type: ignore[arg-type]
    watch._readouts = Readouts()  # type: ignore[assignment]
    for _ in range(3):
        await watch.watch()
    assert len(said) == 1 and "candidate arm's 1 agents already out-earned" in said[0], said

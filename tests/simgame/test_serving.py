"""The serving rule of the simulated market (`core.simgame.serving`): which agents trade with which checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from babylon_console.core.checkpoints.registry import Registry, Served, serving
from babylon_console.core.simgame.serving import ServedPolicies, assignment

from ..tui.conftest import insert_model

LIVE = Served("m-live", "offline://p/run:step1", "live", 0.5)
CANDIDATE = Served("m-cand", "offline://p/run:step2", "candidate", 0.5)


def test_no_live_model_drives_no_agent() -> None:
    assert assignment(12, 3, []) == [(11, None), (10, None), (9, None)]


def test_the_last_agents_trade_with_the_live_model() -> None:
    assert assignment(12, 3, [Served("m", "offline://p/r:step1", "live", 1.0)]) == [
        (11, Served("m", "offline://p/r:step1", "live", 1.0)),
        (10, Served("m", "offline://p/r:step1", "live", 1.0)),
        (9, Served("m", "offline://p/r:step1", "live", 1.0)),
    ]


def test_a_rollout_gives_the_candidate_its_share_of_the_driven_agents() -> None:
    rows = assignment(12, 4, [LIVE, CANDIDATE])
    assert [s.role for _, s in rows] == ["candidate", "candidate", "live", "live"]
    assert [i for i, _ in rows] == [11, 10, 9, 8]
    assert len(assignment(2, 5, [LIVE])) == 2  # never more agents than the market has


async def test_serving_reads_what_the_registry_serves(pool: asyncpg.Pool) -> None:
    await insert_model(pool, 1)
    await insert_model(pool, 2)
    registry = Registry(pool)
    await registry.promote("babylon-agent-step0001", share=1.0, operator="test")
    await registry.promote("babylon-agent-step0002", share=0.25, operator="test")
    rows = {s.role: s for s in await serving(pool)}
    assert rows["live"].model_id == "babylon-agent-step0001" and abs(rows["live"].share - 0.75) < 1e-9
    assert rows["candidate"].storage_path == "offline://babylon-console/babylon-agent:step2"


class _Sim:
    def __init__(self, n: int) -> None:
        self.agents = list(range(n))
        self.policies: dict[int, Any] = {}

    def set_policy(self, index: int, policy: Any) -> None:
        self.policies[index] = policy


async def test_before_window_sets_policies_and_warns_once_for_a_checkpoint_it_cannot_load(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    warnings: list[str] = []
    served = ServedPolicies(pool, tmp_path, policy_agents=2, on_warning=warnings.append)
    served.served = [Served("m", "wandb-artifact:///acme/p/m:step3", "live", 1.0)]
    sim = _Sim(5)
    served.before_window(sim, "w1")
    served.before_window(sim, "w2")
    assert sim.policies == {4: None, 3: None}  # not an offline checkpoint: agents keep their strategy
    assert len(warnings) == 1 and "cannot drive simulated agents" in warnings[0]

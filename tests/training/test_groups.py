from __future__ import annotations

import pytest

from babylon_console.core.game.parsing import parse_trajectory
from babylon_console.core.training.groups import (
    DropoutError,
    apply_dropout,
    build_window_group,
    dropout_rate,
    select_members,
    trajectory_messages,
)
from tests.factories import as_mapping, step, trajectory_row

W = "2026-11-24T10:00"


def _traj(agent: str, steps: list[dict] | None = None, pnl: float = 0.0, n: int = 3):
    import orjson

    steps_json = orjson.dumps(steps).decode() if steps is not None else None
    return parse_trajectory(as_mapping(trajectory_row(W, agent, steps=n, pnl=pnl, steps_json=steps_json)))


def test_messages_follow_every_call_of_every_step_in_order() -> None:
    steps = [
        step(1, calls=2),
        {"stepNumber": 2, "reward": 0.0},  # no calls: skipped and counted
        step(0),
    ]
    built = trajectory_messages(_traj("a", steps))
    assert [m["role"] for m in built.messages] == ["system", "user", "assistant", "user", "assistant", "user",
                                                   "assistant"]
    assert built.messages[1]["content"] == "state 0"  # step 0 first, whatever the stored order
    assert built.turns == 3 and built.steps_without_calls == 1
    assert all("outcome" not in m["content"].lower() for m in built.messages)


@pytest.mark.parametrize(("total", "target", "cap", "expected"), [
    (1000, 2000, 0.5, 0.0), (4000, 2000, 0.5, 0.5), (2500, 2000, 0.5, 0.2), (10_000, 2000, 0.3, 0.3), (0, 5, 0.5, 0.0),
])
def test_dropout_rate(total: int, target: int, cap: float, expected: float) -> None:
    assert dropout_rate(total, target, cap) == pytest.approx(expected)


def test_dropout_rate_validates() -> None:
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(DropoutError, match="max_dropout"):
            dropout_rate(10, 5, bad)
    with pytest.raises(DropoutError, match="target"):
        dropout_rate(10, 0, 0.5)


def test_one_per_agent_capped_and_stratified_by_pnl() -> None:
    trajectories = [_traj(f"agent-{i}", pnl=float(i), n=3) for i in range(20)] + [_traj("agent-0", n=9)]
    members = select_members(trajectories, max_per_group=5, seed=1)
    assert len(members) == 5 and len({t.agent_id for t in members}) == 5
    pnls = sorted(t.final_pnl for t in members)
    assert pnls[0] < 4 and pnls[-1] >= 16  # the spread of the window is kept
    small = select_members(trajectories, max_per_group=50, seed=1)
    assert len(small) == 20
    assert next(t for t in small if t.agent_id == "agent-0").episode_length == 9  # its longest


def test_dropout_keeps_two_and_is_seeded() -> None:
    members = [_traj(f"a{i}") for i in range(10)]
    assert apply_dropout(members, 0.5, seed=3) == apply_dropout(members, 0.5, seed=3)
    assert len(apply_dropout(members, 0.99, seed=3)) >= 2
    group = build_window_group(W, members, max_per_group=8, dropout=0.0, seed=0)
    assert len(group.trajectories) == 8 and len(group.messages) == 8

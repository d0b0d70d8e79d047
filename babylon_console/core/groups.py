"""From a window's trajectories to training material: messages, members, dropout, ART groups.

Messages are the agent's own system prompt followed by every LLM call of every step, in order
(user prompt, response). Steps without calls are skipped and counted. The ground truth is never
put into these messages: it reaches only the judge.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .models import Trajectory

if TYPE_CHECKING:  # art costs ~3 s to import: only where groups are really built
    import art

Message = dict[str, str]


class DropoutError(ValueError):
    pass


@dataclass(slots=True)
class TrajectoryMessages:
    messages: list[Message]
    turns: int
    steps_without_calls: int


def trajectory_messages(trajectory: Trajectory) -> TrajectoryMessages:
    system = next(
        (c.system_prompt for s in trajectory.steps for c in s.llm_calls if c.system_prompt), None
    )
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    turns = skipped = 0
    for step in sorted(trajectory.steps, key=lambda s: s.step_number):
        calls = [c for c in step.llm_calls if c.user_prompt or c.response]
        if not calls:
            skipped += 1
            continue
        for call in calls:
            messages.append({"role": "user", "content": call.user_prompt or ""})
            messages.append({"role": "assistant", "content": call.response or ""})
            turns += 1
    return TrajectoryMessages(messages, turns, skipped)


def dropout_rate(total: int, target: int, max_dropout: float) -> float:
    """min(max_dropout, 1 - target/total), never negative (DESIGN section 1.3)."""
    if not 0 <= max_dropout < 1 or math.isnan(max_dropout):
        raise DropoutError(f"max_dropout must be in [0, 1), got {max_dropout}")
    if target <= 0:
        raise DropoutError(f"target must be positive, got {target}")
    if total <= 0:
        return 0.0
    return min(max_dropout, max(0.0, 1.0 - target / total))


def select_members(trajectories: Sequence[Trajectory], max_per_group: int, seed: int) -> list[Trajectory]:
    """One trajectory per agent (its longest, ties by id), then, when there are more agents than
    `max_per_group`, a stratified pick across the P&L range so the group keeps its spread."""
    by_agent: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        by_agent[t.agent_id].append(t)
    one_each = [
        max(ts, key=lambda t: (len(t.steps), t.trajectory_id)) for _, ts in sorted(by_agent.items())
    ]
    if len(one_each) <= max_per_group:
        return one_each
    ranked = sorted(one_each, key=lambda t: (t.final_pnl if t.final_pnl is not None else 0.0, t.trajectory_id))
    rng = random.Random(seed)
    strata = [ranked[round(i * len(ranked) / max_per_group): round((i + 1) * len(ranked) / max_per_group)]
              for i in range(max_per_group)]
    return [rng.choice(s) for s in strata if s]


def apply_dropout(members: list[Trajectory], rate: float, seed: int, keep_at_least: int = 2) -> list[Trajectory]:
    if rate <= 0:
        return members
    rng = random.Random(seed)
    kept = [t for t in members if rng.random() >= rate]
    if len(kept) < keep_at_least:  # a group needs two to be relative
        kept = members[:keep_at_least]
    return kept


@dataclass(slots=True)
class WindowGroup:
    """One window's training material, before and after judging."""

    window_id: str
    trajectories: list[Trajectory]
    messages: list[list[Message]]
    steps_without_calls: int
    rewards: list[float] = field(default_factory=list)

    @property
    def trajectory_ids(self) -> list[str]:
        return [t.trajectory_id for t in self.trajectories]

    def to_art(self) -> art.TrajectoryGroup:
        import art

        if len(self.rewards) != len(self.trajectories):
            raise ValueError(f"window {self.window_id}: {len(self.rewards)} rewards for "
                             f"{len(self.trajectories)} trajectories")
        items = []
        for t, msgs, reward in zip(self.trajectories, self.messages, self.rewards, strict=True):
            metrics: dict[str, float | int | bool] = {
                "final_pnl": float(t.final_pnl or 0.0),
                "trades": int(t.trades_executed or 0),
                "errors": t.error_count,
                "steps": len(t.steps),
            }
            metadata: dict[str, Any] = {"window_id": self.window_id, "agent_id": t.agent_id,
                                        "trajectory_id": t.trajectory_id}
            items.append(art.Trajectory(messages_and_choices=msgs, reward=reward, metrics=metrics,
                                        metadata=metadata))
        return art.TrajectoryGroup(items, metadata={"scenario_id": self.window_id})


def build_window_group(window_id: str, trajectories: Sequence[Trajectory], *, max_per_group: int,
                       dropout: float, seed: int) -> WindowGroup:
    members = select_members(trajectories, max_per_group, seed)
    members = apply_dropout(members, dropout, seed)
    built = [trajectory_messages(t) for t in members]
    usable = [(t, b) for t, b in zip(members, built, strict=True) if b.turns > 0]
    return WindowGroup(
        window_id=window_id,
        trajectories=[t for t, _ in usable],
        messages=[b.messages for _, b in usable],
        steps_without_calls=sum(b.steps_without_calls for b in built),
    )

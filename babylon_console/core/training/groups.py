"""From a window's trajectories to training material: recorded calls, members, dropout, ART groups.

Training: each recorded LLM call is one request the agent made, so it becomes one trainable
assistant turn of its own: the call's system + user prompt -> its response, as an openai `Choice`
carrying `prompt_token_ids` / `token_ids` (see `tokenization.py`). The first call of a trajectory
is its `messages_and_choices`; every further call is an `additional_histories` entry, so ART
trains calls that do not continue each other as separate sequences. Calls come from `stepsJson`;
a step without calls there takes its calls from `llm_call_logs` when the game logged them.

Judging: judges read the text (`messages`: the agent's system prompt and every call's user prompt
and response in order). The ground truth never enters either: it reaches only the judge.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..game.parsing import paused_gc
from ..game.rows import RecordedCall, Trajectory, WindowGroundTruth
from .judges.base import JudgeInput
from .tokenization import DEFAULT_MAX_SEQ_LENGTH, CallTokens, encode_calls

if TYPE_CHECKING:  # art costs ~3 s to import: only where groups are really built
    import art

Message = dict[str, str]
LoggedCalls = Mapping[str, Mapping[int, list[RecordedCall]]]  # trajectoryId -> step number -> calls


class DropoutError(InvalidInput, ValueError):
    title = "Invalid dropout settings"


@dataclass(slots=True)
class TrajectoryMessages:
    messages: list[Message]
    turns: int
    steps_without_calls: int


@dataclass(slots=True)
class TrajectoryCalls:
    calls: list[RecordedCall]
    steps_without_calls: int
    from_logs: int = 0


def trajectory_calls(trajectory: Trajectory, logged: Mapping[int, list[RecordedCall]] | None = None
                     ) -> TrajectoryCalls:
    """Every recorded call in step order. A call without its own system prompt gets the agent's
    (the first one the trajectory records): the game writes it once per agent on some paths."""
    agent_system = next(
        (c.system_prompt for s in trajectory.steps for c in s.llm_calls if c.system_prompt), ""
    )
    calls: list[RecordedCall] = []
    skipped = from_logs = 0
    for step in sorted(trajectory.steps, key=lambda s: s.step_number):
        recorded = [
            RecordedCall(step.step_number, c.system_prompt or agent_system, c.user_prompt or "", c.response or "",
                         c.purpose, c.action_type)
            for c in step.llm_calls if c.user_prompt or c.response
        ]
        if not recorded and logged:
            recorded = list(logged.get(step.step_number, ()))
            from_logs += len(recorded)
        if not recorded:
            skipped += 1
            continue
        calls.extend(recorded)
    return TrajectoryCalls(calls, skipped, from_logs)


def judge_messages(calls: Sequence[RecordedCall]) -> list[Message]:
    """The text a judge reads: the agent's system prompt, then each call's prompt and response."""
    system = next((c.system_prompt for c in calls if c.system_prompt), None)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    for call in calls:
        messages.append({"role": "user", "content": call.user_prompt})
        messages.append({"role": "assistant", "content": call.response})
    return messages


def trajectory_messages(trajectory: Trajectory) -> TrajectoryMessages:
    built = trajectory_calls(trajectory)
    return TrajectoryMessages(judge_messages(built.calls), len(built.calls), built.steps_without_calls)


def dropout_rate(total: int, target: int, max_dropout: float) -> float:
    """min(max_dropout, 1 - target/total), never negative."""
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
class TokenStats:
    """What tokenization kept and dropped in one window, by rule."""

    calls: int = 0
    trainable_calls: int = 0
    dropped_too_long: int = 0
    dropped_empty: int = 0
    trajectories_without_trainable_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: TokenStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class WindowGroup:
    """One window's training material, before and after judging."""

    window_id: str
    trajectories: list[Trajectory]
    calls: list[list[RecordedCall]]
    steps_without_calls: int
    calls_from_logs: int = 0
    tokens: list[list[CallTokens | None]] | None = None
    token_stats: TokenStats = field(default_factory=TokenStats)
    rewards: list[float] = field(default_factory=list)

    @property
    def trajectory_ids(self) -> list[str]:
        return [t.trajectory_id for t in self.trajectories]

    @property
    def messages(self) -> list[list[Message]]:
        return [judge_messages(c) for c in self.calls]

    def judge_input(self, ground_truth: WindowGroundTruth) -> JudgeInput:
        """What a judge reads of this group: its members, the text of every call, the window's truth."""
        return JudgeInput(window_id=self.window_id, ground_truth=ground_truth, trajectories=self.trajectories,
                          messages=self.messages)

    def tokenize(self, tokenizer: Any, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH) -> TokenStats:
        """Token ids for every call; trajectories left with no trainable call leave the group."""
        flat = [c for calls in self.calls for c in calls]
        with paused_gc():  # millions of acyclic token ids: no collection needs to walk them
            encoded = encode_calls(tokenizer, flat, max_seq_length)
        stats = TokenStats(calls=len(flat), dropped_too_long=encoded.dropped_too_long,
                           dropped_empty=encoded.dropped_empty)
        kept_t: list[Trajectory] = []
        kept_c: list[list[RecordedCall]] = []
        kept_tokens: list[list[CallTokens | None]] = []
        i = 0
        for trajectory, calls in zip(self.trajectories, self.calls, strict=True):
            tokens = encoded.tokens[i:i + len(calls)]
            i += len(calls)
            usable = [t for t in tokens if t is not None]
            if not usable:
                stats.trajectories_without_trainable_calls += 1
                continue
            stats.trainable_calls += len(usable)
            stats.prompt_tokens += sum(len(t.prompt_token_ids) for t in usable)
            stats.completion_tokens += sum(len(t.token_ids) for t in usable)
            kept_t.append(trajectory)
            kept_c.append(calls)
            kept_tokens.append(tokens)
        self.trajectories, self.calls, self.tokens = kept_t, kept_c, kept_tokens
        self.token_stats = stats
        return stats

    def to_art(self) -> art.TrajectoryGroup:
        import art

        if self.tokens is None:
            raise ValueError(f"window {self.window_id}: tokenize() the group before building ART trajectories")
        if len(self.rewards) != len(self.trajectories):
            raise ValueError(f"window {self.window_id}: {len(self.rewards)} rewards for "
                             f"{len(self.trajectories)} trajectories")
        items = []
        for t, calls, tokens, reward in zip(self.trajectories, self.calls, self.tokens, self.rewards, strict=True):
            metrics: dict[str, float | int | bool] = {
                "final_pnl": float(t.final_pnl or 0.0),
                "trades": int(t.trades_executed or 0),
                "errors": t.error_count,
                "steps": len(t.steps),
            }
            metadata: dict[str, Any] = {"window_id": self.window_id, "agent_id": t.agent_id,
                                        "trajectory_id": t.trajectory_id}
            items.append(art_trajectory(calls, tokens, reward, metrics, metadata))
        return art.TrajectoryGroup(items, metadata={"scenario_id": self.window_id})


def art_trajectory(calls: Sequence[RecordedCall], tokens: Sequence[CallTokens | None], reward: float,
                   metrics: dict[str, float | int | bool], metadata: dict[str, Any]) -> art.Trajectory:
    """One `art.Trajectory`: each tokenized call as its own history ending in a trainable `Choice`
    (the first as `messages_and_choices`, the rest as `additional_histories`)."""
    import art
    from openai.types.chat import ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice

    histories: list[list[Any]] = []
    for call, tok in zip(calls, tokens, strict=True):
        if tok is None:
            continue
        history: list[Any] = [{"role": "system", "content": call.system_prompt}] if call.system_prompt else []
        history.append({"role": "user", "content": call.user_prompt})
        history.append(Choice(
            finish_reason="stop", index=0, logprobs=None,
            message=ChatCompletionMessage(role="assistant", content=call.response),
            prompt_token_ids=tok.prompt_token_ids, token_ids=tok.token_ids,
        ))
        histories.append(history)
    if not histories:
        raise ValueError(f"trajectory {metadata.get('trajectory_id')}: no tokenized call to train")
    return art.Trajectory(
        messages_and_choices=histories[0],
        additional_histories=[art.trajectories.LegacyHistory(messages_and_choices=h) for h in histories[1:]],
        reward=reward, metrics={**metrics, "calls": len(histories)}, metadata=metadata,
    )


def build_window_group(window_id: str, trajectories: Sequence[Trajectory], *, max_per_group: int,
                       dropout: float, seed: int, logged: LoggedCalls | None = None) -> WindowGroup:
    members = select_members(trajectories, max_per_group, seed)
    members = apply_dropout(members, dropout, seed)
    built = [trajectory_calls(t, (logged or {}).get(t.trajectory_id)) for t in members]
    usable = [(t, b) for t, b in zip(members, built, strict=True) if b.calls]
    return WindowGroup(
        window_id=window_id,
        trajectories=[t for t, _ in usable],
        calls=[b.calls for _, b in usable],
        steps_without_calls=sum(b.steps_without_calls for b in built),
        calls_from_logs=sum(b.from_logs for _, b in usable),
    )


def trainable_tokens(groups: Sequence[Any]) -> int:
    """Assistant tokens ART would train in these `art.TrajectoryGroup`s: the completion tokens of
    every `Choice` with token ids, except where ART's advantage is zero (a group whose rewards are
    all equal, a trajectory whose reward is the group mean): ART drops those."""
    from art.utils.grpo import rewards_have_zero_variance  # ART's own rule (rewards within 1e-12)
    from openai.types.chat.chat_completion import Choice

    total = 0
    for group in groups:
        rewards = [t.reward for t in group.trajectories]
        if rewards_have_zero_variance(rewards):
            continue
        mean = sum(rewards) / len(rewards)
        for t in group.trajectories:
            if t.reward - mean == 0:  # zero advantage: ART drops the trajectory
                continue
            for history in [t.messages_and_choices, *(h.messages_and_choices for h in t.additional_histories)]:
                for item in history:
                    if isinstance(item, Choice):
                        total += len((item.model_extra or {}).get("token_ids") or ())
    return total

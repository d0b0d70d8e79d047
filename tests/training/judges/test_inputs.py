"""Judge tests judge what the engine judges: every recorded call of a trajectory, whatever its purpose."""

from __future__ import annotations

import json

import pytest

from babylon_console.core.training.judges import JudgeInput, RulerJudge

from .fakes import JudgeFake, ruler_scores, user_text
from .helpers import simulated_window

# litellm's known serializer warning (ART silences it at import, but pytest resets warning filters).
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


@pytest.fixture(scope="module")
def window() -> JudgeInput:
    return simulated_window(seed=3, n_agents=6, steps=10)


def non_action_calls(window: JudgeInput) -> list[tuple[int, str, str]]:
    """(trajectory index, user prompt, response) of each recorded call that is not an action."""
    return [
        (i, call.user_prompt or "", call.response or "")
        for i, t in enumerate(window.trajectories) for step in t.steps for call in step.llm_calls
        if call.purpose != "action"
    ]


def test_messages_hold_every_recorded_call_in_step_order(window: JudgeInput) -> None:
    assert non_action_calls(window), "the simulated window records calls other than actions"
    for t, messages in zip(window.trajectories, window.messages, strict=True):
        calls = [c for s in sorted(t.steps, key=lambda s: s.step_number) for c in s.llm_calls]
        assert messages[0] == {"role": "system", "content": calls[0].system_prompt}
        assert messages[1:] == [
            {"role": role, "content": text}
            for c in calls for role, text in (("user", c.user_prompt), ("assistant", c.response))
        ]


async def test_the_judge_reads_calls_that_are_not_actions(window: JudgeInput) -> None:
    async with JudgeFake(ruler_scores()) as server:
        judge = RulerJudge("judge-small", base_url=server.base_url, api_key="sk-test", timeout_s=5, backoff_s=0.01)
        await judge.judge(window)
    [body] = server.requests
    text = user_text(body)
    for i, prompt, response in non_action_calls(window):
        own = text.split(f'<trajectory id="{i + 1}">', 1)[1].split("</trajectory>", 1)[0]
        # As turns of their own: the simulated agent also quotes its analysis in the next action's prompt.
        assert json.dumps({"role": "user", "content": prompt}) in own
        assert json.dumps({"role": "assistant", "content": response}) in own

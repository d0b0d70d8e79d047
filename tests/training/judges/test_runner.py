"""judge_windows: bounded concurrency, input order kept, failures isolated, callbacks per window."""

from __future__ import annotations

import asyncio

import pytest

from babylon_console.core.game.rows import WindowGroundTruth
from babylon_console.core.training.judges import (
    JudgeError,
    JudgeInput,
    OutcomeJudge,
    RulerJudge,
    TrajectoryScore,
    WindowJudgment,
    judge_windows,
)

from .fakes import JudgeFake, Tracked, ruler_scores
from .helpers import simulated_window

pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


def window(i: int) -> JudgeInput:
    wid = f"2026-01-01T{i:02d}:00"
    return JudgeInput(window_id=wid, ground_truth=WindowGroundTruth(window_id=wid), trajectories=[], messages=[])


class CountingJudge:
    """Sleeps a little per window (longer for early windows so they finish out of order)."""

    name = "counting"

    def __init__(self, fail: set[str] = frozenset(), crash: set[str] = frozenset()) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail = fail
        self.crash = crash

    async def judge(self, item: JudgeInput) -> WindowJudgment:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02 + 0.002 * (24 - int(item.window_id[11:13])))
        finally:
            self.in_flight -= 1
        if item.window_id in self.fail:
            raise JudgeError(item.window_id, "scripted failure", attempts=3)
        if item.window_id in self.crash:
            raise KeyError("bug")
        return WindowJudgment(window_id=item.window_id, judge=self.name,
                              scores=[TrajectoryScore(trajectory_id="t", score=0.5, explanation="ok")])


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_concurrency_bound_respected(concurrency: int) -> None:
    judge = CountingJudge()
    items = [window(i) for i in range(20)]
    out = await judge_windows(judge, items, concurrency)
    assert judge.max_in_flight == min(concurrency, len(items))
    assert [r.window_id for r in out] == [i.window_id for i in items]


async def test_failures_isolated_and_callbacks_called_as_windows_finish() -> None:
    items = [window(i) for i in range(10)]
    judge = CountingJudge(fail={items[3].window_id}, crash={items[6].window_id})
    seen: list[str] = []

    async def on_result(result: WindowJudgment | JudgeError) -> None:
        seen.append(result.window_id)

    out = await judge_windows(judge, items, concurrency=4, on_result=on_result)
    assert isinstance(out[3], JudgeError) and out[3].attempts == 3
    assert isinstance(out[6], JudgeError) and "KeyError" in str(out[6]) and items[6].window_id in str(out[6])
    assert all(isinstance(out[i], WindowJudgment) for i in range(10) if i not in (3, 6))
    assert sorted(seen) == sorted(i.window_id for i in items)
    assert seen != [i.window_id for i in items]  # completion order, not input order


async def test_sync_callback_that_raises_does_not_stop_judging() -> None:
    calls: list[str] = []

    def on_result(result: WindowJudgment | JudgeError) -> None:
        calls.append(result.window_id)
        raise RuntimeError("callback bug")

    out = await judge_windows(OutcomeJudge(), [window(i) for i in range(3)], 2, on_result)
    assert len(calls) == 3 and all(isinstance(r, WindowJudgment) for r in out)


async def test_empty_and_bad_concurrency() -> None:
    assert await judge_windows(OutcomeJudge(), [], 4) == []
    with pytest.raises(ValueError):
        await judge_windows(OutcomeJudge(), [window(1)], 0)


async def test_ruler_requests_bounded_by_concurrency() -> None:
    items = [simulated_window(seed=2, n_agents=3, hour=h, steps=3) for h in range(6)]
    tracked = Tracked(ruler_scores(), hold_s=0.1)
    async with JudgeFake(tracked) as server:
        judge = RulerJudge("judge-small", base_url=server.base_url, timeout_s=5)
        out = await judge_windows(judge, items, concurrency=2)
    assert tracked.max_in_flight == 2 and len(server.requests) == 6
    assert all(isinstance(r, WindowJudgment) and len(r.scores) == 3 for r in out)


def test_make_judge_from_settings_and_judge_error_pickles() -> None:
    import pickle

    from babylon_console.core.config import Settings
    from babylon_console.core.training.judges import make_judge

    assert isinstance(make_judge(Settings()), OutcomeJudge)
    judge = make_judge(Settings(BABYLON_JUDGE="ruler", BABYLON_JUDGE_BASE_URL="http://127.0.0.1:9/v1",
                                openai_api_key="sk-x"))
    assert isinstance(judge, RulerJudge) and judge.base_url == "http://127.0.0.1:9/v1"
    assert judge.litellm_params()["api_key"] == "sk-x" and "sk-x" not in repr(judge)
    err = pickle.loads(pickle.dumps(JudgeError("2026-01-01T00:00", "why", attempts=2)))
    assert str(err) == "window 2026-01-01T00:00: why" and err.attempts == 2

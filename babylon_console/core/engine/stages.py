"""The stages of an iteration before training: select ready windows, read them into groups, judge
them. Only closed, ready windows are selected, and a window is never trained twice (unless `force`)."""

from __future__ import annotations

import asyncio
import statistics
import zlib
from collections.abc import Collection

from ..clock import Clock
from ..errors import is_outage
from ..events import (
    EngineFailure,
    EngineWarning,
    WindowJudged,
    WindowSelected,
    WindowSkipped,
)
from ..game.market_clock import DatabaseClock
from ..game.store import GameStore
from ..game.windows import WindowReadiness, WindowState
from ..training import batches
from ..training.groups import TokenStats, WindowGroup, build_window_group, dropout_rate
from ..training.judges import Judge, JudgeError, JudgeInput, WindowJudgment, judge_windows
from .guard import RunGuard
from .run_config import EngineConfig
from .run_state import Emit, RunSummary
from .runs import LockLost
from .session import TrainingSession
from .training import record_unusable

Judged = list[tuple[WindowGroup, JudgeInput]]


def select_windows(readiness: list[WindowReadiness], limit: int, force: bool,
                   passed_over: Collection[str] = ()) -> list[str]:
    """Oldest ready windows first; with `force`, closed windows already trained on (or found
    unusable) by this model qualify too. `passed_over`: windows this run already judged without a
    training signal (every agent scored alike): left to the next run, which may judge them again, so
    that they neither block newer windows nor have the run judge them over and over."""
    def eligible(w: WindowReadiness) -> bool:
        if w.window_id in passed_over:
            return False
        if w.ready:
            return True
        return (force and w.closed and w.state in (WindowState.TRAINED, WindowState.UNUSABLE)
                and w.qualified_agents >= 1)
    return sorted(w.window_id for w in readiness if eligible(w))[:limit]


class Stages:
    """Select, read and judge for one run; the loop sequences them and trains on what they give."""

    def __init__(self, store: GameStore, config: EngineConfig, session: TrainingSession, judge: Judge,
                 summary: RunSummary, *, run_id: str, clock: Clock, guard: RunGuard, emit: Emit) -> None:
        self.store = store
        self.config = config
        self.session = session
        self._judge = judge
        self.summary = summary
        self.run_id = run_id
        self.clock = clock
        self.guard = guard
        self._emit = emit
        self.flat_windows: set[str] = set()  # judged without a reward spread in this run: not selected again

    async def read_holdout(self, check: bool = False) -> None:
        """Adopt the database's hold-out share (read at run start and before each selection);
        `check`: first refuse a configured share that disagrees."""
        from ..checkpoints.holdout import check_setting_agrees, current_holdout, share_of

        record = await current_holdout(self.store.pool)
        if check:
            check_setting_agrees(record, self.config.holdout_share)
        self.config.holdout_share = share_of(record)

    async def select(self) -> list[str]:
        """The windows of the next iteration (none: nothing is ready)."""
        await self.read_holdout()  # changed by `babylon-console holdout` meanwhile: honoured from this selection
        if isinstance(self.clock, DatabaseClock):
            await self.clock.refresh()
        readiness = await self.store.window_readiness(self.config.criteria, self.clock.now(),
                                                      self.config.lookback_hours, self.config.training_key)
        return select_windows(readiness, self.config.windows_per_iteration, self.config.force,
                              passed_over=self.flat_windows)

    async def read(self, chosen: list[str]) -> Judged | None:
        """The chosen windows' groups, to judge; None when reading them took too long (said, and they
        stay free)."""
        try:
            return await asyncio.wait_for(self._build_groups(chosen), self.config.read_timeout_s)
        except TimeoutError:
            self.summary.windows_failed.extend(chosen)
            await self._emit(EngineFailure(stage="read", windows=chosen, message=(
                f"reading {len(chosen)} window(s) did not finish within {self.config.read_timeout_s:g} s "
                "(BABYLON_READ_TIMEOUT_S); they stay free for the next iteration")))
            return None

    async def _build_groups(self, window_ids: list[str]) -> Judged:
        loaded = []
        for window_id in window_ids:
            data = await self.store.window_trajectories(window_id)
            if data.rejections:
                await self._emit(EngineWarning(
                    window_id=window_id, rejected=len(data.rejections),
                    message=f"window {window_id}: {len(data.rejections)} unusable trajectories skipped "
                            f"(first: {data.rejections[0].reason})"))
            loaded.append((window_id, data.trajectories, await self.store.ground_truth(window_id)))
        total = sum(len(t) for _, t, _ in loaded)
        rate = dropout_rate(total, self.config.target_trajectories, self.config.max_dropout)
        result = []
        # loaded at start
        tokenizer = self.session.tokenizer or await asyncio.to_thread(self.session.ensure_tokenizer)
        for window_id, trajectories, truth in loaded:
            lacking = [t.trajectory_id for t in trajectories
                       if any(not s.llm_calls for s in t.steps)]  # steps whose calls only llm_call_logs may hold
            logged = await self.store.logged_calls(lacking)
            group = build_window_group(window_id, trajectories, max_per_group=self.config.max_per_group,
                                       dropout=rate, seed=self.config.seed + zlib.crc32(window_id.encode()),
                                       logged=logged)
            stats = await asyncio.to_thread(group.tokenize, tokenizer, self.config.max_seq_length)
            if stats.dropped_too_long:
                await self._emit(EngineWarning(
                    window_id=window_id, dropped_too_long=stats.dropped_too_long,
                    message=f"window {window_id}: {stats.dropped_too_long} call(s) longer than "
                            f"{self.config.max_seq_length} tokens dropped (never truncated)"))
            if len(group.trajectories) < 2:
                reason = _unusable_reason(stats, len(trajectories))
                self.summary.windows_skipped.append(window_id)
                await record_unusable(self.guard, self.config, window_id, reason)  # not selected again for this model
                await self._emit(WindowSkipped(window_id=window_id, message=f"window {window_id}: {reason}"))
                continue
            await self._emit(WindowSelected(
                window_id=window_id, trajectories=len(group.trajectories), available=len(trajectories),
                dropout=rate, steps_without_calls=group.steps_without_calls,
                calls_from_logs=group.calls_from_logs, trainable_calls=stats.trainable_calls,
                calls_dropped=stats.dropped_too_long + stats.dropped_empty,
                completion_tokens=stats.completion_tokens,
                message=f"window {window_id}: {len(group.trajectories)} of {len(trajectories)} trajectories, "
                        f"{stats.trainable_calls} trainable calls ({stats.completion_tokens} response tokens)"))
            result.append((group, group.judge_input(truth)))  # what the judge tests judge too
        return result

    async def judge(self, groups: Judged) -> list[WindowGroup]:
        """Judge the groups (in parallel); the ones whose scores differ, in window order."""
        by_window = {g.window_id: g for g, _ in groups}
        judged: list[WindowGroup] = []

        lost: list[BaseException] = []  # the database or the lock, lost while judging: raised after

        async def on_result(result: WindowJudgment | JudgeError) -> None:
            try:
                await record(result)
            except Exception as exc:
                if not (isinstance(exc, LockLost) or is_outage(exc)):
                    raise
                lost.append(exc)

        async def record(result: WindowJudgment | JudgeError) -> None:
            if isinstance(result, JudgeError):
                self.summary.windows_failed.append(result.window_id)
                await self._emit(EngineFailure(window_id=result.window_id, stage="judge",
                                               message=f"judging failed: {result}"))
                return
            group = by_window[result.window_id]
            scores = [s.score for s in result.scores]
            async with self.guard.write() as conn:
                await batches.save_judgments(
                    conn, result.window_id, result.judge, result.judge_model, self.run_id,
                    [(s.trajectory_id, s.score, s.explanation) for s in result.scores], result.cost_usd)
                await self._emit(WindowJudged(
                    window_id=result.window_id, judge=result.judge, n=len(scores),
                    mean=statistics.fmean(scores), std=statistics.pstdev(scores),
                    cost_usd=result.cost_usd, duration_s=result.duration_s, attempts=result.attempts,
                ), conn)
            if max(scores) - min(scores) < 1e-9:
                self.summary.windows_skipped.append(result.window_id)
                self.flat_windows.add(result.window_id)
                await self._emit(EngineWarning(window_id=result.window_id,
                                               message=f"window {result.window_id}: all scores equal, "
                                                       "no training signal; skipped"))
                return
            group.rewards = scores
            judged.append(group)

        await judge_windows(self._judge, [item for _, item in groups], self.config.judge_concurrency,
                            on_result=on_result, timeout_s=self.config.judge_timeout_s)
        if lost:
            raise lost[0]
        return sorted(judged, key=lambda g: g.window_id)


def _unusable_reason(stats: TokenStats, available: int) -> str:
    if stats.calls == 0:
        return f"no recorded LLM calls in {available} trajectories (fewer than 2 usable trajectories)"
    if stats.trainable_calls == 0:
        return (f"none of {stats.calls} recorded calls is trainable ({stats.dropped_too_long} too long, "
                f"{stats.dropped_empty} with an empty prompt or response)")
    return (f"fewer than 2 trajectories with a trainable call ({stats.trajectories_without_trainable_calls} "
            f"without any; {stats.dropped_too_long} calls too long, {stats.dropped_empty} empty)")

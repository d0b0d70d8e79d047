"""The engine: one run's lifecycle and its iterations (select, read, judge, train, register, repeat).

`Engine(pool, config, ...)` with `run()`, `pause()`, `resume()`, `stop()`, `state`, `summary`,
`stage`; everything it does is announced as events (core/events.py). Pause, resume and stop are
safe to call from the console's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from .. import events
from ..clock import Clock
from ..config import Settings
from ..errors import is_outage
from ..events import (
    EngineFailure,
    EngineWarning,
    IterationStarted,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
)
from ..game.market_clock import DatabaseClock
from ..game.store import GameStore
from ..training.backends.factory import serverless_warnings
from ..training.judges import Judge, make_judge
from . import control, runs
from .backend_protocol import TrainingBackend
from .guard import RunGuard
from .health_watch import HealthWatch
from .rollout_watch import RolloutWatch
from .run_config import EngineConfig
from .run_state import EngineState, RunSummary
from .runs import LockLost
from .session import TrainingSession
from .stages import Stages
from .training import Trainer

log = logging.getLogger(__name__)


class _StopRequested(Exception):
    """Asked to stop: raised between stages, and instead of riding out an outage to its end."""


class Engine:
    """One run of one model, composed of its parts: the session it trains with, the guard of its lock
    and side tasks, the stages, the trainer and the rollout watch. A backend handed in is the caller's."""

    def __init__(
        self, pool: asyncpg.Pool, config: EngineConfig, *, settings: Settings | None = None,
        backend: TrainingBackend | None = None, judge: Judge | None = None, clock: Clock | None = None,
        run_id: str | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.settings = settings or Settings()
        self.store = GameStore(pool)
        # no clock given: the database's (one clock per database), re-read before each selection
        self.clock: Clock = clock or DatabaseClock(pool)
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self.judge = judge or make_judge(self.settings.with_overrides(judge=self.config.judge))
        self.state = EngineState.IDLE
        self.summary = RunSummary(run_id=self.run_id, state=self.state)
        self.on_state: Callable[[EngineState], None] | None = None
        self.stage: runs.Stage = runs.Stage.STARTING
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stop = asyncio.Event()
        self._outage_while_paused: BaseException | None = None  # the lock is in doubt until ridden out
        self.session = TrainingSession(config, self.settings, backend)
        self.guard = RunGuard(pool, config, self.run_id, self.summary, stop=self._stop, emit=self._emit,
                              apply_commands=self._apply_commands)
        self.health = HealthWatch(pool, config, self.settings.alarms(), run_id=self.run_id, guard=self.guard,
                                  emit=self._emit, pause=self.pause)
        self.trainer = Trainer(pool, config, self.settings, self.session, self.summary, run_id=self.run_id,
                               clock=self.clock, guard=self.guard, emit=self._emit, enter_stage=self._enter_stage,
                               stop=self._stop, watch_health=self.health.after_step)
        self.stages = Stages(self.store, config, self.session, self.judge, self.summary, run_id=self.run_id,
                             clock=self.clock, guard=self.guard, emit=self._emit)
        self.rollout = RolloutWatch(pool, self.settings.gate(), auto_rollback=config.auto_rollback,
                                    run_id=self.run_id, emit=self._emit)

    # -- control (safe to call from the console's event loop) ---------------------------------

    def pause(self, by: str = "operator", why: str | None = None) -> None:
        """`why`: the announcement's sentence when it says more than who paused (an alarm's figures)."""
        if self.state is EngineState.RUNNING:
            self._resumed.clear()
            self._set_state(EngineState.PAUSED)
            self.guard.announce("pause announcement", RunPaused(message=why or f"paused by {by}", operator=by))

    def resume(self, by: str = "operator") -> None:
        if self.state is EngineState.PAUSED:
            self._resumed.set()
            self._set_state(EngineState.RUNNING)
            self.guard.announce("resume announcement", RunResumed(message=f"resumed by {by}", operator=by))

    def stop(self) -> None:
        if self.state in (EngineState.RUNNING, EngineState.PAUSED, EngineState.IDLE):
            self._stop.set()
            self._resumed.set()
            self._set_state(EngineState.STOPPING)

    def _set_state(self, state: EngineState) -> None:
        self.state = state
        self.summary.state = state
        if self.on_state is not None:
            self.on_state(state)

    async def _checkpoint(self) -> None:
        """Between stages: wait while paused, leave when asked to stop. A pause holds training, not the
        rollout gate: while paused the rollout in progress is still watched every poll (automatic rollback
        included), so a harmful candidate does not keep serving while training waits for an operator."""
        while not self._resumed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resumed.wait(), self.config.poll_seconds)
            if not self._resumed.is_set():
                await self._unless_resumed(self._watch_while_paused())
        if self._stop.is_set():
            raise _StopRequested
        if self._outage_while_paused is not None:  # resumed before the database came back: first the lock
            await self._retake_lock()

    async def _unless_resumed(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` unless the run is resumed or stopped first; then it is cancelled (a rollback is one
        transaction): a stop never waits on a slow read or an unreachable database."""
        task, resumed = asyncio.ensure_future(work), asyncio.ensure_future(self._resumed.wait())
        try:
            await asyncio.wait((task, resumed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            resumed.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        if not task.cancelled():
            task.result()

    async def _watch_while_paused(self) -> None:
        try:
            await self.watch_rollout()
        except Exception as exc:
            if not is_outage(exc):
                raise
            if self._outage_while_paused is None:  # said once; the pause holds
                log.warning("rollout watch while paused: database unreachable: %s", exc)
            self._outage_while_paused = exc
            return
        if self._outage_while_paused is not None:
            # back: the restart took the model's lock with its connection, and the main loop, which would
            # take it again, sees no error once the database is up; so take it here, before anything else
            await self._retake_lock()

    async def _retake_lock(self) -> None:
        """The outage seen while paused, ridden out as the main loop rides one out: the lock taken again
        (LockLost if another engine took the model meanwhile)."""
        assert self._outage_while_paused is not None
        self.stage = runs.Stage.OUTAGE
        if not await self.guard.ride_out_outage(self._outage_while_paused):
            raise _StopRequested
        self._outage_while_paused = None

    async def _enter_stage(self, stage: runs.Stage) -> None:
        if stage is self.stage:
            return
        self.stage = stage
        await runs.set_stage(self.pool, self.run_id, stage)

    async def _emit(self, event: events.EventData, conn: asyncpg.Connection | None = None) -> events.Event:
        return await events.emit(conn or self.pool, event, run_id=self.run_id)

    async def _apply_commands(self) -> None:
        """Apply operators' pending commands to this run, acknowledging each."""
        for command in await control.pending(self.pool, self.run_id):
            before = self.state
            if command.command == "stop":
                # Acknowledged first: stopping ends the tasks that would acknowledge it afterwards.
                stoppable = before in (EngineState.RUNNING, EngineState.PAUSED, EngineState.IDLE)
                await control.ack(self.pool, command.id, f"{before.value} -> stopping" if stoppable
                                  else f"already {before.value}")
                self.guard.announce("stop-request announcement", EngineWarning(
                    operator=command.operator, message=f"stop requested by {command.operator}"))
                self.stop()
                continue
            if command.command == "pause":
                self.pause(by=command.operator)
            elif command.command == "resume":
                self.resume(by=command.operator)
            result = f"{before.value} -> {self.state.value}" if self.state is not before else f"already {before.value}"
            await control.ack(self.pool, command.id, result)

    async def watch_rollout(self) -> None:
        """What the rollout gate says about the rollout in progress (`RolloutWatch.watch`)."""
        await self.rollout.watch()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        await self.stages.read_holdout(check=True)  # a given hold-out that disagrees with the record: refused here
        await self.guard.acquire()
        try:
            return await self._run_locked()
        finally:
            await self.guard.drop_lock()

    async def _run_locked(self) -> RunSummary:
        await runs.start(self.pool, self.run_id, self.config.model_name, self.config.backend, self.config.judge,
                         self.config.model_dump(), self.config.heartbeat_s)
        closed = await runs.close_dead(self.pool, self.run_id, self.config.model_name, self.config.backend)
        self._set_state(EngineState.RUNNING)
        self.guard.start_keepers()
        await self._emit(RunStarted(
            message=f"engine started: {self.config.backend} backend, {self.config.judge} judge",
            config=self.config.model_dump(),
        ))
        if closed:
            await self._emit(EngineWarning(
                runs=closed, message=f"closed {len(closed)} run(s) of this model whose engine had died "
                                     f"without stopping: {', '.join(closed)}"))
        reason = "finished"
        try:
            reason = await self.guard.watching(self._work())
            self._set_state(EngineState.STOPPED)
        except _StopRequested:
            reason = "stopped by operator"
            self._set_state(EngineState.STOPPED)
        except asyncio.CancelledError:
            # Interrupted (Ctrl+C, a console closing): the stage in progress is abandoned as a crash would
            # abandon it (registration is one transaction; a batch left `training` is repaired by the next
            # start, `Trainer.repair_interrupted`), and the run is recorded as stopped, not left looking alive.
            reason = f"interrupted during stage {self.stage.value}"
            self._set_state(EngineState.STOPPED)
            raise
        except LockLost as exc:
            reason = f"stopped: {exc}"
            self.summary.error = str(exc)
            self._set_state(EngineState.STOPPED)
            log.warning("%s", exc)
        except Exception as exc:
            reason = f"failed: {exc}"
            self.summary.error = str(exc)
            self._set_state(EngineState.FAILED)
            log.exception("engine failed")
            with contextlib.suppress(Exception):
                await self._emit(EngineFailure(message=f"engine failed: {exc}"))
        finally:
            self.guard.stop_keepers()
            # recorded first: closing W&B or a LocalBackend (vLLM, trainer) can take longer than an
            # interrupted process has left before it exits, and the run must not be left looking alive
            try:
                await runs.finish(self.pool, self.run_id, self.state.value, self.summary.error,
                                  self.summary.iterations)
                await self._emit(RunStopped(
                    message=f"engine stopped: {reason}", reason=reason,
                    iterations=self.summary.iterations, steps=self.summary.steps,
                ))
            except Exception as exc:  # the database may be gone at the very end: say so, lose nothing else
                if not is_outage(exc):
                    raise
                log.warning("engine %s stopped (%s) but could not record it: %s", self.run_id, reason, exc)
            finally:
                await self.session.close()
        return self.summary

    async def _work(self) -> str:
        """Set up, repair what a crash left, then iterate until done; why the run ended."""
        if self.config.backend == "serverless":
            for warning in serverless_warnings(self.config.base_model, self.config.allow_unlisted_base_model):
                await self._emit(EngineWarning(message=warning))
        await self.session.open(self.run_id)
        await self.trainer.repair_interrupted()
        while self.config.iterations is None or self.summary.iterations < self.config.iterations:
            try:
                await self._checkpoint()
                trained = await self._iteration()
                await self.watch_rollout()
                await self.guard.heartbeat()
            except (_StopRequested, LockLost):
                raise
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.stage = runs.Stage.OUTAGE
                if not await self.guard.ride_out_outage(exc):
                    raise _StopRequested from None
                await self.trainer.repair_interrupted()
                continue
            if trained is None and self.config.iterations is not None:  # nothing ready
                await self._checkpoint()  # paused meanwhile: an operator's word ends the pause, not the count
                return "no ready windows"
            if trained is None or (trained is False and self.config.iterations is None):
                # nothing ready, or nothing trained: a failing judge or backend is not asked again at once
                # (the windows it failed are free again, and would be selected in the same instant)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.poll_seconds)
        # paused in the last iteration (an operator, or an alarm with pause_on_alarm): the run holds until
        # resumed or stopped, as it would before another iteration
        await self._checkpoint()
        return "finished"

    async def _iteration(self) -> bool | None:
        """None when no window was ready; otherwise whether a step was trained."""
        if self.stage is not runs.Stage.WAIT:  # while waiting, a look for windows is part of the wait
            await self._enter_stage(runs.Stage.SELECT)
        chosen = await self.stages.select()
        if not chosen:
            await self._enter_stage(runs.Stage.WAIT)
            return None
        self.summary.iterations += 1
        iteration = self.summary.iterations
        await self._emit(IterationStarted(
            iteration=iteration, windows=chosen, message=f"iteration {iteration}: {len(chosen)} window(s)"))
        await self._enter_stage(runs.Stage.READ)
        groups = await self.stages.read(chosen)
        if groups is None:
            return False
        await self._checkpoint()
        await self._enter_stage(runs.Stage.JUDGE)
        skipped_before = len(self.summary.windows_skipped)
        judged = await self.stages.judge(groups)
        # judging skips (and only skips) the windows whose scores were all equal: no reward spread
        unspread = len(self.summary.windows_skipped) - skipped_before
        if not judged and unspread == len(groups):
            flat = self.health.nothing_to_train(iteration, sorted(g.window_id for g, _ in groups))
            await self.trainer.guarded_health(f"the no-spread alarm of iteration {iteration}", flat)
        await self._checkpoint()
        if not judged:
            return False
        return await self.trainer.train(judged, iteration, unspread_groups=unspread)

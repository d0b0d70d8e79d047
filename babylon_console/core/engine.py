"""The training engine: select ready windows, build groups, judge, train, register, repeat.

Public API for the CLI and the console: `EngineConfig`, `Engine(pool, config, ...)` with `run()`,
`pause()`, `resume()`, `stop()`, `state`; everything it does is announced as events (events.py).

Guarantees:
- one engine per model: a PostgreSQL advisory lock held for the run; a second engine is refused;
- a window is never trained twice (unless `force`), and only closed, ready windows are selected;
- a crash between "backend wrote checkpoint N" and "checkpoint N registered" is repaired on the
  next start from the backend's step: no duplicate batch, no lost checkpoint;
- exactly the trajectories trained on are marked `usedInTraining`;
- no empty step: a step in which the backend trained nothing is not a checkpoint (the batch fails
  with the reason, its windows stay free, nothing is marked used);
- identity per backend: batches, lock, checkpoint ids and trained windows are keyed by the
  training key `<backend>:<model name>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict, Field

from . import batches, control, events, runs
from .backends.empty_step import NothingTrained, check_trained
from .backends.factory import checkpoint_root, serverless_warnings
from .clock import Clock
from .config import EngineSettings, ReadinessCriteria, Settings
from .errors import EXIT_BUSY, Refused, as_console_error, is_outage
from .events import (
    CheckpointEvaluated,
    CheckpointRegistered,
    EngineFailure,
    EngineWarning,
    IterationStarted,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    StepTrained,
    WindowJudged,
    WindowSelected,
    WindowSkipped,
)
from .groups import TokenStats, WindowGroup, build_window_group, dropout_rate, trainable_tokens
from .judges import JudgeError, JudgeInput, WindowJudgment, judge_windows, make_judge
from .names import checkpoint_id, training_key
from .registry import LIVE_WHERE, Registry, RegistryError
from .repository import GameStore
from .runs import LockLost
from .simclock import DatabaseClock
from .tracking import OfflineWandbRun
from .windows import WindowReadiness, WindowState

log = logging.getLogger(__name__)
_ENGINE_LOCK_NS = runs.LOCK_NAMESPACE  # kept for callers that name it here


class EngineState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class EngineLocked(Refused, RuntimeError):
    """Another engine already trains this model."""

    exit_code = EXIT_BUSY
    title = "Engine busy"


class _StopRequested(Exception):
    pass


class EngineConfig(EngineSettings):
    """One run's settings: the engine's tunables (`EngineSettings`, by field name only: the
    environment is `Settings`' business) and what only a run sets."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=False)

    project: str = "babylon-console"  # the W&B project (`Settings.wandb_project`)
    iterations: int | None = Field(default=1, ge=1, description="None: run until stopped")
    force: bool = False
    poll_seconds: float = Field(default=5.0, gt=0)
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EngineConfig:
        values = settings.model_dump(include=set(EngineSettings.model_fields)) | {"project": settings.wandb_project}
        values.update({k: v for k, v in overrides.items() if v is not None or k == "iterations"})
        return cls.model_validate(values)

    @property
    def training_key(self) -> str:
        return training_key(self.backend, self.model_name)

    @property
    def criteria(self) -> ReadinessCriteria:
        return ReadinessCriteria(min_agents=self.min_agents, min_steps=self.min_steps,
                                 settle_seconds=self.settle_seconds, holdout_share=self.holdout_share or 0.0)


class RunSummary(BaseModel):
    run_id: str
    state: EngineState
    iterations: int = 0
    steps: list[int] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    windows_trained: list[str] = Field(default_factory=list)
    windows_failed: list[str] = Field(default_factory=list)
    windows_skipped: list[str] = Field(default_factory=list)
    recovered_batches: list[str] = Field(default_factory=list)
    outages: int = 0  # database outages ridden out
    error: str | None = None


def select_windows(readiness: list[WindowReadiness], limit: int, force: bool) -> list[str]:
    """Oldest ready windows first; with `force`, closed windows already trained on (or found
    unusable) by this model qualify too."""
    def eligible(w: WindowReadiness) -> bool:
        if w.ready:
            return True
        return (force and w.closed and w.state in (WindowState.TRAINED, WindowState.UNUSABLE)
                and w.qualified_agents >= 1)
    return sorted(w.window_id for w in readiness if eligible(w))[:limit]


class Engine:
    def __init__(
        self, pool: asyncpg.Pool, config: EngineConfig, *, settings: Settings | None = None,
        backend: Any = None, judge: Any = None, clock: Clock | None = None, run_id: str | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.settings = settings or Settings()
        self.store = GameStore(pool)
        # no clock given: the database's (one clock per database), re-read before each selection
        self.clock: Clock = clock or DatabaseClock(pool)
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self._backend = backend
        self._owns_backend = backend is None  # a backend the engine made, it closes
        self._tokenizer: Any = None
        self.judge = judge or make_judge(self._judge_settings())
        self.state = EngineState.IDLE
        self.summary = RunSummary(run_id=self.run_id, state=self.state)
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stop = asyncio.Event()
        self._model: Any = None
        self.base_model = config.base_model
        self._wandb: OfflineWandbRun | None = None
        self.on_state: Callable[[EngineState], None] | None = None
        self.stage: runs.Stage = runs.Stage.STARTING
        self._lock_conn: asyncpg.Connection | None = None
        self._gate_said: set[tuple[str, str]] = set()  # (candidate, verdict) already announced
        self._readouts: Any = None  # evidence.CachedReadout, made on first use
        self._commands_lock = asyncio.Lock()

    # -- control (safe to call from the console's event loop) ---------------------------------

    def pause(self, by: str = "operator") -> None:
        if self.state is EngineState.RUNNING:
            self._resumed.clear()
            self._set_state(EngineState.PAUSED)
            self._spawn(self._emit(RunPaused(message=f"paused by {by}", operator=by)))

    def resume(self, by: str = "operator") -> None:
        if self.state is EngineState.PAUSED:
            self._resumed.set()
            self._set_state(EngineState.RUNNING)
            self._spawn(self._emit(RunResumed(message=f"resumed by {by}", operator=by)))

    def stop(self) -> None:
        if self.state in (EngineState.RUNNING, EngineState.PAUSED, EngineState.IDLE):
            self._stop.set()
            self._resumed.set()
            self._set_state(EngineState.STOPPING)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _set_state(self, state: EngineState) -> None:
        self.state = state
        self.summary.state = state
        if self.on_state is not None:
            self.on_state(state)

    async def _checkpoint(self) -> None:
        """Between stages: wait while paused, leave when asked to stop."""
        await self._resumed.wait()
        if self._stop.is_set():
            raise _StopRequested

    # -- set-up --------------------------------------------------------------------------------

    def _judge_settings(self) -> Settings:
        return self.settings.with_overrides(judge=self.config.judge)

    async def _emit(self, event: events.EventData, conn: Any = None) -> events.Event:
        return await events.emit(conn or self.pool, event, run_id=self.run_id)

    def _ensure_backend(self) -> Any:
        if self._backend is None:
            from .backends.factory import make_backend

            key = self.settings.wandb_api_key.get_secret_value() if self.settings.wandb_api_key else None
            self._backend, self.base_model = make_backend(
                self.config.backend, data_dir=self.settings.data_dir, base_model=self.config.base_model,
                wandb_api_key=key, serverless_base_url=self.settings.serverless_base_url, seed=self.config.seed,
            )
        elif self.config.backend == "offline":
            from .backends.factory import OFFLINE_BASE_MODEL

            self.base_model = OFFLINE_BASE_MODEL
        return self._backend

    async def _ensure_model(self) -> Any:
        if self._model is None:
            import gc

            import art  # ~3 s: only when the engine really starts

            # ART's thousands of long-lived module objects need never be traversed again by the
            # cyclic collector: move them out of its generations (faster collections from here on).
            gc.freeze()

            backend = self._ensure_backend()
            report = None if self._art_reports_to_wandb else []
            self._model = art.TrainableModel(
                name=self.config.model_name, project=self.config.project, base_model=self.base_model,
                run_name=self.config.model_name, report_metrics=report, entity=self.settings.wandb_entity,
                # ART's history (model.log) lives in this backend's tree under the data directory.
                base_path=str(checkpoint_root(self.settings.data_dir, self.config.backend)),
            )
            if not self._art_reports_to_wandb:
                # ART reaches W&B's public API whenever WANDB_API_KEY is in the environment (its run,
                # and ServerlessBackend's artifact provenance), whatever WANDB_MODE says: switch its
                # run off for this model; metrics go to the offline run kept here instead.
                object.__setattr__(self._model, "_get_wandb_run", lambda: None)
            await self._model.register(backend)
        return self._model

    @property
    def _art_reports_to_wandb(self) -> bool:
        """ART logs to W&B itself only with a key and W&B not switched offline or off."""
        from .backends.factory import wandb_offline

        return self.settings.wandb_api_key is not None and not wandb_offline()

    def _ensure_tokenizer(self) -> Any:
        """The base model's tokenizer (blocking: call in a worker thread). Offline with no
        BABYLON_TOKENIZER: the stand-in built under the data directory."""
        if self._tokenizer is None:
            from .tokenization import load_tokenizer, tokenizer_source

            source = self.settings.tokenizer
            if not source and self.config.backend == "offline":
                from .standin_tokenizer import ensure_standin_tokenizer

                source = str(ensure_standin_tokenizer(self.settings.data_dir))
            self._tokenizer = load_tokenizer(tokenizer_source(source, self.config.base_model))
        return self._tokenizer

    def _export_wandb_settings(self) -> None:
        """ART reads W&B settings from os.environ only: a key that is only in `.env` must reach it.
        W&B's own files go under the data directory, never the current directory."""
        if self.settings.wandb_api_key is not None:
            os.environ.setdefault("WANDB_API_KEY", self.settings.wandb_api_key.get_secret_value())
        if self.settings.wandb_entity:
            os.environ.setdefault("WANDB_ENTITY", self.settings.wandb_entity)
        os.environ.setdefault("WANDB_DIR", str(self.settings.data_dir))

    @property
    def batch_prefix(self) -> str:
        return f"{self.config.training_key}:"

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        await self._read_holdout(check=True)  # a given hold-out that disagrees with the record: refused here
        self._lock_conn = await self._take_lock()
        if self._lock_conn is None:
            holder = await runs.holder(self.pool, self.config.model_name, self.config.backend)
            where = f" (run {holder.id} on {holder.host}, pid {holder.pid})" if holder else ""
            raise EngineLocked(f"another engine is already training model {self.config.model_name!r} "
                               f"on the {self.config.backend} backend{where}")
        try:
            return await self._run_locked()
        finally:
            await self._drop_lock()

    # -- the model's lock and the write fence --------------------------------------------------

    async def _take_lock(self) -> asyncpg.Connection | None:
        """The model's advisory lock and fencing token (`runs.take_lock`); None: another engine holds it."""
        return await runs.take_lock(self.pool, self.config.training_key, self.run_id)

    async def _drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            await runs.drop_lock(self.pool, conn, self.config.training_key)

    def _write(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """A transaction for an engine write, committed only while this run holds the model's
        fencing token (`runs.fenced_write`); LockLost otherwise."""
        return runs.fenced_write(self.pool, self.config.training_key, self.run_id)

    async def _ride_out_outage(self, exc: BaseException) -> None:
        """The database is gone (restart, network): stop work, retry with backoff, take the lock
        again before any write, then repair as after a crash. LockLost if another engine took it."""
        since = datetime.now(UTC)
        self.stage = runs.Stage.OUTAGE
        log.warning("database unreachable since %s: %s", since.isoformat(timespec="seconds"), exc)
        await self._drop_lock()
        delay = 0.5
        while True:
            if self._stop.is_set():
                raise _StopRequested
            try:
                conn = await self._take_lock()
            except Exception as retry_exc:
                if not is_outage(retry_exc):
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            if conn is None:
                raise LockLost(f"another engine took model {self.config.training_key!r} while the database was "
                               "unreachable; this run stops without writing")
            self._lock_conn = conn
            break
        down_s = (datetime.now(UTC) - since).total_seconds()
        self.summary.outages += 1
        log.warning("database back after %.1f s; lock re-acquired", down_s)
        await self._heartbeat()
        await self._emit(EngineWarning(
            stage="database", since=since.isoformat(), down_s=down_s,
            message=f"database was unreachable from {since:%H:%M:%S} UTC for {down_s:.1f} s; lock re-acquired, "
                    "repairing and resuming"))
        await self._recover_interrupted()

    async def _run_locked(self) -> RunSummary:
        await runs.start(self.pool, self.run_id, self.config.model_name, self.config.backend, self.config.judge,
                         self.config.model_dump(), self.config.heartbeat_s)
        closed = await runs.close_dead(self.pool, self.run_id, self.config.model_name, self.config.backend)
        self._set_state(EngineState.RUNNING)
        beat = asyncio.create_task(self._beat(), name=f"heartbeat {self.run_id}")
        listener = asyncio.create_task(self._listen(), name=f"commands {self.run_id}")
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
            if self.config.backend == "serverless":
                for warning in serverless_warnings(self.config.base_model, self.config.allow_unlisted_base_model):
                    await self._emit(EngineWarning(message=warning))
            self._export_wandb_settings()
            await asyncio.to_thread(self._ensure_tokenizer)
            await self._ensure_model()
            if not self._art_reports_to_wandb:
                self._wandb = OfflineWandbRun(self.settings.data_dir / "wandb", self.config.project,
                                              self.settings.wandb_entity, self.run_id, self.config.model_dump())
                await asyncio.to_thread(self._wandb.start)
            await self._recover_interrupted()
            while self.config.iterations is None or self.summary.iterations < self.config.iterations:
                try:
                    await self._checkpoint()
                    trained = await self._iteration()
                    await self.watch_rollout()
                    await self._heartbeat()
                except (_StopRequested, LockLost):
                    raise
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    await self._ride_out_outage(exc)
                    continue
                if trained is None:  # nothing ready
                    if self.config.iterations is not None:
                        reason = "no ready windows"
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.config.poll_seconds)
            self._set_state(EngineState.STOPPED)
        except _StopRequested:
            reason = "stopped by operator"
            self._set_state(EngineState.STOPPED)
        except asyncio.CancelledError:
            # Interrupted (Ctrl+C, a console closing): the stage in progress is abandoned as a crash would
            # abandon it (registration is one transaction; a batch left `training` is repaired by the next
            # start, `_recover_interrupted`), and the run is recorded as stopped, not left looking alive.
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
            beat.cancel()
            listener.cancel()
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
                if self._wandb is not None:
                    await asyncio.to_thread(self._wandb.finish)
                await self._close_backend()
        return self.summary

    async def watch_rollout(self) -> None:
        """Read the A/B evidence of the rollout in progress: say once when the gate recommends
        promoting the candidate; with `auto_rollback`, roll it back when the gate says so (one
        transaction, audit row with the reason and the readout, event)."""
        if self._readouts is None:
            from .evidence import CachedReadout

            self._readouts = CachedReadout(self.settings.gate())
        readout = await self._readouts.get(self.pool)
        candidate = readout.candidate_model_id
        rollout = f"{candidate}#{readout.rollout_id}"  # what is said once is said once per rollout
        for warning in readout.warnings:  # served-model truth: each said once, as an event (toast, Errors pane)
            if (rollout, warning) not in self._gate_said:
                self._gate_said.add((rollout, warning))
                await self._emit(EngineWarning(stage="rollout", message=f"rollout {readout.rollout_id}: {warning}"))
        if candidate is None or readout.verdict not in ("promote", "rollback"):
            return
        said = (rollout, readout.verdict)
        if readout.verdict == "promote":
            if said not in self._gate_said:
                self._gate_said.add(said)
                await self._emit(EngineWarning(stage="rollout", message=(
                    f"gate (rollout {readout.rollout_id}): promote {candidate} to 100% recommended: "
                    + "; ".join(readout.reasons))))
            return
        if not self.config.auto_rollback:
            if said not in self._gate_said:
                self._gate_said.add(said)
                await self._emit(EngineWarning(stage="rollout", message=(
                    f"gate (rollout {readout.rollout_id}): roll back {candidate} recommended (automatic rollback "
                    "is off): "
                    + "; ".join(readout.reasons))))
            return
        reason = "automatic rollback: " + "; ".join(readout.reasons)
        try:
            await Registry(self.pool).rollback(operator="auto-rollback", note=reason, run_id=self.run_id,
                                               rollout_id=readout.rollout_id, evidence=readout.model_dump(mode="json"))
        except RegistryError as exc:  # another engine or an operator acted first (only the judged rollout ends)
            log.info("automatic rollback of %s not applied: %s", candidate, exc)

    async def _close_backend(self) -> None:
        """LocalBackend.close stops vLLM and the trainer: a second run must not find them running."""
        if self._owns_backend and self._backend is not None:
            try:
                await self._backend.close()
            except Exception as exc:
                log.warning("closing the %s backend failed: %s", self.config.backend, exc)
            self._backend = None
            self._model = None

    async def _heartbeat(self) -> None:
        await runs.heartbeat(self.pool, self.run_id, self.state.value, self.summary.iterations,
                             self.summary.steps[-1] if self.summary.steps else 0)

    async def _beat(self) -> None:
        """Beat every `heartbeat_s`, whatever stage runs (a long training step included), and look
        for operators' commands in case a notification was lost."""
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                await self._heartbeat()
                await self._apply_commands()
            except Exception as exc:  # a missed beat is what staleness is for; never stop the run
                log.warning("heartbeat of %s failed: %s", self.run_id, exc)

    async def _listen(self) -> None:
        """Apply commands as soon as they are announced (LISTEN on a connection of its own)."""
        wake = asyncio.Event()

        def announced(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == self.run_id:
                wake.set()

        while True:
            try:
                conn = await self.pool.acquire()
            except Exception as exc:
                log.debug("command listener waits for the database: %s", exc)
                await asyncio.sleep(self.config.heartbeat_s)
                continue
            try:
                await conn.add_listener(control.CHANNEL, announced)
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.config.heartbeat_s)
                    if wake.is_set():
                        wake.clear()
                        await self._apply_commands()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("command listener lost its connection: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(control.CHANNEL, announced)
                with contextlib.suppress(Exception):
                    await self.pool.release(conn)

    async def _apply_commands(self) -> None:
        async with self._commands_lock:  # the listener and the heartbeat may both look at once
            await self._apply_pending()

    async def _apply_pending(self) -> None:
        for command in await control.pending(self.pool, self.run_id):
            before = self.state
            if command.command == "stop":
                # Acknowledged first: stopping ends the tasks that would acknowledge it afterwards.
                stoppable = before in (EngineState.RUNNING, EngineState.PAUSED, EngineState.IDLE)
                await control.ack(self.pool, command.id, f"{before.value} -> stopping" if stoppable
                                  else f"already {before.value}")
                self._spawn(self._emit(EngineWarning(
                    operator=command.operator, message=f"stop requested by {command.operator}")))
                self.stop()
                continue
            if command.command == "pause":
                self.pause(by=command.operator)
            elif command.command == "resume":
                self.resume(by=command.operator)
            result = f"{before.value} -> {self.state.value}" if self.state is not before else f"already {before.value}"
            await control.ack(self.pool, command.id, result)

    async def _stage(self, stage: runs.Stage) -> None:
        if stage is self.stage:
            return
        self.stage = stage
        await runs.set_stage(self.pool, self.run_id, stage)

    async def _read_holdout(self, check: bool = False) -> None:
        """Adopt the database's hold-out share; `check`: first refuse a configured share that disagrees."""
        from .holdout import check_setting_agrees, current_holdout, share_of

        record = await current_holdout(self.pool)
        if check:
            check_setting_agrees(record, self.config.holdout_share)
        self.config.holdout_share = share_of(record)

    # -- one iteration -------------------------------------------------------------------------

    async def _iteration(self) -> bool | None:
        """None when no window was ready; otherwise whether a step was trained."""
        if self.stage is not runs.Stage.WAIT:  # while waiting, a look for windows is part of the wait
            await self._stage(runs.Stage.SELECT)
        await self._read_holdout()  # changed by `babylon-console holdout` meanwhile: honoured from this selection
        if isinstance(self.clock, DatabaseClock):
            await self.clock.refresh()
        readiness = await self.store.window_readiness(self.config.criteria, self.clock.now(),
                                                      self.config.lookback_hours, self.config.training_key)
        chosen = select_windows(readiness, self.config.windows_per_iteration, self.config.force)
        if not chosen:
            await self._stage(runs.Stage.WAIT)
            return None
        self.summary.iterations += 1
        iteration = self.summary.iterations
        await self._emit(IterationStarted(
            iteration=iteration, windows=chosen, message=f"iteration {iteration}: {len(chosen)} window(s)"))
        await self._stage(runs.Stage.READ)
        try:
            groups = await asyncio.wait_for(self._build_groups(chosen), self.config.read_timeout_s)
        except TimeoutError:
            self.summary.windows_failed.extend(chosen)
            await self._emit(EngineFailure(stage="read", windows=chosen, message=(
                f"reading {len(chosen)} window(s) did not finish within {self.config.read_timeout_s:g} s "
                "(BABYLON_READ_TIMEOUT_S); they stay free for the next iteration")))
            return False
        await self._checkpoint()
        await self._stage(runs.Stage.JUDGE)
        judged = await self._judge(groups)
        await self._checkpoint()
        if not judged:
            return False
        return await self._train(judged, iteration)

    async def _build_groups(self, window_ids: list[str]) -> list[tuple[WindowGroup, JudgeInput]]:
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
        tokenizer = self._tokenizer or await asyncio.to_thread(self._ensure_tokenizer)  # loaded at start
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
                reason = self._unusable_reason(stats, len(trajectories))
                self.summary.windows_skipped.append(window_id)
                await self._record_unusable(window_id, reason)  # not selected again for this model
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
            item = JudgeInput(window_id=window_id, ground_truth=truth, trajectories=group.trajectories,
                              messages=group.messages)
            result.append((group, item))
        return result

    @staticmethod
    def _unusable_reason(stats: TokenStats, available: int) -> str:
        if stats.calls == 0:
            return f"no recorded LLM calls in {available} trajectories (fewer than 2 usable trajectories)"
        if stats.trainable_calls == 0:
            return (f"none of {stats.calls} recorded calls is trainable ({stats.dropped_too_long} too long, "
                    f"{stats.dropped_empty} with an empty prompt or response)")
        return (f"fewer than 2 trajectories with a trainable call ({stats.trajectories_without_trainable_calls} "
                f"without any; {stats.dropped_too_long} calls too long, {stats.dropped_empty} empty)")

    async def _fail_batch(self, batch_id: str, reason: str) -> None:
        async with self._write() as conn:
            await batches.fail_batch(conn, batch_id, reason)

    async def _record_unusable(self, window_id: str, reason: str) -> None:
        async with self._write() as conn:
            await batches.record_unusable(conn, window_id, self.config.training_key, reason)

    async def _batch_failed(self, batch_id: str, windows: list[str], stage: str, reason: str,
                            event: type[EngineFailure | EngineWarning] = EngineFailure) -> bool:
        """Fail the batch (its windows are free again), count them failed, say why. False: no step."""
        await self._fail_batch(batch_id, reason)
        self.summary.windows_failed.extend(windows)
        await self._emit(event(stage=stage, batch_id=batch_id, windows=windows, message=reason))
        return False

    async def _judge(self, groups: list[tuple[WindowGroup, JudgeInput]]) -> list[WindowGroup]:
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
            async with self._write() as conn:
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
                await self._emit(EngineWarning(window_id=result.window_id,
                                               message=f"window {result.window_id}: all scores equal, "
                                                       "no training signal; skipped"))
                return
            group.rewards = scores
            judged.append(group)

        await judge_windows(self.judge, [item for _, item in groups], self.config.judge_concurrency,
                            on_result=on_result, timeout_s=self.config.judge_timeout_s)
        if lost:
            raise lost[0]
        return sorted(judged, key=lambda g: g.window_id)

    async def _train(self, groups: list[WindowGroup], iteration: int) -> bool:
        model = await self._ensure_model()
        backend = self._ensure_backend()
        step_before = await model.get_step()
        target_step = step_before + 1
        batch_id = f"{self.batch_prefix}{uuid.uuid4().hex[:10]}"
        windows = [g.window_id for g in groups]
        trajectory_ids = [tid for g in groups for tid in g.trajectory_ids]
        rewards = {t: r for g in groups for t, r in zip(g.trajectory_ids, g.rewards, strict=True)}
        rankings = {g.window_id: [t for _, t in sorted(zip(g.rewards, g.trajectory_ids, strict=True), reverse=True)]
                    for g in groups}
        async with self._write() as conn:
            await batches.create_batch(conn, batch_id, base_model=self.base_model,
                                   model_version=f"step-{target_step}", windows=windows,
                                   trajectory_ids=trajectory_ids, rewards=rewards, rankings=rankings)
        await self._stage(runs.Stage.TRAIN)
        art_groups = [g.to_art() for g in groups]
        tokens = trainable_tokens(art_groups)
        try:
            if tokens == 0:  # never ask a backend to train nothing (ART's LocalBackend would copy a step)
                raise NothingTrained("no trainable assistant tokens in these groups (every trainable call is in a "
                                     "group whose rewards are all equal)")
            result = await asyncio.wait_for(
                backend.train(model, art_groups, learning_rate=self.config.learning_rate,
                              allow_training_without_logprobs=True),
                self.config.train_timeout_s)
            metrics = {k: float(v) for k, v in result.metrics.items()}
            check_trained(metrics)
        except asyncio.CancelledError:
            raise  # a crash: the next start repairs the batch from the backend's step
        except NothingTrained as exc:
            # What this model cannot train in these windows will not change by trying again: they
            # are marked unusable for it (readiness says why), and stay free for every other model.
            for window in windows:
                await self._record_unusable(window, f"nothing trainable for {self.config.backend}: {exc}")
            return await self._batch_failed(
                batch_id, windows, "train", f"nothing trained: {exc}; step not registered (no checkpoint, nothing "
                "marked used)", EngineWarning)
        except TimeoutError:
            return await self._batch_failed(
                batch_id, windows, "train", f"training did not finish within {self.config.train_timeout_s:g} s "
                "(BABYLON_TRAIN_TIMEOUT_S); the batch failed and its windows are free again")
        except Exception as exc:
            return await self._batch_failed(batch_id, windows, "train", f"training failed: {exc}")
        metrics.setdefault("babylon/trainable_assistant_tokens", float(tokens))
        if result.step != target_step:
            # A step that timed out (no cancel exists for a serverless job) or failed may still have
            # completed on the backend: its checkpoint holds updates from windows freed since.
            await self._emit(EngineWarning(
                stage="train", batch_id=batch_id, step=result.step, expected_step=target_step,
                message=f"the backend reports step {result.step}, expected {target_step}: steps "
                        f"{target_step}..{result.step - 1} were written but never registered "
                        "(a step that timed out or failed earlier may have completed later)"))
        try:
            await model.log(art_groups, split="train", metrics=metrics, step=result.step)
        except Exception as exc:  # history is a side channel; the checkpoint is what matters
            await self._emit(EngineWarning(message=f"ART history not written: {exc}"))
        if self._wandb is not None:
            self._wandb.log(metrics, result.step)
        await self._stage(runs.Stage.REGISTER)
        try:
            model_id = await asyncio.wait_for(self._register(batch_id, result.step, metrics, windows, trajectory_ids,
                                                             list(rewards.values()), iteration),
                                              self.config.register_timeout_s)
        except TimeoutError:
            return await self._batch_failed(
                batch_id, windows, "register", f"registering step {result.step} did not finish within "
                f"{self.config.register_timeout_s:g} s (BABYLON_REGISTER_TIMEOUT_S): the checkpoint exists on the "
                "backend but is not registered; the batch failed and its windows are free again")
        # after the registration, outside its deadline: a long evaluation never fails a registered step
        if self.config.eval_every and result.step % self.config.eval_every == 0:
            await self._evaluate(model_id)
        return True

    async def _register(self, batch_id: str, step: int, metrics: dict[str, float], windows: list[str],
                        trajectory_ids: list[str], rewards: list[float], iteration: int | None) -> str:
        model_id = checkpoint_id(self.config.backend, self.config.model_name, step)
        storage = self._storage_path(step)
        avg_reward = statistics.fmean(rewards) if rewards else 0.0
        wandb_run = self._wandb_run_id()
        async with self._write() as conn:
            await batches.complete_batch(
                conn, batch_id, model_name=self.config.training_key, model_id=model_id, step=step,
                base_model=self.base_model, storage_path=storage, metrics=metrics, avg_reward=avg_reward,
                windows=windows, trajectory_ids=trajectory_ids, wandb_run_id=wandb_run, clock=self.clock)
            await self._emit(StepTrained(
                step=step, iteration=iteration, batch_id=batch_id, windows=windows, metrics=metrics), conn)
            await self._emit(CheckpointRegistered(
                model_id=model_id, step=step, avg_reward=avg_reward, storage_path=storage,
                message=f"checkpoint {model_id} registered"), conn)
        self.summary.steps.append(step)
        self.summary.checkpoints.append(model_id)
        self.summary.windows_trained.extend(windows)
        return model_id

    async def _evaluate(self, model_id: str) -> None:
        """Held-out evaluation of a new checkpoint against the live model (the base policy while none
        is live). A checkpoint that cannot be evaluated here is a warning, never a failed step."""
        from .evaluation import evaluate

        live = await self.pool.fetchval(f'SELECT "modelId" FROM trained_models WHERE {LIVE_WHERE}')
        against = "live" if live is not None and live != model_id else "base"
        await self._stage(runs.Stage.EVALUATE)
        # the judge this engine trains with; bounded by BABYLON_EVAL_DEADLINE_S and by a stop request
        deadline = self.settings.eval_deadline_s
        work = asyncio.ensure_future(evaluate(self.pool, self.settings.data_dir, model_id, against,
                                              settings=self._judge_settings()))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({work, stopped}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            why = ("the engine was asked to stop" if self._stop.is_set()
                   else f"it did not finish within {deadline:g} s (BABYLON_EVAL_DEADLINE_S)")
            await self._emit(EngineWarning(stage="evaluate", message=f"{model_id} not evaluated: {why}"))
            return
        if (exc := work.exception()) is not None:
            if is_outage(exc):
                raise exc
            await self._emit(EngineWarning(stage="evaluate",
                                           message=f"{model_id} not evaluated: {as_console_error(exc).message}"))
            return
        result = work.result()
        await self._emit(CheckpointEvaluated(
            model_id=model_id, against_model_id=result.against_model_id, windows=result.n,
            mean_diff=result.mean_diff, ci_low=result.ci_low, ci_high=result.ci_high, unit=result.unit))

    def _storage_path(self, step: int) -> str:
        """The served name of a step. Local: the LoRA directory + base model (outlives this
        process); the others: the backend's own inference name."""
        if self.config.backend == "local":
            from art.utils.output_dirs import get_model_dir, get_step_checkpoint_dir

            from .names import local_storage_path

            model_dir = get_model_dir(self._model, str(checkpoint_root(self.settings.data_dir, "local")))
            return local_storage_path(Path(get_step_checkpoint_dir(model_dir, step)), self.base_model)
        return self._backend._model_inference_name(self._model, step)

    def _wandb_run_id(self) -> str | None:
        """The W&B run the metrics went to: the service's run (serverless), ART's own run (its id
        is the model's storage name) when a key is set, else the offline run kept here."""
        run_id = getattr(self._model, "run_id", None)
        if run_id:
            return str(run_id)
        if self._art_reports_to_wandb:
            return str(self._model._storage_name())
        return self._wandb.run_id if self._wandb is not None else None

    async def _recover_interrupted(self) -> None:
        """Repair batches left 'training' by a crash: register the checkpoint the backend finished,
        or fail the batch so its windows are selected again."""
        stale = await batches.interrupted_batches(self.pool, self.batch_prefix)
        if not stale:
            return
        step_now = await self._model.get_step()
        for row in stale:
            batch_id = row["batchId"]
            try:
                step = int(str(row["modelVersion"]).removeprefix("step-"))
            except ValueError:
                step = -1
            if 0 < step <= step_now:
                rewards = orjson.loads(row["rewardsJson"] or "{}")
                rankings = orjson.loads(row["rankingsJson"] or "{}")
                meta = {}
                with contextlib.suppress(Exception):
                    meta = self._backend.read_meta(self._model, step) if hasattr(self._backend, "read_meta") else {}
                metrics = {k: float(v) for k, v in (meta.get("metrics") or {}).items() if v is not None}
                await self._register(batch_id, step, metrics, list(rankings), list(rewards),
                                     list(rewards.values()), None)
                self.summary.recovered_batches.append(batch_id)
                await self._emit(EngineWarning(
                    batch_id=batch_id,
                    message=f"recovered batch {batch_id}: checkpoint step {step} was written before a crash"))
            else:
                await self._fail_batch(batch_id, "interrupted before its checkpoint was written; "
                                       "its windows will be trained again")
                await self._emit(EngineWarning(
                    batch_id=batch_id, message=f"batch {batch_id} was interrupted; its windows are free again"))

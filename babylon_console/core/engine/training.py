"""The training stages of an iteration: train one step on judged groups, register its checkpoint,
evaluate it; the batch bookkeeping around them; and the repair of batches a crash left behind.

Exactly the trajectories trained on are marked used, by the registration's one transaction; a
step in which the backend trained nothing is not a checkpoint (the batch fails with the reason,
its windows stay free, nothing is marked used).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from ..checkpoints.registry import live_model_id
from ..clock import Clock
from ..config import Settings
from ..errors import as_console_error, is_outage
from ..events import (
    CheckpointEvaluated,
    CheckpointRegistered,
    EngineFailure,
    EngineWarning,
    StepTrained,
)
from ..game.store import GameStore
from ..names import checkpoint_id
from ..training import batches
from ..training.backends.empty_step import NothingTrained, check_trained
from ..training.groups import WindowGroup, trainable_tokens
from . import runs
from .guard import RunGuard
from .run_config import EngineConfig
from .run_state import Emit, RunSummary
from .session import TrainingSession

EnterStage = Callable[[runs.Stage], Awaitable[None]]
WatchHealth = Callable[..., Awaitable[object]]  # `HealthWatch.after_step`


async def record_unusable(guard: RunGuard, config: EngineConfig, window_id: str, reason: str) -> None:
    """The window is unusable for this model (readiness says why): not selected again for it."""
    async with guard.write() as conn:
        await batches.record_unusable(conn, window_id, config.training_key, reason)


class Trainer:
    """Trains, registers and evaluates the steps of one run; every write goes through the guard's fence."""

    def __init__(self, pool: asyncpg.Pool, config: EngineConfig, settings: Settings, session: TrainingSession,
                 summary: RunSummary, *, run_id: str, clock: Clock, guard: RunGuard, emit: Emit,
                 enter_stage: EnterStage, stop: asyncio.Event, watch_health: WatchHealth | None = None) -> None:
        self.pool = pool
        self.config = config
        self.settings = settings
        self.session = session
        self.summary = summary
        self.run_id = run_id
        self.clock = clock
        self.guard = guard
        self._emit = emit
        self._enter_stage = enter_stage
        self._stop = stop
        self._watch_health = watch_health
        # a registered step whose health check an outage cut short: (step, groups, metrics, tokens, unspread)
        self._pending_health: tuple[int, list[WindowGroup], dict[str, float], int, int] | None = None

    @property
    def batch_prefix(self) -> str:
        return f"{self.config.training_key}:"

    async def train(self, groups: list[WindowGroup], iteration: int, *, unspread_groups: int = 0) -> bool:
        """Train one step on judged groups and register it; whether a step was trained. `unspread_groups`:
        groups judged for it but left out for equal scores (they count in the step's health)."""
        model = await self.session.ensure_model()
        backend = self.session.ensure_backend()
        step_before = await model.get_step()
        target_step = step_before + 1
        batch_id = f"{self.batch_prefix}{uuid.uuid4().hex[:10]}"
        windows = [g.window_id for g in groups]
        trajectory_ids = [tid for g in groups for tid in g.trajectory_ids]
        rewards = {t: r for g in groups for t, r in zip(g.trajectory_ids, g.rewards, strict=True)}
        rankings = {g.window_id: [t for _, t in sorted(zip(g.rewards, g.trajectory_ids, strict=True), reverse=True)]
                    for g in groups}
        async with self.guard.write() as conn:
            await batches.create_batch(conn, batch_id, base_model=self.session.base_model,
                                       model_version=f"step-{target_step}", windows=windows,
                                       trajectory_ids=trajectory_ids, rewards=rewards, rankings=rankings)
        await self._enter_stage(runs.Stage.TRAIN)
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
                await record_unusable(self.guard, self.config, window,
                                      f"nothing trainable for {self.config.backend}: {exc}")
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
        if self.session.wandb is not None:
            self.session.wandb.log(metrics, result.step)
        await self._enter_stage(runs.Stage.REGISTER)
        try:
            model_id = await asyncio.wait_for(self.register(batch_id, result.step, metrics, windows, trajectory_ids,
                                                            list(rewards.values()), iteration),
                                              self.config.register_timeout_s)
        except TimeoutError:
            return await self._batch_failed(
                batch_id, windows, "register", f"registering step {result.step} did not finish within "
                f"{self.config.register_timeout_s:g} s (BABYLON_REGISTER_TIMEOUT_S): the checkpoint exists on the "
                "backend but is not registered; the batch failed and its windows are free again")
        # after the registration, outside its deadline: a long evaluation never fails a registered step
        if self.config.eval_every and result.step % self.config.eval_every == 0:
            await self.evaluate(model_id)
        await self.check_health(result.step, groups, metrics, tokens, unspread_groups)
        return True

    async def check_health(self, step: int, groups: list[WindowGroup], metrics: dict[str, float], tokens: int,
                           unspread_groups: int) -> None:
        """The step's health and alarms; a failure here is a warning, never a failed step. One lost to an
        outage is kept and checked again by `repair_interrupted` once the database is back."""
        if self._watch_health is None:
            return
        self._pending_health = (step, groups, metrics, tokens, unspread_groups)
        await self.guarded_health(f"health of step {step}", self._watch_health(
            step, groups, metrics, trainable_tokens=tokens, unspread_groups=unspread_groups), step=step)
        self._pending_health = None

    async def guarded_health(self, what: str, check: Awaitable[object], *, step: int | None = None) -> None:
        """Await a health check; its failure is a warning naming `what`, never a failed step (an outage
        or a lost lock still raises)."""
        try:
            await check
        except Exception as exc:
            if is_outage(exc) or isinstance(exc, runs.LockLost):
                raise
            why = as_console_error(exc).message
            await self._emit(EngineWarning(stage="health", step=step, message=f"{what} not checked: {why}"))

    async def register(self, batch_id: str, step: int, metrics: dict[str, float], windows: list[str],
                       trajectory_ids: list[str], rewards: list[float], iteration: int | None) -> str:
        """Complete the batch and register its checkpoint, in one transaction; the checkpoint's id."""
        model_id = checkpoint_id(self.config.backend, self.config.model_name, step)
        storage = self.session.storage_path(step)
        avg_reward = statistics.fmean(rewards) if rewards else 0.0
        wandb_run = self.session.wandb_run_id()
        async with self.guard.write() as conn:
            await batches.complete_batch(
                conn, batch_id, model_name=self.config.training_key, model_id=model_id, step=step,
                base_model=self.session.base_model, storage_path=storage, metrics=metrics, avg_reward=avg_reward,
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

    async def evaluate(self, model_id: str) -> None:
        """Held-out evaluation of a new checkpoint against the live model (the base policy while none
        is live). A checkpoint that cannot be evaluated here is a warning, never a failed step."""
        from ..checkpoints.evaluation import evaluate

        live = await live_model_id(self.pool)
        against = "live" if live is not None and live != model_id else "base"
        await self._enter_stage(runs.Stage.EVALUATE)
        # the judge this engine trains with; bounded by BABYLON_EVAL_DEADLINE_S and by a stop request
        deadline = self.settings.eval_deadline_s
        work = asyncio.ensure_future(evaluate(self.pool, self.settings.data_dir, model_id, against,
                                              settings=self.settings.with_overrides(judge=self.config.judge)))
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

    # -- batches -------------------------------------------------------------------------------

    async def fail_batch(self, batch_id: str, reason: str) -> None:
        async with self.guard.write() as conn:
            await batches.fail_batch(conn, batch_id, reason)

    async def _batch_failed(self, batch_id: str, windows: list[str], stage: str, reason: str,
                            event: type[EngineFailure | EngineWarning] = EngineFailure) -> bool:
        """Fail the batch (its windows are free again), count them failed, say why. False: no step."""
        await self.fail_batch(batch_id, reason)
        self.summary.windows_failed.extend(windows)
        await self._emit(event(stage=stage, batch_id=batch_id, windows=windows, message=reason))
        return False

    async def repair_interrupted(self) -> None:
        """Repair batches left 'training' by a crash: register the checkpoint the backend finished,
        or fail the batch so its windows are selected again. After an outage, first the health check of a
        registered step that the outage cut short (its rows are written in one transaction, so checked
        again, the step's health is stored once and an alarm it raised stands open instead of twice)."""
        if self._pending_health is not None:
            await self.check_health(*self._pending_health)
        stale = await GameStore(self.pool).interrupted_batches(self.batch_prefix)
        if not stale:
            return
        model, backend = self.session.model, self.session.backend
        step_now = await model.get_step()
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
                    meta = backend.read_meta(model, step) if hasattr(backend, "read_meta") else {}
                metrics = {k: float(v) for k, v in (meta.get("metrics") or {}).items() if v is not None}
                await self.register(batch_id, step, metrics, list(rankings), list(rewards),
                                    list(rewards.values()), None)
                self.summary.recovered_batches.append(batch_id)
                await self._emit(EngineWarning(
                    batch_id=batch_id,
                    message=f"recovered batch {batch_id}: checkpoint step {step} was written before a crash"))
            else:
                await self.fail_batch(batch_id, "interrupted before its checkpoint was written; "
                                      "its windows will be trained again")
                await self._emit(EngineWarning(
                    batch_id=batch_id, message=f"batch {batch_id} was interrupted; its windows are free again"))

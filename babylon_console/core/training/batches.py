"""The engine's writes: judgments, training batches, checkpoints, trained windows, window verdicts.

Game columns are written as the game expects them (`training_batches` status pending -> training
-> completed|failed; `usedInTraining`/`trainedInBatch` on exactly the trajectories trained on).
A checkpoint is registered with status 'registered', which the game's own query never serves
(`core.checkpoints.registry`: only a promotion makes it 'deployed'). Our judgments stay in `console_judgments`:
the game's judge columns (`aiJudgeReward`, `aiJudgeReasoning`, `judgedAt`) are its own judge's,
never overwritten.

Batches and checkpoints are dated by the wall clock (when they were made: "newest first" is true
in every database); in a simulated database the market time of a step is kept beside it, as
`marketTime` in the checkpoint's `evalMetrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from ..clock import Clock, SystemClock
from ..errors import Failed
from ..game.market_clock import is_market_clock


class CheckpointConflict(Failed, RuntimeError):
    """A checkpoint id is taken by a different checkpoint."""

    title = "Checkpoint conflict"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


async def save_judgments(
    conn: asyncpg.Connection, window_id: str, judge: str, judge_model: str | None, run_id: str | None,
    scores: Sequence[tuple[str, float, str]], cost_usd: float | None,
) -> None:
    """Persist every score and explanation in `console_judgments` (never in the game's judge columns)."""
    per_item_cost = cost_usd / len(scores) if cost_usd is not None and scores else None
    await conn.executemany(
        "INSERT INTO console_judgments (trajectory_id, window_id, judge, judge_model, run_id, score, "
        "explanation, cost_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(tid, window_id, judge, judge_model, run_id, score, text, per_item_cost) for tid, score, text in scores],
    )


async def create_batch(
    conn: asyncpg.Connection | asyncpg.Pool, batch_id: str, *, base_model: str, model_version: str,
    windows: Sequence[str], trajectory_ids: Sequence[str], rewards: dict[str, float],
    rankings: dict[str, list[str]],
) -> None:
    now = SystemClock().now()
    await conn.execute(
        'INSERT INTO training_batches (id, "batchId", "scenarioId", "baseModel", "modelVersion", "trajectoryIds", '
        '"rewardsJson", "rankingsJson", status, "createdAt", "startedAt") '
        "VALUES ($1, $1, $2, $3, $4, $5, $6, $7, 'training', $8, $8)",
        batch_id, ",".join(windows)[:1000], base_model, model_version, _json(list(trajectory_ids)),
        _json(rewards), _json(rankings), now,
    )


async def fail_batch(conn: asyncpg.Connection | asyncpg.Pool, batch_id: str, error: str) -> None:
    await conn.execute(
        """UPDATE training_batches SET status = 'failed', error = $2, "completedAt" = $3 WHERE "batchId" = $1""",
        batch_id, error[:2000], SystemClock().now(),
    )


async def complete_batch(
    conn: asyncpg.Connection, batch_id: str, *, model_name: str, model_id: str, step: int, base_model: str,
    storage_path: str, metrics: dict[str, float], avg_reward: float, windows: Sequence[str],
    trajectory_ids: Sequence[str], wandb_run_id: str | None, clock: Clock,
) -> None:
    """Register the checkpoint and close the batch; call inside a transaction.

    `model_name` is the training key (`<backend>:<model>`). A row with the same id is accepted
    only when it is this very checkpoint (same batch and served name: a repaired crash); any other
    clash raises `CheckpointConflict`, so no checkpoint is ever dropped silently. `clock` is the
    engine's: when it is a market's (simulated, or fixed in tests), its time is `marketTime`."""
    if not base_model.strip():  # the game names a checkpoint's base model; an empty one is a bug upstream
        raise ValueError(f"checkpoint {model_id} has no base model: every trained_models row names one")
    now = SystemClock().now()
    if is_market_clock(clock):
        metrics = {**metrics, "marketTime": clock.now().isoformat(timespec="seconds")}
    inserted = await conn.fetchval(
        'INSERT INTO trained_models (id, "modelId", version, "baseModel", "trainingBatch", status, "storagePath", '
        '"avgReward", "evalMetrics", "wandbRunId", "createdAt", "updatedAt") '
        "VALUES ($1, $1, $2, $3, $4, 'registered', $5, $6, $7::jsonb, $8, $9, $9) ON CONFLICT DO NOTHING RETURNING id",
        model_id, f"step-{step}", base_model, batch_id, storage_path, avg_reward, _json(metrics),
        wandb_run_id, now,
    )
    if inserted is None:
        existing = await conn.fetchrow(
            'SELECT "trainingBatch", "storagePath" FROM trained_models WHERE "modelId" = $1 OR id = $1', model_id)
        if existing is None or (existing["trainingBatch"], existing["storagePath"]) != (batch_id, storage_path):
            held = f"batch {existing['trainingBatch']}, {existing['storagePath']}" if existing else "unknown"
            raise CheckpointConflict(
                f"checkpoint id {model_id!r} is already registered for another checkpoint ({held}); "
                f"{storage_path} from batch {batch_id} was not registered")
    await conn.execute(
        """UPDATE training_batches SET status = 'completed', "trainingLoss" = $2, "completedAt" = $3,
           error = NULL WHERE "batchId" = $1""",
        batch_id, metrics.get("loss/train"), now,
    )
    await conn.execute(
        'UPDATE trajectories SET "usedInTraining" = true, "trainedInBatch" = $2, "updatedAt" = $3 '
        'WHERE "trajectoryId" = ANY($1::text[])',
        list(trajectory_ids), batch_id, now,
    )
    await conn.executemany(
        "INSERT INTO console_trained_windows (window_id, model_name, batch_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        [(w, model_name, batch_id) for w in windows],
    )


async def record_unusable(conn: asyncpg.Connection, window_id: str, training_key: str, reason: str) -> None:
    """This model found nothing to train in the window: readiness shows it unusable, with the reason."""
    await conn.execute(
        "INSERT INTO console_window_verdicts (window_id, model_name, verdict, reason) VALUES ($1, $2, 'unusable', $3) "
        "ON CONFLICT (window_id, model_name) DO UPDATE SET reason = EXCLUDED.reason, created_at = now()",
        window_id, training_key, reason)

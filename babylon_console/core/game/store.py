"""Data access to the game's tables (async, asyncpg): readiness, trajectories, outcomes, batches, models.

Column names are the game's quoted camelCase. Queries that feed the console's live panes are shaped
for the console-owned readiness index (migration 0003): index-only scans over ("windowId", "agentId").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ..config import ReadinessCriteria
from .bounds import SQL_LENGTH_OK, SQL_PNL_OK
from .parsing import parse_rows, step_number_of
from .rows import MarketOutcome, RecordedCall, Rejection, TrainedModel, TrainingBatch, Trajectory, WindowGroundTruth
from .windows import WindowFigures, WindowReadiness, assess, lookback_start_id

# The figures per window. $1: first window id to include ('' for all), $2: min steps per agent,
# $3: the training key whose trained windows and verdicts count (NULL: trained by any model).
READINESS_SQL = f"""
WITH t AS (
  SELECT "windowId" AS window_id,
         count(*) AS trajectories,
         count(DISTINCT "agentId") AS agents,
         count(DISTINCT "agentId") FILTER (WHERE "episodeLength" >= $2 AND {SQL_LENGTH_OK}) AS qualified_agents,
         coalesce(sum("episodeLength") FILTER (WHERE {SQL_LENGTH_OK}), 0) AS steps,
         min("finalPnL") FILTER (WHERE {SQL_PNL_OK}) AS pnl_min,
         avg("finalPnL") FILTER (WHERE {SQL_PNL_OK}) AS pnl_avg,
         max("finalPnL") FILTER (WHERE {SQL_PNL_OK}) AS pnl_max,
         count(*) FILTER (WHERE ("finalPnL" IS NOT NULL AND NOT ({SQL_PNL_OK})) OR NOT ({SQL_LENGTH_OK}))
           AS suspect_rows,
         count(*) FILTER (WHERE "usedInTraining") AS used_in_training
  FROM trajectories
  WHERE "windowId" >= $1 AND "isTrainingData" AND NOT "isEvaluation"
  GROUP BY "windowId"
), o AS (
  SELECT "windowId" AS window_id,
         count(*) FILTER (WHERE "stockTicker" IS NOT NULL) AS stock_outcomes,
         count(*) FILTER (WHERE "predictionMarketId" IS NOT NULL) AS prediction_outcomes
  FROM market_outcomes
  WHERE "windowId" >= $1
  GROUP BY "windowId"
)
SELECT t.*, coalesce(o.stock_outcomes, 0) AS stock_outcomes,
       coalesce(o.prediction_outcomes, 0) AS prediction_outcomes,
       (w.window_id IS NOT NULL) AS trained, v.reason AS unusable_reason
FROM t
LEFT JOIN o USING (window_id)
LEFT JOIN (SELECT DISTINCT window_id FROM console_trained_windows
           WHERE window_id >= $1 AND ($3::text IS NULL OR model_name = $3)) w USING (window_id)
LEFT JOIN (SELECT DISTINCT ON (window_id) window_id, reason FROM console_window_verdicts
           WHERE window_id >= $1 AND ($3::text IS NULL OR model_name = $3)
           ORDER BY window_id, created_at DESC) v USING (window_id)
ORDER BY t.window_id DESC
"""

TRAJECTORY_READ_COLUMNS = (
    '"id", "trajectoryId", "agentId", "windowId", "startTime", "endTime", "durationMs", "episodeId", '
    '"scenarioId", "batchId", "stepsJson", "rewardComponentsJson", "metricsJson", "metadataJson", '
    '"totalReward", "episodeLength", "finalStatus", "finalBalance", "finalPnL", "tradesExecuted", '
    '"postsCreated", "aiJudgeReward", "aiJudgeReasoning", "usedInTraining", "trainedInBatch"'
)


@dataclass(frozen=True, slots=True)
class ConsoleJudgment:
    """Our judge's verdict on a trajectory (`console_judgments`); the game's own judge writes its
    verdict in the trajectory's `aiJudgeReward`/`aiJudgeReasoning`, which we never overwrite."""

    judge: str
    judge_model: str | None
    score: float
    explanation: str


@dataclass(slots=True)
class WindowTrajectories:
    window_id: str
    trajectories: list[Trajectory] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    judgments: dict[str, ConsoleJudgment] = field(default_factory=dict)  # ours, by trajectoryId (when read)


class GameStore:
    """Reads (and a few writes) on the game's tables through one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def window_figures(self, since_window_id: str, min_steps: int, model_key: str | None = None
                             ) -> list[WindowFigures]:
        rows = await self.pool.fetch(READINESS_SQL, since_window_id, min_steps, model_key)
        return [
            WindowFigures(
                window_id=r["window_id"],
                trajectories=r["trajectories"],
                agents=r["agents"],
                qualified_agents=r["qualified_agents"],
                steps=r["steps"],
                pnl_min=r["pnl_min"],
                pnl_avg=r["pnl_avg"],
                pnl_max=r["pnl_max"],
                used_in_training=r["used_in_training"],
                stock_outcomes=r["stock_outcomes"],
                prediction_outcomes=r["prediction_outcomes"],
                trained=r["trained"],
                unusable_reason=r["unusable_reason"],
                suspect_rows=r["suspect_rows"],
            )
            for r in rows
        ]

    async def has_trajectories(self) -> bool:
        return bool(await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM trajectories)"))

    async def window_readiness(
        self, criteria: ReadinessCriteria, now: datetime, lookback_hours: int | None,
        model_key: str | None = None,
    ) -> list[WindowReadiness]:
        """Readiness of every window in the lookback (None: all windows), newest first, for the
        model with training key `model_key` (`<backend>:<model name>`; None: trained by any)."""
        since = lookback_start_id(now, lookback_hours) if lookback_hours is not None else ""
        figures = await self.window_figures(since, criteria.min_steps, model_key)
        return [assess(f, criteria, now) for f in figures]

    async def window_trajectories(self, window_id: str) -> WindowTrajectories:
        rows = await self.pool.fetch(
            f'SELECT {TRAJECTORY_READ_COLUMNS} FROM trajectories WHERE "windowId" = $1 '
            'ORDER BY "agentId", "startTime"',
            window_id,
        )
        parsed, rejected = parse_rows(rows)
        return WindowTrajectories(window_id, parsed, rejected)

    async def window_judgments(self, window_id: str) -> dict[str, ConsoleJudgment]:
        """Our judge's latest verdict on each judged trajectory of the window, by trajectoryId."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (trajectory_id) trajectory_id, judge, judge_model, score, explanation "
            "FROM console_judgments WHERE window_id = $1 ORDER BY trajectory_id, id DESC", window_id)
        return {r["trajectory_id"]: ConsoleJudgment(r["judge"], r["judge_model"], r["score"], r["explanation"])
                for r in rows}

    async def logged_calls(self, trajectory_ids: Sequence[str]) -> dict[str, dict[int, list[RecordedCall]]]:
        """`llm_call_logs` rows of these trajectories: trajectoryId -> step number -> calls in time
        order (the step number is read from the end of "stepId"; rows where it is not are skipped)."""
        if not trajectory_ids:
            return {}
        rows = await self.pool.fetch(
            'SELECT "trajectoryId", "stepId", "systemPrompt", "userPrompt", "response", "purpose", "actionType" '
            'FROM llm_call_logs WHERE "trajectoryId" = ANY($1::text[]) ORDER BY "trajectoryId", "timestamp", "callId"',
            list(trajectory_ids),
        )
        out: dict[str, dict[int, list[RecordedCall]]] = {}
        for r in rows:
            n = step_number_of(r["stepId"])
            if n is None or not (r["userPrompt"] or r["response"]):
                continue
            out.setdefault(r["trajectoryId"], {}).setdefault(n, []).append(RecordedCall(
                n, r["systemPrompt"] or "", r["userPrompt"] or "", r["response"] or "", r["purpose"],
                r["actionType"]))
        return out

    async def trajectory(self, trajectory_id: str) -> Trajectory | Rejection | None:
        row = await self.pool.fetchrow(
            f'SELECT {TRAJECTORY_READ_COLUMNS} FROM trajectories WHERE "trajectoryId" = $1 OR "id" = $1 '
            "LIMIT 1",
            trajectory_id,
        )
        if row is None:
            return None
        parsed, rejected = parse_rows([row])
        return parsed[0] if parsed else rejected[0]

    async def ground_truth(self, window_id: str) -> WindowGroundTruth:
        rows = await self.pool.fetch(
            'SELECT * FROM market_outcomes WHERE "windowId" = $1 '
            'ORDER BY "stockTicker" NULLS LAST, "predictionMarketId"',
            window_id,
        )
        outcomes = [MarketOutcome.model_validate(dict(r)) for r in rows]
        return WindowGroundTruth(
            window_id=window_id,
            stocks=[o for o in outcomes if o.is_stock],
            predictions=[o for o in outcomes if not o.is_stock and o.prediction_market_id is not None],
        )

    async def batches(self, limit: int = 50) -> list[TrainingBatch]:
        rows = await self.pool.fetch(
            'SELECT * FROM training_batches ORDER BY "createdAt" DESC LIMIT $1', limit
        )
        return [TrainingBatch.model_validate(dict(r)) for r in rows]

    async def models(self, limit: int = 100) -> list[TrainedModel]:
        rows = await self.pool.fetch('SELECT * FROM trained_models ORDER BY "createdAt" DESC LIMIT $1', limit)
        return [TrainedModel.model_validate(dict(r)) for r in rows]

    async def table_counts(
        self,
        tables: Sequence[str] = (
            "trajectories",
            "llm_call_logs",
            "market_outcomes",
            "training_batches",
            "trained_models",
        ),
    ) -> dict[str, int]:
        """Approximate row counts from the planner's statistics (instant on large tables)."""
        rows = await self.pool.fetch(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint AS n FROM pg_class c "
            "JOIN pg_namespace ns ON ns.oid = c.relnamespace "
            "WHERE ns.nspname = 'public' AND c.relname = ANY($1::text[])",
            list(tables),
        )
        return {r["relname"]: r["n"] for r in rows}

"""Every read of the game's tables (async, asyncpg): readiness, trajectories, calls, outcomes, batches,
and of the engine's records about their rows (`console_judgments`, `console_trained_windows`,
`console_window_verdicts`, written by `core/training/batches.py`). `trained_models` is the registry's
to read (`core/checkpoints/registry.py`), but for the windows each checkpoint trained on.

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
from .rows import MarketOutcome, RecordedCall, Rejection, TrainingBatch, Trajectory, WindowGroundTruth
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
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SimulatedWindow:
    """A window the simulator recorded, with the seed its rows record (None or text when they do not)."""

    window_id: str
    seed: str | None
    agents: int
    steps: int | None


@dataclass(frozen=True, slots=True)
class TrainedWindow:
    """A window a training key trained on, when, and the version (`step-N`) of the checkpoint its batch made."""

    window_id: str
    trained_at: datetime
    version: str | None


_SIMULATED_WINDOWS_SQL = r"""
SELECT "windowId" AS window_id, max(substring("metadataJson" from '"seed":\s*(-?[0-9]+)')) AS seed,
       count(DISTINCT "agentId") AS agents, max("episodeLength") AS steps
FROM trajectories
WHERE "windowId" IS NOT NULL AND "metadataJson" LIKE '%"simulated":true%'
GROUP BY "windowId" ORDER BY "windowId" DESC LIMIT $1
"""

_OUTCOME_WINDOWS_SQL = """
SELECT DISTINCT t."windowId" AS window_id FROM trajectories t
WHERE t."windowId" IS NOT NULL AND EXISTS (SELECT 1 FROM market_outcomes m WHERE m."windowId" = t."windowId")
ORDER BY 1 DESC LIMIT $1
"""

_TRAINED_WINDOWS_SQL = """
SELECT tw.window_id, tw.trained_at, t.version
FROM console_trained_windows tw LEFT JOIN trained_models t ON t."trainingBatch" = tw.batch_id
WHERE tw.model_name = $1
"""


@dataclass(slots=True)
class WindowTrajectories:
    window_id: str
    trajectories: list[Trajectory] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    judgments: dict[str, ConsoleJudgment] = field(default_factory=dict)  # ours, by trajectoryId (when read)


class GameStore:
    """Reads of the game's tables through one asyncpg pool."""

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

    async def newest_window(self) -> tuple[str | None, int]:
        """The newest window id and how many trajectories it has (None, 0: no window yet)."""
        latest = await self.pool.fetchval('SELECT max("windowId") FROM trajectories')
        rows = await self.pool.fetchval('SELECT count(*) FROM trajectories WHERE "windowId" = $1', latest)
        return latest, rows

    async def agent_pnl(self, agent_ids: Sequence[str], from_window: str, before_window: str
                        ) -> list[tuple[str, str, float]]:
        """(window, agent, final P&L) of these agents' trajectories in windows from `from_window` up to,
        not including, `before_window`; rows without a P&L, or with an absurd one, are left out."""
        rows = await self.pool.fetch(
            'SELECT "windowId", "agentId", "finalPnL" FROM trajectories WHERE "agentId" = ANY($1::text[]) '
            f'AND "windowId" >= $2 AND "windowId" < $3 AND {SQL_PNL_OK}', list(agent_ids), from_window,
            before_window)
        return [(r["windowId"], r["agentId"], float(r["finalPnL"])) for r in rows]

    async def simulated_windows(self, limit: int) -> list[SimulatedWindow]:
        """The newest `limit` windows the simulator recorded, newest first."""
        return [SimulatedWindow(r["window_id"], r["seed"], r["agents"], r["steps"])
                for r in await self.pool.fetch(_SIMULATED_WINDOWS_SQL, limit)]

    async def windows_with_outcomes(self, limit: int) -> list[str]:
        """The newest `limit` windows that have trajectories and market outcomes, newest first."""
        return [r["window_id"] for r in await self.pool.fetch(_OUTCOME_WINDOWS_SQL, limit)]

    async def outcome_windows(self, id_prefix: str, window_ids: Sequence[str]) -> set[str]:
        """Which of `window_ids` have market outcomes whose id starts with `id_prefix` (the simulator's rows)."""
        rows = await self.pool.fetch(
            'SELECT DISTINCT "windowId" FROM market_outcomes WHERE id LIKE $1 AND "windowId" = ANY($2::text[])',
            f"{id_prefix}%", list(window_ids),
        )
        return {r[0] for r in rows}

    async def last_outcome_window(self, id_prefix: str) -> str | None:
        """The newest window with market outcomes whose id starts with `id_prefix`."""
        return await self.pool.fetchval(
            'SELECT max("windowId") FROM market_outcomes WHERE id LIKE $1', f"{id_prefix}%")

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

    async def window_verdicts_by_judge(self, window_id: str) -> dict[str, dict[str, ConsoleJudgment]]:
        """Each judge's newest verdict on each trajectory of the window: judge -> trajectoryId ->
        verdict, the judge of the window's newest judgment first (empty: the window is not judged)."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (judge, trajectory_id) judge, trajectory_id, judge_model, score, explanation, "
            "created_at, max(id) OVER (PARTITION BY judge) AS newest FROM console_judgments "
            "WHERE window_id = $1 ORDER BY judge, trajectory_id, id DESC", window_id)
        by_judge: dict[str, dict[str, ConsoleJudgment]] = {}
        for r in sorted(rows, key=lambda r: -r["newest"]):
            by_judge.setdefault(r["judge"], {})[r["trajectory_id"]] = ConsoleJudgment(
                r["judge"], r["judge_model"], r["score"], r["explanation"], r["created_at"])
        return by_judge

    async def trajectory_judgments(self, trajectory_id: str) -> list[ConsoleJudgment]:
        """Every verdict of our judges on the trajectory, oldest first."""
        rows = await self.pool.fetch(
            "SELECT judge, judge_model, score, explanation, created_at FROM console_judgments "
            "WHERE trajectory_id = $1 ORDER BY id", trajectory_id)
        return [ConsoleJudgment(r["judge"], r["judge_model"], r["score"], r["explanation"], r["created_at"])
                for r in rows]

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

    async def interrupted_batches(self, batch_prefix: str) -> list[asyncpg.Record]:
        """Batches under `batch_prefix` still 'pending' or 'training' (a crash left them), oldest first."""
        return await self.pool.fetch(
            """SELECT * FROM training_batches WHERE status IN ('pending', 'training') AND "batchId" LIKE $1
               ORDER BY "createdAt" """,
            f"{batch_prefix}%",
        )

    async def trained_windows(self, training_key: str) -> list[TrainedWindow]:
        """Every window trained for `training_key` (`<backend>:<model name>`), with the step that trained it."""
        return [TrainedWindow(r["window_id"], r["trained_at"], r["version"])
                for r in await self.pool.fetch(_TRAINED_WINDOWS_SQL, training_key)]

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


async def row_counts(conn: asyncpg.Connection, tables: Sequence[str]) -> dict[str, int]:
    """Exact row counts of `tables`; 0 for a table the database does not have (not migrated)."""
    counts = {}
    for table in tables:
        present = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}") if present else 0
    return counts

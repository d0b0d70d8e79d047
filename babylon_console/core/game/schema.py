"""Column orders of the game's tables, as used for COPY and row tuples; the columns the console
needs of them, and which of those a database lacks (`doctor`).

The game owns these tables (DESIGN section 3); the names are Prisma's quoted camelCase. Writers
build tuples in exactly these orders so bulk COPY and row-by-row INSERT share one definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

USER_COLUMNS: tuple[str, ...] = (
    "id",
    "username",
    "displayName",
    "isAgent",
    "createdAt",
    "updatedAt",
)

TRAJECTORY_COLUMNS: tuple[str, ...] = (
    "id",
    "trajectoryId",
    "agentId",
    "startTime",
    "endTime",
    "durationMs",
    "windowId",
    "windowHours",
    "episodeId",
    "scenarioId",
    "batchId",
    "stepsJson",
    "rewardComponentsJson",
    "metricsJson",
    "metadataJson",
    "totalReward",
    "episodeLength",
    "finalStatus",
    "finalBalance",
    "finalPnL",
    "tradesExecuted",
    "postsCreated",
    "isTrainingData",
    "isEvaluation",
    "usedInTraining",
    "createdAt",
    "updatedAt",
)

LLM_CALL_COLUMNS: tuple[str, ...] = (
    "id",
    "trajectoryId",
    "stepId",
    "callId",
    "timestamp",
    "latencyMs",
    "model",
    "purpose",
    "actionType",
    "systemPrompt",
    "userPrompt",
    "messagesJson",
    "response",
    "reasoning",
    "temperature",
    "maxTokens",
    "topP",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "metadata",
    "createdAt",
)

MARKET_OUTCOME_COLUMNS: tuple[str, ...] = (
    "id",
    "windowId",
    "stockTicker",
    "startPrice",
    "endPrice",
    "changePercent",
    "sentiment",
    "newsEvents",
    "predictionMarketId",
    "question",
    "outcome",
    "finalProbability",
    "volume",
    "createdAt",
)

# The game columns the console reads or writes; a game schema lacking one is reported.
REQUIRED_GAME_COLUMNS: dict[str, tuple[str, ...]] = {
    "trajectories": (
        "trajectoryId",
        "agentId",
        "windowId",
        "stepsJson",
        "episodeLength",
        "finalPnL",
        "usedInTraining",
        "aiJudgeReward",
    ),
    "market_outcomes": ("windowId", "stockTicker", "predictionMarketId", "outcome"),
    "trained_models": ("modelId", "status", "storagePath"),
    "training_batches": ("batchId", "status"),
}


async def missing_game_columns(conn: asyncpg.Connection) -> dict[str, list[str] | None]:
    """Per table of `REQUIRED_GAME_COLUMNS`, the columns it lacks ([]: none); None: no such table."""
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY($1::text[])",
        list(REQUIRED_GAME_COLUMNS),
    )
    present: dict[str, set[str]] = {}
    for r in rows:
        present.setdefault(r["table_name"], set()).add(r["column_name"])
    return {table: [c for c in columns if c not in present[table]] if table in present else None
            for table, columns in REQUIRED_GAME_COLUMNS.items()}

"""Column orders of the game's tables, as used for COPY and row tuples.

The game owns these tables (DESIGN section 3); the names are Prisma's quoted camelCase. Writers
build tuples in exactly these orders so bulk COPY and row-by-row INSERT share one definition.
"""

from __future__ import annotations

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

-- Game tables, as the game's Prisma schema creates them (DESIGN section 3).
-- Each table (and its indexes) is created only when the table is missing: on a database where
-- the game already created it, nothing of the game's is touched.

DO $$
BEGIN
  IF to_regclass('public."User"') IS NULL THEN
    CREATE TABLE "User" (
      "id"          TEXT PRIMARY KEY,
      "username"    TEXT,
      "displayName" TEXT,
      "isAgent"     BOOLEAN NOT NULL DEFAULT false,
      "createdAt"   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
      "updatedAt"   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
    CREATE UNIQUE INDEX "User_username_key" ON "User" ("username");
  END IF;

  IF to_regclass('public.trajectories') IS NULL THEN
    CREATE TABLE trajectories (
      "id"                   TEXT PRIMARY KEY,
      "trajectoryId"         TEXT NOT NULL,
      "agentId"              TEXT NOT NULL REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE,
      "startTime"            TIMESTAMP(3) NOT NULL,
      "endTime"              TIMESTAMP(3) NOT NULL,
      "durationMs"           INTEGER NOT NULL,
      "windowId"             VARCHAR(50),
      "windowHours"          INTEGER NOT NULL DEFAULT 1,
      "episodeId"            VARCHAR(100),
      "scenarioId"           VARCHAR(100),
      "batchId"              VARCHAR(100),
      "stepsJson"            TEXT NOT NULL,
      "rewardComponentsJson" TEXT NOT NULL,
      "metricsJson"          TEXT NOT NULL,
      "metadataJson"         TEXT NOT NULL,
      "totalReward"          DOUBLE PRECISION NOT NULL,
      "episodeLength"        INTEGER NOT NULL,
      "finalStatus"          TEXT NOT NULL,
      "finalBalance"         DOUBLE PRECISION,
      "finalPnL"             DOUBLE PRECISION,
      "tradesExecuted"       INTEGER,
      "postsCreated"         INTEGER,
      "aiJudgeReward"        DOUBLE PRECISION,
      "aiJudgeReasoning"     TEXT,
      "judgedAt"             TIMESTAMP(3),
      "isTrainingData"       BOOLEAN NOT NULL DEFAULT true,
      "isEvaluation"         BOOLEAN NOT NULL DEFAULT false,
      "usedInTraining"       BOOLEAN NOT NULL DEFAULT false,
      "trainedInBatch"       TEXT,
      "createdAt"            TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
      "updatedAt"            TIMESTAMP(3) NOT NULL
    );
    CREATE UNIQUE INDEX "trajectories_trajectoryId_key" ON trajectories ("trajectoryId");
    CREATE INDEX "trajectories_agentId_startTime_idx" ON trajectories ("agentId", "startTime");
    CREATE INDEX "trajectories_scenarioId_createdAt_idx" ON trajectories ("scenarioId", "createdAt");
  END IF;

  IF to_regclass('public.llm_call_logs') IS NULL THEN
    CREATE TABLE llm_call_logs (
      "id"               TEXT PRIMARY KEY,
      "trajectoryId"     TEXT NOT NULL,
      "stepId"           TEXT NOT NULL,
      "callId"           TEXT NOT NULL,
      "timestamp"        TIMESTAMP(3) NOT NULL,
      "latencyMs"        INTEGER,
      "model"            TEXT NOT NULL,
      "purpose"          TEXT NOT NULL,
      "actionType"       TEXT,
      "systemPrompt"     TEXT NOT NULL,
      "userPrompt"       TEXT NOT NULL,
      "messagesJson"     TEXT,
      "response"         TEXT NOT NULL,
      "reasoning"        TEXT,
      "temperature"      DOUBLE PRECISION NOT NULL,
      "maxTokens"        INTEGER NOT NULL,
      "topP"             DOUBLE PRECISION,
      "promptTokens"     INTEGER,
      "completionTokens" INTEGER,
      "totalTokens"      INTEGER,
      "metadata"         TEXT,
      "createdAt"        TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
    CREATE UNIQUE INDEX "llm_call_logs_callId_key" ON llm_call_logs ("callId");
    CREATE INDEX "llm_call_logs_trajectoryId_idx" ON llm_call_logs ("trajectoryId");
  END IF;

  IF to_regclass('public.market_outcomes') IS NULL THEN
    CREATE TABLE market_outcomes (
      "id"                 TEXT PRIMARY KEY,
      "windowId"           VARCHAR(50) NOT NULL,
      "stockTicker"        VARCHAR(20),
      "startPrice"         NUMERIC(10,2),
      "endPrice"           NUMERIC(10,2),
      "changePercent"      NUMERIC(5,2),
      "sentiment"          VARCHAR(20),
      "newsEvents"         JSONB,
      "predictionMarketId" TEXT,
      "question"           TEXT,
      "outcome"            VARCHAR(20),
      "finalProbability"   NUMERIC(5,4),
      "volume"             NUMERIC(15,2),
      "createdAt"          TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
    CREATE INDEX "market_outcomes_windowId_idx" ON market_outcomes ("windowId");
  END IF;

  IF to_regclass('public.training_batches') IS NULL THEN
    CREATE TABLE training_batches (
      "id"                TEXT PRIMARY KEY,
      "batchId"           TEXT NOT NULL,
      "scenarioId"        TEXT,
      "baseModel"         TEXT NOT NULL,
      "modelVersion"      TEXT NOT NULL,
      "trajectoryIds"     TEXT NOT NULL,
      "rankingsJson"      TEXT,
      "rewardsJson"       TEXT NOT NULL,
      "trainingLoss"      DOUBLE PRECISION,
      "policyImprovement" DOUBLE PRECISION,
      "status"            TEXT NOT NULL DEFAULT 'pending',
      "error"             TEXT,
      "createdAt"         TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
      "startedAt"         TIMESTAMP(3),
      "completedAt"       TIMESTAMP(3)
    );
    CREATE UNIQUE INDEX "training_batches_batchId_key" ON training_batches ("batchId");
    CREATE INDEX "training_batches_status_createdAt_idx" ON training_batches ("status", "createdAt");
  END IF;

  IF to_regclass('public.trained_models') IS NULL THEN
    CREATE TABLE trained_models (
      "id"              TEXT PRIMARY KEY,
      "modelId"         TEXT NOT NULL,
      "version"         TEXT NOT NULL,
      "baseModel"       TEXT NOT NULL,
      "trainingBatch"   TEXT,
      "status"          TEXT NOT NULL DEFAULT 'training',
      "deployedAt"      TIMESTAMP(3),
      "archivedAt"      TIMESTAMP(3),
      "storagePath"     TEXT NOT NULL,
      "benchmarkScore"  DOUBLE PRECISION,
      "accuracy"        DOUBLE PRECISION,
      "avgReward"       DOUBLE PRECISION,
      "evalMetrics"     JSONB,
      "wandbRunId"      TEXT,
      "wandbArtifactId" TEXT,
      "agentsUsing"     INTEGER NOT NULL DEFAULT 0,
      "totalInferences" INTEGER NOT NULL DEFAULT 0,
      "createdAt"       TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
      "updatedAt"       TIMESTAMP(3) NOT NULL
    );
    CREATE UNIQUE INDEX "trained_models_modelId_key" ON trained_models ("modelId");
    CREATE INDEX "trained_models_status_idx" ON trained_models ("status");
  END IF;
END
$$;

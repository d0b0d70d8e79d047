from __future__ import annotations

import asyncio

import asyncpg

from babylon_console.core.db.migrations import load_migrations, migrate, status

GAME_TABLES = (
    "User",
    "trajectories",
    "llm_call_logs",
    "market_outcomes",
    "training_batches",
    "trained_models",
)


async def _schema_snapshot(conn: asyncpg.Connection, tables: tuple[str, ...]) -> dict[str, object]:
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, column_default, is_nullable "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY($1::text[]) "
        "ORDER BY table_name, ordinal_position",
        list(tables),
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename = ANY($1::text[]) ORDER BY indexname",
        list(tables),
    )
    return {"columns": [tuple(r) for r in columns], "indexes": [tuple(r) for r in indexes]}


async def test_migrations_are_idempotent(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await migrate(conn)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        snapshot = await _schema_snapshot(conn, GAME_TABLES)
        second = await migrate(conn)
        assert second == []
        assert await _schema_snapshot(conn, GAME_TABLES) == snapshot
        assert all(s.applied and s.checksum_matches for s in await status(conn))
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert set(GAME_TABLES) <= tables
        assert {"console_events", "console_judgments", "console_runs", "console_promotions"} <= tables
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(m.version for r in results for m in r)
        assert applied == [m.version for m in load_migrations()]
        count = await conns[0].fetchval("SELECT count(*) FROM console_schema_migrations")
        assert count == len(load_migrations())
    finally:
        for c in conns:
            await c.close()


GAME_DDL = """
CREATE TABLE "User" (id TEXT PRIMARY KEY, username TEXT, "displayName" TEXT, "isAgent" BOOLEAN NOT NULL
  DEFAULT false, "walletAddress" TEXT, "reputationPoints" INTEGER DEFAULT 1000);
CREATE TABLE trajectories (
  id TEXT PRIMARY KEY, "trajectoryId" TEXT NOT NULL, "agentId" TEXT NOT NULL REFERENCES "User"(id),
  "startTime" TIMESTAMP(3) NOT NULL, "endTime" TIMESTAMP(3) NOT NULL, "durationMs" INTEGER NOT NULL,
  "windowId" VARCHAR(50), "windowHours" INTEGER NOT NULL DEFAULT 1, "episodeId" VARCHAR(100),
  "scenarioId" VARCHAR(100), "batchId" VARCHAR(100), "stepsJson" TEXT NOT NULL,
  "rewardComponentsJson" TEXT NOT NULL, "metricsJson" TEXT NOT NULL, "metadataJson" TEXT NOT NULL,
  "totalReward" DOUBLE PRECISION NOT NULL, "episodeLength" INTEGER NOT NULL, "finalStatus" TEXT NOT NULL,
  "finalBalance" DOUBLE PRECISION, "finalPnL" DOUBLE PRECISION, "tradesExecuted" INTEGER,
  "postsCreated" INTEGER, "aiJudgeReward" DOUBLE PRECISION, "aiJudgeReasoning" TEXT, "judgedAt" TIMESTAMP(3),
  "isTrainingData" BOOLEAN NOT NULL DEFAULT true, "isEvaluation" BOOLEAN NOT NULL DEFAULT false,
  "usedInTraining" BOOLEAN NOT NULL DEFAULT false, "trainedInBatch" TEXT,
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" TIMESTAMP(3) NOT NULL,
  "gameSpecificScore" DOUBLE PRECISION, "archetype" TEXT
);
CREATE UNIQUE INDEX "trajectories_trajectoryId_key" ON trajectories ("trajectoryId");
CREATE INDEX "trajectories_windowId_idx" ON trajectories ("windowId");
CREATE INDEX "trajectories_archetype_idx" ON trajectories ("archetype");
CREATE TABLE market_outcomes (id TEXT PRIMARY KEY, "windowId" VARCHAR(50) NOT NULL, "stockTicker" VARCHAR(20),
  "startPrice" NUMERIC(10,2), "endPrice" NUMERIC(10,2), "changePercent" NUMERIC(5,2), sentiment VARCHAR(20),
  "newsEvents" JSONB, "predictionMarketId" TEXT, question TEXT, outcome VARCHAR(20),
  "finalProbability" NUMERIC(5,4), volume NUMERIC(15,2), "createdAt" TIMESTAMP(3) NOT NULL DEFAULT now(),
  "sourceFeed" TEXT);
"""


async def test_migrations_leave_game_created_tables_alone(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(GAME_DDL)
        before = await _schema_snapshot(conn, ("User", "trajectories"))
        market_before = await _schema_snapshot(conn, ("market_outcomes",))
        await conn.execute(
            """INSERT INTO "User" (id, username, "isAgent", "walletAddress")
               VALUES ('a1', 'alice', true, '0x1')"""
        )
        await migrate(conn)
        # Game tables with their own windowId index: not one column or index changed.
        assert await _schema_snapshot(conn, ("User", "trajectories")) == before
        # market_outcomes lacked a windowId index: only the console-owned index was added.
        market_after = await _schema_snapshot(conn, ("market_outcomes",))
        assert market_after["columns"] == market_before["columns"]
        added = set(market_after["indexes"]) - set(market_before["indexes"])  # type: ignore[arg-type]
        assert [name for _, name, _ in added] == ["console_market_outcomes_window_idx"]
        # Missing game tables were created; existing data untouched.
        assert await conn.fetchval("SELECT to_regclass('public.trained_models') IS NOT NULL")
        assert await conn.fetchval("""SELECT "walletAddress" FROM "User" WHERE id = 'a1'""") == "0x1"
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_readiness_index_created_when_game_lacks_one(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        names = {
            r["indexname"]
            for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename='trajectories'")
        }
        assert "console_trajectories_readiness_idx" in names
    finally:
        await conn.close()

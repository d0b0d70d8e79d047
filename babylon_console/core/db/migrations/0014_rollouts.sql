-- Each A/B rollout has an id and a record, so that its evidence counts only its own windows: those
-- that opened at or after `started_market_at` (the database's clock when it started). A re-promotion,
-- even of the same candidate, and a change of share start a new rollout.
CREATE TABLE IF NOT EXISTS console_rollouts (
  id                 BIGSERIAL PRIMARY KEY,
  candidate_model_id TEXT NOT NULL,
  live_model_id      TEXT,
  share              DOUBLE PRECISION NOT NULL CHECK (share > 0 AND share < 1),
  started_by         TEXT NOT NULL,
  started_at         TIMESTAMPTZ NOT NULL DEFAULT now(),  -- wall clock
  started_market_at  TIMESTAMP NOT NULL,  -- naive UTC, the clock window ids are dated by
  ended_at           TIMESTAMPTZ,
  end_reason         TEXT
);

-- The current rollout names its record; audit rows name the rollout they started or ended.
ALTER TABLE console_rollout ADD COLUMN IF NOT EXISTS rollout_id BIGINT;
ALTER TABLE console_promotions ADD COLUMN IF NOT EXISTS rollout_id BIGINT;

-- A rollout already running when this migration ran gets a record dated by its last change.
WITH legacy AS (
  SELECT candidate_model_id, candidate_share, updated_by, updated_at FROM console_rollout
  WHERE candidate_model_id IS NOT NULL AND rollout_id IS NULL AND candidate_share > 0 AND candidate_share < 1
), started AS (
  INSERT INTO console_rollouts (candidate_model_id, live_model_id, share, started_by, started_at, started_market_at)
  SELECT l.candidate_model_id,
         (SELECT "modelId" FROM trained_models WHERE status = 'deployed' LIMIT 1),
         l.candidate_share, coalesce(l.updated_by, 'unknown'), l.updated_at, l.updated_at AT TIME ZONE 'UTC'
  FROM legacy l
  RETURNING id
)
UPDATE console_rollout SET rollout_id = (SELECT id FROM started)
WHERE candidate_model_id IS NOT NULL AND rollout_id IS NULL AND EXISTS (SELECT 1 FROM started);

-- What the game serves now, as in 0004, with the rollout's id (a new column at the end).
CREATE OR REPLACE VIEW console_serving AS
SELECT m."modelId" AS model_id, m."storagePath" AS storage_path, 'live'::text AS role,
       1.0 - coalesce((SELECT r.candidate_share FROM console_rollout r WHERE r.candidate_model_id IS NOT NULL), 0)
         AS share,
       (SELECT r.rollout_id FROM console_rollout r WHERE r.candidate_model_id IS NOT NULL) AS rollout_id
FROM trained_models m WHERE m.status = 'deployed'
UNION ALL
SELECT c."modelId", c."storagePath", 'candidate', r.candidate_share, r.rollout_id
FROM console_rollout r JOIN trained_models c ON c."modelId" = r.candidate_model_id
WHERE r.candidate_share > 0;

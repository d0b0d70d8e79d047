-- Held-out evaluations (core/evaluation.py): one row per comparison of two checkpoints on the same
-- held-out windows; `result` holds the windows, the per-arm means and the paired difference.
CREATE TABLE IF NOT EXISTS console_evaluations (
  id               BIGSERIAL PRIMARY KEY,
  model_id         TEXT NOT NULL,
  against          TEXT NOT NULL,
  against_model_id TEXT,
  result           JSONB NOT NULL,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS console_evaluations_model ON console_evaluations (model_id, id DESC);

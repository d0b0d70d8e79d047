-- Tables owned by Babylon Console (prefix console_). The game never reads or writes them.

CREATE TABLE IF NOT EXISTS console_events (
  id          BIGSERIAL PRIMARY KEY,
  run_id      TEXT,
  kind        TEXT NOT NULL,
  payload     JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS console_events_run_idx ON console_events (run_id, id);

CREATE TABLE IF NOT EXISTS console_runs (
  id              TEXT PRIMARY KEY,
  model_name      TEXT NOT NULL,
  backend         TEXT NOT NULL,
  judge           TEXT NOT NULL,
  config          JSONB NOT NULL DEFAULT '{}'::jsonb,
  state           TEXT NOT NULL DEFAULT 'starting',
  host            TEXT,
  pid             INTEGER,
  iteration       INTEGER NOT NULL DEFAULT 0,
  step            INTEGER NOT NULL DEFAULT 0,
  error           TEXT,
  started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  heartbeat_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  stopped_at      TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS console_judgments (
  id             BIGSERIAL PRIMARY KEY,
  trajectory_id  TEXT NOT NULL,
  window_id      TEXT NOT NULL,
  judge          TEXT NOT NULL,
  judge_model    TEXT,
  run_id         TEXT,
  score          DOUBLE PRECISION NOT NULL,
  explanation    TEXT NOT NULL,
  cost_usd       DOUBLE PRECISION,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS console_judgments_trajectory_idx ON console_judgments (trajectory_id, id DESC);
CREATE INDEX IF NOT EXISTS console_judgments_window_idx ON console_judgments (window_id);

-- Which windows a model has been trained on, by which batch (the readiness "trained" flag).
CREATE TABLE IF NOT EXISTS console_trained_windows (
  window_id   TEXT NOT NULL,
  model_name  TEXT NOT NULL,
  batch_id    TEXT NOT NULL,
  trained_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (window_id, model_name)
);

-- Audit trail of promotions and rollbacks.
CREATE TABLE IF NOT EXISTS console_promotions (
  id              BIGSERIAL PRIMARY KEY,
  action          TEXT NOT NULL CHECK (action IN ('promote', 'rollback', 'rollout')),
  operator        TEXT NOT NULL,
  from_model_id   TEXT,
  to_model_id     TEXT,
  share           DOUBLE PRECISION,
  note            TEXT,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The current A/B rollout: one row at most. The live model itself is trained_models.status = 'deployed'.
CREATE TABLE IF NOT EXISTS console_rollout (
  singleton          BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
  candidate_model_id TEXT,
  candidate_share    DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (candidate_share >= 0 AND candidate_share <= 1),
  updated_by         TEXT,
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

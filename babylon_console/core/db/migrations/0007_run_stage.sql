-- What an engine is doing now, and since when (status command, Training pane, deadlines), and the
-- heartbeat interval it promised, so any console can tell a late engine (stale) from a dead one.
ALTER TABLE console_runs ADD COLUMN IF NOT EXISTS stage TEXT;
ALTER TABLE console_runs ADD COLUMN IF NOT EXISTS stage_started_at TIMESTAMPTZ;
ALTER TABLE console_runs ADD COLUMN IF NOT EXISTS heartbeat_s DOUBLE PRECISION NOT NULL DEFAULT 5;

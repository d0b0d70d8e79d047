-- Which run holds each model's engine lock. The advisory lock is a session lock: it vanishes with
-- its connection (a database restart), and another engine may then take it. Every engine write
-- checks, in its own transaction, that this row still names its run, so an engine that lost the
-- lock cannot commit anything (a fencing token).
CREATE TABLE IF NOT EXISTS console_engine_tokens (
  training_key  TEXT PRIMARY KEY,
  run_id        TEXT NOT NULL,
  taken_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

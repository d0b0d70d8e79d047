-- Operators' commands to an engine running elsewhere (pause, resume, stop), with who sent them and
-- the engine's acknowledgement. Sent with NOTIFY console_engine_commands (payload: the run id).
CREATE TABLE IF NOT EXISTS console_engine_commands (
  id          BIGSERIAL PRIMARY KEY,
  run_id      TEXT NOT NULL,
  command     TEXT NOT NULL CHECK (command IN ('pause', 'resume', 'stop')),
  operator    TEXT NOT NULL,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  acked_at    TIMESTAMPTZ,
  result      TEXT
);
CREATE INDEX IF NOT EXISTS console_engine_commands_pending_idx ON console_engine_commands (run_id) WHERE acked_at IS NULL;

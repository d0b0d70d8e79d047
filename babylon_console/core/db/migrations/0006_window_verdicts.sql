-- Windows a model's engine examined and found unusable (e.g. not one recorded call is trainable),
-- with the reason; readiness shows them as "unusable" for that model instead of "ready".
-- model_name holds the training key (<backend>:<model name>), as console_trained_windows does
-- for rows written from this version on.
CREATE TABLE IF NOT EXISTS console_window_verdicts (
  window_id     TEXT NOT NULL,
  model_name    TEXT NOT NULL,
  verdict       TEXT NOT NULL CHECK (verdict IN ('unusable')),
  reason        TEXT NOT NULL,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (window_id, model_name)
);

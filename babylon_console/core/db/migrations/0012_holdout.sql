-- The hold-out (core/holdout.py): which share of windows is reserved for evaluation, as a property of
-- the database rather than of a process. Append-only: every change is a new row (the audit trail), the
-- newest row is the record in force, and no row at all means nothing is held out.
CREATE TABLE IF NOT EXISTS console_holdout (
  id       BIGSERIAL PRIMARY KEY,
  share    DOUBLE PRECISION NOT NULL CHECK (share >= 0 AND share < 1),
  rule     TEXT NOT NULL,
  set_by   TEXT NOT NULL,
  reason   TEXT,
  set_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

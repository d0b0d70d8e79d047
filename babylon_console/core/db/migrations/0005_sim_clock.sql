-- The simulator's accelerated clock, published so that every process (engine, console, CLI)
-- judges "closed" and "open" windows by the same simulated time while a live simulation runs.
CREATE TABLE IF NOT EXISTS console_sim_clock (
  singleton     BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
  real_epoch    TIMESTAMPTZ NOT NULL,
  sim_epoch     TIMESTAMP NOT NULL,
  speed         DOUBLE PRECISION NOT NULL CHECK (speed > 0),
  namespace     TEXT NOT NULL,
  heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One clock per database: a simulated market's clock never falls back to the wall clock. It runs
-- until `runs_until` (each heartbeat pushes it a little ahead; a clean stop sets it to the moment of
-- the stop), then stands still at the simulated time of that moment until the market runs again.
ALTER TABLE console_sim_clock ADD COLUMN IF NOT EXISTS runs_until TIMESTAMPTZ;

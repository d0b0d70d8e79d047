-- One clock per database: a simulated market's clock never falls back to the wall clock. It runs
-- until `runs_until` (each heartbeat pushes it a little ahead; a clean stop sets it to the moment of
-- the stop), then stands still at the simulated time of that moment until the market runs again.
ALTER TABLE console_sim_clock ADD COLUMN IF NOT EXISTS runs_until TIMESTAMPTZ;
-- A record left by an earlier version's market that stopped without retiring it (older versions
-- deleted the record on a clean stop, and ran the demo in the operator's database): it is not a
-- simulated database's clock, so the database goes back to the wall clock.
DELETE FROM console_sim_clock WHERE runs_until IS NULL AND heartbeat_at < now() - interval '30 seconds';

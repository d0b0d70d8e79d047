-- Indexes the readiness queries need, created only where the game lacks an equivalent index.
-- They are console-owned (prefix console_) and cost write time and disk on the game's tables:
-- see README "Indexes the console adds".

DO $$
BEGIN
  -- trajectories: one covering index on ("windowId", "agentId") lets readiness run as an
  -- index-only scan. Skipped when any index already leads with "windowId".
  IF NOT EXISTS (
    SELECT 1 FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = 'public.trajectories'::regclass AND a.attname = 'windowId'
  ) THEN
    CREATE INDEX console_trajectories_readiness_idx ON trajectories ("windowId", "agentId")
      INCLUDE ("episodeLength", "finalPnL", "usedInTraining", "isTrainingData", "isEvaluation");
  END IF;

  IF NOT EXISTS (
    SELECT 1 FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = 'public.market_outcomes'::regclass AND a.attname = 'windowId'
  ) THEN
    CREATE INDEX console_market_outcomes_window_idx ON market_outcomes ("windowId");
  END IF;
END
$$;

-- The Prisma-era game serves the newest trained_models row with status 'ready' or 'deployed'
-- (its getLatestRLModel()), so a checkpoint this project registers is 'registered' until it is
-- promoted. This project's own earlier 'ready' rows (a storagePath of one of its schemes) become
-- 'registered': the game's query then returns the live model, or no row while nothing is live.
-- Rows the game wrote (any other storagePath) are never touched. Idempotent: a second run finds none.
UPDATE trained_models
SET status = 'registered', "updatedAt" = now() AT TIME ZONE 'UTC'  -- naive UTC, as Prisma writes it
WHERE status = 'ready'
  AND ("storagePath" LIKE 'offline://%' OR "storagePath" LIKE 'wandb-artifact://%'
       OR "storagePath" LIKE 'local-lora://%');

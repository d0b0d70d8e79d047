-- The evidence an automatic (or an against-the-evidence) promotion decision was taken on: the A/B
-- readout as JSON, next to the audit row's note (the reason).
ALTER TABLE console_promotions ADD COLUMN IF NOT EXISTS evidence JSONB;

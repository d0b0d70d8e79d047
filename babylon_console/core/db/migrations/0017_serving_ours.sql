-- The live model is this project's 'deployed' row (a storagePath of one of its schemes): a 'deployed'
-- row the game wrote itself is shown as the game's query result, never served as ours, never archived
-- by a promotion.
CREATE OR REPLACE VIEW console_serving AS
SELECT m."modelId" AS model_id, m."storagePath" AS storage_path, 'live'::text AS role,
       1.0 - coalesce((SELECT r.candidate_share FROM console_rollout r WHERE r.candidate_model_id IS NOT NULL), 0)
         AS share,
       (SELECT r.rollout_id FROM console_rollout r WHERE r.candidate_model_id IS NOT NULL) AS rollout_id
FROM trained_models m
WHERE m.status = 'deployed'
  AND (m."storagePath" LIKE 'offline://%' OR m."storagePath" LIKE 'wandb-artifact://%'
       OR m."storagePath" LIKE 'local-lora://%')
UNION ALL
SELECT c."modelId", c."storagePath", 'candidate', r.candidate_share, r.rollout_id
FROM console_rollout r JOIN trained_models c ON c."modelId" = r.candidate_model_id
WHERE r.candidate_share > 0;

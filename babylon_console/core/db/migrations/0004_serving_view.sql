-- What the game serves now: the live model (trained_models.status = 'deployed') and, during an A/B
-- rollout, the candidate with its share of agents. The game reads this view (or trained_models).
CREATE OR REPLACE VIEW console_serving AS
SELECT m."modelId" AS model_id, m."storagePath" AS storage_path, 'live'::text AS role,
       1.0 - coalesce((SELECT r.candidate_share FROM console_rollout r WHERE r.candidate_model_id IS NOT NULL), 0)
         AS share
FROM trained_models m WHERE m.status = 'deployed'
UNION ALL
SELECT c."modelId", c."storagePath", 'candidate', r.candidate_share
FROM console_rollout r JOIN trained_models c ON c."modelId" = r.candidate_model_id
WHERE r.candidate_share > 0;

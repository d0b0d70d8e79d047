-- The model gateway (`babylon-console gateway`): one row per call it served, and one heartbeat row
-- per gateway process. Several gateways may share this database; neither table is read by the game.
CREATE TABLE IF NOT EXISTS console_gateway_calls (
  id                BIGSERIAL PRIMARY KEY,
  at                TIMESTAMPTZ NOT NULL,  -- when the request arrived
  gateway_id        TEXT NOT NULL,
  agent             TEXT NOT NULL,  -- the agent identity used for stickiness (never a key)
  rollout_id        BIGINT,  -- the A/B rollout in progress when it was routed, if any
  arm               TEXT NOT NULL,  -- live, candidate, pinned, base (or none: refused before routing)
  model_id          TEXT,  -- the checkpoint that served it
  upstream          TEXT,  -- where it was forwarded (base URL and model name; no credentials)
  status            INTEGER NOT NULL,  -- the HTTP status the client got (499: the client went away)
  latency_ms        DOUBLE PRECISION NOT NULL,
  prompt_tokens     INTEGER,
  completion_tokens INTEGER,
  response_sha256   TEXT,  -- sha256 of the response text, hex: matches a recorded llm_call_logs.response
  error             TEXT
);
CREATE INDEX IF NOT EXISTS console_gateway_calls_at_idx ON console_gateway_calls (at);
CREATE INDEX IF NOT EXISTS console_gateway_calls_sha_idx ON console_gateway_calls (response_sha256);
CREATE INDEX IF NOT EXISTS console_gateway_calls_rollout_idx ON console_gateway_calls (rollout_id, arm);

CREATE TABLE IF NOT EXISTS console_gateways (
  id              TEXT PRIMARY KEY,  -- host:pid:nonce
  host            TEXT NOT NULL,
  pid             INTEGER NOT NULL,
  listen          TEXT NOT NULL,  -- host:port it serves
  started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  heartbeat_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  routing_source  TEXT NOT NULL,  -- 'database', or 'memory since ...' while the database is away
  stats           JSONB NOT NULL DEFAULT '{}'::jsonb,  -- requests and errors per arm since it started
  stopped_at      TIMESTAMPTZ
);

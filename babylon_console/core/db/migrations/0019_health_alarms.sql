-- Training health per step and the alarms its rules raise (core.training.health_store owns both).

-- One row per trained step of a model (its training key, `<backend>:<model>`): the step's health as
-- JSON (StepHealth), so a figure added later needs no migration. A step trained again (recovered
-- after a crash) overwrites its row.
CREATE TABLE IF NOT EXISTS console_step_health (
  model_name TEXT NOT NULL,
  step       INTEGER NOT NULL,
  run_id     TEXT,
  health     JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (model_name, step)
);
CREATE INDEX IF NOT EXISTS console_step_health_created ON console_step_health (created_at);

-- An alarm: the rule, where it fired (step or window), the figures and threshold it fired on, and
-- its acknowledgement. Who wrote it and who acknowledged it are the server's word (triggers below),
-- beside the name the operator's client gave.
CREATE TABLE IF NOT EXISTS console_alarms (
  id                      BIGSERIAL PRIMARY KEY,
  run_id                  TEXT,
  model_name              TEXT NOT NULL,
  rule                    TEXT NOT NULL,
  step                    INTEGER,
  window_id               TEXT,
  figures                 JSONB NOT NULL DEFAULT '{}'::jsonb,
  threshold               DOUBLE PRECISION,
  message                 TEXT NOT NULL,
  created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
  db_role                 TEXT DEFAULT current_user,
  db_login                TEXT DEFAULT session_user,
  acknowledged_at         TIMESTAMPTZ,
  acknowledged_by         TEXT,  -- the operator's name as the client gave it
  acknowledged_db_role    TEXT,  -- current_user when acknowledged, by the trigger
  acknowledged_db_login   TEXT,  -- session_user when acknowledged
  note                    TEXT
);
CREATE INDEX IF NOT EXISTS console_alarms_model ON console_alarms (model_name, id DESC);
CREATE INDEX IF NOT EXISTS console_alarms_open ON console_alarms (id DESC) WHERE acknowledged_at IS NULL;

DROP TRIGGER IF EXISTS console_record_db_role ON console_alarms;
CREATE TRIGGER console_record_db_role BEFORE INSERT ON console_alarms
  FOR EACH ROW EXECUTE FUNCTION console_record_db_role();

-- An acknowledgement names its database role by the server's word and is written once: a second one
-- (or an attempt to undo it) is refused, whoever holds the grant.
CREATE OR REPLACE FUNCTION console_record_alarm_ack() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF OLD.acknowledged_at IS NOT NULL
     AND (NEW.acknowledged_at, NEW.acknowledged_by, NEW.note)
         IS DISTINCT FROM (OLD.acknowledged_at, OLD.acknowledged_by, OLD.note) THEN
    RAISE EXCEPTION 'alarm % was already acknowledged by % at %', OLD.id, OLD.acknowledged_by, OLD.acknowledged_at
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at THEN
    NEW.acknowledged_db_role := current_user;
    NEW.acknowledged_db_login := session_user;
  ELSE
    NEW.acknowledged_db_role := OLD.acknowledged_db_role;
    NEW.acknowledged_db_login := OLD.acknowledged_db_login;
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS console_record_alarm_ack ON console_alarms;
CREATE TRIGGER console_record_alarm_ack BEFORE UPDATE ON console_alarms
  FOR EACH ROW EXECUTE FUNCTION console_record_alarm_ack();

-- An alarm is raised open: its acknowledgement is written by an UPDATE only, where the trigger of 0019
-- records the acknowledging role by the server's word. Without this, a role allowed to raise alarms (the
-- engine) could insert one already "acknowledged" under any name and role it chose.
CREATE OR REPLACE FUNCTION console_alarm_raised_open() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.acknowledged_at IS NOT NULL OR NEW.acknowledged_by IS NOT NULL OR NEW.acknowledged_db_role IS NOT NULL
     OR NEW.acknowledged_db_login IS NOT NULL OR NEW.note IS NOT NULL THEN
    RAISE EXCEPTION 'an alarm is raised unacknowledged: its acknowledgement is an update by an operator'
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS console_alarm_raised_open ON console_alarms;
CREATE TRIGGER console_alarm_raised_open BEFORE INSERT ON console_alarms
  FOR EACH ROW EXECUTE FUNCTION console_alarm_raised_open();

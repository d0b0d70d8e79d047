-- Who acted, by the server's word: the database role (current_user) and the login role it connected
-- as (session_user), next to the operating-system user the client reports (operator, set_by,
-- started_by), in every audit row, command row and event. A trigger writes both on insert, so no
-- client can name another role; the defaults say the same for a reader of the schema. Rows written
-- before this migration have none (NULL: not recorded).
CREATE OR REPLACE FUNCTION console_record_db_role() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  NEW.db_role := current_user;
  NEW.db_login := session_user;
  RETURN NEW;
END
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['console_promotions', 'console_rollouts', 'console_holdout',
                           'console_engine_commands', 'console_events'] LOOP
    -- added without a default first: a default at ADD COLUMN would stamp the migrating role on old rows
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS db_role TEXT', t);
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS db_login TEXT', t);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN db_role SET DEFAULT current_user', t);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN db_login SET DEFAULT session_user', t);
    EXECUTE format('DROP TRIGGER IF EXISTS console_record_db_role ON %I', t);
    EXECUTE format('CREATE TRIGGER console_record_db_role BEFORE INSERT ON %I '
                   'FOR EACH ROW EXECUTE FUNCTION console_record_db_role()', t);
  END LOOP;
END
$$;

-- A switch for the capture trigger: a transaction that sets
-- nvsrelay.capture = off (SET LOCAL) writes its rows without changelog rows
-- or NOTIFY, so they never enter the change stream.  `nvsrelay import` uses
-- it to load history without flooding subscribers; unlike
-- session_replication_role it needs no superuser.  Every other writer is
-- captured as before: the setting is unset, or anything but 'off'.
-- Otherwise the same function as 002_relay_capture.sql, replaced in place.
CREATE OR REPLACE FUNCTION log_table_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('nvsrelay.capture', true) = 'off' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW));
    ELSE
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values)
        VALUES (TG_TABLE_NAME, OLD.id, TG_OP, to_jsonb(OLD));
    END IF;
    PERFORM pg_notify('nvsentinel_changes', '{"table":"' || TG_TABLE_NAME || '"}');
    RETURN NULL;
END
$$;

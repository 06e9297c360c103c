-- The relay's additions: the commit-consistent capture columns, a capture
-- trigger whose NOTIFY PostgreSQL folds into one per table per transaction,
-- snapshot ticks and the changelog generation.  Relay-owned objects live in
-- schema nvsrelay.

-- Which transaction wrote each row: batches are cut by snapshot visibility of
-- this xid, never by id (ids are allocated in start order, not commit order).
-- Added without a default first, then given one: both are catalog-only
-- changes, so a large existing changelog is not rewritten under an exclusive
-- lock.  Rows already present keep a NULL xid: they predate the relay and
-- are served, in id order, only to consumers resuming from before it.
-- The index is built concurrently by the next migration.
SET LOCAL lock_timeout = '2s';
ALTER TABLE datastore_changelog ADD COLUMN IF NOT EXISTS xid xid8;
ALTER TABLE datastore_changelog ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
-- clusterTime is when the row was written, not when its transaction began.
ALTER TABLE datastore_changelog ALTER COLUMN changed_at SET DEFAULT clock_timestamp();

-- The payload is a constant per table so PostgreSQL folds all of one
-- transaction's notifications into one; NOTIFY only wakes the relay, it never
-- carries data the relay depends on.
CREATE OR REPLACE FUNCTION log_table_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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

-- CREATE OR REPLACE TRIGGER swaps the trigger in place: no window without
-- capture, unlike NVSentinel's DROP + CREATE.
CREATE OR REPLACE TRIGGER health_events_changes
    AFTER INSERT OR UPDATE OR DELETE ON health_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();
CREATE OR REPLACE TRIGGER maintenance_events_changes
    AFTER INSERT OR UPDATE OR DELETE ON maintenance_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();

-- Snapshot ticks: batch k is every changelog row whose xid is visible in
-- tick k's snapshot and not in tick k-1's.  Written by one elected ticker
-- with synchronous commit.
CREATE TABLE IF NOT EXISTS nvsrelay.tick (
    tick_id BIGINT PRIMARY KEY,
    snap pg_snapshot NOT NULL,
    max_id BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- One row: the generation every token carries, and the cluster it belongs to,
-- so a token from another database or a restored copy is refused, not
-- silently misread.
CREATE TABLE IF NOT EXISTS nvsrelay.meta (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    generation BIGINT NOT NULL,
    system_identifier TEXT NOT NULL,
    database_name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO nvsrelay.meta (generation, system_identifier, database_name)
SELECT 1 + floor(random() * 4294967294)::BIGINT,
       coalesce((SELECT system_identifier::TEXT FROM pg_control_system()), 'unknown'),
       current_database()
ON CONFLICT (singleton) DO NOTHING;

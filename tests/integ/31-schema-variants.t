#!/usr/bin/perl
# 31-schema-variants.t - nvsrelayd installs over the NVSentinel schemas found in the field
# besides the Go runtime DDL (30-schema.t): the documented SQL (docs/postgresql-schema.sql:
# no pg_notify, the cleanup_changelog and mark_changelog_processed helpers, the newer
# recovery, analyzer and unique idempotency-key indexes) and the versioned migrations at
# nvsentinel_schema_migrations version 3 (00001-00003, per-row pg_notify trigger, the unique
# index built concurrently). For each: nvsrelayd --migrate --dry-run prints the plan and
# changes nothing; the install keeps every row, NVSentinel's indexes, helpers and
# bookkeeping; events stream, including the rows a component's NVSentinel position still
# owes it; a second run (--migrate and a daemon start) changes nothing; --migrate applies
# only what is missing. Then a migration with writers active: four connections insert
# health events continuously while nvsrelayd migrates a database holding ~200k changelog
# rows; the longest single INSERT must stay below a generous bound on lock waits (3 s) and
# every row written during the migration must be captured. The figure is printed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP qw(decode_json);
use POSIX ();
use Test::More;
use NvsTest;

my $ROOT  = $NvsTest::ROOT;
my $BUILD = $ENV{NVSRELAY_BUILD} || "$ROOT/build";
my $pg    = NvsTest::Pg->start;
my $dir   = $pg->dir;

# ---- NVSentinel's schemas, as its two other sources create them ----

my $TABLES = <<'SQL';
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE TABLE IF NOT EXISTS maintenance_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(), event_id VARCHAR(255) UNIQUE NOT NULL,
    csp VARCHAR(50) NOT NULL, cluster_name VARCHAR(255) NOT NULL, node_name VARCHAR(255),
    status VARCHAR(50) NOT NULL, csp_status VARCHAR(50), scheduled_start_time TIMESTAMPTZ,
    actual_end_time TIMESTAMPTZ, event_received_timestamp TIMESTAMPTZ NOT NULL,
    last_updated_timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(), document JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(), updated_at TIMESTAMPTZ DEFAULT NOW());
CREATE INDEX IF NOT EXISTS idx_maintenance_events_event_id ON maintenance_events(event_id);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_csp_cluster ON maintenance_events(csp, cluster_name);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_node_status ON maintenance_events(node_name, status);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_scheduled ON maintenance_events(status, scheduled_start_time)
    WHERE scheduled_start_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_actual_end ON maintenance_events(status, actual_end_time)
    WHERE actual_end_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_received_desc
    ON maintenance_events(csp, cluster_name, event_received_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_last_updated ON maintenance_events(last_updated_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_csp_status ON maintenance_events(csp_status) WHERE csp_status IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_document_gin ON maintenance_events USING GIN (document);
CREATE TABLE IF NOT EXISTS health_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(), node_name VARCHAR(255) NOT NULL,
    event_type VARCHAR(100), severity VARCHAR(50), recommended_action VARCHAR(100),
    node_quarantined VARCHAR(50), user_pods_eviction_status VARCHAR(50) DEFAULT 'NotStarted',
    user_pods_eviction_message TEXT, fault_remediated BOOLEAN, last_remediation_timestamp TIMESTAMPTZ,
    document JSONB NOT NULL, created_at TIMESTAMPTZ DEFAULT NOW(), updated_at TIMESTAMPTZ DEFAULT NOW());
CREATE INDEX IF NOT EXISTS idx_health_events_node_name ON health_events(node_name);
CREATE INDEX IF NOT EXISTS idx_health_events_node_type ON health_events(node_name, event_type);
CREATE INDEX IF NOT EXISTS idx_health_events_quarantined ON health_events(node_quarantined) WHERE node_quarantined IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_health_events_eviction_status ON health_events(user_pods_eviction_status);
CREATE INDEX IF NOT EXISTS idx_health_events_created_desc ON health_events(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_health_events_created_id ON health_events(created_at, id);
CREATE INDEX IF NOT EXISTS idx_health_events_recovery_identity ON health_events (
    (document->'healthevent'->>'agent'),
    (COALESCE(document->'healthevent'->>'componentclass', document->'healthevent'->>'componentClass')),
    (COALESCE(document->'healthevent'->>'checkname', document->'healthevent'->>'checkName')),
    (COALESCE(document->'healthevent'->>'nodename', document->'healthevent'->>'nodeName')),
    (document->'healthevent'->>'version'), created_at, id);
CREATE INDEX IF NOT EXISTS idx_health_events_fault_quarantine_pending ON health_events (created_at, id)
    WHERE (COALESCE(document->'healtheventstatus'->>'nodequarantined', document->'healtheventstatus'->>'nodeQuarantined') IS NULL
        OR COALESCE(document->'healtheventstatus'->>'nodequarantined', document->'healtheventstatus'->>'nodeQuarantined') = ''
        OR COALESCE(document->'healtheventstatus'->>'nodequarantined', document->'healtheventstatus'->>'nodeQuarantined') = 'NotStarted')
      AND (document->'healtheventstatus'->>'faultquarantinerecovery' IS NULL
        OR document->'healtheventstatus'->>'faultquarantinerecovery' = '');
CREATE INDEX IF NOT EXISTS idx_health_events_updated_desc ON health_events(updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_health_events_document_gin ON health_events USING GIN (document);
CREATE TABLE IF NOT EXISTS datastore_changelog (
    id BIGSERIAL PRIMARY KEY, table_name VARCHAR(100) NOT NULL, record_id UUID NOT NULL,
    operation VARCHAR(20) NOT NULL, old_values JSONB, new_values JSONB,
    changed_at TIMESTAMPTZ DEFAULT NOW(), processed BOOLEAN DEFAULT FALSE);
CREATE INDEX IF NOT EXISTS idx_changelog_unprocessed ON datastore_changelog(changed_at) WHERE processed = FALSE;
CREATE INDEX IF NOT EXISTS idx_changelog_table_record ON datastore_changelog(table_name, record_id);
CREATE TABLE IF NOT EXISTS resume_tokens (
    client_name VARCHAR(255) PRIMARY KEY, resume_token JSONB NOT NULL, last_updated TIMESTAMPTZ DEFAULT NOW());
SQL

my $PLAIN_TRIGGER_FN = <<'SQL';
CREATE OR REPLACE FUNCTION log_table_changes() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values)
        VALUES (TG_TABLE_NAME, OLD.id, TG_OP, to_jsonb(OLD));
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW));
        RETURN NEW;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW));
        RETURN NEW;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
SQL

my $HELPERS = <<'SQL';
CREATE OR REPLACE FUNCTION cleanup_changelog(retention_days INTEGER DEFAULT 7) RETURNS INTEGER AS $$
DECLARE deleted_count INTEGER;
BEGIN
    DELETE FROM datastore_changelog WHERE changed_at < NOW() - INTERVAL '1 day' * retention_days AND processed = TRUE;
    GET DIAGNOSTICS deleted_count = ROW_COUNT;
    RETURN deleted_count;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION mark_changelog_processed(max_id BIGINT) RETURNS INTEGER AS $$
DECLARE updated_count INTEGER;
BEGIN
    UPDATE datastore_changelog SET processed = TRUE WHERE id <= max_id AND processed = FALSE;
    GET DIAGNOSTICS updated_count = ROW_COUNT;
    RETURN updated_count;
END;
$$ LANGUAGE plpgsql;
SQL

my $IDEMPOTENCY_INDEX = q{healthevent_idempotency_key_unique ON health_events
    ((document #>> '{healthevent,metadata,idempotencyKey}'))
    WHERE (document #>> '{healthevent,metadata,idempotencyKey}') IS NOT NULL};

# docs/postgresql-schema.sql (and the Tilt initdb script made from it).
my $DOC_SQL = $TABLES . <<SQL . $PLAIN_TRIGGER_FN . <<'SQL2' . $HELPERS;
CREATE INDEX IF NOT EXISTS idx_health_events_analyzer_lookup
    ON health_events (node_name, event_type, created_at DESC, (document->'healthevent'->>'agent'));
CREATE UNIQUE INDEX IF NOT EXISTS $IDEMPOTENCY_INDEX;
SQL
DROP TRIGGER IF EXISTS maintenance_events_changes ON maintenance_events;
DROP TRIGGER IF EXISTS health_events_changes ON health_events;
CREATE TRIGGER maintenance_events_changes AFTER INSERT OR UPDATE OR DELETE ON maintenance_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();
CREATE TRIGGER health_events_changes AFTER INSERT OR UPDATE OR DELETE ON health_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();
SQL2

# The versioned migrations 00001-00003 as a chart job applies them, plus the analyzer
# index the components then build concurrently at runtime.
my @MIGRATION_SQL = (
    "BEGIN;\nCREATE TABLE IF NOT EXISTS nvsentinel_schema_migrations (version BIGINT PRIMARY KEY,"
        . " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW());\n"
        . $TABLES . $PLAIN_TRIGGER_FN . <<'SQL' . $HELPERS
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'maintenance_events_changes'
                   AND tgrelid = 'maintenance_events'::regclass AND NOT tgisinternal) THEN
        CREATE TRIGGER maintenance_events_changes AFTER INSERT OR UPDATE OR DELETE ON maintenance_events
            FOR EACH ROW EXECUTE FUNCTION log_table_changes();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'health_events_changes'
                   AND tgrelid = 'health_events'::regclass AND NOT tgisinternal) THEN
        CREATE TRIGGER health_events_changes AFTER INSERT OR UPDATE OR DELETE ON health_events
            FOR EACH ROW EXECUTE FUNCTION log_table_changes();
    END IF;
END
$$;
SQL
        . "INSERT INTO nvsentinel_schema_migrations (version, description) VALUES (1, 'initial PostgreSQL schema')"
        . " ON CONFLICT (version) DO NOTHING;\nCOMMIT;\n",
    <<'SQL',
BEGIN;
ALTER TABLE health_events ADD COLUMN IF NOT EXISTS quarantine_finish_timestamp TIMESTAMPTZ;
ALTER TABLE health_events ADD COLUMN IF NOT EXISTS drain_finish_timestamp TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_changelog_resume ON datastore_changelog(table_name, changed_at, id) WHERE processed = FALSE;
CREATE OR REPLACE FUNCTION log_table_changes() RETURNS TRIGGER AS $$
DECLARE changelog_id BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values)
        VALUES (TG_TABLE_NAME, OLD.id, TG_OP, to_jsonb(OLD)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
INSERT INTO nvsentinel_schema_migrations (version, description) VALUES (2, 'reconcile historical Go runtime DDL')
    ON CONFLICT (version) DO NOTHING;
COMMIT;
SQL
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS $IDEMPOTENCY_INDEX;\n"
        . "INSERT INTO nvsentinel_schema_migrations (version, description) VALUES (3, 'health event idempotency index')"
        . " ON CONFLICT (version) DO NOTHING;\n",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_health_events_analyzer_lookup"
        . " ON health_events (node_name, event_type, created_at DESC, (document->'healthevent'->>'agent'));\n",
);

# ---- helpers ----

sub migrate {
    my ($db, @args) = @_;
    local %ENV = map { $_ => $ENV{$_} } grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ && !/_CLIENT_CERT_MOUNT_PATH$/ } keys %ENV;
    %ENV = (%ENV, %{ $pg->env }, DATASTORE_DATABASE => $db);
    return NvsTest::run_cmd([ "$BUILD/nvsrelayd", '--config', '/dev/null', '--migrate', @args ]);
}

my %snap_sql = (
    # The documented SQL lacks the two status timestamp columns the install adds.
    health_events => q{SELECT md5(string_agg((to_jsonb(t) - 'quarantine_finish_timestamp' - 'drain_finish_timestamp')::text,
        chr(10) ORDER BY id)) FROM health_events t},
    maintenance_events => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY id)) FROM maintenance_events t',
    # The relay adds a column to the changelog; the rows NVSentinel wrote must not change.
    datastore_changelog => q{SELECT md5(string_agg(concat_ws('|', id, table_name, record_id, operation,
        old_values, new_values, changed_at, processed), chr(10) ORDER BY id)) FROM datastore_changelog},
    resume_tokens => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY client_name)) FROM resume_tokens t',
);

# What NVSentinel owns besides its rows: indexes (with validity), helper functions, bookkeeping.
sub nvsentinel_state {
    my ($h) = @_;
    my %s = map { $_ => scalar $h->selectrow_array($snap_sql{$_}) } keys %snap_sql;
    $s{"count $_"} = scalar $h->selectrow_array("SELECT count(*) FROM $_") for keys %snap_sql;
    $s{indexes} = $h->selectall_arrayref(q{SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisunique
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public' ORDER BY 1});
    $s{helpers} = $h->selectall_arrayref(q{SELECT proname, md5(prosrc) FROM pg_proc
        WHERE proname IN ('cleanup_changelog', 'mark_changelog_processed') ORDER BY 1});
    $s{bookkeeping} = $h->selectrow_array(q{SELECT CASE WHEN to_regclass('nvsentinel_schema_migrations') IS NULL
        THEN 'none' END}) // $h->selectrow_array(q{SELECT string_agg(version || '/' || description || '/' || applied_at, ','
        ORDER BY version) FROM nvsentinel_schema_migrations});
    return \%s;
}

# What a second run must not change (as in 30-schema.t).
sub fingerprint {
    my ($h) = @_;
    return $h->selectrow_hashref(q{SELECT
        (SELECT string_agg(version || '@' || applied_at, ',' ORDER BY version) FROM nvsrelay.schema_migrations) AS applied,
        (SELECT generation || '/' || created_at FROM nvsrelay.meta) AS meta,
        (SELECT string_agg(oid::text, ',' ORDER BY tgname) FROM pg_trigger
            WHERE tgname IN ('health_events_changes', 'maintenance_events_changes')) AS triggers,
        (SELECT oid || '/' || md5(prosrc) FROM pg_proc WHERE proname = 'log_table_changes') AS func,
        (SELECT string_agg(relname || '=' || relfilenode, ',' ORDER BY relname) FROM pg_class
            WHERE relname IN ('health_events', 'maintenance_events', 'datastore_changelog', 'resume_tokens')) AS files});
}

# NVSentinel-style writes: inserts (some with idempotency keys), an update, a maintenance event.
sub fill {
    my ($h, $tag) = @_;
    my @ids;
    for my $i (1 .. 6) {
        push @ids, NvsTest::insert_health_event($h, node => "$tag-node-$i",
            metadata => { chassis_serial => "cs-$i", ($i % 2 ? (idempotencyKey => "$tag-key-$i") : ()) });
    }
    $h->do(q{UPDATE health_events SET node_quarantined = 'Quarantined',
        document = jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"') WHERE id = ?}, undef, $ids[0]);
    $h->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status, event_received_timestamp,
        document) VALUES (?, 'aws', 'prod', ?, 'DETECTED', now(), '{"status": "DETECTED"}')}, undef, "$tag-maint-1",
        "$tag-node-1");
    return \@ids;
}

sub log_is_clean {
    my ($d, $what) = @_;
    my @raw = grep { !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:err|warning|notice|info|debug) / } split /\n/, $d->log;
    ok(!@raw, "$what: every log line is a formatted log line") or diag(join "\n", @raw[ 0 .. ($#raw < 4 ? $#raw : 4) ]);
    unlike($d->log, qr/ (?:err|warning) /, "$what: no error or warning logged");
}

my @RELAY_MIGRATIONS = map { m{/(\d+_\w+)\.sql$} ? $1 : () } sort glob("$ROOT/sql/*.sql");
my $N = scalar @RELAY_MIGRATIONS;

for my $variant (
    [ docsql => 'the documented SQL (docs/postgresql-schema.sql)', sub { $pg->psql($DOC_SQL, db => 'docsql', user => 'nvsentinel') } ],
    [ versioned => 'the versioned migrations at nvsentinel_schema_migrations version 3',
        sub { $pg->psql($_, db => 'versioned', user => 'nvsentinel') for @MIGRATION_SQL } ],
) {
    my ($db, $what, $create) = @$variant;
    subtest "over $what: data, indexes, helpers and bookkeeping kept; events stream; a second run is a no-op" => sub {
        $pg->psql("CREATE DATABASE $db OWNER nvsentinel");
        $create->();
        my $h = $pg->dbh(dbname => $db);
        my $w = $pg->dbh(dbname => $db, user => 'nvsentinel');
        my $ids = fill($w, $db);
        if ($db eq 'versioned') {
            is($h->selectrow_array('SELECT max(version) FROM nvsentinel_schema_migrations'), 3, 'NVSentinel schema version 3');
            ok(!eval { NvsTest::insert_health_event($w, node => 'dup', metadata => { idempotencyKey => "$db-key-1" }); 1 },
                "the unique idempotency index refuses a duplicate key");
        } else {
            is($h->selectrow_array(q{SELECT count(*) FROM pg_proc WHERE prosrc LIKE '%pg_notify%'
                AND proname = 'log_table_changes'}), 0, 'the documented trigger sends no NOTIFY');
        }
        # A component still on NVSentinel's watcher, which has seen everything up to the update.
        my ($upd) = $h->selectrow_array(q{SELECT max(id) FROM datastore_changelog WHERE operation = 'UPDATE'});
        my ($ts) = $h->selectrow_array(q{SELECT to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            FROM datastore_changelog WHERE id = ?}, undef, $upd - 1);
        $w->do(q{INSERT INTO resume_tokens (client_name, resume_token) VALUES ('fault-quarantine', ?::jsonb)}, undef,
            qq({"timestamp": "$ts", "eventID": @{[ $upd - 1 ]}}));
        my $before = nvsentinel_state($h);
        ok(scalar(grep { $_->[0] eq 'healthevent_idempotency_key_unique' && $_->[2] && $_->[3] } @{ $before->{indexes} }),
            'NVSentinel\'s unique idempotency-key index is there and valid');

        # The plan first: nothing may change.
        my ($rc, $out) = migrate($db, '--dry-run');
        is($rc, 0, '--migrate --dry-run exits 0') or diag($out);
        like($out, $db eq 'versioned' ? qr/^NVSentinel's own schema: version 3 \(nvsentinel_schema_migrations, left as it is\)$/m
            : qr/^NVSentinel's tables exist; they are kept as they are$/m, '... names what NVSentinel created');
        like($out, qr/^nvsrelay schema: 0 of $N migrations applied$/m, '... 0 of the relay\'s migrations applied');
        like($out, qr/^  001_nvsentinel_schema\s+would run in the migration transaction$/m, '... 001 in the transaction');
        like($out, qr/^  003_changelog_xid_index\s+would run alone, outside any transaction/m, '... 003 alone');
        like($out, qr/^dry run: $N migrations would run; nothing was changed$/m, '... and that nothing was changed');
        ok(!$h->selectrow_array(q{SELECT to_regclass('nvsrelay.schema_migrations') IS NOT NULL}), 'no nvsrelay schema yet');
        is_deeply(nvsentinel_state($h), $before, 'the dry run changed nothing');

        my $d = NvsTest::Daemon->start($pg, env => { DATASTORE_DATABASE => $db });
        like($d->log, qr/schema migrated applied=$N/, "the daemon applied all $N migrations");
        log_is_clean($d, 'install');
        my $after = nvsentinel_state($h);
        for my $k (sort grep { !/^indexes$/ } keys %$before) {
            is_deeply($after->{$k}, $before->{$k}, "unchanged: $k");
        }
        my %had = map { $_->[0] => $_ } @{ $before->{indexes} };
        my %has = map { $_->[0] => $_ } @{ $after->{indexes} };
        is_deeply([ map { $has{$_} } sort keys %had ], [ map { $had{$_} } sort keys %had ],
            'every index NVSentinel had is there, the same and valid (' . scalar(keys %had) . ')');
        is_deeply([ sort grep { !$had{$_} } keys %has ],
            [ sort('datastore_changelog_xid_idx', $db eq 'docsql' ? 'idx_changelog_resume' : ()) ],
            'added: the xid index' . ($db eq 'docsql' ? ' and the Go runtime\'s idx_changelog_resume' : ''));
        ok($has{datastore_changelog_xid_idx}[2], '... valid');
        is_deeply($h->selectcol_arrayref(q{SELECT attname FROM pg_attribute WHERE attrelid = 'health_events'::regclass
            AND attname LIKE '%finish_timestamp' ORDER BY 1}), [qw(drain_finish_timestamp quarantine_finish_timestamp)],
            'health_events has the two status timestamp columns');
        for my $t (qw(health_events maintenance_events)) {
            is_deeply($h->selectcol_arrayref(q{SELECT pg_get_triggerdef(oid) FROM pg_trigger
                    WHERE tgrelid = ?::regclass AND NOT tgisinternal}, undef, $t),
                [ "CREATE TRIGGER ${t}_changes AFTER INSERT OR DELETE OR UPDATE ON public.$t "
                    . 'FOR EACH ROW EXECUTE FUNCTION log_table_changes()' ], "$t: one capture trigger");
        }
        like($h->selectrow_array(q{SELECT prosrc FROM pg_proc WHERE proname = 'log_table_changes'}),
            qr/nvsrelay\.capture.*'\{"table":"' \|\| TG_TABLE_NAME/s, "the relay's capture function replaced NVSentinel's");
        is($h->selectrow_array('SELECT cleanup_changelog(7)'), 0, 'cleanup_changelog still runs');
        if ($db eq 'versioned') {
            ok(!eval { NvsTest::insert_health_event($w, node => 'dup', metadata => { idempotencyKey => "$db-key-3" }); 1 },
                'the unique idempotency index still refuses a duplicate key');
        }

        my $c = NvsTest::Client->connect($d->socket);
        ok($c->hello('t31'), 'hello');
        $c->watch(consumer => 'fault-quarantine');
        my $owed = $c->events(1, 5, sid => 1);
        is_deeply([ map { "$_->{event}{operationType} $_->{event}{documentKey}{_id}" } @$owed ], ["update $ids->[0]"],
            'the consumer resuming from its NVSentinel position gets the update it had not seen');
        $w->begin_work;
        my @new = map { NvsTest::insert_health_event($w, node => "$db-after-$_") } 1 .. 3;
        $w->commit;
        my $ev = $c->events(3, 10, sid => 1);
        is_deeply([ map { $_->{event}{documentKey}{_id} } @$ev ], \@new, 'then the three new inserts, in order');
        $c->close;

        my $fp = fingerprint($h);
        is($d->stop, 0, 'daemon stops with 0');
        ($rc, $out) = migrate($db);
        is($rc, 0, 'a second run, nvsrelayd --migrate: exit 0');
        like($out, qr/^nvsrelay schema: $N of $N migrations applied$/m, "... $N of $N applied");
        like($out, qr/^nothing to do$/m, '... nothing to do');
        $d = NvsTest::Daemon->start($pg, env => { DATASTORE_DATABASE => $db });
        like($d->log, qr/schema is current/, 'a daemon start: schema is current');
        unlike($d->log, qr/applying migration/, '... nothing applied');
        is($d->stop, 0, 'daemon stops with 0');
        is_deeply(fingerprint($h), $fp, 'applied_at, generation, trigger and function oids, table files unchanged');

        if ($db eq 'versioned') {
            # A database one migration behind: the plan names it, --migrate runs only it.
            my $last = $RELAY_MIGRATIONS[-1];
            $h->do('DELETE FROM nvsrelay.schema_migrations WHERE version = ?', undef, $N);
            ($rc, $out) = migrate($db, '--dry-run');
            like($out, qr/^nvsrelay schema: @{[ $N - 1 ]} of $N migrations applied$/m, 'one behind: the plan says so');
            like($out, qr/^  \Q$last\E\s+would run in the migration transaction$/m, "... $last would run");
            ($rc, $out) = migrate($db);
            is($rc, 0, '--migrate: exit 0');
            like($out, qr/applying \Q$last\E \(in the transaction\).*schema current: 1 migration applied now/s,
                "... applied $last only");
            is($h->selectrow_array('SELECT count(*) FROM nvsrelay.schema_migrations'), $N, "... $N rows again");
        }
        $w->disconnect;
        $h->disconnect;
    };
}

subtest 'migration with four writers active over ~200k changelog rows: writers are not held back' => sub {
    $pg->psql('CREATE DATABASE busy OWNER nvsentinel');
    $pg->psql($DOC_SQL, db => 'busy', user => 'nvsentinel');
    my $h = $pg->dbh(dbname => 'busy');
    # 50k health events through NVSentinel's trigger (50k changelog rows), then 150k more
    # changelog rows of updates, written directly for speed.
    my $doc = $NvsTest::JSON->encode(NvsTest::health_doc(node => 'seed'));
    $h->do(q{INSERT INTO health_events (node_name, event_type, severity, recommended_action, document)
        SELECT 'seed-' || (g % 2000), 'GpuXidError', 'GPU', 'RESTART_BM', ?::jsonb FROM generate_series(1, 50000) g},
        undef, $doc);
    $h->do(q{INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values, processed)
        SELECT 'health_events', c.record_id, 'UPDATE', c.new_values, c.new_values, g % 3 = 0
        FROM datastore_changelog c, generate_series(1, 3) g WHERE c.operation = 'INSERT'});
    $h->do('VACUUM ANALYZE');
    my $rows = $h->selectrow_array('SELECT count(*) FROM datastore_changelog');
    cmp_ok($rows, '>=', 200000, "the changelog holds $rows rows");

    # Four writers, each on its own connection, one autocommit INSERT after another; every
    # INSERT's start and duration goes to a file.
    my $stop = "$dir/writers.stop";
    my @pids;
    for my $n (1 .. 4) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $wh = $pg->dbh(dbname => 'busy', user => 'nvsentinel');
            open(my $fh, '>', "$dir/writer.$n") or POSIX::_exit(1);
            my $i = 0;
            while (!-e $stop) {
                my $t0 = NvsTest::now();
                my $ok = eval { NvsTest::insert_health_event($wh, node => "writer-$n-" . $i++); 1 };
                printf $fh "%.6f %.6f %s\n", $t0, NvsTest::now() - $t0, $ok ? 'ok' : 'error';
            }
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    Time::HiRes::sleep(1.5);
    my $t_start = NvsTest::now();
    my $d = NvsTest::Daemon->start($pg, env => { DATASTORE_DATABASE => 'busy' }, ready_timeout => 120);
    my $t_ready = NvsTest::now();
    Time::HiRes::sleep(1.5);
    open(my $fh, '>', $stop) or die;
    close $fh;
    waitpid($_, 0) for @pids;

    my (@all, @during, $errors);
    for my $n (1 .. 4) {
        for (split /\n/, NvsTest::slurp("$dir/writer.$n")) {
            my ($t0, $dt, $st) = split ' ';
            push @all, $dt;
            push @during, $dt if $t0 + $dt >= $t_start && $t0 <= $t_ready;
            $errors++ if $st ne 'ok';
        }
    }
    my ($max_all)    = sort { $b <=> $a } @all;
    my ($max_during) = sort { $b <=> $a } @during;
    my @sorted = sort { $a <=> $b } @during;
    my $p99 = @sorted ? $sorted[ int(0.99 * $#sorted) ] : 0;
    like($d->log, qr/schema migrated applied=$N/, "the daemon migrated ($N migrations) while they wrote");
    ok(!$errors, 'no writer INSERT failed');
    cmp_ok(scalar @during, '>', 4, scalar(@during) . ' INSERTs overlapped the migration');
    my $bound = 3;
    cmp_ok($max_during, '<', $bound, sprintf('longest INSERT during the migration %.3f s < %d s (lock waits bounded)',
        $max_during, $bound));
    note(sprintf('migration and start took %.2f s; %d INSERTs during it, p99 %.1f ms, longest %.1f ms; '
        . 'longest over the whole run %.1f ms (%d INSERTs)', $t_ready - $t_start, scalar @during, $p99 * 1000,
        $max_during * 1000, $max_all * 1000, scalar @all));
    # Every writer row is captured: none slipped through while the trigger was swapped.
    is($h->selectrow_array(q{SELECT count(*) FROM health_events h WHERE node_name LIKE 'writer-%'
        AND NOT EXISTS (SELECT 1 FROM datastore_changelog c WHERE c.record_id = h.id)}), 0,
        'every row the writers inserted has its changelog row');
    is($h->selectrow_array(q{SELECT count(*) FROM health_events WHERE node_name LIKE 'writer-%'}), scalar @all,
        '... and every INSERT is there');
    ok($h->selectrow_array(q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'datastore_changelog_xid_idx'::regclass}),
        'the concurrently built xid index is valid');
    is($d->stop, 0, 'daemon stops with 0');
    $h->disconnect;
};

done_testing;

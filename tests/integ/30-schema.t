#!/usr/bin/perl
# 30-schema.t - proves the schema installer: on an empty database nvsrelayd creates
# NVSentinel's tables, columns, indexes and capture triggers plus its own nvsrelay.*
# objects and records every migration with its checksum; over a database that
# NVSentinel's Go runtime already created and filled it keeps every row, adds the xid
# column, switches the trigger to one constant NOTIFY per transaction and streams; a
# second start changes nothing; schema = verify refuses an uninstalled database with
# exit 78; and the command line validates configuration (--check-config, --version).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Digest::SHA qw(sha256_hex);
use JSON::PP qw(decode_json);
use Test::More;
use NvsTest;

my $ROOT = $NvsTest::ROOT;
my $pg   = NvsTest::Pg->start;
my $dir  = $pg->dir;

# Three databases: an empty one to install into, one NVSentinel created, one left bare.
$pg->psql("CREATE DATABASE gorun OWNER nvsentinel;\nCREATE DATABASE bare OWNER nvsentinel;");

# ---- expectations: NVSentinel's tables, columns and indexes, plus the relay's additions ----

my $TSTZ = 'timestamp with time zone';
my %COLUMNS = (
    maintenance_events => [
        'id uuid NOT NULL DEFAULT uuid_generate_v4()',
        'event_id character varying(255) NOT NULL',
        'csp character varying(50) NOT NULL',
        'cluster_name character varying(255) NOT NULL',
        'node_name character varying(255)',
        'status character varying(50) NOT NULL',
        'csp_status character varying(50)',
        "scheduled_start_time $TSTZ",
        "actual_end_time $TSTZ",
        "event_received_timestamp $TSTZ NOT NULL",
        "last_updated_timestamp $TSTZ NOT NULL DEFAULT now()",
        'document jsonb NOT NULL',
        "created_at $TSTZ DEFAULT now()",
        "updated_at $TSTZ DEFAULT now()",
    ],
    health_events => [
        'id uuid NOT NULL DEFAULT uuid_generate_v4()',
        'node_name character varying(255) NOT NULL',
        'event_type character varying(100)',
        'severity character varying(50)',
        'recommended_action character varying(100)',
        'node_quarantined character varying(50)',
        "user_pods_eviction_status character varying(50) DEFAULT 'NotStarted'::character varying",
        'user_pods_eviction_message text',
        'fault_remediated boolean',
        "last_remediation_timestamp $TSTZ",
        'document jsonb NOT NULL',
        "created_at $TSTZ DEFAULT now()",
        "updated_at $TSTZ DEFAULT now()",
        "quarantine_finish_timestamp $TSTZ",
        "drain_finish_timestamp $TSTZ",
    ],
    datastore_changelog => [
        "id bigint NOT NULL DEFAULT nextval('datastore_changelog_id_seq'::regclass)",
        'table_name character varying(100) NOT NULL',
        'record_id uuid NOT NULL',
        'operation character varying(20) NOT NULL',
        'old_values jsonb',
        'new_values jsonb',
        "changed_at $TSTZ DEFAULT clock_timestamp()",
        'processed boolean DEFAULT false',
        'xid xid8 DEFAULT pg_current_xact_id()',
    ],
    resume_tokens => [
        'client_name character varying(255) NOT NULL',
        'resume_token jsonb NOT NULL',
        "last_updated $TSTZ DEFAULT now()",
    ],
);
my %PKEY = (maintenance_events => 'id', health_events => 'id', datastore_changelog => 'id',
    resume_tokens => 'client_name');

# name => "table USING method (columns) [WHERE ...]" as pg_indexes prints it.
my %INDEXES = (
    idx_maintenance_events_event_id          => 'maintenance_events USING btree (event_id)',
    idx_maintenance_events_csp_cluster       => 'maintenance_events USING btree (csp, cluster_name)',
    idx_maintenance_events_node_status       => 'maintenance_events USING btree (node_name, status)',
    idx_maintenance_events_status_scheduled  =>
        'maintenance_events USING btree (status, scheduled_start_time) WHERE (scheduled_start_time IS NOT NULL)',
    idx_maintenance_events_status_actual_end =>
        'maintenance_events USING btree (status, actual_end_time) WHERE (actual_end_time IS NOT NULL)',
    idx_maintenance_events_received_desc     =>
        'maintenance_events USING btree (csp, cluster_name, event_received_timestamp DESC)',
    idx_maintenance_events_last_updated      => 'maintenance_events USING btree (last_updated_timestamp DESC)',
    idx_maintenance_events_csp_status        =>
        'maintenance_events USING btree (csp_status) WHERE (csp_status IS NOT NULL)',
    idx_maintenance_events_document_gin      => 'maintenance_events USING gin (document)',
    idx_health_events_node_name              => 'health_events USING btree (node_name)',
    idx_health_events_node_type              => 'health_events USING btree (node_name, event_type)',
    idx_health_events_quarantined            =>
        'health_events USING btree (node_quarantined) WHERE (node_quarantined IS NOT NULL)',
    idx_health_events_created_desc           => 'health_events USING btree (created_at DESC)',
    idx_health_events_eviction_status        => 'health_events USING btree (user_pods_eviction_status)',
    idx_health_events_updated_desc           => 'health_events USING btree (updated_at DESC)',
    idx_health_events_document_gin           => 'health_events USING gin (document)',
    idx_changelog_unprocessed  => 'datastore_changelog USING btree (changed_at) WHERE (processed = false)',
    idx_changelog_table_record => 'datastore_changelog USING btree (table_name, record_id)',
    idx_changelog_resume       => 'datastore_changelog USING btree (table_name, changed_at, id) WHERE (processed = false)',
    datastore_changelog_xid_idx => 'datastore_changelog USING btree (xid)',
);

my @MIGRATIONS = map { m{/(\d+)_(\w+)\.sql$} ? [ $1 + 0, "$1_$2", sha256_hex(NvsTest::slurp($_)) ] : () }
    sort glob("$ROOT/sql/*.sql");

# NVSentinel's Go runtime DDL (what store-client's datastore.go runs on every component
# start, createTables and createChangeTriggers): no doc-only indexes, the two timestamp columns,
# idx_changelog_resume, and a trigger that notifies once per row with the changelog id.
my $GO_RUNTIME_DDL = <<'SQL';
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE TABLE IF NOT EXISTS maintenance_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    event_id VARCHAR(255) UNIQUE NOT NULL,
    csp VARCHAR(50) NOT NULL,
    cluster_name VARCHAR(255) NOT NULL,
    node_name VARCHAR(255),
    status VARCHAR(50) NOT NULL,
    csp_status VARCHAR(50),
    scheduled_start_time TIMESTAMPTZ,
    actual_end_time TIMESTAMPTZ,
    event_received_timestamp TIMESTAMPTZ NOT NULL,
    last_updated_timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    document JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS health_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    node_name VARCHAR(255) NOT NULL,
    event_type VARCHAR(100),
    severity VARCHAR(50),
    recommended_action VARCHAR(100),
    node_quarantined VARCHAR(50),
    user_pods_eviction_status VARCHAR(50) DEFAULT 'NotStarted',
    user_pods_eviction_message TEXT,
    fault_remediated BOOLEAN,
    last_remediation_timestamp TIMESTAMPTZ,
    document JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS datastore_changelog (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(100) NOT NULL,
    record_id UUID NOT NULL,
    operation VARCHAR(20) NOT NULL,
    old_values JSONB,
    new_values JSONB,
    changed_at TIMESTAMPTZ DEFAULT NOW(),
    processed BOOLEAN DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS resume_tokens (
    client_name VARCHAR(255) PRIMARY KEY,
    resume_token JSONB NOT NULL,
    last_updated TIMESTAMPTZ DEFAULT NOW()
);
ALTER TABLE health_events ADD COLUMN IF NOT EXISTS quarantine_finish_timestamp TIMESTAMPTZ;
ALTER TABLE health_events ADD COLUMN IF NOT EXISTS drain_finish_timestamp TIMESTAMPTZ;

CREATE INDEX IF NOT EXISTS idx_maintenance_events_event_id ON maintenance_events(event_id);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_csp_cluster ON maintenance_events(csp, cluster_name);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_node_status ON maintenance_events(node_name, status);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_scheduled
    ON maintenance_events(status, scheduled_start_time) WHERE scheduled_start_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_actual_end
    ON maintenance_events(status, actual_end_time) WHERE actual_end_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_received_desc
    ON maintenance_events(csp, cluster_name, event_received_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_document_gin ON maintenance_events USING GIN(document);
CREATE INDEX IF NOT EXISTS idx_health_events_node_name ON health_events(node_name);
CREATE INDEX IF NOT EXISTS idx_health_events_node_type ON health_events(node_name, event_type);
CREATE INDEX IF NOT EXISTS idx_health_events_quarantined
    ON health_events(node_quarantined) WHERE node_quarantined IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_health_events_created_desc ON health_events(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_health_events_document_gin ON health_events USING GIN(document);
CREATE INDEX IF NOT EXISTS idx_changelog_unprocessed ON datastore_changelog(changed_at) WHERE processed = FALSE;
CREATE INDEX IF NOT EXISTS idx_changelog_table_record ON datastore_changelog(table_name, record_id);
CREATE INDEX IF NOT EXISTS idx_changelog_resume
    ON datastore_changelog(table_name, changed_at, id) WHERE processed = FALSE;

CREATE OR REPLACE FUNCTION log_table_changes() RETURNS TRIGGER AS $$
DECLARE
    changelog_id BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values)
        VALUES (TG_TABLE_NAME, OLD.id, TG_OP, to_jsonb(OLD))
        RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW))
        RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    ELSE
        INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW))
        RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes',
            json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    END IF;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS maintenance_events_changes ON maintenance_events;
CREATE TRIGGER maintenance_events_changes
    AFTER INSERT OR UPDATE OR DELETE ON maintenance_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();
DROP TRIGGER IF EXISTS health_events_changes ON health_events;
CREATE TRIGGER health_events_changes
    AFTER INSERT OR UPDATE OR DELETE ON health_events
    FOR EACH ROW EXECUTE FUNCTION log_table_changes();
SQL

# ---- helpers ----

sub columns {
    my ($dbh, $table) = @_;
    my $rows = $dbh->selectall_arrayref(q{
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = ?::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum},
        undef, $table =~ /\./ ? $table : "public.$table");
    return [ map { join(' ', $_->[0], $_->[1], $_->[2] ? 'NOT NULL' : (), defined $_->[3] ? "DEFAULT $_->[3]" : ()) }
        @$rows ];
}

# Checks tables, columns, keys, indexes, triggers and the nvsrelay objects of one database.
sub check_installed {
    my ($dbh, $dbname) = @_;
    for my $t (sort keys %COLUMNS) {
        is_deeply(columns($dbh, $t), $COLUMNS{$t}, "$t: columns, types, NOT NULL, defaults");
        is($dbh->selectrow_array(q{
            SELECT string_agg(a.attname, ',') FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = ?::regclass AND i.indisprimary}, undef, "public.$t"), $PKEY{$t}, "$t: primary key");
    }
    ok($dbh->selectrow_array(q{SELECT count(*) FROM pg_constraint
        WHERE conrelid = 'maintenance_events'::regclass AND contype = 'u'
          AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 'maintenance_events'::regclass
                                AND attname = 'event_id')]}), 'maintenance_events.event_id is UNIQUE');
    my %have = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        q{SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'}) };
    for my $name (sort keys %INDEXES) {
        my $def = $have{$name};
        $def =~ s/^CREATE INDEX \Q$name\E ON public\.// if defined $def;
        is($def, $INDEXES{$name}, "index $name");
    }
    for my $t (qw(health_events maintenance_events)) {
        is_deeply($dbh->selectcol_arrayref(q{SELECT pg_get_triggerdef(oid) FROM pg_trigger
                WHERE tgrelid = ?::regclass AND NOT tgisinternal}, undef, $t),
            [ "CREATE TRIGGER ${t}_changes AFTER INSERT OR DELETE OR UPDATE ON public.$t "
                . 'FOR EACH ROW EXECUTE FUNCTION log_table_changes()' ],
            "$t: exactly one capture trigger, AFTER INSERT/UPDATE/DELETE FOR EACH ROW");
    }
    is_deeply($dbh->selectcol_arrayref(q{SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'nvsrelay' AND c.relkind = 'r' ORDER BY 1}),
        [qw(meta schema_migrations tick)], 'nvsrelay holds meta, schema_migrations, tick');
    is_deeply(columns($dbh, 'nvsrelay.tick'), [ 'tick_id bigint NOT NULL', 'snap pg_snapshot NOT NULL',
        'max_id bigint NOT NULL', "created_at $TSTZ NOT NULL DEFAULT clock_timestamp()" ], 'nvsrelay.tick columns');
    is_deeply($dbh->selectall_arrayref(
            'SELECT version, name, checksum FROM nvsrelay.schema_migrations ORDER BY version'),
        \@MIGRATIONS, 'schema_migrations: ' . scalar(@MIGRATIONS) . ' rows, checksums = sha256 of sql/*.sql');
    is(scalar(@MIGRATIONS), 5, 'five migrations in sql/');
    is_deeply($dbh->selectall_arrayref(q{SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.provolatile,
            p.proconfig::text, p.proretset FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'nvsrelay' ORDER BY 1}),
        [ [ 'batch_walk', 'tick bigint, after bigint, lim integer, tbl text', 's', '{enable_bitmapscan=off}', 1 ] ],
        'nvsrelay.batch_walk: stable, set-returning, bitmap scans off for its own plan only');
    like($_->[2], qr/^[0-9a-f]{64}$/, "checksum of $_->[1] is 64 hex digits") for @MIGRATIONS;
    my $meta = $dbh->selectall_arrayref(
        'SELECT generation, system_identifier, database_name FROM nvsrelay.meta', { Slice => {} });
    is(scalar @$meta, 1, 'nvsrelay.meta has one row');
    ok($meta->[0]{generation} > 0 && $meta->[0]{generation} < 2**32, "generation $meta->[0]{generation} fits 32 bits");
    is($meta->[0]{system_identifier},
        $dbh->selectrow_array('SELECT system_identifier::text FROM pg_control_system()'), 'meta.system_identifier');
    is($meta->[0]{database_name}, $dbname, 'meta.database_name');
}

# What a second start must not change.
sub fingerprint {
    my ($dbh) = @_;
    return $dbh->selectrow_hashref(q{SELECT
        (SELECT string_agg(version || '@' || applied_at, ',' ORDER BY version) FROM nvsrelay.schema_migrations) AS applied,
        (SELECT generation || '/' || created_at FROM nvsrelay.meta) AS meta,
        (SELECT string_agg(oid::text, ',' ORDER BY tgname) FROM pg_trigger
            WHERE tgname IN ('health_events_changes', 'maintenance_events_changes')) AS triggers,
        (SELECT oid || '/' || md5(prosrc) FROM pg_proc WHERE proname = 'log_table_changes') AS func,
        (SELECT string_agg(relname || '=' || relfilenode, ',' ORDER BY relname) FROM pg_class
            WHERE relname IN ('health_events', 'maintenance_events', 'datastore_changelog', 'resume_tokens')) AS files});
}

# Inserts $n health events in one transaction as nvsentinel and returns (ids, notifications
# seen by a listener on nvsentinel_changes); each notification is [pid, payload].
sub notified_insert {
    my ($dbname, $n) = @_;
    my $l = $pg->dbh(dbname => $dbname);
    $l->do('LISTEN nvsentinel_changes');
    my $tx = $pg->dbh(dbname => $dbname, user => 'nvsentinel', autocommit => 0);
    my @ids = map { NvsTest::insert_health_event($tx, node => "notify-$_") } 1 .. $n;
    $tx->commit;
    my (@got, $quiet_since);
    my $deadline = NvsTest::now() + 5;
    while (NvsTest::now() < $deadline) {
        while (my $nt = $l->pg_notifies) { push @got, [ $nt->[1], $nt->[2] ]; $quiet_since = undef }
        # Once something arrived, wait a further 0.3 s to be sure nothing else comes.
        if (@got) {
            $quiet_since //= NvsTest::now();
            last if NvsTest::now() - $quiet_since > 0.3;
        }
        Time::HiRes::sleep(0.02);
    }
    $tx->disconnect;
    $l->disconnect;
    return (\@ids, \@got);
}

sub log_is_clean {
    my ($d, $what) = @_;
    my @raw = grep { !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:err|warning|notice|info|debug) / } split /\n/, $d->log;
    ok(!@raw, "$what: every log line is a formatted log line") or diag(join "\n", @raw[ 0 .. ($#raw < 4 ? $#raw : 4) ]);
}

# ---- tests ----

my $dbh = $pg->dbh;    # superuser, database nvsentinel

subtest 'empty database: the daemon installs the schema and becomes ready' => sub {
    is($dbh->selectrow_array(q{SELECT count(*) FROM pg_class WHERE relname = 'health_events'}), 0, 'database is empty');
    my $t = NvsTest::now();
    my $d = NvsTest::Daemon->start($pg);
    note(sprintf 'installed and ready in %.2fs', NvsTest::now() - $t);
    ok(-S $d->socket, 'ready: socket answers hello');
    like($d->log, qr/applying migration 001_nvsentinel_schema.*applying migration 002_relay_capture.*applying migration 003_changelog_xid_index.*applying migration 004_capture_switch.*applying migration 005_batch_walk.*schema migrated applied=5/s,
        'log: every migration applied, in order');
    check_installed($dbh, 'nvsentinel');
    log_is_clean($d, 'fresh install');
    is($d->stop, 0, 'stops with 0');
};

subtest 'a second start over a current schema changes nothing' => sub {
    my $before = fingerprint($dbh);
    my $d = NvsTest::Daemon->start($pg);
    like($d->log, qr/schema is current/, 'log: schema is current');
    unlike($d->log, qr/applying migration/, 'no migration applied');
    is_deeply(fingerprint($dbh), $before,
        'applied_at, meta.generation, trigger and function oids, table files unchanged');
    is($dbh->selectrow_array('SELECT count(*) FROM nvsrelay.schema_migrations'), 5, 'still five migration rows');
    is($d->stop, 0, 'stops with 0');
};

subtest "schema = verify: refuses a database without the relay's schema, accepts an installed one" => sub {
    my $t = NvsTest::now();
    my $d = NvsTest::Daemon->start($pg, set => { schema => 'verify' }, env => { DATASTORE_DATABASE => 'bare' },
        wait_ready => 0);
    my $st = $d->wait_exit(5);
    is($st, 78, 'exit status 78 (configuration) on an empty database');
    cmp_ok(NvsTest::now() - $t, '<', 5, sprintf('... within %.2fs', NvsTest::now() - $t));
    like($d->log, qr/err .*schema not installed \(schema = verify\)/, 'log: the schema is not installed');
    ok(!-e $d->socket, 'never listened');
    is($pg->psql(q{SELECT count(*) FROM pg_namespace WHERE nspname = 'nvsrelay'}, db => 'bare'), 0,
        'verify created nothing');

    my $before = fingerprint($dbh);
    $d = NvsTest::Daemon->start($pg, set => { schema => 'verify' });
    like($d->log, qr/schema is current/, 'installed database: verify passes and the daemon is ready');
    is_deeply(fingerprint($dbh), $before, 'verify changed nothing');
    is($d->stop, 0, 'stops with 0');
};

subtest "over NVSentinel's Go runtime schema with data: data kept, capture upgraded, events stream" => sub {
    $pg->psql($GO_RUNTIME_DDL, db => 'gorun', user => 'nvsentinel');
    my $go = $pg->dbh(dbname => 'gorun');

    # The Go trigger notifies once per row, with the changelog id in the payload.
    my ($first_ids, $notes) = notified_insert('gorun', 3);
    my $ids = $first_ids;
    is(scalar @$notes, 3, 'Go runtime trigger: three notifications for a 3-row transaction');
    my @payloads = map { decode_json($_->[1]) } @$notes;
    is_deeply([ map { "$_->{table}/$_->{operation}" } @payloads ], [ ('health_events/INSERT') x 3 ],
        '... payload {id, table, operation}');
    is_deeply([ map { $_->{id} } @payloads ],
        $go->selectcol_arrayref('SELECT id FROM datastore_changelog ORDER BY id'), '... ids are the changelog ids');

    # More history: a maintenance event and an update, and a Go watcher's resume position.
    $go->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status,
        event_received_timestamp, document) VALUES ('maint-1', 'aws', 'cl-1', 'notify-1', 'PENDING', now(),
        '{"eventId": "maint-1", "status": "PENDING"}')});
    $go->do(q{UPDATE health_events SET node_quarantined = 'Quarantined' WHERE id = ?}, undef, $ids->[0]);
    my ($last_id, $last_ts) = $go->selectrow_array(q{SELECT id,
        to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM datastore_changelog
        ORDER BY id DESC LIMIT 1});
    is($last_id, 5, 'changelog holds 5 rows: 3 inserts, 1 maintenance insert, 1 update');
    $go->do(q{INSERT INTO resume_tokens (client_name, resume_token) VALUES ('fault-quarantine', ?::jsonb)},
        undef, qq({"timestamp": "$last_ts", "eventID": $last_id}));
    # A second watcher that had only got as far as changelog row 2: rows 3 (insert) and
    # 5 (update) of health_events are still news for it.
    my $behind_ts = $go->selectrow_array(q{SELECT
        to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM datastore_changelog WHERE id = 2});
    $go->do(q{INSERT INTO resume_tokens (client_name, resume_token) VALUES ('node-drainer', ?::jsonb)},
        undef, qq({"timestamp": "$behind_ts", "eventID": 2}));

    my %snap_sql = (
        health_events       => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY id)) FROM health_events t',
        maintenance_events  => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY id)) FROM maintenance_events t',
        datastore_changelog => q{SELECT md5(string_agg(concat_ws('|', id, table_name, record_id, operation,
            old_values, new_values, changed_at, processed), chr(10) ORDER BY id)) FROM datastore_changelog},
        resume_tokens       => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY client_name)) FROM resume_tokens t',
    );
    my %count_before = map { $_ => $go->selectrow_array("SELECT count(*) FROM $_") } keys %snap_sql;
    my %data_before  = map { $_ => $go->selectrow_array($snap_sql{$_}) } keys %snap_sql;
    is_deeply(\%count_before, { health_events => 3, maintenance_events => 1, datastore_changelog => 5,
        resume_tokens => 2 }, 'NVSentinel data in place');
    is(columns($go, 'datastore_changelog')->[6], "changed_at $TSTZ DEFAULT now()", 'Go runtime: changed_at is now()');

    my $t = NvsTest::now();
    my $d = NvsTest::Daemon->start($pg, env => { DATASTORE_DATABASE => 'gorun' });
    note(sprintf 'migrated and ready in %.2fs', NvsTest::now() - $t);
    like($d->log, qr/schema migrated applied=5/, 'all five migrations applied over the Go schema');
    log_is_clean($d, 'migration over existing objects (server notices included)');

    is_deeply({ map { $_ => $go->selectrow_array("SELECT count(*) FROM $_") } keys %snap_sql }, \%count_before,
        'row counts of the four tables unchanged');
    is_deeply({ map { $_ => $go->selectrow_array($snap_sql{$_}) } keys %snap_sql }, \%data_before,
        'contents of the four tables unchanged');
    is_deeply(decode_json($go->selectrow_array(
            q{SELECT resume_token FROM resume_tokens WHERE client_name = 'fault-quarantine'})),
        { timestamp => $last_ts, eventID => $last_id }, "the Go watcher's resume token is intact");
    ok($go->selectrow_array(q{SELECT bool_and(xid IS NULL) FROM datastore_changelog}),
        'existing changelog rows were not rewritten (no xid: they predate the relay)');
    check_installed($go, 'gorun');

    my $fdef = $go->selectrow_array(q{SELECT pg_get_functiondef('log_table_changes'::regproc)});
    unlike($fdef, qr/json_build_object|changelog_id/, 'log_table_changes no longer builds a per-row payload');

    # A durable subscriber whose NVSentinel position is the changelog head sees only news.
    my $c = NvsTest::Client->connect($d->socket);
    ok($c->hello('t30'), 'hello');
    $c->watch(consumer => 'fault-quarantine');
    ok($c->recv_op('bookmark', 5), 'watch as fault-quarantine confirmed by a bookmark');

    ($ids, $notes) = notified_insert('gorun', 3);
    is_deeply([ map { $_->[1] } @$notes ], ['{"table":"health_events"}'],
        'relay trigger: one notification with payload {"table":"health_events"} for a 3-row transaction');
    my $ev = $c->events(3, 10, sid => 1);
    is_deeply([ map { "$_->{event}{operationType} $_->{event}{documentKey}{_id}" } @$ev ],
        [ map {"insert $_"} @$ids ], 'the subscriber receives the three new inserts, in order, and nothing older');
    is($ev->[0]{event}{fullDocument}{healthevent}{nodeName}, 'notify-1', '... with the document');
    is(scalar @{ $c->events(1, 0.5, sid => 1) }, 0, 'no further events');

    # A component must be able to move from NVSentinel's in-process watcher to the relay
    # without a gap: the rows after its stored eventID that predate the relay are still owed.
    $c->watch(sid => 2, consumer => 'node-drainer');
    my $owed = $c->events(5, 2, sid => 2);
    is_deeply([ map { "$_->{event}{operationType} $_->{event}{documentKey}{_id}" } @$owed ],
        [ "insert $first_ids->[2]", "update $first_ids->[0]", map {"insert $_"} @$ids ],
        'node-drainer (eventID 2) gets changelog rows 3 and 5, then the new inserts');
    $c->close;

    my $before = fingerprint($go);
    is($d->stop, 0, 'stops with 0');
    $d = NvsTest::Daemon->start($pg, env => { DATASTORE_DATABASE => 'gorun' });
    like($d->log, qr/schema is current/, 'second start: schema is current');
    unlike($d->log, qr/applying migration/, '... nothing applied');
    is_deeply(fingerprint($go), $before, '... applied_at, generation, trigger, function and tables unchanged');
    is($d->stop, 0, 'stops with 0');
    $go->disconnect;
};

subtest 'command line: --check-config, bad values, unknown keys, --version' => sub {
    my $bin = ($ENV{NVSRELAY_BUILD} || "$ROOT/build") . '/nvsrelayd';
    # Only what the test passes may configure the daemon: no /etc file, no caller env.
    my $conf = "$dir/empty.conf";
    open(my $fh, '>', $conf) or die "$conf: $!";
    close $fh;
    local %ENV = map { $_ => $ENV{$_} }
        grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ && !/_CLIENT_CERT_MOUNT_PATH$/ } keys %ENV;
    my $run = sub { NvsTest::run_cmd([ $bin, '-c', $conf, @_ ]) };

    my ($rc, $out) = $run->('--check-config');
    is($rc, 0, '--check-config exits 0');
    like($out, qr/^# configuration OK$/m, '... and prints "configuration OK"');
    like($out, qr/^datastore_sslmode = require$/m, '... with the effective values');

    ($rc, $out) = $run->('--check-config', '--set', 'datastore_sslmode=bogus');
    is($rc, 78, 'datastore_sslmode=bogus: exit 78');
    like($out, qr/datastore_sslmode.*bogus/, '... naming the key and the value');
    unlike($out, qr/configuration OK/, '... not OK');

    ($rc, $out) = $run->('--check-config', '--set', 'no_such_key=1');
    is($rc, 78, 'unknown key: exit 78');
    like($out, qr/unknown key 'no_such_key'/, '... naming the key');

    ($rc, $out) = $run->('--set', 'no_such_key=1');
    is($rc, 78, 'unknown key without --check-config: exit 78 before connecting');

    my ($version) = NvsTest::slurp("$ROOT/Makefile") =~ /^VERSION\s*:?=\s*(\S+)/m;
    ($rc, $out) = $run->('--version');
    is($rc, 0, '--version exits 0');
    is($out, "nvsrelayd $version\n", "--version prints the version ($version)");
};

done_testing;

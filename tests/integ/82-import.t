#!/usr/bin/perl
# 82-import.t - nvsrelay import against a real PostgreSQL: realistic mongoexport samples
# (tests/fixtures/mongoexport/) in JSON lines and --jsonArray, Extended JSON v2 relaxed,
# v2 canonical and v1, for health_events and maintenance_events. Every row's id, columns and
# document are compared with an independent reading of the export; the three formats give
# identical rows; a re-run inserts nothing; bad documents are named by line, skipped with
# --on-error skip, and with stop nothing is imported even after batches went in; imported
# rows reach a subscriber only with --stream; an import refuses a trigger that would put
# the history into the change stream anyway. Throughput is printed, not asserted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use Test::More;
use NvsTest;

my $ROOT  = $NvsTest::ROOT;
my $BUILD = $ENV{NVSRELAY_BUILD} || "$ROOT/build";
my $FIX   = "$ROOT/tests/fixtures/mongoexport";
my $JSON  = JSON::PP->new->utf8->canonical;

my $pg  = NvsTest::Pg->start;
my $d   = NvsTest::Daemon->start($pg, set => { tick_idle_ms => 200 });
my $dbh = $pg->dbh;
my $dir = $pg->dir;

# Runs nvsrelay import (or nvsrelayd, for --migrate) against database $db of the test
# cluster; returns (exit code, stdout, stderr). stdin => FILE feeds a file.
my $nrun = 0;
sub cmd {
    my ($prog, $db, @args) = @_;
    my %opt = ref $args[-1] eq 'HASH' ? %{ pop @args } : ();
    my $err = "$dir/cmd." . ++$nrun . '.err';
    local %ENV = map { $_ => $ENV{$_} } grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ && !/_CLIENT_CERT_MOUNT_PATH$/ } keys %ENV;
    %ENV = (%ENV, %{ $pg->env }, DATASTORE_DATABASE => $db, %{ $opt{env} || {} });
    my @cmd = ("$BUILD/$prog", $prog eq 'nvsrelay' ? ('import', '--config', '/dev/null') : ('--config', '/dev/null'), @args);
    my ($rc, $out);
    if ($opt{stdin}) {
        my $pid = open(my $fh, '-|') // die "fork: $!";
        if (!$pid) {
            open(STDIN, '<', $opt{stdin}) or die;
            open(STDERR, '>', $err);
            exec @cmd or POSIX::_exit(127);
        }
        local $/;
        $out = <$fh> // '';
        close $fh;
        $rc = NvsTest::wait_code($?);
    } else {
        ($rc, $out) = NvsTest::run_cmd(\@cmd, $err);
    }
    return ($rc, $out, NvsTest::slurp($err));
}
sub import_into { my ($db, @a) = @_; return cmd('nvsrelay', $db, @a) }

sub new_db {
    my ($name) = @_;
    $pg->psql("CREATE DATABASE $name OWNER nvsentinel");
    my ($rc, $out, $err) = cmd('nvsrelayd', $name, '--migrate');
    is($rc, 0, "nvsrelayd --migrate installs the schema into $name") or diag("$out$err");
    return $pg->dbh(dbname => $name);
}

# ---- an independent reading of the exports: what each row must hold ----

sub slurp_docs {
    my ($file) = @_;
    my $text = NvsTest::slurp("$FIX/$file");
    return $text =~ /^\s*\[/ ? @{ $JSON->decode($text) } : map { $JSON->decode($_) } grep {/\S/} split /\n/, $text;
}

# Extended JSON v2 relaxed to plain JSON values: only what the fixtures hold.
sub plain {
    my ($v) = @_;
    if (ref $v eq 'HASH') {
        return $v->{'$date'} if exists $v->{'$date'} && keys %$v == 1;
        return { map { $_ => plain($v->{$_}) } keys %$v };
    }
    return [ map { plain($_) } @$v ] if ref $v eq 'ARRAY';
    return $v;
}

sub row_id {
    my ($id) = @_;
    if (my $oid = $id->{'$oid'}) {
        return join '-', substr($oid, 0, 8), substr($oid, 8, 4), '8000', '8000', substr($oid, 12, 12);
    }
    my $hex = unpack 'H*', decode_base64($id->{'$binary'}{base64});
    return join '-', unpack 'A8 A4 A4 A4 A12', $hex;
}

# RFC 3339 as PostgreSQL prints a timestamptz in UTC.
sub pgtime {
    my ($t) = @_;
    return undef unless defined $t;
    if (ref $t eq 'HASH') {
        my ($s, $n) = ($t->{seconds}, $t->{nanos} // 0);
        my $frac = $n ? sprintf('.%06d', $n / 1000) : '';
        $frac =~ s/0+$//;
        return POSIX::strftime('%Y-%m-%d %H:%M:%S', gmtime $s) . "$frac+00";
    }
    $t =~ s/T/ /;
    $t =~ s/Z$/+00/;
    return $t;
}

my %ACTION = (0 => 'NONE', 2 => 'COMPONENT_RESET', 5 => 'CONTACT_SUPPORT', 6 => 'RUN_FIELDDIAG', 15 => 'RESTART_VM',
    24 => 'RESTART_BM', 25 => 'REPLACE_VM', 26 => 'RUN_DCGMEUD', 27 => 'CUSTOM', 99 => 'UNKNOWN');

sub expect_health {
    my ($raw) = @_;
    my $doc = plain($raw);
    delete $doc->{_id};
    my ($he, $st) = ($doc->{healthevent}, $doc->{healtheventstatus});
    my $fr = $st->{faultremediated};
    my $ev = $st->{userpodsevictionstatus}{status};
    return {
        id => row_id($raw->{_id}), node_name => $he->{nodename}, event_type => $he->{checkname},
        severity => $he->{componentclass}, recommended_action => $ACTION{ $he->{recommendedaction} },
        node_quarantined => $st->{nodequarantined},
        user_pods_eviction_status => defined $ev && $ev ne '' ? $ev : undef,
        user_pods_eviction_message => $st->{userpodsevictionstatus}{message} // '',
        fault_remediated => defined $fr ? ($fr ? 1 : 0) : undef,
        last_remediation_timestamp => pgtime($st->{lastremediationtimestamp}),
        quarantine_finish_timestamp => pgtime($st->{quarantinefinishtimestamp}),
        drain_finish_timestamp => pgtime($st->{drainfinishtimestamp}),
        created_at => pgtime($doc->{createdAt}), updated_at => pgtime($doc->{createdAt}),
        document => $doc,
    };
}

sub expect_maintenance {
    my ($raw) = @_;
    my $doc = plain($raw);
    delete $doc->{_id};
    return {
        id => row_id($raw->{_id}), event_id => $doc->{eventId}, csp => $doc->{csp}, cluster_name => $doc->{clusterName},
        node_name => $doc->{nodeName}, status => $doc->{status}, csp_status => $doc->{cspStatus},
        scheduled_start_time => pgtime($doc->{scheduledStartTime}), actual_end_time => pgtime($doc->{actualEndTime}),
        event_received_timestamp => pgtime($doc->{eventReceivedTimestamp}),
        last_updated_timestamp => pgtime($doc->{lastUpdatedTimestamp}),
        created_at => pgtime($doc->{eventReceivedTimestamp}), updated_at => pgtime($doc->{lastUpdatedTimestamp}),
        document => $doc,
    };
}

# Every row of $table as a hash of text columns (timestamps in UTC), document decoded.
sub rows {
    my ($h, $table, @cols) = @_;
    $h->do("SET TIME ZONE 'UTC'");
    my $sel = join ', ', map { $_ eq 'fault_remediated' ? "CASE WHEN $_ THEN 1 WHEN NOT $_ THEN 0 END AS $_" : $_ } @cols;
    my $r = $h->selectall_hashref("SELECT id::text AS id, $sel, document::text AS document FROM $table", 'id');
    for (values %$r) {
        utf8::encode($_->{document}) if utf8::is_utf8($_->{document});
        $_->{document} = $JSON->decode($_->{document});
    }
    return $r;
}

my @HCOLS = qw(node_name event_type severity recommended_action node_quarantined user_pods_eviction_status
    user_pods_eviction_message fault_remediated last_remediation_timestamp quarantine_finish_timestamp
    drain_finish_timestamp created_at updated_at);
my @MCOLS = qw(event_id csp cluster_name node_name status csp_status scheduled_start_time actual_end_time
    event_received_timestamp last_updated_timestamp created_at updated_at);

sub table_md5 {
    my ($h, $table) = @_;
    return $h->selectrow_array("SELECT md5(string_agg(t::text, chr(10) ORDER BY id)) FROM $table t");
}
sub count_of { my ($h, $sql) = @_; return ($h->selectrow_array($sql))[0] }

my @health = slurp_docs('health_events.json');
my @maint  = slurp_docs('maintenance_events.json');
is(scalar @health, 24, 'fixture: 24 health events');
is(scalar @maint, 8, 'fixture: 8 maintenance events');

# A subscriber on both tables, from the head: it must see only what --stream publishes.
my $c = NvsTest::Client->connect($d->socket);
ok($c->hello('t82'), 'hello');
$c->watch(sid => 1, table => 'health_events');
$c->watch(sid => 2, table => 'maintenance_events');
ok($c->recv_op('bookmark', 10), 'subscriber watching both tables');

subtest 'health_events, JSON lines, v2 relaxed: rows as NVSentinel writes them, not streamed' => sub {
    my ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', "$FIX/health_events.json");
    is($rc, 0, 'exit 0') or diag($err);
    like($out, qr/^imported health_events: 24 read, 24 inserted, 0 already present, 0 bad skipped, in [\d.]+ s \(\S+ documents\/s\); not streamed/,
        'summary on stdout');
    is($err, '', 'nothing on stderr (no terminal, no progress bar)');
    my $got = rows($dbh, 'health_events', @HCOLS);
    my %want = map { my $e = expect_health($_); $e->{id} => $e } @health;
    is_deeply([ sort keys %$got ], [ sort keys %want ], 'ids: ObjectIds as version 8 UUIDs carrying their bytes, the binary UUID as it is');
    ok(exists $got->{'73ffd264-44b3-4c69-90e8-e7d1dfc035d4'}, '... the $binary subtype 04 _id is the row id');
    ok(exists $got->{'6908650e-003a-8000-8000-1f0051c2a000'}, '... ObjectId 6908650e003a1f0051c2a000');
    for my $id (sort keys %want) {
        my ($g, $w) = ($got->{$id}, $want{$id});
        is_deeply({ map { $_ => $g->{$_} } @HCOLS }, { map { $_ => $w->{$_} } @HCOLS }, "row $id: columns") or last;
        is_deeply($g->{document}, $w->{document}, "row $id: document = the export without _id, dates as RFC 3339 strings")
            or last;
    }
    is(count_of($dbh, q{SELECT count(*) FROM health_events WHERE jsonb_exists(document, '_id')}), 0, 'no document keeps _id');
    is(count_of($dbh, q{SELECT count(*) FROM health_events WHERE jsonb_exists(document->'healthevent', 'nodename')
        AND NOT jsonb_exists(document->'healthevent', 'nodeName')}), 24, "Mongo's lowercase keys kept as stored");
    is(count_of($dbh, q{SELECT count(*) FROM health_events
        WHERE jsonb_typeof(document #> '{healthevent,generatedtimestamp,seconds}') = 'number'}), 24,
        'protobuf timestamps stay {seconds, nanos} numbers');
    is(count_of($dbh, q{SELECT count(*) FROM datastore_changelog WHERE table_name = 'health_events'}), 0,
        'no changelog rows: nvsrelay.capture = off in the import transaction');
    is(scalar @{ $c->events(1, 1.5) }, 0, 'the subscriber saw nothing');

    # The health-events-analyzer's and fault-quarantine's lookups work on the imported rows.
    is(count_of($dbh, q{SELECT count(*) FROM health_events WHERE node_name = 'dgx-b200-007'
        AND COALESCE(document->'healthevent'->>'nodename', document->'healthevent'->>'nodeName') = node_name}), 4,
        'node_name matches the document for the rows of one node');
};

subtest 'a re-run inserts nothing; canonical --jsonArray and v1 lines are the same rows' => sub {
    my $before = table_md5($dbh, 'health_events');
    my ($rc, $out) = import_into('nvsentinel', '--table', 'HealthEvents', "$FIX/health_events.json");
    is($rc, 0, 're-run exits 0');
    like($out, qr/24 read, 0 inserted, 24 already present/, '... 0 inserted, 24 already present');
    ($rc, $out) = import_into('nvsentinel', '--table', 'health_events', '--jsonArray', "$FIX/health_events.canonical.json");
    like($out, qr/24 read, 0 inserted, 24 already present/, 'canonical --jsonArray: the same 24 ids');
    ($rc, $out) = import_into('nvsentinel', '--table', 'health_events', "$FIX/health_events.v1.json");
    like($out, qr/24 read, 0 inserted, 24 already present/, 'legacy v1: the same 24 ids');
    is(table_md5($dbh, 'health_events'), $before, 'table unchanged');

    for my $f ([ canon => 'health_events.canonical.json' ], [ legacy => 'health_events.v1.json' ]) {
        my $h = new_db($f->[0]);
        ($rc, $out, my $err) = import_into($f->[0], '--table', 'health_events', "$FIX/$f->[1]");
        like($out, qr/24 read, 24 inserted/, "$f->[1] into an empty database") or diag($err);
        is(table_md5($h, 'health_events'), $before, "$f->[1]: every column of every row equals the relaxed import");
        $h->disconnect;
    }
};

subtest 'maintenance_events: JSON lines and a --pretty --jsonArray from stdin' => sub {
    my ($rc, $out, $err) = import_into('nvsentinel', '--table', 'maintenance_events', "$FIX/maintenance_events.json");
    is($rc, 0, 'exit 0') or diag($err);
    like($out, qr/^imported maintenance_events: 8 read, 8 inserted, 0 already present/, 'summary');
    my $got = rows($dbh, 'maintenance_events', @MCOLS);
    my %want = map { my $e = expect_maintenance($_); $e->{id} => $e } @maint;
    is_deeply([ sort keys %$got ], [ sort keys %want ], 'ids');
    for my $id (sort keys %want) {
        is_deeply({ map { $_ => $got->{$id}{$_} } @MCOLS, 'document' }, { map { $_ => $want{$id}{$_} } @MCOLS, 'document' },
            "row $id ($want{$id}{event_id}): columns and document") or last;
    }
    is(count_of($dbh, q{SELECT count(*) FROM maintenance_events WHERE node_name = ''}), 1,
        "nodeName stored as \"\" (NVSentinel's bson tag never omits it) stays \"\"");
    is(scalar @{ $c->events(1, 1) }, 0, 'the subscriber saw nothing');

    my $before = table_md5($dbh, 'maintenance_events');
    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'MaintenanceEvents', '-',
        { stdin => "$FIX/maintenance_events.pretty.json" });
    is($rc, 0, 'pretty canonical array from stdin: exit 0') or diag($err);
    like($out, qr/8 read, 0 inserted, 8 already present/, '... the same 8 events');
    is(table_md5($dbh, 'maintenance_events'), $before, '... table unchanged');
};

subtest 'bad documents: named by line; stop imports nothing, skip imports the rest' => sub {
    my @bad = map { $JSON->decode($_) } grep { /\S/ && eval { $JSON->decode($_); 1 } } split /\n/, NvsTest::slurp("$FIX/health_events.bad.json");
    my @good_ids = map { row_id($_->{_id}) } grep { $_->{createdAt}{'$date'} !~ /^2025-13/ && !ref $_->{healthevent}{version} } @bad;
    is(scalar @good_ids, 7, 'fixture: 7 good documents among 10');
    my $ids = join ',', map {"'$_'"} @good_ids;
    my $n_before = count_of($dbh, 'SELECT count(*) FROM health_events');

    # Batches of 2: lines 1 and 2 were already moved into the table when line 3 stops it.
    my ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', '--batch', '2', "$FIX/health_events.bad.json");
    is($rc, 1, '--on-error stop (default): exit 1');
    like($err, qr/^\Q$FIX\E\/health_events\.bad\.json:3: document 3: invalid JSON/m, 'the bad line is named: 3');
    unlike($err, qr/bad\.json:6:/, '... and the import stops there');
    like($err, qr/nothing imported/, '... nothing imported');
    is($out, '', 'no summary');
    is(count_of($dbh, "SELECT count(*) FROM health_events WHERE id IN ($ids)"), 0, 'not one of its rows is in the table');
    is(count_of($dbh, 'SELECT count(*) FROM health_events'), $n_before, 'row count unchanged');

    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', '--on-error', 'skip', '--batch', '2',
        "$FIX/health_events.bad.json");
    is($rc, 0, '--on-error skip: exit 0');
    my @lines = $err =~ /bad\.json:(\d+): document \d+: /g;
    is_deeply(\@lines, [ 3, 6, 8 ], 'lines 3, 6 and 8 reported') or diag($err);
    like($err, qr/:6: document 6: createdAt: \$date: "2025-13-45T25:61:00Z" is not an ISO-8601 date/, '... with the reason');
    like($err, qr/:8: document 8: healthevent\.version: \$numberLong: expected a decimal 64-bit integer/, '... and the path');
    like($out, qr/10 read, 7 inserted, 0 already present, 3 bad skipped/, 'summary counts them');
    is(count_of($dbh, "SELECT count(*) FROM health_events WHERE id IN ($ids)"), 7, 'the 7 good ones are in');
};

subtest 'input and usage errors' => sub {
    my ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', '--jsonArray', "$FIX/health_events.json");
    is($rc, 1, '--jsonArray on JSON lines: exit 1');
    like($err, qr/--jsonArray given, but the input is not a JSON array/, '... says so');
    my $broken = "$dir/broken-array.json";
    open(my $fh, '>', $broken) or die;
    print $fh NvsTest::slurp("$FIX/health_events.canonical.json") =~ s/\},\{"_id"/}{"_id"/r;
    close $fh;
    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', '--on-error', 'skip', $broken);
    is($rc, 1, 'a --jsonArray with a missing comma cannot be resynchronised: exit 1 even with skip');
    like($err, qr/line 1: expected ',' or '\]' between documents of the --jsonArray; cannot read further/, '... says where');
    ($rc, $out, $err) = import_into('nvsentinel', "$FIX/health_events.json");
    is($rc, 64, 'no --table: exit 64');
    like($err, qr/--table is required/, '... says so');
    ($rc) = import_into('nvsentinel', '--table', 'resume_tokens', "$FIX/health_events.json");
    is($rc, 64, '--table resume_tokens: exit 64');
    ($rc) = import_into('nvsentinel', '--table', 'health_events', '--on-error', 'ignore', "$FIX/health_events.json");
    is($rc, 64, '--on-error ignore: exit 64');
    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', "$FIX/no-such-file.json");
    is($rc, 1, 'missing file: exit 1');
    like($err, qr/cannot open .*no-such-file\.json: No such file/, '... says so');
    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', "$FIX/health_events.json",
        { env => { DATASTORE_PORT => 1 } });
    is($rc, 69, 'PostgreSQL unreachable: exit 69');
    like($err, qr/cannot connect to PostgreSQL/, '... says so');
    ($rc, $out, $err) = import_into('nvsentinel', '--table', 'maintenance_events', "$FIX/health_events.json");
    is($rc, 1, 'health events into maintenance_events: exit 1');
    like($err, qr/:1: document 1: eventId is missing/, '... the first document is refused');
};

subtest '--stream: the imported rows reach the subscriber' => sub {
    my $file = "$dir/stream.json";
    open(my $fh, '>', $file) or die;
    for my $i (1 .. 3) {
        my $doc = $JSON->decode($JSON->encode($health[$i]));
        $doc->{_id} = { '$oid' => sprintf('6908ff00000000000000%04x', $i) };
        $doc->{healthevent}{nodename} = "streamed-$i";
        print $fh $JSON->encode($doc), "\n";
    }
    close $fh;
    my ($rc, $out, $err) = import_into('nvsentinel', '--table', 'health_events', '--stream', $file);
    is($rc, 0, 'exit 0') or diag($err);
    like($out, qr/3 read, 3 inserted.*; the new rows entered the change stream/, 'summary says so');
    my $ev = $c->events(3, 10, sid => 1);
    is_deeply([ map { "$_->{event}{operationType} $_->{event}{fullDocument}{healthevent}{nodename}" } @$ev ],
        [ map {"insert streamed-$_"} 1 .. 3 ], 'three insert events, in file order');
    is($ev->[0]{event}{documentKey}{_id}, '6908ff00-0000-8000-8000-000000000001', '... keyed by the row id');
    is($ev->[0]{event}{fullDocument}{id}, '6908ff00-0000-8000-8000-000000000001', '... fullDocument carries the id');
    ok(!exists $ev->[0]{event}{fullDocument}{_id}, '... and no _id');
    is(scalar @{ $c->events(1, 1) }, 0, 'nothing else');
};

subtest 'a capture trigger without the switch: refused unless --stream' => sub {
    my $h = new_db('gotrigger');
    # What NVSentinel's Go runtime DDL puts back when one of its components starts.
    $h->do(q{CREATE OR REPLACE FUNCTION log_table_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
            VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW));
            PERFORM pg_notify('nvsentinel_changes', json_build_object('table', TG_TABLE_NAME)::text);
            RETURN NEW;
        END $$});
    my ($rc, $out, $err) = import_into('gotrigger', '--table', 'health_events', "$FIX/health_events.json");
    is($rc, 1, 'exit 1');
    like($err, qr/trigger health_events_changes \(function log_table_changes\) does not honour nvsrelay\.capture/,
        '... naming the trigger');
    is(count_of($h, 'SELECT count(*) FROM health_events'), 0, '... nothing imported');
    ($rc, $out) = import_into('gotrigger', '--table', 'health_events', '--stream', "$FIX/health_events.json");
    is($rc, 0, 'with --stream: imported');
    is(count_of($h, 'SELECT count(*) FROM datastore_changelog'), 24, '... and captured');
    $h->disconnect;

    $pg->psql('CREATE DATABASE bare OWNER nvsentinel');
    ($rc, $out, $err) = import_into('bare', '--table', 'health_events', "$FIX/health_events.json");
    is($rc, 1, 'no schema at all: exit 1');
    like($err, qr/table health_events does not exist: install the schema first/, '... says how to fix it');
};

subtest 'throughput (printed, not asserted)' => sub {
    my $h = new_db('bulk');
    my $file = "$dir/bulk.json";
    my $n = 10000;
    open(my $fh, '>', $file) or die;
    my $tmpl = NvsTest::slurp("$FIX/health_events.json") =~ s/\n.*//sr;
    for my $i (1 .. $n) {
        my $line = $tmpl;
        $line =~ s/"\$oid":"[0-9a-f]{24}"/sprintf('"$oid":"6909%020x"', $i)/e;
        $line =~ s/"nodename":"[^"]*"/sprintf('"nodename":"dgx-b200-%04d"', $i % 1500)/e;
        print $fh $line, "\n";
    }
    close $fh;
    my $t = NvsTest::now();
    my ($rc, $out, $err) = import_into('bulk', '--table', 'health_events', $file);
    my $secs = NvsTest::now() - $t;
    is($rc, 0, "$n documents imported") or diag($err);
    is(count_of($h, 'SELECT count(*) FROM health_events'), $n, '... all of them');
    note(sprintf('%d documents (%.1f MB) in %.2f s: %.0f documents/s end to end, with all of NVSentinel\'s indexes',
        $n, (-s $file) / 1e6, $secs, $n / $secs));
    $h->disconnect;
};

$c->close;
is($d->stop, 0, 'daemon stops with 0');
done_testing;

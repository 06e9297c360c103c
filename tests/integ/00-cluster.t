#!/usr/bin/perl
# 00-cluster.t - proves the integration-test harness before any daemon test relies on it:
# the throwaway cluster from tests/tools/pgtmp.sh (superuser access, mTLS verify-full as
# nvsentinel, the auth rules tests depend on, restart, teardown), the health-event
# helpers, and NvsTest::Daemon/Client against a small stand-in daemon so the harness
# itself is tested apart from nvsrelayd. Run by `make check`.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP qw(decode_json);
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start;
my $dir = $pg->dir;
note(sprintf 'cluster start %.2fs in %s, port %s', $pg->{start_secs}, $dir, $pg->port);

subtest 'cluster layout and env' => sub {
    ok(-f "$dir/data/PG_VERSION", 'data directory initialised');
    like($pg->port, qr/^\d+$/, 'port chosen');
    my $env = $pg->env;
    is_deeply([ sort keys %$env ], [ qw(DATASTORE_DATABASE DATASTORE_HOST DATASTORE_PORT DATASTORE_SSLCERT
        DATASTORE_SSLKEY DATASTORE_SSLMODE DATASTORE_SSLROOTCERT DATASTORE_USERNAME) ], 'DATASTORE_* for the daemon');
    is($env->{DATASTORE_HOST},     'localhost',   'host is localhost (verify-full checks the name)');
    is($env->{DATASTORE_SSLMODE},  'verify-full', 'sslmode');
    is($env->{DATASTORE_USERNAME}, 'nvsentinel',  'user = client cert CN');
    is($env->{DATASTORE_PORT},     $pg->port,     'same port');
    is((stat $env->{DATASTORE_SSLKEY})[2] & 07777, 0600, 'client key is 0600');
    ok(-r "$dir/tls/wrong-ca.crt", 'a second, unrelated CA exists');
    ok(-r "$dir/tls/mount/$_", "mount/$_") for qw(tls.crt tls.key ca.crt);
};

my $dbh = $pg->dbh;
subtest 'superuser over the Unix socket' => sub {
    is($dbh->selectrow_array('SELECT current_user'), 'postgres', 'superuser');
    is($dbh->selectrow_array('SELECT current_database()'), 'nvsentinel', 'database nvsentinel');
    cmp_ok($dbh->selectrow_array('SHOW server_version_num'), '>=', 150000, 'PostgreSQL 15+');
    is($dbh->selectrow_array('SHOW server_encoding'), 'UTF8', 'UTF8');
    is($dbh->selectrow_array('SHOW synchronous_commit'), 'on', 'synchronous_commit stays on');
    is($dbh->selectrow_array('SHOW fsync'), 'off', 'fsync off (test speed)');
    is($dbh->selectrow_array('SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()'),
        'nvsentinel', 'nvsentinel owns the database');
    my $tx = $pg->dbh(autocommit => 0);
    ok(!$tx->{AutoCommit}, 'autocommit => 0');
    $tx->rollback;
    $tx->disconnect;
    is($pg->psql("SELECT 1 + 1;\nSELECT 'x'"), "2\nx", 'psql returns tuples, unaligned');
    eval { $pg->psql('SELECT nope') };
    like($@, qr/column "nope" does not exist/, 'psql dies on error');
};

subtest 'mTLS verify-full as nvsentinel' => sub {
    my $tls = $pg->dbh(tls => 1);
    my ($user, $ssl, $ver, $dn) = $tls->selectrow_array(
        'SELECT current_user, s.ssl, s.version, s.client_dn FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()');
    is($user, 'nvsentinel', 'authenticated by certificate');
    ok($ssl, 'pg_stat_ssl reports ssl');
    like($ver, qr/^TLSv1\.[23]$/, "protocol $ver");
    is($dn, '/CN=nvsentinel', 'client DN');
    # The daemon installs its schema as this role: it must be able to.
    ok(eval { $tls->do('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"'); 1 }, 'nvsentinel can create uuid-ossp')
        or diag($@);
    $tls->disconnect;

    eval { $pg->dbh(tls => 1, sslrootcert => "$dir/tls/wrong-ca.crt") };
    like($@, qr/certificate verify failed/, 'server cert checked against the wrong CA: rejected');
    eval { $pg->dbh(tls => 1, sslcert => "$dir/tls/absent.crt", sslkey => "$dir/tls/absent.key") };
    like($@, qr/requires a valid client certificate/, 'no client certificate: rejected');
    eval { $pg->dbh(tls => 1, sslcert => "$dir/tls/wrong-client.crt", sslkey => "$dir/tls/wrong-client.key") };
    like($@, qr/unknown ca/i, 'client certificate from another CA: rejected');
    eval { $pg->dbh(host => '127.0.0.1', user => 'nvsentinel', sslmode => 'disable') };
    like($@, qr/no encryption/, 'plaintext TCP: rejected');
    my $scram = $pg->dbh(tls => 1, user => 'scram_user', password => 'scram-test-password');
    is($scram->selectrow_array('SELECT current_user'), 'scram_user', 'SCRAM-SHA-256 over TLS');
    $scram->disconnect;
    eval { $pg->dbh(tls => 1, user => 'scram_user', password => 'wrong') };
    like($@, qr/password authentication failed/, 'SCRAM with a wrong password: rejected');
};

subtest 'health events as NVSentinel writes them' => sub {
    # NVSentinel's health_events columns; the daemon normally installs this.
    $pg->psql(<<'SQL');
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE TABLE health_events (
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
SQL
    my $id = NvsTest::insert_health_event($dbh, node => 'node-a');
    like($id, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'returns the uuid');
    my $row = $dbh->selectrow_hashref('SELECT * FROM health_events WHERE id = ?', undef, $id);
    is($row->{node_name},          'node-a',      'node_name');
    is($row->{event_type},         'GpuXidError', 'event_type = checkName');
    is($row->{severity},           'GPU',         'severity = componentClass');
    is($row->{recommended_action}, 'RESTART_BM',  'recommended_action = enum name');
    my $doc = decode_json($row->{document});
    my $he  = $doc->{healthevent};
    like($doc->{createdAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/, 'createdAt is RFC3339Nano');
    is($he->{recommendedAction}, 24, 'recommendedAction is the integer enum');
    ok($he->{isFatal}, 'isFatal');
    ok(!exists $he->{isHealthy}, 'isHealthy omitted when false');
    is_deeply($he->{errorCode}, ['79'], 'errorCode');
    is_deeply($he->{entitiesImpacted}, [ { entityType => 'GPU', entityValue => '0' } ], 'entitiesImpacted');
    is($he->{nodeName}, 'node-a', 'nodeName');
    is($he->{agent}, 'gpu-health-monitor', 'agent');
    is($he->{processingStrategy}, 1, 'processingStrategy');
    ok($he->{generatedTimestamp}{seconds} > 1.7e9 && exists $he->{generatedTimestamp}{nanos}, 'generatedTimestamp');
    my $st = $doc->{healtheventstatus};
    ok(exists $st->{nodequarantined} && !defined $st->{nodequarantined}, 'nodequarantined null');
    ok(exists $st->{faultremediated} && !defined $st->{faultremediated}, 'faultremediated null');
    is_deeply($st->{userpodsevictionstatus}, { status => '' }, 'userpodsevictionstatus');
    like($st->{spanids}{'platform-connector'}, qr/^[0-9a-f]{16}$/, 'span id');

    my $id2 = NvsTest::insert_health_event($dbh, node => 'node-b', healthy => 1, fatal => 0, action => 0,
        error_codes => [], healthevent => { message => 'No Health Failures' });
    $row = $dbh->selectrow_hashref('SELECT * FROM health_events WHERE id = ?', undef, $id2);
    is($row->{recommended_action}, 'NONE', 'action 0 is NONE in the column');
    $he = decode_json($row->{document})->{healthevent};
    ok($he->{isHealthy} && !exists $he->{isFatal} && !exists $he->{recommendedAction} && !exists $he->{errorCode},
        'healthy event: omitempty drops isFatal, recommendedAction, errorCode');
    is($he->{message}, 'No Health Failures', 'healthevent override');
};

subtest 'restart, stop and start keep the data' => sub {
    my $t = NvsTest::now();
    $pg->restart('immediate');
    note(sprintf 'restart immediate %.2fs', NvsTest::now() - $t);
    ok(!$dbh->ping, 'old connection broken by the restart');
    $dbh = $pg->dbh;
    is($dbh->selectrow_array('SELECT count(*) FROM health_events'), 2, 'rows survive an immediate restart');
    $dbh->disconnect;
    $pg->restart('fast');
    $pg->stop_server;
    ok(!$pg->running, 'stop_server');
    eval { $pg->dbh };
    ok($@, 'no connection while stopped');
    $pg->stop_server;
    pass('stop_server twice is fine');
    $pg->start_server;
    ok($pg->running, 'start_server');
    $dbh = $pg->dbh;
    is($dbh->selectrow_array('SELECT count(*) FROM health_events'), 2, 'rows still there');
};

# A stand-in for nvsrelayd: enough protocol to exercise Daemon and Client, including
# frames split across writes, a frame for another stream, an error and a non-JSON line.
my $FAKE = <<'PERL';
#!/usr/bin/perl
use strict; use warnings; use IO::Socket::UNIX; use IO::Select; use Socket qw(SOCK_STREAM); use Time::HiRes qw(sleep);
$| = 1;
my %set; while (@ARGV) { my $a = shift; $set{$1} = $2 if $a eq '--set' && shift(@ARGV) =~ /^([^=]+)=(.*)$/s }
print "fake: args @{[ map { \"$_=$set{$_}\" } sort keys %set ]}\n";
print "fake: env $_=", ($ENV{$_} // 'unset'), "\n" for qw(DATASTORE_SSLMODE DATASTORE_PORT PGHOST FAKE_EXTRA);
exit 3 if $ENV{FAKE_FAIL};
$SIG{TERM} = sub { print "fake: stopping\n"; unlink $set{listen_unix}; exit 0 };
unlink $set{listen_unix};
my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $set{listen_unix}, Listen => 8) or die "listen: $!";
my $sel = IO::Select->new($l); my %buf;
while (1) {
    for my $h ($sel->can_read) {
        if ($h == $l) { $sel->add($l->accept); next }
        my $n = sysread($h, $buf{$h}, 65536, length($buf{$h} // ''));
        if (!$n) { $sel->remove($h); close $h; next }
        while ($buf{$h} =~ s/^(.*)\n//) {
            my $line = $1;
            if ($line =~ /"op":"hello"/) { print $h qq({"op":"hello","v":1,"server":"fake"}\n) }
            elsif ($line =~ /"op":"watch".*"table":"nope"/) {
                print $h qq({"op":"error","sid":2,"code":2,"codeName":"BadValue","message":"no such table"}\n) }
            elsif ($line =~ /"op":"watch"/) {
                syswrite $h, qq({"op":"event","sid":1,"event":{"_id":{"_data":"a1"},"n":1}}\n{"op":"bookmark","sid":1,"tok);
                sleep 0.2;
                syswrite $h, qq(en":{"_data":"b1"}}\n{"op":"event","sid":9,"event":{"n":99}}\n);
                syswrite $h, qq({"op":"event","sid":1,"event":{"_id":{"_data":"a2"},"n":2}}\n);
            }
            elsif ($line eq 'garbage') { print $h "this is not json\n" }
            elsif ($line =~ /"op":"ping"/) { print $h "{\"op\":\"pong\"}\n" }
        }
    }
}
PERL

my $running;
subtest 'Daemon and Client against a stand-in daemon' => sub {
    my $fake = "$dir/fake-nvsrelayd";
    open(my $fh, '>', $fake) or die $!;
    print $fh $FAKE;
    close $fh;
    chmod 0755, $fake;

    my $t = NvsTest::now();
    my $d = NvsTest::Daemon->start($pg, bin => $fake, set => { pool_max_open => 3 }, env => { FAKE_EXTRA => 'x' });
    note(sprintf 'stand-in ready in %.2fs', NvsTest::now() - $t);
    ok($d->pid > 0 && -S $d->socket, 'started, socket exists');
    is($d->socket, "$dir/relay.sock", 'default socket in the test directory');
    my $log = $d->log;
    like($log, qr/listen_unix=\Q$dir\E\/relay\.sock log_format=text log_level=debug pool_max_open=3/, '--set arguments');
    like($log, qr/DATASTORE_SSLMODE=verify-full/, 'cluster env passed');
    like($log, qr/PGHOST=unset/, 'caller PG* env not passed');
    like($log, qr/FAKE_EXTRA=x/, 'extra env passed');
    is($d->logfile, "$dir/nvsrelayd.1.log", 'log file numbered');

    my $c = NvsTest::Client->connect($d->socket);
    is($c->hello('t00')->{server}, 'fake', 'hello answered');
    $c->watch(consumer => 'fault-quarantine');
    $t = NvsTest::now();
    my $ev = $c->events(2, 5, sid => 1);
    is(scalar @$ev, 2, 'two events, one of them split across writes');
    is_deeply([ map { $_->{event}{n} } @$ev ], [ 1, 2 ], 'in order');
    is_deeply($c->bookmark(1), { _data => 'b1' }, 'bookmark recorded');
    is($c->skipped->[-1]{sid}, 9, 'event of another stream kept in skipped');

    $c->watch(sid => 2, table => 'nope');
    my $err = $c->recv_op('error', 5);
    is($err->{codeName}, 'BadValue', 'error frame for a bad watch');
    $c->watch(sid => 2, table => 'nope');
    $t = NvsTest::now();
    is(scalar @{ $c->events(1, 5, sid => 2) }, 0, 'events() returns early on an error');
    cmp_ok(NvsTest::now() - $t, '<', 2, '... without waiting for the timeout');
    is(scalar @{ $c->errors }, 2, 'errors collected');

    $c->send_raw("garbage\n");
    my $bad = $c->recv(5);
    is($bad->{op}, '(invalid)', 'a non-JSON line is reported, not fatal');
    is($bad->{raw}, 'this is not json', '... with its text');

    $c->ping;
    is($c->recv_op('pong', 5)->{op}, 'pong', 'ping');
    $t = NvsTest::now();
    is($c->recv(0.3), undef, 'recv times out');
    cmp_ok(NvsTest::now() - $t, '>=', 0.29, '... after the timeout');
    ok(!$c->eof, '... without eof');

    is($d->stop, 0, 'stop: TERM, exit 0');
    like($d->log, qr/fake: stopping/, 'the daemon saw TERM');
    is($c->recv(2), undef, 'client sees the close');
    ok($c->eof, '... as eof');
    is($c->send({ op => 'ping' }), 0, 'send to a closed peer returns 0, no SIGPIPE');
    is($d->stop, 0, 'stop again returns the same status');

    eval { NvsTest::Daemon->start($pg, bin => $fake, env => { FAKE_FAIL => 1 }) };
    like($@, qr/exited with status 3 before it was ready/, 'early exit is reported');
    like($@, qr/fake: args/, '... with the log');

    my $d2 = NvsTest::Daemon->start($pg, bin => $fake);
    is($d2->wait_exit(0.1), undef, 'wait_exit: still running');
    ok($d2->wait_log(qr/env (DATASTORE_PORT=\d+)/, 1), 'wait_log');
    $d2->kill('KILL');
    is($d2->wait_exit(5), 128 + 9, 'killed by SIGKILL: 137');
    is($d2->logfile, "$dir/nvsrelayd.3.log", 'each start gets its own log');

    # Left running on purpose: $pg->stop below must not leave it behind.
    $running = NvsTest::Daemon->start($pg, bin => $fake, socket => "$dir/other.sock");
    is($running->socket, "$dir/other.sock", 'socket override');
};

subtest 'teardown' => sub {
    $dbh->disconnect;
    my ($pm) = split /\n/, NvsTest::slurp("$dir/data/postmaster.pid");
    my $guard = $pg->{guard};
    ok($pm && kill(0, $pm), "postmaster $pm runs");
    ok(kill(0, $guard), "guard $guard runs");
    my @backends = children($pm);
    ok(scalar @backends, scalar(@backends) . ' server processes');
    my $t = NvsTest::now();
    $pg->stop;
    note(sprintf 'stop %.2fs', NvsTest::now() - $t);
    ok(!-e $dir, 'directory removed');
    ok(!alive($pm), 'postmaster gone');
    ok(!alive($guard), 'guard gone');
    ok(!grep({ alive($_) } @backends), 'no server processes left');
    ok(!alive($running->pid), 'a daemon still running was stopped first');
    is($running->wait_exit(0), 0, '... cleanly');
    $pg->stop;
    pass('stop is idempotent');
};

done_testing;

sub alive {
    my ($pid) = @_;
    my $stat = NvsTest::slurp("/proc/$pid/stat");
    return $stat ne '' && $stat !~ /^\d+ \(.*\) [ZX] /s;
}

sub children {
    my ($ppid) = @_;
    return grep {
        my ($pp) = NvsTest::slurp("/proc/$_/stat") =~ /\) \S+ (\d+)/;
        defined $pp && $pp == $ppid
    } map { m{(\d+)$} } glob '/proc/[0-9]*';
}

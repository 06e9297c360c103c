#!/usr/bin/perl
# 40-tls.t - proves nvsrelayd's PostgreSQL connection settings against a TLS cluster
# (pg_hba: hostssl nvsentinel cert, hostssl postgres trust, hostssl scram_user
# scram-sha-256, hostnossl reject, local trust): verify-full, verify-ca and require
# connect and stream; a wrong CA or a key readable by others keeps the daemon unready
# with libpq's reason in the log while it retries, and it still stops cleanly; disable
# works over the Unix socket only; the NVSentinel certificate mount paths fill in the
# certificate files; SCRAM-SHA-256 works without a client certificate and the password
# never reaches the log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg    = NvsTest::Pg->start;
my $dir   = $pg->dir;
my $pgenv = $pg->pgenv;
my $dbh   = $pg->dbh;    # superuser over the Unix socket: writes events, inspects sessions

# The daemon's sessions that started after $since (server clock), as "user ssl=t|f dn=... addr=...".
sub sessions {
    my ($since) = @_;
    my $rows = $dbh->selectall_arrayref(q{
        SELECT a.usename, s.ssl, coalesce(s.client_dn, ''), coalesce(host(a.client_addr), 'local')
        FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
        WHERE a.application_name = 'nvsrelayd' AND a.backend_start >= ?::timestamptz ORDER BY a.pid}, undef, $since);
    return [ map {"$_->[0] ssl=" . ($_->[1] ? 't' : 'f') . " dn=$_->[2] addr=$_->[3]"} @$rows ];
}

# Starts a daemon with extra environment, checks readiness and that an inserted health
# event arrives on a watch; returns the daemon (still running) and its sessions.
sub start_and_flow {
    my ($label, %env) = @_;
    my $since = $dbh->selectrow_array('SELECT clock_timestamp()');
    my $d = eval { NvsTest::Daemon->start($pg, env => \%env, ready_timeout => 15) };
    if (!$d) {
        fail("$label: ready");
        diag($@);
        return;
    }
    pass("$label: ready");
    my $c = NvsTest::Client->connect($d->socket);
    $c->hello('t40');
    $c->watch;
    ok($c->recv_op('bookmark', 5), "$label: watch confirmed");
    my $id = NvsTest::insert_health_event($dbh, node => "node-$label");
    my $ev = $c->events(1, 10, sid => 1);
    is(scalar @$ev && "$ev->[0]{event}{operationType} $ev->[0]{event}{documentKey}{_id}", "insert $id",
        "$label: the inserted health event arrives");
    $c->close;
    # The ticker connects after readiness; give it a moment to show up.
    my $s = sessions($since);
    for (1 .. 40) { last if @$s >= 4; Time::HiRes::sleep(0.05); $s = sessions($since) }
    return ($d, $s);
}

# A daemon that must stay unready: waits for $n "connect failed" lines matching $re.
sub start_failing {
    my ($label, $re, %env) = @_;
    my $d = NvsTest::Daemon->start($pg, env => \%env, wait_ready => 0);
    my ($n, $deadline) = (0, NvsTest::now() + 10);
    while (1) {
        $n = () = $d->log =~ /postgresql connect failed conn=\w+ reason='[^\n]*\Q$re\E/g;
        last if $n >= 2 || NvsTest::now() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    cmp_ok($n, '>=', 2, "$label: two 'connect failed' lines with the reason: it keeps retrying")
        or diag(NvsTest::tail($d->logfile, 10));
    is($d->wait_exit(0), undef, "$label: still running");
    my $hello = -S $d->socket && eval {
        my $c = NvsTest::Client->connect($d->socket);
        $c->send({ op => 'hello', v => 1, client => 't40' });
        $c->recv_op('hello', 1);
    };
    ok(!$hello, "$label: not ready (no socket, or no hello)");
    is($d->stop, 0, "$label: exits 0 on SIGTERM");
    return $d;
}

my %NO_FILES = (DATASTORE_SSLCERT => undef, DATASTORE_SSLKEY => undef, DATASTORE_SSLROOTCERT => undef);

subtest 'verify-full with the right CA' => sub {
    my ($d, $s) = start_and_flow('verify-full');
    return unless $d;
    is_deeply($s, [ ('nvsentinel ssl=t dn=/CN=nvsentinel addr=127.0.0.1') x 4 ],
        'four sessions (main, listen, ticker, janitor) over TLS, authenticated by the client certificate');
    like($d->log, qr/starting .*sslmode=verify-full/, 'log names the sslmode');
    is($d->stop, 0, 'stops with 0');
};

subtest 'verify-full with the wrong CA: unready, retrying, clear reason' => sub {
    my $d = start_failing('wrong CA', 'certificate verify failed', DATASTORE_SSLROOTCERT => "$dir/tls/wrong-ca.crt");
    like($d->log, qr/warning postgresql connect failed conn=\w+ reason='.*SSL error: certificate verify failed'/,
        'log: certificate verification failure');
};

subtest 'verify-full by IP address, verify-ca, require' => sub {
    for my $case ([ 'verify-full 127.0.0.1', DATASTORE_HOST => '127.0.0.1' ],
                  [ 'verify-ca', DATASTORE_SSLMODE => 'verify-ca' ],
                  [ 'require', DATASTORE_SSLMODE => 'require' ]) {
        my ($label, %env) = @$case;
        my ($d, $s) = start_and_flow($label, %env);
        next unless $d;
        ok(@$s && !grep({ !/^nvsentinel ssl=t dn=\/CN=nvsentinel / } @$s), "$label: sessions use TLS and the certificate");
        is($d->stop, 0, "$label: stops with 0");
    }
};

subtest 'disable: plaintext over the Unix socket; refused over TCP' => sub {
    my ($d, $s) = start_and_flow('disable unix', DATASTORE_HOST => $pg->sockdir, DATASTORE_SSLMODE => 'disable',
        %NO_FILES);
    if ($d) {
        ok(@$s && !grep({ $_ ne 'nvsentinel ssl=f dn= addr=local' } @$s), 'sessions over the Unix socket, no TLS')
            or diag(explain $s);
        is($d->stop, 0, 'stops with 0');
    }
    start_failing('disable tcp', 'no encryption', DATASTORE_SSLMODE => 'disable');
};

subtest 'certificate mount paths' => sub {
    my ($d, $s) = start_and_flow('POSTGRESQL_CLIENT_CERT_MOUNT_PATH', %NO_FILES,
        POSTGRESQL_CLIENT_CERT_MOUNT_PATH => "$dir/tls/mount");
    if ($d) {
        ok(@$s && !grep({ !/ dn=\/CN=nvsentinel / } @$s), 'client certificate taken from the mount');
        is($d->stop, 0, 'stops with 0');
    }
    ($d) = start_and_flow('MONGODB_CLIENT_CERT_MOUNT_PATH', %NO_FILES,
        MONGODB_CLIENT_CERT_MOUNT_PATH => "$dir/tls/mount");
    is($d->stop, 0, 'stops with 0') if $d;
    ($d) = start_and_flow('both mount paths', %NO_FILES,
        POSTGRESQL_CLIENT_CERT_MOUNT_PATH => "$dir/tls/mount", MONGODB_CLIENT_CERT_MOUNT_PATH => "$dir/tls/absent");
    is($d->stop, 0, 'POSTGRESQL_ wins over MONGODB_; stops with 0') if $d;
};

subtest 'client key readable by others: refused with libpq reason' => sub {
    my $key = "$dir/tls/loose.key";
    my ($rc, $out) = NvsTest::run_cmd([ 'cp', "$dir/tls/client.key", $key ]);
    is($rc, 0, 'key copied') or diag($out);
    chmod 0644, $key;
    my $d = start_failing('key 0644', 'group or world access', DATASTORE_SSLKEY => $key);
    like($d->log, qr/private key file "\Q$key\E" has group or world access/, "log: libpq's reason, naming the file");
};

subtest 'SCRAM-SHA-256 without a client certificate' => sub {
    my $user = $pgenv->{PGTMP_SCRAM_USER};
    my $pass = $pgenv->{PGTMP_SCRAM_PASSWORD};
    ok($user && $pass, "pgtmp provides a SCRAM user ($user)");
    # The schema is installed (by nvsentinel, above). schema = auto runs CREATE SCHEMA/TABLE
    # IF NOT EXISTS on every start, and PostgreSQL checks CREATE privilege before it finds
    # the object, so the role needs CREATE on the database and on nvsrelay, plus DML.
    $pg->psql(<<"SQL");
GRANT CREATE ON DATABASE nvsentinel TO $user;
GRANT USAGE, CREATE ON SCHEMA nvsrelay TO $user;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, nvsrelay TO $user;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO $user;
SQL
    my %scram = (DATASTORE_USERNAME => $user, DATASTORE_PASSWORD => $pass,
        DATASTORE_SSLCERT => undef, DATASTORE_SSLKEY => undef);
    my ($d, $s) = start_and_flow('scram', %scram);
    if ($d) {
        is_deeply($s, [ ("$user ssl=t dn= addr=127.0.0.1") x 4 ], 'four sessions as the SCRAM user over TLS, no certificate');
        is($d->stop, 0, 'stops with 0');
        unlike($d->log, qr/\Q$pass\E/, 'the password is not in the log');
    }

    my $wrong = 'not-the-' . $pass;
    $d = start_failing('wrong password', 'password authentication failed', %scram, DATASTORE_PASSWORD => $wrong);
    unlike($d->log, qr/\Q$wrong\E/, 'wrong password: not in the log either');

    my $bin = ($ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build") . '/nvsrelayd';
    local %ENV = ((map { $_ => $ENV{$_} } grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ } keys %ENV),
        DATASTORE_PASSWORD => $pass);
    my ($rc, $out) = NvsTest::run_cmd([ $bin, '-c', '/dev/null', '--check-config' ]);
    is($rc, 0, '--check-config with a password');
    like($out, qr/^datastore_password = \(set\)$/m, '... prints it as (set)');
    unlike($out, qr/\Q$pass\E/, '... never in clear');
};

done_testing;

#!/usr/bin/perl
# 99-security.t - what 40-tls.t (client key mode, wrong CA, SCRAM) and 70-transport.t (TCP
# auth, bearer token, the peer-uid allow-list) leave out:
#   - the subscriber and admin sockets' file modes keep other users out (the kernel refuses
#     the connect), and unix_socket_mode opens the subscriber socket when asked;
#   - verify-full refuses a server whose certificate does not name the host, with a clear
#     reason;
#   - least privilege: after the schema owner (client certificate) installed the schema, a
#     runtime role holding only the grants README.md lists ("Least privilege") runs with
#     schema = verify over SCRAM-SHA-256, ticks, streams, stores acknowledged positions and
#     prunes, with no permission error, alongside a relay authenticated by certificate;
#     with a wrong password it is logged at error level as needing an operator (and
#     retried); without USAGE on schema nvsrelay it is told so, not "schema not installed";
#   - the database password and the bearer token never appear in the log (debug level,
#     through reconnects and failures), in /metrics, in `nvsrelay status`/`consumers`, in
#     --check-config output or on the command line.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX ();
use Socket qw(SOCK_STREAM MSG_NOSIGNAL);
use NvsTest;

my $pg    = NvsTest::Pg->start;
my $dir   = $pg->dir;
my $pgenv = $pg->pgenv;
my $dbh   = $pg->dbh;
my $build = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
my $slow  = $ENV{NVS_VALGRIND} ? 6 : 1;
my $ROLE  = $pgenv->{PGTMP_SCRAM_USER};
my $PASS  = $pgenv->{PGTMP_SCRAM_PASSWORD};


# connect() to a Unix socket as the OS user nobody: '' on success, else the error.
sub connect_as_nobody {
    my ($path) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        my ($uid, $gid) = (getpwnam('nobody'))[ 2, 3 ];
        POSIX::setgid($gid);
        $) = "$gid $gid";
        POSIX::setuid($uid);
        print(($< == $uid) ? '' : 'setuid failed');
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path);
        print $s ? 'connected' : "$!";
        POSIX::_exit(0);
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    return $out;
}

sub mode_of { my ($p) = @_; my @st = stat $p or return 'missing'; return sprintf '%04o uid=%d', $st[2] & 07777, $st[4] }

# --- socket permissions ----------------------------------------------------------------
SKIP: {
    skip 'needs root (to try the sockets as another user)', 6 if $> != 0 || !defined getpwnam('nobody');
    my $d = NvsTest::Daemon->start($pg);
    is(mode_of($d->socket), '0660 uid=0', 'subscriber socket: mode 0660 (unix_socket_mode default), owned by the daemon user');
    like(connect_as_nobody($d->socket), qr/Permission denied/, 'another user cannot even connect to it');
    like(mode_of($d->admin_socket), qr/^0[0-7][0-7]0 uid=0$/, 'admin socket: no access for others (' . mode_of($d->admin_socket) . ')');
    like(connect_as_nobody($d->admin_socket), qr/Permission denied/, 'another user cannot connect to the admin socket');
    is($d->stop, 0, 'stops');
    $d = NvsTest::Daemon->start($pg, set => { unix_socket_mode => '0666' });
    is(connect_as_nobody($d->socket), 'connected', 'unix_socket_mode = 0666 opens the subscriber socket to others');
    $d->stop;
}

# --- verify-full with a certificate for another name -------------------------------------
{
    # hostaddr reaches the server, host is the name checked against its certificate (localhost).
    my $d = NvsTest::Daemon->start($pg, wait_ready => 0, env => { DATASTORE_HOST => 'db.example.invalid' },
        set => { datastore_options => 'hostaddr=127.0.0.1', reconnect_max_ms => 200 });
    ok($d->wait_log(qr/postgresql connect failed conn=\w+ reason='[^']*server certificate for "localhost"[^']* does not match host name "db\.example\.invalid"/,
        10 * $slow), 'verify-full, certificate for another host name: refused, and the log says why')
        or diag(NvsTest::tail($d->logfile, 5));
    is($d->wait_exit(0), undef, '... the daemon keeps retrying');
    is($d->stop, 0, '... and stops cleanly');
}

# --- least privilege: schema owner migrates, runtime role streams --------------------------
# The schema owner is nvsentinel (client certificate): it installs the schema.
my $owner = NvsTest::Daemon->start($pg, set => { schema => 'auto' });
ok($owner, 'schema installed by the owner role (certificate auth)');
$owner->stop;

# Exactly the grants README.md's "Least privilege" section lists, in a database that
# keeps functions from PUBLIC (hardened default privileges), so the EXECUTE grant counts.
$pg->psql(<<"SQL", user => 'postgres');
REVOKE EXECUTE ON FUNCTION nvsrelay.batch_walk(bigint, bigint, integer, text) FROM PUBLIC;
GRANT CONNECT ON DATABASE nvsentinel TO $ROLE;
GRANT USAGE ON SCHEMA public, nvsrelay TO $ROLE;
GRANT SELECT, DELETE ON datastore_changelog TO $ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON resume_tokens TO $ROLE;
GRANT SELECT, INSERT, DELETE ON nvsrelay.tick TO $ROLE;
GRANT SELECT ON nvsrelay.meta, nvsrelay.schema_migrations TO $ROLE;
GRANT EXECUTE ON FUNCTION nvsrelay.batch_walk(bigint, bigint, integer, text) TO $ROLE;
SQL
my ($pwtype) = $dbh->selectrow_array(q{SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = ?}, undef, $ROLE);
is($pwtype, 'SCRAM-SHA-256$', "the runtime role's password is stored as a SCRAM-SHA-256 verifier");
my %priv = map { $_ => $dbh->selectrow_array("SELECT has_table_privilege('$ROLE', '$_->[0]', '$_->[1]')") }
    map { [ split / / ] } ('health_events SELECT', 'maintenance_events SELECT', 'health_events INSERT',
    'datastore_changelog INSERT', 'datastore_changelog UPDATE', 'nvsrelay.meta UPDATE');
is(scalar(grep { $_ } values %priv), 0, 'the runtime role cannot read or write the captured tables or the meta row');
my ($can_create) = $dbh->selectrow_array("SELECT has_schema_privilege('$ROLE', 'nvsrelay', 'CREATE')"
    . " OR has_schema_privilege('$ROLE', 'public', 'CREATE') OR has_database_privilege('$ROLE', 'nvsentinel', 'CREATE')");
ok(!$can_create, 'and cannot create anything');

my $hport = NvsTest::free_port();
my $token = join '', map { sprintf '%02x', int rand 256 } 1 .. 24;
my $tokfile = "$dir/auth.token";
open(my $tf, '>', $tokfile) or die;
print $tf "$token\n";
close $tf;
chmod 0600, $tokfile;
my $tport = NvsTest::free_port();
my %scram = (DATASTORE_USERNAME => $ROLE, DATASTORE_PASSWORD => $PASS, DATASTORE_SSLCERT => undef, DATASTORE_SSLKEY => undef);
my $rt = NvsTest::Daemon->start($pg, env => \%scram,
    set => { schema => 'verify', http_listen => "127.0.0.1:$hport", stats_interval_s => 1, ack_flush_ms => 50, batch_rows => 3,
        prune_interval_s => 1, retention_floor_s => 0, retention_max_rows => 5, listen_tcp => "127.0.0.1:$tport",
        tcp_plaintext => 'on', auth_token_file => $tokfile, reconnect_min_ms => 50, reconnect_max_ms => 300 });
ok($rt, 'runtime role: ready with schema = verify over SCRAM-SHA-256');
ok($rt->wait_log(qr/ticker elected/, 10 * $slow), 'runtime role: elected ticker (advisory lock, tick inserts)');
my $sessions = $dbh->selectall_arrayref(q{SELECT a.usename, s.ssl, coalesce(s.client_dn, '') FROM pg_stat_activity a
    JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'nvsrelayd' ORDER BY a.pid});
ok(@$sessions >= 3 && !grep({ $_->[0] ne $ROLE || !$_->[1] || $_->[2] ne '' } @$sessions),
    "all relay sessions are $ROLE over TLS without a client certificate");

# The certificate relay runs alongside on the same database.
my $cert = NvsTest::Daemon->start($pg, socket => "$dir/cert.sock", set => { schema => 'verify' });
my @c = map { my $c = NvsTest::Client->connect($_->socket); $c->watch(consumer => "lp-$_->{n}"); $c } ($rt, $cert);
ok(!grep({ !$_->recv_op('bookmark', 10 * $slow) } @c), 'a durable consumer on each relay');
my @ids = map { NvsTest::insert_health_event($dbh, node => "lp-$_") } 1 .. 10;
my @got = map { $_->events(10, 15 * $slow) } @c;
is_deeply([ map { $_->{event}{documentKey}{_id} } @{ $got[0] } ], \@ids, 'the runtime-role relay streams every change');
is_deeply([ map { $_->{event}{_id}{_data} } @{ $got[1] } ], [ map { $_->{event}{_id}{_data} } @{ $got[0] } ],
    'the certificate relay streams them with the same tokens');
# Seven rows in one transaction: one batch, read by the runtime role in pages of three
# (the pages after the first through nvsrelay.batch_walk).
my $tx = $pg->dbh(autocommit => 0);
my @batch = map { NvsTest::insert_health_event($tx, node => "lp-batch-$_") } 1 .. 7;
$tx->commit;
$tx->disconnect;
my @more = map { $_->events(7, 15 * $slow) } @c;
is_deeply([ map { $_->{event}{documentKey}{_id} } @{ $more[0] } ], \@batch, 'runtime role: a batch read in pages');
is_deeply([ map { $_->{event}{_id}{_data} } @{ $more[1] } ], [ map { $_->{event}{_id}{_data} } @{ $more[0] } ],
    '... the same events and tokens on the certificate relay');
push @{ $got[0] }, @{ $more[0] };
$c[0]->ack(1, $got[0][-1]{event}{_id});
$c[0]->ping;
$c[0]->recv_op('pong', 5 * $slow);
my $stored;
for (1 .. 50 * $slow) {
    ($stored) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = ?}, undef, "lp-$rt->{n}");
    last if $stored && $stored ge $got[0][-1]{event}{_id}{_data};
    Time::HiRes::sleep(0.1);
}
ok($stored && $stored ge $got[0][-1]{event}{_id}{_data}, 'runtime role: the acknowledged position is stored in resume_tokens');
$_->close for @c;
# Retention (DELETE on the changelog and ticks) runs as the runtime role. It prunes by
# whole ticks, so later rows go in ticks of their own, until retention_max_rows (5) puts
# the first ten behind the horizon.
my $left = 10;
my $deadline = NvsTest::now() + 60 * $slow;
for (my $i = 0; NvsTest::now() < $deadline; $i++) {
    NvsTest::insert_health_event($dbh, node => "lp-later-$i") if $i < 10;
    ($left) = $dbh->selectrow_array(q{SELECT count(*) FROM datastore_changelog WHERE record_id = ANY (?::uuid[])},
        undef, \@ids);
    last if !$left;
    Time::HiRes::sleep(0.3);
}
is($left, 0, "runtime role: the first ten changelog rows were pruned ($left left)");
$cert->stop;

# Metrics and admin output while things happen: a reconnect, a TCP client with the token.
my $t = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport) or die "tcp: $!";
print $t qq({"op":"hello","v":1,"client":"t99","token":"$token"}\n);
my $hello = <$t>;
like($hello // '', qr/"op":"hello"/, 'TCP client authenticated with the bearer token');
close $t;
my $mark = length $rt->log;
$dbh->do(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'});
my $back;
for (1 .. 100 * $slow) { last if $back = substr($rt->log, $mark) =~ /postgresql connected conn=main/; Time::HiRes::sleep(0.1) }
ok($back, 'reconnected after its sessions were terminated');
Time::HiRes::sleep(1.5);
my $metrics = '';
if (my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport, Timeout => 5)) {
    print $s "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    $metrics = <$s> // '';
}
like($metrics, qr/^HTTP\/1\.[01] 200/, '/metrics answered');
my @admin = map { (NvsTest::run_cmd([ "$build/nvsrelay", $_, '--admin-socket', $rt->admin_socket ]))[1] } qw(status consumers);
my ($rrc, $rout) = NvsTest::run_cmd([ "$build/nvsrelay", 'reset', "lp-$rt->{n}", '--admin-socket', $rt->admin_socket ]);
is($rrc, 0, 'runtime role: nvsrelay reset moves a stored position') or diag($rout);
push @admin, $rout;
my (undef, $check) = do {
    local %ENV = ((map { $_ => $ENV{$_} } grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ } keys %ENV), %{ $pg->env }, %scram,
        NVSRELAYD_AUTH_TOKEN_FILE => $tokfile);
    delete $ENV{$_} for grep { !defined $ENV{$_} } keys %ENV;
    NvsTest::run_cmd([ "$build/nvsrelayd", '-c', '/dev/null', '--check-config' ]);
};
like($check, qr/^datastore_password = \(set\)$/m, '--check-config shows the password as (set)');
my $cmdline = NvsTest::slurp('/proc/' . $rt->pid . '/cmdline');
is($rt->stop, 0, 'runtime role relay stops cleanly');
my $log = join '', map { NvsTest::slurp($_) } glob("$dir/nvsrelayd.*.log");

unlike($rt->log, qr/permission denied|must be owner|insufficient privilege/i, 'runtime role: no permission error in its log')
    or diag(join "\n", grep {/permission|owner|privilege/i} split /\n/, $rt->log);
unlike(NvsTest::slurp($pg->server_log), qr/\Q$ROLE\E\@\S+ (ERROR|FATAL):  permission denied/,
    'and none in the server log');
for my $secret ([ 'the database password', $PASS ], [ 'the bearer token', $token ]) {
    my ($what, $s) = @$secret;
    my $re = qr/\Q$s\E/;
    unlike($log, $re, "$what is in no daemon log");
    unlike($metrics, $re, "$what is not in /metrics");
    unlike(join('', @admin), $re, "$what is not in nvsrelay status/consumers");
    unlike($check, $re, "$what is not in --check-config output");
    unlike($cmdline, $re, "$what is not on the command line");
}

# --- refusals that say what to fix ---------------------------------------------------------
{
    my $bad = NvsTest::Daemon->start($pg, wait_ready => 0, env => { %scram, DATASTORE_PASSWORD => "wrong-$PASS" },
        set => { schema => 'verify', reconnect_min_ms => 50, reconnect_max_ms => 200 });
    ok($bad->wait_log(qr/ err postgresql connect failed conn=\w+ reason='[^\n]*password authentication failed[^\n]*' cause='wrong password or user: retrying will not fix this/, 15),
        'a wrong password: logged at error level, saying retrying will not fix it');
    is($bad->wait_exit(0), undef, '... and retried all the same');
    $bad->stop;
}
$pg->psql("REVOKE USAGE ON SCHEMA nvsrelay FROM $ROLE;", user => 'postgres');
{
    my $nu = NvsTest::Daemon->start($pg, wait_ready => 0, env => \%scram, set => { schema => 'verify' });
    ok($nu->wait_log(qr/permission denied reading nvsrelay\.schema_migrations: the role needs USAGE on schema nvsrelay/, 15),
        'a role without USAGE on schema nvsrelay: told it is a permission problem')
        or diag(NvsTest::tail($nu->logfile, 5));
    unlike($nu->log, qr/schema not installed/, '... not that the schema is not installed');
    $nu->stop;
}
done_testing;

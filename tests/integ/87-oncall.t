#!/usr/bin/perl
# 87-oncall.t - what on-call sees and does beside /metrics (90-ops.t):
#  - `nvsrelay clients` lists every live subscription with its peer,
#    consumer, table, pipeline, position and lag;
#  - nvsrelay_delivery_latency_seconds counts live deliveries;
#  - `drop-consumer` is refused while the consumer is connected, deletes its
#    resume_tokens row once it is not, and refuses a name it does not know;
#  - `reset` refuses a name resume_tokens does not know (a typo) unless
#    --create, and `reset --at TIME` moves a consumer to the end of the last
#    tick at or before TIME;
#  - `watch --help` exits 0; `status` pointed at the subscriber socket says
#    so;
#  - a second daemon started on a running one's admin socket, or on its
#    subscriber socket, refuses to start and leaves the first serving;
#  - JSON logs carry the message's fields as members;
#  - a wrong database or role is logged at error level as needing an
#    operator, and retried;
#  - `nvsrelay import` prints progress lines when stderr is no terminal;
#  - --check-config refuses certificate, key and token files and a mount
#    path that do not exist (not with --no-file-check).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";
my $cli   = "$build/nvsrelay";

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $dbh = $pg->dbh;

my $hport = NvsTest::free_port();

my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport", tick_idle_ms => 300, ack_flush_ms => 50 });
my $admin = $d->admin_socket;

sub ctl {
	my @args = @_;
	my $err = "$dir/ctl.err";
	my ($rc, $out) = NvsTest::run_cmd([ $cli, @args, '--admin-socket', $admin ], $err);
	return ($rc, $out, NvsTest::slurp($err));
}

sub ctl_json {
	my ($rc, $out, $err) = ctl(@_, '--json');
	return ($rc, eval { $NvsTest::JSON->decode($out) } || {}, $err);
}

sub wait_for {
	my ($cond, $timeout) = @_;
	my $deadline = NvsTest::now() + $timeout;
	while (1) {
		my $r = $cond->();
		return $r if $r;
		return 0 if NvsTest::now() >= $deadline;
		Time::HiRes::sleep(0.1);
	}
}

sub metrics {
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport, Timeout => 5) or return '';
	print $s "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
	local $/;
	return <$s> // '';
}

sub stored { scalar $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = ?}, undef, $_[0]) }

# ---- the CLI's paper cuts -----------------------------------------------------------------
my ($rc, $out) = NvsTest::run_cmd([ $cli, 'watch', '--help' ]);
is($rc, 0, 'nvsrelay watch --help exits 0');
like($out, qr/^Usage: nvsrelay watch/m, '... and prints the usage');
my $err;
($rc, $out) = NvsTest::run_cmd([ $cli, 'status', '--admin-socket', $d->socket ], "$dir/wrong.err");
$err = NvsTest::slurp("$dir/wrong.err");
isnt($rc, 0, 'status on the subscriber socket fails');
like($err, qr/\Q${\ $d->socket }\E is a subscriber socket, not the admin socket/, '... saying it is the subscriber socket');

# ---- nvsrelay import's progress off a terminal (a Job's log) --------------------------------
my $fixture = "$root/tests/fixtures/mongoexport/health_events.json";
($rc, $out) = NvsTest::run_cmd([ $cli, 'import', '--table', 'health_events', '--dry-run', '--progress', '0.000001', $fixture ],
	"$dir/import.err");
$err = NvsTest::slurp("$dir/import.err");
is($rc, 0, 'import --dry-run with progress lines');
my @plines = split /\n/, $err;
cmp_ok(scalar(@plines), '>=', 1, 'progress lines on stderr although it is no terminal');
is(scalar(grep { !/^nvsrelay import: \d+ documents, [\d.]+ of [\d.]+ MB \(\d+%\), [\d,]+\/s, \d+ s$/ } @plines), 0,
	'... each a whole line, no terminal control characters') or diag($err);
like($out, qr/^checked health_events: 24 read/, '... and the summary on stdout');
($rc, $out) = NvsTest::run_cmd([ $cli, 'import', '--table', 'health_events', '--dry-run', '--progress', '0', $fixture ],
	"$dir/import.err");
is(NvsTest::slurp("$dir/import.err"), '', '--progress 0: none');

# ---- --check-config looks at the files ----------------------------------------------------
sub check_config {
	local %ENV = (%ENV, %{ $pg->env });
	my ($rc2, $out2) = NvsTest::run_cmd([ "$build/nvsrelayd", '-c', '/dev/null', '--check-config',
		map { ('--set', $_) } @_ ], "$dir/check.err");
	return ($rc2, NvsTest::slurp("$dir/check.err"));
}
($rc, $err) = check_config();
is($rc, 0, '--check-config of the test configuration') or diag($err);
($rc, $err) = check_config("client_cert_mount_path=$dir/no-such-mount");
is($rc, 78, '--check-config refuses a client_cert_mount_path that does not exist');
like($err, qr/client_cert_mount_path: \Q$dir\E\/no-such-mount: No such file/, '... naming it');
($rc, $err) = check_config("client_cert_mount_path=$dir/pids");
like($err, qr/client_cert_mount_path: .* is not a directory/, '... or is no directory');
($rc, $err) = check_config("datastore_sslcert=$dir/nope.crt", "datastore_sslkey=$dir/nope.key");
is($rc, 78, '--check-config refuses a client certificate that does not exist');
like($err, qr/datastore_sslcert: \Q$dir\E\/nope\.crt/, '... naming it');
($rc, $err) = check_config("listen_tcp=127.0.0.1:1", "tls_cert_file=$dir/nope.crt", "tls_key_file=$dir/nope.key",
	"auth_token_file=$dir/nope.tok");
like($err, qr/tls_cert_file: /, '--check-config refuses a server certificate that does not exist');
($rc, $err) = check_config("datastore_sslmode=verify-full", "datastore_sslrootcert=$dir/nope-ca.crt");
like($err, qr/datastore_sslrootcert: /, '--check-config refuses a missing CA bundle with verify-full');
($rc, $err) = check_config("datastore_sslmode=require", "datastore_sslrootcert=$dir/nope-ca.crt");
is($rc, 0, '... but not with require, where libpq does not read it') or diag($err);
{
	local %ENV = (%ENV, %{ $pg->env });
	($rc) = NvsTest::run_cmd([ "$build/nvsrelayd", '-c', '/dev/null', '--check-config', '--no-file-check',
		'--set', "client_cert_mount_path=$dir/no-such-mount" ], "$dir/check.err");
}
is($rc, 0, '--no-file-check leaves the files alone');

# ---- clients ------------------------------------------------------------------------------
my $pipe = [ { '$match' => { operationType => 'insert' } } ];
my $a = NvsTest::Client->connect($d->socket);
$a->hello('oncall-a');
$a->watch(sid => 7, consumer => 'oc-a', pipeline => $pipe);
my $b = NvsTest::Client->connect($d->socket);
$b->hello('oncall-b');
$b->watch(sid => 1, table => 'maintenance_events', fullDocumentBeforeChange => 'whenAvailable');
ok($a->recv_op('bookmark', 10) && $b->recv_op('bookmark', 10), 'two subscriptions live');
my @ids = map { NvsTest::insert_health_event($dbh, node => "oc-$_") } 1 .. 3;
my $got = $a->events(3, 10);
is(scalar(@$got), 3, 'the durable subscription got the three inserts');
$a->ack(7, $got->[-1]{event}{_id}{_data});

my $cl;
wait_for(sub { (undef, $cl) = ctl_json('clients'); @{ $cl->{clients} || [] } == 2 }, 10);
my ($ca) = grep { ($_->{consumer} // '') eq 'oc-a' } @{ $cl->{clients} || [] };
my ($cb) = grep { !defined $_->{consumer} } @{ $cl->{clients} || [] };
ok($ca && $cb, 'clients --json: both subscriptions');
is_deeply([ @{$ca}{qw(sid table state)} ], [ 7, 'health_events', 'live' ], 'the durable one: sid, table, state');
like($ca->{peer} // '', qr/^unix:.*uid=\d+/, '... its peer (uid and pid on the Unix socket)');
like($ca->{client} // '', qr/^c\d+$/, '... its client id');
is($ca->{pipeline}, '[{"$match":{"operationType":"insert"}}]', '... its pipeline');
like($ca->{position} // '', qr/^[0-9a-f]{40}$/, '... its position');
ok(defined $ca->{lag_events} && defined $ca->{lag_seconds}, '... its lag');
is_deeply([ $cb->{table}, $cb->{pipeline}, $cb->{before} ? 1 : 0 ], [ 'maintenance_events', undef, 1 ],
	'the other: table, no pipeline, before images');
($rc, $out) = ctl('clients');
is($rc, 0, 'nvsrelay clients');
like($out, qr/^CLIENT\s+PEER\s+SID\s+CONSUMER\s+TABLE\s+STATE\s+POSITION\s+LAG_EVENTS/, '... a header');
like($out, qr/^c\d+\s+unix:\S+\s+7\s+oc-a\s+health_events\s+live\s+[0-9a-f]{40}\s.*\[\{"\$match"/m,
	'... a row per subscription');

# ---- delivery latency ---------------------------------------------------------------------
my $m = metrics();
my ($lcount) = $m =~ /^nvsrelay_delivery_latency_seconds_count (\S+)$/m;
ok(defined $lcount && $lcount >= 3, "delivery latency histogram counted the live deliveries ($lcount)");
my ($inf) = $m =~ /^nvsrelay_delivery_latency_seconds_bucket\{le="\+Inf"\} (\S+)$/m;
is($inf, $lcount, '... +Inf bucket equals the count');
my ($l60) = $m =~ /^nvsrelay_delivery_latency_seconds_bucket\{le="60"\} (\S+)$/m;
is($l60, $lcount, '... all of them within 60 s');

# ---- drop-consumer ------------------------------------------------------------------------
ok(wait_for(sub { (stored('oc-a') // '') =~ /^[0-9a-f]{40}$/ }, 10), 'oc-a position stored');
($rc, $out, $err) = ctl('drop-consumer', 'oc-a');
is($rc, 1, 'drop-consumer refused while connected');
like($err, qr/connected/, '... saying why');
ok(defined stored('oc-a'), '... and the row is still there');
$a->close;
wait_for(sub { ($rc, $out, $err) = ctl('drop-consumer', 'oc-a'); $rc == 0 || $err !~ /connected/ }, 15);
is($rc, 0, 'drop-consumer once it is gone') or diag($err);
like($out, qr/^consumer oc-a dropped \(its position was [0-9a-f]{40}\)$/m, '... says what it dropped');
ok(!defined stored('oc-a'), '... the resume_tokens row is deleted');
($rc, $out, $err) = ctl('drop-consumer', 'oc-a');
is($rc, 1, 'dropping it again is refused');
like($err, qr/no such consumer/, '... as unknown');
ok($d->wait_log(qr/consumer dropped consumer='oc-a' position=/, 5), 'the drop is logged');

# ---- reset: typos, --create, --at ---------------------------------------------------------
($rc, $out, $err) = ctl('reset', 'oc-typo');
is($rc, 1, 'reset of a name resume_tokens does not know is refused');
like($err, qr/no such consumer.*--create/, '... pointing at --create');
ok(!defined stored('oc-typo'), '... and creates nothing');
($rc, $out, $err) = ctl('reset', 'oc-b', '--create');
is($rc, 0, 'reset --create makes a new consumer') or diag($err);
ok(defined stored('oc-b'), '... with a stored position');

my $w = NvsTest::Client->connect($d->socket);
$w->hello('oncall-w');
$w->watch(sid => 1);
ok($w->recv_op('bookmark', 10), 'a live watcher');
my $e1 = NvsTest::insert_health_event($dbh, node => 'oc-before');
my $g1 = $w->events(1, 10);
is($g1->[0] && $g1->[0]{event}{documentKey}{_id}, $e1, 'first event streamed (its tick exists)');
Time::HiRes::sleep(0.5);
my ($at) = $dbh->selectrow_array(q{SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
Time::HiRes::sleep(0.5);
my $e2 = NvsTest::insert_health_event($dbh, node => 'oc-after');
is(($w->events(1, 10)->[0] // {})->{event}{documentKey}{_id}, $e2, 'second event streamed');
$w->close;
($rc, $out, $err) = ctl('reset', 'oc-b', '--at', $at);
is($rc, 0, "reset --at $at") or diag($err);
my $r = NvsTest::Client->connect($d->socket);
$r->hello('oncall-r');
$r->watch(sid => 1, consumer => 'oc-b');
my $after = $r->events(1, 10);
is($after->[0] && $after->[0]{event}{documentKey}{_id}, $e2, '... the consumer resumes with the first change after TIME');
$r->close;
# (The consumer just left: its last position write may still be on its way.)
wait_for(sub { ($rc, $out, $err) = ctl('reset', 'oc-b', '--at', '2000-01-01T00:00:00Z'); $err !~ /connected/ }, 15);
is($rc, 1, 'reset --at before the retained ticks is refused');
like($err, qr/no retained tick at or before that time/, '... saying so');
($rc, $out, $err) = ctl('reset', 'oc-b', '--at', 'x', '--to', 'head');
is($rc, 64, '--at with --to is a usage error');

# ---- a second daemon on a running one's sockets ---------------------------------------------
my $b1 = NvsTest::Daemon->start($pg, wait_ready => 0, set => { admin_socket => $admin, listen_unix => "$dir/other.sock" });
my $st = $b1->wait_exit(30);
ok(defined $st && $st != 0, "a second daemon on the same admin socket exits ($st)");
like($b1->log, qr/accepts connections on the admin socket .*refusing to start/, '... saying why');
ok(-S $admin, 'the first one\'s admin socket is still there');
($rc, $out) = ctl('status');
is($rc, 0, '... and answers');

my $b2 = NvsTest::Daemon->start($pg, wait_ready => 0, socket => $d->socket, set => { log_format => 'json' });
$st = $b2->wait_exit(30);
ok(defined $st && $st != 0, "a second daemon on the same subscriber socket exits ($st)");
like($b2->log, qr/Address already in use/, '... saying why');
my $c2 = NvsTest::Client->connect($d->socket);
ok($c2 && $c2->hello('oncall-after'), 'the first one still serves its socket');
$c2->close if $c2;

# The second daemon wrote JSON: fields are members, msg is the plain message.
my ($conn) = grep { $_->{msg} && $_->{msg} eq 'postgresql connected' }
	map { eval { $NvsTest::JSON->decode($_) } || () } grep { /^\{/ } split /\n/, $b2->log;
ok($conn, 'json log: a "postgresql connected" object');
ok($conn && defined $conn->{conn} && defined $conn->{host}, '... with conn and host as members');

# ---- PostgreSQL refusals that retrying will not fix -----------------------------------------
for my $case ([ 'an unknown database', { DATASTORE_DATABASE => 'no_such_db' }, qr/the database does not exist/ ],
	      [ 'an unknown role', { DATASTORE_USERNAME => 'no_such_role' }, qr/server refused the credentials|role does not exist|pg_hba/ ]) {
	my ($what, $env, $cause) = @$case;
	my $f = NvsTest::Daemon->start($pg, wait_ready => 0, env => $env,
		set => { reconnect_min_ms => 50, reconnect_max_ms => 200 });
	my $n = 0;
	wait_for(sub { $n = () = $f->log =~ /^\S+ err postgresql connect failed conn=\w+ reason='[^\n]*' cause='[^\n]*retrying will not fix this/mg; $n >= 2 }, 15);
	cmp_ok($n, '>=', 2, "$what: logged at error level as needing an operator, and retried");
	like($f->log, $cause, "$what: the cause named");
	is($f->wait_exit(0), undef, "$what: still running (PostgreSQL may be mid-provisioning)");
	is($f->stop, 0, "$what: stops cleanly");
}

ok(!defined $d->wait_exit(0), 'the first daemon is still running');
is($d->stop, 0, 'and stops cleanly');
done_testing();

#!/usr/bin/perl
# 90-ops.t - the operations side of nvsrelayd:
#  - HTTP: /metrics in Prometheus text format (checked with promtool when it
#    can be had, see tests/tools/promtool.sh), the expected metric names, and
#    counters that move with the stream; /livez; /readyz 200, then 503 while
#    PostgreSQL is stopped, then 200 again; 200 "degraded: why" (and status
#    "degraded") while a capture trigger is disabled; garbage requests get 4xx answers
#    and the daemon stays up;
#  - systemd: READY=1, STATUS=, WATCHDOG=1 (WATCHDOG_USEC set; also while
#    PostgreSQL is away and reconnects go on), RELOADING=1 with
#    MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1, on a NOTIFY_SOCKET
#    datagram socket made here;
#  - SIGHUP: a bad config file is logged and the running one kept, a good one
#    applies a new log level;
#  - the admin socket through `nvsrelay status|consumers|reset|reload`: reset
#    is refused while the consumer is connected, works once it is not, and
#    the consumer then resumes at the new position; another uid is refused.
# No assertion depends on how fast anything happens, only on what happens
# within generous deadlines.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX ();
use Socket qw(SOCK_DGRAM SOCK_STREAM MSG_NOSIGNAL SHUT_WR);
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";
my $cli   = "$build/nvsrelay";

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;

# A free loopback port for HTTP (released just before the daemon binds it).
my $hport = NvsTest::free_port();

# The datagrams are read by a child into a file as they come: a sender blocks once ten
# unread ones are queued (net.unix.max_dgram_qlen), and the watchdog pings twice a second.
my $notify_path = "$dir/notify.sock";
my $notify_log  = "$dir/notify.log";
my $ns = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $notify_path) or die "bind $notify_path: $!";
my $reader = fork;
die "fork: $!" unless defined $reader;
if (!$reader) {
	$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
	open(my $out, '>>', $notify_log) or POSIX::_exit(1);
	$out->autoflush(1);
	my $parent = getppid();
	while (getppid() == $parent) {
		my $rin = '';
		vec($rin, fileno($ns), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, 0.5) > 0;
		next unless defined $ns->recv(my $buf, 65536, 0);
		print $out $buf, "\x1e";
	}
	POSIX::_exit(0);
}
close $ns;
END { kill 'TERM', $reader if $reader; }
my @notes;
sub drain_notes {
	my @all = split /\x1e/, NvsTest::slurp($notify_log);
	push @notes, @all[ scalar(@notes) .. $#all ];
}
# Index (1-based) of the first datagram from $from on matching $re, 0 on timeout.
sub wait_note {
	my ($re, $timeout, $from) = @_;
	my $deadline = NvsTest::now() + $timeout;
	while (1) {
		drain_notes();
		for my $i (($from // 0) .. $#notes) { return $i + 1 if $notes[$i] =~ $re }
		return 0 if NvsTest::now() >= $deadline;
		Time::HiRes::sleep(0.05);
	}
}

my $conf = "$dir/ops.conf";
sub write_conf {
	my ($text) = @_;
	open(my $fh, '>', $conf) or die "$conf: $!";
	print $fh $text;
	close $fh;
}
write_conf("# 90-ops.t\nlog_level = info\n");

my $d = NvsTest::Daemon->start($pg,
	set => { http_listen => "127.0.0.1:$hport", stats_interval_s => 1, tick_idle_ms => 300,
		reconnect_min_ms => 50, reconnect_max_ms => 300, ack_flush_ms => 50, log_level => undef },
	args => [ '--config', $conf ],
	env => { NOTIFY_SOCKET => $notify_path, WATCHDOG_USEC => 1_000_000 });
my $admin = $d->admin_socket;

# One HTTP exchange: sends $raw, reads to EOF. Returns (status, headers, body); status 0
# when nothing came back.
sub http_raw {
	my ($raw, %o) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport, Proto => 'tcp', Timeout => 5)
		or return (0, '', "connect: $!");
	CORE::send($s, $raw, MSG_NOSIGNAL) if length $raw;
	shutdown($s, SHUT_WR) if $o{half_close};
	my $resp = '';
	my $deadline = NvsTest::now() + 10;
	while (NvsTest::now() < $deadline) {
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		last unless select(my $rout = $rin, undef, undef, 1) >= 0;
		my $n = sysread($s, $resp, 65536, length $resp);
		last if defined $n && $n == 0;
		last if !defined $n && !$!{EAGAIN} && !$!{EINTR};
	}
	close $s;
	my ($head, $body) = split /\r\n\r\n/, $resp, 2;
	my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d{3}) };
	return ($status // 0, $head // '', $body // '');
}
sub get { return http_raw("GET $_[0] HTTP/1.0\r\nHost: localhost\r\nUser-Agent: 90-ops.t\r\n\r\n") }

# Samples of /metrics as { 'name{labels}' => value }.
sub scrape {
	my ($st, $head, $body) = get('/metrics');
	my %m;
	for (split /\n/, $body) {
		next if /^#/ || !/\S/;
		$m{$1} = $2 + 0 if /^(\S+) (\S+)$/;
	}
	return ($st, $head, $body, \%m);
}

# Runs the CLI against the admin socket: (exit code, stdout, stderr).
sub ctl {
	my @args = @_;
	my $err = "$dir/ctl.err";
	my ($rc, $out) = NvsTest::run_cmd([ $cli, @args, '--admin-socket', $admin ], $err);
	return ($rc, $out, NvsTest::slurp($err));
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

# ---- systemd: ready, status, watchdog ------------------------------------------------
ok(wait_note(qr/(?:^|\n)READY=1(?:\n|$)/, 30), 'READY=1');
ok(wait_note(qr/(?:^|\n)STATUS=\S/, 5), 'STATUS= line');
ok(wait_note(qr/(?:^|\n)WATCHDOG=1(?:\n|$)/, 10), 'WATCHDOG=1 pings with WATCHDOG_USEC set');

# ---- HTTP basics ------------------------------------------------------------------------
my ($st, $head, $body) = get('/livez');
is($st, 200, '/livez 200');
is($body, "ok\n", '/livez body');
ok(wait_for(sub { (get('/readyz'))[0] == 200 }, 20), '/readyz 200 once streaming');
($st, $head) = http_raw("HEAD /livez HTTP/1.1\r\n\r\n");
is($st, 200, 'HEAD /livez 200');
like($head, qr/^Content-Length: 3\r?$/mi, 'HEAD keeps the Content-Length');

# ---- a stream to move the counters ----------------------------------------------------
my $dbh = $pg->dbh();
my $c = NvsTest::Client->connect($d->socket);
$c->hello('90-ops');
$c->watch(consumer => 'ops-consumer');
ok($c->recv_op('bookmark', 15), 'consumer subscribed');

my (undef, undef, undef, $m0) = scrape();
my @ids = map { NvsTest::insert_health_event($dbh, node => "ops-$_") } 1 .. 3;
my $evs = $c->events(3, 15);
is(scalar(@$evs), 3, 'three events received');
$c->ack(1, $_->{event}{_id}) for @$evs;
my ($mst, $mhead, $mtext, $m1);
wait_for(sub {
	($mst, $mhead, $mtext, $m1) = scrape();
	($m1->{nvsrelay_events_delivered_total} // 0) >= ($m0->{nvsrelay_events_delivered_total} // 0) + 3
	    && exists $m1->{'nvsrelay_consumer_lag_events{consumer="ops-consumer"}'}
	    && exists $m1->{'nvsrelay_pg_table_growth_bytes_per_second{table="datastore_changelog"}'}
	    && exists $m1->{nvsrelay_pg_index_hit_ratio}
}, 20);
is($mst, 200, '/metrics 200');
like($mhead, qr{^Content-Type: text/plain; version=0\.0\.4}mi, '/metrics content type');
cmp_ok($m1->{nvsrelay_events_delivered_total} // 0, '>=', ($m0->{nvsrelay_events_delivered_total} // 0) + 3,
	'events delivered moved by the three events');
cmp_ok($m1->{nvsrelay_events_read_total} // 0, '>', $m0->{nvsrelay_events_read_total} // 0, 'events read moved');
cmp_ok($m1->{nvsrelay_ticks_read_total} // 0, '>', 0, 'ticks read');
is($m1->{nvsrelay_ready}, 1, 'nvsrelay_ready 1');
is($m1->{nvsrelay_subscribers}, 1, 'one subscriber');
is($m1->{'nvsrelay_pg_connection_up{conn="main"}'}, 1, 'main connection up');
cmp_ok($m1->{'nvsrelay_pg_table_rows{table="datastore_changelog"}'} // -1, '>=', 0, 'changelog rows sampled');
cmp_ok($m1->{'nvsrelay_pg_query_duration_seconds_count{kind="batch"}'} // 0, '>', 0, 'batch query latency histogram');
for my $name (qw(nvsrelay_build_info nvsrelay_ticks_written_total nvsrelay_batch_rows_bucket
	nvsrelay_client_disconnects_total nvsrelay_consumer_lag_seconds nvsrelay_consumer_token_age_seconds
	nvsrelay_consumer_buffered_bytes nvsrelay_pg_reconnects_total nvsrelay_pg_pool_connections
	nvsrelay_pg_pool_connections_up nvsrelay_pg_pool_connections_busy nvsrelay_pg_query_duration_seconds_bucket
	nvsrelay_pg_table_growth_bytes_per_second nvsrelay_pg_oldest_xact_age_seconds
	nvsrelay_pg_notification_queue_usage_ratio nvsrelay_pg_xact_commit_total nvsrelay_pg_index_hit_ratio
	nvsrelay_pg_replicas nvsrelay_head_tick nvsrelay_ticker_leader nvsrelay_capture_active)) {
	like($mtext, qr/^\Q$name\E[{ ]/m, "metric $name");
}
unlike($mtext, qr/^nvsrelay_pg_replication_lag_seconds /m, 'no replication lag without replicas');

# A table whose capture trigger is gone produces no events at all: said loudly, not
# mistaken for a quiet stream.
is($m1->{'nvsrelay_capture_active{table="health_events"}'}, 1, 'capture active on health_events');
is($m1->{'nvsrelay_capture_active{table="maintenance_events"}'}, 1, 'capture active on maintenance_events');
$dbh->do('ALTER TABLE maintenance_events DISABLE TRIGGER maintenance_events_changes');
ok($d->wait_log(qr/capture is off for table maintenance_events: /, 15), 'a disabled capture trigger is logged');
my $moff;
wait_for(sub { (undef, undef, undef, $moff) = scrape();
	defined $moff->{'nvsrelay_capture_active{table="maintenance_events"}'}
	    && $moff->{'nvsrelay_capture_active{table="maintenance_events"}'} == 0 }, 15);
is($moff->{'nvsrelay_capture_active{table="maintenance_events"}'}, 0, 'nvsrelay_capture_active 0 for it');
is($moff->{'nvsrelay_capture_active{table="health_events"}'}, 1, 'the other table still 1');
# Degraded, not unready: restarting the relay cannot bring a trigger back, so /readyz
# stays 200 (see ops.c) and says why; status says it too.
my ($dst, undef, $dbody) = get('/readyz');
is($dst, 200, '/readyz 200 while degraded');
like($dbody, qr/^degraded: capture is off for maintenance_events \(/, '/readyz says degraded and why');
my ($drc, $dout) = ctl('status');
like($dout, qr/^state\s+degraded: capture is off for maintenance_events /m, 'status: degraded with the reason');
($drc, $dout) = ctl('status', '--json');
my $dj = eval { $NvsTest::JSON->decode($dout) } || {};
is_deeply([ $dj->{state}, $dj->{ready} ? 1 : 0 ], [ 'degraded', 1 ], 'status --json: state degraded, ready true');
$dbh->do('ALTER TABLE maintenance_events ENABLE TRIGGER maintenance_events_changes');
ok($d->wait_log(qr/capture is on again for table maintenance_events/, 15), 'and its return');
is((get('/readyz'))[2], "ready\n", '/readyz plain ready once capture is back');
is(() = $d->log =~ /capture is off for table/g, 1, 'logged once, not on every sample');

SKIP: {
	my ($prc, $ptool) = NvsTest::run_cmd([ 'sh', "$root/tests/tools/promtool.sh" ], "$dir/promtool.err");
	chomp $ptool;
	skip 'promtool not available: ' . NvsTest::slurp("$dir/promtool.err"), 1 if $prc || !-x $ptool;
	open(my $fh, '>', "$dir/metrics.prom") or die $!;
	print $fh $mtext;
	close $fh;
	my ($rc, $out) = NvsTest::run_cmd([ 'sh', '-c', '"$0" check metrics < "$1"', $ptool, "$dir/metrics.prom" ]);
	is($rc, 0, 'promtool check metrics: clean') or diag($out);
}

# ---- durable consumers that are not connected ---------------------------------------
# A component that crash-loops has no subscription: its series stay, from its
# stored position, with connected 0, so an alert on it fires.
{
	my $g = NvsTest::Client->connect($d->socket);
	$g->hello('90-ops-gone');
	$g->watch(consumer => 'ops-gone');
	ok($g->recv_op('bookmark', 15), 'second durable consumer subscribed');
	my $gid = NvsTest::insert_health_event($dbh, node => 'ops-gone-1');
	my $gev = $g->events(1, 15);
	$g->ack(1, $gev->[0]{event}{_id}) if @$gev;
	my $mg;
	wait_for(sub { (undef, undef, undef, $mg) = scrape();
		($mg->{'nvsrelay_consumer_connected{consumer="ops-gone"}'} // 0) == 1 }, 15);
	is($mg->{'nvsrelay_consumer_connected{consumer="ops-gone"}'}, 1, 'connected 1 while subscribed');
	$g->close;
	NvsTest::insert_health_event($dbh, node => "ops-gone-$_") for 2 .. 3;
	wait_for(sub { (undef, undef, undef, $mg) = scrape();
		defined $mg->{'nvsrelay_consumer_connected{consumer="ops-gone"}'}
		    && $mg->{'nvsrelay_consumer_connected{consumer="ops-gone"}'} == 0
		    && ($mg->{'nvsrelay_consumer_lag_events{consumer="ops-gone"}'} // 0) >= 2 }, 20);
	is($mg->{'nvsrelay_consumer_connected{consumer="ops-gone"}'}, 0, 'gone: connected 0, the series stays');
	cmp_ok($mg->{'nvsrelay_consumer_lag_events{consumer="ops-gone"}'} // 0, '>=', 2,
		'gone: lag in events from its stored position');
	cmp_ok($mg->{'nvsrelay_consumer_lag_seconds{consumer="ops-gone"}'} // 0, '>', 0, 'gone: lag in seconds');
	ok(defined $mg->{'nvsrelay_consumer_last_seen_seconds{consumer="ops-gone"}'}, 'gone: last seen');
	is($mg->{'nvsrelay_consumer_connected{consumer="ops-consumer"}'}, 1, 'the connected one still 1');
	is(scalar(grep { /^nvsrelay_retention_holding_consumer\{/ } keys %$mg), 1, 'one consumer holds retention back');
	ok(defined $mg->{nvsrelay_retention_oldest_change_age_seconds}, 'age of the oldest retained change');
	ok(defined $mg->{nvsrelay_retention_pruned_rows_total}, 'rows pruned counter');
}

# ---- garbage over HTTP ---------------------------------------------------------------
is((http_raw("\x00\x01\x02garbage\r\n\r\n"))[0], 400, 'binary garbage: 400');
is((http_raw("GET /metrics\r\n\r\n"))[0], 400, 'no HTTP version: 400');
is((http_raw("get /livez HTTP/1.0\r\n\r\n"))[0], 400, 'lower-case method: 400');
is((http_raw("GET /livez HTTP/2.0\r\n\r\n"))[0], 400, 'HTTP/2.0 request line: 400');
is((http_raw("POST /metrics HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"))[0], 405, 'POST: 405');
is((http_raw("GET /nowhere HTTP/1.0\r\n\r\n"))[0], 404, 'unknown path: 404');
is((http_raw('A' x 9000))[0], 431, 'endless request head: 431');
is((http_raw("GET /livez HTTP/1.0\r\n", half_close => 1))[0], 200, 'head cut short by EOF still answered');
is((http_raw("\r\n\r\n"))[0], 400, 'empty request line: 400');
http_raw('') for 1 .. 3;    # connect and hang up
is((get('/livez'))[0], 200, '/livez after the garbage');
ok(!defined $d->wait_exit(0), 'daemon still running');

# ---- admin socket through the CLI --------------------------------------------------------
my ($rc, $out, $err) = ctl('status');
is($rc, 0, 'nvsrelay status') or diag($err);
like($out, qr/^ready\s+yes$/m, 'status: ready');
like($out, qr/^ticker leader\s+yes$/m, 'status: ticker leader');
like($out, qr/^head\s+[0-9a-f]{40}$/m, 'status: head token');
($rc, $out) = ctl('status', '--json');
my $sj = eval { $NvsTest::JSON->decode($out) } || {};
is($sj->{subscribers}, 1, 'status --json: one subscriber');
my (undef, $vline) = NvsTest::run_cmd([ "$build/nvsrelayd", '--version' ]);
is('nvsrelayd ' . ($sj->{version} // '?') . "\n", $vline, 'status: version');

($rc, $out) = ctl('consumers', '--json');
my $cj = eval { $NvsTest::JSON->decode($out) } || {};
my ($me) = grep { $_->{name} eq 'ops-consumer' } @{ $cj->{consumers} || [] };
ok($me && $me->{connected}, 'consumers: ops-consumer connected');
($rc, $out) = ctl('consumers');
like($out, qr/^ops-consumer\s+yes\s/m, 'consumers table lists it as connected');

($rc, $out, $err) = ctl('reset', 'ops-consumer', '--to', 'head');
is($rc, 1, 'reset refused while the consumer is connected');
like($err, qr/connected/, 'reset: says why');

$c->close;
my $first = $evs->[0]{event}{_id}{_data};
# Its last position write may still be on its way: retry while it says "connected".
wait_for(sub { ($rc, $out, $err) = ctl('reset', 'ops-consumer', '--to', $first); $rc == 0 || $err !~ /connected/ }, 15);
is($rc, 0, 'reset to the first event once disconnected') or diag($err);
like($out, qr/now resumes after \Q$first\E/, 'reset output names the token');

$c = NvsTest::Client->connect($d->socket);
$c->hello('90-ops');
$c->watch(consumer => 'ops-consumer');
my $again = $c->events(2, 15);
is_deeply([ map { $_->{event}{documentKey}{_id} } @$again ], [ @ids[1, 2] ], 'consumer resumes after the reset position');
$c->close;

wait_for(sub { ($rc, $out, $err) = ctl('reset', 'ops-consumer'); $rc == 0 || $err !~ /connected/ }, 15);
is($rc, 0, 'reset to the head (default)') or diag($err);
my $late = NvsTest::insert_health_event($dbh, node => 'ops-late');
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'ops-consumer');
my $one = $c->events(1, 15);
is($one->[0] && $one->[0]{event}{documentKey}{_id}, $late, 'after reset to head: only what came later');
$c->close;

($rc, $out, $err) = ctl('reset', 'ops-consumer', '--to', 'f' x 40);
is($rc, 1, 'reset to a token of another generation refused');
($rc, $out, $err) = ctl('reset', 'ops-consumer', '--to', 'nonsense');
is($rc, 1, 'reset to a malformed token refused');

SKIP: {
	skip 'not root: cannot try another uid', 2 if $> != 0;
	my $uid = getpwnam('nobody');
	skip 'no user nobody', 2 unless defined $uid;
	# Open the file mode, so that only the daemon's SO_PEERCRED check decides.
	chmod 0666, $admin;
	pipe(my $r, my $w) or die "pipe: $!";
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if (!$pid) {
		close $r;
		POSIX::setgid(getgrnam('nogroup') // $uid);
		POSIX::setuid($uid);
		$SIG{PIPE} = 'IGNORE';    # the daemon may have hung up already
		my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $admin);
		my $line = '';
		if ($s) {
			CORE::send($s, qq({"cmd":"status"}\n), MSG_NOSIGNAL);
			$line = <$s> // '';
		}
		print $w ($s ? 'connected ' : 'noconnect ') . $line;
		close $w;
		POSIX::_exit(0);
	}
	close $w;
	my $got = do { local $/; <$r> };
	waitpid($pid, 0);
	like($got, qr/permission denied/, 'admin socket refuses another uid') or diag($got);
	unlike($got, qr/"generation"/, 'no status for another uid');
	chmod 0600, $admin;
}

# ---- SIGHUP reload -------------------------------------------------------------------
my $n = scalar(@notes);
drain_notes();
$n = scalar(@notes);
write_conf("log_level = loud\n");
$d->kill('HUP');
ok($d->wait_log(qr/reload failed, the running configuration is kept: .*log_level/, 10), 'bad config: logged, kept');
ok(!defined $d->wait_exit(0), 'bad config: still running');
is((get('/livez'))[0], 200, 'bad config: still serving');
my $at = wait_note(qr/(?:^|\n)RELOADING=1\nMONOTONIC_USEC=\d+(?:\n|$)/, 10, $n);
ok($at, 'RELOADING=1 with MONOTONIC_USEC');
ok(wait_note(qr/(?:^|\n)READY=1(?:\n|$)/, 10, $at || $n), 'READY=1 after the reload');
unlike($d->log, qr/ debug /, 'log level info so far: no debug lines');

write_conf("log_level = debug\n");
$d->kill('HUP');
ok($d->wait_log(qr/configuration reloaded applied=log_level /, 10), 'good config: log_level applied');
ok($d->wait_log(qr/ debug /, 10), 'debug lines appear after the reload');

write_conf("log_level = debug\nring_events = 100\n");
($rc, $out) = ctl('reload');
is($rc, 0, 'nvsrelay reload');
like($out, qr/^restart needed\s+ring_events$/m, 'reload names the keys that need a restart');

# client_output_soft_seconds reloaded to 0 turns the stall check off, also for
# a client whose check was already running: far more pongs than its socket
# holds stay queued while it does not read.
my $stuck = NvsTest::Client->connect($d->socket);
$stuck->send_raw(qq({"op":"ping"}\n) x 60000, 5);
Time::HiRes::sleep(1.5);
write_conf("log_level = debug\nring_events = 100\nclient_output_soft_seconds = 0\n");
$d->kill('HUP');
ok($d->wait_log(qr/configuration reloaded applied=.*client_output_soft_seconds/, 10), 'soft seconds reloaded to 0');
ok(!$d->wait_log(qr/slow consumer dropped/, 3), '... and a client with output queued is not dropped for it');
$stuck->close;

# ---- PostgreSQL away: /readyz 503, watchdog still pinged while reconnecting ----------
$pg->stop_server;
ok(wait_for(sub { (get('/readyz'))[0] == 503 }, 20), '/readyz 503 while PostgreSQL is stopped');
like((get('/readyz'))[2], qr/not ready/, '/readyz says why');
is((get('/livez'))[0], 200, '/livez 200 while PostgreSQL is stopped');
drain_notes();
$n = scalar(@notes);
ok(wait_note(qr/(?:^|\n)WATCHDOG=1(?:\n|$)/, 10, $n), 'watchdog pinged while reconnect attempts go on');
my (undef, undef, undef, $md) = scrape();
is($md->{'nvsrelay_pg_connection_up{conn="main"}'}, 0, 'metrics: main connection down');
$pg->start_server;
ok(wait_for(sub { (get('/readyz'))[0] == 200 }, 30), '/readyz 200 again after PostgreSQL is back');
my (undef, undef, undef, $mu) = scrape();
cmp_ok($mu->{'nvsrelay_pg_reconnects_total{conn="main"}'} // 0, '>', 0, 'metrics: reconnects counted');

# ---- admin: pipelined commands while the answers back up -------------------------------
# Four answers of 10,000 consumers fill the output past its cap; then 5,000
# more commands (80 kB, past the input cap) while nothing is read. Every
# command is answered once the reader reads.
{
	my $pdbh = $pg->dbh();
	$pdbh->do(q{INSERT INTO resume_tokens (client_name, resume_token, last_updated)
		SELECT 'pipe-' || g, jsonb_build_object('token', 'x'), now() FROM generate_series(1, 10000) g});
	my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $admin) or die "admin: $!";
	my $cmds = qq({"cmd":"consumers"}\n) x 4 . qq({"cmd":"status"}\n) x 5000;
	$s->blocking(0);
	my ($off, $until) = (0, NvsTest::now() + 2);   # two seconds without reading
	while ($off < length($cmds) && NvsTest::now() < $until) {
		my $w = CORE::send($s, substr($cmds, $off), MSG_NOSIGNAL);
		if ($w) { $off += $w } else { select(undef, undef, undef, 0.02) }
	}
	select(undef, undef, undef, 0.5);
	my ($buf, $lines, $too_long) = ('', 0, 0);
	$until = NvsTest::now() + 60;
	while (NvsTest::now() < $until && $lines < 5004) {
		if ($off < length($cmds)) {
			my $w = CORE::send($s, substr($cmds, $off), MSG_NOSIGNAL);
			$off += $w if $w;
		}
		my $r = sysread($s, my $chunk, 1 << 20);
		if (!defined $r) { select(undef, undef, undef, 0.01); next }
		last if $r == 0;
		$buf .= $chunk;
		while ((my $i = index($buf, "\n")) >= 0) {
			my $line = substr($buf, 0, $i + 1, '');
			$lines++;
			$too_long++ if $line =~ /too long/;
		}
	}
	is($lines, 5004, 'pipelined admin commands past both caps: each answered (' . $lines . ' of 5004)');
	is($too_long, 0, '... none thrown away as a line too long');
	close $s;
	$pdbh->do(q{DELETE FROM resume_tokens WHERE client_name LIKE 'pipe-%'});
	$pdbh->disconnect;
}

# ---- stop ---------------------------------------------------------------------------
drain_notes();
$n = scalar(@notes);
is($d->stop(20), 0, 'exit status 0 after SIGTERM');
ok(wait_note(qr/(?:^|\n)STOPPING=1(?:\n|$)/, 5, $n), 'STOPPING=1');
ok(!-e $admin, 'admin socket removed at exit');

done_testing();

#!/usr/bin/perl
# 91-systemd.t - the systemd units in packaging/systemd/ and nvsrelayd's side
# of the systemd contract, without systemd as PID 1:
#  - `systemd-analyze verify` accepts the units (with ExecStart pointed at the
#    built binary); it exits 0 on unknown keys and bad values, so any output
#    on stderr fails the test;
#  - `systemd-analyze security --offline` exposure score (reported only);
#  - systemd-sysusers creates the service user from nvsrelayd.sysusers;
#  - socket activation through systemd-socket-activate with fds named
#    "unix" and "tcp": a client that connects before nvsrelayd runs is
#    served and receives events, and the TCP socket is served too;
#  - READY=1 (with STATUS=), WATCHDOG=1, RELOADING=1 on SIGHUP and
#    STOPPING=1 arrive on a NOTIFY_SOCKET datagram socket.
# Parts whose daemon feature is not in the binary are skipped with the reason.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX ();
use Socket qw(SOCK_DGRAM);
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";
my $bin   = "$build/nvsrelayd";
my $units = "$root/packaging/systemd";
plan skip_all => "no executable $bin (build it with make)" unless -x $bin;

sub which {
	my ($prog) = @_;
	for (split /:/, $ENV{PATH} || '/usr/bin:/bin') { return "$_/$prog" if -x "$_/$prog" }
	return undef;
}

# The binary links or contains $s: a feature the daemon may not have yet.
my $image = NvsTest::slurp($bin);
sub has_feature { index($image, $_[0]) >= 0 }

my $tmp = File::Temp::tempdir('nvs91.XXXXXX', DIR => '/tmp', CLEANUP => 1);

# Copies of the units with the binary substituted; the packaged unit names
# /usr/sbin/nvsrelayd, which need not exist here.
sub unit_copies {
	my ($dir, $extra) = @_;
	mkdir $dir;
	my @out;
	for my $f ((sort glob("$units/*.service")), (sort glob("$units/*.socket"))) {
		(my $name = $f) =~ s{.*/}{};
		my $text = NvsTest::slurp($f);
		$text =~ s{/usr/sbin/nvsrelayd\b}{$bin}g;
		$text .= $extra if $extra && $name eq 'nvsrelayd.service';
		open(my $fh, '>', "$dir/$name") or die "$dir/$name: $!";
		print $fh $text;
		close $fh;
		push @out, "$dir/$name";
	}
	return @out;
}

SKIP: {
	my $sa = which('systemd-analyze');
	skip 'systemd-analyze not installed (package systemd)', 6 unless $sa;

	my @files = unit_copies("$tmp/units");
	is_deeply([ map { s{.*/}{}r } @files ], [qw(nvsrelayd.service nvsrelayd-tcp.socket nvsrelayd.socket)],
		'packaging/systemd: the service and its two sockets');
	my ($rc, $out) = NvsTest::run_cmd([ $sa, 'verify', '--man=no', @files ], "$tmp/verify.err");
	my $err = NvsTest::slurp("$tmp/verify.err");
	is($rc, 0, 'systemd-analyze verify exits 0');
	is($err, '', 'systemd-analyze verify: nothing on stderr') or diag($err);

	# The check above would see a mistake: verify only warns about a typo.
	my @bad = unit_copies("$tmp/bad", "NoNewPrivilegs=yes\n");
	($rc) = NvsTest::run_cmd([ $sa, 'verify', '--man=no', @bad ], "$tmp/bad.err");
	like(NvsTest::slurp("$tmp/bad.err"), qr/NoNewPrivilegs/, 'a misspelt key shows on stderr (exit status was ' . $rc . ')');

	($rc, $out) = NvsTest::run_cmd([ $sa, 'security', '--offline=yes', '--no-pager', "$tmp/units/nvsrelayd.service" ],
		"$tmp/security.err");
	my ($score) = $out =~ /Overall exposure level for \S+: ([\d.]+ \S+)/;
	ok(defined $score, 'systemd-analyze security --offline rates the service')
		or diag($out . NvsTest::slurp("$tmp/security.err"));
	note('exposure level: ' . ($score // 'n/a'));
	my @open = grep {/^\s*\S*✗/} split /\n/, $out;    # UTF-8 bytes, like the output
	note("not restricted: $_") for map { s/\s{2,}.*//r } @open;

	my $unit = NvsTest::slurp("$units/nvsrelayd.service");
	my %want = ('Type' => 'notify', 'ExecReload' => '/bin/kill -HUP $MAINPID', 'WatchdogSec' => undef,
		'RestartPreventExitStatus' => undef, 'ProtectSystem' => 'strict', 'NoNewPrivileges' => 'yes',
		'PrivateTmp' => 'yes', 'CapabilityBoundingSet' => '', 'RuntimeDirectory' => 'nvsrelayd',
		'User' => 'nvsrelayd');
	my @miss = grep { my $v = $want{$_}; $unit !~ (defined $v ? qr/^\Q$_\E=\Q$v\E$/m : qr/^\Q$_\E=\S/m) }
		sort keys %want;
	is_deeply(\@miss, [], 'nvsrelayd.service: notify, reload, watchdog, no restart on 78, hardening');
	like($unit, qr/^RestartPreventExitStatus=.*\b78\b/m, 'exit status 78 is not restarted');
}

SKIP: {
	my $su = which('systemd-sysusers');
	skip 'systemd-sysusers not installed', 2 unless $su;
	my $r = "$tmp/sysroot";
	system('mkdir', '-p', "$r/usr/lib/sysusers.d", "$r/etc");
	system('cp', "$units/nvsrelayd.sysusers", "$r/usr/lib/sysusers.d/nvsrelayd.conf");
	my ($rc, $out) = NvsTest::run_cmd([ $su, "--root=$r" ]);
	is($rc, 0, 'systemd-sysusers --root accepts nvsrelayd.sysusers') or diag($out);
	my ($pw) = grep {/^nvsrelayd:/} split /\n/, NvsTest::slurp("$r/etc/passwd");
	like($pw // '', qr{^nvsrelayd:x:(\d+):\1:[^:]*:/nonexistent:/usr/sbin/nologin$},
		'system user nvsrelayd, own group, no home, no shell');
}

# ---- the daemon under a NOTIFY_SOCKET, socket-activated when it can be ----------
my $sa_bin = which('systemd-socket-activate');
my $activation = has_feature('sd_listen_fds_with_names');
my $why_not = !$sa_bin ? 'systemd-socket-activate not installed'
	: !$activation ? 'nvsrelayd does not adopt named sockets yet (no sd_listen_fds_with_names in the binary)'
	: '';

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $notify_path = "$dir/notify.sock";
my $ns = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $notify_path) or die "bind $notify_path: $!";
$ns->blocking(0);

my @notes;    # every datagram received, in order
sub wait_note {
	my ($re, $timeout, $from) = @_;
	my $deadline = NvsTest::now() + $timeout;
	while (1) {
		for my $i (($from // 0) .. $#notes) { return $i + 1 if $notes[$i] =~ $re }
		my $left = $deadline - NvsTest::now();
		return 0 if $left <= 0;
		my $rin = '';
		vec($rin, fileno($ns), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, $left > 0.2 ? 0.2 : $left) > 0;
		while (defined $ns->recv(my $buf, 65536, 0)) {
			last unless length $buf;
			push @notes, $buf;
		}
	}
}

my $sock = "$dir/activated.sock";
my %set  = (log_format => 'text', log_level => 'debug', tick_idle_ms => 200);
# The TCP socket, plaintext as nvsrelayd allows on loopback: a free port.
my $tcp_port;
if (has_feature('tcp_plaintext')) {
		$tcp_port = NvsTest::free_port();
}
my $wd_usec = 2_000_000;
my ($pid, $d);
if (!$why_not) {
	# systemd-socket-activate binds the socket, waits for the first
	# connection and then execs nvsrelayd in its own place, with an
	# environment of LISTEN_* and only what -E passes.
	my %env = (%{ $pg->env }, NOTIFY_SOCKET => $notify_path, WATCHDOG_USEC => $wd_usec);
	$env{$_} = $ENV{$_} for grep {/^(ASAN|UBSAN|LSAN)_OPTIONS$/} keys %ENV;
	# Without the passed socket nvsrelayd would bind this other path; the
	# client below only gets an answer if the passed one is used.
	my %sa_set = (%set, listen_unix => "$dir/configured.sock", http_listen => '',
		admin_socket => "$dir/admin.activated.sock", $tcp_port ? (tcp_plaintext => 'on') : ());
	my @args = ('--config', '/dev/null', map { ('--set', "$_=$sa_set{$_}") } sort keys %sa_set);
	my @listen = $tcp_port ? ('-l', $sock, '-l', "127.0.0.1:$tcp_port", '--fdname=unix:tcp') : ('-l', $sock, '--fdname=unix');
	my @cmd = ($sa_bin, @listen, (map { ('-E', "$_=$env{$_}") } sort keys %env), $bin, @args);
	my $log = "$dir/nvsrelayd.activated.log";
	$pid = fork;
	die "fork: $!" unless defined $pid;
	if (!$pid) {
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
		%ENV = (PATH => $ENV{PATH}, %env);    # for the harness's guard, which looks for the cluster's CA
		exec { $cmd[0] } @cmd or print STDERR "exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	if (open(my $pf, '>>', "$dir/pids")) { print $pf "$pid\n"; close $pf }
	my $t0 = NvsTest::now();
	Time::HiRes::sleep(0.05) until -S $sock || NvsTest::now() - $t0 > 10;
	ok(-S $sock, 'systemd-socket-activate listens on the socket');
	is(scalar(@notes) + wait_note(qr/READY=1/, 0.5), 0, 'nothing runs before the first connection');
} else {
	diag("socket activation skipped: $why_not");
	$d = NvsTest::Daemon->start($pg, socket => $sock, set => \%set,
		env => { NOTIFY_SOCKET => $notify_path, WATCHDOG_USEC => $wd_usec });
	$pid = $d->pid;
}

END { kill 'KILL', $pid if $pid && !$d && $pid > 0 && kill 0, $pid }

SKIP: {
	# A client connecting now triggers the exec (socket activation) and
	# waits in the backlog until nvsrelayd is ready.
	my $c = NvsTest::Client->connect($sock, timeout => 30);
	my $h = $c->hello('91-systemd');
	is($h && $h->{op}, 'hello', $why_not ? 'client served' : 'the first client, connected before nvsrelayd ran, is served')
		or skip 'no hello', 9;
	ok(wait_note(qr/(?:^|\n)READY=1(?:\n|$)/, 30), 'READY=1 on NOTIFY_SOCKET');
	my ($ready) = grep {/READY=1/} @notes;
	like(join("\n", @notes), qr/(?:^|\n)STATUS=\S/, 'STATUS= reported');
	ok(!-e "$dir/configured.sock", 'the passed socket is used instead of binding listen_unix')
		unless $why_not;

	$c->watch(sid => 1, table => 'HealthEvents');
	ok($c->recv_op('bookmark', 15), 'watch confirmed');
	my $id = NvsTest::insert_health_event($pg->dbh, node => 'gpu-node-91');
	my $ev = $c->events(1, 15, sid => 1);
	is($ev->[0] && $ev->[0]{event}{documentKey}{_id}, $id, 'an event arrives');
	my $c2 = NvsTest::Client->connect($sock);
	is(($c2->hello('91-second') || {})->{op}, 'hello', 'later connections are accepted too');
	$c2->close;
	SKIP: {
		skip($why_not || 'nvsrelayd has no TCP listener yet (no tcp_plaintext in the binary)', 1)
			if $why_not || !$tcp_port;
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tcp_port, Timeout => 10)
			or die "connect 127.0.0.1:$tcp_port: $!";
		print $s $NvsTest::JSON->encode({ op => 'hello', v => 1, client => '91-tcp' }), "\n";
		$s->flush;
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		my $line = select(my $rout = $rin, undef, undef, 10) > 0 ? <$s> : undef;
		my $f = eval { $NvsTest::JSON->decode($line // '') } || {};
		is($f->{op}, 'hello', 'the socket named "tcp" is served') or diag($line // 'no answer');
		close $s;
	}

	SKIP: {
		skip 'nvsrelayd does not ping the watchdog yet (no sd_watchdog_enabled in the binary)', 1
			unless has_feature('sd_watchdog_enabled');
		ok(wait_note(qr/(?:^|\n)WATCHDOG=1(?:\n|$)/, 15), 'WATCHDOG=1 with WATCHDOG_USEC set');
	}
	SKIP: {
		skip 'nvsrelayd does not announce reloads yet (no RELOADING=1 in the binary)', 2
			unless has_feature('RELOADING=1');
		my $n = scalar @notes;
		kill 'HUP', $pid;
		my $at = wait_note(qr/(?:^|\n)RELOADING=1(?:\n|$)/, 15, $n);
		ok($at, 'SIGHUP: RELOADING=1');
		ok(wait_note(qr/(?:^|\n)READY=1(?:\n|$)/, 15, $at || $n), 'SIGHUP: READY=1 after the reload');
	}

	kill 'TERM', $pid;
	ok(wait_note(qr/(?:^|\n)STOPPING=1(?:\n|$)/, 15), 'SIGTERM: STOPPING=1');
	my $st;
	if ($d) {
		$st = $d->wait_exit(20);
	} else {
		my $deadline = NvsTest::now() + 20;
		while (NvsTest::now() < $deadline) {
			if (waitpid($pid, POSIX::WNOHANG()) == $pid) { $st = NvsTest::wait_code($?); last }
			Time::HiRes::sleep(0.05);
		}
	}
	is($st, 0, 'exit status 0 after SIGTERM');
	$pid = 0 if defined $st;
}

done_testing();

#!/usr/bin/perl
# 18-daemon-limits.t - a daemon that stays alive and reachable when connections pile up:
#  - HTTP: 40 (and 200) idle connections do not make /livez fail; the oldest idle
#    connection makes room for the probe;
#  - out of file descriptors (a low RLIMIT_NOFILE): a warning at start with the numbers;
#    the accept loops pause instead of spinning (CPU time and log lines measured), the
#    reserve descriptor lets a waiting connection be refused with an error frame (or a 503
#    on HTTP) instead of hanging, and once descriptors are free again clients are served;
#  - plaintext TCP without a token beside a Unix allow-list: refused at start;
#  - a config file holding datastore_password that others can read: a warning;
#    datastore_password_file: used when private, refused when others can read it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM MSG_NOSIGNAL);
use POSIX ();
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $san = $ENV{NVSRELAY_SANITIZE} || $ENV{NVS_VALGRIND};


sub write_file {
	my ($path, $text, $mode) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $path;
	return $path;
}

# One HTTP GET on a fresh connection: (status, seconds); status 0 when nothing came back.
sub http_get {
	my ($port, $path) = @_;
	my $t0 = NvsTest::now();
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5) or return (0, 0);
	CORE::send($s, "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n", MSG_NOSIGNAL);
	my $resp = '';
	my $deadline = $t0 + 5;
	while (NvsTest::now() < $deadline) {
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		last unless select(my $rout = $rin, undef, undef, 0.5) >= 0;
		my $n = sysread($s, $resp, 65536, length $resp);
		last if defined $n && $n == 0;
		last if !defined $n && !$!{EAGAIN} && !$!{EINTR};
	}
	close $s;
	my ($status) = $resp =~ m{^HTTP/1\.[01] (\d{3}) };
	return ($status // 0, NvsTest::now() - $t0, $resp);
}

sub cpu_ticks {
	my ($pid) = @_;
	my @f = split ' ', (NvsTest::slurp("/proc/$pid/stat") =~ /\)\s(.*)/)[0];
	return $f[11] + $f[12];    # utime + stime (fields 14 and 15)
}

sub fds { my ($pid) = @_; opendir(my $dh, "/proc/$pid/fd") or return -1; return scalar grep { /^\d/ } readdir $dh }
sub rss_kb { my ($pid) = @_; my ($kb) = NvsTest::slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)\s+kB/m; return $kb // 0 }

# --- a refusal at start ------------------------------------------------------------------
{
	my $d = NvsTest::Daemon->start($pg, wait_ready => 0, set => { listen_tcp => '127.0.0.1:' . NvsTest::free_port(),
		tcp_plaintext => 'on', unix_allow_uids => 'root' });
	is($d->wait_exit(20), 78, 'plaintext TCP without a token beside unix_allow_uids: refuses to start (78)');
	like($d->log, qr/lets every local user in over TCP, around unix_allow_uids/, '... and says why');
}

# --- the password's file modes ------------------------------------------------------------
{
	my $conf = write_file("$dir/loose.conf", "datastore_password = not-really-used\n", 0644);
	my $d = NvsTest::Daemon->start($pg, args => [ '--config', $conf ]);
	like($d->log, qr/loose\.conf has mode 0644 and holds datastore_password/, 'a config file others can read '
		. 'holding the password: a warning');
	unlike($d->log, qr/not-really-used/, '... which does not show the password');
	$d->stop(30);
	chmod 0600, $conf;
	$d = NvsTest::Daemon->start($pg, args => [ '--config', $conf ]);
	unlike($d->log, qr/has mode .* holds datastore_password/, 'mode 0600: no warning');
	$d->stop(30);

	my $pw = write_file("$dir/pw", "not-really-used\n", 0600);
	$d = NvsTest::Daemon->start($pg, set => { datastore_password_file => $pw });
	ok($d, 'datastore_password_file of mode 0600: the daemon starts');
	$d->stop(30);
	chmod 0644, $pw;
	$d = NvsTest::Daemon->start($pg, wait_ready => 0, set => { datastore_password_file => $pw });
	is($d->wait_exit(20), 78, 'datastore_password_file others can read: refuses to start (78)');
	like($d->log, qr/pw has mode 0644: a password must not be readable by group or others/, '... and says why');
}

# --- HTTP under a flood of idle connections ------------------------------------------------
my $hport = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport" });
my ($st) = http_get($hport, '/livez');
is($st, 200, '/livez answers');
my @figures;
for my $n (40, 200) {
	my @idle;
	for (1 .. $n) {
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport) or last;
		push @idle, $s;
	}
	is(scalar @idle, $n, "$n idle HTTP connections");
	select(undef, undef, undef, 0.3);
	my ($ok, $worst) = (0, 0);
	for (1 .. 20) {
		my ($status, $secs) = http_get($hport, '/livez');
		$ok++ if $status == 200;
		$worst = $secs if $secs > $worst;
	}
	push @figures, sprintf("%d idle HTTP connections: %d/20 probes answered 200, slowest %.3f s; %d descriptors, VmRSS %d kB",
		$n, $ok, $worst, fds($d->pid), rss_kb($d->pid));
	is($ok, 20, "with $n idle connections every /livez probe is answered 200 (slowest ${\ sprintf('%.3f', $worst)} s)");
	close $_ for @idle;
}
like($d->log, qr/http connection evicted/, 'the evictions are logged (debug)');
$d->stop(30);
diag($_) for @figures;

# --- out of file descriptors ----------------------------------------------------------------
SKIP: {
	skip('descriptor counts differ under valgrind', 1) if $ENV{NVS_VALGRIND};
	my $build = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
	my $wrap = write_file("$dir/lowfd.sh", "#!/bin/sh\nulimit -n 64 || exit 1\nexec $build/nvsrelayd \"\$@\"\n", 0755);
	$hport = NvsTest::free_port();
	$d = NvsTest::Daemon->start($pg, bin => $wrap, set => { http_listen => "127.0.0.1:$hport" });
	like($d->log, qr/max_clients = 1024 needs about \d+ file descriptors and RLIMIT_NOFILE allows 64 \(hard limit 64\)/,
		'max_clients against RLIMIT_NOFILE: a warning at start with the numbers');
	my $pid = $d->pid;
	my @flood;
	for (1 .. 120) {
		my $c = eval { NvsTest::Client->connect($d->socket) } or last;
		$c->send({ op => 'hello', v => 1 });
		push @flood, $c;
	}
	cmp_ok(scalar @flood, '>=', 70, scalar(@flood) . ' connections made (the backlog takes what the daemon cannot)');
	select(undef, undef, undef, 1.5);
	my ($ticks0, $lines0, $t0) = (cpu_ticks($pid), scalar(() = $d->log =~ /accept failed/g), NvsTest::now());
	select(undef, undef, undef, 3);
	my ($ticks1, $lines1, $t1) = (cpu_ticks($pid), scalar(() = $d->log =~ /accept failed/g), NvsTest::now());
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
	my $cpu = ($ticks1 - $ticks0) / $hz / ($t1 - $t0);
	push @figures, sprintf("out of descriptors: %d%% CPU, %d 'accept failed' lines in %.1f s, %d descriptors, VmRSS %d kB",
		100 * $cpu, $lines1 - $lines0, $t1 - $t0, fds($pid), rss_kb($pid));
	cmp_ok($cpu, '<', 0.2, sprintf('out of descriptors, the daemon does not spin (%.0f%% CPU)', 100 * $cpu));
	cmp_ok($lines1 - $lines0, '<=', 12, 'about one log line per second and listener, not a flood (' . ($lines1 - $lines0) . ')');
	my ($served, $refused, $silent) = (0, 0, 0);
	for my $c (@flood) {
		my $f = $c->recv_op([ 'hello', 'error' ], 0.2);
		if (!$f) { $silent++ }
		elsif ($f->{op} eq 'hello') { $served++ }
		elsif ($f->{code} == 24 && $f->{message} =~ /out of file descriptors/) { $refused++ }
	}
	push @figures, "out of descriptors: $served clients served, $refused refused with an error frame, $silent waiting";
	cmp_ok($refused, '>=', 1, "connections waiting are refused with an error frame ($refused), not left hanging");
	my ($hs, undef, $resp) = http_get($hport, '/livez');
	ok($hs == 503 && $resp =~ /out of file descriptors/ || $hs == 200, "HTTP while out of descriptors: $hs");
	push @figures, "out of descriptors: /livez got $hs";
	$_->close for @flood;
	select(undef, undef, undef, 1.5);
	my $c = NvsTest::Client->connect($d->socket);
	ok($c->hello, 'descriptors free again: a new client is served');
	($hs) = http_get($hport, '/livez');
	is($hs, 200, '... and /livez answers 200');
	$c->close;
	is($d->stop(30), 0, 'clean stop');
	diag($_) for @figures[-3 .. -1];
}
done_testing();

#!/usr/bin/perl
# 70-transport.t - how subscribers reach nvsrelayd and what happens to one that stops reading:
#  - TCP with TLS and client certificates: a client with a certificate streams events
#    (large ones too); one without a certificate, or with one from another CA, is refused
#  - a bearer token over plaintext TCP on loopback: right, wrong and missing token;
#    plaintext on a non-loopback address, a token file others can read, TLS without
#    client verification: the daemon refuses to start
#  - the Unix socket allow-list: a uid not on it gets error 13, one on it is served
#  - max_subscriptions_per_client: error 24, the connection carries on
#  - a client that stops reading while another keeps up: the other gets everything, the
#    daemon's memory stays bounded, the stalled one is dropped after
#    client_output_soft_seconds with its last delivered token, and resuming from that
#    token delivers the rest with nothing lost
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my $have_ssl = eval { require IO::Socket::SSL; IO::Socket::SSL->import(qw(SSL_VERIFY_PEER SSL_WANT_READ SSL_WANT_WRITE)); 1 };

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $tls = "$dir/tls";
my $dbh = $pg->dbh();


sub write_file {
	my ($path, $text, $mode) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $path;
	return $path;
}

sub client_on {
	my ($class, $sock) = @_;
	$sock->blocking(0);
	return bless { sock => $sock, buf => '', eof => 0, skipped => [], errors => [], bookmarks => {},
		timeout => 10 }, $class;
}

sub tcp_client {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10)
		or die "connect 127.0.0.1:$port: $!";
	return client_on('NvsTest::Client', $s);
}

# A TLS client: undef when the handshake fails on the client's side.
sub tls_client {
	my ($port, %o) = @_;
	my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10,
		SSL_verify_mode => SSL_VERIFY_PEER(), SSL_ca_file => "$tls/ca.crt", SSL_hostname => 'localhost',
		SSL_verifycn_name => 'localhost', SSL_verifycn_scheme => 'default',
		$o{cert} ? (SSL_cert_file => "$tls/$o{cert}.crt", SSL_key_file => "$tls/$o{cert}.key") : ())
		or return undef;
	return client_on('TlsClient', $s);
}

# Events from $c until $n arrived or nothing came for $idle seconds.
sub collect {
	my ($c, $n, $timeout, $sid) = @_;
	return $c->events($n, $timeout, sid => $sid);
}

sub seqs { [ map { $_->{event}{fullDocument}{seq} } @{ $_[0] } ] }

# Inserts health events with seq $from..$to (about 1 KB each) in one statement.
sub insert_seq {
	my ($from, $to, $pad) = @_;
	$dbh->do(q{INSERT INTO health_events (node_name, event_type, severity, recommended_action, document)
		SELECT 'node-' || g, 'GpuXidError', 'GPU', 'RESTART_BM',
		       jsonb_build_object('seq', g, 'healthevent', jsonb_build_object('nodeName', 'node-' || g,
		                          'message', repeat('x', ?::int)))
		FROM generate_series(?::int, ?::int) g ORDER BY g}, undef, $pad // 900, $from, $to);
}

sub rss_kb {
	my ($pid) = @_;
	my ($kb) = NvsTest::slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)\s+kB/m;
	return $kb // 0;
}

# Connects to the Unix socket as user nobody (in a child) and pings: returns the
# first frame as JSON text, 'eof' or 'timeout'.
sub ping_as_nobody {
	my ($path) = @_;
	my ($uid, $gid) = (getpwnam('nobody'))[ 2, 3 ];
	pipe(my $r, my $w) or die "pipe: $!";
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if (!$pid) {
		close $r;
		my $out;
		if (!POSIX::setgid($gid) || !(($) = "$gid $gid")) || !POSIX::setuid($uid) || $< != $uid) {
			$out = "cannot become nobody: $!";
		} else {
			my $c = eval { NvsTest::Client->connect($path) };
			if (!$c) {
				$out = "connect: $@";
			} else {
				$c->ping;
				my $f = $c->recv(10);
				$out = $f ? $NvsTest::JSON->encode($f) : $c->eof ? 'eof' : 'timeout';
			}
		}
		$out =~ s/\n/ /g;
		print $w "$out\n";
		close $w;
		POSIX::_exit(0);
	}
	close $w;
	my $line = <$r>;
	waitpid($pid, 0);
	chomp($line //= '');
	return $line;
}

# ---------------------------------------------------------------------------------------
# A daemon that must refuse to start: exit 78 and a log line matching $re.
sub refuses_to_start {
	my ($label, $set, $re) = @_;
	my $d = NvsTest::Daemon->start($pg, set => $set, wait_ready => 0);
	is($d->wait_exit(20), 78, "$label: refuses to start (78)");
	like($d->log, $re, "$label: says why");
}

my $token = 'c2f1a9e0b7d64c3e8a5f0d1b2c3e4f5a';
my $tokfile = write_file("$dir/token", "$token\n", 0600);
my $loose = write_file("$dir/token-loose", "$token\n", 0644);

refuses_to_start('plaintext TCP on 0.0.0.0',
	{ listen_tcp => '0.0.0.0:' . NvsTest::free_port(), tcp_plaintext => 'on' }, qr/loopback address only/);
refuses_to_start('TCP without TLS or tcp_plaintext',
	{ listen_tcp => '127.0.0.1:' . NvsTest::free_port() }, qr/needs TLS/);
refuses_to_start('a token file others can read',
	{ listen_tcp => '127.0.0.1:' . NvsTest::free_port(), tcp_plaintext => 'on', auth_token_file => $loose },
	qr/token-loose has mode 0644.*must not be readable by group or others/);
my $loose_key = write_file("$dir/server-loose.key", NvsTest::slurp("$tls/server.key"), 0644);
refuses_to_start('a private key others can read',
	{ listen_tcp => '127.0.0.1:' . NvsTest::free_port(), tls_cert_file => "$tls/server.crt", tls_key_file => $loose_key,
	  tls_ca_file => "$tls/ca.crt" },
	qr/server-loose\.key has mode 0644: a private key must not be readable by others/);
refuses_to_start('tls_cert_file without tls_key_file',
	{ tls_cert_file => "$tls/server.crt" }, qr/tls_cert_file and tls_key_file must be set together/);
refuses_to_start('TLS without client certificates or a token',
	{ listen_tcp => '127.0.0.1:' . NvsTest::free_port(), tls_cert_file => "$tls/server.crt", tls_key_file => "$tls/server.key" },
	qr/needs client certificates \(tls_ca_file\) or a token/);
refuses_to_start('a key that does not match the certificate',
	{ listen_tcp => '127.0.0.1:' . NvsTest::free_port(), tls_cert_file => "$tls/server.crt", tls_key_file => "$tls/client.key",
	  tls_ca_file => "$tls/ca.crt" }, qr/tls_key_file .* does not belong to tls_cert_file|tls_key_file .*client\.key/);
refuses_to_start('an unknown user on the allow-list',
	{ unix_allow_uids => '0, no-such-user-here' }, qr/unix_allow_uids: unknown name 'no-such-user-here'/);

# ---------------------------------------------------------------------------------------
# mTLS on TCP; Unix socket open to all by mode, closed to nobody by the allow-list.
SKIP: {
	skip 'IO::Socket::SSL not installed (libio-socket-ssl-perl)', 1 unless $have_ssl;
	my $port = NvsTest::free_port();
	my $d = NvsTest::Daemon->start($pg, set => {
		listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt", tls_key_file => "$tls/server.key",
		tls_ca_file => "$tls/ca.crt", max_subscriptions_per_client => 2, unix_allow_uids => 'root',
		unix_socket_mode => '0666' });
	like($d->log, qr/listening tcp=127\.0\.0\.1:$port transport=tls client_certificates=required/,
		'TLS listener with client certificates');

	my $c = tls_client($port, cert => 'client');
	ok($c, 'a TLS client with a certificate from the CA connects') or skip 'no TLS connection', 1;
	my $h = $c->hello('t70-tls');
	is($h && $h->{op}, 'hello', '... and is answered');
	ok($d->wait_log(qr/client TLS established .*subject='[^']*CN ?= ?nvsentinel/, 5), '... its certificate is logged');
	$c->watch(sid => 1);
	ok($c->recv_op('bookmark', 10), '... watch confirmed');
	insert_seq(1, 200);
	insert_seq(201, 201, 200_000);    # one event of many TLS records
	insert_seq(202, 300);
	my $ev = collect($c, 300, 30, 1);
	is_deeply(seqs($ev), [ 1 .. 300 ], '... all 300 events arrive in order, a 200 KB one among them');
	is(length($ev->[200]{event}{fullDocument}{healthevent}{message}), 200_000, '... the large one whole');

	# max_subscriptions_per_client = 2
	$c->watch(sid => 2);
	ok($c->recv_op('bookmark', 10), 'a second subscription');
	$c->watch(sid => 3);
	my $e = $c->recv_op('error', 10);
	is_deeply($e && [ @$e{qw(sid code codeName)} ], [ 3, 24, 'ExceededLimit' ], 'a third: error 24 ExceededLimit for sid 3');
	like($e->{message} // '', qr/max_subscriptions_per_client = 2/, '... naming the limit');
	ok($d->wait_log(qr/client refused .*refusal=max_subscriptions/, 5), '... logged as a refusal');
	$c->ping;
	ok($c->recv_op('pong', 10), '... and the connection carries on');
	$c->unwatch(2);
	$c->watch(sid => 3);
	ok($c->recv_op('bookmark', 10), 'after an unwatch there is room again');
	$c->close;

	my $nocert = tls_client($port);
	my $served = $nocert && do { $nocert->send({ op => 'hello', v => 1 }); $nocert->recv_op('hello', 5) };
	ok(!$served, 'a TLS client without a certificate is refused');
	ok($d->wait_log(qr/client refused .*refusal=tls_handshake reason='[^']*certificate/, 5),
		'... in the handshake, logged with the reason');

	my $wrong = tls_client($port, cert => 'wrong-client');
	$served = $wrong && do { $wrong->send({ op => 'hello', v => 1 }); $wrong->recv_op('hello', 5) };
	ok(!$served, 'a client certificate from another CA is refused');

	my $plain = tcp_client($port);
	$plain->send({ op => 'hello', v => 1 });
	ok(!$plain->recv_op('hello', 5), 'plaintext on the TLS port gets no answer');

	my $nobody = ping_as_nobody($d->socket);
	like($nobody, qr/"code":13\b.*"codeName":"Unauthorized"|"codeName":"Unauthorized".*"code":13\b/,
		'a uid not on unix_allow_uids: error 13 Unauthorized');
	ok($d->wait_log(qr/client refused peer=unix:pid=\d+,uid=65534 refusal=peer_not_allowed/, 5),
		'... logged with the peer uid');
	my $root = NvsTest::Client->connect($d->socket);
	$root->ping;
	ok($root->recv_op('pong', 5), 'root, on the list, is served');
	is($d->stop, 0, 'clean stop');
}

# ---------------------------------------------------------------------------------------
# Plaintext TCP on loopback with a token; nobody on the allow-list; slow consumers.
my $port = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => {
	listen_tcp => "127.0.0.1:$port", tcp_plaintext => 'on', auth_token_file => $tokfile,
	unix_allow_uids => 'nobody', unix_socket_mode => '0666', client_output_soft_seconds => 3 });
like($d->log, qr/listening tcp=127\.0\.0\.1:$port transport=plaintext token=required/, 'plaintext TCP listener with a token');
unlike($d->log, qr/\Q$token\E/, 'the token is never logged');

my $t = tcp_client($port);
my $h = $t->hello('t70-token', token => $token);
is($h && $h->{op}, 'hello', 'the right token: hello answered');
$t->watch(sid => 1, table => 'maintenance_events');
ok($t->recv_op('bookmark', 10), '... and watch works');

for my $case ([ 'a wrong token', { op => 'hello', v => 1, token => 'x' x 32 } ],
	[ 'no token', { op => 'hello', v => 1 } ],
	[ 'a first frame that is not hello', { op => 'ping' } ]) {
	my ($label, $frame) = @$case;
	my $b = tcp_client($port);
	$b->send($frame);
	my $f = $b->recv(10);
	is_deeply($f && [ @$f{qw(op code codeName)} ], [ 'error', 18, 'AuthenticationFailed' ], "$label: error 18");
	$b->recv(5);
	ok($b->eof, "$label: then closed");
}
ok($d->wait_log(qr/client refused .*refusal=auth_failed reason='wrong token'/, 5), 'auth refusals are logged');
unlike($d->log, qr/\Q$token\E|x{32}/, 'no token in the log');

like(ping_as_nobody($d->socket), qr/"op":"pong"/, 'nobody, on unix_allow_uids by name, is served');

# One client stops reading, another keeps up.
my $slow = NvsTest::Client->connect($d->socket);
$slow->watch(sid => 1);
ok($slow->recv_op('bookmark', 10), 'the slow client subscribed');
my $fast = NvsTest::Client->connect($d->socket);
$fast->watch(sid => 1);
ok($fast->recv_op('bookmark', 10), 'the fast client subscribed');

# What the stalled client finds when it reads again.  It reads as soon as the
# daemon dropped it: the end of a frame it had started to receive and its error
# frame wait client_output_soft_seconds for it, no longer.
my (@got, $err, $dropped);
sub read_slow {
	$dropped = 1;
	while (my $f = $slow->recv(10)) {
		if ($f->{op} eq 'event') { push @got, $f; next }
		next if $f->{op} eq 'bookmark';
		$err = $f;
		last;
	}
}

my $N = 4000;
my ($maxrss, @fast) = (0);
for (my $i = 1; $i <= $N; $i += 200) {
	insert_seq($i, $i + 199);
	push @fast, @{ collect($fast, 200, 60, 1) };
	my $kb = rss_kb($d->pid);
	$maxrss = $kb if $kb > $maxrss;
	read_slow() if !$dropped && $d->log =~ /slow consumer dropped .*limit=stalled/;
}
is_deeply(seqs(\@fast), [ 1 .. $N ], "the reading client got all $N events in order while the other did not read");
ok($dropped || $d->wait_log(qr/slow consumer dropped .*limit=stalled/, 30), 'the stalled client is dropped');
read_slow() unless $dropped;
$maxrss = rss_kb($d->pid) if rss_kb($d->pid) > $maxrss;
cmp_ok($maxrss, '<', 200 * 1024, "the daemon's RSS stayed bounded (max ${maxrss} kB)");
my $k = scalar @got;
cmp_ok($k, '<', $N, "the stalled client had received $k events");
is_deeply(seqs(\@got), [ 1 .. $k ], '... in order, none missing');
is_deeply($err && [ @$err{qw(op sid code codeName)} ], [ 'error', 1, 262, 'ExceededTimeLimit' ],
	'... then error 262 ExceededTimeLimit for its subscription');
is($err && $err->{token}{_data}, $k ? $got[-1]{event}{_id}{_data} : undef, '... carrying the token of the last event it received');
$slow->recv(5);
ok($slow->eof, '... and the connection is closed');

my $again = NvsTest::Client->connect($d->socket);
$again->watch(sid => 1, resumeAfter => $err->{token});
my $rest = collect($again, $N - $k, 60, 1);
is_deeply(seqs($rest), [ $k + 1 .. $N ], 'resuming after that token delivers the rest, nothing lost');
$fast->ping;
ok($fast->recv_op('pong', 5), 'the fast client is still connected');
is($d->stop, 0, 'clean stop');
done_testing();

# ---------------------------------------------------------------------------------------
package TlsClient;
use parent -norequire, 'NvsTest::Client';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);

sub send_raw {
	my ($self, $bytes, $timeout) = @_;
	my $deadline = NvsTest::now() + ($timeout // 30);
	my ($off, $len) = (0, length $bytes);
	while ($off < $len) {
		my $n = $self->{sock}->syswrite($bytes, $len - $off, $off);
		if ($n) { $off += $n; next }
		my $e = $IO::Socket::SSL::SSL_ERROR;
		if ((defined $e && ($e == IO::Socket::SSL::SSL_WANT_WRITE() || $e == IO::Socket::SSL::SSL_WANT_READ()))
			|| $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
			if (NvsTest::now() > $deadline) { $self->{write_error} = 'timeout'; return 0 }
			select(undef, undef, undef, 0.01);
			next;
		}
		$self->{write_error} = "$e";
		return 0;
	}
	return 1;
}

# As NvsTest::Client's, but records the TLS session already decrypted are read
# without waiting for the socket.
sub _fill {
	my ($self, $deadline) = @_;
	return 0 if $self->{eof};
	while (1) {
		if (!$self->{sock}->pending) {
			my $left = $deadline - NvsTest::now();
			my $rin  = '';
			vec($rin, fileno($self->{sock}), 1) = 1;
			my $n = select(my $rout = $rin, undef, undef, $left > 0 ? $left : 0);
			next if $n < 0 && $! == EINTR;
			return 0 if $n <= 0;
		}
		my $r = $self->{sock}->sysread($self->{buf}, 65536, length $self->{buf});
		if (!defined $r) {
			my $e = $IO::Socket::SSL::SSL_ERROR;
			next if (defined $e && ($e == IO::Socket::SSL::SSL_WANT_READ() || $e == IO::Socket::SSL::SSL_WANT_WRITE()))
				|| $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
			$self->{read_error} = "$e";
			$self->{eof} = 1;
			return 0;
		}
		if ($r == 0) { $self->{eof} = 1; return 0 }
		return 1;
	}
}

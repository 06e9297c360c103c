#!/usr/bin/perl
# 16-frame-cost.t - what one frame, or one connection that has not authenticated yet, may
# cost the daemon:
#  - a 16 MiB frame of a large JSON array, a 16 MiB $in watch and a 2M-branch $or watch
#    are refused before they are parsed (TooLarge), quickly, and the daemon's resident
#    memory (VmRSS) and its peak (VmHWM) stay within a small multiple of the frame size;
#  - frames that are not watches get a much smaller budget; a normal watch still works;
#  - a string holding \u0000 (a consumer name cut at the NUL) is refused as BadValue;
#  - error frames quoting client text are valid UTF-8, also for invalid bytes and for
#    text cut at the message's length; PostgreSQL's error text does not reach clients;
#  - before its token, a connection may send only a small hello: a large first frame is
#    refused at once instead of buffered;
#  - silent TLS connections have their own budget: 200 of them do not lock a Unix client
#    out of max_clients, and the daemon's descriptors stay bounded.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use Encode ();
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $tls = "$dir/tls";
my $slow = $ENV{NVSRELAY_SANITIZE} || $ENV{NVS_VALGRIND} ? 3 : 1;


sub status_kb {
	my ($d, $key) = @_;
	my ($kb) = NvsTest::slurp('/proc/' . $d->pid . '/status') =~ /^$key:\s+(\d+)\s+kB/m;
	return $kb // 0;
}

sub fds { my ($d) = @_; opendir(my $dh, '/proc/' . $d->pid . '/fd') or return -1; return scalar grep { /^\d/ } readdir $dh }

# A TCP connection driven like NvsTest::Client.
sub tcp_client {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or return undef;
	$s->blocking(0);
	return bless { sock => $s, buf => '', eof => 0, skipped => [], errors => [], bookmarks => {}, timeout => 10 },
		'NvsTest::Client';
}

my $port = NvsTest::free_port();
my $tokfile = "$dir/token16";
open(my $fh, '>', $tokfile) or die "$tokfile: $!";
print $fh "0123456789abcdef0123456789abcdef\n";
close $fh;
chmod 0600, $tokfile;
my $d = NvsTest::Daemon->start($pg, set => { listen_tcp => "127.0.0.1:$port", tcp_plaintext => 'on',
	auth_token_file => $tokfile });

# --- one large frame -------------------------------------------------------------------
my $c = NvsTest::Client->connect($d->socket);
ok($c->hello, 'hello');
my ($rss0, $hwm0) = (status_kb($d, 'VmRSS'), status_kb($d, 'VmHWM'));
my $big = 16 * 1024 * 1024 - 64;
my @attacks = (
	[ 'a 16 MiB JSON array', '{"op":"ping","x":[' . ('1,' x int($big / 2 - 40)) . "1]}\n" ],
	[ 'a 16 MiB $in watch', '{"op":"watch","sid":5,"table":"health_events","pipeline":[{"$match":{"x":{"$in":['
		. ('1,' x int($big / 2 - 80)) . "1]}}}]}\n" ],
	[ 'a 2M-branch $or watch', '{"op":"watch","sid":6,"table":"health_events","pipeline":[{"$match":{"$or":['
		. ('{},' x 2000000) . "{}]}}]}\n" ],
);
my @figures;
for my $a (@attacks) {
	my ($label, $frame) = @$a;
	my $t0 = NvsTest::now();
	ok($c->send_raw($frame, 60 * $slow), "$label: sent");
	my $f = $c->recv_op('error', 60 * $slow);
	my $secs = NvsTest::now() - $t0;
	is($f && $f->{code}, 10334, "$label: refused as TooLarge") or diag(explain($f));
	cmp_ok($secs, '<', 5 * $slow, sprintf("%s: answered in %.2f s", $label, $secs));
	$c->ping;
	ok($c->recv_op('pong', 10 * $slow), "$label: the connection is still usable");
	my ($rss, $hwm) = (status_kb($d, 'VmRSS'), status_kb($d, 'VmHWM'));
	push @figures, "$label: VmRSS ${rss} kB, VmHWM ${hwm} kB";
	# The frame buffer itself is 16 MiB; parsing the frame would take 40 times that.
	unless ($ENV{NVSRELAY_SANITIZE} || $ENV{NVS_VALGRIND}) {
		cmp_ok($hwm - $hwm0, '<', 80 * 1024, "$label: peak memory grew by less than 80 MiB (${hwm0} -> ${hwm} kB)");
		cmp_ok($rss - $rss0, '<', 40 * 1024, "$label: resident memory afterwards within 40 MiB of before (${rss0} -> ${rss} kB)");
	}
}
diag("before: VmRSS ${rss0} kB, VmHWM ${hwm0} kB");
diag($_) for @figures;

# --- smaller budgets for frames that are not watches ------------------------------------
$c->send_raw('{"op":"ping","x":[' . join(',', (1) x 200) . "]}\n");
my $f = $c->recv_op([ 'error', 'pong' ], 10);
is($f && $f->{op} eq 'error' && $f->{code}, 10334, 'a ping carrying 200 values: TooLarge (frames that are not watches have a small budget)');
$c->send_raw('{"op":"watch","sid":7,"table":"health_events","pipeline":[{"$match":{"healthevent.nodename":{"$in":['
	. join(',', map { "\"node-$_\"" } 1 .. 1000) . "]}}}]}\n");
$f = $c->recv_op([ 'bookmark', 'error' ], 10 * $slow);
ok($f && $f->{op} eq 'bookmark' && $f->{sid} == 7, 'a watch with a 1000-element $in is served') or diag(explain($f));

# --- NUL and UTF-8 ---------------------------------------------------------------------
$c->send_raw('{"op":"watch","sid":8,"table":"health_events","consumer":"victim\u0000evil"}' . "\n");
$f = $c->recv_op([ 'error', 'bookmark' ], 10);
is($f && $f->{op} eq 'error' && $f->{sid} == 8 && $f->{code}, 2, 'a consumer name holding \u0000: BadValue, not cut at the NUL');

sub error_line_valid {
	my ($label, $sid, $frame) = @_;
	$c->send_raw("$frame\n");
	my $line;
	my $deadline = NvsTest::now() + 10;
	while (NvsTest::now() < $deadline) {
		$line = $c->recv_raw(10);
		last if !defined $line || ($line =~ /"op":"error"/ && $line =~ /"sid":$sid\b/);
	}
	ok(defined $line && $line =~ /"op":"error"/, "$label: an error frame for sid $sid");
	my $copy = $line // '';
	ok(eval { Encode::decode('UTF-8', $copy, Encode::FB_CROAK); 1 }, "$label: the error frame is valid UTF-8")
		or diag(substr($line // '', 0, 300));
	return $line;
}
error_line_valid('unknown operator with invalid UTF-8', 9,
	'{"op":"watch","sid":9,"table":"health_events","pipeline":[{"$match":{"f":{"$bog' . "\xff\xfe" . 'us":1}}}]}');
error_line_valid('a field path of 600 two-byte characters', 10,
	'{"op":"watch","sid":10,"table":"health_events","pipeline":[{"$match":{"' . ("\xc3\xa9" x 600) . '":{"$bogus":1}}}]}');
error_line_valid('a field path of 300 four-byte characters', 11,
	'{"op":"watch","sid":11,"table":"health_events","pipeline":[{"$match":{"a' . ("\xf0\x9f\x98\x80" x 300) . '":{"$bogus":1}}}]}');

# --- PostgreSQL's error text stays in the log -------------------------------------------
$c->send({ op => 'watch', sid => 12, table => 'health_events', startAtOperationTime => '2026-13-45T99:99:99Z' });
$f = $c->recv_op([ 'error', 'bookmark' ], 10);
ok($f && $f->{op} eq 'error' && $f->{sid} == 12, 'a startAtOperationTime PostgreSQL cannot read: an error frame');
unlike($f ? $f->{message} : 'none', qr/ERROR|date\/time|field value|PostgreSQL said|LINE \d/,
	'... without PostgreSQL\'s error text') or diag($f->{message});
like($d->log, qr/startAtOperationTime not resolved error='.*date\/time/, '... which is in the log');
$c->close;

# --- before the token ------------------------------------------------------------------
my $t = tcp_client($port);
ok($t, 'TCP connection');
my $t0 = NvsTest::now();
$t->send_raw('{"op":"hello","v":1,"token":"' . ('x' x (1024 * 1024)), 10);
$f = $t->recv(5);
my $secs = NvsTest::now() - $t0;
ok($f && $f->{op} eq 'error' && $f->{code} == 10334, 'a 1 MiB first frame before the token: TooLarge') or diag(explain($f));
cmp_ok($secs, '<', 4, sprintf('... at once (%.2f s), not after the token deadline', $secs));
ok(!$t->recv(5) && $t->eof, '... and the connection is closed');
$t->close;
$t = tcp_client($port);
$t->send({ op => 'hello', v => 1, token => '0123456789abcdef0123456789abcdef' });
ok($t->recv_op('hello', 10), 'a small hello with the token is still served');
$t->close;
$d->stop(30);

# --- silent TLS connections do not take the subscribers' slots --------------------------
$port = NvsTest::free_port();
$d = NvsTest::Daemon->start($pg, set => { listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt",
	tls_key_file => "$tls/server.key", tls_ca_file => "$tls/ca.crt", max_clients => 10 });
my $fd0 = fds($d);
my @silent;
for (1 .. 200) {
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or last;
	push @silent, $s;
}
is(scalar @silent, 200, '200 silent TCP connections to the mTLS port');
select(undef, undef, undef, 1);
my $fdn = fds($d);
diag("descriptors: $fd0 before, $fdn with 200 silent TLS connections; VmRSS " . status_kb($d, 'VmRSS') . ' kB');
cmp_ok($fdn - $fd0, '<=', 140, "the daemon holds a bounded number of them ($fd0 -> $fdn descriptors)");
my @unix;
for my $i (1 .. 5) {
	my $u = NvsTest::Client->connect($d->socket);
	$u->send({ op => 'hello', v => 1 });
	my $h = $u->recv_op([ 'hello', 'error' ], 10);
	ok($h && $h->{op} eq 'hello', "Unix client $i is served beside 200 silent TLS connections")
		or diag(explain($h));
	push @unix, $u;
}
$_->close for @silent, @unix;
like($d->log, qr/refusal=unauthenticated/, 'the surplus is logged as a refusal');
is($d->stop(30), 0, 'clean stop');
done_testing();

#!/usr/bin/perl
# 23-ownership.t - a durable consumer belongs to someone: a start token must
# name a position that exists (a forged one far beyond the head, or one of
# 2^63 or more, is refused with 260 InvalidResumeToken and the stored
# position does not move), an ack must name a position that was sent, and
# with consumer_owners a peer may use only the names its identity is given,
# its uid on the Unix socket or its certificate's CN on TCP+TLS (13
# Unauthorized and one log line otherwise).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $me    = $<;
my $other = $< + 4242;
my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 50,
    consumer_owners => "victim = uid:$other; mine = uid:$me, cn:nobody; * = any" });
my $dbh = $pg->dbh();

sub rid { $_[0]{event}{documentKey}{_id} }
sub stored {
    my ($name) = @_;
    my ($t) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = ?},
        undef, $name);
    return $t;
}
# The next error frame; bookmarks and events that come first (a bookmark is
# due every second) are passed over.
sub error_of {
    my ($c) = @_;
    return $c->recv_op('error', 10);
}

# --- a consumer with a stored position --------------------------------------------
my $c = NvsTest::Client->connect($d->socket);
my $hello = $c->hello('exporter');
my $gen = $hello->{generation};
like($gen, qr/^[0-9a-f]{8}$/, 'hello names the generation');
$c->watch(consumer => 'exporter');
ok($c->recv_op('bookmark', 10), 'exporter started');
my @ids = map { NvsTest::insert_health_event($dbh, node => "o-$_") } 1 .. 3;
my $ev = $c->events(3, 10);
is(scalar @$ev, 3, 'three events');
$c->ack(1, $ev->[2]{event}{_id});
select(undef, undef, undef, 0.5);
$c->close;
my $before = stored('exporter');
# A bookmark sent after the last event may take it further.
cmp_ok($before // '', 'ge', $ev->[2]{event}{_id}{_data}, 'the acknowledged position (or a bookmark after it) is stored');
my ($head) = $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick');

# --- forged start tokens ------------------------------------------------------------
for my $case ([ 'far beyond the head', $head + 1_000_000 ], [ 'a tick of 2^63', '8000000000000000' ],
              [ 'a tick of 2^64-1', 'ffffffffffffffff' ]) {
    my ($what, $tick) = @$case;
    my $hex = $tick =~ /^[0-9a-f]{16}$/ ? $tick : sprintf('%016x', $tick);
    my $forged = { _data => $gen . $hex . 'ffffffffffffffff' };
    my $h = NvsTest::Client->connect($d->socket);
    $h->watch(consumer => 'exporter', resumeAfter => $forged);
    my $err = error_of($h);
    ok($err, "resumeAfter $what: refused");
    is($err && $err->{code}, 260, '... with 260');
    is($err && $err->{codeName}, 'InvalidResumeToken', '... InvalidResumeToken');
    $h->watch(sid => 2, startAfter => $forged);
    $err = error_of($h);
    is($err && $err->{code}, 260, "startAfter $what: refused too");
    $h->close;
    select(undef, undef, undef, 0.3);
    is(stored('exporter'), $before, "... and the stored position did not move");
}

# The real consumer carries on from its own position.
my @later = map { NvsTest::insert_health_event($dbh, node => "p-$_") } 1 .. 2;
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'exporter');
$ev = $c->events(2, 10);
is_deeply([ map { rid($_) } @$ev ], \@later, 'the consumer misses nothing after the forgeries');

# --- acks only for what was sent --------------------------------------------------------
my $far = { _data => $gen . sprintf('%016x', $head + 500) . 'ffffffffffffffff' };
$c->ack(1, $far);
my $err = error_of($c);
is($err && $err->{code}, 2, 'an ack beyond what was sent: BadValue');
$c->ack(1, $ev->[1]{event}{_id});
select(undef, undef, undef, 0.5);
cmp_ok(stored('exporter'), 'ge', $ev->[1]{event}{_id}{_data}, 'an ack of a sent event moves the position');
cmp_ok(stored('exporter'), 'lt', $far->{_data}, '... and not to the refused one');
$c->close;

# --- consumer_owners ------------------------------------------------------------------
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'victim');
$err = error_of($c);
is($err && $err->{code}, 13, "a name owned by uid $other: refused");
is($err && $err->{codeName}, 'Unauthorized', '... Unauthorized');
ok($d->wait_log(qr/consumer refused client=c\d+ peer=unix:\S+ identity='uid=$me gid=\d+' consumer='victim'/, 5),
    'one log line names peer, identity and consumer')
    or diag(NvsTest::tail($d->logfile, 20));
$c->watch(sid => 2, consumer => 'mine');
ok($c->recv_op('bookmark', 10), 'a name owned by this uid: allowed on the same connection');
$c->watch(sid => 3, consumer => 'anything-else');
my $f = $c->recv_op([ 'error', 'bookmark' ], 10);
is($f && $f->{op}, 'bookmark', 'a name under "* = any": allowed');
$c->close;
is(stored('victim'), undef, 'the refused name has no stored position');

# --- consumer_owners on TCP+TLS: the client certificate ------------------------------------
SKIP: {
    skip 'IO::Socket::SSL not installed (libio-socket-ssl-perl)', 9
        unless eval { require IO::Socket::SSL; require IO::Socket::INET; 1 };
    my $tls  = $pg->dir . '/tls';
    my $port = NvsTest::free_port();
    $d->stop;
    my $t = NvsTest::Daemon->start($pg, socket => $pg->dir . '/relay-tls.sock', set => { listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt",
        tls_key_file => "$tls/server.key", tls_ca_file => "$tls/ca.crt",
        consumer_owners => 'by-cert = cn:nvsentinel; by-subject = subject:/CN=evil/CN=nvsentinel; '
            . 'by-other = cn:someone-else, uid:' . $me });
    my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10,
        SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(), SSL_ca_file => "$tls/ca.crt",
        SSL_hostname => 'localhost', SSL_verifycn_name => 'localhost', SSL_verifycn_scheme => 'default',
        SSL_cert_file => "$tls/client.crt", SSL_key_file => "$tls/client.key");
    ok($s, 'a TLS client with a certificate connects') or diag("TLS: $IO::Socket::SSL::SSL_ERROR $!"), skip 'no TLS connection', 4;
    my $frame = sub {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 10;
        my $line = eval { <$s> };
        alarm 0;
        return $line ? $NvsTest::JSON->decode($line) : {};
    };
    print $s $NvsTest::JSON->encode({ op => 'watch', sid => 1, table => 'health_events', consumer => 'by-cert' }), "\n";
    is($frame->()->{op}, 'bookmark', 'the name bound to its certificate\'s CN: allowed');
    print $s $NvsTest::JSON->encode({ op => 'watch', sid => 2, table => 'health_events', consumer => 'by-other' }), "\n";
    my $f = $frame->();
    is_deeply([ @$f{qw(op sid code)} ], [ 'error', 2, 13 ], 'a name bound to another CN (and a Unix uid): 13');
    ok($t->wait_log(qr/consumer refused client=c\d+ peer=tls:127\.0\.0\.1:\d+ identity='subject=[^']*CN=nvsentinel[^']*' consumer='by-other'/, 5),
        '... logged with the certificate subject');
    print $s $NvsTest::JSON->encode({ op => 'watch', sid => 3, table => 'health_events', consumer => 'unlisted' }), "\n";
    is($frame->()->{code}, 13, 'a name the map does not list: 13');
    close $s;

    # A CN whose value holds "/CN=nvsentinel" (a CA that signs what it is
    # asked): the one-line subject reads "/CN=evil/CN=nvsentinel", but the
    # CN is "evil/CN=nvsentinel" and gets no name bound to nvsentinel.
    my $gen = join(' && ', 'cd ' . $pg->dir,
        q{openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc -subj '/CN=evil\/CN=nvsentinel'}
            . ' -keyout slash.key -out slash.csr',
        "openssl x509 -req -in slash.csr -CA $tls/ca.crt -CAkey $tls/ca.key -CAcreateserial -days 1"
            . " -extfile $tls/client.ext -out slash.crt");
    my ($grc, $gout) = NvsTest::run_cmd([ 'sh', '-c', $gen ]);
    is($grc, 0, 'a certificate whose CN holds "/CN=" is made') or diag($gout);
    my $e = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10,
        SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(), SSL_ca_file => "$tls/ca.crt",
        SSL_hostname => 'localhost', SSL_cert_file => $pg->dir . '/slash.crt', SSL_key_file => $pg->dir . '/slash.key');
    ok($e, '... and connects') or diag("TLS: $IO::Socket::SSL::SSL_ERROR $!"), skip 'no TLS connection', 2;
    $s = $e;
    print $s $NvsTest::JSON->encode({ op => 'watch', sid => 1, table => 'health_events', consumer => 'by-cert' }), "\n";
    $f = $frame->();
    is_deeply([ @$f{qw(op sid code)} ], [ 'error', 1, 13 ], '... but is not cn:nvsentinel: 13');
    print $s $NvsTest::JSON->encode({ op => 'watch', sid => 2, table => 'health_events', consumer => 'by-subject' }), "\n";
    $f = $frame->();
    is_deeply([ @$f{qw(op sid code)} ], [ 'error', 2, 13 ],
        '... nor the subject its one-line form reads as ("/CN=evil/CN=nvsentinel"): 13');
    close $s;
}

done_testing();

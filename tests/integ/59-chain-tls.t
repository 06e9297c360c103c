#!/usr/bin/perl
# 59-chain-tls.t - node relays chained over TLS with client certificates and a token: the
# upstream's listener requires both; a node with the right CA, certificate and token
# streams (by address and by name), /readyz follows its upstream connection, and a node
# with the wrong CA, without a certificate or with the wrong token never streams, says
# why, and is not ready. The token never reaches a log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my $tls  = "$dir/tls";
my $dbh  = $pg->dbh;

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1) or die $!;
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub write_file {
    my ($path, $text) = @_;
    open(my $fh, '>', $path) or die "$path: $!";
    print $fh $text;
    close $fh;
    chmod 0600, $path;
    return $path;
}

sub http_get {
    my ($port, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or return '';
    print $s "GET $path HTTP/1.0\r\n\r\n";
    local $/;
    return <$s> // '';
}

my $token = 'chain-' . join('', map { sprintf '%02x', int rand 256 } 1 .. 16);
my $tok   = write_file("$dir/up.token", "$token\n");
my $bad   = write_file("$dir/bad.token", "not-the-token\n");
my $port  = free_port();
my %uset  = (listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt", tls_key_file => "$tls/server.key",
    tls_ca_file => "$tls/ca.crt", auth_token_file => $tok, poll_interval_ms => 100, tick_idle_ms => 500);
my $up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);

my %good = (upstream_ca_file => "$tls/ca.crt", upstream_cert_file => "$tls/client.crt",
    upstream_key_file => "$tls/client.key", upstream_token_file => $tok, upstream_timeout_ms => 2000,
    reconnect_min_ms => 50, reconnect_max_ms => 300);
my $hport = free_port();
my $a = NvsTest::Daemon->start($pg, socket => "$dir/a.sock",
    set => { %good, upstream => "127.0.0.1:$port", node_name => 'a', http_listen => "127.0.0.1:$hport" });
like($a->log, qr/streaming from upstream address=127\.0\.0\.1:$port node=a/, 'TLS, client certificate and token: node a streams');
my $b = NvsTest::Daemon->start($pg, socket => "$dir/b.sock", set => { %good, upstream => "localhost:$port", node_name => 'b' });
like($b->log, qr/streaming from upstream address=localhost:$port/, 'by name too (the certificate names localhost)');
like(http_get($hport, '/readyz'), qr/^HTTP\/1\.[01] 200/, 'node a is ready');

my @subs = map { my $c = NvsTest::Client->connect($_->socket); $c->watch(sid => 1); $c->recv_op('bookmark', 10); $c } $a, $b;
my $id = NvsTest::insert_health_event($dbh, node => 'tls-chain');
for my $i (0, 1) {
    my $ev = $subs[$i]->events(1, 10 * $slow);
    is($ev->[0] && $ev->[0]{event}{documentKey}{_id}, $id, 'node ' . ('a', 'b')[$i] . ' delivers the change');
}

my %bad = (
    'wrong CA'       => [ { %good, upstream_ca_file => "$tls/wrong-ca.crt" }, qr/reason='TLS handshake: [^']*certificate verify failed/ ],
    'no certificate' => [ { %good, upstream_cert_file => '', upstream_key_file => '' }, qr/upstream connection lost .*reason='[^']*certificate required/ ],
    'wrong token'    => [ { %good, upstream_token_file => $bad }, qr/upstream refused the hello: 18/ ],
);
for my $what (sort keys %bad) {
    my ($set, $re) = @{ $bad{$what} };
    my $hp = free_port();
    (my $name = $what) =~ s/\W+/-/g;
    my $n = NvsTest::Daemon->start($pg, socket => "$dir/$name.sock", wait_ready => 0,
        set => { %$set, upstream => "127.0.0.1:$port", node_name => $name, http_listen => "127.0.0.1:$hp" });
    ok($n->wait_log($re, 10 * $slow), "$what: refused, and the log says why") or diag(NvsTest::tail($n->logfile, 10));
    unlike($n->log, qr/streaming from upstream/, "$what: never streams");
    like(http_get($hp, '/readyz'), qr/^HTTP\/1\.[01] 503.*not ready: starting: no position from the upstream/s,
        "$what: /readyz says not ready");
    $n->stop(10);
}
unlike(join('', map { $_->log } $up, $a, $b), qr/\Q$token\E/, 'the token is in no log');

# /readyz follows the upstream connection.
$up->kill('KILL');
$up->wait_exit(5);
my $ready = '';
for (1 .. 50) { $ready = http_get($hport, '/readyz'); last if $ready =~ / 503 /; Time::HiRes::sleep(0.1) }
like($ready, qr/ 503 .*upstream connection down/s, 'upstream gone: node a is not ready, and says why');
$up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);
for (1 .. 100) { $ready = http_get($hport, '/readyz'); last if $ready =~ / 200 /; Time::HiRes::sleep(0.1) }
like($ready, qr/ 200 /, 'upstream back: ready again');
my $id2 = NvsTest::insert_health_event($dbh, node => 'tls-chain-2');
my $ev = $subs[0]->events(1, 10 * $slow);
is($ev->[0] && $ev->[0]{event}{documentKey}{_id}, $id2, 'and the subscriber, still connected, gets the next change');
is($_->stop(20), 0, 'clean stop') for $a, $b, $up;
done_testing();

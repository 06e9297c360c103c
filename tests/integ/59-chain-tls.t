#!/usr/bin/perl
# 59-chain-tls.t - node relays chained over TLS with client certificates and a token: the
# upstream's listener requires both; a node with the right CA, certificate and token
# streams (by address and by name), /readyz follows its upstream connection, and a node
# with the wrong CA, without a certificate or with the wrong token never streams, says
# why, and is not ready. The token never reaches a log. consumer_owners on the upstream
# decides which names a node may load and store.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket ();
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my $tls  = "$dir/tls";
my $dbh  = $pg->dbh;


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
my $port  = NvsTest::free_port();
my %uset  = (listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt", tls_key_file => "$tls/server.key",
    tls_ca_file => "$tls/ca.crt", auth_token_file => $tok, poll_interval_ms => 100, tick_idle_ms => 500);
my $up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);

my %good = (upstream_ca_file => "$tls/ca.crt", upstream_cert_file => "$tls/client.crt",
    upstream_key_file => "$tls/client.key", upstream_token_file => $tok, upstream_timeout_ms => 2000,
    reconnect_min_ms => 50, reconnect_max_ms => 300);
my $hport = NvsTest::free_port();
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
    my $hp = NvsTest::free_port();
    (my $name = $what) =~ s/\W+/-/g;
    my $n = NvsTest::Daemon->start($pg, socket => "$dir/$name.sock", wait_ready => 0,
        set => { %$set, upstream => "127.0.0.1:$port", node_name => $name, http_listen => "127.0.0.1:$hp" });
    ok($n->wait_log($re, 10 * $slow), "$what: refused, and the log says why") or diag(NvsTest::tail($n->logfile, 10));
    unlike($n->log, qr/streaming from upstream/, "$what: never streams");
    like(http_get($hp, '/readyz'), qr/^HTTP\/1\.[01] 503.*not ready: starting: no position from the upstream/s,
        "$what: /readyz says not ready");
    $n->stop(10);
}
# A token or a private key that others can read: the node refuses to start, saying why.
{
    my $ltok = write_file("$dir/loose.token", "$token\n");
    chmod 0640, $ltok;
    my $lkey = write_file("$dir/loose.key", NvsTest::slurp("$tls/client.key"));
    chmod 0644, $lkey;
    for my $case ([ 'a token the group can read', { upstream_token_file => $ltok },
            qr/loose\.token has mode 0640: a token must not be readable by group or others/ ],
        [ 'a key others can read', { upstream_key_file => $lkey },
            qr/loose\.key has mode 0644: a private key must not be readable by others/ ]) {
        my ($what, $set, $re) = @$case;
        my $n = NvsTest::Daemon->start($pg, socket => "$dir/loose.sock", wait_ready => 0,
            set => { %good, %$set, upstream => "127.0.0.1:$port", node_name => 'loose' });
        is($n->wait_exit(20), 78, "$what: refuses to start (78)");
        like($n->log, $re, "$what: says why");
    }
}
# Names are resolved off the event loop; one that does not resolve is a failed attempt like
# any other, and the next address of the list serves.
{
    my $n = NvsTest::Daemon->start($pg, socket => "$dir/dns.sock",
        set => { %good, upstream => "no-such-host.invalid:$port,127.0.0.1:$port", node_name => 'dns' });
    ok($n->wait_log(qr/upstream connection lost address=no-such-host\.invalid:$port reason='cannot resolve no-such-host\.invalid: /,
        10 * $slow), 'a name that does not resolve: the log says so') or diag(NvsTest::tail($n->logfile, 10));
    ok($n->wait_log(qr/streaming from upstream address=127\.0\.0\.1:$port node=dns/, 10 * $slow), 'and the next address serves');
    is($n->stop(10), 0, 'clean stop');
}
unlike(join('', map { $_->log } $up, $a, $b), qr/\Q$token\E/, 'the token is in no log');

# The node's admin socket answers status from its upstream stream.
sub admin_status {
    my ($d) = @_;
    my $s = IO::Socket::UNIX->new(Type => Socket::SOCK_STREAM(), Peer => $d->admin_socket) or return {};
    print $s qq({"cmd":"status"}\n);
    my $line = <$s>;
    return $line ? $NvsTest::JSON->decode($line) : {};
}
my $st = admin_status($a);
ok($st->{ready} && $st->{head} && $st->{upstream_up}, 'status on a node: ready, with a head, upstream up')
    or diag(explain($st));
is($st->{upstream}, "127.0.0.1:$port", 'and names its upstream');
is($st->{generation}, admin_status($up)->{generation}, "the generation is the upstream's");
like((NvsTest::run_cmd([ ($ENV{NVSRELAY_BUILD} || "$FindBin::Bin/../../build") . '/nvsrelay', 'status',
    '--admin-socket', $a->admin_socket ]))[1], qr/^upstream +127\.0\.0\.1:$port \(up, \d+ reconnects\)$/m,
    'nvsrelay status prints the upstream');

# /readyz follows the upstream connection.
$up->kill('KILL');
$up->wait_exit(5);
my $ready = '';
for (1 .. 50) { $ready = http_get($hport, '/readyz'); last if $ready =~ / 503 /; Time::HiRes::sleep(0.1) }
like($ready, qr/ 503 .*upstream connection down/s, 'upstream gone: node a is not ready, and says why');
$st = admin_status($a);
ok(!$st->{ready} && defined $st->{upstream_up} && !$st->{upstream_up}, 'status: not ready, upstream down')
    or diag(explain($st));
$up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);
for (1 .. 100) { $ready = http_get($hport, '/readyz'); last if $ready =~ / 200 /; Time::HiRes::sleep(0.1) }
like($ready, qr/ 200 /, 'upstream back: ready again');
my $id2 = NvsTest::insert_health_event($dbh, node => 'tls-chain-2');
my $ev = $subs[0]->events(1, 10 * $slow);
is($ev->[0] && $ev->[0]{event}{documentKey}{_id}, $id2, 'and the subscriber, still connected, gets the next change');
# A node resolves NVSentinel's {timestamp, eventID} and startAtOperationTime through its
# upstream.
{
    my $eid = $dbh->selectrow_array(q{SELECT max(id) FROM datastore_changelog WHERE record_id::text = ?}, undef, $id);
    my $c = NvsTest::Client->connect($a->socket);
    $c->watch(sid => 3, resumeAfter => { timestamp => '2026-01-01T00:00:00Z', eventID => 0 + $eid });
    my $e = $c->events(1, 10 * $slow, sid => 3);
    is($e->[0] && $e->[0]{event}{documentKey}{_id}, $id2, 'on a node, resumeAfter an eventID starts right after that row');
    # The time of the second change itself: the last tick at or before it precedes it.
    my $at = $dbh->selectrow_array(q{SELECT to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        FROM datastore_changelog WHERE record_id::text = ?}, undef, $id2);
    $c->watch(sid => 4, startAtOperationTime => $at);
    $e = $c->events(2, 10 * $slow, sid => 4);
    ok((grep { $_->{event}{documentKey}{_id} eq $id2 } @$e), 'and startAtOperationTime delivers what followed that time');
    $c->close;
}

# Depth 2: node c chained to node a (plaintext on loopback), two hops from PostgreSQL.
{
    my $cport = NvsTest::free_port();
    my $hp = NvsTest::free_port();
    my $mid = NvsTest::Daemon->start($pg, socket => "$dir/m.sock",
        set => { %good, upstream => "127.0.0.1:$port", node_name => 'mid', listen_tcp => "127.0.0.1:$cport",
            tcp_plaintext => 'on' });
    my $leaf = NvsTest::Daemon->start($pg, socket => "$dir/leaf.sock",
        set => { upstream => "127.0.0.1:$cport", upstream_tls => 'off', node_name => 'leaf',
            http_listen => "127.0.0.1:$hp" });
    like(http_get($hp, '/readyz'), qr/ 200 /, 'a node chained to a node is ready');
    my $c = NvsTest::Client->connect($leaf->socket);
    $c->watch(sid => 1, consumer => 'deep');
    $c->recv_op('bookmark', 10);
    my $id3 = NvsTest::insert_health_event($dbh, node => 'tls-chain-3');
    my $e = $c->events(1, 10 * $slow);
    is($e->[0] && $e->[0]{event}{documentKey}{_id}, $id3, 'two hops: the change arrives');
    my $t = $e->[0]{event}{_id};
    my $u = NvsTest::Client->connect("$dir/up.sock");
    $u->watch(sid => 1, resumeAfter => { _data => substr($t->{_data}, 0, 24) . '0000000000000000' });
    my $ue = $u->events(10, 5, sid => 1);
    my ($same) = grep { $_->{event}{_id}{_data} eq $t->{_data} } @$ue;
    is_deeply($same && $same->{event}, $e->[0]{event}, 'the same event, the same token, as at the top');
    $c->ack(1, $t);
    my $stored;
    for (1 .. 50) {
        $stored = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'mid/leaf/deep'});
        last if defined $stored && $stored ge $t->{_data};
        Time::HiRes::sleep(0.1);
    }
    ok(defined $stored && $stored ge $t->{_data}, "the leaf's consumer is stored as mid/leaf/deep, through both hops");
    $_->close for $c, $u;
    is($_->stop(20), 0, 'clean stop') for $leaf, $mid;
}

# The requests node relays send, by hand on the upstream's socket.
{
    my $c = NvsTest::Client->connect("$dir/up.sock");
    $c->send({ op => 'position', sid => 1, consumer => 'zz/none' });
    my $f = $c->recv_op([ 'position', 'error' ], 10);
    ok($f && $f->{op} eq 'position' && $f->{sid} == 1 && exists $f->{token} && !defined $f->{token},
        'position of a consumer never stored: token null');
    my $t1 = $ev->[0]{event}{_id};
    $c->send({ op => 'store', sid => 2, consumer => 'zz/c', token => $t1 });
    $f = $c->recv_op([ 'stored', 'error' ], 10);
    is($f && $f->{op} . ':' . $f->{sid}, 'stored:2', 'store answered once written');
    my $t0 = { _data => substr($t1->{_data}, 0, 24) . '0000000000000001' };
    $c->send({ op => 'store', sid => 3, consumer => 'zz/c', token => $t0 });
    $c->recv_op([ 'stored', 'error' ], 10);
    $c->send({ op => 'position', sid => 4, consumer => 'zz/c' });
    $f = $c->recv_op([ 'position', 'error' ], 10);
    is($f && $f->{token} && $f->{token}{_data}, $t1->{_data}, 'the stored position, which a lower store did not move back');
    is($dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'zz/c'}), $t1->{_data},
        'in resume_tokens under the name given');
    $c->send({ op => 'position', sid => 5, eventID => 0 + $dbh->selectrow_array(q{SELECT max(id) FROM datastore_changelog}) });
    $f = $c->recv_op([ 'position', 'error' ], 10);
    ok($f && $f->{op} eq 'position' && $f->{token}, 'position of an eventID');
    $c->send({ op => 'position', sid => 6, consumer => 'zz/c', eventID => 1 });
    $f = $c->recv_op([ 'position', 'error' ], 10);
    is($f && $f->{op} . ':' . $f->{code} . ':' . $f->{sid}, 'error:2:6', 'two questions at once: error 2');
    my $d = NvsTest::Client->connect("$dir/up.sock");
    $d->watch(sid => 1, consumer => 'direct');
    $d->recv_op('bookmark', 10);
    $c->send({ op => 'store', sid => 7, consumer => 'direct', token => $t1 });
    $f = $c->recv_op([ 'stored', 'error' ], 10);
    is($f && $f->{op} . ':' . $f->{code}, 'error:2', 'store for a consumer subscribed on the upstream itself: refused');
    $c->send({ op => 'store', sid => 8, consumer => 'zz/c', token => { _data => 'nope' } });
    $f = $c->recv_op([ 'stored', 'error' ], 10);
    is($f && $f->{op} . ':' . $f->{code}, 'error:280', 'a malformed token: error 280');
    $c->ping;
    ok($c->recv_op('pong', 5), 'the connection is still usable');
    $_->close for $c, $d;
}

# consumer_owners on the upstream: a node loads and stores only the names the map gives its
# certificate. "cn:{node}" binds a name's first part to the certificate's CN (client.crt's
# is nvsentinel), so a node that calls itself by another name is refused, says so, and
# still streams to its subscribers that have no consumer name.
{
    my $oport = NvsTest::free_port();
    my $own = NvsTest::Daemon->start($pg, socket => "$dir/own.sock",
        set => { %uset, listen_tcp => "127.0.0.1:$oport", consumer_owners => "hand/* = uid:$<; * = cn:{node}" });
    my %at = (%good, upstream => "127.0.0.1:$oport");
    my $n1 = NvsTest::Daemon->start($pg, socket => "$dir/n1.sock", set => { %at, node_name => 'nvsentinel' });
    my $n2 = NvsTest::Daemon->start($pg, socket => "$dir/n2.sock", set => { %at, node_name => 'impostor' });
    my $c1 = NvsTest::Client->connect($n1->socket);
    $c1->watch(sid => 1, consumer => 'fq');
    my $f = $c1->recv_op([ 'bookmark', 'error' ], 10);
    is($f && $f->{op}, 'bookmark', 'a node whose certificate names it: its consumer starts');
    my $c2 = NvsTest::Client->connect($n2->socket);
    $c2->watch(sid => 1, consumer => 'fq');
    $f = $c2->recv_op([ 'bookmark', 'error' ], 10);
    is($f && $f->{op} . ':' . ($f->{code} // ''), 'error:13', 'a node under another name: its consumer is refused, 13');
    ok($own->wait_log(qr/consumer refused client=c\d+ peer=tls:127\.0\.0\.1:\d+ identity='subject=[^']*CN=nvsentinel[^']*' consumer='impostor\/fq'/, 5),
        'the upstream logs the refusal with the certificate subject');
    ok($n2->wait_log(qr/upstream refused a consumer of this node request=position node=impostor/, 5),
        'and the node logs it');
    $c2->watch(sid => 2);
    ok($c2->recv_op('bookmark', 10), 'the refused node still streams');
    my $idn = NvsTest::insert_health_event($dbh, node => 'owners-chain');
    my $e1 = $c1->events(1, 10 * $slow);
    my $e2 = $c2->events(1, 10 * $slow, sid => 2);
    is($e1->[0] && $e1->[0]{event}{documentKey}{_id}, $idn, 'the allowed consumer gets the change');
    is($e2->[0] && $e2->[0]{event}{documentKey}{_id}, $idn, 'so does the refused node\'s plain subscriber');
    $c1->ack(1, $e1->[0]{event}{_id});
    my $stored;
    for (1 .. 50) {
        $stored = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'nvsentinel/fq'});
        last if defined $stored && $stored ge $e1->[0]{event}{_id}{_data};
        Time::HiRes::sleep(0.1);
    }
    # At or past the acknowledged event: a bookmark after it may move it further.
    ok(defined $stored && $stored ge $e1->[0]{event}{_id}{_data}, 'the allowed node stores its consumer as nvsentinel/fq')
        or diag($stored // 'nothing stored');
    is($dbh->selectrow_array(q{SELECT count(*) FROM resume_tokens WHERE client_name LIKE 'impostor/%'}), 0,
        'nothing stored for the refused one');

    # By hand on the upstream's Unix socket (identity uid): the map decides store and
    # position of a name alike.
    my $h = NvsTest::Client->connect("$dir/own.sock");
    my $t = $e1->[0]{event}{_id};
    $h->send({ op => 'store', sid => 1, consumer => 'nvsentinel/fq', token => $t });
    $f = $h->recv_op([ 'stored', 'error' ], 10);
    is($f && $f->{op} . ':' . ($f->{code} // ''), 'error:13', "store for another identity's name: 13");
    $h->send({ op => 'position', sid => 2, consumer => 'nvsentinel/fq' });
    $f = $h->recv_op([ 'position', 'error' ], 10);
    is($f && $f->{op} . ':' . ($f->{code} // ''), 'error:13', 'position of it: 13');
    $h->send({ op => 'store', sid => 3, consumer => 'hand/x', token => $t });
    $f = $h->recv_op([ 'stored', 'error' ], 10);
    is($f && $f->{op} . ':' . $f->{sid}, 'stored:3', 'store for a name the map gives this uid: stored');
    $h->send({ op => 'position', sid => 4, eventID => 1 });
    $f = $h->recv_op([ 'position', 'error' ], 10);
    isnt($f && $f->{code} // 0, 13, 'a position without a name is no one\'s: not refused');
    ok($own->wait_log(qr/consumer refused client=c\d+ peer=\S+ identity='uid=$< gid=\d+' consumer='nvsentinel\/fq'/, 5),
        'logged with the uid');
    $_->close for $c1, $c2, $h;
    is($_->stop(20), 0, 'clean stop') for $n1, $n2, $own;
}
is($_->stop(20), 0, 'clean stop') for $a, $b, $up;
done_testing();

#!/usr/bin/perl
# 57-chain.t - node relays chained to an upstream relay (daemon/upstream). One
# PostgreSQL, one upstream relay on loopback TCP, two node relays with `upstream` set and
# a small ring (so catch-up goes through upstream cursors), four subscribers on each:
# live, durable, filtered, durable and filtered. A writer inserts and updates while the
# upstream is killed (-9) and restarted, and then PostgreSQL is restarted. Every matching
# change must reach every subscriber once, in commit order; the node relays must hold no
# PostgreSQL session; events must be byte for byte what the upstream sends and tokens
# must resume on either tier; durable positions land in resume_tokens as <node>/<name>.
# n2 lists a second upstream relay after the first and must switch to it; the first is
# also frozen (SIGSTOP) past upstream_timeout_ms, which n1 must notice.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my $dbh  = $pg->dbh;


sub sessions {
    my $h = eval { $pg->dbh } or return -1;
    return scalar $h->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'});
}

my $uport = NvsTest::free_port();
my %uset  = (listen_tcp => "127.0.0.1:$uport", tcp_plaintext => 'on', poll_interval_ms => 100, tick_idle_ms => 500,
    ack_flush_ms => 50, reconnect_min_ms => 50, reconnect_max_ms => 500);
my $up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);
my $u2port = NvsTest::free_port();
my $up2 = NvsTest::Daemon->start($pg, socket => "$dir/up2.sock", set => { %uset, listen_tcp => "127.0.0.1:$u2port" });
# The relays open their sessions over their first second or two: wait for a stable count.
sub stable_sessions {
    my ($v, $same) = (-2, 0);
    for (1 .. 100) {
        my $now = sessions();
        $same = $now == $v ? $same + 1 : 0;
        $v = $now;
        last if $same >= 6;
        Time::HiRes::sleep(0.25);
    }
    return $v;
}
my $upsess = stable_sessions();
cmp_ok($upsess, '>=', 6, "the two upstream relays hold their PostgreSQL sessions ($upsess)");

my $start_tok;
{
    my $c = NvsTest::Client->connect("$dir/up.sock");
    $c->watch(sid => 1);
    my $bm = $c->recv_op('bookmark', 10);
    $start_tok = $bm->{token};
    $c->close;
}
ok($start_tok, 'a start position from the upstream');
# Nothing is written before the writer starts: every change after this id comes after it.
my $start_id = $dbh->selectrow_array('SELECT coalesce(max(id), 0) FROM datastore_changelog');

my @nodes;
for my $n (1, 2) {
    # The PostgreSQL settings of the cluster stay in the environment: a node that used
    # them would show up in pg_stat_activity.
    push @nodes, NvsTest::Daemon->start($pg, socket => "$dir/n$n.sock",
        set => { upstream => "127.0.0.1:$uport" . ($n == 2 ? ",127.0.0.1:$u2port" : ''), upstream_tls => 'off', node_name => "n$n", ring_events => 64,
            upstream_timeout_ms => 2000, reconnect_min_ms => 50, reconnect_max_ms => 500, ack_flush_ms => 50 });
}
like($nodes[0]->log, qr/streaming from upstream address=127\.0\.0\.1:$uport node=n1/, 'node n1 streams from the upstream');
unlike(join('', map { $_->log } @nodes), qr/postgresql connected/i, 'the node relays never connect to PostgreSQL');
is(stable_sessions(), $upsess, "PostgreSQL sees the upstreams' $upsess sessions only, with two node relays up");

# Subscribers: [node index, sid, name, watch options, matches(row) ]
my $filter = [ { '$match' => { 'fullDocument.healthevent.agent' => 'agent-a' } } ];
my @subs;
for my $i (0, 1) {
    my $n = $i + 1;
    for my $s ([ 'live', {} ], [ 'dur', { consumer => "dur" } ], [ 'filt', { pipeline => $filter } ],
        [ 'durfilt', { consumer => "durfilt", pipeline => $filter } ]) {
        my ($name, $opt) = @$s;
        my $c = NvsTest::Client->connect($nodes[$i]->socket);
        $c->watch(sid => 1, resumeAfter => $start_tok, %$opt,
            ($name eq 'live' && $n == 1 ? (fullDocumentBeforeChange => 'whenAvailable') : ()));
        push @subs, { c => $c, name => "n$n/$name", durable => !!$opt->{consumer}, filtered => !!$opt->{pipeline},
            node => $i, got => [], raw => {} };
    }
}

# Reads whatever is there; durable subscribers acknowledge what they got.
sub drain {
    my ($t) = @_;
    my $deadline = NvsTest::now() + $t;
    do {
        for my $s (@subs) {
            while (defined(my $line = $s->{c}->recv_raw(0))) {
                my $f = eval { $NvsTest::JSON->decode($line) } or next;
                if ($f->{op} eq 'event') {
                    push @{ $s->{got} }, $f->{event}{_id}{_data};
                    $s->{raw}{ $f->{event}{_id}{_data} } = $line;
                    $s->{c}->ack(1, $f->{event}{_id}) if $s->{durable} && @{ $s->{got} } % 7 == 0;
                } elsif ($f->{op} eq 'error') {
                    push @{ $s->{errors} }, $f;
                }
            }
        }
        Time::HiRes::sleep(0.02);
    } while (NvsTest::now() < $deadline);
}
drain(0.5);
is(scalar(grep { @{ $_->{errors} || [] } } @subs), 0, 'eight subscribers on two node relays, no error');

# The writer: inserts (agent a or b), and updates of earlier rows, reconnecting through
# the PostgreSQL restart.
my $t_end = NvsTest::now() + 8;
my $wpid = fork // die "fork: $!";
if (!$wpid) {
    my ($h, $n, @ids) = (undef, 0);
    while (NvsTest::now() < $t_end) {
        $h //= eval { $pg->dbh };
        if (!$h) { Time::HiRes::sleep(0.05); next }
        eval {
            $n++;
            if ($n % 5 == 0 && @ids) {
                $h->do(q{UPDATE health_events SET document = jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"') WHERE id = ?},
                    undef, $ids[ int rand @ids ]);
            } else {
                push @ids, NvsTest::insert_health_event($h, node => "chain-$n", agent => $n % 2 ? 'agent-a' : 'agent-b');
            }
            1;
        } or do { eval { $h->disconnect }; $h = undef };
        Time::HiRes::sleep(0.004);
    }
    POSIX::_exit(0);
}

drain(1);
my $mark = length $nodes[0]->log;
my $mark2 = length $nodes[1]->log;
$up->kill('KILL');
$up->wait_exit(5);
drain(0.8);
ok($nodes[1]->wait_log(qr/(?s:.{$mark2}).*streaming from upstream address=127\.0\.0\.1:$u2port/, 10 * $slow),
    'n2 switched to the second upstream of its list');
$up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => \%uset);
ok($nodes[0]->wait_log(qr/(?s:.{$mark}).*streaming from upstream/, 15 * $slow), 'n1 back on the restarted upstream')
    or diag(NvsTest::tail($nodes[0]->logfile, 20));
drain(0.5);
# A frozen upstream (the network to it, as far as n1 can tell): silence past 2 s.
$mark = length $nodes[0]->log;
$up->kill('STOP');
drain(3);
$up->kill('CONT');
ok($nodes[0]->wait_log(qr/(?s:.{$mark}).*upstream connection lost .*reason='nothing received for/, 1),
    'n1 noticed the frozen upstream by its silence')
    or diag(join("\n", grep { !/client|subscription/ } split /\n/, substr($nodes[0]->log, $mark)));
ok($nodes[0]->wait_log(qr/(?s:.{$mark}).*streaming from upstream/, 15 * $slow), 'and streams again once it thaws');
drain(0.5);
my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'restart', $dir, 'fast' ]);
is($rc, 0, 'PostgreSQL restarted mid-stream') or diag($out);
waitpid($wpid, 0);
$dbh = $pg->dbh;
my $sentinel_a = NvsTest::insert_health_event($dbh, node => 'chain-sentinel', agent => 'agent-a');

# The truth: the changelog of health_events after the start position.
my $rows = $dbh->selectall_arrayref(q{SELECT c.id, coalesce(c.new_values->'document'->'healthevent'->>'agent', '')
    FROM datastore_changelog c WHERE c.table_name = 'health_events' AND c.id > ? ORDER BY c.id}, undef, $start_id);
my %all = map { $_->[0] => 1 } @$rows;
my %a   = map { $_->[0] => 1 } grep { $_->[1] eq 'agent-a' } @$rows;
my $deadline = NvsTest::now() + 60 * $slow;
my $sentinel_id = (grep { 1 } sort { $b <=> $a } keys %a)[0];
while (NvsTest::now() < $deadline) {
    drain(0.3);
    last unless grep { !grep { hex(substr($_, 24)) == $sentinel_id } @{ $_->{got} } } @subs;
}
cmp_ok(scalar(keys %all), '>', 200, scalar(keys %all) . ' changes written (' . scalar(keys %a) . ' of agent a)');
for my $s (@subs) {
    my $want = $s->{filtered} ? \%a : \%all;
    my @ids = map { hex(substr($_, 24)) } @{ $s->{got} };
    my %got = map { $_ => 1 } @ids;
    my @lost = grep { !$got{$_} } keys %$want;
    my @extra = grep { !$want->{$_} } @ids;
    ok(!@lost && !@extra && @ids == keys %$want, "$s->{name}: every matching change once (" . scalar(@ids) . ')')
        or diag(scalar(@lost) . ' lost, ' . scalar(@extra) . ' unexpected, ' . scalar(@ids) . ' received of '
            . scalar(keys %$want));
    is_deeply($s->{got}, [ sort @{ $s->{got} } ], "$s->{name}: in commit order");
    ok(!$s->{c}->eof && !@{ $s->{errors} || [] }, "$s->{name}: stayed connected, no error");
}

# Byte for byte: the upstream's own frames for the same positions, with and without the
# pre-image of updates.
for my $case ([ $subs[0], 'whenAvailable' ], [ $subs[4], 'off' ]) {
    my ($s, $before) = @$case;
    my $c = NvsTest::Client->connect("$dir/up.sock");
    $c->watch(sid => 1, resumeAfter => $start_tok, fullDocumentBeforeChange => $before);
    my $ev = $c->events(scalar @{ $s->{got} }, 30 * $slow);
    my @diff = grep { ($s->{raw}{ $_->{event}{_id}{_data} } // '') ne $NvsTest::JSON->encode($_) } @$ev;
    my $n_upd = grep { $_->{event}{operationType} eq 'update' } @$ev;
    is(scalar @$ev, scalar @{ $s->{got} }, "upstream resend for $s->{name} complete");
    ok($n_upd > 0, "$n_upd updates among them");
    $c->close;
    my $c2 = NvsTest::Client->connect("$dir/up.sock");
    $c2->watch(sid => 1, resumeAfter => $start_tok, fullDocumentBeforeChange => $before);
    my @same;
    my $deadline2 = NvsTest::now() + 30 * $slow;
    while (@same < @{ $s->{got} } && NvsTest::now() < $deadline2) {
        my $line = $c2->recv_raw(2) // last;
        push @same, $line if $line =~ /^\{"op":"event"/;
    }
    my @mismatch = grep { my $t = /"_data":"([0-9a-f]{40})"/ ? $1 : ''; ($s->{raw}{$t} // '') ne $_ } @same;
    is(scalar @mismatch, 0, "$s->{name} (fullDocumentBeforeChange $before): byte for byte the upstream's frames ("
        . scalar(@same) . ')') or diag("node:     " . ($s->{raw}{ ($mismatch[0] =~ /"_data":"([0-9a-f]{40})"/)[0] } // '') . "\nupstream: $mismatch[0]");
    $c2->close;
}

# Catch-up from far behind the node's 64-event ring goes through the upstream.
{
    my $c = NvsTest::Client->connect($nodes[1]->socket);
    $c->watch(sid => 5, resumeAfter => $start_tok);
    my $ev = $c->events(scalar keys %all, 60 * $slow, sid => 5);
    is_deeply([ map { $_->{event}{_id}{_data} } @$ev ], $subs[4]{got},
        'resumeAfter an old token on a node: everything, from upstream cursors, as the live subscriber saw it');
    $c->close;
}

# Durable positions: stored upstream as <node>/<consumer>; a reconnect resumes there.
my $dur = $subs[1];
my $last = $dur->{got}[-1];
$dur->{c}->ack(1, { _data => $last });
drain(0.5);
$dur->{c}->close;
my $stored;
for (1 .. 50) {
    $stored = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'n1/dur'});
    last if defined $stored && $stored ge $last;
    Time::HiRes::sleep(0.1);
}
# At its last ack, or past it: once all it was sent is acknowledged, the position also
# covers what it passed since (hub.c, durable_pos).
ok(defined $stored && $stored ge $last, "n1's consumer dur is stored upstream as n1/dur, at or after its last ack")
    or diag('stored ' . ($stored // 'nothing') . ", acked $last");
{
    my $c = NvsTest::Client->connect($nodes[0]->socket);
    $c->watch(sid => 2, consumer => 'dur');
    my $bm = $c->recv_op('bookmark', 10 * $slow);
    # A position write still in flight when it closed may have moved the stored
    # position past what was read above; the resume is at what is stored now.
    my $now = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'n1/dur'});
    ok($bm && $bm->{token}{_data} ge $stored && $bm->{token}{_data} eq $now,
        'the consumer reconnects to n1 and resumes at its stored position')
        or diag('bookmark ' . ($bm ? $bm->{token}{_data} : 'none') . ", stored $stored, now $now");
    my $x = NvsTest::insert_health_event($dbh, node => 'chain-after');
    my $ev = $c->events(1, 10 * $slow, sid => 2);
    is(scalar @$ev, 1, 'and receives the next change');
    ok(@$ev && $ev->[0]{event}{_id}{_data} gt $last, 'not one it had acknowledged');
    $c->close;
}

# A token from a node resumes on the upstream and the other node.
{
    my $tok = $subs[0]{got}[ int(@{ $subs[0]{got} } / 2) ];
    my @after = grep { $_ gt $tok } @{ $subs[0]{got} };
    my $c = NvsTest::Client->connect($nodes[1]->socket);
    $c->watch(sid => 3, resumeAfter => { _data => $tok });
    my $ev = $c->events(scalar @after, 30 * $slow, sid => 3);
    is_deeply([ map { $_->{event}{_id}{_data} } @$ev ], \@after, "n1's token resumes on n2 with nothing skipped");
    $c->close;
}

# A node relay has no changelog to count: count is refused, clearly, and
# the connection goes on (PROTOCOL.md, count).
{
    my $c = NvsTest::Client->connect($nodes[1]->socket);
    $c->send({ op => 'count', table => 'health_events', after => { _data => $subs[0]{got}[0] }, id => 1 });
    my $e = $c->recv_op([ 'error', 'count' ], 10 * $slow) // {};
    is($e->{code}, 59, 'count on a node relay: 59 CommandNotFound') or diag(explain($e));
    like($e->{message} // '', qr/not served by a node relay/, 'the message says why');
    $c->ping;
    ok($c->recv_op('pong', 10), 'the connection stays usable');
    $c->close;
}

# A start position beyond what a node has seen: it cannot ask the database,
# so the client is told to retry (6), and the node goes on serving.
{
    my $last = $subs[0]{got}[-1];
    my $far = substr($last, 0, 8) . sprintf('%016x', NvsTest::token_tick($last) + 100000) . 'ffffffffffffffff';
    my $c = NvsTest::Client->connect($nodes[0]->socket);
    $c->watch(sid => 7, resumeAfter => { _data => $far });
    my $e = $c->recv_op('error', 10 * $slow) // {};
    is($e->{code}, 6, 'resumeAfter beyond a node\'s stream: 6, retry') or diag(explain($e));
    $c->close;
    my $c2 = NvsTest::Client->connect($nodes[0]->socket);
    $c2->ping;
    ok($c2->recv_op('pong', 10), 'and the node still serves');
    $c2->close;
}

is(stable_sessions(), $upsess, "still only the upstreams' sessions on PostgreSQL ($upsess)");

# An event frame larger than max_frame_bytes (which bounds what a relay
# reads): an update with a 700 kB document carries it twice, with its
# pre-image. The node takes it from upstream and serves it.
{
    my $u3port = NvsTest::free_port();
    my $up3 = NvsTest::Daemon->start($pg, socket => "$dir/up3.sock",
        set => { %uset, listen_tcp => "127.0.0.1:$u3port", max_frame_bytes => 1048576 });
    my $n3 = NvsTest::Daemon->start($pg, socket => "$dir/n3.sock", set => { upstream => "127.0.0.1:$u3port",
        upstream_tls => 'off', node_name => 'n3', max_frame_bytes => 1048576, reconnect_min_ms => 50 });
    ok($n3->wait_log(qr/streaming from upstream/, 15 * $slow), 'a node with max_frame_bytes 1 MiB streams');
    my $c = NvsTest::Client->connect($n3->socket);
    $c->watch(sid => 1, fullDocumentBeforeChange => 'whenAvailable');
    $c->recv_op('bookmark', 10 * $slow);
    my $id = NvsTest::insert_health_event($dbh, node => 'big-1');
    $dbh->do(q{UPDATE health_events SET document = document || jsonb_build_object('pad', repeat('x', 700000)) WHERE id = ?},
        undef, $id);
    $dbh->do(q{UPDATE health_events SET document = document || '{"v": 2}' WHERE id = ?}, undef, $id);
    my $ev = $c->events(3, 20 * $slow, sid => 1);
    is(scalar @$ev, 3, 'the node delivers events whose frames pass max_frame_bytes');
    unlike($n3->log, qr/frame over/, '... without failing its upstream connection');
    $c->close;
    is($n3->stop(20), 0, 'that node stops cleanly');
    is($up3->stop(20), 0, 'its upstream stops cleanly');
}
for my $i (0, 1) { is($nodes[$i]->stop(20), 0, 'node n' . ($i + 1) . ' stops cleanly') }
is($up->stop(20), 0, 'the upstream stops cleanly');
is($up2->stop(20), 0, 'the second upstream stops cleanly');

# The upstream's database restored to before the node's head (its ticks
# from there on gone). The restarted upstream's first tick leaves a gap past
# them, so the node's head is a lost tick below the upstream's head: it is
# served from the tick before (as after a crash), the node's subscriber
# gets the change again and what follows, no error.
{
    my $u4port = NvsTest::free_port();
    my %u4 = (%uset, listen_tcp => "127.0.0.1:$u4port");
    my $up4 = NvsTest::Daemon->start($pg, socket => "$dir/up4.sock", set => \%u4);
    my $n4 = NvsTest::Daemon->start($pg, socket => "$dir/n4.sock", set => { upstream => "127.0.0.1:$u4port",
        upstream_tls => 'off', node_name => 'n4', reconnect_min_ms => 50, reconnect_max_ms => 300 });
    ok($n4->wait_log(qr/streaming from upstream/, 15 * $slow), 'node n4 streams');
    my $c = NvsTest::Client->connect($n4->socket);
    $c->watch(sid => 1);
    $c->recv_op('bookmark', 10 * $slow);
    my $before = NvsTest::insert_health_event($dbh, node => 'before-restore');
    my $ev = $c->events(1, 10 * $slow, sid => 1);
    is(scalar @$ev, 1, 'an event through n4');
    is($up4->stop(20), 0, 'its upstream stops');
    my $tick = NvsTest::token_tick($ev->[0]{event}{_id}{_data});
    $dbh->do('DELETE FROM nvsrelay.tick WHERE tick_id >= ?', undef, $tick);
    $up4 = NvsTest::Daemon->start($pg, socket => "$dir/up4.sock", set => \%u4);
    my $after = NvsTest::insert_health_event($dbh, node => 'after-restore');
    my @ids = map { $_->{event}{documentKey}{_id} } @{ $c->events(2, 20 * $slow, sid => 1) };
    is_deeply(\@ids, [ $before, $after ], "n4's subscriber gets the change again, then the next one");
    is(scalar @{ $c->errors }, 0, '... and no error frame');
    $c->close;
    is($n4->stop(20), 0, 'n4 stops cleanly');
    is($up4->stop(20), 0, 'its upstream stops cleanly');
}
done_testing();

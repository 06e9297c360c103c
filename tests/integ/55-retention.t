#!/usr/bin/perl
# 55-retention.t - the changelog stays bounded: rows and ticks every live
# durable consumer acknowledged are pruned; a consumer that is behind holds
# them; an idle consumer stops holding them (with a log line); a component
# still on NVSentinel's own watcher holds the rows after its eventID; a
# position that was pruned gets 286 naming the oldest one; under sustained
# writes the table size stays bounded; the row cap never prunes what the
# relay itself has not read yet, and a subscriber it catches in the middle
# of a batch gets 286, never a gap; a standby relay (and a node relay
# chained to it) whose live position was pruned ends its subscriptions with
# 286 once and streams on from the newest tick.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { prune_interval_s => 1, retention_floor_s => 0,
    consumer_idle_hours => 1, ack_flush_ms => 50, prune_chunk_rows => 100, tick_idle_ms => 200,
    ring_events => 16 });
my $dbh = $pg->dbh();
sub count { ($dbh->selectrow_array("SELECT count(*) FROM $_[0]"))[0] }
sub wait_until {
    my ($cond, $timeout) = @_;
    my $end = NvsTest::now() + $timeout;
    while (NvsTest::now() < $end) { return 1 if $cond->(); select(undef, undef, undef, 0.2) }
    return 0;
}
# n health events in one transaction, node NAME-1 .. NAME-n, document the
# SQL expression doc (over g, the row's number).
sub insert_series {
    my ($n, $name, $doc) = @_;
    $dbh->do("INSERT INTO health_events (node_name, event_type, severity, recommended_action, document)"
        . " SELECT ? || '-' || g, 'GpuXidError', 'GPU', 'NONE', $doc FROM generate_series(1, ?::int) g",
        undef, $name, $n);
}
sub write_rows {
    my ($n, $tag) = @_;
    for my $i (1 .. $n / 10) {
        $dbh->begin_work;
        NvsTest::insert_health_event($dbh, node => "$tag-$i-$_") for 1 .. 10;
        $dbh->commit;
    }
}

# An acking consumer: everything it acknowledged goes.
my $fast = NvsTest::Client->connect($d->socket);
$fast->watch(consumer => 'fast');
$fast->recv_op('bookmark', 10);
# A consumer that stays behind, and connected.
my $slow = NvsTest::Client->connect($d->socket);
$slow->watch(consumer => 'slow');
$slow->recv_op('bookmark', 10);
write_rows(300, 'r');
my $ev = $slow->events(300, 20);
is(scalar @$ev, 300, 'slow consumer received 300 events');
$slow->ack(1, $ev->[149]{event}{_id});
my $fe = $fast->events(300, 20);
$fast->ack(1, $fe->[-1]{event}{_id});
# Pruning works by batch: the rows of the slow consumer's current batch stay
# even where it has passed them.
ok(wait_until(sub { count('datastore_changelog') < 300 }, 15), 'rows both consumers acknowledged are pruned');
my ($low) = $dbh->selectrow_array('SELECT min(id) FROM datastore_changelog');
my $held = NvsTest::token_cid($ev->[150]{event}{_id}{_data});
cmp_ok($low, '<=', $held, 'the rows after the slow consumer\'s ack are kept');
cmp_ok(count('datastore_changelog'), '>=', 150, '... all 150 of them');

# The slow consumer disconnects and resumes: nothing lost.
$slow->close;
$slow = NvsTest::Client->connect($d->socket);
$slow->watch(consumer => 'slow');
my $rest = $slow->events(150, 20);
is_deeply([ map { $_->{event}{_id}{_data} } @$rest ], [ map { $_->{event}{_id}{_data} } @$ev[150 .. 299] ],
    'the slow consumer resumes with the 150 kept events');
$slow->ack(1, $rest->[-1]{event}{_id});

# A pruned position: 286 naming the oldest available one.
ok(wait_until(sub { count('datastore_changelog') == 0 }, 15), 'everything acknowledged is pruned');
ok(wait_until(sub { ($dbh->selectrow_array('SELECT min(tick_id) FROM nvsrelay.tick'))[0] > 3 }, 10), 'old ticks pruned');
# Ticks written once the changelog is empty still bound every id seen.
my ($t_empty) = $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick');
ok(wait_until(sub { ($dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick'))[0] > $t_empty + 1 }, 10), 'ticks go on with an empty changelog');
my ($newest_max) = $dbh->selectrow_array('SELECT max_id FROM nvsrelay.tick ORDER BY tick_id DESC LIMIT 1');
cmp_ok($newest_max, '>=', NvsTest::token_cid($fe->[-1]{event}{_id}{_data}), '... and their max_id does not fall back to 0');
my $c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => $ev->[0]{event}{_id});
my $e = $c->recv_op('error', 10);
is($e->{code}, 286, 'a pruned position gets ChangeStreamHistoryLost');
like($e->{message}, qr/oldest available position is \{"_data":"([0-9a-f]{40})"\}/, '... naming the oldest position');
my ($oldest) = $e->{message} =~ /"_data":"([0-9a-f]{40})"/;
# The same loss through NVSentinel's position format: rows after that eventID
# were pruned by the relay, not by NVSentinel's cleanup.
$c->watch(sid => 2, resumeAfter => { timestamp => '2026-11-25T10:00:00Z', eventID => NvsTest::token_cid($ev->[0]{event}{_id}{_data}) });
$e = $c->recv_op('error', 10);
is($e->{code}, 286, 'an NVSentinel eventID whose successors the relay pruned: still 286');
like($e->{message}, qr/NVSentinel position \(eventID \d+\).*oldest available position/, '... naming the oldest position');
# eventID 0 is "from the start of what is retained": the oldest position.
$c->watch(sid => 3, resumeAfter => { eventID => 0 });
my $b = $c->recv_op([ 'bookmark', 'error' ], 10) // {};
# Ticks go on being pruned meanwhile, so the oldest position may have moved
# on since the 286 above: between that one and the oldest tick kept now.
my $start = ($b->{token} // {})->{_data} // '';
my ($lo_now) = $dbh->selectrow_array('SELECT min(tick_id) FROM nvsrelay.tick');
ok($start =~ /^[0-9a-f]{40}$/ && substr($start, 0, 8) eq substr($oldest, 0, 8) && substr($start, 24) eq substr($oldest, 24)
   && NvsTest::token_tick($start) >= NvsTest::token_tick($oldest) && NvsTest::token_tick($start) <= $lo_now,
   'eventID 0 starts at the oldest available position') or diag("got $start, oldest was $oldest, oldest tick now $lo_now");

# An idle consumer no longer holds retention; an NVSentinel watcher does.
my ($tok) = $fe->[0]{event}{_id}{_data};
$dbh->do(q{INSERT INTO resume_tokens (client_name, resume_token, last_updated)
  VALUES ('gone', jsonb_build_object('token', ?::text), now() - interval '2 hours')}, undef, $tok);
ok($d->wait_log(qr/no longer holds the changelog back consumer='gone'/, 10), 'the idle consumer is logged once');
$slow->close;
$fast->close;
my ($maxid) = $dbh->selectrow_array('SELECT last_value FROM datastore_changelog_id_seq');
$dbh->do(q{INSERT INTO resume_tokens (client_name, resume_token) VALUES ('event-exporter',
  jsonb_build_object('timestamp', '2026-11-25T10:00:00Z', 'eventID', ?::bigint))}, undef, $maxid);
write_rows(50, 'legacy');
sleep 3;
is(count('datastore_changelog'), 50, 'rows after an NVSentinel watcher\'s eventID are kept');
$dbh->do(q{DELETE FROM resume_tokens WHERE client_name = 'event-exporter'});

# Sustained writes with one acking consumer (the others are reset, as
# resume-control does): the table stays bounded.
$dbh->do(q{DELETE FROM resume_tokens WHERE client_name <> 'fast'});
$fast = NvsTest::Client->connect($d->socket);
$fast->watch(consumer => 'fast');
my ($max, $written) = (0, 0);
for my $round (1 .. 10) {
    write_rows(100, "s$round");
    $written += 100;
    my $got = $fast->events(100, 10);
    $fast->ack(1, $got->[-1]{event}{_id}) if @$got;
    select(undef, undef, undef, 0.3);
    my $n = count('datastore_changelog');
    $max = $n if $n > $max;
}
note("sustained: $written rows written, changelog peaked at $max rows");
cmp_ok($max, '<', $written / 2, "changelog bounded under sustained writes (peak $max of $written)");
is($d->stop, 0, 'clean stop');

# The relay's own reader is never pruned past.  A batch of 30,000 rows read
# one at a time takes it seconds; the row cap (500) and the rows written
# right after it would move the horizon past it within one prune interval,
# and what the reader had not read yet no subscriber would ever get.
$d = NvsTest::Daemon->start($pg, set => { prune_interval_s => 1, retention_floor_s => 0,
    retention_max_rows => 500, batch_rows => 1 });
my $after = NvsTest::Client->connect($d->socket);
$after->watch(pipeline => [ { '$match' => { 'fullDocument.healthevent.agent' => 'watched' } } ]);
$after->recv_op('bookmark', 10);
insert_series(30000, 'bulk', q{jsonb_build_object('healthevent',
    jsonb_build_object('agent', CASE WHEN g % 100 = 0 THEN 'watched' ELSE 'bulk' END))});
insert_series(1000, 'after', q{'{"healthevent":{"agent":"watched"}}'::jsonb});
my $got = $after->events(1300, 90);
is(scalar @$got, 1300, 'every watched event of a large batch and after it arrives while the row cap prunes');
# The batch before the horizon's tick stays (a reader in it keeps its
# rows): the next batch moves the horizon on.
write_rows(600, 'next');
ok(wait_until(sub { count('datastore_changelog') < 10000 }, 30), 'the row cap prunes once the reader has passed');
unlike($d->log, qr/live read failed/, 'the reader never found its position pruned');

# A subscriber the pruning catches in the middle of a batch stops with 286
# naming where it got to; it never walks on over rows deleted under it.
# $lag reads nothing, so it stops a few hundred KB into a batch of 20,000
# (its output queue), behind the ring; the cap then prunes that batch.
my $lag = NvsTest::Client->connect($d->socket);
$lag->watch();
$lag->recv_op('bookmark', 10);
my $seen = NvsTest::Client->connect($d->socket);
$seen->watch(pipeline => [ { '$match' => { 'fullDocument.healthevent.agent' => 'after-lag' } } ]);
$seen->recv_op('bookmark', 10);
insert_series(20000, 'lag', q{jsonb_build_object('healthevent', jsonb_build_object('agent', 'lag', 'nodeName', 'lag-' || g))});
for my $round (1 .. 2) {
    insert_series(1000, 'after-lag', q{'{"healthevent":{"agent":"after-lag"}}'::jsonb});
    is(scalar @{ $seen->events(1000, 90) }, 1000, "the relay read past the batch ($round)");
}
ok(wait_until(sub { count('datastore_changelog') < 2500 }, 60), 'the batch the subscriber is in is pruned');
my $lagged = $lag->events(25000, 60);
my @nums = map { $_->{event}{fullDocument}{healthevent}{nodeName} // '' } @$lagged;
# It started at the relay's head, which on a slow machine may not have
# passed the 'next' rows yet: those come first, and are no gap.
shift @nums while @nums && $nums[0] =~ /^next-/;
my $k = 0;
$k++ while $k < @nums && $nums[$k] eq 'lag-' . ($k + 1);
cmp_ok($k, ">", 0, "the subscriber got the start of the batch ($k events)") or diag("got: @nums[0 .. ($#nums < 5 ? $#nums : 5)]");
is($k, scalar @nums, 'and nothing after a gap: the events it got are the batch from its start, in order');
my ($err) = grep { ($_->{op} // '') eq 'error' } @{ $lag->{skipped} || [] };
is($err && $err->{code}, 286, 'then ChangeStreamHistoryLost') or diag($NvsTest::JSON->encode($lagged->[-1] || {}));
like($err ? $err->{token}{_data} : '', qr/^[0-9a-f]{40}$/, '... with the position it reached');
is($d->stop, 0, 'clean stop');

# A standby relay's reader is not the pruning relay's to wait for: the
# leader's row cap prunes past a standby that was stopped.  When it runs
# again its live position is gone.  Every subscription it serves, and
# through a node relay chained to it, ends with 286 (once, not a read
# failing on every tick), and both go on streaming from the newest tick.
$d = NvsTest::Daemon->start($pg, set => { prune_interval_s => 1, retention_floor_s => 0, retention_max_rows => 100 });
my $sport = NvsTest::free_port();
my $sb = NvsTest::Daemon->start($pg, socket => $pg->dir . '/standby.sock',
    set => { poll_interval_ms => 100, listen_tcp => "127.0.0.1:$sport", tcp_plaintext => 'on' });
my $node = NvsTest::Daemon->start($pg, socket => $pg->dir . '/node.sock', set => { upstream => "127.0.0.1:$sport",
    upstream_tls => 'off', node_name => 'n1', reconnect_min_ms => 50, reconnect_max_ms => 500 });
ok($d->wait_log(qr/ticker elected/, 10), 'the first relay ticks and prunes');
my @w = map { my $c = NvsTest::Client->connect($_->socket); $c->watch(); $c->recv_op('bookmark', 10); $c } ($sb, $node);
NvsTest::insert_health_event($dbh, node => 'before-stop');
is(scalar @{ $_->events(1, 10) }, 1, 'the standby and the node relay deliver') for @w;
$sb->kill('STOP');
write_rows(600, 'gone');
ok(wait_until(sub { count('datastore_changelog') < 400 }, 30), 'the leader prunes what the stopped standby has not read');
$sb->kill('CONT');
for my $i (0, 1) {
    my $got = $w[$i]->events(600, 30);
    my ($e) = grep { ($_->{op} // '') eq 'error' } @{ $w[$i]->skipped || [] };
    is($e && $e->{code}, 286, ('standby', 'node relay')[$i] . ': its subscriber gets ChangeStreamHistoryLost')
        or diag(scalar(@$got) . ' events, frames: ' . $NvsTest::JSON->encode($w[$i]->skipped || []));
}
ok($sb->wait_log(qr/live position \S+ was pruned before this relay read it/, 10), 'the standby says why');
ok($node->wait_log(qr/upstream no longer has this relay's head/, 10), 'the node relay says why');
# New subscribers get what is written from now on, on both.
my @n;
for my $dd ($sb, $node) {
    my $c;
    for (1 .. 50) {
        $c = NvsTest::Client->connect($dd->socket);
        $c->watch();
        my $f = $c->recv_op([ 'bookmark', 'error' ], 10);
        last if $f && $f->{op} eq 'bookmark';
        $c->close;
        select(undef, undef, undef, 0.2);
    }
    push @n, $c;
}
my @after = map { NvsTest::insert_health_event($dbh, node => "after-loss-$_") } 1 .. 3;
for my $i (0, 1) {
    is_deeply([ map { $_->{event}{documentKey}{_id} } @{ $n[$i]->events(3, 20) } ], \@after,
        ('standby', 'node relay')[$i] . ' streams again from the newest tick');
}
my @lines = $sb->log =~ /live read failed|was pruned before this relay read it/g;
is(scalar @lines, 1, 'one log line on the standby, not one per tick');
is($_->stop, 0, 'clean stop') for $node, $sb, $d;
done_testing();

#!/usr/bin/perl
# 22-large-batch.t - batches of thousands of rows read in pages of 7: the
# first page of a batch comes from the batch query, the rest from walking the
# changelog's primary key (nvsrelay.batch_walk), so a wrong walk shows here.
# Six transactions write health and maintenance events with interleaved ids;
# four commit at once (a batch of thousands of rows), one stays open across
# several ticks and commits later (its ids lie among those of earlier
# batches), one rolls back; small commits tick in between, and a changelog row
# without an xid (as written before the relay existed) must never appear.  A
# live subscriber per table (the relay's unfiltered reader, through the ring)
# and, after a restart with an empty ring, catch-up subscribers (pages
# filtered by table; one also with a $match) must each get exactly the
# committed rows: the batch of each row, in id order, compared against the
# ticks' snapshots in the database, and as the same sequence.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 8 : $ENV{NVSRELAY_SANITIZE} ? 3 : 1;
# Once a tick is in flight, ticks at most every 500 ms, so commits close
# together share one batch.
my %set = (batch_rows => 7, tick_min_interval_ms => 500);
# track_functions: the test counts the calls of nvsrelay.batch_walk.
my $pg  = NvsTest::Pg->start(conf => { track_functions => "'all'" });
# A ring for everything, so the live subscribers get what the live reader read;
# they are not read while the rows are written, so no soft output limit.
my $d   = NvsTest::Daemon->start($pg, set => { %set, ring_events => 65536, client_output_soft_limit => 0 });
my $dbh = $pg->dbh();

sub tok  { $_[0]{event}{_id}{_data} }
sub tick { NvsTest::token_tick(tok($_[0])) }
sub clid { NvsTest::token_cid(tok($_[0])) }
sub desc { my ($e) = @_; join ':', tick($e), clid($e), $e->{event}{documentKey}{_id}, $e->{event}{operationType} }

# The live subscribers, one per table, from the head before any write.
my $lh = NvsTest::Client->connect($d->socket);
$lh->watch(sid => 1, table => 'health_events');
my $bm = $lh->recv_op('bookmark', 10 * $slow);
ok($bm, 'live health_events subscriber');
my $start = $bm->{token};
my $lm = NvsTest::Client->connect($d->socket);
$lm->watch(sid => 2, table => 'maintenance_events');
ok($lm->recv_op('bookmark', 10 * $slow), 'live maintenance_events subscriber');
my ($first_id) = $dbh->selectrow_array('SELECT coalesce(max(id), 0) FROM datastore_changelog');

# --- the writes ------------------------------------------------------------------
my @tx = map { $pg->dbh(autocommit => 0) } 0 .. 5;   # 0-3 commit together, 4 is held, 5 rolls back
my (@rows, @own_health, %committed);                  # per transaction: [table, record id, op]
my $mseq = 0;
sub write_some {
    my ($t, $h) = @_;
    my $r = rand;
    if ($r < 0.3) {
        my ($id) = $h->selectrow_array(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status,
            event_received_timestamp, document) VALUES (?, 'aws', 'walk', ?, 'DETECTED', now(), '{"status": "DETECTED"}')
            RETURNING id}, undef, 'walk-m-' . ++$mseq, "walk-t$t");
        push @{ $rows[$t] }, [ 'maintenance_events', $id, 'insert' ];
    } elsif ($r < 0.36 && $own_health[$t]) {
        my $id = $own_health[$t][ int rand @{ $own_health[$t] } ];
        $h->do(q{UPDATE health_events SET node_quarantined = 'Quarantined', document = jsonb_set(document,
            '{healtheventstatus,nodequarantined}', '"Quarantined"') WHERE id = ?}, undef, $id);
        push @{ $rows[$t] }, [ 'health_events', $id, 'update' ];
    } else {
        my $id = NvsTest::insert_health_event($h, node => "walk-t$t");
        push @{ $own_health[$t] }, $id;
        push @{ $rows[$t] }, [ 'health_events', $id, 'insert' ];
    }
}
# Waits for a tick that sees the last changelog row written; returns it.
sub covered {
    for (1 .. 200 * $slow) {
        my ($tick) = $dbh->selectrow_array(q{SELECT min(t.tick_id) FROM nvsrelay.tick t, datastore_changelog c
            WHERE c.id = (SELECT max(id) FROM datastore_changelog) AND pg_visible_in_snapshot(c.xid, t.snap)});
        return $tick if $tick;
        select(undef, undef, undef, 0.02);
    }
    return undef;
}
my $t0 = NvsTest::now();
for my $round (1 .. 350) {
    for my $t (0 .. 5) {
        write_some($t, $tx[$t]) for 1 .. 1 + int rand 4;
    }
    # Small commits now and then: ticks while the large transactions are open.
    if ($round % 20 == 0) {
        my $t = 6 + $round / 20;
        write_some($t, $dbh);
        $committed{$t} = 1;
    }
    # A changelog row with a NULL xid, as NVSentinel wrote before the relay.
    $dbh->do(q{INSERT INTO datastore_changelog (table_name, record_id, operation, new_values, xid)
        VALUES ('health_events', gen_random_uuid(), 'INSERT', '{"document": {"orphan": true}}', NULL)}) if $round == 170;
}
# Right after a tick, so the four commits share the next one.
write_some(99, $dbh);
$committed{99} = 1;
covered();
$tx[$_]->commit, $committed{$_} = 1 for 0 .. 3;
$tx[5]->rollback;
for (1 .. 3) {                                  # the held transaction stays open across ticks
    select(undef, undef, undef, 0.6);
    my $t = 100 + $_;
    write_some($t, $dbh);
    $committed{$t} = 1;
    write_some(4, $tx[4]) for 1 .. 20;
}
$tx[4]->commit;
$committed{4} = 1;
write_some(200, $dbh);
$committed{200} = 1;
$_->disconnect for @tx;
my @mine = map { @{ $rows[$_] } } grep { $rows[$_] } sort { $a <=> $b } keys %committed;
note(sprintf 'wrote %d committed and %d rolled-back rows in %.1f s', scalar @mine, scalar @{ $rows[5] },
    NvsTest::now() - $t0);

# The expected stream, from the database: each row in the batch of the first
# tick whose snapshot sees its transaction, by tick, then changelog id.  Wait
# for a tick that sees the last commit first.
ok(covered(), 'a tick covers the last commit');
my $oracle = $dbh->selectall_arrayref(q{
    SELECT c.table_name, (SELECT min(t.tick_id) FROM nvsrelay.tick t WHERE pg_visible_in_snapshot(c.xid, t.snap)) AS tk,
           c.id, c.record_id::text, lower(c.operation)
    FROM datastore_changelog c WHERE c.id > ? AND c.xid IS NOT NULL ORDER BY 2, 3}, undef, $first_id);
my %want = (health_events => [], maintenance_events => []);
push @{ $want{ $_->[0] } }, join ':', @$_[ 1 .. 4 ] for @$oracle;
is_deeply([ sort map { "$_->[0]:$_->[3]:$_->[4]" } @$oracle ], [ sort map { join ':', @$_ } @mine ],
    'the changelog holds exactly the committed rows (none rolled back, none without an xid)');
my %batch;
$batch{ $_->[1] }++ for @$oracle;
my ($biggest) = sort { $b <=> $a } values %batch;
# The first of the four commits may tick at once (a quiet ticker has no
# floor); the others then share the next tick: over a thousand rows either way.
cmp_ok($biggest, '>=', 1000, "the largest batch has $biggest rows (" . scalar(keys %batch) . ' batches)');
my %held = map { $_->[1] => 1 } @{ $rows[4] };
my @held_ticks = do { my %s; grep { !$s{$_}++ } map { $_->[1] } grep { $held{ $_->[3] } && $_->[0] eq 'health_events' } @$oracle };
my ($big_tick) = grep { $batch{$_} == $biggest } keys %batch;
ok(@held_ticks == 1 && $held_ticks[0] > $big_tick, 'the held transaction came in a later batch than the large one');

# Reads $n events of stream $sid, then makes sure nothing more comes.
sub read_all {
    my ($c, $sid, $n) = @_;
    my $ev = $c->events($n, 120 * $slow, sid => $sid);
    my $extra = $c->events(1, 1, sid => $sid);
    return ([ map { desc($_) } @$ev ], scalar @$extra, $ev);
}

my ($got, $extra, $hev) = read_all($lh, 1, scalar @{ $want{health_events} });
is_deeply($got, $want{health_events}, 'live health_events: every committed row, each in its batch, in token order');
is($extra, 0, '... and nothing more');
my @toks = map { tok($_) } @$hev;
is_deeply(\@toks, [ sort @toks ], '... tokens increasing');
($got, $extra) = read_all($lm, 2, scalar @{ $want{maintenance_events} });
is_deeply($got, $want{maintenance_events}, 'live maintenance_events: the same');
is($extra, 0, '... and nothing more');
my %live_health = map { desc($_) => $_ } @$hev;
is($d->stop, 0, 'first relay stops');
unlike($d->log, qr/ (?:err|warning) /, 'no error or warning logged');
# Calls of batch_walk, once they reach $min: the relay's backends report them as
# they go idle or exit, which may be just after the daemon has.
sub walks {
    my ($min) = @_;
    my ($n, $deadline) = (0, NvsTest::now() + 10 * $slow);
    do {
        $n = $dbh->selectrow_array(q{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = 'batch_walk'});
        return $n if $n >= $min;
        select(undef, undef, undef, 0.1);
    } while (NvsTest::now() < $deadline);
    return $n;
}
my $walks = walks(@$oracle / 7 / 2);
# Pages after the first of a batch are walked: about one call per 7 rows.
cmp_ok($walks, '>=', @$oracle / 7 / 2, "the live reader walked ($walks calls for " . scalar(@$oracle) . ' rows)');

# --- catch-up after a restart: an empty ring, every page from PostgreSQL -----------
$d = NvsTest::Daemon->start($pg, set => { %set, ring_events => 16 });
my @nodes = ('walk-t1', 'walk-t4', 'walk-t102');
my %sub = (
    health => [ 1, 'health_events', undef, $want{health_events} ],
    matched => [ 2, 'health_events', [ { '$match' => { 'fullDocument.healthevent.nodeName' => { '$in' => \@nodes } } } ],
        [ grep { my $e = $live_health{$_}; grep { $_ eq ($e->{event}{fullDocument}{healthevent}{nodeName} // '') } @nodes }
            @{ $want{health_events} } ] ],
    maintenance => [ 3, 'maintenance_events', undef, $want{maintenance_events} ],
);
cmp_ok(scalar @{ $sub{matched}[3] }, '>', 500, 'the $match selects ' . scalar(@{ $sub{matched}[3] }) . ' events');
my %cli;
for my $name (sort keys %sub) {
    my ($sid, $table, $pipeline) = @{ $sub{$name} };
    $cli{$name} = NvsTest::Client->connect($d->socket);
    $cli{$name}->watch(sid => $sid, table => $table, resumeAfter => $start, $pipeline ? (pipeline => $pipeline) : ());
}
for my $name (sort keys %sub) {
    my ($sid, $table, undef, $want) = @{ $sub{$name} };
    ($got, $extra) = read_all($cli{$name}, $sid, scalar @$want);
    is_deeply($got, $want, "catch-up $name: exactly the live sequence");
    is($extra, 0, '... and nothing more');
    is_deeply($cli{$name}->errors, [], '... no error');
}
is($d->stop, 0, 'second relay stops');
unlike($d->log, qr/ (?:err|warning) /, 'no error or warning logged');
my $read = 0;
$read += @{ $_->[3] } for values %sub;
my $more = walks($walks + $read / 7 / 2) - $walks;
cmp_ok($more, '>=', $read / 7 / 2, "the catch-up reads walked ($more calls for $read events)");
done_testing();

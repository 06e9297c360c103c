#!/usr/bin/perl
# 12-long-transaction.t - long transactions with many rows stay open across
# many ticks and head probes while short ones commit and are delivered; when
# they commit, every one of their rows arrives once, in changelog id order,
# in the batch of the tick that first sees them.  The long ones write the
# changelog directly, without the capture trigger's NOTIFY, and the idle tick
# is far away: only the head probe can notice their commits, in each of its
# cases (committed after the last tick between two transactions still open,
# and open at the last tick).  A consumer replaying it all from PostgreSQL
# in small pages, from before the ring, gets the same sequence.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg = NvsTest::Pg->start();
my $d  = NvsTest::Daemon->start($pg, set => { poll_interval_ms => 50, tick_idle_ms => 600000, batch_rows => 64,
    ring_events => 256 });
my $dbh = $pg->dbh();

sub token_id { NvsTest::token_cid($_[0]{event}{_id}{_data}) }
sub ticks { scalar $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick') }

my $c = NvsTest::Client->connect($d->socket);
$c->watch(sid => 1, table => 'health_events');
my $bm = $c->recv_op('bookmark', 10);
ok($bm, 'live subscriber started');
my $start = $bm->{token};

# A long transaction: its own session, rows written straight into the
# changelog in the capture trigger's shape, no NOTIFY.
sub long_txn {
    my $h = $pg->dbh(autocommit => 0);
    my ($xid) = $h->selectrow_array('SELECT pg_current_xact_id()::text');
    return { dbh => $h, xid => $xid };
}
sub long_rows {
    my ($t, $n) = @_;
    $t->{dbh}->do(q{INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
      SELECT 'health_events', u, 'INSERT', jsonb_build_object('id', u, 'document', jsonb_build_object('xid', ?::text, 'g', g))
      FROM generate_series(1, ?::int) g, LATERAL (SELECT gen_random_uuid() AS u) r}, undef, $t->{xid}, $n);
}
# The changelog ids a transaction wrote, ascending: the order it must arrive in.
sub ids_of {
    my ($t) = @_;
    return $dbh->selectcol_arrayref('SELECT id FROM datastore_changelog WHERE xid = ?::xid8 ORDER BY id', undef, $t->{xid});
}

my (@expect, @got);
# Commits one thing and waits for exactly its rows, so the expected order is
# the commit order (two commits in one tick would be ordered by id).
sub deliver {
    my ($label, $ids, $timeout) = @_;
    my $ev = $c->events(scalar @$ids, $timeout || 20, sid => 1);
    push @got, map { token_id($_) } @$ev;
    push @expect, @$ids;
    is_deeply([ map { token_id($_) } @$ev ], $ids, "$label: " . scalar(@$ids) . ' rows, once, in id order');
}
sub quick {
    my ($label) = @_;
    my $rec = NvsTest::insert_health_event($dbh, node => $label);
    deliver($label, $dbh->selectcol_arrayref('SELECT id FROM datastore_changelog WHERE record_id = ?', undef, $rec));
}

# L1 opens first and grows while short transactions commit around it.
my $l1 = long_txn();
long_rows($l1, 600);
my $t0 = ticks();
for my $i (1 .. 5) {
    quick("quick-$i");
    long_rows($l1, 100);
    select(undef, undef, undef, 0.2);
}
cmp_ok(ticks() - $t0, '>=', 5, 'ticks were written while L1 stayed open');

# Three more open after the last tick, in this xid order: L4, L2, L3.  L2
# commits: it lies between two transactions still in progress, after the
# last tick.
my $l4 = long_txn();
long_rows($l4, 100);
my $l2 = long_txn();
long_rows($l2, 300);
my $l3 = long_txn();
long_rows($l3, 50);
$l2->{dbh}->commit;
deliver('L2, committed between open L4 and L3, found by the probe', ids_of($l2));

long_rows($l1, 400);
quick('quick-6');
select(undef, undef, undef, 0.3);
# L4 and L3 were open at the last tick.
$l4->{dbh}->commit;
deliver('L4, open at the last tick, found by the probe', ids_of($l4));
$l3->{dbh}->commit;
deliver('L3, likewise', ids_of($l3));
$l1->{dbh}->commit;
deliver('L1, open across all those ticks and probes', ids_of($l1));
quick('quick-7');

my ($n) = $dbh->selectrow_array('SELECT count(*) FROM datastore_changelog');
is(scalar @got, $n, "the live subscriber got all $n rows");
is(scalar(keys %{ { map { $_ => 1 } @got } }), $n, '... each once');

# Replay from before all of it: behind the ring, from PostgreSQL in pages of 64.
my $r = NvsTest::Client->connect($d->socket);
$r->watch(sid => 2, table => 'health_events', resumeAfter => $start);
my $ev = $r->events($n, 60, sid => 2);
is_deeply([ map { token_id($_) } @$ev ], \@got, 'a consumer replaying it from PostgreSQL gets the same sequence');
is_deeply([ map { $_->{event}{_id}{_data} } @$ev ], [ sort map { $_->{event}{_id}{_data} } @$ev ], '... in token order');
ok(!@{ $r->errors }, '... without errors');
is($d->stop, 0, 'clean stop');
done_testing();

#!/usr/bin/perl
# 28-lost-tick.t - ticks commit asynchronously (daemon/pg/ticker.c), so a
# PostgreSQL crash can take a tick whose events a subscriber already has.
# The WAL writer is slowed to ten seconds and nothing else commits, so the
# tick of an event delivered just before `pg_ctl -m immediate` is lost for
# certain.  Checked here:
#  - the tick is really gone after the crash, and its id is never written
#    again (the next leadership leaves a gap);
#  - a subscriber connected across the crash gets the event again, under a
#    later token, and every event after it: nothing lost, tokens still rise;
#  - a subscriber resuming from the lost tick's token is served (not
#    InvalidResumeToken) and gets the event again and the ones after it;
#  - /metrics counts the reads and the log says what happened;
#  - a position the relay stored (a durable consumer's ack) names a tick
#    that survives the crash: the save's synchronous commit flushed it;
#  - a leadership's first tick survives a crash right after it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start(conf => { wal_writer_delay => "'10s'", checkpoint_timeout => "'1h'" });
my $dbh  = $pg->dbh();
$dbh->{AutoInactiveDestroy} = 1;

my $hport = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport", tick_idle_ms => 600000,
                                             ack_flush_ms => 20 });

sub tok  { $_[0]{event}{_id}{_data} }
sub node { $_[0]{event}{fullDocument}{healthevent}{nodeName} }
sub tick_of { NvsTest::token_tick($_[0]) }

sub metric {
    my ($name) = @_;
    return NvsTest::metrics_text($hport) =~ /^nvsrelay_\Q$name\E (\S+)$/m ? $1 : 0;
}

sub tick_exists {
    my ($t) = @_;
    return $dbh->selectrow_array('SELECT count(*) FROM nvsrelay.tick WHERE tick_id = ?', undef, $t);
}

# Reads events of sid 1 until $n arrived or the time is up.
sub take {
    my ($c, $n, $secs) = @_;
    return $c->events($n, $secs * $slow, sid => 1);
}

sub crash {
    $dbh->disconnect;
    $pg->restart('immediate');
    $dbh = $pg->dbh();
    $dbh->{AutoInactiveDestroy} = 1;
}

my $live = NvsTest::Client->connect($d->socket);
$live->hello('28-live');
$live->watch(sid => 1);
$live->recv_op('bookmark', 10 * $slow) or BAIL_OUT('no bookmark');

# ---- a tick lost in a crash ---------------------------------------------------
NvsTest::insert_health_event($dbh, node => 'before-crash');
my $e1 = take($live, 1, 10);
is(scalar @$e1, 1, 'the event before the crash is delivered') or BAIL_OUT('nothing delivered');
my $tok1  = tok($e1->[0]);
my $tick1 = tick_of($tok1);
crash();
is(tick_exists($tick1), 0, "the crash took tick $tick1 (committed asynchronously, not flushed)");

NvsTest::insert_health_event($dbh, node => 'after-crash');
my $again = take($live, 2, 30);
is_deeply([ map { node($_) } @$again ], [ 'before-crash', 'after-crash' ],
    'the subscriber across the crash gets the event again, then the next one');
ok(@$again == 2 && tok($again->[0]) gt $tok1 && tok($again->[1]) gt tok($again->[0]),
    'redelivered under a later token, and tokens keep rising');
ok(!$live->eof, 'the subscriber stayed connected');

my ($min_new) = $dbh->selectrow_array('SELECT min(tick_id) FROM nvsrelay.tick WHERE tick_id > ?', undef, $tick1);
cmp_ok($min_new // 0, '>=', $tick1 + 2**31, 'the next leadership left a gap after the lost tick');
is(tick_exists($tick1), 0, 'the lost tick id was not written again');

# ---- resuming from the lost tick's token ----------------------------------------
my $re = NvsTest::Client->connect($d->socket);
$re->hello('28-resume');
$re->watch(sid => 1, resumeAfter => $e1->[0]{event}{_id});
my $got = take($re, 2, 30);
is_deeply([ map { node($_) } @$got ], [ 'before-crash', 'after-crash' ],
    'a resume from the lost tick is served: the event again, then the next one');
is(scalar(@{ $re->errors || [] }), 0, 'no error frame (InvalidResumeToken would be one)');
$re->close;

cmp_ok(metric('lost_tick_reads_total'), '>=', 1, 'lost_tick_reads_total counts the reads');
like($d->log, qr/lost in a server crash/, 'the log says a tick was lost in a crash');

# ---- a stored position names a tick on disk -------------------------------------
my $dur = NvsTest::Client->connect($d->socket);
$dur->hello('28-durable');
$dur->watch(sid => 1, consumer => 'lost-tick-consumer');
$dur->recv_op('bookmark', 10 * $slow);
NvsTest::insert_health_event($dbh, node => 'acked');
my $e3 = take($dur, 1, 10);
is(scalar @$e3, 1, 'the durable consumer gets its event');
$dur->ack(1, $e3->[0]{event}{_id});
my $stored;
for (1 .. 100 * $slow) {
    ($stored) = $dbh->selectrow_array(
        q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'lost-tick-consumer'});
    last if defined $stored && $stored ge tok($e3->[0]);
    select(undef, undef, undef, 0.05);
}
ok(defined $stored && $stored ge tok($e3->[0]), 'the ack is stored');
$dur->close;
crash();
is(tick_exists(tick_of($stored)), 1, 'the stored position\'s tick survived the crash (its save flushed it)');

# Until the relay is back on PostgreSQL a durable watch is refused with
# a retryable error: retry as a component would.
my ($back, $e4);
NvsTest::insert_health_event($dbh, node => 'after-ack');
for (1 .. 30) {
    $back = NvsTest::Client->connect($d->socket);
    $back->hello('28-durable');
    $back->watch(sid => 1, consumer => 'lost-tick-consumer');
    $e4 = take($back, 1, 5);
    last if @$e4;
    diag('watch after the crash: ' . join(' ', map { $NvsTest::JSON->encode($_) } @{ $back->skipped }));
    $back->close;
    sleep 1;
}
is_deeply([ map { node($_) } @$e4 ], ['after-ack'], 'the consumer resumes after its ack, nothing before it');
$back->close;

# ---- a leadership's first tick survives a crash --------------------------------
# Its id is the gap's base: lost, the next leadership would write the same id
# again with another snapshot, under tokens already handed out.
my ($top) = $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick');
crash();
my $first;
for (1 .. 200 * $slow) {
    ($first) = $dbh->selectrow_array('SELECT min(tick_id) FROM nvsrelay.tick WHERE tick_id > ?', undef, $top);
    last if defined $first;
    select(undef, undef, undef, 0.05);
}
ok(defined $first && $first >= $top + 2**31, 'the next leadership wrote its first tick after the gap');
crash();
is(tick_exists($first // 0), 1, '... and it survived a crash right after it (committed synchronously)');
$live->close;

is($d->stop, 0, 'clean stop');
done_testing();

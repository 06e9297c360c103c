#!/usr/bin/perl
# 29-span-read.t - a catch-up page spans many small ticks (daemon/pg/batch.c,
# batch_page_sql): each row still belongs to the batch of the first tick
# that sees it.  A live subscriber records what it gets while events are
# written one tick at a time, some of them by transactions that commit out
# of id order across ticks; then subscribers resume from the first token,
# behind a tiny ring, so everything comes back from PostgreSQL in small
# pages.  Checked here:
#  - the replay is the live stream exactly: same events, same order, same
#    tokens (a row put in the wrong batch would show a different token or
#    order);
#  - the same with a table filter (maintenance events only);
#  - the replay took far fewer statements than ticks (the point of it);
#  - resuming from a token in the middle of the backlog, also mid-batch.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dbh  = $pg->dbh();

my $hport = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport", ring_events => 8, batch_rows => 5 });

sub tok { $_[0]{event}{_id}{_data} }
sub key { join '/', $_[0]{event}{ns}{coll}, $_[0]{event}{documentKey}{_id} }

sub queries { NvsTest::query_counts($hport) }

sub maintenance {
    my ($h, $node) = @_;
    $h->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status, event_received_timestamp, document)
             VALUES (?, 'gcp', 'c1', ?, 'DETECTED', now(), '{"status":"DETECTED"}')}, undef, "ev-$node", $node);
}

my $live = NvsTest::Client->connect($d->socket);
$live->hello('29-live');
$live->send({ op => 'watch', sid => 1, table => 'health_events' });
$live->send({ op => 'watch', sid => 2, table => 'maintenance_events' });
$live->recv_op('bookmark', 10 * $slow) or BAIL_OUT('no bookmark');

# Writes a backlog one tick at a time: each commit waits for its event.
# Every seventh event is a transaction opened earlier (lower id) that
# commits three ticks later, so ids and batches disagree.
my (@health, @maint, @open);
my $other = $pg->dbh();
$other->{AutoCommit} = 0;
my $n = 0;
for my $i (1 .. 60) {
    if ($i % 7 == 0) {
        NvsTest::insert_health_event($other, node => "late-$i");
        push @open, $i;
    } elsif ($i % 5 == 0) {
        maintenance($dbh, "m-$i");
        $n++;
    } else {
        NvsTest::insert_health_event($dbh, node => "n-$i");
        $n++;
    }
    if (@open && $i - $open[0] >= 3) {
        $other->commit;
        $n += @open;
        @open = ();
    }
    while (@health + @maint < $n) {
        my $f = $live->recv(10 * $slow) or last;
        next unless ($f->{op} // '') eq 'event';
        push @{ $f->{sid} == 1 ? \@health : \@maint }, $f;
    }
}
$other->commit if @open;
$n += @open;
while (@health + @maint < $n) {
    my $f = $live->recv(10 * $slow) or last;
    push @{ $f->{sid} == 1 ? \@health : \@maint }, $f if ($f->{op} // '') eq 'event';
}
is(@health + @maint, $n, "the live subscriber got all $n events");
my %ticks = map { substr(tok($_), 8, 16) => 1 } @health, @maint;
cmp_ok(scalar keys %ticks, '>=', 40, scalar(keys %ticks) . ' ticks in the backlog');
sub cid { NvsTest::token_cid(tok($_[0])) }
my @late = grep { $_->{event}{fullDocument}{healthevent}{nodeName} =~ /^late/ } @health;
ok(@late && (grep { my $l = $_; grep { cid($_) > cid($l) && tok($_) lt tok($l) } @health } @late),
    'some late transactions were delivered after rows with higher changelog ids (batches and ids disagree)');

sub replay {
    my ($sid, $table, $from, $want) = @_;
    my $c = NvsTest::Client->connect($d->socket);
    $c->hello("29-replay-$sid");
    $c->send({ op => 'watch', sid => $sid, table => $table, resumeAfter => $from->{event}{_id} });
    my $got = $c->events(scalar @$want, 30 * $slow, sid => $sid);
    $c->close;
    return [ map { tok($_) . ' ' . key($_) } @$got ];
}

my $q0 = queries();
my @want = map { tok($_) . ' ' . key($_) } @health[ 1 .. $#health ];
is_deeply(replay(11, 'health_events', $health[0], [ @health[ 1 .. $#health ] ]), \@want,
    'replay from the first token: the live stream exactly (events, order, tokens)');
my $q1 = queries();
my $reads = ($q1->{catchup} // 0) - ($q0->{catchup} // 0);
cmp_ok($reads, '<', scalar(keys %ticks) / 2, "the replay of " . scalar(@health) . " events over "
    . scalar(keys %ticks) . " ticks took $reads statements");

@want = map { tok($_) . ' ' . key($_) } @maint[ 1 .. $#maint ];
is_deeply(replay(12, 'maintenance_events', $maint[0], [ @maint[ 1 .. $#maint ] ]), \@want,
    'a filtered replay (maintenance events): the live stream exactly');

my $mid = int(@health / 2);
@want = map { tok($_) . ' ' . key($_) } @health[ $mid + 1 .. $#health ];
is_deeply(replay(13, 'health_events', $health[$mid], [ @health[ $mid + 1 .. $#health ] ]), \@want,
    'replay from the middle of the backlog: the live stream exactly');

$live->close;
is($d->stop, 0, 'clean stop');
done_testing();

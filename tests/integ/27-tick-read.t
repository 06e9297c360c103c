#!/usr/bin/perl
# 27-tick-read.t - the leader's tick statement also reads the first page of
# the batch it closes (daemon/pg/batch.c, batch_tick_sql), so an event costs
# one round trip after its NOTIFY.  Checked here:
#  - events written one at a time are delivered by the tick statement itself:
#    the main connection's batch reads (/metrics, kind "batch") stay near
#    zero while ticks (kind "tick") follow the events;
#  - the rows of a tick whose commit fails are never delivered: a deferred
#    constraint trigger on nvsrelay.tick makes every tick's COMMIT fail
#    after PostgreSQL has already sent the page's rows, so a relay that
#    handed rows over before ReadyForQuery would deliver events of a tick
#    that never existed (and deliver them again under the next one);
#  - once ticks commit again, every event arrives exactly once, in order;
#  - a batch larger than one page continues on the main connection.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes ();
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dbh  = $pg->dbh();

my $hport = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport", batch_rows => 7 });

# Query counts by kind from /metrics.
sub queries { NvsTest::query_counts($hport) }

sub node_of { $_[0]{event}{fullDocument}{healthevent}{nodeName} }

my $c = NvsTest::Client->connect($d->socket);
$c->hello('27-tick-read');
$c->watch(sid => 1, table => 'HealthEvents');
$c->recv_op('bookmark', 10 * $slow) or BAIL_OUT('no bookmark');

# ---- one round trip per event ------------------------------------------------
{
    my $q0 = queries();
    my @nodes = map {"one-$_"} 1 .. 20;
    my @got;
    for my $n (@nodes) {
        NvsTest::insert_health_event($dbh, node => $n);
        push @got, map { node_of($_) } @{ $c->events(1, 10 * $slow, sid => 1) };
    }
    is_deeply(\@got, \@nodes, '20 events written one by one arrive in order');
    my $q1 = queries();
    my $ticks = ($q1->{tick} // 0) - ($q0->{tick} // 0);
    my $reads = ($q1->{batch} // 0) - ($q0->{batch} // 0);
    cmp_ok($ticks, '>=', 20, "a tick per event ($ticks)");
    cmp_ok($reads, '<=', 4, "the ticks read their batches: $reads batch reads on the main connection for 20 events");
}

# ---- a tick whose commit fails delivers nothing -------------------------------
{
    $pg->psql(<<'SQL');
CREATE TABLE public.t27_fail (on_ boolean NOT NULL);
INSERT INTO public.t27_fail VALUES (true);
CREATE FUNCTION public.t27_fail_commit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF (SELECT on_ FROM public.t27_fail) THEN
        RAISE EXCEPTION 't27: tick commit refused';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER t27_fail AFTER INSERT ON nvsrelay.tick DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.t27_fail_commit();
SQL
    my $mark = length $d->log;
    my ($ticks0) = $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick');
    my @nodes = map {"fail-$_"} 1 .. 3;
    NvsTest::insert_health_event($dbh, node => $_) for @nodes;
    my $early = $c->events(1, 3 * $slow, sid => 1);
    is(scalar @$early, 0, 'no event delivered while every tick commit fails');
    like(substr($d->log, $mark), qr/tick failed error='[^']*t27: tick commit refused/,
        'the ticks were attempted and their commits failed');
    my ($ticks1) = $dbh->selectrow_array('SELECT max(tick_id) FROM nvsrelay.tick');
    is($ticks1, $ticks0, 'no tick was written');

    $dbh->do('UPDATE public.t27_fail SET on_ = false');
    my $ev = $c->events(3, 15 * $slow, sid => 1);
    is_deeply([ map { node_of($_) } @$ev ], \@nodes, 'once ticks commit, the events arrive once, in order');
    is(scalar @{ $c->events(1, 1, sid => 1) }, 0, 'and nothing twice');
    $pg->psql('DROP TRIGGER t27_fail ON nvsrelay.tick; DROP FUNCTION public.t27_fail_commit(); DROP TABLE public.t27_fail');
}

# ---- a batch of several pages ----------------------------------------------------
{
    my @nodes = map {"page-$_"} 1 .. 30;
    $dbh->begin_work;
    NvsTest::insert_health_event($dbh, node => $_) for @nodes;
    $dbh->commit;
    my $ev = $c->events(30, 15 * $slow, sid => 1);
    is_deeply([ map { node_of($_) } @$ev ], \@nodes, 'a 30-row batch read in pages of 7 arrives whole, in order');
    is(scalar @{ $c->events(1, 1, sid => 1) }, 0, 'and nothing twice');
}

$c->close;
$d->stop;
done_testing();

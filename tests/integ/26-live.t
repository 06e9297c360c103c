#!/usr/bin/perl
# 26-live.t - the live reader and the ticker under the conditions that their
# shortcuts must survive: the hot statements are prepared once per
# connection, so sessions terminated under the relay and a PostgreSQL restart
# must leave it streaming (a statement believed prepared on a new session
# would fail every batch read); every event written in a burst is delivered
# without waiting for a later tick (the reader reads again only while a tick
# it wrote is unread, so losing count of one would strand the burst's tail:
# tick_idle_ms and poll_interval_ms are set far above the bound asserted here,
# so nothing else would deliver it); a row written without a NOTIFY is
# delivered within poll_interval_max_ms although the probe backed off; while
# NOTIFYs keep the ticks coming the head probe is not sent at all (a tick
# reads whatever it would find), and a silent row after such a stream still
# arrives.
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

sub node_of { $_[0]{event}{fullDocument}{healthevent}{nodeName} }

# Subscribes and returns the client once the watch is confirmed.
sub subscriber {
    my ($d, $name) = @_;
    my $c = NvsTest::Client->connect($d->socket);
    $c->hello($name);
    $c->watch(sid => 1, table => 'HealthEvents');
    $c->recv_op('bookmark', 10 * $slow) or die "no bookmark for $name\n";
    return $c;
}

# Writes @nodes (one transaction each) and checks they arrive, in order,
# within $secs.
sub written_and_delivered {
    my ($c, $secs, $what, @nodes) = @_;
    NvsTest::insert_health_event($dbh, node => $_) for @nodes;
    my $ev = $c->events(scalar @nodes, $secs, sid => 1);
    is_deeply([ map { node_of($_) } @$ev ], \@nodes, $what)
        or diag(sprintf '%d of %d delivered', scalar @$ev, scalar @nodes);
}

# ---- prepared statements and new sessions --------------------------------
{
    my $d = NvsTest::Daemon->start($pg);
    my $c = subscriber($d, '26-prepared');
    written_and_delivered($c, 10 * $slow, 'events stream before the sessions are terminated', map {"prep-a$_"} 1 .. 5);

    my $mark = length $d->log;
    $dbh->do(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'});
    my $back = 0;
    for (1 .. 200 * $slow) {
        my $l = substr($d->log, $mark);
        my %up = map { $_ => 1 } $l =~ /postgresql connected conn=(\w+)/g;
        last if ($back = $up{main} && $up{ticker} && $up{listen});
        Time::HiRes::sleep(0.05);
    }
    ok($back, 'main, ticker and listen connections came back');
    written_and_delivered($c, 10 * $slow, 'events stream on the new sessions', map {"prep-b$_"} 1 .. 5);

    $pg->restart;
    my $c2;
    for (1 .. 100 * $slow) {
        last if eval { $dbh = $pg->dbh(); $dbh->ping };
        Time::HiRes::sleep(0.1);
    }
    written_and_delivered($c, 20 * $slow, 'events stream after a PostgreSQL restart', map {"prep-c$_"} 1 .. 5);
    unlike(substr($d->log, $mark), qr/prepared statement "[^"]*" does not exist/,
        'no statement was executed on a session that had not prepared it');
    $c->close;
    $d->stop;
}

# ---- every tick read: bursts with nothing else to deliver them ------------
# Ticks come only from NOTIFYs here (up to one a millisecond); the probe
# and the idle tick are a minute away.  Each burst is a few transactions on
# two connections, some of several rows, committed as fast as they go, so
# ticks land while the reader is reading; all of a burst must arrive before
# the next one starts.
{
    my $d = NvsTest::Daemon->start($pg, set => { poll_interval_ms => 60000, tick_idle_ms => 60000, tick_min_interval_ms => 1 });
    my $c = subscriber($d, '26-bursts');
    my @dbh = ($pg->dbh(), $pg->dbh());
    my ($n, $late) = (0, 0);
    for my $burst (1 .. 60) {
        my @nodes;
        for my $tx (1 .. 1 + $burst % 6) {
            my $h = $dbh[$tx % 2];
            my $rows = $tx % 3 == 0 ? 3 : 1;
            $h->begin_work;
            for (1 .. $rows) {
                push @nodes, sprintf 'burst-%02d-%03d', $burst, ++$n;
                NvsTest::insert_health_event($h, node => $nodes[-1]);
            }
            $h->commit;
            Time::HiRes::sleep(0.001 * ($burst % 4));
        }
        my $ev = $c->events(scalar @nodes, 5 * $slow, sid => 1);
        my @got = map { node_of($_) } @$ev;
        next if "@got" eq "@nodes";
        $late++;
        diag(sprintf 'burst %d: %d of %d delivered within %d s', $burst, scalar @got, scalar @nodes, 5 * $slow);
        last;
    }
    is($late, 0, "every burst delivered in order long before the next probe or idle tick ($n events)");
    $c->close;
    $d->stop;
}

# ---- a row without a NOTIFY, after the probe backed off -------------------
# NVSentinel's documentation SQL installs a capture trigger that sends no
# NOTIFY: its rows reach the relay only through the head probe, which backs
# off to poll_interval_max_ms while nothing happens.  Such a row must still
# arrive within that bound plus a tick and a read (here with margin; the
# idle tick is a minute away, so only the probe can deliver it).
{
    my $max_ms = 2000;
    my $d = NvsTest::Daemon->start($pg, set => { poll_interval_max_ms => $max_ms, tick_idle_ms => 60000 });
    my $c = subscriber($d, '26-no-notify');
    written_and_delivered($c, 10 * $slow, 'a row with a NOTIFY first', 'quiet-0');
    for my $round (1 .. 2) {
        Time::HiRes::sleep(4.5);    # 250, 500, 1000, 2000 ms: backed off to the cap
        my $node = "quiet-$round";
        $dbh->begin_work;
        $dbh->do(q{SET LOCAL nvsrelay.capture = off});
        my $id = NvsTest::insert_health_event($dbh, node => $node);
        $dbh->do(q{INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
            SELECT 'health_events', h.id, 'INSERT', to_jsonb(h) FROM health_events h WHERE h.id = ?}, undef, $id);
        $dbh->commit;
        my $t0 = NvsTest::now();
        my $ev = $c->events(1, ($max_ms / 1000 + 3) * $slow, sid => 1);
        is(node_of($ev->[0] // {}) // '', $node,
            sprintf 'round %d: a row written without a NOTIFY arrives after %.1f s (bound %.1f s + a tick and a read)',
            $round, NvsTest::now() - $t0, $max_ms / 1000);
    }
    $c->close;
    $d->stop;
}

# ---- a steady stream: ticks, no probes ------------------------------------
# Events every 20 ms, the probe's interval 100 ms: every probe would fall
# within an interval of a tick, which already read what it would find, so
# none is sent (the relay used to send one every interval regardless).
# Then one row without a NOTIFY: the probe, due again an interval after
# the last tick, finds it.
{
    my $d = NvsTest::Daemon->start($pg, set => { poll_interval_ms => 100, tick_idle_ms => 60000,
        log_level => 'debug' });
    my $c = subscriber($d, '26-steady');
    written_and_delivered($c, 10 * $slow, 'a first event', 'steady-0');
    my $mark = length $d->log;
    my @nodes = map {"steady-$_"} 1 .. 60;
    for (@nodes) {
        NvsTest::insert_health_event($dbh, node => $_);
        Time::HiRes::sleep(0.02);
    }
    my $ev = $c->events(scalar @nodes, 10 * $slow, sid => 1);
    is_deeply([ map { node_of($_) } @$ev ], \@nodes, 'a stream of 60 events at 50 a second delivered in order');
    my $l = substr($d->log, $mark);
    my $probes = () = $l =~ /stage=probe_sent/g;
    my $ticks = () = $l =~ /stage=tick_sent/g;
    ok($ticks >= 30 && $probes <= 1, "no head probe while ticks come every 20 ms ($probes probes, $ticks ticks)");
    $dbh->begin_work;
    $dbh->do(q{SET LOCAL nvsrelay.capture = off});
    my $id = NvsTest::insert_health_event($dbh, node => 'steady-silent');
    $dbh->do(q{INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        SELECT 'health_events', h.id, 'INSERT', to_jsonb(h) FROM health_events h WHERE h.id = ?}, undef, $id);
    $dbh->commit;
    $ev = $c->events(1, 5 * $slow, sid => 1);
    is(node_of($ev->[0] // {}) // '', 'steady-silent', 'then a row without a NOTIFY arrives through the probe');
    $c->close;
    $d->stop;
}

done_testing();

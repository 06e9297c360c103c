#!/usr/bin/perl
# 24-shutdown.t - a shutdown whose last position write cannot finish (the
# relay's PostgreSQL backends stopped) ends at shutdown_timeout_ms with
# status 0. The write, failed while the relay is freed, reports back to the
# hub and closes the clients: nothing freed before the relay may be reached
# from there (under the sanitizer build a use after free fails the exit).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 600000, shutdown_timeout_ms => 500 });
my $dbh = $pg->dbh();

my $c = NvsTest::Client->connect($d->socket);
$c->watch(sid => 1, consumer => 'held-at-exit');
$c->recv_op('bookmark', 10);
NvsTest::insert_health_event($dbh, node => 'at-exit');
my $ev = $c->events(1, 10, sid => 1);
is(scalar @$ev, 1, 'a durable consumer gets its event');
$c->ack(1, $ev->[0]{event}{_id});
$c->ping;
ok($c->recv_op('pong', 5), '... and acknowledges it (written only at shutdown)');

my @pids = grep {/^\d+$/} map { $_->[0] }
    @{ $dbh->selectall_arrayref(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'nvsrelayd'}) };
cmp_ok(scalar @pids, '>', 0, 'the relay has PostgreSQL sessions');
kill 'STOP', @pids;
my $st = $d->stop(20);
kill 'CONT', @pids;
is($st, 0, 'exit status 0 after the deadline with the position write stalled');
like($d->log, qr/shutdown deadline reached/, '... the deadline ended it');
done_testing();

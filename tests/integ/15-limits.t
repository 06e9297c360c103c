#!/usr/bin/perl
# 15-limits.t - a client whose output passes client_output_limit is closed
# through the one failure path (even in the middle of delivering to several
# of its subscriptions), the daemon and the other clients carry on, and a
# client that sends a frame byte by byte or many frames at once is served.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { max_frame_bytes => 1024, client_output_limit => 2048 });
my $dbh = $pg->dbh();

my $big = NvsTest::Client->connect($d->socket);
$big->watch(sid => $_) for 1 .. 3;
is(scalar(grep { $big->recv_op('bookmark', 10) } 1 .. 3), 3, 'three subscriptions on one client');
my $ok = NvsTest::Client->connect($d->socket);
$ok->watch(sid => 9, table => 'maintenance_events');
$ok->recv_op('bookmark', 10);

NvsTest::insert_health_event($dbh, message => 'x' x 3000);
my $e = $big->recv_op('error', 10);
ok($e && $e->{message} =~ /output limit/ || $big->eof, 'the client over its output limit is closed');
ok($d->wait_log(qr/client closed .*reason='output limit exceeded'/, 5), 'logged once with the reason');
$dbh->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, status, event_received_timestamp, document)
  VALUES ('m-9', 'aws', 'c', 'DETECTED', now(), '{}')});
my $m = $ok->events(1, 10, sid => 9);
is($m->[0]{event}{fullDocument}{event_id}, 'm-9', 'another client keeps receiving');
ok(!$ok->eof, '... and stays connected');
my $fresh = NvsTest::Client->connect($d->socket);
$fresh->ping;
ok($fresh->recv_op('pong', 5), 'the daemon still serves new clients');

# Frames split byte by byte and many frames in one write.
my $split = NvsTest::Client->connect($d->socket);
$split->send_raw($_) for split //, qq({"op":"ping"}\n);
ok($split->recv_op('pong', 5), 'a frame sent byte by byte');
$split->send_raw(qq({"op":"ping"}\n) x 50);
is(scalar(grep { $split->recv_op('pong', 5) } 1 .. 50), 50, 'fifty frames in one write, fifty answers');
is($d->stop, 0, 'clean stop');
done_testing();

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
use JSON::PP ();
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
# A subscription's first frame that passes the limit: the client is closed
# while its watch is being started, and the start must not go on with it.
# Pongs are queued, not written, until the read that brought them is done,
# so a run of pings fills the queue to just short of the limit; one of
# these runs leaves less room than the bookmark (or the error frame) needs.
my $resume = do {
    my $c = NvsTest::Client->connect($d->socket);
    $c->watch(sid => 1);
    my $b = $c->recv_op('bookmark', 10);
    $c->close;
    $b->{token};
};
# Whether $c was closed for its output limit rather than sent sid's bookmark.
sub closed_over_limit {
    my ($c, $sid) = @_;
    while (my $f = $c->recv(10)) {
        return 0 if $f->{op} eq 'bookmark' && $f->{sid} == $sid;
    }
    return $c->eof && grep { ($_->{message} // '') =~ /output limit exceeded/ } @{ $c->errors };
}
my ($plain, $taken) = (0, 0);
for my $k (130 .. 146) {
    my $c = NvsTest::Client->connect($d->socket);
    $c->send_raw(qq({"op":"ping"}\n) x $k . qq({"op":"watch","sid":1,"table":"health_events"}\n));
    $plain += closed_over_limit($c, 1) ? 1 : 0;
    # The same client takes its own consumer over: the Interrupted frame to
    # the old subscription, or the new one's bookmark, does not fit.
    my $o = NvsTest::Client->connect($d->socket);
    $o->watch(sid => 1, consumer => "full-$k", resumeAfter => $resume);
    $o->recv_op('bookmark', 10);
    $o->send_raw(qq({"op":"ping"}\n) x ($k - 10) . qq({"op":"watch","sid":2,"table":"health_events","consumer":"full-$k",)
        . qq("resumeAfter":) . JSON::PP->new->canonical->encode($resume) . "}\n");
    $taken += closed_over_limit($o, 2) ? 1 : 0;
}
cmp_ok($plain, '>', 0, "a watch's first bookmark closed its client ($plain of 17)");
cmp_ok($taken, '>', 0, "taking its own consumer over closed a client ($taken of 17)");
my $after = NvsTest::Client->connect($d->socket);
$after->ping;
ok($after->recv_op('pong', 5), 'clients closed while their watch started: the daemon carries on');
is($d->stop, 0, 'clean stop');
done_testing();

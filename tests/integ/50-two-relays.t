#!/usr/bin/perl
# 50-two-relays.t - two relays on one database: one is elected ticker, both
# deliver the same changes with identical tokens (a token from one resumes on
# the other), and when the ticker's relay dies the other takes over ticking
# and nothing is lost.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d1  = NvsTest::Daemon->start($pg);
my $d2  = NvsTest::Daemon->start($pg, socket => $pg->dir . '/relay2.sock', set => { poll_interval_ms => 100 });
my $dbh = $pg->dbh();

ok($d1->wait_log(qr/ticker elected/, 5), 'the first relay ticks');
unlike($d2->log, qr/ticker elected/, 'the second one stands by');

my @c = map { my $c = NvsTest::Client->connect($_->socket); $c->watch(); $c->recv_op('bookmark', 10); $c } ($d1, $d2);
my @ids = map { NvsTest::insert_health_event($dbh, node => "two-$_") } 1 .. 5;
my @got = map { $_->events(5, 10) } @c;
is_deeply([ map { $_->{event}{documentKey}{_id} } @{ $got[0] } ], \@ids, 'relay 1 delivers all five');
is_deeply([ map { $_->{event}{_id}{_data} } @{ $got[1] } ], [ map { $_->{event}{_id}{_data} } @{ $got[0] } ],
    'relay 2 delivers them with identical tokens');

# A token from relay 1 resumes on relay 2.
my $r = NvsTest::Client->connect($d2->socket);
$r->watch(resumeAfter => $got[0][1]{event}{_id});
my $rest = $r->events(3, 10);
is_deeply([ map { $_->{event}{documentKey}{_id} } @$rest ], [ @ids[2 .. 4] ], 'token from relay 1 resumes on relay 2');

# The ticker dies: relay 2 takes over.
$d1->kill('KILL');
$d1->wait_exit(5);
ok($d2->wait_log(qr/ticker elected/, 10), 'relay 2 takes over ticking');
my @more = map { NvsTest::insert_health_event($dbh, node => "after-$_") } 1 .. 3;
my $ev = $c[1]->events(3, 10);
is_deeply([ map { $_->{event}{documentKey}{_id} } @$ev ], \@more, 'changes keep flowing through relay 2');
is($d2->stop, 0, 'clean stop');
done_testing();

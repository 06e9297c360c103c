#!/usr/bin/perl
# ackrate.pl - acks per second with many subscriptions present: starts a
# throwaway PostgreSQL and nvsrelayd (NVSRELAY_BUILD, default build/), opens
# --subs subscriptions over 16 connections, then the first connection sends
# --acks acks (of its oldest subscription's bookmark) pipelined, then a ping, and times the pong.
# A measurement, not a test: it prints the figure and asserts nothing.
#
#   perl tests/tools/ackrate.pl [--subs 16000] [--acks 200000]
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long;
use NvsTest;

my ($subs, $acks, $conns) = (16000, 200000, 16);
GetOptions('subs=i' => \$subs, 'acks=i' => \$acks) or die "usage: ackrate.pl [--subs N] [--acks N]\n";
my $per = int(($subs + $conns - 1) / $conns);

my $pg = NvsTest::Pg->start();
my $d  = NvsTest::Daemon->start($pg, set => { max_subscriptions_per_client => $per, log_level => 'notice',
    max_frame_bytes => 16 * 1024 * 1024 });
my @c;
for my $i (1 .. $conns) {
    my $c = NvsTest::Client->connect($d->socket, timeout => 60);
    $c->send_raw(join('', map { $NvsTest::JSON->encode({ op => 'watch', sid => $_, table => 'health_events' }) . "\n" }
        1 .. $per));
    push @c, $c;
}
for my $c (@c) {
    my $n = 0;
    $n++ while $n < $per && $c->recv_op('bookmark', 60);
    die "only $n of $per subscriptions started\n" unless $n == $per;
}
# The oldest subscription: the last a scan of the daemon's list would reach.
my $c = $c[0];
my $tok = $c->bookmark(1);
my $frame = $NvsTest::JSON->encode({ op => 'ack', sid => 1, token => $tok }) . "\n";
my $t0 = NvsTest::now();
my $chunk = $frame x 1000;
$c->send_raw($chunk, 120) for 1 .. int($acks / 1000);
$c->ping;
$c->recv_op('pong', 300) or die "no pong\n";
my $dt = NvsTest::now() - $t0;
printf "%d subscriptions, %d acks in %.3f s: %.0f acks/s\n", $per * $conns, int($acks / 1000) * 1000, $dt,
    int($acks / 1000) * 1000 / $dt;

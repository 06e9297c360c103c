#!/usr/bin/perl
# 86-demo.t - `make demo` (tests/tools/demo.sh) runs clean anywhere: with
# port 9187 (the default http_listen) taken by someone else, without
# touching /run, it streams its six events, shows status, clients and
# /metrics from its own admin socket and port, and nvsrelayd logs no error.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";

# Hold the default metrics port when it is free, as another service would.
my $squatter = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 9187, Listen => 1, ReuseAddr => 1);
my ($rc, $out) = NvsTest::run_cmd([ 'sh', "$root/tests/tools/demo.sh", $build ]);
is($rc, 0, 'demo.sh exits 0' . ($squatter ? ' with port 9187 taken' : '')) or diag($out);
like($out, qr/nvsrelay watch received 6 events/, 'six events streamed');
like($out, qr/^\s+state\s+ready$/m, 'status from its own admin socket');
like($out, qr/^\s+c\d+\s+unix:\S+\s+1\s+demo\s+health_events\s+live\s/m, 'clients lists the demo consumer');
like($out, qr/^\s+nvsrelay_delivery_latency_seconds_count 6$/m, '/metrics from its own port');
unlike($out, qr/ err |cannot listen|\/run\/nvsrelayd/, 'no error, nothing under /run');
like($out, qr/nvsrelayd exited 0/, 'the daemon stopped cleanly');
done_testing();

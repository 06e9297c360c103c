#!/usr/bin/perl
# 85-bench-smoke.t - the benchmark harness (tests/bench/bench.pl) in quick
# mode, so it does not rot between `make bench` runs: every phase runs for
# about a second against its own throwaway PostgreSQL, and the results file
# must be well formed.  No figure is checked (timings are no assertions on
# shared machines); only that each phase produced its table, the daemon
# never exited badly, and nothing committed was missed by the relay.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp ();
use JSON::PP ();
use NvsTest;

my $build = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
plan skip_all => "bench clients not built in $build/bench" unless -x "$build/bench/bench_sub";
# Its phases are paced by the clock; a sanitizer build is several times slower
# and is covered by every other test.
plan skip_all => 'the bench harness runs on the optimized build only' if $ENV{NVSRELAY_SANITIZE};

my $out = File::Temp::tempdir('nvs-bench.XXXXXX', DIR => '/tmp', CLEANUP => 1);
my ($rc, $log) = NvsTest::run_cmd([ $^X, "$NvsTest::ROOT/tests/bench/bench.pl", '--quick', '--build', $build,
    '--out', $out, '--seed', 1 ]);
is($rc, 0, 'bench.pl --quick exits 0') or diag(join "\n", (split /\n/, $log)[-40 .. -1]);

my $md = NvsTest::slurp("$out/results.md");
like($md, qr/^# nvsrelayd benchmark results/m, 'results.md written');
like($md, qr/Quick run/, 'marked as a quick run');
for my $h ('Machine, versions, settings', 'Targets', '1. Commit → subscriber latency',
    '2. Events missed under out-of-order commits', '3. Drain and catch-up', '4. Fan-out', '5. Idle', '6. Restart',
    '7. Capture cost on writers') {
    like($md, qr/^## \Q$h\E$/m, "section: $h");
}
unlike($md, qr/the run stopped early/, 'every phase ran to the end');
unlike($md, qr/nvsrelayd exited with status/, 'the daemon always stopped cleanly');

my $r = eval { JSON::PP->new->decode(NvsTest::slurp("$out/results.json")) };
ok($r, 'results.json parses') or diag($@);
my $p = $r ? $r->{phases} : {};
is(scalar @{ $p->{latency} || [] }, 15, 'latency: 3 rates x 5 subscribers');
for my $row (@{ $p->{latency} || [] }) {
    next unless $row->{key} =~ /^relay/;
    is($row->{stats}{missing}, 0, "latency $row->{rate} ev/s $row->{key}: every event delivered");
}
for my $run (qw(A B)) {
    my $x = $p->{ooo}{$run}{relay} || {};
    ok(defined $x->{missing} && $x->{missing} == 0 && $x->{phantoms} == 0 && !$x->{disorder},
        "out-of-order run $run: the relay missed nothing, sent no rolled-back row, kept token order");
}
ok($p->{drain}{events} && $p->{drain}{events} == $p->{drain}{rows} && !$p->{drain}{disorder},
    'drain: every row delivered, in token order');
ok($p->{catchup}{events} && $p->{catchup}{events} == $p->{catchup}{rows} && !$p->{catchup}{disorder},
    'catch-up: every row delivered, in token order');
is(scalar(grep { ref $p->{fanout}{$_} } keys %{ $p->{fanout} || {} }), 4, 'fan-out: 1, 10, 100, 1000 subscribers');
is($p->{restart}{missing}, 0, 'restart: nothing committed was missed');
ok(exists $p->{idle}{relay}{queries_per_s}, 'idle measured');
ok(exists $p->{capture}{1}{plain}{rows_s} && exists $p->{capture}{100}{notify}{rows_s}, 'capture cost measured');
cmp_ok(scalar @{ $r->{targets} || [] }, '>=', 8, 'targets table filled');

done_testing();

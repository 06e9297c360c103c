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
# On failure, the harness's own last lines: PostgreSQL's server log is
# interleaved with them and would fill any tail.
my @own = grep { !/^\S+ \S+ UTC \[\d+\]/ } split /\n/, $log;
is($rc, 0, 'bench.pl --quick exits 0') or diag(join "\n", @own[ ($#own > 39 ? $#own - 39 : 0) .. $#own ]);

my $md = NvsTest::slurp("$out/results.md");
like($md, qr/^# nvsrelayd benchmark results/m, 'results.md written');
like($md, qr/Quick run/, 'marked as a quick run');
for my $h ('Machine, versions, settings', 'Targets', '1. Commit → subscriber latency',
    '2. Events missed under out-of-order commits', '3. Drain and catch-up', '4. Fan-out', '4b. Fan-out latency', '5. Idle', '6. Restart',
    '7. Capture cost on writers', '8. A big changelog with retention running', '9. Large events with UPDATE-heavy lifecycles',
    '10. Live latency under load', '11. Catch-up of a backlog of small ticks, cold', '12. Relays on one database') {
    like($md, qr/^## \Q$h\E$/m, "section: $h");
}
unlike($md, qr/the run stopped early/, 'every phase ran to the end');
unlike($md, qr/nvsrelayd exited with status/, 'the daemon always stopped cleanly');

my $r = eval { JSON::PP->new->decode(NvsTest::slurp("$out/results.json")) };
ok($r, 'results.json parses') or diag($@);
my $p = $r ? $r->{phases} : {};
like($r->{source}{sha256} // '', qr/^[0-9a-f]{64}$/, 'the source measured is recorded by its hash');
# Quick: 2 rounds x fsync on/off x 100 ev/s x (relay, hybrid, 10 ms
# poller, the two floors from one run).
is(scalar @{ $p->{latency} || [] }, 20, 'latency: 2 rounds x 2 fsync settings x 5 subscribers');
my %cells = map { ("$_->{fsync} $_->{rate} $_->{key}" => $_) } @{ $p->{latency_cells} || [] };
is(scalar keys %cells, 10, 'latency: 10 cells');
for my $k (map { my $f = $_; map {"$f 100 $_"} qw(relay-tls hybrid poll-10ms floor-1k floor-select) } qw(on off)) {
    my $c = $cells{$k};
    ok($c && $c->{runs} == 2 && $c->{kept} + @{ $c->{discarded} } == 2, "cell $k: 2 runs, each kept or listed as left out");
}
is(scalar(grep { $_->{fsync} eq 'on' } @{ $p->{latency} || [] }), 10, 'half the runs durable (fsync on)');
is(scalar(grep { $_->{key} =~ /hybrid|poll/ && $_->{db} ne 'nvs_incumbent' } @{ $p->{latency} || [] }), 0,
    "NVSentinel's watchers ran on NVSentinel's own schema");
for my $row (grep { $_->{key} =~ /^relay|^floor/ } @{ $p->{latency} || [] }) {
    is($row->{stats}{missing}, 0, "latency fsync=$row->{fsync} round $row->{round} $row->{rate} ev/s $row->{key}: every event delivered");
}
like($md, qr/^\| 100 \| NVSentinel hybrid \(TLS\) \|/m, 'the headline table has the hybrid row');
like($md, qr/^\| p99 commit→subscriber at 100 ev\/s \(TLS, fsync=on\) \|.*\| ≤ hybrid \|/m, 'the p99 target is stated against hybrid');
for my $row (@{ $p->{sizes}{runs} || [] }) {
    is($row->{stats}{missing}, 0, "sizes round $row->{round} $row->{key}: every change delivered") if $row->{key} =~ /^relay/;
}
is(scalar @{ $p->{sizes}{runs} || [] }, 2, 'sizes: relay and hybrid');
for my $row (@{ $p->{loaded}{runs} || [] }) {
    is($row->{stats}{missing}, 0, "under load ($row->{cond}): every event delivered");
}
my %bg = map { ($_->{cond} => $_->{background}) } @{ $p->{loaded}{runs} || [] };
is(scalar(keys %bg), 5, 'under load: quiet, catch-up, acks, TLS subscribers, per-node TLS subscribers');
ok($bg{tls} && $bg{tls}{confirmed} == 20 && $bg{tls}{procs} == 2, 'under load: 20 TLS subscribers watching, from 2 processes');
ok($bg{nodes} && $bg{nodes}{confirmed} == 20 && $bg{nodes}{procs} == 2, 'under load: 20 per-node TLS subscribers watching');
ok($bg{acks} && $bg{acks}{acks} > 0, 'under load: the durable consumers acknowledged');
ok($bg{catchup} && $bg{catchup}{events} >= 10000, 'under load: the catch-up replayed the backlog');
is($_->{stats}{missing}, 0, "big changelog ($_->{state}): every event delivered") for @{ $p->{big}{runs} || [] };
ok($p->{big}{cells}{big} && $p->{big}{cells}{empty}, 'big changelog: both states measured');
cmp_ok($p->{big}{ticks} // 0, '>=', 5, "big changelog: loaded over many ticks ($p->{big}{ticks})");
cmp_ok($_->{changelog_rows}, '>=', $p->{big}{rows}, "big changelog: held by its consumer ($_->{changelog_rows} rows)")
    for grep { $_->{state} eq 'big' } @{ $p->{big}{runs} || [] };
ok($p->{ticks}{events} && $p->{ticks}{events} == $p->{ticks}{rows} && !$p->{ticks}{disorder} && $p->{ticks}{ticks} > 1,
    'small ticks: a backlog of many ticks replayed whole, in token order');
is_deeply([ sort { $a <=> $b } keys %{ $p->{relays} || {} } ], [ 1, 3 ], 'relays: 1 and 3 on one database');
ok(($p->{relays}{3}{connections} // 0) >= 3, 'relays: each relay holds its connections');
ok($p->{copy}{rows} && $p->{copy}{rows} == $p->{drain}{rows}, 'COPY baseline over the drained rows');
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
my @fl = @{ $p->{fanlat}{runs} || [] };
is_deeply([ sort { $a <=> $b } map { $_->{subs} } @fl ], [ 1, 10, 20 ], 'fan-out latency: 1, 10, 20 TLS subscribers');
for my $row (@fl) {
    is($row->{missing}, 0, "fan-out latency, $row->{subs} subscribers: every reading subscriber got every event");
    is($row->{stalled}, $row->{subs} >= 10 ? int($row->{subs} / 10) : 0, "fan-out latency, $row->{subs}: every 10th stalled");
    ok($row->{errors} == 0 && $row->{closed} == 0, "fan-out latency, $row->{subs}: no error frame, no connection closed");
    cmp_ok($row->{rss_hwm_kb} // 0, '>', 0, "fan-out latency, $row->{subs}: the relay's peak RSS recorded");
}
is($p->{restart}{missing}, 0, 'restart: nothing committed was missed');
ok(exists $p->{idle}{relay}{queries_per_s}, 'idle measured');
ok(exists $p->{capture}{1}{plain}{rows_s} && exists $p->{capture}{100}{notify}{rows_s}, 'capture cost measured');
cmp_ok(scalar @{ $r->{targets} || [] }, '>=', 14, 'targets table filled');

done_testing();

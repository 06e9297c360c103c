#!/usr/bin/perl
# 89-monitoring.t - what on-call gets with the chart
# (packaging/helm/nvsrelayd/files/):
#  - prometheus-rules.yaml passes `promtool check rules`, and every alert
#    fires and stays quiet as tests/monitoring/rules.test.yaml says
#    (`promtool test rules`; promtool from tests/tools/promtool.sh);
#  - grafana-dashboard.json is valid JSON with panels and queries;
#  - every metric the rules and the dashboard query is in the daemon's
#    catalogue (daemon/metrics.c) and in the /metrics of a live relay that
#    has a connected and a disconnected durable consumer.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use JSON::PP ();
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $files = "$root/packaging/helm/nvsrelayd/files";
my $rules = "$files/prometheus-rules.yaml";
my $dashf = "$files/grafana-dashboard.json";
my $pg    = NvsTest::Pg->start();
my $dir   = $pg->dir;

# ---- the rules --------------------------------------------------------------------
SKIP: {
	my ($prc, $ptool) = NvsTest::run_cmd([ 'sh', "$root/tests/tools/promtool.sh" ], "$dir/promtool.err");
	chomp $ptool;
	skip 'promtool not available: ' . NvsTest::slurp("$dir/promtool.err"), 2 if $prc || !-x $ptool;
	my ($rc, $out) = NvsTest::run_cmd([ $ptool, 'check', 'rules', $rules ]);
	is($rc, 0, 'promtool check rules') or diag($out);
	($rc, $out) = NvsTest::run_cmd([ $ptool, 'test', 'rules', "$root/tests/monitoring/rules.test.yaml" ]);
	is($rc, 0, 'promtool test rules: every alert fires when it should and not before') or diag($out);
}
my $rules_text = NvsTest::slurp($rules);
my @alerts = $rules_text =~ /^\s*- alert: (\w+)$/mg;
my @tested = NvsTest::slurp("$root/tests/monitoring/rules.test.yaml") =~ /alertname: (\w+)$/mg;
my %tested = map { $_ => 1 } @tested;
is_deeply([ grep { !$tested{$_} } @alerts ], [], scalar(@alerts) . ' alerts, each with a promtool test');

# ---- the dashboard ----------------------------------------------------------------
my $dash = eval { JSON::PP->new->decode(NvsTest::slurp($dashf)) };
ok($dash, 'grafana-dashboard.json is valid JSON') or diag($@);
my @exprs = map { $_->{expr} } map { @{ $_->{targets} || [] } } @{ ($dash || {})->{panels} || [] };
cmp_ok(scalar(@exprs), '>=', 10, scalar(@exprs) . ' queries in ' . scalar(@{ ($dash || {})->{panels} || [] }) . ' panels');
my %titles = map { $_->{title} => 1 } @{ ($dash || {})->{panels} || [] };
ok($titles{$_}, "panel: $_") for 'Consumer lag (seconds)', 'Consumer lag (events)', 'Delivery latency', 'Events per second',
	'PostgreSQL connections and errors';

# ---- the metric names -------------------------------------------------------------
# The catalogue: F(M_X, "name", MT_TYPE, ...) in daemon/metrics.c.
my %catalogue;
my $src = NvsTest::slurp("$root/daemon/metrics.c");
while ($src =~ /F\(M_\w+,\s*"(\w+)",\s*(MT_\w+)/g) {
	my ($n, $t) = ("nvsrelay_$1", $2);
	$catalogue{$n} = 1;
	$catalogue{"${n}_$_"} = 1 for $t eq 'MT_HISTOGRAM' ? qw(bucket sum count) : ();
}
cmp_ok(scalar(keys %catalogue), '>', 40, 'the catalogue of daemon/metrics.c read');
my %used;
$used{$_}{rules} = 1 for $rules_text =~ /\b(nvsrelay_\w+)/g;
$used{$_}{dashboard} = 1 for map { /\b(nvsrelay_\w+)/g } @exprs;
for my $m (sort keys %used) {
	ok($catalogue{$m}, "$m (" . join(', ', sort keys %{ $used{$m} }) . ') is in the catalogue');
}

# And in a live relay's /metrics, once a durable consumer came and went
# (per-consumer and sampled families appear only with data).
my $hport = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => { http_listen => "127.0.0.1:$hport", stats_interval_s => 1, tick_idle_ms => 300 });
my $dbh = $pg->dbh();
my $keep;
for my $name (qw(mon-gone mon-here)) {
	my $c = NvsTest::Client->connect($d->socket);
	$c->hello("89-$name");
	$c->watch(consumer => $name);
	$c->recv_op('bookmark', 15);
	NvsTest::insert_health_event($dbh, node => $name);
	my $evs = $c->events(1, 15);
	$c->ack(1, $evs->[0]{event}{_id}) if @$evs;
	if ($name eq 'mon-gone') { $c->close } else { $keep = $c }
}
NvsTest::insert_health_event($dbh, node => 'after');
# Absent by design here: no streaming replicas.
my %absent = (nvsrelay_pg_replication_lag_seconds => 'only with streaming replicas');
my %live;
my $t0 = NvsTest::now();
while (NvsTest::now() - $t0 < 20) {
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport, Timeout => 5) or next;
	print $s "GET /metrics HTTP/1.0\r\n\r\n";
	my $body = do { local $/; <$s> };
	%live = map { $_ => 1 } $body =~ /^(nvsrelay_\w+)[{ ]/mg;
	last if !grep { !$live{$_} && !$absent{$_} } keys %used;
	Time::HiRes::sleep(0.5);
}
for my $m (sort keys %used) {
	SKIP: {
		skip "$m: $absent{$m}", 1 if $absent{$m};
		ok($live{$m}, "$m is in a live relay's /metrics");
	}
}

done_testing();

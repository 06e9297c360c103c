#!/usr/bin/perl
# hop-latency.pl - commit -> subscriber latency directly on a relay that reads PostgreSQL
# vs one hop further, on a node relay chained to it over TCP (issue "Fleet tier"). Both
# subscribers read the same writes at the same time, so the difference is the hop. A
# measurement, not a test: it prints a Markdown table and asserts nothing.
#
# Uses the benchmark's C clients: bench_writer (paced open-loop, records when each COMMIT
# was sent) and bench_sub (records when each event arrived), built by `make all`.
#
#   perl tests/bench/hop-latency.pl [--rates 100,1000] [--seconds 10] [--build DIR]
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my ($rates, $secs, $build) = ('100,1000', 10, $ENV{NVSRELAY_BUILD} || "$FindBin::Bin/../../build");
GetOptions('rates=s' => \$rates, 'seconds=f' => \$secs, 'build=s' => \$build) or die "bad options\n";
$ENV{NVSRELAY_BUILD} = $build;
for (qw(bench_writer bench_sub)) { -x "$build/bench/$_" or die "no $build/bench/$_: run make all\n" }


# NvsTest::health_doc with the placeholders bench_writer fills in (as bench.pl does).
sub template {
    my $doc = NvsTest::health_doc(node => '@NODE@', span => '@SPAN@', time => [ 1111111111, 222222 ],
        metadata => { bench_seq => '@SEQ@' });
    my $j = $NvsTest::JSON->encode($doc);
    $j =~ s/1111111111/\@SEC\@/;
    $j =~ s/222222000/\@NANO\@/;
    $j =~ s/"2005-03-18T01:58:31\.222222Z"/"\@CREATED\@"/;
    return $j;
}

sub rows {
    my ($file) = @_;
    open(my $fh, '<', $file) or return [];
    return [ map { chomp; [ split / / ] } <$fh> ];
}

sub pct {
    my ($l, $p) = @_;
    return undef unless @$l;
    my $i = int($p / 100 * @$l + 0.5) - 1;
    $i = 0 if $i < 0;
    $i = $#$l if $i > $#$l;
    return $l->[$i];
}

# p50/p99 in ms of committed events after a 5% warm-up, and how many never arrived.
sub stats {
    my ($w, $file) = @_;
    my %t;
    for (@{ rows($file) }) { my ($seq, $t) = @$_; $t{$seq} //= $t if $seq >= 0 }
    my @seqs = sort { $a <=> $b } grep { $w->{$_}[3] == 1 } keys %$w;
    @seqs = @seqs[ int(@seqs * 0.05) .. $#seqs ];
    my @lat = sort { $a <=> $b } map { ($t{$_} - $w->{$_}[1]) / 1e6 } grep { defined $t{$_} } @seqs;
    return { p50 => pct(\@lat, 50), p99 => pct(\@lat, 99), missing => @seqs - @lat, n => scalar @seqs };
}

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $port = NvsTest::free_port();
my $up = NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => { listen_tcp => "127.0.0.1:$port",
    tcp_plaintext => 'on', log_level => 'notice', datastore_host => $pg->sockdir, datastore_sslmode => 'disable' });
my $node = NvsTest::Daemon->start($pg, socket => "$dir/node.sock", set => { upstream => "127.0.0.1:$port",
    upstream_tls => 'off', node_name => 'hop', log_level => 'notice' });
open(my $tf, '>', "$dir/template.json") or die $!;
print $tf template();
close $tf;
my $e = $pg->pgenv;
my $conninfo = "host=$e->{PGHOST} port=$e->{PGPORT} dbname=nvsentinel user=postgres application_name=bench_writer";

sub spawn {
    my ($name, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>', "$dir/$name.json");
        open(STDERR, '>', "$dir/$name.err");
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    return $pid;
}

sub reap {
    my ($pid, $timeout) = @_;
    my $end = NvsTest::now() + $timeout;
    while (NvsTest::now() < $end) { return if waitpid($pid, POSIX::WNOHANG()) == $pid; Time::HiRes::sleep(0.1) }
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

my $load = sub { (split ' ', NvsTest::slurp('/proc/loadavg'))[0] };
print "| rate | events | direct p50 / p99 | one hop p50 / p99 | hop adds (p50 / p99) | not delivered (direct, hop) | load average |\n";
print "|---|---|---|---|---|---|---|\n";
my $first = 0;
for my $rate (split /,/, $rates) {
    my $count = int($rate * $secs);
    my %sub;
    for my $where ([ direct => $up ], [ hop => $node ]) {
        my ($k, $d) = @$where;
        unlink "$dir/$k.$rate.ready";
        $sub{$k} = spawn("$k.$rate", "$build/bench/bench_sub", '--socket', $d->socket, '--expect', $count,
            '--seconds', $secs * 4 + 30, '--ready', "$dir/$k.$rate.ready", '--out', "$dir/$k.$rate.rec");
    }
    my $t = NvsTest::now() + 15;
    Time::HiRes::sleep(0.1) while NvsTest::now() < $t && grep { !-e "$dir/$_.$rate.ready" } keys %sub;
    my $l0 = $load->();
    my $wr = spawn("writer.$rate", "$build/bench/bench_writer", '--conninfo', $conninfo, '--template',
        "$dir/template.json", '--count', $count, '--rate', $rate, '--writers', $rate >= 1000 ? 2 : 1,
        '--first-seq', $first, '--out', "$dir/writer.$rate.rec");
    $first += $count;
    reap($wr, $secs * 3 + 30);
    reap($sub{$_}, 15) for sort keys %sub;
    my %w = map { $_->[0] => [ @$_[ 1 .. 4 ] ] } @{ rows("$dir/writer.$rate.rec") };
    my %s = map { $_ => stats(\%w, "$dir/$_.$rate.rec") } keys %sub;
    my $f = sub { defined $_[0] ? sprintf('%.1f', $_[0]) : '-' };
    printf "| %d ev/s | %d | %s / %s ms | %s / %s ms | %s / %s ms | %d, %d | %s -> %s |\n", $rate, $s{direct}{n},
        $f->($s{direct}{p50}), $f->($s{direct}{p99}), $f->($s{hop}{p50}), $f->($s{hop}{p99}),
        $f->(defined $s{hop}{p50} && defined $s{direct}{p50} ? $s{hop}{p50} - $s{direct}{p50} : undef),
        $f->(defined $s{hop}{p99} && defined $s{direct}{p99} ? $s{hop}{p99} - $s{direct}{p99} : undef),
        $s{direct}{missing}, $s{hop}{missing}, $l0, $load->();
}
$_->stop(20) for $node, $up;
$pg->stop;

#!/usr/bin/perl
# chain-load.pl - PostgreSQL's load with N relays connected directly vs N node relays
# chained to one upstream relay (issue "Fleet tier"): client sessions, transactions/s,
# PostgreSQL's CPU and the rate a paced writer reached, and the first relay's (the
# upstream's, when chained) CPU and memory: its RSS once the relays are connected, and how
# much of it the node relays and their traffic added.  A measurement, not a test: it
# prints a Markdown table and asserts nothing.  Each relay gets one subscriber that reads
# everything; one child process reads them all and discards the bytes, so reading never
# lags and a hundred relays do not need a hundred readers.
#
#   perl tests/bench/chain-load.pl [--nodes 1,5,20] [--seconds 20] [--rate 200] [--modes direct,chained]
#   perl tests/bench/chain-load.pl --nodes 100 --modes chained --rate 20 --seconds 20
#                               (upstream CPU and RSS per 100 node relays)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long;
use IO::Select;
use POSIX ();
use NvsTest;

my ($nodes, $secs, $rate, $modes) = ('1,5,20', 20, 200, 'direct,chained');
GetOptions('nodes=s' => \$nodes, 'seconds=i' => \$secs, 'rate=i' => \$rate, 'modes=s' => \$modes)
    or die "bad options\n";
my $CLK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub cpu_of {
    my ($pid) = @_;
    my $s = eval { NvsTest::slurp("/proc/$pid/stat") } // '';
    return 0 unless $s =~ /\)\s+(.*)$/s;
    my @f = split ' ', $1;
    return ($f[11] + $f[12] + $f[13] + $f[14]) / $CLK;   # with reaped children
}

# The postmaster and every backend: CPU seconds so far.
sub pg_cpu {
    my ($pg) = @_;
    my ($pm) = split /\n/, NvsTest::slurp($pg->dir . '/data/postmaster.pid');
    my $t = cpu_of($pm);
    for my $st (glob '/proc/[0-9]*/stat') {
        my $s = eval { NvsTest::slurp($st) } // next;
        next unless $s =~ /\)\s+\S+\s+(\d+)/ && $1 == $pm;
        $t += cpu_of((split m{/}, $st)[2]);
    }
    return $t;
}

sub rss_kb {
    my ($pid) = @_;
    return (eval { NvsTest::slurp("/proc/$pid/status") } // '') =~ /^VmRSS:\s+(\d+)/m ? $1 : 0;
}

sub reader {
    my ($socks, $stop) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    my @c = map { my $c = NvsTest::Client->connect($_); $c->watch(sid => 1); $c } @$socks;
    my $sel = IO::Select->new(map { $_->sock } @c);
    my $buf;
    while (NvsTest::now() < $stop) {
        for my $fh ($sel->can_read(0.5)) {
            my $r = sysread($fh, $buf, 262144);
            $sel->remove($fh) if defined $r && $r == 0;
        }
    }
    POSIX::_exit(0);
}

sub run {
    my ($mode, $n) = @_;
    my $pg  = NvsTest::Pg->start();
    my $dir = $pg->dir;
    my %fast = (poll_interval_ms => 100, ack_flush_ms => 200);
    my (@relays, @socks, $rss_base);
    if ($mode eq 'chained') {
        my $port = NvsTest::free_port();
        push @relays, NvsTest::Daemon->start($pg, socket => "$dir/up.sock", set => { %fast, listen_tcp => "127.0.0.1:$port",
            tcp_plaintext => 'on', log_level => 'notice', max_clients => 64 + 2 * $n });
        $rss_base = rss_kb($relays[0]->pid);
        for my $i (1 .. $n) {
            push @relays, NvsTest::Daemon->start($pg, socket => "$dir/n$i.sock", set => { upstream => "127.0.0.1:$port",
                upstream_tls => 'off', node_name => "n$i", log_level => 'notice' });
            push @socks, "$dir/n$i.sock";
        }
    } else {
        for my $i (1 .. $n) {
            push @relays, NvsTest::Daemon->start($pg, socket => "$dir/r$i.sock", set => { %fast, log_level => 'notice' });
            $rss_base //= rss_kb($relays[0]->pid);
            push @socks, "$dir/r$i.sock";
        }
    }
    my $stop = NvsTest::now() + $secs + 8;
    my @readers = (reader(\@socks, $stop));
    sleep 3;
    my $rss_connected = rss_kb($relays[0]->pid);
    my $dbh = $pg->dbh;
    my $x = sub { $dbh->selectrow_array(q{SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'nvsentinel'}) };
    my ($x0, $c0, $t0) = ($x->(), pg_cpu($pg), NvsTest::now());
    my $r0 = cpu_of($relays[0]->pid);
    my $wpid = fork // die;
    if (!$wpid) {
        my $h = $pg->dbh;
        my ($k, $start) = (0, NvsTest::now());
        while (NvsTest::now() < $start + $secs) {
            NvsTest::insert_health_event($h, node => "load-" . ++$k);
            my $due = $start + $k / $rate;
            my $now = NvsTest::now();
            Time::HiRes::sleep($due - $now) if $due > $now;
        }
        POSIX::_exit(0);
    }
    my $sess = 0;
    while (!waitpid($wpid, POSIX::WNOHANG())) {
        my $s = $dbh->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
            AND application_name = 'nvsrelayd'});
        $sess = $s if $s > $sess;
        Time::HiRes::sleep(0.5);
    }
    my $dt = NvsTest::now() - $t0;
    my ($x1, $c1) = ($x->(), pg_cpu($pg));
    my $rcpu = 100 * (cpu_of($relays[0]->pid) - $r0) / $dt;
    my $rss = rss_kb($relays[0]->pid);
    my $evlen = $dbh->selectrow_array(q{SELECT avg(length(document::text)) FROM health_events WHERE node_name LIKE 'load-%'});
    my $rows = $dbh->selectrow_array(q{SELECT count(*) FROM health_events WHERE node_name LIKE 'load-%'});
    kill 'TERM', @readers;
    waitpid($_, 0) for @readers;
    $_->stop(20) for reverse @relays;
    $dbh->disconnect;
    $pg->stop;
    return { sessions => $sess, tps => ($x1 - $x0) / $dt, cpu => 100 * ($c1 - $c0) / $dt, writer => $rows / $secs,
        relay_cpu => $rcpu, relay_rss => $rss, rss_base => $rss_base, rss_connected => $rss_connected, doc => $evlen };
}

# The last column: the first relay (the upstream when chained) and its RSS; the
# document size says how large the events were.
print "| relays | mode | PostgreSQL sessions of relays | transactions/s | PostgreSQL CPU | writer reached | first relay CPU, RSS "
    . "(alone -> relays connected -> after the run) |\n";
print "|---|---|---|---|---|---|---|\n";
for my $n (split /,/, $nodes) {
    for my $mode (split /,/, $modes) {
        my $r = run($mode, $n);
        printf "| %d | %s | %d | %.0f | %.0f%% of a core | %.0f ev/s | %.1f%%, %.1f -> %.1f -> %.1f MB |\n", $n,
            $mode eq 'chained' ? 'chained (1 upstream)' : 'direct', $r->{sessions}, $r->{tps}, $r->{cpu}, $r->{writer},
            $r->{relay_cpu}, $r->{rss_base} / 1024, $r->{rss_connected} / 1024, $r->{relay_rss} / 1024;
        printf STDERR "documents of %.0f bytes on average\n", $r->{doc} // 0;
    }
}

#!/usr/bin/perl
# pathcount.pl - what the live path costs per event, in figures that do not
# depend on how loaded the machine is: the relay's statements (each one a
# round trip), WAL flushes (pg_stat_wal.wal_sync) and commits, per event, at
# a paced rate on a durable PostgreSQL (fsync and full_page_writes on, TLS).
# Latency percentiles (writer's COMMIT sent -> subscriber) come along as an
# indication only.  One run of seconds, not a benchmark: see README.md.
#
#   perl tests/bench/pathcount.pl [--build DIR] [--rates 100,1000] [--secs 10]
#                                 [--set key=value ...] [--strace FILE] [--log FILE] [--keep DIR]
#
# --strace writes `strace -ttt -f` of the daemon during the first rate;
# --log keeps the daemon's log (with --set log_level=debug it has a
# timestamp per stage of the live path: "live path stage=...").
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use Getopt::Long;
use JSON::PP ();
use POSIX ();
use NvsTest;

my %opt = (build => $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build", rates => '100,1000', secs => 10, set => []);
GetOptions(\%opt, 'build=s', 'rates=s', 'secs=f', 'set=s@', 'strace=s', 'log=s', 'keep=s')
    or die "usage: pathcount.pl [--build DIR] [--rates R,..] [--secs S] [--set k=v] [--strace FILE]\n";
$opt{build} = abs_path($opt{build}) or die "no build directory\n";
$ENV{NVSRELAY_BUILD} = $opt{build};
my $BIN = "$opt{build}/bench";

my $pg = NvsTest::Pg->start(conf => { fsync => 'on', full_page_writes => 'on',
    shared_preload_libraries => "'pg_stat_statements'", 'pg_stat_statements.track_utility' => 'off',
    'pg_stat_statements.track_planning' => 'on',
    track_wal_io_timing => 'on' });
my $W = $pg->dir . '/pathcount';
mkdir $W or die "$W: $!";
$pg->psql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
my %set = map { split /=/, $_, 2 } @{ $opt{set} };
my $daemon = NvsTest::Daemon->start($pg, set => { log_level => 'info', %set });

my $doc = $NvsTest::JSON->encode(NvsTest::health_doc(node => '@NODE@', span => '@SPAN@', time => [ 1111111111, 222222 ],
    metadata => { bench_seq => '@SEQ@' }));
$doc =~ s/1111111111/\@SEC\@/;
$doc =~ s/222222000/\@NANO\@/;
$doc =~ s/"2005-03-18T01:58:31\.222222Z"/"\@CREATED\@"/;
open(my $fh, '>', "$W/template.json") or die $!;
print $fh "$doc\n";
close $fh;
my $e = $pg->pgenv;
my $floor_ci = "host=localhost port=$e->{DATASTORE_PORT} dbname=nvsentinel user=nvsentinel sslmode=verify-full"
    . " sslrootcert=$e->{DATASTORE_SSLROOTCERT} sslcert=$e->{DATASTORE_SSLCERT} sslkey=$e->{DATASTORE_SSLKEY}"
    . " gssencmode=disable application_name=bench_floor";
my $writer_ci = "host=$e->{PGHOST} port=$e->{PGPORT} dbname=nvsentinel user=postgres application_name=bench_writer";

sub q1 { return $pg->psql($_[0]) }

sub spawn {
    my ($name, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>', "$W/$name.out");
        open(STDERR, '>', "$W/$name.err");
        exec { $cmd[0] } @cmd or print STDERR "exec: $!\n";
        POSIX::_exit(127);
    }
    return $pid;
}

sub rows { my ($f) = @_; open(my $h, '<', $f) or return (); map { chomp; [ split / / ] } <$h> }

my $CLK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

# CPU seconds (user + system) of processes; 0 for one that is gone.
sub cpu {
    my $t = 0;
    for (@_) {
        my ($f) = NvsTest::slurp("/proc/$_/stat") =~ /\)\s+(.*)$/s or next;
        my @f = split ' ', $f;
        $t += ($f[11] + $f[12]) / $CLK;
    }
    return $t;
}

sub pct { my ($p, @s) = @_; return @s ? $s[ int($p * $#s + 0.5) ] : 'nan' }

my $seq0 = 0;
for my $rate (split /,/, $opt{rates}) {
    my $count = int($rate * $opt{secs});
    my $writers = $rate >= 5000 ? 8 : $rate >= 1000 ? 2 : 1;    # as bench.pl
    unlink "$W/ready";
    my $sub = spawn("sub.$rate", "$BIN/bench_sub", '--socket', $daemon->socket, '--expect', $count,
        '--seconds', $opt{secs} * 3 + 30, '--ready', "$W/ready", '--out', "$W/sub.$rate.rec");
    # The floor: a bare LISTEN over TLS, as bench.pl's latency phase has it.
    my $fl = spawn("floor.$rate", "$BIN/bench_listen", '--conninfo', $floor_ci, '--expect', $count,
        '--seconds', $opt{secs} * 3 + 30, '--ready', "$W/ready.floor", '--out', "$W/floor.$rate.rec");
    for (1 .. 1500) { last if -e "$W/ready" && -e "$W/ready.floor"; Time::HiRes::sleep(0.01) }
    my $st;
    $st = spawn("strace", 'strace', '-ttt', '-f', '-s', '120', '-o', $opt{strace}, '-p', $daemon->pid)
        if $opt{strace} && !$seq0;
    sleep 1;
    q1("SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal'), pg_stat_reset()");
    sleep 1;
    my @be = grep {/^\d+$/} split /\n/, q1("SELECT pid FROM pg_stat_activity WHERE application_name = 'nvsrelayd'");
    my ($cd, $cb) = (cpu($daemon->pid), cpu(@be));
    my $w = spawn("writer.$rate", "$BIN/bench_writer", '--conninfo', $writer_ci, '--template', "$W/template.json",
        '--count', $count, '--rate', $rate, '--writers', $writers, '--first-seq', $seq0, '--out', "$W/writer.$rate.rec");
    waitpid($w, 0);
    waitpid($sub, 0);
    waitpid($fl, 0);
    ($cd, $cb) = (cpu($daemon->pid) - $cd, cpu(@be) - $cb);
    if ($st) { kill 'INT', $st; waitpid($st, 0) }
    sleep 2;    # statistics reach the shared tables within a second of idling
    my %c;
    @c{qw(stmts rows)} = split /\|/, q1("SELECT sum(calls), sum(rows) FROM pg_stat_statements s"
        . " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'nvsentinel'");
    @c{qw(wal_sync wal_write wal_records sync_ms)} = split /\|/, q1('SELECT wal_sync, wal_write, wal_records, round(wal_sync_time::numeric / greatest(wal_sync, 1), 3) FROM pg_stat_wal');
    $c{commits} = q1("SELECT xact_commit FROM pg_stat_database WHERE datname = 'nvsentinel'");
    my @top = split /\n/, q1("SELECT calls || ' calls, ' || round(mean_exec_time::numeric, 3) || ' ms + planning '"
        . " || round((total_plan_time / calls)::numeric, 3) || ' ms: ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 70)"
        . " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'nvsentinel'"
        . " ORDER BY calls DESC LIMIT 5");
    my $ws = $NvsTest::JSON->decode((grep {/^\{/} split /\n/, NvsTest::slurp("$W/writer.$rate.out"))[-1] // '{}');
    my %t0 = map { $_->[0] => $_->[2] } grep { $_->[4] == 1 } rows("$W/writer.$rate.rec");
    my (%t1, @lat);
    for (rows("$W/sub.$rate.rec")) { $t1{ $_->[0] } //= $_->[1] if $_->[0] >= 0 }
    push @lat, ($t1{$_} - $t0{$_}) / 1e6 for grep { exists $t1{$_} } keys %t0;
    @lat = sort { $a <=> $b } @lat;
    # The k-th notification from a writer's backend is its k-th commit.
    my (%bypid, %k, @fl);
    push @{ $bypid{ $_->[1] } }, $_->[0] for grep { $_->[4] == 1 } rows("$W/writer.$rate.rec");
    for (rows("$W/floor.$rate.rec")) {
        my $seq = ($bypid{ $_->[0] } || [])->[ $k{ $_->[0] }++ ];
        push @fl, ($_->[1] - $t0{$seq}) / 1e6 if defined $seq;
    }
    @fl = sort { $a <=> $b } @fl;
    my $n = keys %t0;
    printf "rate %d: %d committed, %d delivered; per event: relay statements %.2f, WAL flushes %.2f,"
        . " WAL writes %.2f, transactions %.2f (writer's included); p50 %.2f ms, p99 %.2f ms (indicative)\n",
        $rate, $n, scalar(@lat), map({ ($c{$_} || 0) / ($n || 1) } qw(stmts wal_sync wal_write commits)),
        pct(0.5, @lat), pct(0.99, @lat);
    printf "    writer: %.0f ev/s achieved, %d transactions late; LISTEN floor (TLS) p50 %.2f ms, p99 %.2f ms\n",
        ($ws->{committed} // 0) / ($ws->{seconds} || 1), $ws->{late_tx} // 0, pct(0.5, @fl), pct(0.99, @fl);
    printf "    WAL flush mean %s ms; CPU s: relay %.2f, its backends %.2f (indicative)\n", $c{sync_ms}, $cd, $cb;
    print "    $_\n" for @top;
    $seq0 += $count + 1000;
}
$daemon->stop(10);
NvsTest::run_cmd([ 'cp', $daemon->logfile, $opt{log} ]) if $opt{log};
NvsTest::run_cmd([ 'cp', '-r', $W, $opt{keep} ]) if $opt{keep};

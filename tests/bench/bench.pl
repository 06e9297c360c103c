#!/usr/bin/perl
# bench.pl - `make bench`: measures nvsrelayd against the physical floor (a bare
# LISTEN client) and against NVSentinel's own change-stream emulation
# (bench_poll), on a throwaway TLS PostgreSQL (tests/tools/pgtmp.sh via
# NvsTest), and writes results.md plus plots into the output directory.  Every
# figure is reported next to a baseline measured in the same run.
#
#   perl tests/bench/bench.pl [--build DIR] [--out DIR] [--quick] [--seed N]
#                             [--only latency,ooo,...] [--keep]
#
# BENCH_QUICK=1 (or --quick) runs every phase for about a second: a smoke
# run whose numbers mean nothing.  BENCH_SEED fixes the seed (recorded).
# BENCH_ONLY takes a comma list of phases: capture latency ooo idle drain
# fanout fanlat restart loaded sizes big ticks relays (catch-up belongs to
# drain).
# BENCH_RUNS, BENCH_SECS, BENCH_RATES, BENCH_FSYNC and BENCH_VARIANTS shape
# the latency matrix; BENCH_BIG=1 the big phase.  What each phase does and
# why is in tests/bench/README.md.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use File::Path qw(make_path remove_tree);
use Getopt::Long;
use JSON::PP ();
use List::Util qw(max min sum);
use POSIX ();
use Time::HiRes ();
use NvsTest;

my %opt = (
    build => $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build",
    out   => $ENV{BENCH_OUT} || "$FindBin::Bin/results",
    quick => $ENV{BENCH_QUICK} ? 1 : 0,
    seed  => $ENV{BENCH_SEED} || 20261125,
    only  => $ENV{BENCH_ONLY} || '',
);
GetOptions(\%opt, 'build=s', 'out=s', 'quick!', 'seed=i', 'only=s', 'keep!')
    or die "usage: bench.pl [--build DIR] [--out DIR] [--quick] [--seed N] [--only PHASES] [--keep]\n";
$opt{build} = abs_path($opt{build}) or die "no build directory\n";
my $BIN = "$opt{build}/bench";
for (qw(bench_writer bench_listen bench_poll bench_sub bench_fan)) {
    die "$BIN/$_ missing: run make\n" unless -x "$BIN/$_";
}
die "$opt{build}/nvsrelayd missing: run make\n" unless -x "$opt{build}/nvsrelayd";
$ENV{NVSRELAY_BUILD} = $opt{build};

# Sizes: full (the figures) and quick (a smoke run of about a minute).
my %S = $opt{quick}
    ? (lat_secs => 0.5, lat_runs => 2, lat_drain => 1, rates => [ 100 ], capture_secs => 1, ooo_secs => 1, writer_rate => 100,
       idle_secs => 2, drain_rows => 10000, drain_secs => 30, capture_rounds => 1, fan_total => 10000, fan_subs => [ 1, 10, 100, 1000 ],
       restart_secs => 3, restart_rate => 100, catchup_conns => 1, catchup_tick_rows => 1000, catchup_tick_rate => 1000,
       relays => [ 1, 3 ], relays_rate => 100, relays_secs => 1,
       loaded_runs => 1, loaded_secs => 1, loaded_rate => 200, loaded_backlog => 10000, loaded_acks => 10, loaded_tls => 20,
       loaded_conds => [qw(quiet catchup acks tls nodes)],
       loaded_tls_procs => 2, sizes_runs => 1, sizes_secs => 0.5, sizes_rate => 50, sizes_updates => 3,
       big_rows => 10000, big_chunk => 1000, big_runs => 2, big_secs => 0.5, big_rate => 200,
       fanlat_subs => [ 1, 10, 20 ], fanlat_rate => 50, fanlat_secs => 0.5, fanlat_runs => 1, fanlat_procs => 2,
       fanlat_stall => 10)
    : (lat_secs => 30, lat_runs => 5, lat_drain => 5, rates => [ 100, 1000, 5000 ], capture_secs => 6, ooo_secs => 15, writer_rate => 100,
       idle_secs => 60, drain_rows => 1000000, drain_secs => 120, capture_rounds => 3, fan_total => 2000000, fan_subs => [ 1, 10, 100, 1000 ],
       restart_secs => 12, restart_rate => 200, catchup_conns => 1, catchup_tick_rows => 600000, catchup_tick_rate => 5000,
       relays => [ 1, 10, 50 ], relays_rate => 1000, relays_secs => 20,
       loaded_runs => 3, loaded_secs => 30, loaded_rate => 1000, loaded_backlog => 1000000, loaded_acks => 100, loaded_tls => 1000,
       loaded_conds => [qw(quiet catchup acks tls nodes)],
       loaded_tls_procs => 4, sizes_runs => 3, sizes_secs => 30, sizes_rate => 250, sizes_updates => 3,
       big_rows => $ENV{BENCH_BIG} ? 10_000_000 : 1_000_000, big_chunk => 10_000, big_runs => 2, big_secs => 30,
       big_rate => 1000,
       fanlat_subs => [ 1, 10, 100, 1000 ], fanlat_rate => 100, fanlat_secs => 20, fanlat_runs => 3,
       fanlat_procs => 4, fanlat_stall => 10);
# BENCH_SECS and BENCH_RUNS: seconds per latency run and interleaved runs
# per cell.  BENCH_SIZES="drain_rows=200000,idle_secs=10" overrides sizes;
# a list's values are separated by colons ("fanlat_subs=100:1000").
$S{lat_secs} = $ENV{BENCH_SECS} if $ENV{BENCH_SECS};
$S{lat_runs} = $ENV{BENCH_RUNS} if $ENV{BENCH_RUNS};
for (grep {length} split /,/, $ENV{BENCH_SIZES} || '') {
    my ($k, $v) = split /=/, $_, 2;
    die "BENCH_SIZES: unknown size $k\n" unless exists $S{$k};
    $S{$k} = ref $S{$k} ? [ split /:/, $v ] : $v;
}
# BENCH_DAEMON_SET="tick_min_interval_ms=2,poll_interval_ms=1000": settings
# for every nvsrelayd the run starts (experiments; recorded in the results).
my %DSET = map { split /=/, $_, 2 } grep {length} split /,/, $ENV{BENCH_DAEMON_SET} || '';
my %ONLY = map { $_ => 1 } grep {length} split /,/, $opt{only};
sub want { my ($p) = @_; return !%ONLY || $ONLY{$p} }

my $JSON = JSON::PP->new->canonical->pretty;
my $T0   = NvsTest::now();
my (@KIDS, $pg, $daemon, $W, $DAEMON_BIN);
my %R = (phases => {}, notes => []);

END {
    local $?;
    kill 'KILL', grep { kill 0, $_ } @KIDS;
}

sub say_ { printf STDERR "[%6.1fs] %s\n", NvsTest::now() - $T0, join('', @_) }

# ------------------------------------------------------------------ processes

sub spawn {
    my ($name, @cmd) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', "$W/$name.json") or POSIX::_exit(127);
        open(STDERR, '>', "$W/$name.err") or POSIX::_exit(127);
        exec { $cmd[0] } @cmd or print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    push @KIDS, $pid;
    return { pid => $pid, name => $name, t0 => NvsTest::now() };
}

# Waits up to $timeout s for the process, then TERM (and KILL 5 s later).
# $tick is called every 50 ms while waiting (RSS sampling).
sub reap {
    my ($p, $timeout, $tick) = @_;
    return $p->{status} if defined $p->{status};
    my $deadline = NvsTest::now() + $timeout;
    my $termed;
    while (1) {
        my $r = waitpid($p->{pid}, POSIX::WNOHANG());
        if ($r == $p->{pid}) {
            $p->{status} = $?;
            $p->{t1} = NvsTest::now();
            @KIDS = grep { $_ != $p->{pid} } @KIDS;
            return $p->{status};
        }
        my $now = NvsTest::now();
        if ($now >= $deadline) {
            if (!$termed) { kill 'TERM', $p->{pid}; $termed = 1; $deadline = $now + 5 }
            else          { kill 'KILL', $p->{pid}; $deadline = $now + 5 }
        }
        $tick->() if $tick;
        Time::HiRes::sleep(0.05);
    }
}

# Whether the process has ended (reaped here if so), without waiting.
sub exited {
    my ($p) = @_;
    return 1 if defined $p->{status};
    return 0 unless waitpid($p->{pid}, POSIX::WNOHANG()) == $p->{pid};
    $p->{status} = $?;
    $p->{t1} = NvsTest::now();
    @KIDS = grep { $_ != $p->{pid} } @KIDS;
    return 1;
}

sub summary {
    my ($p) = @_;
    my @l = grep {/^\{/} split /\n/, NvsTest::slurp("$W/$p->{name}.json");
    my $err = NvsTest::slurp("$W/$p->{name}.err");
    die "$p->{name}: no summary (status " . ($p->{status} // '?') . "): $err\n" unless @l;
    my $s = JSON::PP->new->decode($l[-1]);
    $s->{stderr} = $err if length $err;
    return $s;
}

sub wait_files {
    my ($timeout, @files) = @_;
    my $deadline = NvsTest::now() + $timeout;
    while (grep { !-e $_ } @files) {
        die "timed out waiting for @files\n" if NvsTest::now() > $deadline;
        Time::HiRes::sleep(0.01);
    }
}

my $CLK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

# CPU seconds (user + system) of a process, 0 when it is gone.
sub cpu_of {
    my ($pid) = @_;
    my $s = NvsTest::slurp("/proc/$pid/stat");
    return 0 unless $s =~ /\)\s+(.*)$/s;
    my @f = split ' ', $1;
    return ($f[11] + $f[12]) / $CLK;
}

sub rss_kb {
    my ($pid, $key) = @_;
    $key ||= 'VmRSS';
    return NvsTest::slurp("/proc/$pid/status") =~ /^$key:\s+(\d+)/m ? $1 : 0;
}

# Backend pids by application_name (or user with 'user:NAME').
sub backends {
    my ($who) = @_;
    my $cond = $who =~ /^user:(.*)/ ? "usename = '$1'" : "application_name = '$who'";
    return grep {/^\d+$/} split /\n/,
        $pg->psql("SELECT pid FROM pg_stat_activity WHERE $cond AND pid <> pg_backend_pid()");
}

sub cpu_sum { my $s = 0; $s += cpu_of($_) for @_; return $s }

# The 1-minute load average: other work on the machine skews every figure,
# so each phase records it.
sub loadavg { return (split ' ', NvsTest::slurp('/proc/loadavg'))[0] + 0 }

# Per-statement planning and execution time of the relay's own statements
# (user nvsentinel) since the last pg_stat_statements_reset().
sub relay_statements {
    my @r;
    for (split /\n/, psql("SELECT calls || '|' || round(total_plan_time::numeric, 1) || '|' || "
        . "round(total_exec_time::numeric, 1) || '|' || rows || '|' || "
        . "left(regexp_replace(query, '\\s+', ' ', 'g'), 60) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        . "WHERE r.rolname = 'nvsentinel' ORDER BY total_plan_time + total_exec_time DESC LIMIT 6")) {
        my ($calls, $plan, $exec, $rows, $q) = split /\|/, $_, 5;
        push @r, { calls => $calls + 0, plan_ms => $plan + 0, exec_ms => $exec + 0, rows => $rows + 0, query => $q };
    }
    return \@r;
}

# ------------------------------------------------------------------ database

sub conninfo {
    my ($kind, $app, %o) = @_;
    my $e = $pg->pgenv;
    my $db = $o{db} || 'nvsentinel';
    if ($kind eq 'unix') {
        return "host=$e->{PGHOST} port=$e->{PGPORT} dbname=$db user=" . ($o{user} || 'postgres')
            . " application_name=$app";
    }
    my $user = $o{user} || 'nvsentinel';
    my $ci = "host=localhost port=$e->{DATASTORE_PORT} dbname=$db user=$user sslmode=verify-full "
        . "sslrootcert=$e->{DATASTORE_SSLROOTCERT} gssencmode=disable application_name=$app";
    $ci .= " sslcert=$e->{DATASTORE_SSLCERT} sslkey=$e->{DATASTORE_SSLKEY}" if $user eq 'nvsentinel';
    $ci .= " password=$e->{PGTMP_SCRAM_PASSWORD}" if $user eq 'scram_user';
    return $ci;
}

sub psql { return $pg->psql(@_) }

sub reset_tables {
    my ($db) = @_;
    $pg->psql("TRUNCATE health_events, datastore_changelog; CHECKPOINT;", db => $db || 'nvsentinel');
}

# BENCH_FSYNC="on,off": the durability settings the latency phase runs
# under, the first also for every other phase.  "on" is fsync = on and
# full_page_writes = on (what a deployment runs), "off" both off.
sub fsync_list {
    my @f = grep {length} split /,/, $ENV{BENCH_FSYNC} || 'on,off';
    /^(on|off)$/ or die "BENCH_FSYNC: on or off, not $_\n" for @f;
    return @f;
}

# Both are reloadable (sighup) settings, so one server serves both columns;
# ALTER SYSTEM overrides pgtmp.sh's nvs.conf.  The checkpoint writes out
# what the other setting left in the cache.
sub set_fsync {
    my ($v) = @_;
    return if ($R{fsync_now} // '') eq $v;
    psql("ALTER SYSTEM SET fsync = $v");
    psql("ALTER SYSTEM SET full_page_writes = $v");
    psql('SELECT pg_reload_conf()');
    my $deadline = NvsTest::now() + 10;
    until (psql('SHOW fsync') eq $v && psql('SHOW full_page_writes') eq $v) {
        die "fsync = $v not in effect after a reload\n" if NvsTest::now() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    psql('CHECKPOINT');
    $R{fsync_now} = $v;
}

# The daemon: $kind 'tls' (verify-full mTLS, the deployment) or 'unix'.
sub daemon_start {
    my ($kind, %set) = @_;
    daemon_stop();
    my %s = (log_level => 'info', %DSET, %set);
    if ($kind eq 'unix') {
        $s{datastore_host}    = $pg->sockdir;
        $s{datastore_sslmode} = 'disable';
    }
    $daemon = NvsTest::Daemon->start($pg, set => \%s, bin => $DAEMON_BIN);
    $daemon->{kind} = $kind;
    return $daemon;
}

# The relay with its TCP+TLS listener on 127.0.0.1:$port, the test CA's
# server certificate and client certificates required.
sub daemon_start_tcp {
    my ($port) = @_;
    my $tls = $pg->dir . '/tls';
    return daemon_start('tls', listen_tcp => "127.0.0.1:$port", tls_cert_file => "$tls/server.crt",
        tls_key_file => "$tls/server.key", tls_ca_file => "$tls/ca.crt");
}

sub daemon_stop {
    return unless $daemon;
    my $st = $daemon->stop(10);
    push @{ $R{notes} }, "nvsrelayd exited with status $st at a stop" if defined $st && $st != 0;
    $daemon = undef;
}

# NVSentinel's own trigger function (datastore.go createChangeTriggers, the
# runtime version): one NOTIFY per row with the changelog id, which its
# hybrid mode needs.  The relay treats any NOTIFY as a hint, so it works
# with either.
my $NVS_TRIGGER = <<'SQL';
CREATE OR REPLACE FUNCTION log_table_changes() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE changelog_id BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values)
        VALUES (TG_TABLE_NAME, OLD.id, TG_OP, to_jsonb(OLD)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes', json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO datastore_changelog (table_name, record_id, operation, old_values, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(OLD), to_jsonb(NEW)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes', json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    ELSE
        INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
        VALUES (TG_TABLE_NAME, NEW.id, TG_OP, to_jsonb(NEW)) RETURNING id INTO changelog_id;
        PERFORM pg_notify('nvsentinel_changes', json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
        RETURN NEW;
    END IF;
END
$fn$;
SQL
my $RELAY_TRIGGER;    # pg_get_functiondef of the relay's own, restored after

sub use_trigger {
    my ($which) = @_;
    psql($which eq 'nvsentinel' ? $NVS_TRIGGER : $RELAY_TRIGGER);
}

# The incumbent's own databases: NVSentinel's DDL (sql/001, the tables as
# NVSentinel creates them: changed_at DEFAULT NOW(), the transaction's
# start) with NVSentinel's runtime trigger (a NOTIFY with the changelog id
# per row) in nvs_incumbent; the same with a 1 KB NOTIFY payload in
# nvs_floor.  Nothing of the relay's (xid column, clock_timestamp(), ticks)
# is in either.
sub setup_incumbent {
    my $ddl = NvsTest::slurp("$NvsTest::ROOT/sql/001_nvsentinel_schema.sql");
    (my $floor = $NVS_TRIGGER) =~ s/json_build_object\('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP\)::text/
        rpad(json_build_object('id', changelog_id, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text, 1024)/g;
    die 'unexpected NVSentinel trigger text' if $floor eq $NVS_TRIGGER;
    for my $x ([ nvs_incumbent => $NVS_TRIGGER ], [ nvs_floor => $floor ]) {
        psql("CREATE DATABASE $x->[0] OWNER nvsentinel");
        $pg->psql($ddl . $x->[1] . join('', map {
            "CREATE TRIGGER ${_}_changes AFTER INSERT OR UPDATE OR DELETE ON $_ FOR EACH ROW EXECUTE FUNCTION log_table_changes();\n"
        } qw(health_events maintenance_events)) . 'GRANT ALL ON ALL TABLES IN SCHEMA public TO nvsentinel, scram_user; '
            . 'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO nvsentinel;', db => $x->[0]);
        my $def = $pg->psql("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef d JOIN pg_attribute a ON "
            . "a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = 'datastore_changelog'::regclass "
            . "AND a.attname = 'changed_at'", db => $x->[0]);
        die "$x->[0]: changed_at defaults to $def, not now()\n" unless $def eq 'now()';
    }
}

# ------------------------------------------------------------------ statistics

sub pct {
    my ($sorted, $p) = @_;
    return undef unless @$sorted;
    my $i = int($p / 100 * @$sorted + 0.999999) - 1;
    $i = 0 if $i < 0;
    $i = $#$sorted if $i > $#$sorted;
    return $sorted->[$i];
}

sub read_rows {
    my ($file) = @_;
    open(my $fh, '<', $file) or return [];
    my @r;
    while (<$fh>) { chomp; push @r, [ split / / ] }
    return \@r;
}

# Writer records: seq => [pid, t0, t1, status], and per-pid commit order.
sub read_writer {
    my ($file) = @_;
    my (%w, %bypid);
    for my $r (@{ read_rows($file) }) {
        my ($seq, $pid, $t0, $t1, $st) = @$r;
        $w{$seq} = [ $pid, $t0, $t1, $st ];
        push @{ $bypid{$pid} }, $seq if $st == 1;
    }
    return (\%w, \%bypid);
}

# First arrival time per seq from a subscriber's records.
sub arrivals {
    my ($file) = @_;
    my (%t, $dups);
    for my $r (@{ read_rows($file) }) {
        my ($seq, $t) = @$r;
        next if $seq < 0;
        if (exists $t{$seq}) { $dups++; $t{$seq} = $t if $t < $t{$seq} }
        else                 { $t{$seq} = $t }
    }
    return (\%t, $dups || 0);
}

# Floor: the k-th notification from a writer backend is its k-th commit.
sub floor_arrivals {
    my ($file, $bypid) = @_;
    my (%t, %k);
    for my $r (@{ read_rows($file) }) {
        my ($pid, $t) = @$r;
        my $list = $bypid->{$pid} or next;
        my $seq = $list->[ $k{$pid}++ ];
        $t{$seq} = $t if defined $seq;
    }
    return \%t;
}

# Latency of each committed event (ms) after the warm-up share; undelivered
# events are counted, not averaged in.
sub latency_stats {
    my ($w, $arr, %o) = @_;
    my @seqs = sort { $a <=> $b } grep { $w->{$_}[3] == 1 } keys %$w;
    my $skip = int(@seqs * ($o{warmup} // 0.05));
    @seqs = @seqs[ $skip .. $#seqs ] if $skip < @seqs;
    my (@lat, $missing);
    for my $s (@seqs) {
        if (defined $arr->{$s}) { push @lat, ($arr->{$s} - $w->{$s}[1]) / 1e6 }
        else                    { $missing++ }
    }
    @lat = sort { $a <=> $b } @lat;
    my %st = (n => scalar(@seqs), delivered => scalar(@lat), missing => $missing || 0);
    $st{$_->[0]} = pct(\@lat, $_->[1]) for [ p50 => 50 ], [ p95 => 95 ], [ p99 => 99 ], [ p999 => 99.9 ];
    $st{max} = @lat ? $lat[-1] : undef;
    # With undelivered events the tail is unknown: percentiles beyond the
    # delivered share are reported as "not delivered".
    if ($st{missing}) {
        my $share = $st{delivered} / ($st{n} || 1);
        for ([ p50 => 0.50 ], [ p95 => 0.95 ], [ p99 => 0.99 ], [ p999 => 0.999 ], [ max => 1 ]) {
            $st{ $_->[0] } = undef if $share < $_->[1];
        }
    }
    $st{lat} = \@lat if $o{keep};
    return \%st;
}

# ------------------------------------------------------------------ setup

sub template {
    # NvsTest::health_doc as platform-connectors stores it, with the entities
    # and metadata of an XID event on an 8-GPU node: about 1 KB rendered.
    my $doc = NvsTest::health_doc(
        node => '@NODE@', span => '@SPAN@', time => [ 1111111111, 222222 ],
        entities => [ { entityType => 'GPU', entityValue => '3' }, { entityType => 'PCI', entityValue => '0000:b3:00' },
            { entityType => 'GPU_UUID', entityValue => 'GPU-6d2b3a45-1f0e-4c4a-9d3e-8b2f4d7e9a10' } ],
        metadata => { chassis_serial => '1652823052417', gpu_uuid => 'GPU-6d2b3a45-1f0e-4c4a-9d3e-8b2f4d7e9a10',
            driver_version => '550.90.07', product_name => 'NVIDIA H100 80GB HBM3', bench_seq => '@SEQ@' });
    my $j = $NvsTest::JSON->encode($doc);
    $j =~ s/1111111111/\@SEC\@/;
    $j =~ s/222222000/\@NANO\@/;
    $j =~ s/"2005-03-18T01:58:31\.222222Z"/"\@CREATED\@"/;
    die "template placeholders missing: $j" unless $j =~ /\@SEC\@/ && $j =~ /\@NANO\@/ && $j =~ /\@CREATED\@/;
    return $j;
}

sub machine_info {
    my %m;
    ($m{cpu}) = NvsTest::slurp('/proc/cpuinfo') =~ /^model name\s*:\s*(.*)$/m;
    $m{cores} = () = NvsTest::slurp('/proc/cpuinfo') =~ /^processor\s*:/mg;
    ($m{mem_gib}) = NvsTest::slurp('/proc/meminfo') =~ /^MemTotal:\s+(\d+)/m;
    $m{mem_gib} = sprintf '%.1f', $m{mem_gib} / 1048576 if $m{mem_gib};
    $m{kernel} = (POSIX::uname())[2];
    ($m{os}) = NvsTest::slurp('/etc/os-release') =~ /^PRETTY_NAME="?([^"\n]*)/m;
    (undef, my $cc) = NvsTest::run_cmd([ 'cc', '--version' ]);
    ($m{cc}) = split /\n/, $cc;
    (undef, my $v) = NvsTest::run_cmd([ $DAEMON_BIN, '--version' ]);
    chomp($m{nvsrelayd} = $v);
    (undef, my $git) = NvsTest::run_cmd([ 'git', '-C', $NvsTest::ROOT, 'describe', '--always', '--dirty' ]);
    chomp($m{git} = $git);
    $m{openssl} = (NvsTest::run_cmd([ 'openssl', 'version' ]))[1];
    chomp $m{openssl};
    $m{libpq} = (NvsTest::run_cmd([ 'pkg-config', '--modversion', 'libpq' ]))[1];
    chomp $m{libpq};
    $m{gnuplot} = (NvsTest::run_cmd([ 'sh', '-c', 'gnuplot --version 2>/dev/null || echo none' ]))[1];
    chomp $m{gnuplot};
    return \%m;
}

# ------------------------------------------------------------------ phases

# Capture cost on writers: pgbench rows/s for a plain table, the capture
# trigger without NOTIFY, the trigger with NOTIFY, and the same with the
# relay running and a subscriber reading; single-row and 100-row
# transactions, -c 4 -j 2, prepared.
sub phase_capture {
    say_ 'capture: pgbench, plain INSERT vs trigger vs trigger+NOTIFY';
    my $fdef = psql("SELECT pg_get_functiondef('log_table_changes'::regproc)");
    (my $nonotify = $fdef) =~ s/^\s*PERFORM pg_notify\(.*?;\s*$//m;
    die "no pg_notify line in log_table_changes:\n$fdef" if $nonotify eq $fdef;
    $nonotify =~ s/FUNCTION public\.log_table_changes\(\)/FUNCTION bench_log_changes_no_notify()/
        or die "unexpected function definition:\n$fdef";
    psql(<<"SQL");
CREATE TABLE IF NOT EXISTS bench_plain (LIKE health_events INCLUDING ALL);
CREATE TABLE IF NOT EXISTS bench_trg (LIKE health_events INCLUDING ALL);
$nonotify;
CREATE OR REPLACE TRIGGER bench_trg_changes AFTER INSERT OR UPDATE OR DELETE ON bench_trg
    FOR EACH ROW EXECUTE FUNCTION bench_log_changes_no_notify();
-- Experiment: the same capture as one statement-level trigger with a
-- transition table (INSERT only here), one changelog INSERT and one NOTIFY
-- per statement instead of per row.
CREATE TABLE IF NOT EXISTS bench_stmt (LIKE health_events INCLUDING ALL);
CREATE OR REPLACE FUNCTION bench_log_changes_stmt() RETURNS trigger LANGUAGE plpgsql AS \$fn\$
BEGIN
    INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
    SELECT TG_TABLE_NAME, n.id, TG_OP, to_jsonb(n) FROM new_rows n;
    PERFORM pg_notify('nvsentinel_changes', '{"table":"' || TG_TABLE_NAME || '"}');
    RETURN NULL;
END
\$fn\$;
CREATE OR REPLACE TRIGGER bench_stmt_changes AFTER INSERT ON bench_stmt REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_log_changes_stmt();
CREATE TABLE IF NOT EXISTS bench_nvs (LIKE health_events INCLUDING ALL);
SQL
    # The incumbent's writer cost: NVSentinel's own trigger (a NOTIFY with
    # the changelog id for every row), on a copy of the table.
    (my $nvsfn = $NVS_TRIGGER) =~ s/FUNCTION log_table_changes\(\)/FUNCTION bench_nvs_log_changes()/
        or die 'unexpected NVSentinel trigger text';
    psql($nvsfn . 'CREATE OR REPLACE TRIGGER bench_nvs_changes AFTER INSERT OR UPDATE OR DELETE ON bench_nvs '
        . 'FOR EACH ROW EXECUTE FUNCTION bench_nvs_log_changes();');
    (my $doc = $R{template}) =~ s/\@SEQ\@/0/;
    $doc =~ s/\@(SEC|NANO)\@/1764000000/g;
    $doc =~ s/\@CREATED\@/2026-11-25T10:00:00.123456Z/;
    $doc =~ s/\@SPAN\@/0123456789abcdef/;
    $doc =~ s/\@NODE\@/gpu-node-001/;
    $doc =~ s/'/''/g;
    # pgbench reads ":name" in a script as a variable, and the document has
    # colons: it comes from an immutable function (folded into the plan).
    psql("CREATE OR REPLACE FUNCTION bench_doc() RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$ SELECT '$doc'::jsonb \$\$");
    my $e = $pg->pgenv;
    my @variants = (
        [ plain   => 'bench_plain',   'plain INSERT' ],
        [ trigger => 'bench_trg',     'capture trigger, no NOTIFY' ],
        [ notify  => 'health_events', 'capture trigger + NOTIFY' ],
        [ relay   => 'health_events', 'trigger + NOTIFY, nvsrelayd + 1 subscriber reading' ],
        [ nvs     => 'bench_nvs',     "NVSentinel's own trigger (NOTIFY with the changelog id, every row)" ],
        # Experiments, not what is installed: where the cost comes from.
        [ stmt    => 'bench_stmt',    'experiment: statement-level trigger + NOTIFY (transition table)' ],
        [ lean    => 'health_events', "experiment: trigger + NOTIFY without NVSentinel's two partial changelog indexes" ],
    );
    my %res;
    # Rounds with the variants interleaved, the best kept: other work on
    # the machine only ever slows a run down.
    for my $round (1 .. $S{capture_rounds}) {
    for my $rows (1, 100) {
        for my $v (@variants) {
            my ($key, $table, $label) = @$v;
            my $script = "$W/capture_$key.$rows.sql";
            open(my $fh, '>', $script) or die $!;
            if ($rows == 1) {
                print $fh "\\set n random(1, 512)\n",
                    "INSERT INTO $table (node_name, event_type, severity, recommended_action, document) "
                    . "VALUES ('gpu-node-' || :n, 'GpuXidError', 'GPU', 'RESTART_BM', bench_doc());\n";
            } else {
                print $fh "INSERT INTO $table (node_name, event_type, severity, recommended_action, document) "
                    . "SELECT 'gpu-node-' || g, 'GpuXidError', 'GPU', 'RESTART_BM', bench_doc() "
                    . "FROM generate_series(1, $rows) g;\n";
            }
            close $fh;
            daemon_stop();
            psql("TRUNCATE bench_plain, bench_trg, bench_stmt, bench_nvs, health_events, datastore_changelog; CHECKPOINT;");
            my $idx = $key eq 'lean' ? psql("SELECT string_agg(pg_get_indexdef(indexrelid), ';') FROM pg_index "
                . "WHERE indrelid = 'datastore_changelog'::regclass AND indexrelid::regclass::text IN "
                . "('idx_changelog_unprocessed', 'idx_changelog_resume')") : '';
            psql('DROP INDEX idx_changelog_unprocessed, idx_changelog_resume') if $key eq 'lean';
            my $sub;
            if ($key eq 'relay') {
                daemon_start('tls');
                $sub = spawn("capture_sub.$rows", "$BIN/bench_sub", '--socket', $daemon->socket, '--raw',
                    '--seconds', $S{capture_secs} + 30, '--ready', "$W/capture_sub.$rows.ready");
                wait_files(10, "$W/capture_sub.$rows.ready");
            }
            my ($rc, $out) = NvsTest::run_cmd([ 'pgbench', '-n', '-M', 'prepared', '-c', 4, '-j', 2,
                '-T', $S{capture_secs}, '-f', $script, '-h', $e->{PGHOST}, '-p', $e->{PGPORT}, '-U', 'postgres',
                'nvsentinel' ]);
            die "pgbench failed ($rc): $out" if $rc;
            my ($tps) = $out =~ /tps = ([\d.]+) \(without initial connection time\)/;
            my ($lat) = $out =~ /latency average = ([\d.]+) ms/;
            die "no tps in pgbench output: $out" unless defined $tps;
            if ($sub) { kill 'TERM', $sub->{pid}; reap($sub, 10) }
            psql($idx) if $idx;
            my $old = $res{$rows}{$key};
            $res{$rows}{$key} = { tps => $tps + 0, rows_s => $tps * $rows, latency_ms => $lat, label => $label,
                rounds => [ ($old ? @{ $old->{rounds} } : ()), $tps * $rows ] }
                if !$old || $tps * $rows > $old->{rows_s};
            push @{ $res{$rows}{$key}{rounds} }, $tps * $rows if $old && $tps * $rows <= $old->{rows_s};
            say_ sprintf '  round %d, %3d-row tx, %-8s %9.0f rows/s', $round, $rows, $key, $tps * $rows;
        }
    }
    }
    for my $rows (1, 100) {
        for my $key (keys %{ $res{$rows} }) {
            $res{$rows}{$key}{ratio} = $res{$rows}{$key}{rows_s} / $res{$rows}{plain}{rows_s};
        }
    }
    daemon_stop();
    psql("DROP TABLE bench_plain, bench_trg, bench_stmt, bench_nvs; "
        . "DROP FUNCTION bench_log_changes_no_notify(), bench_log_changes_stmt(), bench_nvs_log_changes(), bench_doc(); "
        . "TRUNCATE health_events, datastore_changelog;");
    $R{phases}{capture} = \%res;
}

# Commit -> subscriber latency.  Each cell (fsync setting, rate, subscriber)
# gets lat_runs runs of lat_secs, interleaved: round by round every
# setting, rate and subscriber runs once (the subscribers in a rotated
# order), so drift on the machine spreads over all cells alike.  Every run
# has two bare LISTEN floors (Unix socket and TLS) alongside, on the
# database its writer writes to.  The subscribers:
#   relay-tls / relay-unix  nvsrelayd on its own schema (database nvsentinel)
#   hybrid / poll-10ms / poll-1s  NVSentinel's watchers on NVSentinel's own
#                           schema and trigger (database nvs_incumbent)
#   floors                  NOTIFY with a 1 KB payload over TLS, and the same
#                           NOTIFY plus hybrid's SELECT by id (database
#                           nvs_floor); two rows, floor-1k and floor-select
# A run whose writer fell behind its rate is kept in the results but left
# out of its cell, and reported.
sub phase_latency {
    my @variants = (
        [ 'relay-tls',  'nvsrelayd (PostgreSQL over TLS)',    'tls' ],
        [ 'relay-unix', 'nvsrelayd (PostgreSQL over Unix socket)', 'unix' ],
        [ 'hybrid',     "NVSentinel hybrid (LISTEN + id fetch, 30 s/5 s fallback), NVSentinel's schema", 'tls' ],
        [ 'poll-10ms',  "NVSentinel polling mode, 10 ms, NVSentinel's schema", 'tls' ],
        [ 'poll-1s',    "NVSentinel polling, 1 s, NVSentinel's schema", 'tls' ],
        [ 'floors',     'floors: NOTIFY with a 1 KB payload; NOTIFY + SELECT by id', 'tls' ],
    );
    # BENCH_VARIANTS="relay-tls,poll-10ms" and BENCH_RATES="1000" narrow the
    # matrix; relay-unix and poll-1s run only when named there.
    my %k = map { $_ => 1 } split /,/, $ENV{BENCH_VARIANTS} || 'relay-tls,hybrid,poll-10ms,floors';
    @variants = grep { $k{ $_->[0] } } @variants;
    $S{rates} = [ split /,/, $ENV{BENCH_RATES} ] if $ENV{BENCH_RATES};
    my @fs = fsync_list();
    my $i = 0;
    for my $round (1 .. $S{lat_runs}) {
        for my $fsync (@fs) {
            set_fsync($fsync);
            for my $rate (@{ $S{rates} }) {
                # Rotated per round: no subscriber always runs first after a
                # setting change.
                my $sh = ($round - 1) % @variants;
                for my $v (@variants[ $sh .. $#variants ], @variants[ 0 .. $sh - 1 ]) {
                    push @{ $R{phases}{latency} }, latency_run($v, $rate, $fsync, $round, ++$i);
                }
            }
        }
    }
    daemon_stop();
    set_fsync($fs[0]);
    $R{phases}{latency_cells} = latency_cells($R{phases}{latency});
}

# One latency run; returns its rows (two for the floors).
# %x (the sizes phase): secs, changes (events per writer "count": 1 +
# updates), writer => [ extra bench_writer arguments ], tag.
sub latency_run {
    my ($v, $rate, $fsync, $round, $i, %x) = @_;
    my ($key, $label, $transport) = @$v;
    my $mult    = $x{changes} || 1;
    my $lcount  = int($rate * ($x{secs} || $S{lat_secs}));
    my $count   = $lcount * $mult;
    my $writers = nwriters($rate * $mult);
    my $db = $key =~ /^relay/ ? 'nvsentinel' : $key eq 'floors' ? 'nvs_floor' : 'nvs_incumbent';
    my $tag = ($x{tag} || 'lat') . ".$fsync.$round.$rate.$key";
    say_ "latency: fsync=$fsync round $round, $rate ev/s, $key ($count events, $writers writers)";
    daemon_stop();
    reset_tables($db);
    daemon_start($1) if $key =~ /^relay-(\w+)/;
    # The receivers run until stopped: at 5k ev/s the writers may take
    # longer than planned, and a receiver must not leave before them.
    my $secs = $S{lat_secs} * 10 + 120;
    my @floors = map {
        spawn("$tag.floor-$_", "$BIN/bench_listen", '--conninfo', conninfo($_, 'bench_floor', db => $db),
            '--expect', $count, '--seconds', $secs, '--ready', "$W/$tag.floor-$_.ready",
            '--out', "$W/$tag.floor-$_.rec")
    } qw(unix tls);
    my @subs;
    if ($key =~ /^relay/) {
        push @subs, spawn("$tag.sub", "$BIN/bench_sub", '--socket', $daemon->socket, '--expect', $count,
            '--seconds', $secs, '--ready', "$W/$tag.sub.ready", '--out', "$W/$tag.sub.rec");
    } elsif ($key eq 'floors') {
        for my $f ([ '1k' ], [ 'select', '--fetch-by-id' ]) {
            push @subs, spawn("$tag.sub-$f->[0]", "$BIN/bench_listen", '--conninfo',
                conninfo('tls', 'bench_floor_' . $f->[0], db => $db), @$f[ 1 .. $#$f ], '--expect', $count,
                '--seconds', $secs, '--ready', "$W/$tag.sub-$f->[0].ready", '--out', "$W/$tag.sub-$f->[0].rec");
        }
    } else {
        my @mode = $key eq 'hybrid' ? ('--hybrid') : ('--interval-ms', $key eq 'poll-1s' ? 1000 : 10);
        push @subs, spawn("$tag.sub", "$BIN/bench_poll", '--conninfo', conninfo($transport, 'bench_poll', db => $db), @mode,
            '--expect', $count, '--seconds', $secs, '--ready', "$W/$tag.sub.ready", '--out', "$W/$tag.sub.rec");
    }
    wait_files(15, map {"$W/$_->{name}.ready"} @floors, @subs);
    my $cpu0 = $daemon ? cpu_of($daemon->pid) : 0;
    my @be   = $daemon ? backends('nvsrelayd') : backends($key eq 'floors' ? 'bench_floor_select' : 'bench_poll');
    my $bcpu0 = cpu_sum(@be);
    psql('SELECT pg_stat_statements_reset()');
    my $load0 = loadavg();
    my $wr = spawn("$tag.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer', db => $db),
        '--template', "$W/template.json", '--count', $lcount, '--rate', $rate, '--writers', $writers,
        '--seed', $opt{seed} + $i, '--out', "$W/$tag.writer.rec", '--deadline-s', deadline($x{secs} || $S{lat_secs}),
        @{ $x{writer} || [] });
    reap($wr, $S{lat_secs} * 3 + 30);
    my $ws = summary($wr);
    reap_by(drain_end($ws), @floors, @subs);
    my @ss = map { summary($_) } @subs;
    my $dcpu = $daemon ? cpu_of($daemon->pid) - $cpu0 : undef;
    my $bcpu = cpu_sum(@be) - $bcpu0;
    my ($w, $bypid) = read_writer("$W/$tag.writer.rec");
    my $achieved = $ws->{committed} / $mult / ($ws->{seconds} || 1);
    my %common = (rate => $rate, fsync => $fsync, round => $round, transport => $transport, db => $db, writer => $ws,
        seed => $opt{seed} + $i, writers => $writers, achieved_rate => $achieved,
        late_share => ($ws->{late_tx} || 0) / ($count || 1), loadavg => [ $load0, loadavg() ],
        daemon_cpu_s => $dcpu, backend_cpu_s => $bcpu);
    # "Fell behind": fewer commits per second than asked for.  Its latency
    # measures the writer's backlog, not the subscriber.
    $common{discarded} = sprintf('writer fell behind: %.0f of %d ev/s%s', $achieved, $rate,
        $ws->{unsent} ? ", $ws->{unsent} events never sent (deadline)" : '') if $achieved < 0.95 * $rate;
    for my $f (qw(unix tls)) {
        $common{"floor_$f"} = latency_stats($w, floor_arrivals("$W/$tag.floor-$f.rec", $bypid), keep => $rate == 1000);
    }
    my @rows;
    if ($key eq 'floors') {
        push @rows, { %common, key => 'floor-1k', label => 'floor: NOTIFY with a 1 KB payload (TLS)', sub => $ss[0],
            duplicates => 0, client_cpu_s => $ss[0]{cpu_s},
            stats => latency_stats($w, floor_arrivals("$W/$tag.sub-1k.rec", $bypid), keep => $rate == 1000) };
        my ($arr, $dups) = arrivals("$W/$tag.sub-select.rec");
        push @rows, { %common, key => 'floor-select', label => 'floor: NOTIFY + SELECT by id (TLS)', sub => $ss[1],
            duplicates => $dups, client_cpu_s => $ss[1]{cpu_s}, stats => latency_stats($w, $arr, keep => $rate == 1000) };
    } else {
        my ($arr, $dups) = arrivals("$W/$tag.sub.rec");
        push @rows, { %common, key => $key, label => $label, sub => $ss[0], duplicates => $dups,
            client_cpu_s => $ss[0]{cpu_s}, disorder => $ss[0]{disorder},
            stats => latency_stats($w, $arr, keep => $rate == 1000),
            statements => $key =~ /^relay/ ? relay_statements() : undef };
    }
    for my $r (@rows) {
        my ($s, $fl) = ($r->{stats}, $r->{"floor_$transport"});
        say_ sprintf '  %-12s p50 %s  p99 %s  p99.9 %s  max %s ms; floor(%s) p99 %s; delivered %d/%d%s', $r->{key},
            fmt($s->{p50}), fmt($s->{p99}), fmt($s->{p999}), fmt($s->{max}), $transport, fmt($fl->{p99}),
            $s->{delivered}, $s->{n}, $r->{discarded} ? " (DISCARDED: $r->{discarded})" : '';
    }
    return @rows;
}

# Events of 0.5 to 8 KB (a random pad in the document, past TOAST's 2 KB
# when large) with UPDATE-heavy lifecycles: each inserted event is updated
# sizes_updates times, each change an event (the relay computes the update
# diff of each).  nvsrelayd against NVSentinel's hybrid watcher, on their
# own schemas, headline fsync, sizes_runs interleaved rounds.
sub phase_sizes {
    my $k = $S{sizes_updates};
    my @variants = ([ 'relay-tls', 'nvsrelayd (PostgreSQL over TLS)', 'tls' ],
        [ 'hybrid', "NVSentinel hybrid, NVSentinel's schema", 'tls' ]);
    my $f0 = (fsync_list())[0];
    set_fsync($f0);
    my @rows;
    my $i = 600;
    for my $round (1 .. $S{sizes_runs}) {
        for my $v ($round % 2 ? @variants : reverse @variants) {
            push @rows, latency_run($v, $S{sizes_rate}, $f0, $round, ++$i, secs => $S{sizes_secs}, changes => $k + 1,
                tag => 'sizes', writer => [ '--updates', $k, '--pad-min', 500, '--pad-max', 8000 ]);
        }
    }
    daemon_stop();
    $R{phases}{sizes} = { runs => \@rows, cells => latency_cells(\@rows), updates => $k, rate => $S{sizes_rate} };
}

# Writer connections for a rate: one per writer_rate ev/s (default 100, so
# each has 10 ms per transaction).  With fsync = on a commit waits for its
# WAL flush (several ms on ordinary disks), and a few connections cannot
# keep 1k or 5k ev/s however fast the subscriber is.
# After the writer: receivers get lat_drain seconds in all to take the
# tail (they exit by themselves once they have every event); 1 s when the
# writer left events unsent at its deadline, since they wait for those.
sub drain_end { my ($ws) = @_; return NvsTest::now() + ($ws->{unsent} ? 1 : $S{lat_drain}) }

sub reap_by {
    my ($end, @p) = @_;
    for my $p (@p) {
        my $left = $end - NvsTest::now();
        reap($p, $left > 0.05 ? $left : 0.05);
    }
}

# A writer that fell behind stops starting transactions here (its run is
# left out anyway), so one slow cell cannot stretch the run for minutes.
sub deadline { my ($secs) = @_; return $secs * 1.5 + 2 }

sub nwriters {
    my ($rate) = @_;
    my $n = POSIX::ceil($rate / $S{writer_rate});
    return $n < 1 ? 1 : $n;
}

sub median {
    my @v = sort { $a <=> $b } grep {defined} @_;
    return undef unless @v;
    return @v % 2 ? $v[ $#v / 2 ] : ($v[ @v / 2 - 1 ] + $v[ @v / 2 ]) / 2;
}

# Runs into cells: per (fsync, rate, subscriber) the kept runs' median and
# range of p50 and p99, the median p99.9, the worst max, and the same-run
# bare LISTEN floor.  A percentile a run could not give (events missing)
# makes the cell's median undefined: an undelivered tail is no figure.
sub latency_cells {
    my ($rows) = @_;
    my (%c, @order);
    for my $r (@$rows) {
        my $k = "$r->{fsync}|$r->{rate}|$r->{key}";
        push @order, $k unless $c{$k};
        push @{ $c{$k}{runs} }, $r;
    }
    my @cells;
    for my $k (@order) {
        my @all  = @{ $c{$k}{runs} };
        my @kept = grep { !$_->{discarded} } @all;
        my %cell = (fsync => $all[0]{fsync}, rate => $all[0]{rate}, key => $all[0]{key}, label => $all[0]{label},
            transport => $all[0]{transport}, runs => scalar @all, kept => scalar @kept,
            discarded => [ map { "round $_->{round}: $_->{discarded}" } grep { $_->{discarded} } @all ]);
        for my $p (qw(p50 p99 p999 max)) {
            my @v = map { $_->{stats}{$p} } @kept;
            my $undelivered = grep { !defined } @v;
            $cell{$p} = $undelivered || !@v ? undef : median(@v);
            $cell{"${p}_min"} = $undelivered || !@v ? undef : min(@v);
            $cell{"${p}_max"} = $undelivered || !@v ? undef : max(@v);
        }
        $cell{missing} = sum(0, map { $_->{stats}{missing} } @kept);
        for my $f (qw(unix tls)) {
            for my $p (qw(p50 p99)) { $cell{"floor_${f}_$p"} = median(map { $_->{"floor_$f"}{$p} } @kept) }
        }
        $cell{loadavg} = median(map { $_->{loadavg}[0] } @all);
        push @cells, \%cell;
    }
    return \@cells;
}

# Events missed when transactions commit out of id order: 8 writers hold
# each transaction open a random 0-20 ms between INSERT and COMMIT (so ids
# commit out of order), 5% roll back.  Run A with the relay's trigger:
# relay, polling 10 ms, polling 1 s.  Run B with NVSentinel's trigger:
# relay and hybrid.  An event is "skipped" when the poller's final cursor
# is past it (it will never be read), "behind" when it simply was not
# reached yet.
sub phase_ooo {
    my $rate  = 400;
    my $count = int($rate * $S{ooo_secs});
    my %res;
    my $i = 100;
    for my $run ([ A => 'relay', [ 'relay', 'poll-10ms', 'poll-1s' ] ], [ B => 'nvsentinel', [ 'relay', 'hybrid' ] ]) {
        my ($name, $trigger, $clients) = @$run;
        $i++;
        say_ "out-of-order commits, run $name ($trigger trigger): @$clients";
        daemon_stop();
        reset_tables();
        daemon_start('tls');
        use_trigger($trigger);
        my $secs = $S{ooo_secs} * 3 + 30;
        my %p;
        for my $c (@$clients) {
            my $tag = "ooo.$name.$c";
            if ($c eq 'relay') {
                $p{$c} = spawn($tag, "$BIN/bench_sub", '--socket', $daemon->socket, '--seconds', $secs,
                    '--ready', "$W/$tag.ready", '--out', "$W/$tag.rec");
            } else {
                my @mode = $c eq 'hybrid' ? ('--hybrid') : ('--interval-ms', $c eq 'poll-1s' ? 1000 : 10);
                $p{$c} = spawn($tag, "$BIN/bench_poll", '--conninfo', conninfo('tls', 'bench_poll'), @mode,
                    '--seconds', $secs, '--ready', "$W/$tag.ready", '--out', "$W/$tag.rec");
            }
        }
        wait_files(15, map {"$W/$_->{name}.ready"} values %p);
        my $wr = spawn("ooo.$name.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
            '--template', "$W/template.json", '--count', $count, '--rate', $rate, '--writers', 8,
            '--hold-max-ms', 20, '--rollback-pct', 5, '--seed', $opt{seed} + $i, '--out', "$W/ooo.$name.writer.rec");
        reap($wr, $S{ooo_secs} * 5 + 30);
        my $ws = summary($wr);
        my ($w) = read_writer("$W/ooo.$name.writer.rec");
        my @committed = grep { $w->{$_}[3] == 1 } keys %$w;
        my %rolled = map { $_ => 1 } grep { $w->{$_}[3] == 0 } keys %$w;
        # Out-of-order commits in this workload: pairs where a lower
        # changelog id committed after a higher one was visible.
        my %id_of = map { split /\|/ } split /\n/, psql(
            "SELECT new_values->'document'->'healthevent'->'metadata'->>'bench_seq' || '|' || id FROM datastore_changelog");
        my ($inv, $maxid) = (0, -1);
        for my $s (sort { $w->{$a}[2] <=> $w->{$b}[2] } @committed) {
            my $id = $id_of{$s} // next;
            if ($id < $maxid) { $inv++ } else { $maxid = $id }
        }
        # Let every client finish what it can: the relay and the 10 ms
        # poller catch up within a second; the 1 s poller reads 100 rows/s.
        my $settle = NvsTest::now() + ($opt{quick} ? 1 : 5);
        Time::HiRes::sleep(0.1) while NvsTest::now() < $settle;
        kill 'TERM', $_->{pid} for values %p;
        reap($_, 10) for values %p;
        for my $c (@$clients) {
            my $tag = "ooo.$name.$c";
            my $s = summary($p{$c});
            my ($arr, $dups) = arrivals("$W/$tag.rec");
            my @missing = grep { !exists $arr->{$_} } @committed;
            my $phantoms = grep { $rolled{$_} } keys %$arr;
            my ($skipped, $behind) = (scalar @missing, 0);
            if ($c =~ /^poll|hybrid/ && @missing) {
                # The cursor is where the last delivered row put it.
                my $last = (sort { $a->[2] <=> $b->[2] } grep { $_->[0] >= 0 } @{ read_rows("$W/$tag.rec") })[-1];
                my $cur = $last ? $last->[2] : 0;
                my ($cts) = $cur ? psql("SELECT changed_at FROM datastore_changelog WHERE id = $cur") : ('-infinity');
                my $list = join ',', map { "'$_'" } @missing;
                ($skipped) = psql("SELECT count(*) FROM datastore_changelog WHERE "
                    . "new_values->'document'->'healthevent'->'metadata'->>'bench_seq' IN ($list) "
                    . "AND (changed_at, id) < ('$cts'::timestamptz, $cur)");
                $behind = @missing - $skipped;
            }
            $res{$name}{$c} = { committed => scalar @committed, delivered => scalar(keys %$arr) - $phantoms,
                missing => scalar @missing, skipped => $skipped + 0, behind => $behind, phantoms => $phantoms,
                duplicates => $dups, queries => $s->{queries}, disorder => $s->{disorder} };
            say_ sprintf '  %-9s missed %d (skipped %d, behind %d) of %d, phantoms %d, duplicates %d', $c,
                scalar @missing, $skipped, $behind, scalar @committed, $phantoms, $dups;
        }
        $res{$name}{writer} = $ws;
        $res{$name}{inversions} = $inv;
        $res{$name}{seed} = $opt{seed} + $i;
        $res{$name}{trigger} = $trigger;
        daemon_stop();
        use_trigger('relay');
    }
    $res{rate} = $rate;
    $R{phases}{ooo} = \%res;
}

# Idle cost over idle_secs: the relay (one subscriber connected) and the
# two NVSentinel modes side by side; statements counted per PostgreSQL user
# by pg_stat_statements (relay: nvsentinel, polling: postgres, hybrid:
# scram_user), CPU of each process and of its backends.
sub phase_idle {
    say_ "idle: $S{idle_secs} s, relay vs polling 10 ms vs hybrid";
    daemon_stop();
    reset_tables();
    psql("GRANT SELECT ON datastore_changelog TO scram_user");
    use_trigger('relay');
    daemon_start('tls');
    my $secs = $S{idle_secs} + 30;
    my $sub  = spawn('idle.relay', "$BIN/bench_sub", '--socket', $daemon->socket, '--seconds', $secs,
        '--ready', "$W/idle.relay.ready");
    my $poll = spawn('idle.poll', "$BIN/bench_poll", '--conninfo', conninfo('tls', 'bench_poll', user => 'postgres', db => 'nvs_incumbent'),
        '--interval-ms', 10, '--seconds', $secs, '--ready', "$W/idle.poll.ready");
    my $hyb = spawn('idle.hybrid', "$BIN/bench_poll", '--conninfo', conninfo('tls', 'bench_hybrid', user => 'scram_user', db => 'nvs_incumbent'),
        '--hybrid', '--seconds', $secs, '--ready', "$W/idle.hybrid.ready");
    wait_files(15, map {"$W/$_->{name}.ready"} $sub, $poll, $hyb);
    Time::HiRes::sleep(1);
    my %be = (relay => [ backends('nvsrelayd') ], poll => [ backends('bench_poll') ], hybrid => [ backends('bench_hybrid') ]);
    my %proc = (relay => $daemon->pid, poll => $poll->{pid}, hybrid => $hyb->{pid});
    my %c0 = map { $_ => cpu_of($proc{$_}) } keys %proc;
    my %b0 = map { $_ => cpu_sum(@{ $be{$_} }) } keys %be;
    my ($x0) = psql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'nvsentinel'");
    psql("SELECT pg_stat_statements_reset()");
    my $t0 = NvsTest::now();
    Time::HiRes::sleep($S{idle_secs});
    my $dt = NvsTest::now() - $t0;
    my %calls = map { split /\|/ } split /\n/, psql(
        "SELECT r.rolname || '|' || sum(s.calls) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        . "WHERE s.query NOT LIKE '%pg_stat_statements%' GROUP BY r.rolname");
    my ($x1) = psql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'nvsentinel'");
    my %user = (relay => 'nvsentinel', poll => 'postgres', hybrid => 'scram_user');
    my %res = (seconds => $dt, db_xacts_per_s => ($x1 - $x0) / $dt);
    for my $k (qw(relay poll hybrid)) {
        $res{$k} = {
            cpu_pct         => 100 * (cpu_of($proc{$k}) - $c0{$k}) / $dt,
            backend_cpu_pct => 100 * (cpu_sum(@{ $be{$k} }) - $b0{$k}) / $dt,
            queries_per_s   => ($calls{ $user{$k} } || 0) / $dt,
            rss_kb          => rss_kb($proc{$k}),
        };
        say_ sprintf '  %-6s cpu %.2f%% + backends %.2f%%, %.2f statements/s', $k, $res{$k}{cpu_pct},
            $res{$k}{backend_cpu_pct}, $res{$k}{queries_per_s};
    }
    kill 'TERM', $_->{pid} for $sub, $poll, $hyb;
    reap($_, 10) for $sub, $poll, $hyb;
    daemon_stop();
    $R{phases}{idle} = \%res;
}

# The transactions of the last bulk load (their xids): a tick sees the
# load once its snapshot sees every one of them.
my @loaded_xids;

# N changelog rows committed at once by 4 sessions, written straight into
# datastore_changelog in the shape the trigger writes (to_jsonb of a
# health_events row), so loading does not dominate the run.
sub bulk_load {
    my ($n, $first) = @_;
    my $k = $n >= 4000 ? 4 : 1;
    my @dbh = map { $pg->dbh(autocommit => 0) } 1 .. $k;
    (my $doc = $R{template}) =~ s/"\@SEQ\@"/"0"/;
    $doc =~ s/\@(SEC|NANO)\@/1764000000/g;
    $doc =~ s/\@CREATED\@/2026-11-25T10:00:00.123456Z/;
    $doc =~ s/\@SPAN\@/0123456789abcdef/;
    $doc =~ s/\@NODE\@/gpu-node-001/;
    my $sql = <<'SQL';
INSERT INTO datastore_changelog (table_name, record_id, operation, new_values)
SELECT 'health_events', r.id, 'INSERT', to_jsonb(r)
FROM (SELECT (jsonb_populate_record(NULL::health_events, jsonb_build_object(
        'id', gen_random_uuid(), 'node_name', 'gpu-node-' || (g % 512), 'event_type', 'GpuXidError',
        'severity', 'GPU', 'recommended_action', 'RESTART_BM', 'user_pods_eviction_status', 'NotStarted',
        'created_at', now(), 'updated_at', now(),
        'document', jsonb_set(?::jsonb, '{healthevent,metadata,bench_seq}', to_jsonb(g::text))))).*
      FROM generate_series(?::bigint, ?::bigint) g) r
SQL
    my $t0 = NvsTest::now();
    my @sth;
    for my $j (0 .. $k - 1) {
        my $a = $first + int($n * $j / $k);
        my $b = $first + int($n * ($j + 1) / $k) - 1;
        # Asynchronous, so the four sessions load in parallel.
        $sth[$j] = $dbh[$j]->prepare($sql, { pg_async => DBD::Pg::PG_ASYNC() });
        $sth[$j]->execute($doc, $a, $b);
    }
    $_->pg_result for @dbh;
    undef @sth;
    # The NOTIFY the capture trigger would have sent with these rows: without
    # it the relay learns of the commit only from its head probe.
    $_->do(q{SELECT pg_notify('nvsentinel_changes', '{"table":"health_events"}')}) for @dbh;
    my $load = NvsTest::now() - $t0;
    return ($load, sub {
        @loaded_xids = map { $_->selectrow_array('SELECT pg_current_xact_id()::text') } @dbh;
        my $tc = NvsTest::now();
        $_->commit for @dbh;
        $_->disconnect for @dbh;
        return ($tc, NvsTest::now());
    });
}

# What was measured, by content: SHA-256 over the path and bytes of every
# tracked file of daemon/ proto/ sql/ cli/ and the Makefile as they are in
# the work tree (uncommitted edits count; results files are not among
# them), so two runs of the same source match whatever the commit.
sub source_hash {
    require Digest::SHA;
    my ($rc, $files) = NvsTest::run_cmd([ 'git', '-C', $NvsTest::ROOT, 'ls-files', '--', 'daemon', 'proto', 'sql', 'cli', 'Makefile' ]);
    return { error => "git ls-files failed: $files" } if $rc;
    my @f = sort grep {length} split /\n/, $files;
    my $d = Digest::SHA->new(256);
    for my $f (@f) {
        my $b = NvsTest::slurp("$NvsTest::ROOT/$f") // '';
        $d->add($f, "\0", length($b), "\0", $b);
    }
    (undef, my $dirty) = NvsTest::run_cmd([ 'git', '-C', $NvsTest::ROOT, 'status', '--porcelain', '--', 'daemon', 'proto', 'sql', 'cli', 'Makefile' ]);
    return { sha256 => $d->hexdigest, files => scalar @f, uncommitted => length($dirty) ? 1 : 0,
        scope => 'git ls-files daemon proto sql cli Makefile' };
}

sub mono_now {
    # bench clients stamp CLOCK_MONOTONIC; NvsTest::now is wall time.
    return Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC()) * 1e9;
}

# Drain: drain_rows rows committed at once to one live subscriber (raw
# reader).  Catch-up: a second subscriber resumes from the position before
# them (resumeAfter) and replays all of them from PostgreSQL.
sub phase_drain {
    my $n = $S{drain_rows};
    say_ "drain: $n changelog rows to one subscriber";
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    daemon_start('tls');
    # The subscriber waits through the loading too (minutes for 1M rows on a
    # busy machine); the drain itself is bounded by drain_secs below.
    my $secs = 900 + $n / 1000;
    my $sub = spawn('drain.sub', "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--expect', $n,
        '--seconds', $secs, '--ready', "$W/drain.sub.ready", '--token-out', "$W/drain.token");
    wait_files(15, "$W/drain.sub.ready", "$W/drain.token");
    my ($load, $commit) = bulk_load($n, 1);
    say_ sprintf '  loaded in %.1f s (uncommitted), committing', $load;
    my @be = backends('nvsrelayd');
    my ($c0, $b0) = (cpu_of($daemon->pid), cpu_sum(@be));
    my $rss_max = 0;
    my $m0 = mono_now();
    my ($tc, $tc1) = $commit->();
    # At most drain_secs: a slow drain is reported by its rate, not waited for.
    reap($sub, $S{drain_secs}, sub { my $r = rss_kb($daemon->pid); $rss_max = $r if $r > $rss_max });
    my ($c1, $b1) = (cpu_of($daemon->pid), cpu_sum(@be));
    my $s = summary($sub);
    my $wall = ($s->{last_ns} - $m0) / 1e9;
    my %d = (rows => $n, load_s => $load, commit_s => $tc1 - $tc, events => $s->{events}, seconds => $wall,
        rate => $s->{events} / ($wall || 1e-9), first_event_s => ($s->{first_ns} - $m0) / 1e9,
        daemon_cpu_s => $c1 - $c0, backend_cpu_s => $b1 - $b0, client_cpu_s => $s->{cpu_s}, rss_max_kb => $rss_max,
        disorder => $s->{disorder});
    $d{daemon_cpu_per_m} = $d{daemon_cpu_s} * 1e6 / ($s->{events} || 1);
    $d{backend_cpu_per_m} = $d{backend_cpu_s} * 1e6 / ($s->{events} || 1);
    say_ sprintf '  %d events in %.2f s: %.0f ev/s; daemon %.2f CPU-s (%.1f per 1M), backends %.2f CPU-s, RSS max %d KiB',
        $s->{events}, $wall, $d{rate}, $d{daemon_cpu_s}, $d{daemon_cpu_per_m}, $d{backend_cpu_s}, $rss_max;
    $R{phases}{drain} = \%d;

    # catchup_conns > 1: that many consumers resume at once (memory).
    my $cn = $S{catchup_conns};
    say_ "catch-up: $cn consumer(s) $n events behind";
    my $tok = NvsTest::slurp("$W/drain.token");
    chomp $tok;
    ($c0, $b0) = (cpu_of($daemon->pid), cpu_sum(backends('nvsrelayd')));
    $rss_max = 0;
    $m0 = mono_now();
    my $cu = spawn('catchup.sub', "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--conns', $cn,
        '--expect', $n, '--resume-after', $tok, '--seconds', $secs);
    reap($cu, $S{drain_secs}, sub { my $r = rss_kb($daemon->pid); $rss_max = $r if $r > $rss_max });
    ($c1, $b1) = (cpu_of($daemon->pid), cpu_sum(backends('nvsrelayd')));
    $s = summary($cu);
    $wall = ($s->{last_ns} - $m0) / 1e9;
    my %c = (rows => $n, conns => $cn, events => $s->{events}, seconds => $wall, rate => $s->{events} / ($wall || 1e-9),
        daemon_cpu_s => $c1 - $c0, backend_cpu_s => $b1 - $b0, client_cpu_s => $s->{cpu_s}, rss_max_kb => $rss_max,
        disorder => $s->{disorder});
    $c{daemon_cpu_per_m} = $c{daemon_cpu_s} * 1e6 / ($s->{events} || 1);
    say_ sprintf '  %d events in %.2f s: %.0f ev/s; daemon %.2f CPU-s, RSS max %d KiB', $s->{events}, $wall, $c{rate},
        $c{daemon_cpu_s}, $rss_max;
    $R{phases}{catchup} = \%c;
    # The drained rows are the whole changelog (emptied before); ids
    # continue the sequence across TRUNCATEs.
    my ($lo, $hi) = split /\|/, psql("SELECT min(id) || '|' || max(id) FROM datastore_changelog");
    $R{phases}{copy} = copy_rate($lo, $hi);
    say_ sprintf '  COPY of the same rows over TLS: %.2f s, %.0f rows/s', $R{phases}{copy}{seconds}, $R{phases}{copy}{rate};

    # What one NVSentinel poll costs the server at this changelog size (its
    # query has no usable index: the partial ones need processed = FALSE).
    my ($ts, $id) = split /\|/, psql("SELECT changed_at || '|' || id FROM datastore_changelog ORDER BY id DESC LIMIT 1");
    my $plan = psql("EXPLAIN (ANALYZE, FORMAT JSON) SELECT id, record_id, operation, old_values, new_values, changed_at "
        . "FROM datastore_changelog WHERE table_name = 'health_events' AND (changed_at > '$ts' OR "
        . "(changed_at = '$ts' AND id > $id)) ORDER BY changed_at ASC, id ASC LIMIT 100");
    my $pj = JSON::PP->new->decode($plan)->[0];
    $R{phases}{poll_query} = { rows => $n, ms => $pj->{'Execution Time'}, node => $pj->{Plan}{'Node Type'},
        inner => join(' > ', plan_nodes($pj->{Plan})) };
    say_ sprintf '  one NVSentinel poll at %d rows: %.2f ms (%s)', $n, $pj->{'Execution Time'}, $R{phases}{poll_query}{inner};
    daemon_stop();
}

# Drain baseline: what PostgreSQL itself hands out over TLS.  The same
# rows' columns, as the relay's batch read selects them (relay.c
# ROW_COLUMNS), through COPY ... TO STDOUT by psql as nvsentinel with
# verify-full mTLS into /dev/null.
sub copy_rate {
    my ($first, $last) = @_;
    my $e = $pg->pgenv;
    my $sql = q{COPY (SELECT c.id, c.table_name, c.record_id::text, c.operation, }
        . q{to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), }
        . q{(CASE WHEN c.table_name = 'health_events' THEN (c.new_values->'document') || jsonb_build_object('id', c.record_id) ELSE c.new_values END)::text, }
        . q{(CASE WHEN c.table_name = 'health_events' THEN (c.old_values->'document') || jsonb_build_object('id', c.record_id) ELSE c.old_values END)::text }
        . "FROM datastore_changelog c WHERE c.id BETWEEN $first AND $last ORDER BY c.id) TO STDOUT";
    my $t0 = NvsTest::now();
    my ($rc, $o) = NvsTest::run_cmd([ 'sh', '-c', 'exec "$0" -X -q -d "$1" -c "$2" >/dev/null', "$e->{PGTMP_BIN}/psql",
        conninfo('tls', 'bench_copy'), $sql ]);
    my $dt = NvsTest::now() - $t0;
    die "COPY failed: $o" if $rc;
    my $rows = psql("SELECT count(*) FROM datastore_changelog WHERE id BETWEEN $first AND $last");
    return { rows => $rows + 0, seconds => $dt, rate => $rows / ($dt || 1e-9) };
}

# Catch-up of a backlog built the way a live relay builds it: many small
# ticks.  The relay runs while writers commit catchup_tick_rows events at
# catchup_tick_rate (each NOTIFY asks for a tick, so every tick holds a
# few events: ten minutes of live ticking in a fraction of the time; a
# server that commits slower, durably, stops the writers at the deadline
# and the backlog is what they committed); a
# subscriber's position before them was kept.  Then the relay stops,
# PostgreSQL restarts and the OS page cache is dropped (as root, not in a
# quick run: other work on the machine shares it), a new relay starts and
# the subscriber resumes from that position.  Target: 50k ev/s.
sub phase_ticks {
    my $n = $S{catchup_tick_rows};
    say_ "catch-up after small ticks: $n events at $S{catchup_tick_rate} ev/s, then a cold start";
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    daemon_start('tls');
    my $tok = spawn('ticks.tok', "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--seconds', 30,
        '--ready', "$W/ticks.tok.ready", '--token-out', "$W/ticks.token");
    wait_files(15, "$W/ticks.tok.ready", "$W/ticks.token");
    kill 'TERM', $tok->{pid};
    reap($tok, 10);
    my $t0 = eval { psql('SELECT count(*) FROM nvsrelay.tick') } // 0;
    my $wr = spawn('ticks.writer', "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
        '--template', "$W/template.json", '--count', $n, '--rate', $S{catchup_tick_rate}, '--writers', nwriters($S{catchup_tick_rate}),
        '--seed', $opt{seed} + 300, '--out', "$W/ticks.writer.rec", '--deadline-s', deadline($n / $S{catchup_tick_rate}));
    reap($wr, $n / $S{catchup_tick_rate} * 3 + 60);
    my $ws = summary($wr);
    Time::HiRes::sleep(1);    # the last ticks
    my $t1 = eval { psql('SELECT count(*) FROM nvsrelay.tick') } // 0;
    daemon_stop();
    my %r = (rows => $ws->{committed}, write_s => $ws->{seconds}, ticks => $t1 - $t0,
        rows_per_tick => $ws->{committed} / (($t1 - $t0) || 1));
    my $tp = NvsTest::now();
    $pg->restart('fast');
    $r{pg_restart_s} = NvsTest::now() - $tp;
    if ($opt{quick}) {
        $r{cache} = 'OS page cache kept (quick run)';
    } elsif ($> == 0 && open(my $fh, '>', '/proc/sys/vm/drop_caches')) {
        NvsTest::run_cmd([ 'sync' ]);
        my $ok = print $fh "3\n";
        $ok = close($fh) && $ok;
        $r{cache} = $ok ? 'OS page cache dropped' : "OS page cache not dropped: $!";
    } else {
        $r{cache} = 'OS page cache not dropped (not root, or /proc/sys read-only)';
    }
    push @{ $R{notes} }, "catch-up after small ticks: $r{cache}";
    daemon_start('tls');
    chomp(my $token = NvsTest::slurp("$W/ticks.token"));
    my ($c0, $b0) = (cpu_of($daemon->pid), cpu_sum(backends('nvsrelayd')));
    my $m0 = mono_now();
    my $cu = spawn('ticks.sub', "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--expect', $r{rows},
        '--resume-after', $token, '--seconds', $S{drain_secs} + 30);
    reap($cu, $S{drain_secs});
    my $s = summary($cu);
    my $wall = ($s->{last_ns} - $m0) / 1e9;
    %r = (%r, events => $s->{events}, seconds => $wall, rate => $s->{events} / ($wall || 1e-9),
        daemon_cpu_s => cpu_of($daemon->pid) - $c0, backend_cpu_s => cpu_sum(backends('nvsrelayd')) - $b0,
        disorder => $s->{disorder});
    say_ sprintf '  %d ticks (%.1f events each); cold catch-up %d events in %.2f s: %.0f ev/s (%s)', $r{ticks},
        $r{rows_per_tick}, $s->{events}, $wall, $r{rate}, $r{cache};
    daemon_stop();
    $R{phases}{ticks} = \%r;
}

# 1, 10, 50 relays on one database, writers at relays_rate ev/s: per relay,
# PostgreSQL connections, CPU of its process and of its backends, and
# statements/s (pg_stat_statements, user nvsentinel).
sub phase_relays {
    my %res;
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    for my $n (@{ $S{relays} }) {
        say_ "relays: $n on one database, $S{relays_rate} ev/s for $S{relays_secs} s";
        my @d = map {
            NvsTest::Daemon->start($pg, set => { log_level => 'info', %DSET }, socket => $pg->dir . "/relays.$_.sock",
                bin => $DAEMON_BIN)
        } 1 .. $n;
        Time::HiRes::sleep(1);
        my @be = backends('nvsrelayd');
        my ($c0, $b0) = (cpu_sum(map { $_->pid } @d), cpu_sum(@be));
        psql('SELECT pg_stat_statements_reset()');
        my $t0 = NvsTest::now();
        my $count = int($S{relays_rate} * $S{relays_secs});
        my $wr = spawn("relays.$n.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
            '--template', "$W/template.json", '--count', $count, '--rate', $S{relays_rate}, '--seed', $opt{seed} + 400 + $n);
        reap($wr, $S{relays_secs} * 3 + 30);
        my $dt = NvsTest::now() - $t0;
        my ($calls) = psql("SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            . "WHERE r.rolname = 'nvsentinel'");
        my $conns = psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'");
        $res{$n} = { relays => $n, seconds => $dt, connections => $conns + 0, conns_per_relay => $conns / $n,
            relay_cpu_pct => 100 * (cpu_sum(map { $_->pid } @d) - $c0) / $dt / $n,
            backend_cpu_pct => 100 * (cpu_sum(@be) - $b0) / $dt / $n,
            statements_per_s => $calls / $dt / $n, statements_per_s_all => $calls / $dt };
        my $st;
        for (@d) { $st = $_->stop(10); push @{ $R{notes} }, "nvsrelayd exited with status $st at a stop" if $st }
        say_ sprintf '  %d connections (%.1f per relay); per relay: %.2f%% CPU, backends %.2f%%, %.1f statements/s',
            $conns, $res{$n}{conns_per_relay}, $res{$n}{relay_cpu_pct}, $res{$n}{backend_cpu_pct}, $res{$n}{statements_per_s};
    }
    $R{phases}{relays} = \%res;
}

# Live latency under load: a live subscriber's commit -> subscriber latency
# at loaded_rate ev/s (nvsrelayd over TLS to PostgreSQL, fsync as the
# headline) while, in turn: nothing else (quiet); another subscriber
# replays a loaded_backlog-row backlog (catch-up); loaded_acks durable
# consumers acknowledge (acks); loaded_tls filtered subscribers are
# connected over TCP+TLS from several processes (tls).  loaded_runs rounds,
# the conditions interleaved.  Target: p99 within 2 ms of quiet.
# Waits until the relay's head has passed the rows loaded so far (the
# first tick whose snapshot sees every transaction of the last load: the
# load's sessions commit one after another, so their rows may fall into
# two ticks, and a tick that sees the highest id may still miss a whole
# session's rows), as a subscriber's first bookmark shows it.  A relay that
# just started, or one reading a batch of millions of rows, gets there only
# after a while; a latency run before that times the backlog.
sub head_past_loaded {
    my ($tag, $tries) = @_;
    my $bulk_tick = '';
    my $seen = join(' AND ', map {"pg_visible_in_snapshot('$_'::xid8, snap)"} @loaded_xids) || 'TRUE';
    for my $try (1 .. 120) {
        chomp($bulk_tick = psql("SELECT min(tick_id) FROM nvsrelay.tick WHERE $seen"
            . ' AND max_id >= (SELECT max(id) FROM datastore_changelog)'));
        last if length $bulk_tick;
        Time::HiRes::sleep(0.5);
    }
    die "$tag: no tick saw the loaded rows\n" unless length $bulk_tick;
    my $t0 = NvsTest::now();
    for my $try (1 .. $tries) {
        my $hf = "$W/$tag.head.$try";
        my $h = spawn("$tag.head.$try", "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--seconds', 5,
            '--ready', "$hf.ready", '--token-out', $hf);
        eval { wait_files(15, "$hf.ready", $hf) };
        kill 'TERM', $h->{pid};
        reap($h, 10);
        my $tok = -e $hf ? NvsTest::slurp($hf) : '';
        # Past it: a later tick, or its own end (a position inside it still
        # names its tick).
        return NvsTest::now() - $t0 if length($tok) >= 40 && (NvsTest::token_tick($tok) > $bulk_tick
            || (NvsTest::token_tick($tok) == $bulk_tick && lc(substr($tok, 24, 16)) eq 'ffffffffffffffff'));
        Time::HiRes::sleep(2);
    }
    die "$tag: the relay's head did not pass the loaded rows\n";
}

sub phase_loaded {
    my $n = $S{loaded_backlog};
    say_ "live latency under load: $S{loaded_rate} ev/s; catch-up of $n rows, $S{loaded_acks} acking consumers, "
        . "$S{loaded_tls} TLS subscribers";
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    my $port = NvsTest::free_port();
    my $tls = $pg->dir . '/tls';
    daemon_start_tcp($port);
    my $tk = spawn('loaded.tok', "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--seconds', 30,
        '--ready', "$W/loaded.tok.ready", '--token-out', "$W/loaded.token");
    wait_files(15, "$W/loaded.tok.ready", "$W/loaded.token");
    kill 'TERM', $tk->{pid};
    reap($tk, 10);
    chomp(my $token = NvsTest::slurp("$W/loaded.token"));
    my ($load, $commit) = bulk_load($n, 1);
    $commit->();
    Time::HiRes::sleep(1);
    # The live reader reads the loaded batch (n rows) before anything newer:
    # the runs start once the relay's head has passed it, or the first one
    # would time the backlog, not the condition.
    head_past_loaded('loaded', 120);
    my @conds = @{ $S{loaded_conds} };
    my (@rows, $i);
    for my $round (1 .. $S{loaded_runs}) {
        my $sh = ($round - 1) % @conds;
        for my $cond (@conds[ $sh .. $#conds ], @conds[ 0 .. $sh - 1 ]) {
            my $tag = "loaded.$round.$cond";
            my $count = int($S{loaded_rate} * $S{loaded_secs});
            my $secs = $S{loaded_secs} * 10 + 120;
            my ($bg, $mb) = (undef, mono_now());
            if ($cond eq 'catchup') {
                $bg = spawn("$tag.bg", "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--resume-after', $token,
                    '--expect', $n, '--seconds', $secs);
            } elsif ($cond eq 'acks') {
                $bg = spawn("$tag.bg", "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--conns', $S{loaded_acks},
                    '--consumer', "bench-ack-$round", '--ack', '--seconds', $secs, '--ready', "$W/$tag.bg.ready");
            } elsif ($cond eq 'tls' || $cond eq 'nodes') {
                # tls: every subscriber wants (nearly) every event; nodes:
                # each wants one node's, of the 512 bench_writer spreads over.
                $bg = spawn("$tag.bg", $^X, "$FindBin::Bin/bench_tlssubs.pl", '--port', $port, '--tls', $tls,
                    '--conns', $S{loaded_tls}, '--procs', $S{loaded_tls_procs}, '--seconds', $secs,
                    '--ready', "$W/$tag.bg.ready", $cond eq 'nodes' ? ('--nodes', 512) : ());
            }
            wait_files(120, "$W/$tag.bg.ready") if $bg && $cond ne 'catchup';
            my $fl = spawn("$tag.floor", "$BIN/bench_listen", '--conninfo', conninfo('tls', 'bench_floor'), '--expect', $count,
                '--seconds', $secs, '--ready', "$W/$tag.floor.ready", '--out', "$W/$tag.floor.rec");
            my $sub = spawn("$tag.sub", "$BIN/bench_sub", '--socket', $daemon->socket, '--expect', $count,
                '--seconds', $secs, '--ready', "$W/$tag.sub.ready", '--out', "$W/$tag.sub.rec");
            wait_files(15, "$W/$tag.floor.ready", "$W/$tag.sub.ready");
            # VmHWM from here: the relay's peak while this condition runs.
            if (open(my $cr, '>', '/proc/' . $daemon->pid . '/clear_refs')) { print $cr "5\n"; close $cr }
            my @be = backends('nvsrelayd');
            my ($c0, $b0, $m0) = (cpu_of($daemon->pid), cpu_sum(@be), mono_now());
            my $wr = spawn("$tag.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
                '--template', "$W/template.json", '--count', $count, '--rate', $S{loaded_rate}, '--writers', nwriters($S{loaded_rate}),
                '--seed', $opt{seed} + 500 + ++$i, '--out', "$W/$tag.writer.rec", '--first-seq', $n + 1 + $i * $count,
                '--deadline-s', deadline($S{loaded_secs}));
            reap($wr, $S{loaded_secs} * 3 + 30);
            my $ws = summary($wr);
            reap_by(drain_end($ws), $fl, $sub);
            my %row = (cond => $cond, round => $round, rate => $S{loaded_rate}, writer => $ws,
                achieved_rate => $ws->{committed} / ($ws->{seconds} || 1),
                daemon_cpu_s => cpu_of($daemon->pid) - $c0, backend_cpu_s => cpu_sum(@be) - $b0, loadavg => loadavg(),
                rss_hwm_kb => rss_kb($daemon->pid, 'VmHWM'));
            if ($bg) {
                my $done = $cond eq 'catchup' && exited($bg);
                kill 'TERM', $bg->{pid};
                reap($bg, 30);
                my $bs = eval { summary($bg) } || {};
                $row{background} = { map { $_ => $bs->{$_} } grep { exists $bs->{$_} } qw(conns confirmed events acks procs dropped) };
                if ($cond eq 'catchup') {
                    $row{background}{replay_s} = $bs->{last_ns} ? ($bs->{last_ns} - $mb) / 1e9 : undef;
                    $row{background}{finished_before_writer} = $done ? 1 : 0;
                }
            }
            my ($w, $bypid) = read_writer("$W/$tag.writer.rec");
            my ($arr) = arrivals("$W/$tag.sub.rec");
            $row{stats} = latency_stats($w, $arr);
            $row{floor_tls} = latency_stats($w, floor_arrivals("$W/$tag.floor.rec", $bypid));
            $row{discarded} = sprintf('writer fell behind: %.0f of %d ev/s', $row{achieved_rate}, $S{loaded_rate})
                if $row{achieved_rate} < 0.95 * $S{loaded_rate};
            # A subscriber short of the writer's events: what it did get
            # (other events, an error frame, nothing), so the run says why.
            if ($row{stats}{delivered} < $row{stats}{n}) {
                my $ss = eval { summary($sub) } || { error => "$@" };
                $row{sub} = $ss;
                say_ sprintf '  round %d %s: the subscriber got %s events (%s distinct)%s', $round, $cond,
                    $ss->{events} // '?', $ss->{distinct} // '?', $ss->{stderr} || $ss->{error} ? ': ' . ($ss->{stderr} || $ss->{error}) : '';
            }
            say_ sprintf '  round %d %-8s p50 %s p99 %s p99.9 %s max %s ms; floor p99 %s; delivered %d/%d; relay VmHWM %.1f MiB%s',
                $round, $cond, fmt($row{stats}{p50}), fmt($row{stats}{p99}), fmt($row{stats}{p999}), fmt($row{stats}{max}),
                fmt($row{floor_tls}{p99}), $row{stats}{delivered}, $row{stats}{n}, $row{rss_hwm_kb} / 1024,
                $row{discarded} ? " (DISCARDED: $row{discarded})" : '';
            push @rows, \%row;
            # A condition's load outlives its processes for a while (a
            # thousand TLS sessions closing, queues draining): the next run
            # starts on a settled machine.
            Time::HiRes::sleep(5) if $bg;
        }
    }
    daemon_stop();
    my %cells;
    for my $cond (@conds) {
        my @k = grep { $_->{cond} eq $cond && !$_->{discarded} } @rows;
        my %c = (runs => scalar(grep { $_->{cond} eq $cond } @rows), kept => scalar @k);
        for my $p (qw(p50 p99 p999 max)) {
            my @v = map { $_->{stats}{$p} } @k;
            my $u = grep { !defined } @v;
            ($c{$p}, $c{"${p}_min"}, $c{"${p}_max"}) = $u || !@v ? () : (median(@v), min(@v), max(@v));
        }
        $c{floor_tls_p99} = median(map { $_->{floor_tls}{p99} } @k);
        $cells{$cond} = \%c;
    }
    $R{phases}{loaded} = { runs => \@rows, cells => \%cells, backlog => $n, backlog_load_s => $load };
}

# CPU seconds of every PostgreSQL process (postmaster and its children).
sub pg_cpu {
    my ($pm) = split /\n/, NvsTest::slurp($pg->dir . '/data/postmaster.pid');
    return 0 unless $pm && $pm =~ /^\d+$/;
    my $s = cpu_of($pm);
    for my $st (glob '/proc/[0-9]*/stat') {
        my $t = NvsTest::slurp($st);
        next unless $t =~ /\)\s+\S+\s+(\d+)/ && $1 == $pm;
        my ($pid) = $st =~ m{/proc/(\d+)/};
        $s += cpu_of($pid);
    }
    return $s;
}

# One live run against the running daemon: a subscriber and a TLS LISTEN
# floor, writers at $rate for $secs; latency, relay, relay backends and
# all-PostgreSQL CPU.
sub live_run {
    my ($tag, $rate, $secs, $seed, $first) = @_;
    my $count = int($rate * $secs);
    my $wait = $secs * 10 + 120;
    my $fl = spawn("$tag.floor", "$BIN/bench_listen", '--conninfo', conninfo('tls', 'bench_floor'), '--expect', $count,
        '--seconds', $wait, '--ready', "$W/$tag.floor.ready", '--out', "$W/$tag.floor.rec");
    my $sub = spawn("$tag.sub", "$BIN/bench_sub", '--socket', $daemon->socket, '--expect', $count,
        '--seconds', $wait, '--ready', "$W/$tag.sub.ready", '--out', "$W/$tag.sub.rec");
    wait_files(15, "$W/$tag.floor.ready", "$W/$tag.sub.ready");
    my @be = backends('nvsrelayd');
    my ($c0, $b0, $p0, $t0) = (cpu_of($daemon->pid), cpu_sum(@be), pg_cpu(), NvsTest::now());
    my $wr = spawn("$tag.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
        '--template', "$W/template.json", '--count', $count, '--rate', $rate, '--writers', nwriters($rate),
        '--seed', $seed, '--first-seq', $first, '--out', "$W/$tag.writer.rec", '--deadline-s', deadline($secs));
    reap($wr, $secs * 3 + 30);
    my $ws = summary($wr);
    my %row = (rate => $rate, writer => $ws, achieved_rate => $ws->{committed} / ($ws->{seconds} || 1),
        daemon_cpu_s => cpu_of($daemon->pid) - $c0, backend_cpu_s => cpu_sum(@be) - $b0, pg_cpu_s => pg_cpu() - $p0,
        wall_s => NvsTest::now() - $t0, loadavg => loadavg());
    reap_by(drain_end($ws), $fl, $sub);
    my ($w, $bypid) = read_writer("$W/$tag.writer.rec");
    my ($arr) = arrivals("$W/$tag.sub.rec");
    $row{stats} = latency_stats($w, $arr);
    $row{floor_tls} = latency_stats($w, floor_arrivals("$W/$tag.floor.rec", $bypid));
    $row{pg_cpu_pct} = 100 * $row{pg_cpu_s} / ($row{wall_s} || 1);
    $row{discarded} = sprintf('writer fell behind: %.0f of %d ev/s', $row{achieved_rate}, $rate)
        if $row{achieved_rate} < 0.95 * $rate;
    return \%row;
}

# The changelog at big_rows rows (BENCH_BIG=1: 10M) with retention running,
# in its steady state, against an empty one: live latency at big_rate and
# PostgreSQL's CPU.  The rows are loaded with the relay running, in chunks
# of big_chunk rows, so they span thousands of ticks as a changelog built by
# live writes does; a durable consumer that stopped at the start holds them,
# and retention_max_rows = big_rows, so each prune deletes about what the
# writers added (the oldest ticks), not the whole table.  BENCH_BIG_BACKLOG=1
# measures a first deployment on a changelog nothing ever pruned instead:
# loaded in one transaction with the relay stopped, held by nobody, so
# retention deletes it while the big runs go on.  In the empty runs
# no consumer holds anything and retention keeps the last 5 s.  Empty runs
# before and after the big ones (the table truncated again), so drift shows.
sub phase_big {
    my $n = $S{big_rows};
    my $backlog = $ENV{BENCH_BIG_BACKLOG} ? 1 : 0;
    my $chunk = $backlog ? $n : $S{big_chunk};
    say_ "changelog at $n rows with retention running vs empty, $S{big_rate} ev/s"
        . ($backlog ? ' (backlog: nothing holds the rows, retention deletes them during the runs)' : '');
    my %set = (retention_max_rows => $n, prune_interval_s => 1, retention_floor_s => 5);
    my (@rows, $i);
    my $seq = 50_000_000;
    my $run = sub {
        my ($state, $k) = @_;
        my $r = live_run("big.$state.$k", $S{big_rate}, $S{big_secs}, $opt{seed} + 700 + ++$i, $seq);
        $seq += $S{big_rate} * $S{big_secs} + 1;
        $r->{state} = $state;
        $r->{changelog_rows} = psql('SELECT count(*) FROM datastore_changelog') + 0;
        say_ sprintf '  %-5s p50 %s p99 %s max %s ms; PostgreSQL %.1f%% CPU, relay backends %.2f CPU-s; %d changelog rows%s',
            $state, fmt($r->{stats}{p50}), fmt($r->{stats}{p99}), fmt($r->{stats}{max}), $r->{pg_cpu_pct},
            $r->{backend_cpu_s}, $r->{changelog_rows}, $r->{discarded} ? " (DISCARDED: $r->{discarded})" : '';
        push @rows, $r;
    };
    my $half = int(($S{big_runs} + 1) / 2);
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    daemon_start('tls', %set);
    $run->('empty', $_) for 1 .. $half;
    if ($backlog) {
        daemon_stop();
    } else {
        # The holder: subscribed once, at the head, then gone (its stored
        # position stays, and it is not idle for consumer_idle_hours).
        my $hf = "$W/big.holder";
        my $h = spawn('big.holder', "$BIN/bench_sub", '--socket', $daemon->socket, '--consumer', 'big-holder', '--raw',
            '--seconds', 5, '--ready', "$hf.ready", '--token-out', $hf);
        wait_files(15, "$hf.ready", $hf);
        for (1 .. 50) { last if psql(q{SELECT count(*) FROM resume_tokens WHERE client_name = 'big-holder'}) > 0;
            Time::HiRes::sleep(0.1) }
        kill 'TERM', $h->{pid};
        reap($h, 10);
    }
    my $t0 = NvsTest::now();
    for (my $a = 1; $a <= $n; $a += $chunk) {
        my $b = $a + $chunk - 1;
        $b = $n if $b > $n;
        my (undef, $commit) = bulk_load($b - $a + 1, $a);
        $commit->();
    }
    psql('VACUUM ANALYZE datastore_changelog');
    my $load_s = NvsTest::now() - $t0;
    daemon_start('tls', %set) if $backlog;
    my $ticks = psql('SELECT count(*) FROM nvsrelay.tick') + 0;
    say_ sprintf '  loaded %d rows in %.0f s %s (%d ticks)', $n, $load_s,
        $backlog ? 'with the relay stopped' : 'while the relay ticked', $ticks;
    # Its reader may still be behind the last chunks.
    my $catchup_s = head_past_loaded('big', 600);
    say_ sprintf '  the relay read the loaded rows in %.0f s', $catchup_s;
    Time::HiRes::sleep($opt{quick} ? 2 : 10);
    my ($pruned0) = psql('SELECT min(id) FROM datastore_changelog');
    $run->('big', $_) for 1 .. $S{big_runs};
    my ($pruned1) = psql('SELECT min(id) FROM datastore_changelog');
    daemon_stop();
    reset_tables();
    psql(q{DELETE FROM resume_tokens WHERE client_name = 'big-holder'});
    daemon_start('tls', %set);
    $run->('empty', $_) for $half + 1 .. $S{big_runs};
    daemon_stop();
    my %cells;
    for my $state (qw(empty big)) {
        my @k = grep { $_->{state} eq $state && !$_->{discarded} } @rows;
        my %c = (runs => scalar(grep { $_->{state} eq $state } @rows), kept => scalar @k);
        for my $p (qw(p50 p99 p999 max)) {
            my @v = map { $_->{stats}{$p} } @k;
            my $u = grep { !defined } @v;
            ($c{$p}, $c{"${p}_min"}, $c{"${p}_max"}) = $u || !@v ? () : (median(@v), min(@v), max(@v));
        }
        $c{pg_cpu_pct} = median(map { $_->{pg_cpu_pct} } @k);
        $c{backend_cpu_s} = median(map { $_->{backend_cpu_s} } @k);
        $cells{$state} = \%c;
    }
    $R{phases}{big} = { rows => $n, load_s => $load_s, reader_s => $catchup_s, ticks => $ticks, chunk => $chunk, backlog => $backlog,
        runs => \@rows, cells => \%cells,
        pruned_during_big => ($pruned1 || 0) - ($pruned0 || 0), settings => \%set };
}

sub plan_nodes {
    my ($p) = @_;
    my $name = $p->{'Node Type'} . ($p->{'Index Name'} ? " ($p->{'Index Name'})" : '');
    return ($name, map { plan_nodes($_) } @{ $p->{Plans} || [] });
}

# Fan-out: E events committed at once to N subscribers (raw readers in one
# process); deliveries/s = N * E / time until the last subscriber has all.
sub phase_fanout {
    my %res;
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    daemon_start('tls');
    Time::HiRes::sleep(0.5);
    $res{rss_idle_kb} = rss_kb($daemon->pid);
    my $first = 1;
    for my $n (@{ $S{fan_subs} }) {
        # The same batch for 1 to 100 subscribers (10k events, well inside
        # the ring, read in 10 pages), fewer for 1000 to bound the run.
        my $e = int($S{fan_total} / $n);
        $e = 10000 if $e > 10000;
        $e = 1000 if $e < 1000;
        say_ "fan-out: $n subscribers x $e events";
        my $secs = 60 + $n * $e / 20000;
        my $sub = spawn("fan.$n", "$BIN/bench_sub", '--socket', $daemon->socket, '--raw', '--conns', $n,
            '--expect', $e, '--seconds', $secs, '--ready', "$W/fan.$n.ready");
        wait_files(30, "$W/fan.$n.ready");
        my ($load, $commit) = bulk_load($e, $first);
        $first += $e;
        my @be = backends('nvsrelayd');
        my ($c0, $b0) = (cpu_of($daemon->pid), cpu_sum(@be));
        my $rss_max = 0;
        my $m0 = mono_now();
        $commit->();
        reap($sub, $secs, sub { my $r = rss_kb($daemon->pid); $rss_max = $r if $r > $rss_max });
        my $s = summary($sub);
        my $wall = ($s->{last_ns} - $m0) / 1e9;
        $res{$n} = { subs => $n, events => $e, deliveries => $s->{events}, complete => $s->{complete_conns},
            seconds => $wall, per_s => $s->{events} / ($wall || 1e-9), rss_max_kb => $rss_max,
            daemon_cpu_s => cpu_of($daemon->pid) - $c0, backend_cpu_s => cpu_sum(@be) - $b0,
            client_cpu_s => $s->{cpu_s} };
        say_ sprintf '  %d deliveries in %.2f s: %.0f/s, %d/%d subscribers complete, RSS max %d KiB', $s->{events},
            $wall, $res{$n}{per_s}, $s->{complete_conns}, $n, $rss_max;
    }
    daemon_stop();
    $R{phases}{fanout} = \%res;
}

# Fan-out latency: writers at fanlat_rate ev/s for fanlat_secs while N
# subscribers (fanlat_subs) watch over TCP+TLS with client certificates, from
# up to fanlat_procs bench_fan processes, each through one of NVSentinel's
# pipelines that match the benchmark's events (filters evaluated, every
# event wanted); every fanlat_stall-th subscriber stops reading once
# watching (a slow reader whose output backs up).  Per reading subscriber:
# its p99, commit to arrival; the cell reports the median and worst of
# those, p50/p99 over all deliveries, the relay's peak RSS (VmHWM, reset
# before each run) and CPU.  Rounds interleave the sizes.
sub phase_fanlat {
    say_ "fan-out latency: $S{fanlat_rate} ev/s to " . join('/', @{ $S{fanlat_subs} }) . ' TLS subscribers';
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    my $port = NvsTest::free_port();
    my $tls = $pg->dir . '/tls';
    my @pipes = map {"$NvsTest::ROOT/tests/pipelines/$_.json"}
        qw(AllHealthEventInserts ProcessableHealthEventInserts ProcessableNonFatalUnhealthyInserts);
    my (@rows, $i);
    my @ns = @{ $S{fanlat_subs} };
    for my $round (1 .. $S{fanlat_runs}) {
        my $sh = ($round - 1) % @ns;
        for my $n (@ns[ $sh .. $#ns ], @ns[ 0 .. $sh - 1 ]) {
            my $tag = "fanlat.$round.$n";
            daemon_start_tcp($port);
            my $count = int($S{fanlat_rate} * $S{fanlat_secs});
            my $secs = $S{fanlat_secs} * 10 + 120;
            my $procs = $n < $S{fanlat_procs} ? $n : $S{fanlat_procs};
            my $stall = $n >= $S{fanlat_stall} ? $S{fanlat_stall} : 0;
            my ($first, @fans) = (0);
            for my $k (1 .. $procs) {
                my $m = int($n / $procs) + ($k <= $n % $procs ? 1 : 0);
                push @fans, spawn("$tag.fan$k", "$BIN/bench_fan", '--port', $port, '--tls', $tls, '--conns', $m,
                    '--first', $first, (map { ('--pipeline', $_) } @pipes), ($stall ? ('--stall-every', $stall) : ()),
                    '--expect', $count, '--seconds', $secs, '--ready', "$W/$tag.fan$k.ready", '--out', "$W/$tag.fan$k.rec");
                $first += $m;
            }
            wait_files(120, map {"$W/$_->{name}.ready"} @fans);
            my $fl = spawn("$tag.floor", "$BIN/bench_listen", '--conninfo', conninfo('tls', 'bench_floor'), '--expect', $count,
                '--seconds', $secs, '--ready', "$W/$tag.floor.ready", '--out', "$W/$tag.floor.rec");
            wait_files(15, "$W/$tag.floor.ready");
            # VmHWM from here: the peak of this run, not of the connections' set-up.
            if (open(my $cr, '>', '/proc/' . $daemon->pid . '/clear_refs')) { print $cr "5\n"; close $cr }
            my @be = backends('nvsrelayd');
            my ($c0, $b0, $load0) = (cpu_of($daemon->pid), cpu_sum(@be), loadavg());
            my $wr = spawn("$tag.writer", "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
                '--template', "$W/template.json", '--count', $count, '--rate', $S{fanlat_rate},
                '--writers', nwriters($S{fanlat_rate}), '--seed', $opt{seed} + 700 + ++$i, '--out', "$W/$tag.writer.rec",
                '--first-seq', 1 + $i * $count, '--deadline-s', deadline($S{fanlat_secs}));
            reap($wr, $S{fanlat_secs} * 3 + 30);
            my $ws = summary($wr);
            reap_by(drain_end($ws), $fl, @fans);
            my %row = (subs => $n, round => $round, rate => $S{fanlat_rate}, procs => $procs, writer => $ws,
                achieved_rate => $ws->{committed} / ($ws->{seconds} || 1), loadavg => [ $load0, loadavg() ],
                rss_hwm_kb => rss_kb($daemon->pid, 'VmHWM'), daemon_cpu_s => cpu_of($daemon->pid) - $c0,
                backend_cpu_s => cpu_sum(@be) - $b0);
            my @fs = map { summary($_) } @fans;
            for my $k (qw(reading events errors closed)) { $row{$k} = sum(map { $_->{$k} || 0 } @fs) }
            $row{stalled} = $n - $row{reading};
            $row{client_cpu_s} = sum(map { $_->{cpu_s} || 0 } @fs);
            my ($w, $bypid) = read_writer("$W/$tag.writer.rec");
            my %per;
            for my $k (1 .. $procs) {
                for my $r (@{ read_rows("$W/$tag.fan$k.rec") }) {
                    my ($seq, $t, $conn) = @$r;
                    $per{$conn}{$seq} //= $t if $seq >= 0;
                }
            }
            my (@p99, %all, $missing);
            for my $conn (sort { $a <=> $b } keys %per) {
                next if $stall && $conn % $stall == $stall - 1;
                my $st = latency_stats($w, $per{$conn}, keep => 1);
                push @p99, $st->{p99};
                $missing += $st->{missing};
                push @{ $all{lat} }, @{ $st->{lat} };
            }
            # A reading subscriber that got nothing has no record at all.
            $missing += $count * ($row{reading} - @p99) if @p99 < $row{reading};
            my @lat = sort { $a <=> $b } @{ $all{lat} || [] };
            $row{missing} = $missing || 0;
            $row{all} = { p50 => pct(\@lat, 50), p99 => pct(\@lat, 99), p999 => pct(\@lat, 99.9), max => $lat[-1] };
            $row{sub_p99_median} = median(@p99);
            $row{sub_p99_max} = grep({ !defined } @p99) ? undef : max(@p99);
            $row{floor_tls} = latency_stats($w, floor_arrivals("$W/$tag.floor.rec", $bypid));
            $row{discarded} = sprintf('writer fell behind: %.0f of %d ev/s', $row{achieved_rate}, $S{fanlat_rate})
                if $row{achieved_rate} < 0.95 * $S{fanlat_rate};
            say_ sprintf '  round %d, %4d subscribers (%d stalled): p50 %s p99 %s ms; per subscriber p99 median %s max %s; '
                . 'floor p99 %s; missing %d, errors %d, closed %d; relay VmHWM %.1f MiB%s', $round, $n, $row{stalled},
                fmt($row{all}{p50}), fmt($row{all}{p99}), fmt($row{sub_p99_median}), fmt($row{sub_p99_max}),
                fmt($row{floor_tls}{p99}), $row{missing}, $row{errors}, $row{closed}, $row{rss_hwm_kb} / 1024,
                $row{discarded} ? " (DISCARDED: $row{discarded})" : '';
            push @rows, \%row;
            daemon_stop();
        }
    }
    my %cells;
    for my $n (@ns) {
        my @k = grep { $_->{subs} == $n && !$_->{discarded} } @rows;
        my %c = (runs => scalar(grep { $_->{subs} == $n } @rows), kept => scalar @k);
        for ([ p50 => sub { $_[0]{all}{p50} } ], [ p99 => sub { $_[0]{all}{p99} } ],
            [ sub_p99_median => sub { $_[0]{sub_p99_median} } ], [ sub_p99_max => sub { $_[0]{sub_p99_max} } ],
            [ floor_p99 => sub { $_[0]{floor_tls}{p99} } ], [ rss_hwm_kb => sub { $_[0]{rss_hwm_kb} } ]) {
            my ($key, $get) = @$_;
            my @v = map { $get->($_) } @k;
            ($c{$key}, $c{"${key}_min"}, $c{"${key}_max"}) = !@v || grep({ !defined } @v) ? () : (median(@v), min(@v), max(@v));
        }
        $c{missing} = sum(0, map { $_->{missing} } @k);
        $c{daemon_cpu_s} = median(map { $_->{daemon_cpu_s} } @k);
        $cells{$n} = \%c;
    }
    $R{phases}{fanlat} = { runs => \@rows, cells => \%cells, rate => $S{fanlat_rate}, secs => $S{fanlat_secs},
        stall_every => $S{fanlat_stall}, pipelines => [ map { (split m{/}, $_)[-1] } @pipes ] };
}

# Restart: a durable consumer that acknowledges every event, writers at
# restart_rate ev/s; the relay is stopped (SIGTERM) and started again, then
# PostgreSQL is restarted under it.  Measured: from the new daemon's start
# (or PostgreSQL accepting connections again) to the first event delivered;
# nothing may be missing.
sub phase_restart {
    say_ 'restart: relay restart and PostgreSQL restart under load';
    daemon_stop();
    reset_tables();
    use_trigger('relay');
    daemon_start('tls', ack_flush_ms => 50);
    my $rate  = $S{restart_rate};
    my $count = int($rate * $S{restart_secs});
    my $secs  = $S{restart_secs} + 60;
    my $sub = spawn('restart.sub', "$BIN/bench_sub", '--socket', $daemon->socket, '--consumer', 'bench-restart',
        '--ack', '--reconnect', '--seconds', $secs, '--ready', "$W/restart.sub.ready", '--out', "$W/restart.sub.rec");
    wait_files(15, "$W/restart.sub.ready");
    my $wr = spawn('restart.writer', "$BIN/bench_writer", '--conninfo', conninfo('unix', 'bench_writer'),
        '--template', "$W/template.json", '--count', $count, '--rate', $rate, '--seed', $opt{seed} + 200,
        '--out', "$W/restart.writer.rec");
    my $gap = $S{restart_secs} / 3;
    Time::HiRes::sleep($gap);
    my $old = $daemon;
    my $sock = $old->socket;
    my $tk = mono_now();
    $old->stop(10);
    my $tx = mono_now();
    my $ts = mono_now();
    $daemon = NvsTest::Daemon->start($pg, set => { log_level => 'info', %DSET, ack_flush_ms => 50 }, wait_ready => 0,
        bin => $DAEMON_BIN);
    $daemon->wait_ready(30);
    my $tr = mono_now();
    Time::HiRes::sleep($gap);
    my $tp = mono_now();
    $pg->restart('fast');
    my $tu = mono_now();
    reap($wr, $S{restart_secs} * 3 + 60);
    my $ws = summary($wr);
    # Let the subscriber take the tail, then stop it.
    my ($w) = read_writer("$W/restart.writer.rec");
    my @committed = grep { $w->{$_}[3] == 1 } keys %$w;
    Time::HiRes::sleep($opt{quick} ? 1.5 : 3);
    kill 'TERM', $sub->{pid};
    reap($sub, 10);
    my $s = summary($sub);
    my ($arr, $dups) = arrivals("$W/restart.sub.rec");
    my @missing = grep { !exists $arr->{$_} } @committed;
    # The first event delivered after each moment.
    my @t = sort { $a <=> $b } values %$arr;
    my ($after_start) = grep { $_ > $ts } @t;
    my ($after_pg) = grep { $_ > $tu } @t;
    my $rc = $s->{reconnects}[0] || {};
    my %res = (
        stop_s                 => ($tx - $tk) / 1e9,
        start_to_ready_s       => ($tr - $ts) / 1e9,
        start_to_event_s       => $after_start ? ($after_start - $ts) / 1e9 : undef,
        client_down_to_event_s => $rc->{event_ns} && $rc->{down_ns} ? ($rc->{event_ns} - $rc->{down_ns}) / 1e9 : undef,
        pg_restart_s           => ($tu - $tp) / 1e9,
        pg_up_to_event_s       => $after_pg ? ($after_pg - $tu) / 1e9 : undef,
        committed => scalar @committed, missing => scalar @missing, duplicates => $dups,
        unknown_commits => $ws->{unknown}, writer_errors => $ws->{errors},
    );
    say_ sprintf '  relay: stop %.2f s, start->ready %.3f s, start->first event %s s; PostgreSQL up->first event %s s; '
        . 'missing %d of %d, duplicates %d', $res{stop_s}, $res{start_to_ready_s}, fmt($res{start_to_event_s}, 3),
        fmt($res{pg_up_to_event_s}, 3), $res{missing}, $res{committed}, $dups;
    daemon_stop();
    $R{phases}{restart} = \%res;
}

# ------------------------------------------------------------------ report

sub fmt {
    my ($v, $d) = @_;
    return 'n/a' unless defined $v;
    return sprintf('%.' . (defined $d ? $d : 2) . 'f', $v);
}

sub fmt_ms {
    my ($v) = @_;
    return 'not delivered' unless defined $v;
    return $v >= 100 ? sprintf('%.0f', $v) : $v >= 10 ? sprintf('%.1f', $v) : sprintf('%.2f', $v);
}

sub ratio { my ($a, $b, $d) = @_; return 'n/a' unless defined $a && defined $b && $b > 0; return sprintf('%.' . ($d // 2) . 'f×', $a / $b) }

sub kfmt { my ($v) = @_; return 'n/a' unless defined $v; return $v >= 10000 ? sprintf('%.0fk', $v / 1000) : $v >= 1000 ? sprintf('%.1fk', $v / 1000) : sprintf('%.0f', $v) }

sub uniq { my %s; return grep { !$s{$_}++ } @_ }

# "median (min–max)" of a cell's percentile.
sub rng {
    my ($c, $p) = @_;
    return 'every run left out' unless $c->{kept};
    return 'not delivered' unless defined $c->{$p};
    return fmt_ms($c->{$p}) if $c->{kept} < 2;
    return sprintf '%s (%s–%s)', fmt_ms($c->{$p}), fmt_ms($c->{"${p}_min"}), fmt_ms($c->{"${p}_max"});
}

# rng with the unit, when there is a figure.
sub rms { my $r = rng(@_); return $r =~ /^[\d.]/ ? "$r ms" : $r }

sub verdict { my ($ok) = @_; return !defined $ok ? 'n/a' : $ok ? 'met' : '**missed**' }

sub report {
    my $P = $R{phases};
    my @md;
    my $m = $R{machine};
    push @md, '# nvsrelayd benchmark results', '',
        ($opt{quick} ? ('**Quick run (BENCH_QUICK=1): seconds per phase, the numbers are not figures.**', '') : ()),
        "Generated by `make bench` (tests/bench/bench.pl) on $R{date}, in "
        . sprintf('%.0f s. Seed %d.', $R{wall_s}, $opt{seed}), '',
        '## Machine, versions, settings', '',
        '| | |', '|---|---|',
        "| CPU | $m->{cpu}, $m->{cores} cores, $m->{mem_gib} GiB |",
        "| OS | $m->{os}, kernel $m->{kernel} |",
        "| PostgreSQL | $R{pg_version} |",
        "| nvsrelayd | $m->{nvsrelayd} (git $m->{git}), $m->{cc} |",
        "| libpq / OpenSSL | $m->{libpq} / $m->{openssl} |",
        "| PostgreSQL settings | fsync and full_page_writes " . join(' / ', fsync_list()) . ' (latency columns; every other phase: '
        . (fsync_list())[0] . "), synchronous_commit=on; shared_preload_libraries=pg_stat_statements (track_planning=on); $R{pg_settings} |",
        sprintf('| source measured | sha256 %s of %d files (%s, work tree%s) |', $R{source}{sha256} // 'n/a',
            $R{source}{files} // 0, $R{source}{scope} // '', $R{source}{uncommitted} ? ', **with uncommitted changes**' : ''),
        "| machine load | 1-minute load average $R{load_start} at the start, $R{load_end} at the end (other work on the machine skews every figure; each latency row records its own) |",
        "| nvsrelayd settings | defaults (conf/nvsrelayd.conf) except log_level=info"
        . (%DSET ? ', ' . join(', ', map {"**$_=$DSET{$_}**"} sort keys %DSET) : '') . "; $R{daemon_settings} |",
        "| document | NvsTest::health_doc XID event, $R{doc_bytes} bytes as inserted |",
        "| clients | tests/bench/bench_*.c: writer (libpq), LISTEN floor (libpq), NVSentinel polling baseline (libpq), nvsrelayd subscriber (libnvsrelay; `raw` = frame splitter only), TLS subscribers as load (bench_tlssubs.pl) |",
        '';
    push @md, '## Targets', '', '| figure | nvsrelayd | baseline (same run) | ratio | target | |', '|---|---|---|---|---|---|';
    for my $t (@{ $R{targets} }) { push @md, '| ' . join(' | ', @$t) . ' |' }
    push @md, '';

    if (my $L = $P->{latency}) {
        my $C = $P->{latency_cells} || [];
        my @fs = uniq(map { $_->{fsync} } @$C);
        my %cell = map { ("$_->{fsync}|$_->{rate}|$_->{key}" => $_) } @$C;
        my @keys = grep { my $k = $_; grep { $_->{key} eq $k } @$C } qw(relay-tls relay-unix hybrid poll-10ms poll-1s floor-1k floor-select);
        my %name = ('relay-tls' => 'nvsrelayd (TLS)', 'relay-unix' => 'nvsrelayd (Unix socket to PostgreSQL)',
            hybrid => 'NVSentinel hybrid (TLS)', 'poll-10ms' => 'NVSentinel polling 10 ms (TLS)', 'poll-1s' => 'NVSentinel polling 1 s (TLS)',
            'floor-1k' => 'floor: NOTIFY, 1 KB payload (TLS)', 'floor-select' => 'floor: NOTIFY + SELECT by id (TLS)');
        push @md, '## 1. Commit → subscriber latency', '',
            'From the moment the writer sends COMMIT to the moment the subscriber has the event (ms; CLOCK_MONOTONIC '
            . "shared by all processes), first 5% of each run's events left out as warm-up. Each cell: $S{lat_runs} runs of "
            . "$S{lat_secs} s, interleaved (round by round every setting, rate and subscriber once, the subscribers' order "
            . 'rotated); shown are the median over the runs and, in brackets, their range; p99.9 is the median, max the '
            . 'worst run. A run whose writer fell behind its rate (under 95% of it) is left out and listed below. '
            . '`fsync=on` is fsync = on and full_page_writes = on (the headline: what a deployment runs); `off` both off. '
            . "The relay runs on its own schema; NVSentinel's watchers on NVSentinel's own DDL and runtime trigger "
            . '(changed_at = NOW(), the transaction start; a NOTIFY with the changelog id per row) in another database; '
            . 'the floors on a copy of that with the NOTIFY payload padded to 1 KB, received by a bare LISTEN client and '
            . "by one that fetches each row by id with hybrid's statement (both in the same runs).", '';
        my @h = ('ev/s', 'subscriber');
        for my $f (@fs) { push @h, "$f: p50", "$f: p99", "$f: p99.9", "$f: max", "$f: runs" }
        push @md, '| ' . join(' | ', @h) . ' |', '|' . join('|', map {'---'} @h) . '|';
        for my $rate (@{ $S{rates} }) {
            for my $k (@keys) {
                my @c = ($rate, $name{$k});
                for my $f (@fs) {
                    my $x = $cell{"$f|$rate|$k"};
                    if (!$x) { push @c, ('–') x 5; next }
                    push @c, rng($x, 'p50'), rng($x, 'p99'), $x->{kept} ? fmt_ms($x->{p999}) : '–',
                        $x->{kept} ? fmt_ms($x->{max_max}) : '–',
                        "$x->{kept}/$x->{runs}" . ($x->{missing} ? ", $x->{missing} undelivered" : '');
                }
                push @md, '| ' . join(' | ', @c) . ' |';
            }
        }
        push @md, '', 'The bare LISTEN floor (the writer\'s own NOTIFY, no payload to speak of) measured alongside every run, '
            . 'median of the kept runs\' p50 / p99 over TLS:', '', '| ev/s | fsync | beside nvsrelayd | beside NVSentinel |', '|---|---|---|---|';
        for my $f (@fs) {
            for my $rate (@{ $S{rates} }) {
                my ($r, $h) = map { $cell{"$f|$rate|$_"} } qw(relay-tls hybrid);
                push @md, sprintf '| %d | %s | %s | %s |', $rate, $f, map {
                    $_ && $_->{kept} ? fmt_ms($_->{floor_tls_p50}) . ' / ' . fmt_ms($_->{floor_tls_p99}) : '–' } $r, $h;
            }
        }
        my @disc = map { my $c = $_; map {"$c->{fsync}, $c->{rate} ev/s, $c->{key}, $_"} @{ $c->{discarded} } } @$C;
        push @md, '', @disc ? ('Runs left out:', '', map {"- $_"} @disc) : ('No run was left out: every writer kept its rate.');
        push @md, '', '<details><summary>Every run</summary>', '',
            '| fsync | round | ev/s | subscriber | p50 | p99 | p99.9 | max | floor TLS p50 / p99 | delivered | writer ev/s | late tx | client CPU s | relay CPU s | relay backends CPU s | load |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
        for my $r (@$L) {
            my ($s, $f) = ($r->{stats}, $r->{floor_tls});
            push @md, sprintf '| %s | %d | %d | %s%s | %s | %s | %s | %s | %s / %s | %d/%d | %.0f | %d | %s | %s | %s | %s |',
                $r->{fsync}, $r->{round}, $r->{rate}, $r->{key}, $r->{discarded} ? ' (left out)' : '', fmt_ms($s->{p50}),
                fmt_ms($s->{p99}), fmt_ms($s->{p999}), fmt_ms($s->{max}), fmt_ms($f->{p50}), fmt_ms($f->{p99}), $s->{delivered},
                $s->{n}, $r->{achieved_rate}, $r->{writer}{late_tx} || 0, fmt($r->{client_cpu_s}),
                defined $r->{daemon_cpu_s} ? fmt($r->{daemon_cpu_s}) : '–',
                defined $r->{daemon_cpu_s} ? fmt($r->{backend_cpu_s}) : '–', fmt($r->{loadavg}[0], 1);
        }
        push @md, '', '</details>';
        if (my ($r) = grep { $_->{rate} == 1000 && $_->{key} eq 'relay-tls' && $_->{statements} } @$L) {
            push @md, '', "Where the relay's PostgreSQL time went at 1k ev/s (pg_stat_statements, user nvsentinel, fsync=$r->{fsync}, "
                . "round $r->{round}; the hot statements are prepared per connection, so planning is left for the rest and for fresh plans):", '',
                '| calls | planning ms | execution ms | rows | statement |', '|---|---|---|---|---|';
            for my $st (@{ $r->{statements} }) {
                (my $q = $st->{query}) =~ s/\|/\\|/g;
                push @md, sprintf '| %d | %.1f | %.1f | %d | `%s…` |', $st->{calls}, $st->{plan_ms}, $st->{exec_ms}, $st->{rows}, $q;
            }
        }
        push @md, '', '![latency CDF at 1k ev/s](latency_cdf.svg)', '![p99 by rate](latency_p99.svg)', '';
    }
    if (my $O = $P->{ooo}) {
        push @md, '## 2. Events missed under out-of-order commits', '',
            "$O->{rate} ev/s by 8 writers, each transaction held open 0–20 ms between INSERT and COMMIT, 5% rolled back "
            . '(seeds ' . join(', ', map { $O->{$_}{seed} } qw(A B)) . '). "Inversions": commits whose changelog id is '
            . 'below one already visible. "Skipped": the poller\'s final cursor is past the row, so it is never read; '
            . '"behind": not reached yet when the run ended. Phantoms are delivered events of rolled-back transactions.', '',
            '| run | trigger | subscriber | committed | inversions | missed | skipped | behind | phantoms | duplicates | out of order |',
            '|---|---|---|---|---|---|---|---|---|---|---|';
        for my $run (qw(A B)) {
            for my $c (grep { exists $O->{$run}{$_}{committed} } qw(relay poll-10ms poll-1s hybrid)) {
                my $x = $O->{$run}{$c};
                push @md, "| $run | $O->{$run}{trigger} | $c | $x->{committed} | $O->{$run}{inversions} | $x->{missing} | "
                    . "$x->{skipped} | $x->{behind} | $x->{phantoms} | $x->{duplicates} | " . ($x->{disorder} // '–') . ' |';
            }
        }
        push @md, '';
    }
    if (my $D = $P->{drain}) {
        my $cap = $P->{capture} ? $P->{capture}{1}{notify}{rows_s} : undef;
        push @md, '## 3. Drain and catch-up', '',
            "$D->{rows} changelog rows committed at once by 4 transactions, to one live subscriber (`raw` reader); then a "
            . 'second subscriber resumes from the position before them (catch-up from PostgreSQL). Each is given at most '
            . "$S{drain_secs} s; the rate counts what arrived. CPU-seconds are per 1M events; the baseline is the pgbench "
            . 'commit ceiling with the capture trigger (section 7).', '',
            '| | events/s | vs commit ceiling | wall s | relay CPU-s /1M | relay backends CPU-s /1M | relay RSS max | first event after commit |',
            '|---|---|---|---|---|---|---|---|';
        push @md, sprintf '| drain%s | %s | %s | %.2f | %.2f | %.2f | %.1f MiB | %.3f s |',
            $D->{events} < $D->{rows} ? " ($D->{events} of $D->{rows} in the time given)" : '', kfmt($D->{rate}),
            ratio($D->{rate}, $cap), $D->{seconds}, $D->{daemon_cpu_per_m}, $D->{backend_cpu_per_m},
            $D->{rss_max_kb} / 1024, $D->{first_event_s};
        if (my $C = $P->{catchup}) {
            push @md, sprintf '| catch-up%s | %s | %s | %.2f | %.2f | %.2f | %.1f MiB | |',
                $C->{events} < $C->{rows} ? " ($C->{events} of $C->{rows} in the time given)" : '', kfmt($C->{rate}), ratio($C->{rate}, $cap),
                $C->{seconds}, $C->{daemon_cpu_per_m}, $C->{backend_cpu_s} * 1e6 / ($C->{events} || 1), $C->{rss_max_kb} / 1024;
            push @md, '', sprintf('Catch-up / drain: %s.', ratio($C->{rate}, $D->{rate}));
        }
        if (my $Y = $P->{copy}) {
            push @md, '', sprintf('What PostgreSQL hands out: `COPY (SELECT` the relay\'s columns of the same %d rows`) TO STDOUT` '
                . 'over TLS (psql as nvsentinel, into /dev/null) took %.2f s: %s rows/s; drain / COPY %s, catch-up / COPY %s. '
                . 'The best commit rate of the capture trigger at 100-row transactions: %s rows/s (section 7).',
                $Y->{rows}, $Y->{seconds}, kfmt($Y->{rate}), ratio($D->{rate}, $Y->{rate}),
                ratio($P->{catchup} ? $P->{catchup}{rate} : undef, $Y->{rate}),
                kfmt($P->{capture} ? $P->{capture}{100}{notify}{rows_s} : undef));
        }
        if (my $q = $P->{poll_query}) {
            push @md, '', sprintf('One NVSentinel poll (caught up, LIMIT 100) at %d changelog rows costs the server %.2f ms '
                . '(plan: %s): its query has no usable index (the partial ones need processed = FALSE), so a watcher '
                . 'polling every 10 ms keeps %s.', $q->{rows}, $q->{ms}, $q->{inner},
                $q->{ms} >= 10 ? 'a backend busy all the time' : sprintf('%.0f%% of a backend busy', $q->{ms} * 10));
        }
        push @md, '';
    }
    if (my $F = $P->{fanout}) {
        push @md, '## 4. Fan-out', '',
            'E events committed at once in one transaction, N subscribers (raw readers, one process); deliveries/s = '
            . 'N × E / time from the commit until the last subscriber has all E. Ratio against 1 subscriber in the same run.', '',
            '| subscribers | events each | deliveries/s | vs 1 subscriber | complete | relay RSS max | relay CPU-s | client CPU-s |',
            '|---|---|---|---|---|---|---|---|';
        for my $n (grep { ref $F->{$_} } sort { $a <=> $b } grep {/^\d+$/} keys %$F) {
            my $x = $F->{$n};
            push @md, sprintf '| %d | %d | %s | %s | %d/%d | %.1f MiB | %.2f | %.2f |', $n, $x->{events}, kfmt($x->{per_s}),
                ratio($x->{per_s}, $F->{1} ? $F->{1}{per_s} : undef), $x->{complete}, $n, $x->{rss_max_kb} / 1024,
                $x->{daemon_cpu_s}, $x->{client_cpu_s};
        }
        push @md, '', sprintf('Relay RSS when idle after start: %.1f MiB.', $F->{rss_idle_kb} / 1024), '', '![fan-out](fanout.svg)', '';
    }
    if (my $F = $P->{fanlat}) {
        push @md, '## 4b. Fan-out latency', '',
            sprintf('Writers at %d ev/s for %g s; N subscribers over TCP+TLS (client certificates, libnvsrelay parsing every frame) '
                . 'from up to %d processes, each watching through one of %s in turn (each matches every event written); '
                . 'every %dth subscriber (from 10 on) stops reading once watching. Commit → arrival, ms: p50/p99 over all deliveries '
                . 'to the reading subscribers, and the median and worst of their own p99s; median (range) of the kept runs. '
                . 'Relay peak RSS from VmHWM, reset when the writers start.', $F->{rate}, $F->{secs}, $S{fanlat_procs},
                join(', ', @{ $F->{pipelines} }), $F->{stall_every}), '',
            '| subscribers | runs kept | p50 ms | p99 ms | subscriber p99 ms, median | subscriber p99 ms, worst | floor p99 ms (LISTEN, TLS) | missing | relay VmHWM | relay CPU-s |',
            '|---|---|---|---|---|---|---|---|---|---|';
        for my $n (sort { $a <=> $b } keys %{ $F->{cells} }) {
            my $c = $F->{cells}{$n};
            push @md, sprintf '| %d | %d/%d | %s | %s | %s | %s | %s | %d | %s | %s |', $n, $c->{kept}, $c->{runs},
                map({ rng($c, $_) } qw(p50 p99 sub_p99_median sub_p99_max floor_p99)),
                $c->{missing}, defined $c->{rss_hwm_kb} ? sprintf('%.1f MiB', $c->{rss_hwm_kb} / 1024) : 'n/a',
                fmt($c->{daemon_cpu_s});
        }
        my @d = grep { $_->{discarded} } @{ $F->{runs} };
        push @md, '', 'Left out: ' . join('; ', map {"round $_->{round}, $_->{subs} subscribers: $_->{discarded}"} @d) . '.' if @d;
        push @md, '';
    }
    if (my $I = $P->{idle}) {
        push @md, '## 5. Idle', '',
            sprintf('%.0f s without writes; statements per second from pg_stat_statements by user, CPU of the process and of its '
                . 'PostgreSQL backends. Database-wide transactions: %.2f/s.', $I->{seconds}, $I->{db_xacts_per_s}), '',
            '| | CPU % | backends CPU % | statements/s | RSS |', '|---|---|---|---|---|';
        for ([ relay => 'nvsrelayd (1 subscriber)' ], [ poll => 'NVSentinel polling 10 ms (1 watcher)' ], [ hybrid => 'NVSentinel hybrid (1 watcher)' ]) {
            my $x = $I->{ $_->[0] };
            push @md, sprintf '| %s | %.2f | %.2f | %.2f | %.1f MiB |', $_->[1], $x->{cpu_pct}, $x->{backend_cpu_pct},
                $x->{queries_per_s}, $x->{rss_kb} / 1024;
        }
        push @md, '';
    }
    if (my $X = $P->{restart}) {
        push @md, '## 6. Restart', '',
            'A durable consumer acknowledging every event, writers at ' . $S{restart_rate} . ' ev/s. The relay is stopped (SIGTERM) '
            . 'and started; later PostgreSQL is restarted (fast) under it.', '',
            '| | seconds |', '|---|---|',
            sprintf('| relay stop (SIGTERM → exit) | %s |', fmt($X->{stop_s}, 3)),
            sprintf('| relay start → socket answers hello | %s |', fmt($X->{start_to_ready_s}, 3)),
            sprintf('| relay start → first event delivered | %s |', fmt($X->{start_to_event_s}, 3)),
            sprintf('| subscriber disconnected → first event after reconnecting | %s |', fmt($X->{client_down_to_event_s}, 3)),
            sprintf('| PostgreSQL restart (pg_ctl restart -m fast) | %s |', fmt($X->{pg_restart_s}, 3)),
            sprintf('| PostgreSQL accepting again → first event delivered | %s |', fmt($X->{pg_up_to_event_s}, 3)),
            '', sprintf('Committed %d, missing %d, delivered twice %d (at-least-once after the relay restart), commits with unknown outcome %d.',
                $X->{committed}, $X->{missing}, $X->{duplicates}, $X->{unknown_commits} || 0), '';
    }
    if (my $C = $P->{capture}) {
        push @md, '## 7. Capture cost on writers', '',
            'pgbench -M prepared -c 4 -j 2 over the Unix socket, ' . $S{capture_secs} . ' s per run, tables truncated and '
            . 'checkpointed before each, ' . $S{capture_rounds} . ' rounds with the variants interleaved, the best round kept (all shown). '
            . 'Rows per second and the ratio to a plain INSERT into an identical table (same columns and indexes, no trigger).', '',
            '| rows per transaction | variant | rows/s | vs plain INSERT | latency ms | rounds |', '|---|---|---|---|---|---|';
        for my $rows (1, 100) {
            for my $k (qw(plain trigger notify relay nvs stmt lean)) {
                my $x = $C->{$rows}{$k} or next;
                push @md, sprintf '| %d | %s | %s | %.2f× | %.2f | %s |', $rows, $x->{label}, kfmt($x->{rows_s}), $x->{ratio},
                    $x->{latency_ms}, join(', ', map { kfmt($_) } @{ $x->{rounds} || [] });
            }
        }
        push @md, '', '![capture cost](capture.svg)', '';
    }
    if (my $B = $P->{big}) {
        push @md, '## 8. A big changelog with retention running', '',
            ($B->{backlog}
            ? sprintf('A first deployment on a changelog nothing ever pruned: %d rows (loaded in one transaction in %.0f s '
                . 'with the relay stopped; its reader past them %.0f s after it started; `BENCH_BIG_BACKLOG=1`), held by '
                . 'nobody, so retention (%s) deletes them during the big runs (%d rows pruned during them)',
                $B->{rows}, $B->{load_s}, $B->{reader_s} // 0,
                join(', ', map {"$_=$B->{settings}{$_}"} sort keys %{ $B->{settings} }), $B->{pruned_during_big})
            : sprintf('The changelog at %d rows (loaded in %.0f s in chunks of %d rows while the relay ticked: %d ticks; '
                . 'its reader past them %.0f s after; `BENCH_BIG=1` for 10M), held by a durable consumer that stopped '
                . 'at the start, with retention running (%s; %d rows pruned during the big runs: the oldest ticks, about '
                . 'what the writers added)', $B->{rows}, $B->{load_s}, $B->{chunk} // 0, $B->{ticks} // 0,
                $B->{reader_s} // 0, join(', ', map {"$_=$B->{settings}{$_}"} sort keys %{ $B->{settings} }),
                $B->{pruned_during_big}))
            . ' against an empty one, runs with the empty table before and '
            . "after; writers at $S{big_rate} ev/s, $S{big_secs} s per run. PostgreSQL CPU: every server process.", '',
            '| changelog | p50 | p99 | p99.9 | max | PostgreSQL CPU % | relay backends CPU-s | runs |', '|---|---|---|---|---|---|---|---|';
        for my $st (qw(empty big)) {
            my $c = $B->{cells}{$st} or next;
            push @md, sprintf '| %s | %s | %s | %s | %s | %s | %s | %d/%d |', $st eq 'big' ? "$B->{rows} rows" : 'empty',
                rng($c, 'p50'), rng($c, 'p99'), $c->{kept} ? fmt_ms($c->{p999}) : '–', $c->{kept} ? fmt_ms($c->{max_max}) : '–',
                fmt($c->{pg_cpu_pct}, 1), fmt($c->{backend_cpu_s}), $c->{kept}, $c->{runs};
        }
        push @md, '';
    }
    if (my $Z = $P->{sizes}) {
        push @md, '## 9. Large events with UPDATE-heavy lifecycles', '',
            "$Z->{rate} events/s inserted with a random 0.5–8 KB pad of hex text in the document (past TOAST's 2 KB when "
            . "large), each then updated $Z->{updates} times in transactions of its own (eviction status, updated_at, "
            . 'document): ' . $Z->{rate} * ($Z->{updates} + 1) . " changes/s, every change an event; $S{sizes_secs} s per run, "
            . "$S{sizes_runs} rounds interleaved; the relay diffs every update. Median (range) over the kept runs.", '',
            '| subscriber | p50 | p99 | p99.9 | max | runs | relay CPU s | relay backends CPU s |', '|---|---|---|---|---|---|---|---|';
        for my $c (@{ $Z->{cells} }) {
            my @r = grep { $_->{key} eq $c->{key} && !$_->{discarded} } @{ $Z->{runs} };
            push @md, sprintf '| %s | %s | %s | %s | %s | %d/%d%s | %s | %s |', $c->{label}, rng($c, 'p50'), rng($c, 'p99'),
                $c->{kept} ? fmt_ms($c->{p999}) : '–', $c->{kept} ? fmt_ms($c->{max_max}) : '–', $c->{kept}, $c->{runs},
                $c->{missing} ? ", $c->{missing} undelivered" : '',
                $c->{key} =~ /^relay/ ? fmt(median(map { $_->{daemon_cpu_s} } @r)) : '–',
                $c->{key} =~ /^relay/ ? fmt(median(map { $_->{backend_cpu_s} } @r)) : '–';
        }
        push @md, '';
    }
    if (my $G = $P->{loaded}) {
        my %what = (quiet => 'quiet (nothing else)', catchup => "while another subscriber replays $G->{backlog} rows",
            acks => "while $S{loaded_acks} durable consumers acknowledge", tls => "while $S{loaded_tls} filtered subscribers "
                . "(NVSentinel's pipelines, matching nearly every event) are connected over TCP+TLS from $S{loaded_tls_procs} processes",
            nodes => "while $S{loaded_tls} subscribers each watching one node's inserts (of 512) are connected over TCP+TLS "
                . "from $S{loaded_tls_procs} processes");
        push @md, '## 10. Live latency under load', '',
            "A live subscriber (libnvsrelay, Unix socket; the relay reads PostgreSQL over TLS) at $S{loaded_rate} ev/s, "
            . "$S{loaded_secs} s per run, $S{loaded_runs} rounds with the conditions interleaved; median (range) over the kept runs. "
            . 'Target: p99 within 2 ms of quiet.', '',
            '| condition | p50 | p99 | p99.9 | max | LISTEN floor p99 | runs | background |', '|---|---|---|---|---|---|---|---|';
        for my $cond (qw(quiet catchup acks tls nodes)) {
            my $c = $G->{cells}{$cond} or next;
            my @bg = map { $_->{background} ? $_->{background} : () } grep { $_->{cond} eq $cond } @{ $G->{runs} };
            my $bgs = join('; ', map {
                my $b = $_;
                $cond eq 'catchup' ? sprintf('%d events replayed, %s', $b->{events} // 0,
                    $b->{finished_before_writer} ? sprintf('done in %.1f s', $b->{replay_s} // 0) : 'still replaying at the end')
                : $cond eq 'acks' ? sprintf('%d events, %d acks', $b->{events} // 0, $b->{acks} // 0)
                : sprintf('%d/%d connected, %d events, %d cut off by the relay', $b->{confirmed} // 0, $b->{conns} // 0, $b->{events} // 0, $b->{dropped} // 0)
            } @bg) || '–';
            push @md, sprintf '| %s | %s | %s | %s | %s | %s | %d/%d | %s |', $what{$cond}, rng($c, 'p50'), rng($c, 'p99'),
                $c->{kept} ? fmt_ms($c->{p999}) : '–', $c->{kept} ? fmt_ms($c->{max_max}) : '–', fmt_ms($c->{floor_tls_p99}),
                $c->{kept}, $c->{runs}, $bgs;
        }
        push @md, '';
    }
    if (my $K = $P->{ticks}) {
        push @md, '## 11. Catch-up of a backlog of small ticks, cold', '',
            sprintf('%d events committed by %d writer connections at %d ev/s while the relay ticked live (%d ticks, %.1f events each); '
                . 'then the relay stopped, PostgreSQL restarted (%.2f s), %s, a new relay started and a subscriber resumed '
                . 'from its position before them.', $K->{rows}, nwriters($S{catchup_tick_rate}), $S{catchup_tick_rate}, $K->{ticks},
                $K->{rows_per_tick},
                $K->{pg_restart_s}, $K->{cache}), '',
            '| events | ticks | seconds | events/s | relay CPU-s | relay backends CPU-s | out of order |', '|---|---|---|---|---|---|---|',
            sprintf('| %d of %d | %d | %.2f | %s | %.2f | %.2f | %s |', $K->{events}, $K->{rows}, $K->{ticks}, $K->{seconds},
                kfmt($K->{rate}), $K->{daemon_cpu_s}, $K->{backend_cpu_s}, $K->{disorder} // 0), '';
    }
    if (my $X = $P->{relays}) {
        push @md, '## 12. Relays on one database', '',
            "N relays on one database (one leader ticks, the others stand by), writers at $S{relays_rate} ev/s for "
            . "$S{relays_secs} s, no subscribers. Per relay: its PostgreSQL connections, CPU of its process and of its "
            . 'backends, statements/s (pg_stat_statements, user nvsentinel).', '',
            '| relays | connections | per relay | relay CPU % each | backends CPU % each | statements/s each | statements/s all |',
            '|---|---|---|---|---|---|---|';
        for my $n (sort { $a <=> $b } keys %$X) {
            my $x = $X->{$n};
            push @md, sprintf '| %d | %d | %.1f | %.2f | %.2f | %.1f | %.1f |', $n, $x->{connections}, $x->{conns_per_relay},
                $x->{relay_cpu_pct}, $x->{backend_cpu_pct}, $x->{statements_per_s}, $x->{statements_per_s_all};
        }
        push @md, '';
    }
    push @md, '## Notes', '', map {"- $_"} @{ $R{notes} } if @{ $R{notes} };
    return join("\n", @md) . "\n";
}

sub targets {
    my $P = $R{phases};
    my @t;
    if (my $C = $P->{latency_cells}) {
        # The issue's latency targets, against the same run's incumbent and
        # floor, in the headline (first BENCH_FSYNC) setting.
        my $f0 = (fsync_list())[0];
        my %cell = map { ("$_->{fsync}|$_->{rate}|$_->{key}" => $_) } @$C;
        for my $rate (@{ $S{rates} }) {
            my ($r, $h, $p) = map { $cell{"$f0|$rate|$_"} } qw(relay-tls hybrid poll-10ms);
            next unless $r && $h;
            my $ok = defined $r->{p99} && defined $h->{p99} ? $r->{p99} <= $h->{p99} : 0;
            $ok = undef if !$r->{kept} || !$h->{kept};
            push @t, [ "p99 commit→subscriber at $rate ev/s (TLS, fsync=$f0)", rms($r, 'p99'),
                'NVSentinel hybrid ' . rms($h, 'p99') . ($p ? '; polling 10 ms ' . rms($p, 'p99') : ''),
                ratio($r->{p99}, $h->{p99}) . ' hybrid', '≤ hybrid', verdict($ok) ];
        }
        if (my $r = $cell{"$f0|100|relay-tls"}) {
            my $fl = $r->{floor_tls_p50};
            my $f1 = $cell{"$f0|100|floor-1k"};
            push @t, [ "p50 at 100 ev/s (TLS, fsync=$f0)", rms($r, 'p50'),
                'LISTEN floor ' . fmt_ms($fl) . ' ms' . ($f1 ? '; 1 KB NOTIFY floor ' . rms($f1, 'p50') : ''),
                defined $r->{p50} && defined $fl ? sprintf('%+.2f ms', $r->{p50} - $fl) : 'n/a', '≤ floor + 1 ms',
                verdict(!$r->{kept} ? undef : defined $r->{p50} && defined $fl ? $r->{p50} <= $fl + 1 : 0) ];
        }
    }
    if (my $O = $P->{ooo}) {
        my $rm = sum(map { $O->{$_}{relay}{missing} + $O->{$_}{relay}{phantoms} } grep { $O->{$_}{relay} } qw(A B)) // 0;
        my $pm = $O->{A}{'poll-10ms'} ? $O->{A}{'poll-10ms'}{skipped} : undef;
        my $hm = $O->{B}{hybrid} ? $O->{B}{hybrid}{skipped} : undef;
        push @t, [ 'events missed, out-of-order commits', $rm, 'polling 10 ms: ' . ($pm // 'n/a') . ' skipped; hybrid: '
            . ($hm // 'n/a'), '–', '0', verdict($rm == 0) ];
    }
    my $cap = $P->{capture} ? $P->{capture}{1}{notify}{rows_s} : undef;
    if (my $D = $P->{drain}) {
        my $core = $D->{daemon_cpu_s} / ($D->{seconds} || 1);
        # Against what PostgreSQL hands out (COPY of the same columns over
        # TLS) and what writers can commit at best (100-row transactions
        # through the capture trigger, best round).
        my $cap100 = $P->{capture} ? $P->{capture}{100}{notify}{rows_s} : undef;
        my $copy = $P->{copy} ? $P->{copy}{rate} : undef;
        push @t, [ 'drain rate, 1 subscriber', kfmt($D->{rate}) . sprintf(' ev/s (relay at %.0f%% of a core)', 100 * $core),
            'COPY of the same columns over TLS ' . kfmt($copy) . ' rows/s; capture trigger, 100-row tx ' . kfmt($cap100)
                . ' rows/s; 1-row tx ' . kfmt($cap) . ' rows/s',
            ratio($D->{rate}, $copy) . ' COPY; ' . ratio($D->{rate}, $cap100) . ' 100-row commits',
            '≥ 20k ev/s and ≥ the 100-row commit rate',
            verdict(!defined $cap100 ? undef : $D->{rate} >= 20000 && $D->{rate} >= $cap100) ];
    }
    if (my $F = $P->{fanout}) {
        push @t, [ 'fan-out deliveries/s at 10', kfmt($F->{10}{per_s}), '1 subscriber ' . kfmt($F->{1}{per_s}),
            ratio($F->{10}{per_s}, $F->{1}{per_s}), '≥ 150k/s', verdict($F->{10}{per_s} >= 150000) ] if $F->{10} && $F->{1};
        push @t, [ 'relay RSS at 100 subscribers', sprintf('%.1f MiB', $F->{100}{rss_max_kb} / 1024),
            sprintf('idle %.1f MiB', $F->{rss_idle_kb} / 1024), ratio($F->{100}{rss_max_kb}, $F->{rss_idle_kb}, 1),
            '≤ 64 MiB', verdict($F->{100}{rss_max_kb} <= 65536) ] if $F->{100};
    }
    if (my $C = $P->{catchup}) {
        push @t, [ 'catch-up replay', kfmt($C->{rate}) . ' ev/s', 'drain ' . kfmt($P->{drain}{rate}) . ' ev/s',
            ratio($C->{rate}, $P->{drain}{rate}), '≥ 50k ev/s', verdict($C->{rate} >= 50000) ];
    }
    if (my $B = $P->{big}) {
        my ($e, $b) = map { $B->{cells}{$_} } qw(empty big);
        if ($e && $b) {
            my $ok = !$e->{kept} || !$b->{kept} ? undef : defined $b->{p99} && defined $e->{p99}
                ? $b->{p99} <= $e->{p99} + 2 && $b->{pg_cpu_pct} <= $e->{pg_cpu_pct} * 1.2 + 1 : 0;
            push @t, [ $B->{backlog} ? "a backlog of $B->{rows} rows pruned during live runs"
                    : "changelog at $B->{rows} rows with retention running", rms($b, 'p99') . ' p99, PostgreSQL '
                    . fmt($b->{pg_cpu_pct}, 1) . '% CPU', 'empty: ' . rms($e, 'p99') . ', ' . fmt($e->{pg_cpu_pct}, 1) . '%',
                ratio($b->{pg_cpu_pct}, $e->{pg_cpu_pct}) . ' CPU', 'p99 ≤ empty + 2 ms, CPU ≤ 1.2× empty + 1 point',
                verdict($ok) ];
        }
    }
    if (my $G = $P->{loaded}) {
        my $q = $G->{cells}{quiet};
        for my $cond (qw(catchup acks tls nodes)) {
            my $c = $G->{cells}{$cond} or next;
            my $ok = !$q || !$q->{kept} || !$c->{kept} ? undef : defined $c->{p99} && defined $q->{p99} ? $c->{p99} <= $q->{p99} + 2 : 0;
            push @t, [ "live p99 at $S{loaded_rate} ev/s under load: $cond", rms($c, 'p99'), 'quiet ' . rms($q, 'p99'),
                defined $c->{p99} && defined $q->{p99} ? sprintf('%+.2f ms', $c->{p99} - $q->{p99}) : 'n/a', '≤ quiet + 2 ms',
                verdict($ok) ];
        }
    }
    if (my $K = $P->{ticks}) {
        push @t, [ 'catch-up of a backlog of small ticks, cold', kfmt($K->{rate}) . " ev/s ($K->{ticks} ticks, $K->{cache})",
            'COPY ' . ($P->{copy} ? kfmt($P->{copy}{rate}) : 'n/a') . ' rows/s; catch-up of one big batch '
                . ($P->{catchup} ? kfmt($P->{catchup}{rate}) : 'n/a') . ' ev/s',
            ratio($K->{rate}, $P->{copy} ? $P->{copy}{rate} : undef) . ' COPY', '≥ 50k ev/s',
            verdict($K->{events} == $K->{rows} && $K->{rate} >= 50000) ];
    }
    if (my $X = $P->{relays}) {
        my ($lo, $hi) = map { $X->{$_} } (sort { $a <=> $b } keys %$X)[ 0, -1 ];
        push @t, [ "PostgreSQL cost per relay, $hi->{relays} relays on one database",
            sprintf('%.1f connections, %.2f%% backend CPU, %.1f statements/s', $hi->{conns_per_relay}, $hi->{backend_cpu_pct},
                $hi->{statements_per_s}),
            sprintf('1 relay: %.1f, %.2f%%, %.1f/s', $lo->{conns_per_relay}, $lo->{backend_cpu_pct}, $lo->{statements_per_s}),
            ratio($hi->{statements_per_s}, $lo->{statements_per_s}) . ' statements', '–', 'n/a' ] if $lo && $hi && $lo != $hi;
    }
    if (my $I = $P->{idle}) {
        my $r = $I->{relay};
        push @t, [ 'idle CPU, statements/s', sprintf('%.2f%% (+%.2f%% backends), %.2f/s', $r->{cpu_pct}, $r->{backend_cpu_pct}, $r->{queries_per_s}),
            sprintf('polling 10 ms: %.2f%% (+%.2f%%), %.1f/s', $I->{poll}{cpu_pct}, $I->{poll}{backend_cpu_pct}, $I->{poll}{queries_per_s}),
            ratio($r->{queries_per_s}, $I->{poll}{queries_per_s}, 3) . ' statements', '< 1% CPU, ≤ 2/s',
            verdict($r->{cpu_pct} < 1 && $r->{queries_per_s} <= 2) ];
    }
    if (my $X = $P->{restart}) {
        push @t, [ 'restart → streaming', fmt($X->{start_to_event_s}, 3) . ' s (PostgreSQL restart: ' . fmt($X->{pg_up_to_event_s}, 3) . ' s)',
            '–', '–', '< 1 s', verdict(defined $X->{start_to_event_s} && $X->{start_to_event_s} < 1) ];
    }
    if (my $C = $P->{capture}) {
        for my $rows (1, 100) {
            my $x = $C->{$rows}{notify} or next;
            my $n = $C->{$rows}{nvs};
            push @t, [ "capture cost, $rows-row tx (trigger + NOTIFY)", kfmt($x->{rows_s}) . ' rows/s',
                'plain INSERT ' . kfmt($C->{$rows}{plain}{rows_s})
                    . ($n ? '; NVSentinel\'s trigger ' . kfmt($n->{rows_s}) : ''),
                sprintf('%.2f× plain', $x->{ratio}) . ($n ? sprintf('; %.2f× NVSentinel\'s', $x->{rows_s} / $n->{rows_s}) : ''),
                '≥ 0.7×', verdict($x->{ratio} >= 0.7) ];
        }
    }
    $R{targets} = \@t;
}

sub plots {
    my ($dir) = @_;
    my ($rc) = NvsTest::run_cmd([ 'sh', '-c', 'command -v gnuplot' ]);
    if ($rc) { push @{ $R{notes} }, 'gnuplot not installed (tests/bench/deps.sh): plots skipped'; return }
    my $P = $R{phases};
    my $dd = "$dir/data";
    make_path($dd);
    my @gp = ("set terminal svg size 800,480 dynamic font 'sans,11'", "set datafile separator ' '", 'set grid', 'set key bottom right');
    if (my $L = $P->{latency}) {
        my @series;
        # The CDF: the first round in the headline setting.
        my $f0 = (fsync_list())[0];
        my @r1 = grep { $_->{rate} == 1000 && $_->{fsync} eq $f0 && $_->{round} == 1 } @$L;
        push @series, [ 'floor (LISTEN, TLS)', $r1[0]{floor_tls}{lat} ] if @r1;
        for my $r (@r1) { push @series, [ $r->{key}, $r->{stats}{lat} ] }
        my @plot;
        my $i = 0;
        for my $s (@series) {
            my $lat = $s->[1] or next;
            next unless @$lat;
            my $f = "$dd/lat_cdf.$i.dat";
            open(my $fh, '>', $f) or die $!;
            my $n = @$lat;
            my $step = $n > 2000 ? int($n / 2000) : 1;
            for (my $k = 0; $k < $n; $k += $step) { printf $fh "%.4f %.5f\n", $lat->[$k], ($k + 1) / $n }
            printf $fh "%.4f 1\n", $lat->[-1];
            close $fh;
            push @plot, "'$f' using 1:2 with lines lw 2 title '$s->[0]'";
            $i++;
        }
        if (@plot) {
            gnuplot("$dir/latency_cdf.svg", @gp, "set title 'commit → subscriber latency, 1k ev/s (CDF)'",
                "set xlabel 'ms'", 'set logscale x', "set ylabel 'share of events'", 'set yrange [0:1]',
                'plot ' . join(', ', @plot));
        }
        my %by;
        for my $c (grep { $_->{fsync} eq $f0 } @{ $P->{latency_cells} || [] }) { $by{ $c->{key} }{ $c->{rate} } = $c->{p99} }
        my $f = "$dd/lat_p99.dat";
        my @keys = grep { $by{$_} } qw(floor-1k floor-select relay-tls relay-unix hybrid poll-10ms poll-1s);
        open(my $fh, '>', $f) or die $!;
        for my $rate (@{ $S{rates} }) {
            print $fh join(' ', $rate, map { defined $by{$_}{$rate} ? sprintf('%.4f', $by{$_}{$rate}) : 'NaN' } @keys), "\n";
        }
        close $fh;
        my $c = 2;
        gnuplot("$dir/latency_p99.svg", @gp, "set title 'median p99 commit → subscriber by rate, fsync=$f0 (missing: not all delivered)'",
            "set xlabel 'events/s'", "set ylabel 'p99 ms'", 'set logscale xy', 'set key top left',
            'plot ' . join(', ', map { "'$f' using 1:" . $c++ . " with linespoints lw 2 title '$_'" } @keys));
    }
    if (my $F = $P->{fanout}) {
        my $f = "$dd/fanout.dat";
        open(my $fh, '>', $f) or die $!;
        for my $n (sort { $a <=> $b } grep { /^\d+$/ && ref $F->{$_} } keys %$F) {
            printf $fh "%d %.1f %.2f\n", $n, $F->{$n}{per_s}, $F->{$n}{rss_max_kb} / 1024;
        }
        close $fh;
        gnuplot("$dir/fanout.svg", @gp, "set title 'fan-out: deliveries/s and relay RSS'", "set xlabel 'subscribers'",
            'set logscale x', "set ylabel 'deliveries/s'", "set y2label 'RSS MiB'", 'set y2tics', 'set ytics nomirror',
            'set key top left', "plot '$f' using 1:2 with linespoints lw 2 title 'deliveries/s', "
            . "'$f' using 1:3 axes x1y2 with linespoints lw 2 title 'RSS MiB'");
    }
    if (my $C = $P->{capture}) {
        my $f = "$dd/capture.dat";
        open(my $fh, '>', $f) or die $!;
        for my $k (qw(plain trigger notify relay)) {
            printf $fh "\"%s\" %.3f %.3f\n", $k, $C->{1}{$k}{ratio}, $C->{100}{$k}{ratio};
        }
        close $fh;
        gnuplot("$dir/capture.svg", @gp, "set title 'writer throughput relative to a plain INSERT'", 'set style data histograms',
            'set style fill solid 0.6 border -1', 'set yrange [0:1.2]', "set ylabel 'rows/s vs plain'", 'set key top right',
            "plot '$f' using 2:xtic(1) title '1-row tx', '' using 3 title '100-row tx', 0.7 with lines dt 2 lc rgb 'red' title 'target 0.7'");
    }
}

sub gnuplot {
    my ($out, @cmds) = @_;
    my $script = "$out.gp";
    open(my $fh, '>', $script) or die $!;
    print $fh "set output '$out'\n", map {"$_\n"} @cmds;
    close $fh;
    my ($rc, $o) = NvsTest::run_cmd([ 'gnuplot', $script ]);
    push @{ $R{notes} }, "gnuplot failed for $out: $o" if $rc;
    unlink $script;
}

# ------------------------------------------------------------------ main

make_path($opt{out});
my $out = abs_path($opt{out});
# BENCH_PG_CONF="auto_explain.log_min_duration=20,..." adds server settings
# (diagnosis; "auto_explain" then joins the preloaded libraries).
my %pgconf = (shared_preload_libraries => "'pg_stat_statements'", 'pg_stat_statements.track_planning' => 'on',
    max_connections => 1200);
for (grep {length} split /,/, $ENV{BENCH_PG_CONF} || '') {
    my ($k, $v) = split /=/, $_, 2;
    $pgconf{$k} = $v;
    $pgconf{shared_preload_libraries} = "'pg_stat_statements,auto_explain'" if $k =~ /^auto_explain\./;
}
# Durability as the first BENCH_FSYNC value says (pgtmp.sh's own default,
# for the integration tests, is off; these lines come after it).
my $fsync0 = (fsync_list())[0];
$pgconf{fsync} = $pgconf{full_page_writes} = $fsync0;
$pg = NvsTest::Pg->start(conf => \%pgconf);
$W = $pg->dir . '/bench';
mkdir $W or die "$W: $!";
# The binaries are copied first: a rebuild of the build tree during the run
# (another make) must not change what is measured halfway.
mkdir "$W/bin" or die "$W/bin: $!";
for my $f ("$opt{build}/nvsrelayd", map {"$BIN/$_"} qw(bench_writer bench_listen bench_poll bench_sub bench_fan)) {
    my ($rc, $o) = NvsTest::run_cmd([ 'cp', '-p', $f, "$W/bin/" ]);
    die "cp $f: $o" if $rc;
}
$BIN = "$W/bin";
$DAEMON_BIN = "$W/bin/nvsrelayd";
$R{date}    = POSIX::strftime('%Y-%m-%d %H:%M UTC', gmtime);
$R{load_start} = loadavg();
$R{seed}    = $opt{seed};
$R{quick}   = $opt{quick};
$R{machine} = machine_info();
$R{template} = template();
{
    open(my $fh, '>', "$W/template.json") or die $!;
    print $fh $R{template}, "\n";
    close $fh;
}
psql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
$R{pg_version} = psql('SHOW server_version');
$R{pg_settings} = join(', ', map {"$_=" . psql("SHOW $_")} qw(shared_buffers max_connections jit));
# The daemon installs the schema; its trigger is the one restored after
# phases that swap in NVSentinel's.
daemon_start('tls');
$RELAY_TRIGGER = psql("SELECT pg_get_functiondef('log_table_changes'::regproc)");
{
    my ($rc, $cfg) = NvsTest::run_cmd([ $DAEMON_BIN, '--config', '/dev/null', (map { ('--set', "$_=$DSET{$_}") } sort keys %DSET),
        '--check-config' ]);
    my %c = map { /^(\w+)\s*=\s*(.*)$/ ? ($1 => $2) : () } split /\n/, $cfg;
    $R{daemon_settings} = join(', ', map {"$_=" . ($c{$_} // '?')}
        qw(poll_interval_ms tick_min_interval_ms tick_idle_ms batch_rows ring_events ack_flush_ms));
}
{
    (my $d = $R{template}) =~ s/\@SEQ\@/123456/;
    $d =~ s/\@SEC\@/1764064800/;
    $d =~ s/\@NANO\@/123456000/;
    $d =~ s/\@CREATED\@/2026-11-25T10:00:00.123456Z/;
    $d =~ s/\@SPAN\@/0123456789abcdef/;
    $d =~ s/\@NODE\@/gpu-node-001/;
    $R{doc_bytes} = length $d;
}
daemon_stop();
setup_incumbent();
set_fsync($fsync0);
$R{source} = source_hash();
say_ "PostgreSQL $R{pg_version} in " . $pg->dir . ($opt{quick} ? ' (quick run)' : '');

my $ok = eval {
    phase_capture() if want('capture');
    phase_latency() if want('latency');
    phase_ooo()     if want('ooo');
    phase_idle()    if want('idle');
    phase_drain()   if want('drain');
    phase_fanout()  if want('fanout');
    phase_fanlat()  if want('fanlat');
    phase_restart() if want('restart');
    phase_loaded()  if want('loaded');
    phase_sizes()   if want('sizes');
    phase_big()     if want('big');
    phase_ticks()   if want('ticks');
    phase_relays()  if want('relays');
    1;
};
my $err = $@;
daemon_stop();
$R{wall_s} = NvsTest::now() - $T0;
$R{load_end} = loadavg();
if (!$ok) {
    push @{ $R{notes} }, "the run stopped early: $err";
    print STDERR "bench: $err";
}
targets();
plots($out);
{
    open(my $fh, '>', "$out/results.md") or die "$out/results.md: $!";
    print $fh report();
    close $fh;
    my %raw = %R;
    delete $raw{template};
    for my $r (@{ $raw{phases}{latency} || [] }) {
        $r = { %$r };
        $r->{$_} = { %{ $r->{$_} } } for grep { ref $r->{$_} } qw(stats floor_unix floor_tls);
        delete $_->{lat} for grep {ref} $r->{stats}, $r->{floor_unix}, $r->{floor_tls};
    }
    open($fh, '>', "$out/results.json") or die $!;
    print $fh $JSON->encode(\%raw);
    close $fh;
}
say_ "results: $out/results.md";
if ($opt{keep}) { $ENV{NVS_KEEP} = 1; say_ "kept $W" }
exit($ok ? 0 : 1);

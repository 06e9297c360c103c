#!/usr/bin/perl
# 96-failover.t - PostgreSQL failover under a running stream. A synchronous streaming
# replica (tests/tools/pgtmp.sh replica: pg_basebackup, synchronous_standby_names, so a
# commit a writer saw is on both servers) listens on 127.0.0.2 with the primary's port.
# nvsrelayd names both: DATASTORE_HOST=localhost,localhost with hostaddr=127.0.0.1,127.0.0.2
# in datastore_options (verify-full still checks "localhost"), and therefore asks libpq for
# target_session_attrs=read-write. While writers commit, the primary is stopped with
# -m immediate and the replica promoted. The relay must follow the new primary with its
# subscribers still connected, tokens issued before the failover must stay valid on it,
# and nothing a writer saw committed may be lost or delivered out of order.
# NVS_FO_ORDER=127.0.0.2,127.0.0.1 lists the replica first (hostaddr order).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my $port = $pg->port;
my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'replica', $dir ]);
is($rc, 0, 'synchronous replica on 127.0.0.2 streaming') or BAIL_OUT("pgtmp.sh replica: $out");
my $rsock = "$dir/replica/sock";
my $dbh = $pg->dbh;
# A standby that has just connected is 'potential' until it has caught up.
my $sync = '';
for (1 .. 100 * $slow) {
    $sync = $dbh->selectrow_array(q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'nvs_replica'})
        // '';
    last if $sync eq 'sync';
    select(undef, undef, undef, 0.1);
}
is($sync, 'sync', 'the primary waits for it on commit');

my $d = NvsTest::Daemon->start($pg, env => { DATASTORE_HOST => 'localhost,localhost' },
    set => { datastore_options => 'hostaddr=' . ($ENV{NVS_FO_ORDER} // '127.0.0.1,127.0.0.2'), connect_timeout_s => 2,
        reconnect_min_ms => 50, reconnect_max_ms => 500, poll_interval_ms => 100, tick_idle_ms => 500,
        ack_flush_ms => 50 });
like($d->log, qr/starting .*host=localhost,localhost/, 'relay started with both hosts');

my $live = NvsTest::Client->connect($d->socket);
$live->watch(sid => 1);
ok($live->recv_op('bookmark', 10), 'a live subscriber');
my $dur = NvsTest::Client->connect($d->socket);
$dur->watch(sid => 2, consumer => 'failover-dur');
ok($dur->recv_op('bookmark', 10), 'a durable consumer');

# Writers: single-row transactions to whichever server is the primary. A commit that
# returned is logged "C id"; an insert whose commit was cut off is "U node" (looked up
# at the end).
my $wlog = "$dir/writers";
mkdir $wlog;
my $dsn = "dbi:Pg:host=$dir/sock,$rsock;port=$port,$port;dbname=nvsentinel;target_session_attrs=read-write";
my $t_end = NvsTest::now() + 6;
my @writers;
for my $w (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(my $log, '>', "$wlog/$w") or POSIX::_exit(1);
        $log->autoflush(1);
        my ($h, $n) = (undef, 0);
        while (NvsTest::now() < $t_end) {
            $h //= eval { DBI->connect($dsn, 'postgres', '', { AutoCommit => 0, RaiseError => 1, PrintError => 0,
                PrintWarn => 0 }) };
            if (!$h) { Time::HiRes::sleep(0.05); next }
            my $node = "fo-$w-" . ++$n;
            my $id = eval {
                my $id = NvsTest::insert_health_event($h, node => $node);
                $h->commit;
                $id;
            };
            if ($id) { print $log "C $id\n" }
            else { print $log "U $node\n"; eval { $h->disconnect }; $h = undef }
            Time::HiRes::sleep(0.005);
        }
        POSIX::_exit(0);
    }
    push @writers, $pid;
}

# Let the stream run, remember a token, then fail over.
my (@pre, $tok_before);
my $deadline = NvsTest::now() + 10;
while (@pre < 30 && NvsTest::now() < $deadline) { push @pre, @{ $live->events(1, 1) } }
cmp_ok(scalar @pre, '>=', 30, 'events flowing before the failover');
$tok_before = $pre[9]{event}{_id};
my $dpre = $dur->events(5, 5);
$dur->ack(2, $dpre->[-1]{event}{_id}) if @$dpre;
my $acked = @$dpre ? $dpre->[-1]{event}{_id}{_data} : undef;

my $mark = length $d->log;
($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'stop-server', $dir, 'immediate' ]);
is($rc, 0, 'primary stopped (-m immediate)') or diag($out);
($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'promote', "$dir/replica" ]);
is($rc, 0, 'replica promoted') or diag($out);
waitpid($_, 0) for @writers;

# The relay reconnects past the first host, which now refuses (libpq opens the next
# host's socket, often under the same descriptor number). Meanwhile the live subscriber
# keeps reading, as a real one would. Should the relay not come back, the waits below are
# cut short: the checks fail rather than time out one by one.
my ($stuck, @post) = (1);
$deadline = NvsTest::now() + 12 * $slow;
while (NvsTest::now() < $deadline) {
    if (substr($d->log, $mark) =~ /postgresql connected conn=main/) { $stuck = 0; last }
    push @post, @{ $live->events(100, 0.1) };
}
ok(!$stuck, 'the relay connected to the promoted replica')
    or diag(join "\n", grep {/connect/} (split /\n/, substr($d->log, $mark))[0 .. 5]);
my $new = DBI->connect("dbi:Pg:host=$rsock;port=$port;dbname=nvsentinel", 'postgres', '', { RaiseError => 1, AutoCommit => 1 });
is($new->selectrow_array('SELECT pg_is_in_recovery()'), 0, 'the replica is the primary now');
my $sentinel = NvsTest::insert_health_event($new, node => 'fo-sentinel');

# What the writers saw committed must be on the new primary: the replica was synchronous.
my (%acked_commit, @unknown);
for my $f (glob "$wlog/*") {
    for (split /\n/, NvsTest::slurp($f)) {
        $acked_commit{$1} = 1 if /^C (\S+)/;
        push @unknown, $1 if /^U (\S+)/;
    }
}
my %on_new = map { $_->[0] => $_->[1] } @{ $new->selectall_arrayref(
    q{SELECT id::text, node_name FROM health_events WHERE node_name LIKE 'fo-%'}) };
my @missing_db = grep { !$on_new{$_} } keys %acked_commit;
is(scalar @missing_db, 0, scalar(keys %acked_commit) . ' commits acknowledged to writers, all on the new primary ('
    . scalar(@unknown) . ' cut off by the failover, looked up instead)');

# The live subscriber stayed connected and gets everything, in order, up to the sentinel.
$deadline = NvsTest::now() + ($stuck ? 2 : 60 * $slow);
while (NvsTest::now() < $deadline) {
    my $e = $live->events(1, $stuck ? 1 : 5);
    last if !@$e && $live->eof;
    push @post, @$e;
    last if grep { $_->{event}{documentKey}{_id} eq $sentinel } @post;
}
my @all = (@pre, @post);
my %got = map { $_->{event}{documentKey}{_id} => 1 } @all;
ok(!$live->eof, 'the live subscriber stayed connected through the failover');
ok($got{$sentinel}, 'a change committed on the new primary arrives: the relay follows it');
my @lost = grep { !$got{$_} } keys %on_new;
is(scalar @lost, 0, 'every change on the new primary was delivered (' . scalar(keys %on_new) . ')')
    or diag('lost: ' . join(' ', @lost[ 0 .. ($#lost < 5 ? $#lost : 5) ]));
my @phantom = grep { !$on_new{ $_->{event}{documentKey}{_id} } } @all;
is(scalar @phantom, 0, 'nothing delivered that the new primary does not have');
my @toks = map { $_->{event}{_id}{_data} } @all;
is_deeply(\@toks, [ sort @toks ], 'tokens strictly increasing across the failover');
my %dup;
is(scalar(grep { $dup{$_}++ } @toks), 0, 'no duplicates on the live subscriber');

# Relay sessions are on the new primary, and it ticks there.
my ($nsess) = $new->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'});
cmp_ok($nsess, '>=', 3, "the relay's sessions are on the new primary ($nsess)");
ok($d->wait_log(qr/ticker elected(?:.|\n)*ticker elected/, $stuck ? 1 : 10 * $slow), 'the ticker was elected again there');

# A token from before the failover resumes on the new primary with nothing skipped.
my $r = NvsTest::Client->connect($d->socket);
$r->watch(sid => 3, resumeAfter => $tok_before);
my $want = scalar(@all) - 10;
my $res = $r->events($want, $stuck ? 2 : 30 * $slow, sid => 3);
is_deeply([ map { $_->{event}{_id}{_data} } @$res ], [ @toks[ 10 .. $#toks ] ],
    'resumeAfter a token issued before the failover: exactly the changes after it');
# The durable consumer resumes after its acknowledged position.
$dur->close;
my $dc = NvsTest::Client->connect($d->socket);
$dc->watch(sid => 4, consumer => 'failover-dur');
my $bm = $dc->recv_op('bookmark', $stuck ? 2 : 10 * $slow);
ok($bm && (!defined $acked || $bm->{token}{_data} ge $acked), 'the durable consumer restarts at or after its ack');
my %dgot = map { $_->{event}{documentKey}{_id} => 1 } @$dpre;
$deadline = NvsTest::now() + ($stuck ? 2 : 60 * $slow);
while (!$dgot{$sentinel} && NvsTest::now() < $deadline) {
    my $e = $dc->events(200, 2, sid => 4);
    last if !@$e && $dc->eof;
    $dgot{ $_->{event}{documentKey}{_id} } = 1 for @$e;
}
my @dmiss = grep { !$dgot{$_} } keys %on_new;
is(scalar @dmiss, 0, 'and gets everything after it from the new primary')
    or diag(scalar(@dmiss) . ' missing, ' . scalar(keys %dgot) . ' received; sentinel ' . ($dgot{$sentinel} ? 'seen' : 'not seen'));

# libpq's per-host ports: a second relay lists port 1 (closed) for 127.0.0.1 and the real
# port for 127.0.0.2, the new primary, so it streams only if each host got its own port.
{
    my $d2 = NvsTest::Daemon->start($pg, socket => "$dir/relay2.sock",
        env => { DATASTORE_HOST => 'localhost,localhost', DATASTORE_PORT => "1,$port" },
        set => { datastore_options => 'hostaddr=127.0.0.1,127.0.0.2', connect_timeout_s => 2, reconnect_min_ms => 50,
            reconnect_max_ms => 500 });
    ok($d2->wait_log(qr/ready generation=/, 30 * $slow), 'DATASTORE_PORT=1,PORT reaches the second host on its own port')
        or diag(NvsTest::tail($d2->logfile, 20));
    my $c2 = NvsTest::Client->connect($d2->socket);
    $c2->watch(sid => 9);
    ok($c2->recv_op('bookmark', 10 * $slow), 'and serves a subscriber');
    $c2->close;
    is($d2->stop(20), 0, 'clean stop of the second relay');

    local %ENV = ((map { $_ => $ENV{$_} } grep { !/^(PG|DATASTORE_|NVSRELAYD_)/ } keys %ENV),
        DATASTORE_HOST => 'localhost,localhost,localhost', DATASTORE_PORT => "$port,$port");
    my $bin = ($ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build") . '/nvsrelayd';
    my ($crc, $cout) = NvsTest::run_cmd([ $bin, '-c', '/dev/null', '--check-config' ]);
    isnt($crc, 0, 'two ports for three hosts are refused');
    like($cout, qr/datastore_port lists 2 ports for 3 hosts/, 'with a clear message');
}
$new->disconnect;
is($d->stop(20), 0, 'clean stop');
done_testing();

#!/usr/bin/perl
# 58-standby.t - batch and catch-up pages read from a hot standby (datastore_replica_host):
# a streaming replica made with pg_basebackup (tests/tools/pgtmp.sh replica, made
# asynchronous here so the primary never waits for it). While a writer commits, the
# standby's replay is paused (it falls behind: pages must come from the primary), resumed,
# and the standby is restarted. Every change must reach a live subscriber and a catch-up
# subscriber once, in commit order, and the standby must have served pages.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'replica', $dir ]);
is($rc, 0, 'a streaming standby made with pg_basebackup') or BAIL_OUT("pgtmp.sh replica: $out");
my $dbh = $pg->dbh;
$dbh->do(q{ALTER SYSTEM SET synchronous_standby_names = ''});
$dbh->do('SELECT pg_reload_conf()');
my $sdsn = "dbi:Pg:host=$dir/replica/sock;port=" . $pg->port . ';dbname=nvsentinel';
my $sbh  = DBI->connect($sdsn, 'postgres', '', { RaiseError => 1, AutoCommit => 1 });
is($sbh->selectrow_array('SELECT pg_is_in_recovery()'), 1, 'it is in recovery (a hot standby)');

my $hport = NvsTest::free_port();
# The leader's batches come with its ticks, on the primary (batch.c); the
# standby serves the relays that follow the leader's ticks, and every
# relay's catch-up pages and pages after a batch's first.  So a leader
# without a standby ticks (alone, it holds the ticker lock once its socket
# is up), and the relay under test follows.
my $leader = NvsTest::Daemon->start($pg, socket => "$dir/leader.sock", set => { poll_interval_ms => 100,
    tick_idle_ms => 500 });
my $d = NvsTest::Daemon->start($pg, set => { datastore_replica_host => "$dir/replica/sock", poll_interval_ms => 100,
    tick_idle_ms => 500, http_listen => "127.0.0.1:$hport", ring_events => 32, batch_rows => 50,
    reconnect_min_ms => 50, reconnect_max_ms => 500 });
ok($d->wait_log(qr/hot standby connected/, 10 * $slow), 'the relay connected to the standby');

sub replica_pages {
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$hport") or return -1;
    print $sock "GET /metrics HTTP/1.0\r\n\r\n";
    local $/;
    my $m = <$sock>;
    return $m =~ /^nvsrelay_pg_replica_pages_total\{from="replica"\} (\d+)/m ? $1 : 0;
}

my $live = NvsTest::Client->connect($d->socket);
$live->watch(sid => 1);
my $start = $live->recv_op('bookmark', 10)->{token};
ok($start, 'a live subscriber');

my $t_end = NvsTest::now() + 7;
my $wpid = fork // die "fork: $!";
if (!$wpid) {
    my $h = $pg->dbh;
    my $n = 0;
    while (NvsTest::now() < $t_end) {
        NvsTest::insert_health_event($h, node => 'sb-' . ++$n);
        Time::HiRes::sleep(0.005);
    }
    POSIX::_exit(0);
}
my @got;
my $read = sub { my ($t) = @_; push @got, @{ $live->events(100000, $t) } };
$read->(1.5);
my $before_pause = replica_pages();
cmp_ok($before_pause, '>', 0, "the standby serves batch pages ($before_pause so far)");
my $n0 = @got;
$sbh->do('SELECT pg_wal_replay_pause()');
Time::HiRes::sleep(0.3);
my $paused_pages = replica_pages();
$read->(2);
my $during = @got - $n0;
$sbh->do('SELECT pg_wal_replay_resume()');
cmp_ok($during, '>', 50, "with the standby's replay paused, changes keep coming from the primary ($during in 2 s)");
cmp_ok(replica_pages() - $paused_pages, '<=', 1, 'and none of their pages from the standby');
$read->(1);
$sbh->disconnect;
($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'restart', "$dir/replica", 'fast' ]);
is($rc, 0, 'the standby restarted mid-stream') or diag($out);
waitpid($wpid, 0);
my $sentinel = NvsTest::insert_health_event($dbh, node => 'sb-sentinel');
my $deadline = NvsTest::now() + 30 * $slow;
while (NvsTest::now() < $deadline && !grep { $_->{event}{documentKey}{_id} eq $sentinel } @got) { $read->(0.5) }

my %want = map { $_->[0] => 1 } @{ $dbh->selectall_arrayref(q{SELECT id::text FROM health_events WHERE node_name LIKE 'sb-%'}) };
my @ids = map { $_->{event}{documentKey}{_id} } @got;
my %seen;
my @dup = grep { $seen{$_}++ } @ids;
is(scalar(grep { !$seen{$_} } keys %want), 0, 'live: every change delivered (' . scalar(keys %want) . ')');
is(scalar @dup, 0, 'live: none twice');
my @toks = map { $_->{event}{_id}{_data} } @got;
is_deeply(\@toks, [ sort @toks ], 'live: in commit order through the pause and the standby restart');
ok(!$live->eof, 'live: stayed connected');
ok($d->wait_log(qr/hot standby connection lost/, 1), 'the relay saw the standby go')
    and ok($d->wait_log(qr/hot standby connected(?:.|\n)*hot standby connected/, 15 * $slow), 'and come back');

# Catch-up from the start, far behind a 32-event ring: pages from the standby once it is
# back, the same sequence.
my $c = NvsTest::Client->connect($d->socket);
$c->watch(sid => 2, resumeAfter => $start);
my $ev = $c->events(scalar @got, 30 * $slow, sid => 2);
is_deeply([ map { $_->{event}{_id}{_data} } @$ev ], \@toks, 'catch-up from the start: the same changes, same order');
my $after = replica_pages();
cmp_ok($after, '>', $before_pause, "the standby served more pages ($after in all)");

# The main connection lost while a live read is out on the standby (its
# backend stopped): the read outlives the drop, and the reader, reconnected,
# reads the same batch again. Both answers come; the batch goes out once.
my $sb_pids = sub {
    grep {/^\d+$/} split /\n/, NvsTest::run_cmd([ 'psql', '-h', "$dir/replica/sock", '-p', $pg->port, '-U', 'postgres',
        '-d', 'nvsentinel', '-Atc', q{SELECT pid FROM pg_stat_activity WHERE application_name = 'nvsrelayd'} ]) };
$sbh = DBI->connect($sdsn, 'postgres', '', { RaiseError => 1, AutoCommit => 1 });
my @stopped = $sb_pids->();
cmp_ok(scalar @stopped, '>', 0, 'the relay has a session on the standby');
kill 'STOP', @stopped;
my @race = map { NvsTest::insert_health_event($dbh, node => "race-$_") } 1 .. 5;
Time::HiRes::sleep(0.5);
$dbh->do(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nvsrelayd'});
Time::HiRes::sleep(1.5);
kill 'CONT', @stopped;
push @race, NvsTest::insert_health_event($dbh, node => 'race-sentinel');
my @rgot;
$deadline = NvsTest::now() + 30 * $slow;
while (NvsTest::now() < $deadline && !grep { $_->{event}{documentKey}{_id} eq $race[-1] } @rgot) {
    push @rgot, @{ $live->events(100000, 0.5) };
}
my @rids = map { $_->{event}{documentKey}{_id} } @rgot;
my %rseen;
is(join(' ', grep { $rseen{$_}++ } @rids), '', 'a read that outlived the main connection: nothing twice');
is(scalar(grep { !$rseen{$_} } @race), 0, '... nothing lost');
my @rtoks = map { $_->{event}{_id}{_data} } @rgot;
is_deeply(\@rtoks, [ sort @rtoks ], '... in order');
# From the ring, a subscriber that starts before them gets them once too.
my $r2 = NvsTest::Client->connect($d->socket);
$r2->watch(sid => 3, resumeAfter => { _data => $toks[-1] });
my $ev2 = $r2->events(scalar @race + 6, 10 * $slow, sid => 3);
is_deeply([ map { $_->{event}{documentKey}{_id} } @$ev2 ], \@race, '... and once, in order, to one resuming before them');
ok($d->wait_log(qr/stage=published t=\S+ already_out=[1-9]/, 1), '... where a page did come twice (the log says so)');
is($d->stop(20), 0, 'clean stop');
is($leader->stop(20), 0, 'the leader stops cleanly');
done_testing();

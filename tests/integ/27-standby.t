#!/usr/bin/perl
# 27-standby.t - two replicas of one component share a consumer name: the
# second watches with standby, waits without events (a standby frame), and
# takes over within a second of the active one's SIGKILL in the middle of a
# stream, from the acknowledged position.  Nothing is lost, the standby
# reads nothing while the other is alive, and the only events both receive
# are those the killed one had not acknowledged.  Without standby a second
# watch still takes the name over (11601).  Each subscriber is its own
# process and logs what it received and acknowledged to a file.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use Time::HiRes ();
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 50 });
my $dbh = $pg->dbh();
my $dir = $pg->dir;
my $N   = 300;

# A subscriber process: "S time" on its standby frame, "B time token" on a
# bookmark, "E time id token" per event, "A token" once its ack is sent.
sub subscriber {
    my ($name, %w) = @_;
    my $file = "$dir/sub-$name.log";
    my $pid = fork // die "fork: $!";
    return ($pid, $file) if $pid;
    open(my $log, '>', $file) or POSIX::_exit(1);
    $log->autoflush(1);
    my $c = NvsTest::Client->connect($d->socket);
    $c->watch(consumer => 'ha-component', %w);
    while (1) {
        my $f = $c->recv(30);
        last unless $f;
        my $t = sprintf('%.6f', NvsTest::now());
        if ($f->{op} eq 'standby') {
            print $log "S $t\n";
        } elsif ($f->{op} eq 'bookmark') {
            print $log "B $t $f->{token}{_data}\n";
        } elsif ($f->{op} eq 'event') {
            print $log "E $t $f->{event}{documentKey}{_id} $f->{event}{_id}{_data}\n";
            $c->ack(1, $f->{event}{_id});
            print $log "A $f->{event}{_id}{_data}\n";
        } elsif ($f->{op} eq 'error') {
            print $log "X $t $f->{code}\n";
        }
    }
    POSIX::_exit(0);
}

sub lines {
    my ($file) = @_;
    open(my $fh, '<', $file) or return ();
    return map { chomp; [ split / / ] } <$fh>;
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = NvsTest::now() + $timeout;
    while (NvsTest::now() < $deadline) {
        return 1 if $cond->();
        Time::HiRes::sleep(0.02);
    }
    return 0;
}

my ($pa, $fa) = subscriber('a', standby => JSON::PP::true);
ok(wait_for(sub { grep { $_->[0] eq 'B' } lines($fa) }, 10), 'first replica active (no holder: standby starts at once)');
my ($pb, $fb) = subscriber('b', standby => JSON::PP::true);
ok(wait_for(sub { grep { $_->[0] eq 'S' } lines($fb) }, 10), 'second replica told it is standing by');

my $writer = fork // die "fork: $!";
if (!$writer) {
    my $w = $pg->dbh(autocommit => 0);
    for my $i (1 .. $N) {
        NvsTest::insert_health_event($w, node => "ha-$i");
        $w->commit;
        select(undef, undef, undef, 0.004 + rand 0.006);
    }
    $w->disconnect;
    POSIX::_exit(0);
}

ok(wait_for(sub { (grep { $_->[0] eq 'E' } lines($fa)) >= 100 }, 30), 'the active replica is reading');
my $killed_at = NvsTest::now();
kill 'KILL', $pa;
waitpid($pa, 0);
waitpid($writer, 0);
is($? >> 8, 0, 'writer finished');
my $ids = $dbh->selectcol_arrayref(q{SELECT id FROM health_events WHERE node_name LIKE 'ha-%' ORDER BY id});
is(scalar @$ids, $N, "$N events written");
my %want = map { $_ => 1 } @$ids;
my @la;
ok(wait_for(sub {
    @la = lines($fa);
    my %got = map { $_->[2] => 1 } grep { $_->[0] eq 'E' } @la, lines($fb);
    !grep { !$got{$_} } keys %want;
}, 30), 'every event reached one of the replicas');
kill 'TERM', $pb;
waitpid($pb, 0);

my @lb = lines($fb);
my @eva = grep { $_->[0] eq 'E' } @la;
my @evb = grep { $_->[0] eq 'E' } @lb;
my %acked_a = map { $_->[1] => 1 } grep { $_->[0] eq 'A' } @la;
my ($last_ack) = (sort map { $_->[1] } grep { $_->[0] eq 'A' } @la)[-1];
my ($standby) = grep { $_->[0] eq 'S' } @lb;
my ($took) = grep { $_->[0] eq 'B' } @lb;
ok($took, 'the standby took over');
ok(!grep({ $_->[1] < $killed_at } @evb), 'no event reached the standby while the active one lived');
my $takeover = $took ? $took->[1] - $killed_at : 99;
cmp_ok($takeover, '<', 1.0, sprintf('takeover %.3f s after the SIGKILL (under 1 s)', $takeover));
note(sprintf('takeover time %.3f s; %d events before the kill, %d after', $takeover, scalar @eva, scalar @evb));
cmp_ok($took ? $took->[2] : '', 'ge', $last_ack // '', 'the standby starts from what the killed one acknowledged');

my %in_a = map { $_->[2] => $_->[3] } @eva;
my @both = grep { exists $in_a{ $_->[2] } } @evb;
ok(!grep({ $acked_a{ $in_a{ $_->[2] } } } @both), 'no acknowledged event delivered again: only unacknowledged ones ('
    . scalar(@both) . ')');
my %seen_b;
ok(!grep({ $seen_b{ $_->[2] }++ } @evb), 'the standby got each event once');
my @toks = map { $_->[3] } @evb;
is_deeply(\@toks, [ sort @toks ], 'in order');

# --- without standby: today's takeover --------------------------------------------------
my $c1 = NvsTest::Client->connect($d->socket);
$c1->watch(consumer => 'plain');
ok($c1->recv_op('bookmark', 10), 'a plain holder');
my $c2 = NvsTest::Client->connect($d->socket);
$c2->watch(consumer => 'plain', standby => JSON::PP::true);
is(($c2->recv_op([ 'standby', 'bookmark', 'error' ], 10) // {})->{op}, 'standby', 'a standby behind it waits');
my $c3 = NvsTest::Client->connect($d->socket);
$c3->watch(consumer => 'plain');
my $e = $c1->recv_op('error', 10);
is($e && $e->{code}, 11601, 'a second plain watch interrupts the holder (11601)');
ok($c3->recv_op('bookmark', 10), 'and reads');
ok(!$c2->recv_op([ 'bookmark', 'event', 'error' ], 0.5), 'the standby still waits');
$c3->close;
ok($c2->recv_op('bookmark', 2), 'and takes over when the new holder goes');

# --- refused combinations -----------------------------------------------------------------
$c1 = NvsTest::Client->connect($d->socket);
$c1->watch(sid => 5, standby => JSON::PP::true);
$e = $c1->recv_op('error', 10);
is($e && $e->{code}, 2, 'standby without a consumer: BadValue');
$c1->watch(sid => 6, standby => 'yes', consumer => 'x');
$e = $c1->recv_op('error', 10);
is($e && $e->{code}, 14, 'standby that is no boolean: TypeMismatch');
$c1->watch(sid => 7, standby => JSON::PP::true, consumer => 'x', startAtOperationTime => '2026-01-01T00:00:00Z');
$e = $c1->recv_op('error', 10);
is($e && $e->{code}, 2, 'standby with a start position: BadValue');

done_testing();

#!/usr/bin/perl
# 98-load.t - 1000 concurrent subscribers on one daemon: every one gets every change, in
# order; connect/disconnect churn with resumption by token or durable consumer loses
# nothing; readers that stop reading are held at a bounded output and later caught up
# from PostgreSQL while the others keep receiving. The daemon's RSS is sampled all along
# and must stay under a generous bound (no timing assertions). NVS_LOAD_SIZE=long (make
# check-long) runs more churn and more events.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use POSIX ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM MSG_NOSIGNAL);
use List::Util qw(sum0);

my $N = 1000;
# Two descriptors per subscriber here and in the daemon, plus room: raise the soft limit
# (once, by re-executing under sh) when it is lower.
if (POSIX::sysconf(POSIX::_SC_OPEN_MAX()) < 2 * $N + 200 && !$ENV{NVS_LOAD_ULIMIT}) {
    $ENV{NVS_LOAD_ULIMIT} = 1;
    exec 'sh', '-c', 'ulimit -n 4096 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"', $^X, $0, @ARGV;
}
require Test::More;
Test::More->import;
require NvsTest;

my $long   = ($ENV{NVS_LOAD_SIZE} // '') eq 'long';
my $slow   = $ENV{NVS_VALGRIND} ? 8 : 1;
my $CHURN  = $long ? 20 : 4;
my $BULK   = $long ? 5000 : 1000;
my $RSS_MAX = 512 * 1024;    # kB: generous; the ring holds 1024 events and stalled output is capped

if (POSIX::sysconf(POSIX::_SC_OPEN_MAX()) < 2 * $N + 100) {
    plan(skip_all => 'cannot raise the open file limit to ' . (2 * $N + 100));
}
my $pg = NvsTest::Pg->start();
my $d  = NvsTest::Daemon->start($pg, set => { max_clients => $N + 100, ring_events => 1024, ack_flush_ms => 100 });
my $dbh = $pg->dbh();
my $sockpath = $d->socket;

my (@rss, $rss_at);
sub rss_kb {
    my ($kb) = NvsTest::slurp('/proc/' . $d->pid . '/status') =~ /^VmRSS:\s+(\d+)/m;
    push @rss, $kb // 0;
    $rss_at = NvsTest::now();
    return $kb // 0;
}

# One subscriber: socket, input buffer, tokens of the events it got, last position.
sub sub_connect {
    my ($s) = @_;
    my $sock;
    for (1 .. 50) {
        $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sockpath) and last;
        select(undef, undef, undef, 0.05);    # the listen backlog may be full for a moment
    }
    die "connect: $!" unless $sock;
    $sock->blocking(0);
    $s->{sock} = $sock;
    $s->{buf}  = '';
    $s->{started} = 0;
    my %w = (op => 'watch', sid => 1, table => 'health_events');
    if ($s->{consumer}) { $w{consumer} = $s->{consumer} }
    elsif (defined $s->{last}) { $w{resumeAfter} = { _data => $s->{last} } }
    my $f = JSON::PP->new->canonical->encode(\%w) . "\n";
    send($sock, $f, MSG_NOSIGNAL) == length $f or die "send: $!";
}

sub sub_close { my ($s) = @_; close $s->{sock} if $s->{sock}; $s->{sock} = undef }

# Reads what is there; returns the number of lines handled.
sub sub_read {
    my ($s) = @_;
    return 0 unless $s->{sock};
    my $n = 0;
    while (1) {
        my $r = sysread($s->{sock}, $s->{buf}, 262144, length $s->{buf});
        last if !defined $r && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
        if (!$r) { $s->{eof} = 1; sub_close($s); last }
    }
    while ((my $i = index($s->{buf}, "\n")) >= 0) {
        my $line = substr($s->{buf}, 0, $i + 1, '');
        $n++;
        # Only the token is needed; decoding 10^6 events in Perl would take minutes.
        if ($line =~ /^\{"op":"event","sid":1,"event":\{"_id":\{"_data":"([0-9a-f]{40})"/) {
            my $t = $1;
            if (defined $s->{last} && $t le $s->{last}) { $s->{dup}++ if $s->{seen}{$t}; $s->{order}++ unless $s->{seen}{$t} }
            $s->{seen}{$t} = 1;
            $s->{last} = $t if !defined $s->{last} || $t gt $s->{last};
            $s->{ack} = $t;
        } elsif ($line =~ /"op":"bookmark".*"_data":"([0-9a-f]{40})"/) {
            $s->{started} = 1;
            $s->{last} = $1 if !defined $s->{last} || $1 gt $s->{last};
        } elsif ($line =~ /"op":"error","code":24,/) {
            $s->{refused}++;    # max_clients: closes of other clients not processed yet
        } elsif ($line =~ /"op":"error"/) {
            push @{ $s->{errors} }, $line;
        }
    }
    if ($s->{consumer} && $s->{ack} && $s->{sock}) {
        my $f = qq({"op":"ack","sid":1,"token":{"_data":"$s->{ack}"}}\n);
        send($s->{sock}, $f, MSG_NOSIGNAL);
        delete $s->{ack};
    }
    return $n;
}

# Reads every live, non-stalled subscriber until $done->() holds or the time is up. One
# the server hung up on (refused at max_clients, or cut off at its output limit) comes
# back after a moment and resumes, as a real client would.
sub pump {
    my ($subs, $timeout, $done) = @_;
    my $deadline = NvsTest::now() + $timeout * $slow;
    while (NvsTest::now() < $deadline) {
        my $n = 0;
        $n += sub_read($_) for grep { !$_->{stalled} } @$subs;
        for my $s (grep { $_->{eof} && !$_->{stalled} } @$subs) {
            $s->{back_at} //= NvsTest::now() + 0.2;
            next if NvsTest::now() < $s->{back_at};
            delete @{$s}{qw(eof back_at)};
            $s->{reconnects}++;
            sub_connect($s);
        }
        return 1 if $done->();
        select(undef, undef, undef, 0.01) unless $n;
    }
    return $done->();
}

my @all = map { { i => $_, ($_ % 10 == 0 ? (consumer => "load-$_") : ()), seen => {} } } 0 .. $N - 1;
my $t0 = NvsTest::now();
sub_connect($_) for @all;
ok(pump(\@all, 60, sub { !grep { !$_->{started} } @all }), "$N subscribers started (" . scalar(grep { $_->{consumer} } @all)
    . ' of them durable)') or diag(scalar(grep { !$_->{started} } @all) . ' never got their bookmark');
diag(sprintf 'connected and started in %.1f s; RSS %d kB', NvsTest::now() - $t0, rss_kb());

# --- one change, a thousand deliveries ------------------------------------------------
my @ids;
sub write_events {
    my ($n, %o) = @_;
    my $w = $pg->dbh(autocommit => 0);
    for my $k (1 .. $n) {
        push @ids, NvsTest::insert_health_event($w, node => "load-$k", message => $o{big} ? ('m' x $o{big}) : undef);
        $w->commit if $k % 50 == 0;
    }
    $w->commit;
    $w->disconnect;
}
write_events(20);
my $want = sub { my ($s) = @_; keys %{ $s->{seen} } >= @ids };
ok(pump(\@all, 60, sub { !grep { !$want->($_) } @all }), 'every subscriber got all 20 changes')
    or diag(scalar(grep { !$want->($_) } @all) . ' short');
rss_kb();

# --- churn: drop and resume a fifth of them, again and again -----------------------
for my $round (1 .. $CHURN) {
    my @drop = grep { rand() < 0.2 } @all;
    sub_close($_) for @drop;
    write_events(10);
    sub_connect($_) for @drop;
    # A few more that connect and hang up at once, some mid-frame.
    for (1 .. 20) {
        my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sockpath) or next;
        send($c, (qq({"op":"watch","sid":1,"table":"health_events"}\n), '{"op":"wat')[ $_ % 2 ], MSG_NOSIGNAL);
        close $c;
    }
    pump(\@all, 60, sub { !grep { !$want->($_) } @all });
    rss_kb();
}
my @short = grep { !$want->($_) } @all;
is(scalar @short, 0, "after $CHURN rounds of churn every subscriber has all " . scalar(@ids) . ' changes');
is(scalar(grep { $_->{order} } @all), 0, 'no subscriber saw a change out of order');
is(scalar(grep { $_->{dup} && !$_->{consumer} } @all), 0, 'no duplicates for those resuming by token');
diag(sum0(map { $_->{refused} // 0 } @all) . ' connections refused at max_clients and retried') if grep { $_->{refused} } @all;
is(scalar(grep { $_->{errors} } @all), 0, 'no error frames') or diag(join "\n", map { @{ $_->{errors} } } grep { $_->{errors} } @all);

# --- stalled readers -----------------------------------------------------------------
# Keep 50 readers and 100 that stop reading; the rest leave.
my @keep = @all[ 0 .. 149 ];
sub_close($_) for @all[ 150 .. $#all ];
$_->{stalled} = 1 for @keep[ 50 .. 149 ];
my $before = scalar @ids;
my $writer = fork // die "fork: $!";
if (!$writer) { write_events($BULK, big => 2000); POSIX::_exit(0) }
my ($peak, $total) = (0);
ok(pump([ @keep[ 0 .. 49 ] ], 120, sub {
    if (NvsTest::now() - $rss_at > 0.5) { my $r = rss_kb(); $peak = $r if $r > $peak }
    if (!defined $total) {
        return 0 if waitpid($writer, POSIX::WNOHANG()) == 0;
        $total = $dbh->selectrow_array(q{SELECT count(*) FROM health_events});
    }
    return !grep { keys %{ $_->{seen} } < $total } @keep[ 0 .. 49 ];
}), "the 50 active readers got all $BULK large changes while 100 others stopped reading");
if (!defined $total) { waitpid($writer, 0); $total = $dbh->selectrow_array(q{SELECT count(*) FROM health_events}) }
diag("peak RSS with 100 stalled readers: $peak kB");
cmp_ok($peak, '<', $RSS_MAX, "RSS stays bounded with stalled readers ($peak kB < $RSS_MAX kB)")
    unless $ENV{NVS_VALGRIND};
is($d->wait_exit(0), undef, 'the daemon is still running');

# They read again: caught up from PostgreSQL (the 1024-event ring moved on), nothing lost.
$_->{stalled} = 0 for @keep;
my $ok = pump(\@keep, 180, sub { !grep { keys %{ $_->{seen} } < $total } @keep });
my $back = grep { $_->{reconnects} } @keep;
ok($ok, "the stalled readers caught up: every change, nothing lost ($back were disconnected and resumed)");
is(scalar(grep { $_->{order} } @keep), 0, 'in order');
rss_kb();
sub_close($_) for @keep;
diag('RSS samples (kB): ' . join(' ', @rss[ 0 .. ($#rss < 30 ? $#rss : 30) ]) . (@rss > 31 ? ' ...' : ''));
my $max = 0;
$max < $_ and $max = $_ for @rss;
cmp_ok($max, '<', $RSS_MAX, "RSS never above $RSS_MAX kB (max $max kB)") unless $ENV{NVS_VALGRIND};
is($d->stop(30 * $slow), 0, 'clean stop');
done_testing();

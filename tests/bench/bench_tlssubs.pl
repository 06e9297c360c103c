#!/usr/bin/perl
# bench_tlssubs.pl - many filtered subscribers over TCP+TLS for the
# benchmark's "live latency under load" phase (bench.pl): --procs processes
# each hold their share of --conns mTLS connections to nvsrelayd, each
# watching health_events through one of NVSentinel's pipelines
# (tests/pipelines/*.json, in turn), reading and dropping what arrives.
# With --nodes M each watches instead the inserts of one node (gpu-node-000
# to M-1, as bench_writer names them, in turn): an agent per node, which
# the relay has to filter for, not write to.
# Perl is enough here: these subscribers are the load, not what is timed.
#
#   bench_tlssubs.pl --port P --tls DIR --conns N [--procs K] [--ready FILE]
#                    [--seconds S] [--nodes M]
#
# DIR holds ca.crt, client.crt and client.key.  FILE is touched once every
# connection has its watch confirmed (a bookmark).  Runs until SIGTERM or S
# seconds; stdout gets one JSON summary line (connections, events, bytes).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long;
use IO::Select;
use IO::Socket::SSL qw(SSL_VERIFY_PEER);
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use NvsTest;

my %o = (procs => 4, seconds => 3600);
GetOptions(\%o, 'port=i', 'tls=s', 'conns=i', 'procs=i', 'ready=s', 'seconds=f', 'nodes=i')
    && $o{port} && $o{tls} && $o{conns}
    or die "usage: bench_tlssubs.pl --port P --tls DIR --conns N [--procs K] [--ready FILE] [--seconds S] [--nodes M]\n";
my @pipes = map { NvsTest::slurp($_) } sort glob("$NvsTest::ROOT/tests/pipelines/*.json");
die "no pipelines in tests/pipelines\n" unless @pipes;
my $J = JSON::PP->new->canonical;
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };

# One child: its connections, then read until told to stop.
sub child {
    my ($k, $n, $rfile) = @_;
    my (@s, %buf, %confirmed);
    for my $i (1 .. $n) {
        # A relay busy with the load may refuse a burst of handshakes (its
        # budget for connections not yet authenticated): try again, as a
        # component would.
        my $s;
        for my $try (1 .. 100) {
            $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $o{port}, Timeout => 30,
                SSL_verify_mode => SSL_VERIFY_PEER(), SSL_ca_file => "$o{tls}/ca.crt", SSL_hostname => 'localhost',
                SSL_cert_file => "$o{tls}/client.crt", SSL_key_file => "$o{tls}/client.key") and last;
            Time::HiRes::sleep(0.1);
        }
        $s or die "bench_tlssubs: connect: $IO::Socket::SSL::SSL_ERROR\n";
        my $pipe = $o{nodes}
            ? [ { '$match' => { operationType => 'insert',
                    'fullDocument.healthevent.nodename' => sprintf('gpu-node-%03d', ($k * $n + $i) % $o{nodes}) } } ]
            : $J->decode($pipes[ ($k * $n + $i) % @pipes ]);
        print $s $J->encode({ op => 'hello', v => 1, client => 'bench_tlssubs' }), "\n",
            $J->encode({ op => 'watch', sid => 1, table => 'HealthEvents', pipeline => $pipe }), "\n";
        $s->blocking(0);
        push @s, $s;
    }
    my $sel = IO::Select->new(@s);
    my ($events, $bytes, $ready, $dropped) = (0, 0, 0, 0);
    my $deadline = NvsTest::now() + $o{seconds};
    while (!$stop && NvsTest::now() < $deadline) {
        for my $s ($sel->can_read(0.2)) {
            # TLS: drain what OpenSSL has decrypted, not only what the socket holds.
            my $eof;
            while (1) {
                my $r = sysread($s, my $chunk, 65536);
                # The relay closed (or stopped): a socket at its end stays
                # readable, and reading it again would spin.
                $eof = 1 if defined $r && $r == 0 || !defined $r && !$!{EAGAIN} && !$!{EWOULDBLOCK};
                last unless $r;
                $bytes += $r;
                $buf{$s} .= $chunk;
            }
            if ($eof) {
                $sel->remove($s);
                close $s;
            }
            while ($buf{$s} =~ s/^([^\n]*)\n//) {
                my $l = $1;
                if    ($l =~ /^\{"op":"event"/)    { $events++ }
                elsif ($l =~ /^\{"op":"bookmark"/) { $confirmed{$s} = 1 }
                elsif ($l =~ /^\{"op":"error"/) {
                    # The relay cut this subscriber (a slow reader, typically):
                    # counted, the others go on.
                    $dropped++;
                    $sel->remove($s);
                    print STDERR "bench_tlssubs: $l\n" if $dropped <= 3;
                }
            }
        }
        if (!$ready && keys %confirmed == @s) {
            $ready = 1;
            open(my $fh, '>', $rfile) or die "$rfile: $!";
            close $fh;
        }
    }
    print $J->encode({ conns => scalar @s, confirmed => scalar(keys %confirmed), events => $events, bytes => $bytes,
        dropped => $dropped }), "\n";
    close STDOUT;    # _exit flushes nothing
    POSIX::_exit(0);
}

my $per = int(($o{conns} + $o{procs} - 1) / $o{procs});
my (@kids, @files);
for my $k (0 .. $o{procs} - 1) {
    my $n = $o{conns} - $k * $per;
    $n = $per if $n > $per;
    last if $n <= 0;
    my $f = ($o{ready} || "/tmp/bench_tlssubs.$$") . ".$k";
    unlink $f;
    my $out = "$f.out";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>', $out) or POSIX::_exit(127);
        child($k, $n, $f);
    }
    push @kids, $pid;
    push @files, $f;
}
my $deadline = NvsTest::now() + $o{seconds};
Time::HiRes::sleep(0.05) while !$stop && grep({ !-e $_ } @files) && NvsTest::now() < $deadline
    && !grep { waitpid($_, POSIX::WNOHANG()) > 0 } @kids;
if ($o{ready} && !grep { !-e $_ } @files) {
    open(my $fh, '>', $o{ready}) or die "$o{ready}: $!";
    close $fh;
}
Time::HiRes::sleep(0.1) while !$stop && NvsTest::now() < $deadline;
kill 'TERM', @kids;
waitpid($_, 0) for @kids;
my %sum = (procs => scalar @kids, conns => 0, confirmed => 0, events => 0, bytes => 0, dropped => 0);
for my $f (@files) {
    my ($l) = grep {/^\{/} split /\n/, NvsTest::slurp("$f.out");
    my $x = $l ? $J->decode($l) : {};
    $sum{$_} += $x->{$_} // 0 for qw(conns confirmed events bytes dropped);
    unlink $f, "$f.out";
}
print $J->encode(\%sum), "\n";

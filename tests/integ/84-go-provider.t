#!/usr/bin/perl
# 84-go-provider.t - the NVSentinel provider (proto/go/nvsprovider) against a
# live daemon over mutual TLS and a throwaway PostgreSQL with TLS: runs
# `go test` in proto/go/nvsprovider, which drives the provider as each of
# NVSentinel's five components does, through a relay restart (the test kills
# the daemon; this script starts it again on the same socket and port, as
# systemd would) and a PostgreSQL restart (a command given in the
# environment).  Each Go test and subtest is one TAP test here.  The
# toolchain runs offline (GOPROXY=off) with its cache in the test's directory.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my $go = (grep { -x "$_/go" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'go not found (Debian: apt-get install golang-go; tests/tools/deps.sh installs it)' unless $go;
$go .= '/go';

my $pg   = NvsTest::Pg->start();
my $dir  = $pg->dir;
my $sock = "$dir/relay.sock";
my %set  = (ack_flush_ms => 50);

# A TLS listener with client certificates, when the daemon has one.
my $port = NvsTest::free_port();
my %tcp = (listen_tcp => "127.0.0.1:$port", tls_cert_file => "$dir/tls/server.crt",
    tls_key_file => "$dir/tls/server.key", tls_ca_file => "$dir/tls/ca.crt");
my ($rc, $out) = NvsTest::run_cmd([ ($ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build") . '/nvsrelayd',
    '--config', '/dev/null', (map { ('--set', "$_=$tcp{$_}") } sort keys %tcp), '--check-config' ]);
my $have_tcp = $rc == 0;
plan skip_all => "no TCP listener in this daemon: $out" unless $have_tcp;
%set = (%set, %tcp) if $have_tcp;

my $d = NvsTest::Daemon->start($pg, socket => $sock, set => \%set);
if ($have_tcp && !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2)) {
    BAIL_OUT("listen_tcp accepted but nothing listens on $port");
}
my $pidfile = "$dir/daemon.pid";
sub write_pid { open(my $f, '>', "$pidfile.tmp") or die $!; print $f $d->pid, "\n"; close $f; rename "$pidfile.tmp", $pidfile or die $! }
write_pid();

# --- the count request, on the wire ----------------------------------------
{
    my $dbh = $pg->dbh();
    my $c = NvsTest::Client->connect($sock);
    my $gen = $c->hello('t84')->{generation};
    $c->watch(table => 'health_events');
    my $start = $c->recv_op('bookmark', 10)->{token};
    my @ids = map { NvsTest::insert_health_event($dbh, node => "count-$_") } 1 .. 3;
    my $ev = $c->events(3, 10);
    is(scalar @$ev, 3, 'count: three changes written');
    my ($first) = $dbh->selectrow_array(q{SELECT id FROM datastore_changelog WHERE record_id = ?}, undef, $ids[0]);
    $c->send({ op => 'count', table => 'HealthEvents', after => $ev->[0]{event}{_id}, id => 7 });
    my $r = $c->recv_op('count', 10);
    my ($sql) = $dbh->selectrow_array(q{SELECT count(*) FROM datastore_changelog WHERE table_name = 'health_events' AND id > ?}, undef, $first);
    is_deeply([ $r->{id}, $r->{count} ], [ 7, $sql ], "count after the first event: $sql, as SQL counts, with the request's id");
    $c->send({ op => 'count', table => 'health_events', after => $start });
    is($c->recv_op('count', 10)->{count}, $sql + 1, 'count after the watch\'s start (a batch end): all three');
    $c->send({ op => 'count', table => 'maintenance_events', after => $start });
    is($c->recv_op('count', 10)->{count}, 0, 'count of another table: 0');
    my %bad = (
        'unknown table'    => [ { table => 'nope', after => $start }, 73 ],
        'malformed token'  => [ { table => 'health_events', after => { _data => 'abc' } }, 280 ],
        'no token'         => [ { table => 'health_events' }, 280 ],
        'other generation' => [ { table => 'health_events', after => { _data => sprintf('%08x', hex($gen) ^ 1) . ('0' x 32) } }, 286 ],
        'unknown field'    => [ { table => 'health_events', after => $start, sid => 1 }, 40415 ],
        'bad id'           => [ { table => 'health_events', after => $start, id => 'x' }, 14 ],
    );
    for my $k (sort keys %bad) {
        $c->send({ op => 'count', %{ $bad{$k}[0] } });
        my $e = $c->recv_op([ 'error', 'count' ], 10) // {};
        is($e->{code}, $bad{$k}[1], "count with $k: error $bad{$k}[1]") or diag(explain($e));
    }
    $c->ping;
    ok($c->recv_op('pong', 10), 'the connection stays usable after refused counts');
    # A burst in one write: at most 16 wait for PostgreSQL at once, the
    # rest are refused with 24; every request gets exactly one answer.
    $c->send_raw(join('', map { $NvsTest::JSON->encode({ op => 'count', table => 'health_events', after => $start, id => $_ }) . "\n" } 1 .. 40));
    my %answered;
    my ($refused, $wrong) = (0, 0);
    while (keys(%answered) + $refused < 40) {
        my $f = $c->recv_op([ 'error', 'count' ], 10) or last;
        if ($f->{op} eq 'count') { $answered{ $f->{id} }++; $wrong++ if $f->{count} != $sql + 1 }
        elsif ($f->{code} == 24) { $refused++ }
        else { $wrong++; diag(explain($f)) }
    }
    is(keys(%answered) + $refused, 40, "a burst of 40 counts: 40 answers (" . keys(%answered) . " counts, $refused refused with 24)");
    cmp_ok(scalar(keys %answered), '>=', 16, 'the first 16 of the burst are counted');
    ok(!$wrong && !grep({ $_ != 1 } values %answered), 'each counted once, with the right figure');
    $c->ping;
    ok($c->recv_op('pong', 10), 'the connection stays usable after the burst');
    # Clients gone before their answers: the answers reach nobody.
    for (1 .. 5) {
        my $g = NvsTest::Client->connect($sock);
        $g->send_raw(join('', map { $NvsTest::JSON->encode({ op => 'count', table => 'health_events', after => $start }) . "\n" } 1 .. 8));
        $g->close;
    }
    $c->send({ op => 'count', table => 'health_events', after => $start, id => 99 });
    my $late = $c->recv_op('count', 10) // {};
    is_deeply([ $late->{id}, $late->{count} ], [ 99, $sql + 1 ], 'counts of clients that left are dropped; the next is answered');
    $c->close;
}

my %env = (
    %{ $pg->pgenv },
    NVSRELAY_TEST_SOCKET  => $sock,
    NVSRELAY_TEST_PSQL    => $pg->bin . '/psql',
    NVSRELAY_TEST_PIDFILE => $pidfile,
    NVSRELAY_TEST_PG_RESTART => "sh '$NvsTest::PGTMP' restart '$dir' fast",
    GOPROXY => 'off', GOFLAGS => '-mod=mod', GOENV => 'off', GOWORK => 'off', GOTELEMETRY => 'off',
    GOCACHE => "$dir/go/cache", GOPATH => "$dir/go/path", GOTMPDIR => "$dir/go/tmp", HOME => "$dir/go",
);
%env = (%env, NVSRELAY_TEST_TCP => "127.0.0.1:$port", NVSRELAY_TEST_TCP_CA => "$dir/tls/ca.crt",
    NVSRELAY_TEST_TCP_CERT => "$dir/tls/client.crt", NVSRELAY_TEST_TCP_KEY => "$dir/tls/client.key") if $have_tcp;
mkdir "$dir/go";
mkdir "$dir/go/tmp";

my $log = "$dir/go-test.log";
my $pid = fork // die "fork: $!";
if (!$pid) {
    chdir "$NvsTest::ROOT/proto/go/nvsprovider" or POSIX::_exit(127);
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>', $log) or POSIX::_exit(127);
    open(STDERR, '>&', \*STDOUT);
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
    %ENV = (%ENV, %env);
    exec $go, 'test', '-count=1', '-v', '-timeout', '200s', '.' or print STDERR "exec go: $!\n";
    POSIX::_exit(127);
}

# Restart the daemon whenever it exits, until go test is done.
my ($restarts, $status) = (0, undef);
while (1) {
    my $r = waitpid($pid, POSIX::WNOHANG());
    if ($r == $pid) { $status = $?; last }
    if (defined $d->wait_exit(0)) {
        $d = NvsTest::Daemon->start($pg, socket => $sock, set => \%set);
        write_pid();
        $restarts++;
    }
    Time::HiRes::sleep(0.05);
}

my $text = NvsTest::slurp($log);
# go test -v: "=== RUN   TestX", its log lines indented, "--- PASS: TestX (0.01s)".
my (%result, %detail, $cur);
for (split /\n/, $text) {
    if (/^=== (?:RUN|CONT)\s+(\S+)/) { $cur = $1; next }
    if (/^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)/) { $result{$2} = [ $1, $3 ]; $cur = $2; next }
    $detail{$cur} .= "$_\n" if defined $cur && /^\s{4}/;
}
for my $t (sort keys %result) {
    my ($res, $secs) = @{ $result{$t} };
    my $detail = $detail{$t} // '';
    if ($res eq 'SKIP') {
        $detail =~ s/^\s+\S+?:\d+: //mg;
        $detail =~ s/\n+\z//;
        $detail =~ s/\n/; /g;
        SKIP: { skip("$t: $detail", 1) }
        next;
    }
    ok($res eq 'PASS', "go $t (${secs}s)") or diag($detail);
}
ok(scalar(keys %result) >= 15, 'go test ran the package\'s tests (' . scalar(keys %result) . ')');
for my $t (qw(TestComponents TestEventMapsFromRelay TestUnprocessedCount TestMoveOverKeepsPosition TestRefusedPipelineFailsAtStart)) {
    is(($result{$t} // ['missing'])->[0], 'PASS', "$t ran and passed");
}
is(NvsTest::wait_code($status), 0, 'go test passed') or diag($text);

# The NVSentinel patch carries a copy of the client and the provider: it must
# be this one (proto/go/nvsentinel/mkpatch.sh refreshes it).
my ($patch) = glob("$NvsTest::ROOT/proto/go/nvsentinel/0001-*.patch");
my (%added, $file);
for (split /\n/, NvsTest::slurp($patch)) {
    if (/^\+\+\+ b\/(\S+)/) { $file = $1; next }
    if (/^diff --git /) { undef $file; next }
    $added{$file} .= substr($_, 1) . "\n" if defined $file && /^\+/;
}
for my $f (qw(nvsrelay.go nvsprovider/provider.go nvsprovider/event.go nvsprovider/pipeline.go)) {
    my $want = NvsTest::slurp("$NvsTest::ROOT/proto/go/$f");
    $want =~ s{"nvsrelay\.local/nvsrelay"}{"github.com/nvidia/nvsentinel/store-client/pkg/nvsrelay"}g;
    ok(defined $added{"store-client/pkg/nvsrelay/$f"} && $added{"store-client/pkg/nvsrelay/$f"} eq $want,
        "the patch's copy of $f is current");
}
ok($restarts >= 1, "the daemon was restarted for TestComponents ($restarts)")
    if ($result{TestComponents} // [''])->[0] eq 'PASS';
is($d->stop, 0, 'daemon exits 0');

done_testing();

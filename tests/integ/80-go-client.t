#!/usr/bin/perl
# 80-go-client.t - the Go client package (proto/go) against a live daemon:
# starts a throwaway PostgreSQL and nvsrelayd, then runs `go test` in
# proto/go with the socket, psql and the daemon's pid file in its
# environment (see proto/go/nvsrelay_test.go; the nvsprovider package has
# its own, 84-go-provider.t).  Each Go test is one TAP test
# here.  While go test runs, a daemon that exits (TestDaemonRestart kills it)
# is started again on the same socket, as systemd would.  The toolchain runs
# offline (GOPROXY=off) with its cache and GOPATH in the test's directory.
# When the daemon has a TCP listener, TestTCP also connects over TLS.
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
# max_frame_bytes 1 MiB: TestEventOverMaxFrame gets a larger event frame.
my %set  = (ack_flush_ms => 50, max_frame_bytes => 1048576);

# A TLS listener with client certificates, when the daemon has one.
my $port = NvsTest::free_port();
my %tcp = (listen_tcp => "127.0.0.1:$port", tls_cert_file => "$dir/tls/server.crt",
    tls_key_file => "$dir/tls/server.key", tls_ca_file => "$dir/tls/ca.crt");
my ($rc, $out) = NvsTest::run_cmd([ ($ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build") . '/nvsrelayd',
    '--config', '/dev/null', (map { ('--set', "$_=$tcp{$_}") } sort keys %tcp), '--check-config' ]);
my $have_tcp = $rc == 0;
diag("no TCP listener in this daemon, TestTCP will skip: $out") unless $have_tcp;
%set = (%set, %tcp) if $have_tcp;

my $d = NvsTest::Daemon->start($pg, socket => $sock, set => \%set);
if ($have_tcp && !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2)) {
    diag("listen_tcp accepted but nothing listens on $port; TestTCP will skip");
    $have_tcp = 0;
}
my $pidfile = "$dir/daemon.pid";
sub write_pid { open(my $f, '>', "$pidfile.tmp") or die $!; print $f $d->pid, "\n"; close $f; rename "$pidfile.tmp", $pidfile or die $! }
write_pid();

my %env = (
    %{ $pg->pgenv },
    NVSRELAY_TEST_SOCKET  => $sock,
    NVSRELAY_TEST_PSQL    => $pg->bin . '/psql',
    NVSRELAY_TEST_PIDFILE => $pidfile,
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
    chdir "$NvsTest::ROOT/proto/go" or POSIX::_exit(127);
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>', $log) or POSIX::_exit(127);
    open(STDERR, '>&', \*STDOUT);
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
    %ENV = (%ENV, %env);
    exec $go, 'test', '-count=1', '-v', '-timeout', '150s', '.' or print STDERR "exec go: $!\n";
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
ok(scalar(keys %result) >= 8, 'go test ran the package\'s tests (' . scalar(keys %result) . ')');
is(NvsTest::wait_code($status), 0, 'go test passed') or diag($text);
ok($restarts >= 1, "the daemon was restarted for TestDaemonRestart ($restarts)")
    if ($result{TestDaemonRestart} // [''])->[0] eq 'PASS';
is($d->stop, 0, 'daemon exits 0');

done_testing();

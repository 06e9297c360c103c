#!/usr/bin/perl
# 81-libnvsrelay.t - the C client library and `nvsrelay watch` built on it,
# against a live daemon: events printed as the server sent them, --ack with
# a durable consumer (the stored position is the last printed event),
# --no-ack, --resume-after, --start-at, --before, --pipeline as text and
# @file, errors (286 from a lost position, a refused pipeline, bad usage),
# and --tcp over TLS with client certificates and a bearer token, including
# the refusals.  Then the library as a user gets it: `make install-lib` into
# a scratch root, the example event-loop program (proto/example.c) built
# with pkg-config against the shared and the static library and run over the
# Unix socket and TCP, under valgrind when the build has no sanitizer; and
# against a scripted server that cuts frames anywhere, sends an error right
# before closing, sends garbage or never says hello.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use NvsTest;

my $build = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
my $cli   = "$build/nvsrelay";
my $pg    = NvsTest::Pg->start();
my $dir   = $pg->dir;
my $dbh   = $pg->dbh();
my %set   = (ack_flush_ms => 50);

# TCP: TLS with client certificates and a token, when the daemon has a listener.
my $port = NvsTest::free_port();
my $token = join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
{ open(my $f, '>', "$dir/token") or die $!; print $f "$token\n"; close $f; chmod 0600, "$dir/token"; }
{ open(my $f, '>', "$dir/wrong-token") or die $!; print $f "x$token\n"; close $f; }
my %tcp = (listen_tcp => "127.0.0.1:$port", tls_cert_file => "$dir/tls/server.crt",
    tls_key_file => "$dir/tls/server.key", tls_ca_file => "$dir/tls/ca.crt", auth_token_file => "$dir/token");
my ($crc, $cout) = NvsTest::run_cmd([ "$build/nvsrelayd", '--config', '/dev/null',
    (map { ('--set', "$_=$tcp{$_}") } sort keys %tcp), '--check-config' ]);
my $no_tcp = $crc == 0 ? '' : "the daemon has no TCP listener yet (--check-config: " . (split /\n/, $cout)[0] . ')';
%set = (%set, %tcp) unless $no_tcp;
my $d = NvsTest::Daemon->start($pg, set => \%set);
$no_tcp ||= "listen_tcp accepted but nothing listens on 127.0.0.1:$port"
    unless $no_tcp || IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2);
my @unix = ('--socket', $d->socket);

# --- helpers ------------------------------------------------------------------

my $nw = 0;

# Starts `nvsrelay watch ARGS --bookmarks` in the background and waits until its
# subscription is confirmed (the first bookmark on stderr) or it exited.
sub spawn {
    my (@args) = @_;
    my $n = ++$nw;
    my $w = { out => "$dir/watch$n.out", err => "$dir/watch$n.err", args => "@args" };
    $w->{pid} = fork // die "fork: $!";
    if (!$w->{pid}) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $w->{out}) or POSIX::_exit(127);
        open(STDERR, '>', $w->{err}) or POSIX::_exit(127);
        exec $cli, 'watch', @args, '--bookmarks' or POSIX::_exit(127);
    }
    my $deadline = NvsTest::now() + 15;
    while (NvsTest::now() < $deadline) {
        last if NvsTest::slurp($w->{err}) =~ /"op":"bookmark"/;
        if (waitpid($w->{pid}, POSIX::WNOHANG()) == $w->{pid}) { $w->{status} = $?; last }
        Time::HiRes::sleep(0.02);
    }
    return $w;
}

# Waits for the watcher to exit (TERM after $timeout seconds): (exit code, [events], stderr).
sub finish {
    my ($w, $timeout) = @_;
    my $deadline = NvsTest::now() + ($timeout // 15);
    while (!defined $w->{status}) {
        if (waitpid($w->{pid}, POSIX::WNOHANG()) == $w->{pid}) { $w->{status} = $?; last }
        if (NvsTest::now() > $deadline) { kill 'TERM', $w->{pid}; waitpid($w->{pid}, 0); $w->{status} = $?; $w->{killed} = 1; last }
        Time::HiRes::sleep(0.02);
    }
    my @ev = map { $NvsTest::JSON->decode($_) } grep {length} split /\n/, NvsTest::slurp($w->{out});
    return (NvsTest::wait_code($w->{status}), \@ev, NvsTest::slurp($w->{err}));
}

# Runs `nvsrelay watch ARGS` to the end: (exit code, stdout, stderr).
sub watch_run {
    my (@args) = @_;
    my $n = ++$nw;
    my ($rc, $out) = NvsTest::run_cmd([ $cli, 'watch', @args ], "$dir/run$n.err");
    return ($rc, $out, NvsTest::slurp("$dir/run$n.err"));
}

sub ins { NvsTest::insert_health_event($dbh, @_) }
sub rid { $_[0]{documentKey}{_id} }
sub tok { $_[0]{_id}{_data} }
sub stored {
    my ($consumer) = @_;
    my ($t) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = ?}, undef, $consumer);
    return $t // '';
}
sub wait_stored {
    my ($consumer, $want) = @_;
    my $deadline = NvsTest::now() + 10;
    Time::HiRes::sleep(0.05) while stored($consumer) lt $want && NvsTest::now() < $deadline;
    return stored($consumer);
}

# --- events as the server sent them ---------------------------------------------

my $w = spawn(@unix, '--table', 'HealthEvents', '--count', 2, '--timeout', 15);
my @ids = (ins(node => 'cli-1'), ins(node => 'cli-2', fatal => 0));
my ($rc, $ev, $err) = finish($w);
is($rc, 0, '--count 2: exit 0 after two events') or diag($err);
is_deeply([ map { rid($_) } @$ev ], \@ids, 'both inserts, in commit order');
is_deeply([ map { $_->{operationType} } @$ev ], [qw(insert insert)], 'operationType');
is($ev->[0]{fullDocument}{healthevent}{nodeName}, 'cli-1', 'fullDocument carried through');
my $raw = (split /\n/, NvsTest::slurp($w->{out}))[0];
like($raw, qr/^\{"_id":\{"_data":"[0-9a-f]{40}"\},"operationType":"insert"/, 'one event object per line, as sent');
my @first = @$ev;

# --- --ack with a durable consumer, --no-ack, --resume-after ---------------------

$w = spawn(@unix, '--consumer', 'cli-durable', '--count', 3, '--timeout', 15);
my @ack_ids = map { ins(node => "ack-$_") } 1 .. 4;
($rc, $ev, $err) = finish($w);
is($rc, 0, '--consumer --count 3') or diag($err);
is_deeply([ map { rid($_) } @$ev ], [ @ack_ids[0 .. 2] ], 'three events');
my $third = tok($ev->[2]);
my $stored3 = wait_stored('cli-durable', $third);
cmp_ok($stored3, 'ge', $third, '--consumer implies --ack: the stored position reached the last printed event');

($rc, my $out, $err) = watch_run(@unix, '--consumer', 'cli-durable', '--no-ack', '--count', 1, '--timeout', 10);
is($rc, 0, '--no-ack run') or diag($err);
my $e = $NvsTest::JSON->decode((split /\n/, $out)[0] // '{}');
is(rid($e), $ack_ids[3], 'resumes after the acknowledged event');
Time::HiRes::sleep(0.3);
cmp_ok($stored3, 'lt', tok($e), 'but not the fourth, which was never printed');
is(stored('cli-durable'), $stored3, '--no-ack leaves the stored position alone');

($rc, $out, $err) = watch_run(@unix, '--consumer', 'cli-durable', '--ack', '--count', 1, '--timeout', 10);
$e = $NvsTest::JSON->decode((split /\n/, $out)[0] // '{}');
is(rid($e), $ack_ids[3], 'so the same event comes again');
cmp_ok(wait_stored('cli-durable', tok($e)), 'ge', tok($e), '--ack moves it');

($rc, $out, $err) = watch_run(@unix, '--resume-after', tok($first[0]), '--count', 1, '--timeout', 10);
$e = $NvsTest::JSON->decode((split /\n/, $out)[0] // '{}');
is(rid($e), $ids[1], '--resume-after TOKEN starts after it');

# --- --start-at ---------------------------------------------------------------------

# The stream starts at the last tick at or before the time (PROTOCOL.md), so
# an earlier row of that batch may come too, but nothing written after the
# time may be missing.
my $before = ins(node => 'before-start');
Time::HiRes::sleep(0.2);
my ($t0) = $dbh->selectrow_array(q{SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
my @after = map { ins(node => "after-start-$_") } 1 .. 2;
($rc, $out, $err) = watch_run(@unix, '--start-at', $t0, '--timeout', 1.5);
is($rc, 0, "--start-at $t0") or diag($err);
my @sa = map { rid($NvsTest::JSON->decode($_)) } split /\n/, $out;
is_deeply([ @sa[-2, -1] ], \@after, '--start-at: the changes written after the time, in order');
ok(!grep({ my $id = $_; $id ne $before && !grep { $_ eq $id } @after } @sa),
    'and at most an earlier one of the same batch (' . scalar(@sa) . ' events)');
($rc, $out, $err) = watch_run(@unix, '--start-at', 'yesterday', '--timeout', 5);
is($rc, 1, '--start-at with a bad time: exit 1');
like($err, qr/server error 2 BadValue: startAtOperationTime/, 'the server says why');

# --- --before ------------------------------------------------------------------------

$w = spawn(@unix, '--before', '--count', 1, '--timeout', 15);
$dbh->do(q{UPDATE health_events SET document = jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"') WHERE id = ?},
    undef, $ids[0]);
($rc, $ev, $err) = finish($w);
is($ev->[0]{operationType}, 'update', '--before: an update');
is($ev->[0]{fullDocumentBeforeChange}{healtheventstatus}{nodequarantined}, undef, 'with the document before the change');
is($ev->[0]{updateDescription}{updatedFields}{'healtheventstatus.nodequarantined'}, 'Quarantined', 'and what changed');

# --- --pipeline ----------------------------------------------------------------------

my $fatal_only = '[{"$match": {"operationType": "insert", "fullDocument.healthevent.isfatal": true}}]';
($rc, $out, $err) = watch_run(@unix, '--pipeline', $fatal_only, '--timeout', 1);
my $no_filter = $err =~ /not supported/ ? "the daemon does not filter yet ($err)" : '';
$no_filter =~ s/\n//g;
SKIP: {
    skip($no_filter, 4) if $no_filter;
    open(my $f, '>', "$dir/pipeline.json") or die $!;
    print $f "[\n  {\"\$match\": {\"fullDocument.healthevent.nodeName\": {\"\$in\": [\"pf-2\", \"pf-3\"]}}}\n]\n";
    close $f;
    my $w1 = spawn(@unix, '--pipeline', $fatal_only, '--count', 2, '--timeout', 15);
    my $w2 = spawn(@unix, '--pipeline', "\@$dir/pipeline.json", '--count', 2, '--timeout', 15);
    my @pf = map { ins(node => "pf-$_", fatal => $_ % 2) } 0 .. 3;
    ($rc, $ev, $err) = finish($w1);
    is_deeply([ map { rid($_) } @$ev ], [ @pf[1, 3] ], '--pipeline JSON: only the fatal inserts') or diag($err);
    ($rc, $ev, $err) = finish($w2);
    is_deeply([ map { rid($_) } @$ev ], [ @pf[2, 3] ], '--pipeline @file: the pipeline read from the file') or diag($err);
    ($rc, $out, $err) = watch_run(@unix, '--pipeline', '[{"$match": {"a": {"$regex": "x"}}}]', '--timeout', 5);
    is($rc, 1, 'an unknown operator: exit 1');
    like($err, qr/server error \d+ \w+:/, 'refused by the server at watch time');
}
($rc, $out, $err) = watch_run(@unix, '--pipeline', '[{"$match": ', '--timeout', 1);
is($rc, 64, 'a pipeline that is not JSON: exit 64');
like($err, qr/pipeline is not valid JSON/, 'said before anything is sent');
($rc, $out, $err) = watch_run(@unix, '--pipeline', '{"$match": {}}', '--timeout', 1);
is($rc, 64, 'a pipeline that is not an array: exit 64');
($rc, $out, $err) = watch_run(@unix, '--pipeline', "\@$dir/no-such-file", '--timeout', 1);
is($rc, 64, '--pipeline @missing-file: exit 64');
like($err, qr/cannot read .*no-such-file/, 'naming the file');

# --- errors ---------------------------------------------------------------------------

my $gen = substr(tok($first[0]), 0, 8);
($rc, $out, $err) = watch_run(@unix, '--resume-after', $gen . ('0' x 32), '--timeout', 10);
is($rc, 1, 'a position older than the history: exit 1');
like($err, qr/server error 286 ChangeStreamHistoryLost: .* \(last position [0-9a-f]{40}\)/, 'with the 286 error and the last position');
($rc, $out, $err) = watch_run(@unix, '--resume-after', 'zz', '--timeout', 10);
like($err, qr/server error 280 ChangeStreamFatalError/, 'a malformed token: 280');
($rc, $out, $err) = watch_run('--socket', "$dir/none.sock", '--timeout', 1);
is($rc, 1, 'no daemon: exit 1');
like($err, qr/cannot connect to .*none\.sock/, 'cannot connect, naming the socket');
($rc, $out, $err) = watch_run('--bogus');
is($rc, 64, 'unknown option: exit 64');
($rc, $out, $err) = watch_run('--count', 'many');
is($rc, 64, 'bad --count: exit 64');
($rc, $out, $err) = watch_run(@unix, '--cacert', "$dir/tls/ca.crt");
is($rc, 64, 'TLS options without --tcp: exit 64');
($rc, $out, $err) = watch_run('--tcp', '::1:80');
is($rc, 64, 'an IPv6 address without brackets: exit 64');
($rc, $out) = NvsTest::run_cmd([ $cli, 'frobnicate' ]);
is($rc, 64, 'unknown subcommand: exit 64');
($rc, $out) = NvsTest::run_cmd([ $cli, '--help' ]);
like($out, qr/^  --pipeline JSON\|\@FILE /m, '--help lists --pipeline');
like($out, qr/^  --start-at TIME /m, '--start-at');
like($out, qr/^  --ack /m, '--ack');
like($out, qr/^  --tcp HOST:PORT /m, 'and --tcp');

# --- TCP with TLS ------------------------------------------------------------------------

my @tls = ('--tcp', "127.0.0.1:$port", '--cacert', "$dir/tls/ca.crt", '--cert', "$dir/tls/client.crt",
    '--key', "$dir/tls/client.key");
SKIP: {
    skip($no_tcp, 9) if $no_tcp;
    $w = spawn(@tls, '--token-file', "$dir/token", '--count', 2, '--timeout', 15);
    my @tids = map { ins(node => "tcp-$_") } 1 .. 2;
    ($rc, $ev, $err) = finish($w);
    is($rc, 0, '--tcp with a client certificate and the token') or diag($err);
    is_deeply([ map { rid($_) } @$ev ], \@tids, 'events over TLS');

    ($rc, $out, $err) = watch_run('--tcp', "localhost:$port", @tls[2 .. $#tls], '--token-file', "$dir/token", '--timeout', 1);
    is($rc, 0, 'the server name localhost verifies too') or diag($err);
    ($rc, $out, $err) = watch_run(@tls, '--token-file', "$dir/wrong-token", '--timeout', 5);
    is($rc, 1, 'a wrong token: exit 1');
    like($err, qr/server error 18 AuthenticationFailed/, 'AuthenticationFailed');
    ($rc, $out, $err) = watch_run(@tls[0 .. 3], '--token-file', "$dir/token", '--timeout', 5);
    is($rc, 1, 'no client certificate: refused');
    like($err, qr/alert certificate required|handshake/, 'with the TLS reason') or diag($err);
    ($rc, $out, $err) = watch_run('--tcp', "127.0.0.1:$port", '--cacert', "$dir/tls/wrong-ca.crt", @tls[4 .. $#tls],
        '--token-file', "$dir/token", '--timeout', 5);
    like($err, qr/certificate verification failed/, 'a server certificate from another CA is refused');
    ($rc, $out, $err) = watch_run(@tls, '--server-name', 'relay.example', '--token-file', "$dir/token", '--timeout', 5);
    like($err, qr/certificate verification failed: hostname mismatch/, '--server-name that the certificate lacks is refused');
}

# --- the installed library ------------------------------------------------------------

my $root = "$dir/root";
my $san  = $ENV{NVSRELAY_SANITIZE} // '';
($rc, $out) = NvsTest::run_cmd([ 'make', '-s', '-C', $NvsTest::ROOT, 'install-lib', "DESTDIR=$root", 'PREFIX=/usr',
    $san ? "SANITIZE=$san" : () ]);
is($rc, 0, 'make install-lib') or diag($out);
ok(-f "$root/usr/include/nvsrelay.h" && -f "$root/usr/lib/libnvsrelay.a" && -f "$root/usr/lib/libnvsrelay.so.0"
    && readlink("$root/usr/lib/libnvsrelay.so") eq 'libnvsrelay.so.0', 'header, static and shared library, dev symlink');
my $pc = NvsTest::slurp("$root/usr/lib/pkgconfig/nvsrelay.pc");
like($pc, qr/^prefix=\/usr$/m, 'nvsrelay.pc has the prefix');
like($pc, qr/^Version: \d+\.\d+\.\d+$/m, 'and the version');
($rc, $out) = NvsTest::run_cmd([ 'readelf', '-d', "$root/usr/lib/libnvsrelay.so.0" ]);
like($out, qr/SONAME.*\[libnvsrelay\.so\.0\]/, 'soname libnvsrelay.so.0');
($rc, $out) = NvsTest::run_cmd([ 'nm', '-D', '--defined-only', "$root/usr/lib/libnvsrelay.so.0" ]);
my @exported = grep { /^\w+$/ } map { (split ' ')[-1] } grep { / T / } split /\n/, $out;
is_deeply([ grep { !/^nvsrelay_/ } @exported ], [], 'the shared library exports only nvsrelay_* (' . scalar(@exported) . ' functions)');
($rc, $out) = NvsTest::run_cmd([ 'nm', '-g', '--defined-only', "$root/usr/lib/libnvsrelay.a" ]);
is_deeply([ grep { / T / && !/ T nvsrelay_/ } split /\n/, $out ], [], 'the static library too');

local $ENV{PKG_CONFIG_PATH} = "$root/usr/lib/pkgconfig";
local $ENV{PKG_CONFIG_SYSROOT_DIR} = $root;
my @sanflags = $san ? ("-fsanitize=$san") : ();
my @cflags = split ' ', `pkg-config --cflags nvsrelay`;
($rc, $out) = NvsTest::run_cmd([ 'cc', '-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Werror', @sanflags, @cflags,
    "$NvsTest::ROOT/proto/example.c", '-o', "$dir/example-shared", split ' ', `pkg-config --libs nvsrelay` ]);
is($rc, 0, 'example.c builds against the shared library with pkg-config') or diag($out);
($rc, $out) = NvsTest::run_cmd([ 'cc', '-std=c11', '-Wall', '-Werror', @sanflags, @cflags, "$NvsTest::ROOT/proto/example.c",
    '-o', "$dir/example-static", "$root/usr/lib/libnvsrelay.a", split ' ', `pkg-config --static --libs nvsrelay | sed 's/-lnvsrelay//'` ]);
is($rc, 0, 'and against the static one (pkg-config --static)') or diag($out);
($rc, $out) = NvsTest::run_cmd([ 'readelf', '-d', "$dir/example-static" ]);
unlike($out, qr/libnvsrelay/, 'the static build needs no libnvsrelay.so');

my $valgrind = !$san && -x '/usr/bin/valgrind';
my @vg = $valgrind ? ('valgrind', '-q', '--error-exitcode=99', '--leak-check=full',
    '--errors-for-leak-kinds=definite,indirect,possible', '--show-leak-kinds=definite,indirect,possible') : ();

# Runs the example in the background, waits for "watching", writes rows, checks the output.
sub example {
    my ($name, $bin, $insert_prefix, @args) = @_;
    my $outf = "$dir/$name.out";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $outf) or POSIX::_exit(127);
        open(STDERR, '>&', \*STDOUT);
        local $ENV{LD_LIBRARY_PATH} = "$root/usr/lib";
        exec @vg, $bin, @args or POSIX::_exit(127);
    }
    my $deadline = NvsTest::now() + 30;
    Time::HiRes::sleep(0.05) until NvsTest::slurp($outf) =~ /^watching /m || NvsTest::now() > $deadline
        || waitpid($pid, POSIX::WNOHANG()) == $pid;
    my @want = map { ins(node => "$insert_prefix-$_") } 1 .. 3;
    my ($got_rc) = (undef);
    while (NvsTest::now() < $deadline + 30) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $got_rc = NvsTest::wait_code($?); last }
        Time::HiRes::sleep(0.05);
    }
    if (!defined $got_rc) { kill 'KILL', $pid; waitpid($pid, 0); $got_rc = -1 }
    my $text = NvsTest::slurp($outf);
    is($got_rc, 0, "$name: exit 0" . ($valgrind ? ' under valgrind (no errors, no leaks)' : '')) or diag($text);
    my @lines = grep { /^insert [0-9a-f]{40}$/ } split /\n/, $text;
    is(scalar @lines, 3, "$name: three events through the event-loop API");
    like($text, qr/^done 3$/m, "$name: done");
    return [ map { (split ' ')[1] } @lines ];
}

my $toks = example('example-shared', "$dir/example-shared", 'ex-shared', 'unix', $d->socket, 3, 'example-consumer');
cmp_ok(wait_stored('example-consumer', $toks->[2]), 'ge', $toks->[2], 'its acknowledgements move the consumer position');
example('example-static', "$dir/example-static", 'ex-static', 'unix', $d->socket, 3);
SKIP: {
    skip($no_tcp, 3) if $no_tcp;
    example('example-tcp', "$dir/example-static", 'ex-tcp', 'tcp', 'localhost', $port, "$dir/tls/ca.crt",
        "$dir/tls/client.crt", "$dir/tls/client.key", $token, 3);
}

# --- the library against a scripted server ----------------------------------------------
# What a daemon does not do on purpose: frames cut into pieces, an error frame
# right before the connection closes, a malformed frame, a hello that never comes.

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);

# Serves one connection on a fresh socket: answers hello (unless no_hello),
# reads the watch, then writes each element of @script (a string, or a number
# of seconds to pause) and closes.  Returns the example's (exit code, output).
sub scripted {
    my ($name, %o) = @_;
    my $path = "$dir/fake-$name.sock";
    my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $path, Listen => 1) or die "listen $path: $!";
    my $srv = fork // die "fork: $!";
    if (!$srv) {
        my $c = $l->accept or POSIX::_exit(1);
        $c->autoflush(1);
        my $hello = <$c>;
        POSIX::_exit(2) unless $hello && $hello =~ /"op":"hello"/;
        if ($o{no_hello}) { sleep 10; POSIX::_exit(0) }
        print $c qq({"op":"hello","v":1,"server":"fake","generation":"0000000a","maxFrameBytes":1048576}\n);
        my $watch = <$c>;
        for my $step (@{ $o{script} }) {
            if ($step =~ /^[\d.]+$/) { Time::HiRes::sleep($step) } else { print $c $step }
        }
        Time::HiRes::sleep(0.2);
        close $c;
        POSIX::_exit(0);
    }
    close $l;
    my ($rc, $out) = NvsTest::run_cmd([ 'env', "LD_LIBRARY_PATH=$root/usr/lib", @vg, "$dir/example-shared", 'unix', $path, 5 ]);
    kill 'TERM', $srv;
    waitpid($srv, 0);
    return ($rc, $out);
}

my $T1 = '0000000a0000000000000005000000000000000b';
my $event = qq({"op":"event","sid":7,"event":{"_id":{"_data":"$T1"},"operationType":"delete","fullDocument":null,"x":"}\\"{"}}\n);
my ($frc, $fout) = scripted('split', script => [
    qq({"op":"bookmark","sid":7,"token":{"_data":"${T1}"}}\r\n\n),
    substr($event, 0, 10), 0.1, substr($event, 10, 30), 0.1, substr($event, 40) . qq({"op":"pong"}\n{"op":"news","sid":7}\n{"op":"ev),
    0.1, substr($event, 9),
    qq({"op":"error","sid":7,"code":286,"codeName":"ChangeStreamHistoryLost","message":"gone","token":{"_data":"$T1"}}\n),
]);
is($frc, 2, 'scripted server: the error frame ends the example (exit 2)') or diag($fout);
like($fout, qr/^watching $T1\ndelete $T1\ndelete $T1\nerror 286 ChangeStreamHistoryLost: gone$/m,
    'frames cut anywhere, CRLF, empty lines and unknown ops are handled; the error arrives before the close');
($frc, $fout) = scripted('garbage', script => ["not json\n"]);
is($frc, 1, 'a malformed server frame fails the connection');
like($fout, qr/the server sent a malformed frame: frame is not JSON/, 'and says so');
($frc, $fout) = scripted('close', script => [ qq({"op":"bookmark","sid":7,"token":{"_data":"$T1"}}\n{"op":"event","sid":7) ]);
is($frc, 1, 'a connection closed mid-frame fails');
like($fout, qr/watching $T1\n.*connection closed by the server/s, 'as closed by the server');
($frc, $fout) = scripted('silent', no_hello => 1);
is($frc, 1, 'no hello within the timeout: connecting fails');
like($fout, qr/connect: no hello from the server in time/, 'and says so');

is($d->stop, 0, 'daemon exits 0');
done_testing();

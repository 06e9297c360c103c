# NvsTest - harness for the TAP integration tests in tests/integ/*.t (run by prove from
# `make check`). It owns three things, each torn down however a test ends:
#   NvsTest::Pg      a throwaway TLS PostgreSQL cluster per test (tests/tools/pgtmp.sh)
#   NvsTest::Daemon  an nvsrelayd process wired to that cluster
#   NvsTest::Client  an NDJSON protocol client on the daemon's Unix socket
# plus helpers that write health events the way NVSentinel does.
# Debian-packaged Perl only (DBI, DBD::Pg, JSON::PP, core modules).
#
# Everything a test creates lives in one short directory (/tmp/nvs.XXXXXX): the cluster,
# certificates, daemon sockets and logs. It is removed at the end; NVS_KEEP=1 keeps it
# (server stopped) for a post-mortem. When a test fails, the tails of the daemon and
# server logs are printed as TAP diagnostics.
package NvsTest;

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Scalar::Util qw(weaken);
use Time::HiRes ();

our $ROOT  = abs_path(dirname(__FILE__) . '/../..');
our $PGTMP = "$ROOT/tests/tools/pgtmp.sh";
# canonical: the bytes we send are stable, so tests can compare them.
our $JSON = JSON::PP->new->utf8->canonical;

# Live objects, weak so that going out of scope still stops them early.
my (%LIVE_PG, %LIVE_DAEMON);

# A die outside any eval, or a signal, ends the test. File-scope objects are destroyed
# before END runs, so remember it here: their teardown then prints the log tails.
our $DYING = 0;
$SIG{__DIE__} = sub { $DYING = 1 if defined $^S && !$^S } unless $SIG{__DIE__};

# A signal would skip END and leave servers behind; turn it into an exit.
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub { $DYING = 1; exit(128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1)) }
        if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
}

END {
    my $failed = $? != 0 || $DYING;
    local ($?, $!, $@);    # teardown must not change the test's exit status
    if (!$failed && $INC{'Test/Builder.pm'}) {
        $failed = !Test::Builder->new->is_passing;
    }
    $_->{failed} = $failed for grep {defined} values %LIVE_PG;
    $_->stop for grep {defined} values %LIVE_DAEMON;
    $_->stop for grep {defined} values %LIVE_PG;
}

sub now { Time::HiRes::time() }

sub slurp {
    my ($path) = @_;
    open(my $fh, '<', $path) or return '';
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

sub tail {
    my ($path, $n) = @_;
    my @l = split /\n/, slurp($path);
    splice(@l, 0, @l - $n) if @l > $n;
    return join("\n", @l);
}

sub diag {
    my ($msg) = @_;
    if ($INC{'Test/Builder.pm'}) { Test::Builder->new->diag($msg) }
    else                         { print STDERR map {"# $_\n"} split /\n/, $msg }
}

# Runs a command (list form, no shell), stdin from /dev/null.
# Returns (exit code, stdout+stderr) or, with $errfile, (exit code, stdout) and stderr to $errfile.
sub run_cmd {
    my ($cmd, $errfile) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        if (defined $errfile) { open(STDERR, '>', $errfile) }
        else                  { open(STDERR, '>&', \*STDOUT) }
        exec {$cmd->[0]} @$cmd or print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh>;
    close($fh);
    return (wait_code($?), defined $out ? $out : '');
}

# Wait status -> shell-style code: exit code, or 128 + signal number.
sub wait_code { my ($st) = @_; return ($st & 127) ? 128 + ($st & 127) : $st >> 8 }

my %ACTION_NAME = (
    0 => 'NONE', 2 => 'COMPONENT_RESET', 5 => 'CONTACT_SUPPORT', 6 => 'RUN_FIELDDIAG',
    15 => 'RESTART_VM', 24 => 'RESTART_BM', 25 => 'REPLACE_VM', 26 => 'RUN_DCGMEUD',
    27 => 'CUSTOM', 99 => 'UNKNOWN',
);

# A TCP port on 127.0.0.1 that was free a moment ago (for http_listen and the like).
sub free_port {
    require IO::Socket::INET;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1) or die $!;
    my $port = $l->sockport;
    close $l;
    return $port;
}

# A resume token's tick and changelog id (tokens are generation + tick + id
# in hex; tick ids pass 2^32 after a leadership change, fine on 64-bit perl).
sub token_tick { no warnings 'portable'; return hex substr($_[0], 8, 16) }
sub token_cid  { no warnings 'portable'; return hex substr($_[0], 24, 16) }

# The daemon's /metrics text from its http_listen port.
sub metrics_text {
    my ($port) = @_;
    require IO::Socket::INET;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5) or die "metrics: $!";
    print $s "GET /metrics HTTP/1.0\r\n\r\n";
    my $body = do { local $/; <$s> };
    return $body;
}

# Statements sent, by kind, from /metrics (nvsrelay_pg_query_duration_seconds_count).
sub query_counts {
    my %n = metrics_text($_[0]) =~ /^nvsrelay_pg_query_duration_seconds_count\{kind="(\w+)"\} (\d+)/mg;
    return \%n;
}

# Go's time.RFC3339Nano in UTC: fraction without trailing zeros.
sub rfc3339nano {
    my ($s, $us) = @_;
    my $frac = sprintf('%09d', $us * 1000);
    $frac =~ s/0+$//;
    return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime $s) . (length $frac ? ".$frac" : '') . 'Z';
}

# A health-event document as platform-connectors stores it (Go encoding/json of
# HealthEventWithStatus): camelCase protobuf keys with omitempty under "healthevent",
# all-lowercase keys under "healtheventstatus". Options: node, agent, component, check,
# message, action (recommendedAction enum, 24 = RESTART_BM), fatal (default 1), healthy
# (default 0), error_codes, entities, metadata, strategy (processingStrategy, default 1),
# version, span, time ([seconds, micros]); healthevent => {k => v} and status => {k => v}
# override keys last (undef deletes a key).
sub health_doc {
    my (%o) = @_;
    my ($s, $us) = $o{time} ? @{ $o{time} } : Time::HiRes::gettimeofday();
    my $node  = defined $o{node} ? $o{node} : 'gpu-node-01';
    my $codes = $o{error_codes} || ['79'];
    my %he = (
        version          => defined $o{version} ? $o{version} : 1,
        agent            => $o{agent}     || 'gpu-health-monitor',
        componentClass   => $o{component} || 'GPU',
        checkName        => $o{check}     || 'GpuXidError',
        message          => defined $o{message} ? $o{message}
            : 'kernel: NVRM: Xid (PCI:0000:b3:00): 79, pid=\'<unknown>\', name=<unknown>, GPU has fallen off the bus.',
        recommendedAction => defined $o{action} ? $o{action} : 24,
        errorCode        => $codes,
        entitiesImpacted => $o{entities} || [ { entityType => 'GPU', entityValue => '0' } ],
        metadata         => $o{metadata} || { 'chassis_serial' => '1652823052417', 'gpu_uuid' => 'GPU-6d2b3a45-1f0e-4c4a-9d3e-8b2f4d7e9a10' },
        generatedTimestamp => { seconds => $s + 0, nanos => $us * 1000 },
        nodeName         => $node,
        processingStrategy => defined $o{strategy} ? $o{strategy} : 1,
    );
    $he{isFatal}   = JSON::PP::true if defined $o{fatal} ? $o{fatal} : 1;
    $he{isHealthy} = JSON::PP::true if $o{healthy};
    # omitempty: zero values and empty collections are not written.
    delete $he{$_} for grep { !ref $he{$_} && defined $he{$_} && ($he{$_} eq '0' || $he{$_} eq '') } keys %he;
    delete $he{errorCode} unless @{ $he{errorCode} };
    delete $he{entitiesImpacted} unless @{ $he{entitiesImpacted} };
    delete $he{metadata} unless %{ $he{metadata} };
    my %st = (
        nodequarantined        => undef,
        userpodsevictionstatus => { status => '' },
        faultremediated        => undef,
        spanids => { 'platform-connector' => $o{span} || join('', map { sprintf '%02x', int rand 256 } 1 .. 8) },
    );
    for ([ \%he, $o{healthevent} ], [ \%st, $o{status} ]) {
        my ($h, $ov) = @$_;
        next unless $ov;
        for my $k (keys %$ov) {
            if (defined $ov->{$k}) { $h->{$k} = $ov->{$k} } else { delete $h->{$k} }
        }
    }
    return { createdAt => rfc3339nano($s, $us), healthevent => \%he, healtheventstatus => \%st };
}

# Inserts a health event the way NVSentinel's store connector does: index columns taken
# from the event, the whole document as JSONB. doc => $hashref uses that document,
# otherwise health_doc(%o) builds one; table => overrides health_events. Returns the id.
sub insert_health_event {
    my ($dbh, %o) = @_;
    my $doc   = $o{doc} || health_doc(%o);
    my $he    = $doc->{healthevent} || {};
    my $table = $o{table} || 'health_events';
    my $act   = defined $he->{recommendedAction} ? $he->{recommendedAction} : 0;
    my ($id) = $dbh->selectrow_array(
        "INSERT INTO $table (node_name, event_type, severity, recommended_action, document) "
          . 'VALUES (?, ?, ?, ?, ?::jsonb) RETURNING id',
        undef, $he->{nodeName}, $he->{checkName}, $he->{componentClass},
        defined $ACTION_NAME{$act} ? $ACTION_NAME{$act} : $act, $JSON->encode($doc));
    return $id;
}

sub _register_pg     { my ($o) = @_; $LIVE_PG{"$o"} = $o; weaken($LIVE_PG{"$o"}) }
sub _unregister_pg   { delete $LIVE_PG{"$_[0]"} }
sub _register_daemon { my ($o) = @_; $LIVE_DAEMON{"$o"} = $o; weaken($LIVE_DAEMON{"$o"}) }
sub _unregister_daemon { delete $LIVE_DAEMON{"$_[0]"} }

# -----------------------------------------------------------------------------------------
package NvsTest::Pg;

use strict;
use warnings;
use DBI;

# start(port => N, conf => { setting => 'value', ... }): conf values are written verbatim
# into postgresql.conf (quote strings yourself: { log_statement => "'all'" }).
sub start {
    my ($class, %o) = @_;
    my $dir = File::Temp::tempdir('nvs.XXXXXX', DIR => '/tmp', CLEANUP => 0);
    chmod 0755, $dir;
    my $self = bless { dir => $dir, owner => $$, ndaemon => 0 }, $class;
    NvsTest::_register_pg($self);
    local $ENV{PGTMP_CONF} = join("\n", map {"$_ = $o{conf}{$_}"} sort keys %{ $o{conf} || {} });
    my $t0 = NvsTest::now();
    my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'start', $dir, defined $o{port} ? $o{port} : () ]);
    die "pgtmp.sh start $dir failed ($rc):\n$out" if $rc;
    $self->{start_secs} = NvsTest::now() - $t0;
    $self->_read_env;
    $self->_spawn_guard;
    return $self;
}

sub _read_env {
    my ($self) = @_;
    my %e;
    for (split /\n/, NvsTest::slurp("$self->{dir}/env")) {
        $e{$1} = $2 if /^([A-Z_]+)='(.*)'$/;
    }
    die "no env written in $self->{dir}" unless $e{PGPORT};
    $self->{allenv} = \%e;
}

# A watchdog process: if the test is killed outright (SIGKILL, a crash), END never runs.
# The guard notices its parent is gone, kills the daemons listed in DIR/pids and removes
# the cluster. After a normal end the test kills the guard first.
sub _spawn_guard {
    my ($self) = @_;
    my ($parent, $dir) = ($$, $self->{dir});
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        POSIX::setsid();
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', '/dev/null');    # never hold prove's pipe open
        open(STDERR, '>', '/dev/null');
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        $0 = "nvstest-guard $dir";
        Time::HiRes::sleep(0.5) while getppid() == $parent && -e "$dir/.pgtmp";
        if (-e "$dir/.pgtmp") {
            NvsTest::Pg::_kill_listed($dir);
            system('sh', $NvsTest::PGTMP, $ENV{NVS_KEEP} ? 'stop-server' : 'stop', $dir);
        }
        POSIX::_exit(0);
    }
    $self->{guard} = $pid;
}

# Kills the daemons started on the cluster in $dir that still run. A listed pid counts
# only if its environment names this cluster's CA file, so a reused pid is left alone.
sub _kill_listed {
    my ($dir) = @_;
    my @pids = grep { /^\d+$/ && NvsTest::slurp("/proc/$_/environ") =~ /(?:^|\0)DATASTORE_SSLROOTCERT=\Q$dir\E\// }
        split /\n/, NvsTest::slurp("$dir/pids");
    return unless @pids;
    kill 'TERM', @pids;
    for (1 .. 50) { last unless grep { kill 0, $_ } @pids; Time::HiRes::sleep(0.1) }
    kill 'KILL', @pids;
}

sub dir  { $_[0]{dir} }
sub port { $_[0]{allenv}{PGPORT} }
sub sockdir { $_[0]{allenv}{PGHOST} }
sub server_log { "$_[0]{dir}/log/server.log" }
sub bin  { $_[0]{allenv}{PGTMP_BIN} }

# DATASTORE_* for the daemon (mTLS verify-full as nvsentinel).
sub env {
    my ($self) = @_;
    my $e = $self->{allenv};
    return { map { $_ => $e->{$_} } grep {/^DATASTORE_/} keys %$e };
}

# Everything from DIR/env: PG* (superuser over the socket), DATASTORE_*, PGTMP_*.
sub pgenv { return { %{ $_[0]{allenv} } } }

# dbh(): superuser over the Unix socket, database nvsentinel, AutoCommit on.
# Options: autocommit => 0; tls => 1 (nvsentinel over TCP, verify-full mTLS);
# user, password, dbname, host, port, sslmode, sslrootcert, sslcert, sslkey,
# application_name, connect_timeout override single fields; conninfo => { k => v } adds
# any other libpq keyword. Dies on connection failure with libpq's message.
sub dbh {
    my ($self, %o) = @_;
    my $e = $self->{allenv};
    my %ci;
    if ($o{tls}) {
        %ci = (host => 'localhost', port => $e->{DATASTORE_PORT}, dbname => 'nvsentinel',
            user => 'nvsentinel', sslmode => 'verify-full', sslrootcert => $e->{DATASTORE_SSLROOTCERT},
            sslcert => $e->{DATASTORE_SSLCERT}, sslkey => $e->{DATASTORE_SSLKEY}, gssencmode => 'disable');
    } else {
        %ci = (host => $e->{PGHOST}, port => $e->{PGPORT}, dbname => 'nvsentinel', user => 'postgres');
    }
    for my $k (qw(user password dbname host port sslmode sslrootcert sslcert sslkey application_name connect_timeout)) {
        $ci{$k} = $o{$k} if exists $o{$k};
    }
    %ci = (%ci, %{ $o{conninfo} || {} });
    my $user = delete $ci{user};
    my $pass = delete $ci{password};
    my $dsn  = 'dbi:Pg:' . join(';', map { "$_=$ci{$_}" } sort keys %ci);
    return DBI->connect($dsn, $user, defined $pass ? $pass : '', {
        AutoCommit => exists $o{autocommit} ? ($o{autocommit} ? 1 : 0) : 1,
        RaiseError => 1, PrintError => 0, PrintWarn => 0,
        AutoInactiveDestroy => 1,    # a forked child must not close our connections
    });
}

# psql($sql, db => 'nvsentinel', user => 'postgres'): runs the SQL as a script with
# ON_ERROR_STOP, unaligned and tuples-only (-A -t -q), returns stdout without the final
# newline; dies with psql's stderr on failure.
sub psql {
    my ($self, $sql, %o) = @_;
    my $n    = ++$self->{npsql};
    my $file = "$self->{dir}/psql.$n.sql";
    open(my $fh, '>', $file) or die "$file: $!";
    print $fh $sql, "\n";
    close $fh;
    my $e = $self->{allenv};
    my ($rc, $out) = NvsTest::run_cmd([ "$e->{PGTMP_BIN}/psql", '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
        '-h', $e->{PGHOST}, '-p', $e->{PGPORT}, '-U', $o{user} || 'postgres', '-d', $o{db} || 'nvsentinel',
        '-f', $file ], "$file.err");
    my $err = NvsTest::slurp("$file.err");
    unlink $file, "$file.err";
    die "psql failed ($rc): $err" if $rc;
    $out =~ s/\n+\z//;
    return $out;
}

sub _pgtmp {
    my ($self, @args) = @_;
    my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, $args[0], $self->{dir}, @args[ 1 .. $#args ] ]);
    die "pgtmp.sh @args failed ($rc): $out\n" . NvsTest::tail($self->server_log, 20) if $rc;
    return 1;
}

sub restart      { my ($self, $mode) = @_; $self->_pgtmp('restart', $mode || 'fast') }
sub stop_server  { my ($self, $mode) = @_; $self->_pgtmp('stop-server', $mode || 'fast') }
sub start_server { $_[0]->_pgtmp('start-server') }
sub running      { my ($rc) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'status', $_[0]{dir} ]); return !$rc }

# Stops the server and removes the directory; idempotent. Called by DESTROY and END.
sub stop {
    my ($self) = @_;
    return if $self->{stopped} || $self->{owner} != $$;
    $self->{stopped} = 1;
    local ($?, $!, $@);
    my $dir = $self->{dir};
    my $failed = defined $self->{failed} ? $self->{failed} : _test_failing();
    if ($failed) {
        for my $log ((sort glob("$dir/nvsrelayd.*.log")), $self->server_log) {
            NvsTest::diag("---- tail of $log\n" . NvsTest::tail($log, 40)) if -s $log;
        }
    }
    # Daemons first: they hold connections to this server.
    $_->stop for grep { defined && $_->{pg} == $self } values %LIVE_DAEMON;
    _kill_listed($dir);
    if ($self->{guard}) {
        kill 'TERM', $self->{guard};
        waitpid($self->{guard}, 0);
    }
    if ($ENV{NVS_KEEP}) {
        NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'stop-server', $dir ]);
        NvsTest::diag("NVS_KEEP: kept $dir");
    } else {
        my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'stop', $dir ]);
        NvsTest::diag("pgtmp.sh stop $dir: $out") if $rc;
    }
    NvsTest::_unregister_pg($self);
}

sub _test_failing {
    return 1 if $NvsTest::DYING;
    return 0 unless $INC{'Test/Builder.pm'};
    return !Test::Builder->new->is_passing;
}

sub DESTROY { $_[0]->stop }

# -----------------------------------------------------------------------------------------
package NvsTest::Daemon;

use strict;
use warnings;

# start($pg, set => {k => v}, env => {K => V or undef to unset}, args => [...],
#       wait_ready => 1, ready_timeout => 30, socket => path, bin => path)
sub start {
    my ($class, $pg, %o) = @_;
    my $build = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
    my $bin   = $o{bin} || "$build/nvsrelayd";
    die "no executable $bin (build it with make)\n" unless -x $bin;
    my $n    = ++$pg->{ndaemon};
    my $dir  = $pg->dir;
    my $sock = $o{socket} || "$dir/relay.sock";
    my $log  = "$dir/nvsrelayd.$n.log";
    # No HTTP port unless asked for (tests run in parallel), and an admin socket of its
    # own. A key set to undef is left to the config file and the environment.
    my %set  = (listen_unix => $sock, log_format => 'text', log_level => 'debug', http_listen => '',
        admin_socket => "$dir/admin.$n.sock", %{ $o{set} || {} });
    my @args;
    for my $k (qw(listen_unix log_format log_level), grep { !/^(listen_unix|log_format|log_level)$/ } sort keys %set) {
        push @args, '--set', "$k=$set{$k}" if defined $set{$k};
    }
    push @args, @{ $o{args} || [] };
    # An installed /etc/nvsrelayd/nvsrelayd.conf must not leak into tests.
    unshift @args, '--config', '/dev/null' unless grep { $_ eq '-c' || $_ eq '--config' } @args;

    # Only the cluster under test may configure the daemon, not the caller's environment.
    my %env = %ENV;
    delete $env{$_} for grep { /^(PG|DATASTORE_|NVSRELAYD_|NOTIFY_SOCKET$|WATCHDOG_|LISTEN_)/ || /_CLIENT_CERT_MOUNT_PATH$/ } keys %env;
    %env = (%env, %{ $pg->env });
    while (my ($k, $v) = each %{ $o{env} || {} }) {
        if (defined $v) { $env{$k} = $v } else { delete $env{$k} }
    }

    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log) or POSIX::_exit(127);
        open(STDERR, '>&', \*STDOUT);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
        %ENV = %env;
        exec {$bin} $bin, @args or print STDERR "exec $bin: $!\n";
        POSIX::_exit(127);
    }
    if (open(my $pf, '>>', "$dir/pids")) { print $pf "$pid\n"; close $pf }
    my $self = bless { pid => $pid, pg => $pg, socket => $sock, logfile => $log, n => $n, admin => $set{admin_socket},
        owner => $$, bin => $bin, args => \@args }, $class;
    NvsTest::_register_daemon($self);
    $self->wait_ready($o{ready_timeout} || 30) if !exists $o{wait_ready} || $o{wait_ready};
    return $self;
}

sub pid     { $_[0]{pid} }
sub socket  { $_[0]{socket} }
sub admin_socket { $_[0]{admin} }
sub logfile { $_[0]{logfile} }
sub log     { NvsTest::slurp($_[0]{logfile}) }
sub args    { @{ $_[0]{args} } }

# Ready = the socket accepts a connection and answers hello with hello.
sub wait_ready {
    my ($self, $timeout) = @_;
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : 30);
    while (NvsTest::now() < $deadline) {
        my $st = $self->wait_exit(0);
        die "nvsrelayd exited with status $st before it was ready; log:\n" . NvsTest::tail($self->{logfile}, 40) . "\n"
            if defined $st;
        if (-S $self->{socket}) {
            my $c = eval { NvsTest::Client->connect($self->{socket}) };
            if ($c) {
                my $left = $deadline - NvsTest::now();
                $c->send({ op => 'hello', v => 1, client => 'nvstest-ready' });
                my $f = $c->recv_op('hello', $left < 2 ? ($left > 0 ? $left : 0) : 2);
                $c->close;
                return $self if $f;
            }
        }
        Time::HiRes::sleep(0.05);
    }
    die "nvsrelayd not ready after ${timeout}s; log:\n" . NvsTest::tail($self->{logfile}, 40) . "\n";
}

# Polls the log until it matches $re; returns the match (true) or '' on timeout.
sub wait_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : 10);
    while (1) {
        return $1 // 1 if $self->log =~ $re;
        return '' if NvsTest::now() >= $deadline;
        Time::HiRes::sleep(0.05);
    }
}

sub kill {
    my ($self, $sig) = @_;
    return 0 if defined $self->{status};
    return CORE::kill($sig, $self->{pid});
}

# Exit code (or 128 + signal) once the process has ended, undef if it still runs after
# $timeout seconds (0 = just check).
sub wait_exit {
    my ($self, $timeout) = @_;
    return NvsTest::wait_code($self->{status}) if defined $self->{status};
    return undef if $self->{owner} != $$;
    my $deadline = NvsTest::now() + ($timeout || 0);
    while (1) {
        my $r = waitpid($self->{pid}, POSIX::WNOHANG());
        if ($r == $self->{pid} || $r < 0) {
            $self->{status} = $r < 0 ? -1 & 0xffff : $?;
            NvsTest::_unregister_daemon($self);
            return NvsTest::wait_code($self->{status});
        }
        return undef if NvsTest::now() >= $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# Raw wait status ($?) after exit, undef while running.
sub raw_status { $_[0]{status} }

# TERM, up to $timeout (10) seconds, then KILL. Returns the exit code (128 + signal if killed).
sub stop {
    my ($self, $timeout) = @_;
    local ($?, $!, $@);
    return NvsTest::wait_code($self->{status}) if defined $self->{status};
    return undef if $self->{owner} != $$;
    $self->kill('TERM');
    my $st = $self->wait_exit(defined $timeout ? $timeout : 10);
    return $st if defined $st;
    $self->kill('KILL');
    return $self->wait_exit(5);
}

sub DESTROY { $_[0]->stop }

# -----------------------------------------------------------------------------------------
package NvsTest::Client;

use strict;
use warnings;
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM MSG_NOSIGNAL);

# connect($path, timeout => default recv timeout in seconds (10)). Dies if it cannot connect.
sub connect {
    my ($class, $path, %o) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path)
        or die "connect $path: $!\n";
    $s->blocking(0);
    return bless { sock => $s, path => $path, buf => '', eof => 0, skipped => [], errors => [],
        bookmarks => {}, timeout => defined $o{timeout} ? $o{timeout} : 10 }, $class;
}

sub sock    { $_[0]{sock} }
sub eof     { $_[0]{eof} }
sub skipped { $_[0]{skipped} }
sub errors  { $_[0]{errors} }
sub pending { $_[0]{buf} }
sub bookmark { my ($self, $sid) = @_; $self->{bookmarks}{ defined $sid ? $sid : '' } }

# Writes all bytes (waits up to $timeout seconds, default 30, for the peer to read).
# Returns 1, or 0 if the peer closed or stopped reading ($c->{write_error} says why).
sub send_raw {
    my ($self, $bytes, $timeout) = @_;
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : 30);
    my ($off, $len) = (0, length $bytes);
    while ($off < $len) {
        my $n = CORE::send($self->{sock}, substr($bytes, $off, 262144), MSG_NOSIGNAL);
        if (defined $n) { $off += $n; next }
        if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
            my $left = $deadline - NvsTest::now();
            if ($left <= 0) { $self->{write_error} = 'timeout'; return 0 }
            my $win = '';
            vec($win, fileno($self->{sock}), 1) = 1;
            select(undef, $win, undef, $left);
            next;
        }
        $self->{write_error} = "$!";
        return 0;
    }
    return 1;
}

# One frame: compact JSON + "\n". Numbers must be Perl numbers (sid => 1, not "1").
sub send { my ($self, $frame) = @_; return $self->send_raw($NvsTest::JSON->encode($frame) . "\n") }

# Reads more into the buffer; 1 if data came, 0 on timeout or EOF (then eof is set).
sub _fill {
    my ($self, $deadline) = @_;
    return 0 if $self->{eof};
    while (1) {
        my $left = $deadline - NvsTest::now();
        my $rin  = '';
        vec($rin, fileno($self->{sock}), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left > 0 ? $left : 0);
        if ($n < 0) { next if $! == EINTR; die "select: $!" }
        return 0 if $n == 0;
        my $r = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
        if (!defined $r) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $self->{read_error} = "$!";    # ECONNRESET: the server closed on us
            $self->{eof} = 1;
            return 0;
        }
        if ($r == 0) { $self->{eof} = 1; return 0 }
        return 1;
    }
}

# Next line without its "\n", undef on timeout or EOF. A partial last line stays in pending.
sub recv_raw {
    my ($self, $timeout) = @_;
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : $self->{timeout});
    while (1) {
        my $i = index($self->{buf}, "\n");
        if ($i >= 0) {
            my $line = substr($self->{buf}, 0, $i + 1, '');
            chop $line;
            return $line;
        }
        return undef unless $self->_fill($deadline);
    }
}

# Next decoded frame, undef on timeout or EOF (check ->eof). A line that is not a JSON
# object comes back as { op => '(invalid)', raw => $line, error => $why }.
sub recv {
    my ($self, $timeout) = @_;
    my $line = $self->recv_raw($timeout);
    return undef unless defined $line;
    my $f = eval { $NvsTest::JSON->decode($line) };
    if (ref $f ne 'HASH') {
        my $why = $@ || 'not a JSON object';
        chomp $why;
        return { op => '(invalid)', raw => $line, error => $why };
    }
    my $op = defined $f->{op} ? $f->{op} : '';
    $self->{bookmarks}{ defined $f->{sid} ? $f->{sid} : '' } = $f->{token} if $op eq 'bookmark';
    push @{ $self->{errors} }, $f if $op eq 'error';
    return $f;
}

# Next frame whose op is $op (or one of @$op); others are kept in ->skipped.
sub recv_op {
    my ($self, $op, $timeout) = @_;
    my %want = map { $_ => 1 } ref $op ? @$op : ($op);
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : $self->{timeout});
    while (1) {
        my $left = $deadline - NvsTest::now();
        my $f = $self->recv($left > 0 ? $left : 0);
        return undef unless $f;
        return $f if $want{ defined $f->{op} ? $f->{op} : '' };
        push @{ $self->{skipped} }, $f;
    }
}

# Collects up to $n event frames (of stream sid => $sid if given) within $timeout seconds;
# returns an arrayref of whole frames. Bookmarks are passed over (see ->bookmark); other
# frames go to ->skipped. An error frame for the stream (or without sid) ends the wait
# early, so fewer frames come back; it is in ->skipped and ->errors.
sub events {
    my ($self, $n, $timeout, %o) = @_;
    my $sid = $o{sid};
    my $deadline = NvsTest::now() + (defined $timeout ? $timeout : $self->{timeout});
    my @ev;
    while (@ev < $n) {
        my $left = $deadline - NvsTest::now();
        my $f = $self->recv($left > 0 ? $left : 0) or last;
        my $op = defined $f->{op} ? $f->{op} : '';
        my $mine = !defined $sid || (defined $f->{sid} && $f->{sid} == $sid);
        if ($op eq 'event' && $mine) { push @ev, $f; next }
        next if $op eq 'bookmark';
        push @{ $self->{skipped} }, $f;
        last if $op eq 'error' && ($mine || !defined $f->{sid});
    }
    return \@ev;
}

# Sends hello; returns the server's hello frame (undef if none within 10 s).
sub hello {
    my ($self, $client, %extra) = @_;
    $self->send({ op => 'hello', v => 1, client => defined $client ? $client : 'nvstest', %extra });
    return $self->recv_op('hello', 10);
}

# Sends watch with defaults sid => 1, table => 'health_events'; any other key
# (consumer, resumeAfter, startAfter, pipeline, fullDocumentBeforeChange...) passes through.
# The server answers only with events/bookmarks, or an error frame.
sub watch {
    my ($self, %a) = @_;
    $self->send({ op => 'watch', sid => 1, table => 'health_events', %a });
    return;
}

sub ack     { my ($self, $sid, $token) = @_; $self->send({ op => 'ack', sid => $sid, token => $token }) }
sub unwatch { my ($self, $sid) = @_; $self->send({ op => 'unwatch', sid => $sid }) }
sub ping    { $_[0]->send({ op => 'ping' }) }

sub close {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    $self->{sock} = undef;
    $self->{eof}  = 1;
}

1;

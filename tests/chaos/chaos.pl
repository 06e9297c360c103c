#!/usr/bin/perl
# chaos.pl - randomized correctness checker: proves that nvsrelayd delivers every committed
# change exactly as promised while it and PostgreSQL are being broken at random moments.
# Run by tests/integ/95-chaos.t (make check, small size) and by `make check-long` (long
# size); by hand: perl tests/chaos/chaos.pl [--size small|long] [--seconds N] [--seed N].
# Prints TAP. Uses the harness in tests/lib/NvsTest.pm (NVSRELAY_BUILD picks the binary).
#
# What runs, all forked from this process:
#   - a throwaway TLS PostgreSQL; nvsrelayd reaches it through a small TCP proxy (below) so
#     the network path can be frozen, with sslmode verify-full against host "localhost";
#   - 8 writers (plus one that holds a transaction open for many seconds) doing inserts,
#     updates (document.v counts up) and deletes of their own records in health_events and
#     maintenance_events, 1-50 rows per transaction, sleeps inside, some rolled back. Each
#     transaction also inserts its tag into chaos_tx, so an outcome lost with the connection
#     is looked up afterwards; the writers log every change they know committed;
#   - six subscribers: resuming by token, durable consumers acknowledging the low-water
#     mark of what they finished processing (out of order), a slow reader, with and without
#     a pipeline (one a string equality the relay parks between matches; used when the
#     server accepts pipelines, else dropped and noted); each
#     disconnects now and then on its own and logs every frame it got;
#   - faults, one at a time at random moments while the writers run: SIGKILL of nvsrelayd and
#     restart, pg_ctl restart -m immediate, pg_terminate_backend of every relay session, only
#     the LISTEN session terminated (NOTIFYs lost), relay backends stopped with SIGSTOP for a
#     few seconds, the proxy frozen for a few seconds.
# When the writers are done and the faults healed, one sentinel row per table is committed:
# its tick is necessarily taken after every writer finished (pitfall P12 of the tick
# prototype), so a subscriber that has it has had its chance at everything. Then every
# subscriber's log is checked against the changelog and the writers' own logs:
#   lost         a committed change that matches the subscriber and never arrived
#   rolled back  an event of a rolled-back transaction (its tag) or of no changelog row
#   order        tokens not increasing within a session, an event at or before the session's
#                start position (a redelivery before the acknowledged/resumed position), a
#                record's changes out of commit order, a resumed session that did not start
#                where asked, a durable consumer restarting past an event it was sent and
#                never acknowledged, or its stored position moving backwards
#   duplicated   a change delivered again in a later session (allowed after the last ack)
# plus: the same change carries the same token for every subscriber and every relay
# instance (but for a tick a crash took: see below), event content equals the changelog row, a filter never lets a non-match pass,
# no error frame other than "not ready yet", and the daemon never dies on its own.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long ();
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(MSG_NOSIGNAL);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use List::Util ();
use Time::HiRes ();
use Test::More;
use NvsTest;

# JSON::XS keeps up with thousands of events a second; JSON::PP is the fallback.
my $J = eval { require JSON::XS; JSON::XS->new->utf8->canonical } || JSON::PP->new->utf8->canonical;

my %SIZES = (
    small => { seconds => 20, writers => 8, long_txn => 8, gap => [ 0.6, 1.8 ], drain => 45, tx_pause => [ 0.08, 0.3 ] },
    long  => { seconds => 240, writers => 12, long_txn => 60, gap => [ 1, 6 ], drain => 300, tx_pause => [ 0.03, 0.2 ] },
);
my %opt = (size => $ENV{NVS_CHAOS_SIZE} || 'small', seed => $ENV{NVS_CHAOS_SEED});
Getopt::Long::GetOptions(\%opt, 'size=s', 'seconds=i', 'writers=i', 'seed=i', 'long-txn=i', 'faults=s')
    or die "usage: chaos.pl [--size small|long] [--seconds N] [--writers N] [--seed N] [--long-txn SECS]"
    . " [--faults kind,kind...]\n";
my $S = $SIZES{ $opt{size} } or die "unknown size $opt{size}\n";
$S->{seconds}  = $opt{seconds}    if $opt{seconds};
$S->{seconds}  = $ENV{NVS_CHAOS_SECONDS} if $ENV{NVS_CHAOS_SECONDS};
$S->{writers}  = $opt{writers}    if $opt{writers};
$S->{long_txn} = $opt{'long-txn'} if $opt{'long-txn'};
# Under valgrind the daemon runs ~20x slower: fewer writes, more patience.
if ($ENV{NVS_VALGRIND}) {
    $S->{tx_pause} = [ map { $_ * 6 } @{ $S->{tx_pause} } ];
    $S->{drain} *= 4;
}
my $SEED = defined $opt{seed} ? $opt{seed} : (time ^ $$) & 0x7fffffff;
srand($SEED);
diag("chaos: size=$opt{size} seconds=$S->{seconds} writers=$S->{writers} seed=$SEED"
    . ($ENV{NVS_VALGRIND} ? ' (valgrind)' : ''));

my @KIDS;    # pids this process forked (proxy, writers, subscribers)
my $MAIN_PID = $$;
END { kill 'KILL', grep { kill 0, $_ } @KIDS if $$ == $MAIN_PID }

my $pg  = NvsTest::Pg->start(conf => { max_connections => 120 });
my $dir = $pg->dir . '/chaos';
mkdir $dir or die "$dir: $!";

# ---------------------------------------------------------------------------------------
# TCP proxy: 127.0.0.1:<its port> -> 127.0.0.1:<PostgreSQL port>. SIGUSR1 freezes it (no byte
# moves in either direction, no new connection is served), SIGUSR2 thaws it. TLS passes
# through untouched.
sub proxy_start {
    my ($up_port) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64, ReuseAddr => 1)
        or die "proxy listen: $!";
    my $port = $l->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid) { close $l; push @KIDS, $pid; return ($pid, $port) }
    $0 = 'chaos-proxy';
    my $parent = getppid();
    my $frozen = 0;
    $SIG{USR1} = sub { $frozen = 1 };
    $SIG{USR2} = sub { $frozen = 0 };
    $SIG{TERM} = sub { POSIX::_exit(0) };
    $l->blocking(0);
    my (%peer, %out, %sock);    # by fileno
    my $drop = sub {
        my ($fd) = @_;
        my @both = ($fd, defined $peer{$fd} ? 0 + $peer{$fd} : ());    # copies: the loop deletes
        for my $f (@both) {
            next unless $sock{$f};
            close $sock{$f};
            delete @{$_}{$f} for \%sock, \%peer, \%out;
        }
    };
    while (1) {
        POSIX::_exit(0) if getppid() != $parent;
        if ($frozen) { Time::HiRes::sleep(0.02); next }
        my ($rin, $win) = ('', '');
        vec($rin, fileno($l), 1) = 1;
        for my $fd (keys %sock) {
            my $p = $peer{$fd};
            vec($rin, $fd, 1) = 1 if defined $p && length($out{$p} // '') < (1 << 20);
            vec($win, $fd, 1) = 1 if length $out{$fd};
        }
        my $n = select(my $r = $rin, my $w = $win, undef, 0.1);
        next if $n <= 0 || $frozen;
        if (vec($r, fileno($l), 1)) {
            while (my $c = $l->accept) {
                my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $up_port, Timeout => 2);
                if (!$u) { close $c; next }
                $_->blocking(0) for $c, $u;
                my ($a, $b) = (fileno($c), fileno($u));
                @sock{ $a, $b } = ($c, $u);
                @peer{ $a, $b } = ($b, $a);
                @out{ $a, $b } = ('', '');
            }
        }
        for my $fd (keys %sock) {
            next unless $sock{$fd};
            if (vec($w, $fd, 1) && length $out{$fd}) {
                my $k = send($sock{$fd}, $out{$fd}, MSG_NOSIGNAL);
                if (defined $k) { substr($out{$fd}, 0, $k, '') }
                elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) { $drop->($fd); next }
            }
            if (vec($r, $fd, 1)) {
                my $k = sysread($sock{$fd}, my $buf, 65536);
                next if !defined $k && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
                if (!$k) {
                    # One side ended: pass on what is queued for the other, then close both.
                    my $p = $peer{$fd};
                    if ($sock{$p} && length $out{$p}) { $sock{$p}->blocking(1); send($sock{$p}, $out{$p}, MSG_NOSIGNAL) }
                    $drop->($fd);
                    next;
                }
                $out{ $peer{$fd} } .= $buf;
            }
        }
    }
}

# ---------------------------------------------------------------------------------------
# The daemon, via the proxy. Restarted after SIGKILL under the same socket path.
my ($proxy_pid, $proxy_port) = proxy_start($pg->port);
my %DSET = (poll_interval_ms => 100, tick_idle_ms => 1000, ring_events => 512, batch_rows => 97,
    ack_flush_ms => 100, reconnect_min_ms => 50, reconnect_max_ms => 1000, connect_timeout_s => 2,
    max_clients => 64, log_level => 'info');
my %DENV = (DATASTORE_HOST => 'localhost', DATASTORE_PORT => $proxy_port);
my $d;
my @dead_daemons;    # [daemon, why] of instances that ended on their own
sub daemon_start {
    $d = NvsTest::Daemon->start($pg, set => \%DSET, env => \%DENV,
        ready_timeout => $ENV{NVS_VALGRIND} ? 120 : 60);
}
daemon_start();
my $sock = $d->socket;

# A relay killed and restarted on a database that has ticks must come back with the
# generation stored in nvsrelay.meta. The probe timer (poll_interval_ms) may fire while
# the schema check runs; a short interval makes that likely.
my ($GEN) = $d->log =~ /ready generation=([0-9a-f]{8})/;
my @regen;
for (1 .. 3) {
    $d->kill('KILL');
    $d->wait_exit(10);
    my $r = NvsTest::Daemon->start($pg, set => { %DSET, poll_interval_ms => 10 }, env => \%DENV);
    push @regen, ($r->log =~ /ready generation=([0-9a-f]{8})/)[0] // '?';
    $d = $r;
}
is("@regen", join(' ', ($GEN) x 3), "restarted three times: ready again with generation $GEN");
$d->stop;
daemon_start();

my $dbh = $pg->dbh;
$dbh->do('CREATE TABLE chaos_tx (tag text PRIMARY KEY)');
my ($START_ID) = $dbh->selectrow_array('SELECT coalesce(max(id), 0) FROM datastore_changelog');
$dbh->disconnect;

# ---------------------------------------------------------------------------------------
# Writers. Log lines: "C|R|Q tag" then one "table record op v" per change. Q = the outcome
# was lost with the connection and looked up in chaos_tx afterwards ("Q tag 1" committed).
sub writer_main {
    my ($i, $deadline, $long) = @_;
    $0 = "chaos-writer-$i";
    srand($SEED + 1000 * $i);
    my $parent = getppid();
    open(my $log, '>', "$dir/w$i.log") or die "$dir/w$i.log: $!";
    my %live;          # record id -> [table, v]
    my $n = 0;
    my $dbh;
    my $connect = sub {
        while (!$dbh) {
            return 0 if getppid() != $parent;
            $dbh = eval { $pg->dbh(autocommit => 0, application_name => "chaos-writer-$i") };
            Time::HiRes::sleep(0.1) unless $dbh;
        }
        return 1;
    };
    my $long_done = !$long;
    # A pg_restart ends the long transaction with its connection; it is begun again, past
    # the deadline if need be (the faults stop there), so that one always commits.
    while (Time::HiRes::time() < $deadline
        || (!$long_done && Time::HiRes::time() < $deadline + 3 * $S->{long_txn})) {
        last unless $connect->();
        my $tag = sprintf 'w%d-%d', $i, ++$n;
        my @ch;
        my $is_long = !$long_done && Time::HiRes::time() > $deadline - $S->{seconds} + 1;
        my $outcome = eval {
            $dbh->do('INSERT INTO chaos_tx (tag) VALUES (?)', undef, $tag);
            my $rows = $is_long ? 10 : 1 + int rand 50;
            my %v = map { $_ => $live{$_}[1] } keys %live;
            my %gone;
            for my $k (1 .. $rows) {
                my @ids = grep { !$gone{$_} } keys %v;
                my $r = rand;
                if (!@ids || $r < 0.4) {
                    my $table = rand() < 0.5 ? 'health_events' : 'maintenance_events';
                    my $doc = { v => 1, tx => $tag, shard => int rand 4, w => $i, pad => 'x' x int rand 200,
                        healthevent => { nodeName => "chaos-$i", checkName => 'GpuXidError', isFatal => JSON::PP::true } };
                    my ($id) = $table eq 'health_events'
                        ? $dbh->selectrow_array(q{INSERT INTO health_events (node_name, event_type, document)
                              VALUES (?, 'GpuXidError', ?::jsonb) RETURNING id}, undef, "chaos-$i", $J->encode($doc))
                        : $dbh->selectrow_array(q{INSERT INTO maintenance_events (event_id, csp, cluster_name,
                              node_name, status, event_received_timestamp, document)
                              VALUES (?, 'gcp', 'chaos', ?, 'DETECTED', now(), ?::jsonb) RETURNING id}, undef,
                              "$tag-$k", "chaos-$i", $J->encode($doc));
                    $v{$id} = 1;
                    $live{$id} //= [ $table, 0 ];    # table known from here on; v applied on commit
                    push @ch, [ $table, $id, 'insert', 1 ];
                } elsif ($r < 0.85) {
                    my $id = $ids[ int rand @ids ];
                    my $nv = ++$v{$id};
                    $dbh->do("UPDATE $live{$id}[0] SET document = document || jsonb_build_object('v', ?::int, 'tx', ?::text),"
                        . ' updated_at = now() WHERE id = ?', undef, $nv, $tag, $id);
                    push @ch, [ $live{$id}[0], $id, 'update', $nv ];
                } else {
                    my $id = $ids[ int rand @ids ];
                    $dbh->do("DELETE FROM $live{$id}[0] WHERE id = ?", undef, $id);
                    $gone{$id} = 1;
                    push @ch, [ $live{$id}[0], $id, 'delete', $v{$id} ];
                }
                if ($is_long) {
                    Time::HiRes::sleep($S->{long_txn} / $rows);
                } elsif (rand() < 0.04) {
                    Time::HiRes::sleep(rand 0.05);
                }
            }
            Time::HiRes::sleep(0.2 + rand 0.8) if !$is_long && rand() < 0.05;
            if (!$is_long && rand() < 0.1) { $dbh->rollback; return 'R' }
            $dbh->commit;
            return 'C';
        };
        if (!$outcome) {
            # The connection (or the server) went away mid-transaction: ask chaos_tx.
            eval { $dbh->disconnect } if $dbh;
            $dbh = undef;
            my $known;
            while (!defined $known) {
                last unless $connect->();
                $known = eval { $dbh->selectrow_array('SELECT count(*) FROM chaos_tx WHERE tag = ?', undef, $tag) };
                if (!defined $known) { eval { $dbh->disconnect }; $dbh = undef; Time::HiRes::sleep(0.1) }
                else { $dbh->rollback }
            }
            last unless defined $known;
            $outcome = $known ? 'C' : 'R';
            print $log "Q $tag $known\n";
        }
        print $log "$outcome $tag\n", map {"@$_\n"} @ch;
        print $log "L $tag $outcome\n" if $is_long;
        $log->flush;
        if ($outcome eq 'C') {
            $long_done = 1 if $is_long;
            for (@ch) {
                my ($t, $id, $op, $v) = @$_;
                if ($op eq 'delete') { delete $live{$id} } else { $live{$id} = [ $t, $v ] }
            }
        } else {
            delete $live{$_} for grep { !$live{$_}[1] } keys %live;    # inserts that never were
        }
        Time::HiRes::sleep($S->{tx_pause}[0] + rand($S->{tx_pause}[1] - $S->{tx_pause}[0]));
    }
    print $log "END\n";
    close $log;
    eval { $dbh->rollback; $dbh->disconnect } if $dbh;
    POSIX::_exit(0);
}

# ---------------------------------------------------------------------------------------
# Subscribers. Log lines:
#   S <session> <start> <resumeAfter sent|-> <highest ack sent|->   first bookmark of a session
#   E <token> <op> <record> <v> <tx> <sentinel>   one event
#   A <token>                                     ack sent
#   X <why>                                       session over
#   F <code> <message>                            an error frame
#   P <note>                                      pipeline refused by the server, dropped
#   DONE <sentinel seen: 1|0>
my $PIPE_OPS   = [ { '$match' => { operationType => { '$in' => [ 'insert', 'delete' ] } } } ];
my $PIPE_SHARD = [ { '$match' => { 'fullDocument.shard' => { '$in' => [ 0, 2 ] } } } ];
# A string equality: the relay guards it and parks the subscription between
# the inserts that wake it (daemon/stream/hubpark.c).
my $PIPE_INS   = [ { '$match' => { operationType => 'insert' } } ];
my @SUBS = (
    { name => 'tok-he',   table => 'health_events',      mode => 'token' },
    { name => 'dur-he',   table => 'health_events',      mode => 'durable', before => 1 },
    { name => 'dur-me',   table => 'maintenance_events', mode => 'durable' },
    { name => 'tok-me-f', table => 'maintenance_events', mode => 'token', pipeline => $PIPE_OPS,
      pred => sub { $_[0]{op} ne 'update' } },
    { name => 'slow-he-f', table => 'health_events', mode => 'durable', slow => 1, pipeline => $PIPE_SHARD,
      pred => sub { $_[0]{op} ne 'delete' && defined $_[0]{shard} && ($_[0]{shard} == 0 || $_[0]{shard} == 2) } },
    { name => 'tok-he-g', table => 'health_events', mode => 'token', pipeline => $PIPE_INS,
      pred => sub { $_[0]{op} eq 'insert' } },
);

sub sub_main {
    my ($k, $spec, $deadline) = @_;
    $0 = "chaos-sub-$spec->{name}";
    srand($SEED + 77 * $k);
    my $parent = getppid();
    open(my $log, '>', "$dir/s-$spec->{name}.log") or die "$!";
    my $consumer = "chaos-$spec->{name}";
    my $pipeline = $spec->{pipeline};
    my ($last_tok, $max_ack, $session, $sentinel) = (undef, undef, 0, 0);
    while (!$sentinel && Time::HiRes::time() < $deadline && getppid() == $parent) {
        my $c = eval { NvsTest::Client->connect($sock) };
        if (!$c) { Time::HiRes::sleep(0.1); next }
        my %w = (sid => 3 + $k, table => $spec->{table});
        $w{consumer} = $consumer if $spec->{mode} eq 'durable';
        $w{resumeAfter} = { _data => $last_tok } if $spec->{mode} eq 'token' && defined $last_tok;
        $w{pipeline} = $pipeline if $pipeline;
        $w{fullDocumentBeforeChange} = 'whenAvailable' if $spec->{before};
        $c->send({ op => 'watch', %w });
        my ($start, @pending, $next_ack, $quit_at, $why);
        my $t_ack = Time::HiRes::time();
        my $give_up = $t_ack + 15;
        $quit_at = $t_ack + 1 + rand 5;
        my $stall_at = $t_ack + 1 + rand 3;
        while (1) {
            my $now = Time::HiRes::time();
            if ($now > $deadline || getppid() != $parent) { $why = 'deadline'; last }
            # The slow reader stops reading for a while every few seconds.
            if ($spec->{slow} && defined $start && $now > $stall_at) {
                Time::HiRes::sleep(0.5 + rand 1.5);
                $stall_at = Time::HiRes::time() + 2 + rand 3;
            }
            my $line = $c->recv_raw($spec->{slow} ? 0.02 : 0.1);
            if (!defined $line) {
                if ($c->eof) { $why = 'eof ' . ($c->{read_error} // ''); last }
            } else {
                my $f = eval { $J->decode($line) };
                if (ref $f ne 'HASH') { print $log "F parse $line\n"; next }
                my $op = $f->{op} // '';
                if ($op eq 'error') {
                    my $code = $f->{code} // '?';
                    if ($code == 2 && $pipeline && !defined $start && ($f->{message} // '') =~ /pipeline/) {
                        print $log "P $f->{message}\n";
                        $pipeline = undef;
                        $why = 'pipeline refused';
                        last;
                    }
                    print $log "F $code " . ($f->{message} // '') . "\n";
                    $why = "error $code";
                    last;
                }
                if ($op eq 'bookmark') {
                    my $t = $f->{token}{_data};
                    if (!defined $start) {
                        $start = $t;
                        $session++;
                        print $log "S $session $t " . ($w{resumeAfter} ? $w{resumeAfter}{_data} : '-')
                            . ' ' . ($max_ack // '-') . "\n";
                    }
                    $last_tok = $t if !defined $last_tok || $t gt $last_tok;
                    push @pending, [ $t, 1 ];    # a bookmark is processed at once
                } elsif ($op eq 'event') {
                    my $e = $f->{event};
                    my $t = $e->{_id}{_data};
                    my $doc = $e->{fullDocument};
                    $doc = $doc->{document} if ref $doc eq 'HASH' && $spec->{table} eq 'maintenance_events';
                    my $pre = $e->{fullDocumentBeforeChange};
                    $pre = $pre->{document} if ref $pre eq 'HASH' && $spec->{table} eq 'maintenance_events';
                    my $src = ref $doc eq 'HASH' ? $doc : ref $pre eq 'HASH' ? $pre : {};
                    my $sen = $src->{sentinel} ? 1 : 0;
                    print $log join(' ', 'E', $t, $e->{operationType} // '?', $e->{documentKey}{_id} // '?',
                        $src->{v} // '-', $src->{tx} // '-', $sen), "\n";
                    $last_tok = $t;
                    # "Processing" finishes out of order, a little later.
                    push @pending, [ $t, 0, $now + rand 0.2 ];
                    $sentinel = 1 if $sen;
                }
            }
            if (!defined $start) {
                if ($now > $give_up) { $why = 'no answer to watch'; last }
                next;
            }
            if ($spec->{mode} eq 'durable') {
                $_->[1] ||= $_->[2] <= $now for @pending;
                my $low;
                $low = (shift @pending)->[0] while @pending && $pending[0][1];
                $next_ack = $low if defined $low;
                if (defined $next_ack && ($sentinel || $now - $t_ack > ($spec->{slow} ? 1.5 : 0.15))) {
                    $c->send({ op => 'ack', sid => $w{sid}, token => { _data => $next_ack } }) or do { $why = 'send failed'; last };
                    print $log "A $next_ack\n";
                    $max_ack = $next_ack if !defined $max_ack || $next_ack gt $max_ack;
                    ($next_ack, $t_ack) = (undef, $now);
                }
            } else {
                @pending = ();
            }
            if ($sentinel) {
                if ($spec->{mode} eq 'durable') {
                    # The last ack must reach the daemon before we hang up.
                    $c->send({ op => 'ping' });
                    while (defined(my $l = $c->recv_raw(5))) { last if $l =~ /"op":"pong"/ }
                }
                $why = 'sentinel';
                last;
            }
            if ($now > $quit_at) {
                # Leave on our own: sometimes politely, sometimes by just closing.
                $c->send({ op => 'unwatch', sid => $w{sid} }) if rand() < 0.5;
                $why = 'voluntary';
                last;
            }
        }
        $c->close;
        $log->printflush("X $why\n");
        Time::HiRes::sleep(0.1 + rand 0.4) if !$sentinel && $why ne 'pipeline refused';
    }
    print $log "DONE $sentinel\n";
    close $log;
    POSIX::_exit(0);
}

my @sub_pids;
my $sub_deadline = Time::HiRes::time() + $S->{seconds} + 30 + $S->{drain} + $S->{long_txn};
for my $k (0 .. $#SUBS) {
    my $pid = fork // die "fork: $!";
    if (!$pid) { sub_main($k, $SUBS[$k], $sub_deadline) }
    push @KIDS, $pid;
    push @sub_pids, $pid;
}
# Every subscriber must have its start position before the first write.
my $t_wait = NvsTest::now() + 30;
while (NvsTest::now() < $t_wait) {
    my $n = grep { NvsTest::slurp("$dir/s-$_->{name}.log") =~ /^S 1 /m } @SUBS;
    last if $n == @SUBS;
    Time::HiRes::sleep(0.05);
}
my @unstarted = grep { NvsTest::slurp("$dir/s-$_->{name}.log") !~ /^S 1 /m } @SUBS;
is(scalar @unstarted, 0, 'all ' . scalar(@SUBS) . ' subscribers started before the first write')
    or diag("not started: @{[ map { $_->{name} } @unstarted ]}");

my $w_deadline = Time::HiRes::time() + $S->{seconds};
my @writer_pids;
for my $i (0 .. $S->{writers}) {    # writer 0 also holds the long transaction
    my $pid = fork // die "fork: $!";
    if (!$pid) { writer_main($i, $w_deadline, $i == 0) }
    push @KIDS, $pid;
    push @writer_pids, $pid;
}

# ---------------------------------------------------------------------------------------
# Faults, one at a time, until the writers' deadline.
my @FAULTS = qw(kill_daemon pg_restart terminate_relay kill_listen stall_backend freeze_proxy);
@FAULTS = split /,/, $opt{faults} if $opt{faults};
my (%nfault, @fault_log);

sub relay_pids {
    my ($where) = @_;
    my $out = eval { $pg->psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'nvsrelayd'"
        . ($where ? " AND $where" : '')) } // '';
    return grep {/^\d+$/} split /\n/, $out;
}

# A daemon that ended without being told to is a failure; note it and start another.
sub check_daemon {
    my $st = $d->wait_exit(0);
    return 1 unless defined $st;
    push @dead_daemons, [ $d, "exited on its own with status $st" ];
    diag('nvsrelayd ended on its own (status ' . $st . "); log tail:\n" . NvsTest::tail($d->logfile, 30));
    daemon_start();
    return 0;
}

sub inject {
    my ($f) = @_;
    my $t = sprintf '%.1f', $S->{seconds} - ($w_deadline - Time::HiRes::time());
    my $note = '';
    if ($f eq 'kill_daemon') {
        $d->kill('KILL');
        $d->wait_exit(10);
        Time::HiRes::sleep(rand 0.5);
        daemon_start();
        $note = 'restarted';
    } elsif ($f eq 'pg_restart') {
        $pg->restart('immediate');
    } elsif ($f eq 'terminate_relay') {
        my $out = eval { $pg->psql('SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity '
            . q{WHERE application_name = 'nvsrelayd'}) } // 'error';
        $note = "terminated $out";
    } elsif ($f eq 'kill_listen') {
        my $out = eval { $pg->psql('SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity '
            . q{WHERE application_name = 'nvsrelayd' AND query = 'LISTEN nvsentinel_changes'}) } // 'error';
        $note = "terminated $out";
    } elsif ($f eq 'stall_backend') {
        my @p = relay_pids();
        @p = ($p[ int rand @p ]) if @p && rand() < 0.5;
        kill 'STOP', @p;
        my $secs = 1 + rand 2.5;
        Time::HiRes::sleep($secs);
        kill 'CONT', @p;
        $note = sprintf '%d backends %.1fs', scalar @p, $secs;
    } elsif ($f eq 'freeze_proxy') {
        kill 'USR1', $proxy_pid;
        my $secs = 1 + rand 2.5;
        Time::HiRes::sleep($secs);
        kill 'USR2', $proxy_pid;
        $note = sprintf '%.1fs', $secs;
    }
    $nfault{$f}++;
    push @fault_log, "t=${t}s $f $note";
}

my @plan = List::Util::shuffle(@FAULTS);
while (Time::HiRes::time() < $w_deadline - 0.5) {
    Time::HiRes::sleep($S->{gap}[0] + rand($S->{gap}[1] - $S->{gap}[0]));
    last if Time::HiRes::time() >= $w_deadline - 0.5;
    check_daemon();
    inject(@plan ? shift @plan : $FAULTS[ int rand @FAULTS ]);
}
for my $pid (@writer_pids) { waitpid($pid, 0) }
check_daemon();
diag("faults: $_") for @fault_log;

# Drain: sentinels committed after every writer finished (P12).
$dbh = $pg->dbh;
my $sdoc = $J->encode({ v => 1, tx => 'sentinel', shard => 0, sentinel => JSON::PP::true });
$dbh->do(q{INSERT INTO health_events (node_name, document) VALUES ('chaos-sentinel', ?::jsonb)}, undef, $sdoc);
$dbh->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, status, event_received_timestamp, document)
    VALUES ('chaos-sentinel', 'gcp', 'chaos', 'DETECTED', now(), ?::jsonb)}, undef, $sdoc);
my $drain_deadline = NvsTest::now() + $S->{drain};
my %sub_done;
while (keys %sub_done < @sub_pids && NvsTest::now() < $drain_deadline) {
    for my $pid (@sub_pids) { $sub_done{$pid} = 1 if !$sub_done{$pid} && waitpid($pid, POSIX::WNOHANG()) == $pid }
    check_daemon();
    Time::HiRes::sleep(0.1);
}
kill 'TERM', grep { !$sub_done{$_} } @sub_pids;
waitpid($_, 0) for grep { !$sub_done{$_} } @sub_pids;

# ---------------------------------------------------------------------------------------
# Analysis.
my %cl;    # changelog id -> {table, record, op, v, tx, shard, sentinel}
my $rows = $dbh->selectall_arrayref(q{
    SELECT id, table_name, record_id::text, lower(operation),
           coalesce(new_values->'document', old_values->'document')->>'v',
           new_values->'document'->>'tx',
           coalesce(new_values->'document', old_values->'document')->>'shard',
           coalesce(new_values->'document'->>'sentinel', 'false')
    FROM datastore_changelog WHERE id > ? ORDER BY id}, undef, $START_ID);
for (@$rows) {
    $cl{ $_->[0] } = { table => $_->[1], record => $_->[2], op => $_->[3], v => $_->[4], tx => $_->[5],
        shard => $_->[6], sentinel => $_->[7] eq 'true' };
}
my @cl_ids = map { $_->[0] } @$rows;

# The writers' view: committed changes (a multiset of "table record op v") and rolled-back tags.
my (%committed, %rolled_tags, $written, $rolled_changes, %tag_out, $long_committed, $long_ended);
for my $i (0 .. $S->{writers}) {
    my $cur;
    for (split /\n/, NvsTest::slurp("$dir/w$i.log")) {
        if (/^([CR]) (\S+)$/) { $cur = $1; $rolled_tags{$2} = 1 if $1 eq 'R'; next }
        if (/^L (\S+) ([CR])$/) { $2 eq 'C' ? ($long_committed = $1) : $long_ended++; next }
        next if /^(Q|END)/;
        my ($t, $id, $op, $v) = split / /;
        next unless defined $v;
        if ($cur eq 'C') { $committed{"$t $id $op $v"}++; $written++ }
        else             { $rolled_changes++ }
    }
}
$written //= 0;
$rolled_changes //= 0;
my %cl_set;
$cl_set{"$_->{table} $_->{record} $_->{op} $_->{v}"}++ for grep { !$_->{sentinel} } values %cl;
my $capture_missing = grep { ($cl_set{$_} // 0) < $committed{$_} } keys %committed;
my $capture_extra   = grep { ($committed{$_} // 0) < $cl_set{$_} } keys %cl_set;
is($capture_missing + $capture_extra, 0,
    "the changelog holds exactly the changes the writers committed ($written; $rolled_changes rolled back)")
    or diag("missing from the changelog: $capture_missing, not committed by any writer: $capture_extra");
my $rolled_in_cl = grep { defined $_->{tx} && $rolled_tags{ $_->{tx} } } values %cl;
is($rolled_in_cl, 0, 'no rolled-back change in the changelog');

my %tok_of;          # changelog id -> the first token seen
my %toks_of;         # changelog id -> { token -> a subscriber that got it }
my %T = map { $_ => 0 } qw(delivered expected lost dup rolled order tokmix content filter errors sessions
    notready sentinel_missing);
my (@problems, %nproblem);
sub problem {
    my ($kind, $msg) = @_;
    $T{$kind}++;
    push @problems, $msg if !$nproblem{$msg}++ && @problems < 40;
}

for my $spec (@SUBS) {
    my $name = $spec->{name};
    my @lines = split /\n/, NvsTest::slurp("$dir/s-$name.log");
    my $piped = $spec->{pipeline} && !grep {/^P /} @lines;
    my $pred = $piped ? $spec->{pred} : sub {1};
    my (%got, @first_order, @delivered, $cur, $prev_start, $dups, $nev, $sentinel_ok);
    for my $l (@lines) {
        my @f = split / /, $l;
        if ($f[0] eq 'S') {
            my (undef, $n, $start, $asked, $acked) = @f;
            $T{sessions}++;
            problem('order', "$name: session $n started at $start, asked to resume after $asked")
                if $asked ne '-' && $start ne $asked;
            if ($spec->{mode} eq 'durable') {
                # It may start past its last ack only over positions where it was sent no
                # event: every event delivered and not acknowledged must come again.
                my @skipped = grep { ($acked eq '-' || $_ gt $acked) && $_ le $start } @delivered;
                problem('order', "$name: session $n started at $start, after its last ack $acked, so "
                    . scalar(@skipped) . " unacknowledged events (first $skipped[0]) are never redelivered") if @skipped;
                problem('order', "$name: session $n: durable start moved backwards ($prev_start -> $start)")
                    if defined $prev_start && $start lt $prev_start;
            }
            ($cur, $prev_start) = ($start, $start);
            next;
        }
        if ($f[0] eq 'F') {
            if ($f[1] eq '6') { $T{notready}++ }
            else { problem('errors', "$name: error frame: @f[1 .. $#f]") }
            next;
        }
        next unless $f[0] eq 'E';
        my (undef, $tok, $op, $rec, $v, $tx, $sen) = @f;
        $nev++;
        $T{delivered}++;
        # Within a session tokens only grow, starting after the session's start position:
        # a redelivery of anything at or before the acknowledged/resumed position is a bug.
        if (!defined $cur || $tok le $cur) {
            problem('order', "$name: $tok delivered after " . ($cur // 'no start bookmark'));
        }
        $cur = $tok if !defined $cur || $tok gt $cur;
        push @delivered, $tok;
        my $cid = NvsTest::token_cid($tok);
        my $row = $cl{$cid};
        problem('rolled', "$name: event of rolled-back transaction $tx ($tok)") if $tx ne '-' && $rolled_tags{$tx};
        if (!$row) { problem('rolled', "$name: event $tok has no changelog row (id $cid)"); next }
        $toks_of{$cid}{$tok} = $name;
        $tok_of{$cid} //= $tok;
        if ($row->{table} ne $spec->{table} || $row->{op} ne $op || $row->{record} ne $rec
            || ($v ne '-' && ($row->{v} // '') ne $v)) {
            problem('content', "$name: $tok is '$op $rec v$v', the changelog says '$row->{table} $row->{op} "
                . "$row->{record} v" . ($row->{v} // '?') . "'");
        }
        problem('filter', "$name: $tok ($row->{op} shard " . ($row->{shard} // '-') . ') does not match the pipeline')
            unless $pred->($row);
        if ($got{$cid}++) { $dups++; next }
        push @first_order, $cid;
        $sentinel_ok = 1 if $sen;
    }
    problem('sentinel_missing', "$name: never got the sentinel") unless $sentinel_ok;
    # Expected: every committed change of its table after the start that the filter passes.
    my @exp = grep { $cl{$_}{table} eq $spec->{table} && $pred->($cl{$_}) } @cl_ids;
    $T{expected} += @exp;
    my @lost = grep { !$got{$_} } @exp;
    $T{lost} += @lost;
    push @problems, "$name: lost " . scalar(@lost) . ' changes, e.g. changelog ids '
        . join(', ', @lost[ 0 .. ($#lost < 4 ? $#lost : 4) ]) if @lost;
    $T{dup} += $dups // 0;
    # Per record: first deliveries must come in commit (changelog id) order.
    my %in_exp = map { $_ => 1 } @exp;
    my (%exp_rec, %got_rec);
    push @{ $exp_rec{ $cl{$_}{record} } }, $_ for grep { $got{$_} } @exp;
    push @{ $got_rec{ $cl{$_}{record} } }, $_ for grep { $in_exp{$_} } @first_order;
    for my $r (keys %exp_rec) {
        my ($e, $g) = (join(',', @{ $exp_rec{$r} }), join(',', @{ $got_rec{$r} || [] }));
        problem('order', "$name: record $r delivered as [$g], committed as [$e]") if $e ne $g;
    }
    diag(sprintf '%-10s %-18s %-8s pipeline=%-3s sessions=%d events=%d expected=%d lost=%d dup=%d',
        $name, $spec->{table}, $spec->{mode}, $spec->{pipeline} ? ($piped ? 'on' : 'off') : '-',
        scalar(grep {/^S /} @lines), $nev // 0, scalar @exp, scalar @lost, $dups // 0);
    diag("$name: the server refused the pipeline, so it ran unfiltered") if $spec->{pipeline} && !$piped;
}

# One token per change, for every subscriber and every relay instance, with one
# exception: a tick committed asynchronously (daemon/pg/ticker.c) can be taken by
# `pg_ctl -m immediate` after its events were sent, and they come again under a
# later tick.  Every token but a change's greatest must then name a tick that is
# not in nvsrelay.tick although later ticks are: lost, not pruned or forged.
my %tick_kept;
{
    my @t = map { NvsTest::token_tick($_) } map { keys %$_ } grep { keys(%$_) > 1 } values %toks_of;
    if (@t) {
        my $h = $pg->dbh;
        $tick_kept{$_->[0]} = 1 for @{ $h->selectall_arrayref(
            'SELECT tick_id FROM nvsrelay.tick WHERE tick_id = ANY(?::bigint[])', undef, [ map {"$_"} @t ]) };
        $h->disconnect;
    }
}
my $lost_tick_redeliveries = 0;
for my $cid (sort { $a <=> $b } keys %toks_of) {
    my @t = sort keys %{ $toks_of{$cid} };
    next if @t < 2;
    my $last = pop @t;
    for my $tok (@t) {
        if (!$tick_kept{ NvsTest::token_tick($tok) } && $tick_kept{ NvsTest::token_tick($last) }) {
            $lost_tick_redeliveries++;
        } else {
            problem('tokmix', "$toks_of{$cid}{$tok}: changelog id $cid delivered as $tok and elsewhere"
                . " ($toks_of{$cid}{$last}) as $last");
        }
    }
}
diag("changes delivered again under a later tick after their tick was lost in a crash: $lost_tick_redeliveries");

# The daemon's own account: nothing from the writers' side should be missing either.
my $nfaults = 0;
$nfaults += $_ for values %nfault;
my $summary = sprintf 'written=%d delivered=%d expected=%d lost=%d duplicated=%d rolled_back_delivered=%d '
    . 'order_violations=%d faults=%d (%s) sessions=%d not_ready_retries=%d seed=%d',
    $written, $T{delivered}, $T{expected}, $T{lost}, $T{dup}, $T{rolled}, $T{order}, $nfaults,
    join(' ', map {"$_=$nfault{$_}"} sort keys %nfault), $T{sessions}, $T{notready}, $SEED;
diag("chaos: $summary");
diag("problem: $_" . ($nproblem{$_} && $nproblem{$_} > 1 ? " ($nproblem{$_} times)" : '')) for @problems;

cmp_ok($written, '>', 0, "the writers committed changes ($written)");
ok($long_committed, "a transaction held open for $S->{long_txn} s committed (" . ($long_committed || 'none')
    . ', after ' . ($long_ended // 0) . ' ended by a fault)');
is(scalar(grep { !$nfault{$_} } @FAULTS), 0, 'every kind of fault was injected at least once')
    or diag('missing: ' . join(' ', grep { !$nfault{$_} } @FAULTS));
is($T{lost}, 0, 'lost == 0');
is($T{sentinel_missing}, 0, 'every subscriber drained up to the sentinel');
is($T{errors}, 0, 'no error frame other than "not ready yet"');
is($T{rolled}, 0, 'rolled-back delivered == 0');
is($T{order}, 0, 'order violations == 0 (commit order per record, tokens increasing, redeliveries only after the start/ack)');
is($T{tokmix}, 0, 'one token per change, for every subscriber and every relay instance (a tick lost in a crash aside)');
is($T{content}, 0, 'event content equals the changelog row');
is($T{filter}, 0, 'no event the pipeline excludes');
is(scalar @dead_daemons, 0, 'nvsrelayd never ended on its own');
is($d->stop(20), 0, 'the last nvsrelayd stops cleanly');
done_testing();

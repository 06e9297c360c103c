#!/usr/bin/perl
# 56-fleet.t - a loopback fleet under faults on every tier: one PostgreSQL with one streaming
# standby (pg_basebackup, asynchronous), two upstream relays reading batches from the
# standby, N node relays chained to both (half list one first, half the other), three
# subscribers per node:
#   he   health_events, resuming by token; when its node dies it resumes on the next node
#        (a token is valid on every relay of the database)
#   me   maintenance_events, the same
#   dur  durable consumer on health_events, acknowledging what it read; it comes back to
#        its own node once that node is restarted (its position is stored upstream)
# Writers insert, update and delete their own records in both tables, some transactions
# rolled back, while these faults come one after another: a node relay killed and started
# again, an upstream relay frozen (SIGSTOP) longer than the nodes' upstream_timeout_ms, an
# upstream relay killed and started again, PostgreSQL restarted (immediate), the standby
# restarted. Then one sentinel row per table, and every subscriber must have every change
# of its table committed after the start, in commit order per record, tokens increasing
# within a session, nothing twice for the token subscribers, one token per change
# everywhere, and the durable consumers never starting past an unacknowledged event.
#
# NVS_FLEET_SIZE=small (make check: 6 nodes, ~15 s of writes) or long (make check-long:
# 50 nodes, 120 s, faults repeated at random); NVS_FLEET_NODES and NVS_FLEET_SECONDS
# override; NVS_FLEET_SEED repeats a run's fault order.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Select;
use List::Util ();
use POSIX ();
use Time::HiRes ();
use NvsTest;

my $J = eval { require JSON::XS; JSON::XS->new->utf8->canonical } || JSON::PP->new->utf8->canonical;
my %SIZES = (
    small => { nodes => 6,  seconds => 15,  writers => 3, pause => [ 0.05, 0.15 ], gap => 1,   drain => 45 },
    long  => { nodes => 50, seconds => 120, writers => 6, pause => [ 0.03, 0.1 ],  gap => 4,   drain => 120 },
);
my $size = $ENV{NVS_FLEET_SIZE} || 'small';
my $S = $SIZES{$size} or die "NVS_FLEET_SIZE: small or long\n";
$S->{nodes}   = $ENV{NVS_FLEET_NODES}   if $ENV{NVS_FLEET_NODES};
$S->{seconds} = $ENV{NVS_FLEET_SECONDS} if $ENV{NVS_FLEET_SECONDS};
my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;
$S->{drain} *= $slow;
my $SEED = $ENV{NVS_FLEET_SEED} // ((time ^ $$) & 0x7fffffff);
srand($SEED);
diag("fleet: size=$size nodes=$S->{nodes} seconds=$S->{seconds} writers=$S->{writers} seed=$SEED");

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my ($rc, $out) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'replica', $dir ]);
is($rc, 0, 'a streaming standby made with pg_basebackup') or BAIL_OUT("pgtmp.sh replica: $out");
my $dbh = $pg->dbh;
$dbh->do(q{ALTER SYSTEM SET synchronous_standby_names = ''});
$dbh->do('SELECT pg_reload_conf()');

# --- relays -------------------------------------------------------------------------------
my @uport = (NvsTest::free_port(), NvsTest::free_port());
my @up;
sub start_up {
    my ($i, %o) = @_;
    $up[$i] = NvsTest::Daemon->start($pg, socket => "$dir/up$i.sock", %o, set => {
        listen_tcp => "127.0.0.1:$uport[$i]", tcp_plaintext => 'on', datastore_replica_host => "$dir/replica/sock",
        poll_interval_ms => 100, tick_idle_ms => 500, reconnect_min_ms => 50, reconnect_max_ms => 500,
        max_clients => 64 + 40 * $S->{nodes} });
}
start_up($_) for 0, 1;
ok($up[$_]->wait_log(qr/hot standby connected/, 10 * $slow), "upstream $_ reads from the standby") for 0, 1;
# The first relay installed the schema.
my ($START_ID) = $dbh->selectrow_array('SELECT coalesce(max(id), 0) FROM datastore_changelog');

my @node;
sub start_node {
    my ($i, %o) = @_;
    my @list = map {"127.0.0.1:$uport[$_]"} $i % 2 ? (1, 0) : (0, 1);
    $node[$i] = NvsTest::Daemon->start($pg, socket => "$dir/n$i.sock", ready_timeout => 30 * $slow, %o, set => {
        upstream => join(',', @list), upstream_tls => 'off', node_name => "n$i", upstream_timeout_ms => 1500,
        reconnect_min_ms => 50, reconnect_max_ms => 500 });
}
start_node($_) for 0 .. $S->{nodes} - 1;
pass("$S->{nodes} node relays started");

# --- subscribers, all in this process -------------------------------------------------------
# Per subscriber: sessions [{start, asked, acked, toks => [...]}], and the current connection.
my @SUBS;
for my $i (0 .. $S->{nodes} - 1) {
    push @SUBS, { name => "n$i-he", home => $i, at => $i, table => 'health_events', mode => 'token' },
        { name => "n$i-me", home => $i, at => $i, table => 'maintenance_events', mode => 'token' },
        { name => "n$i-dur", home => $i, at => $i, table => 'health_events', mode => 'durable' };
}
my (%tok_of, @errors, %fault);

sub node_alive { my ($i) = @_; return $node[$i] && !defined $node[$i]->wait_exit(0) }

sub sub_connect {
    my ($s) = @_;
    my $c = eval { NvsTest::Client->connect($node[ $s->{at} ]->socket) } or return 0;
    my %w = (sid => 1, table => $s->{table});
    if ($s->{mode} eq 'durable') { $w{consumer} = 'fleet' }
    elsif (defined $s->{last}) { $w{resumeAfter} = { _data => $s->{last} } }
    $c->watch(%w);
    $s->{c} = $c;
    push @{ $s->{sessions} }, { asked => $w{resumeAfter} ? $s->{last} : '-', acked => $s->{acked} // '-', toks => [],
        node => $s->{at} };
    return 1;
}

sub sub_lost {
    my ($s, $why) = @_;
    $s->{c}->close if $s->{c};
    $s->{c} = undef;
    $s->{retry_at} = NvsTest::now() + 0.2;
    # A token subscriber moves to the next live node; a durable one waits for its own.
    if ($s->{mode} eq 'token' && !node_alive($s->{at})) {
        for my $k (1 .. $S->{nodes}) {
            my $j = ($s->{at} + $k) % $S->{nodes};
            if (node_alive($j)) { $s->{at} = $j; last }
        }
    }
    $s->{at} = $s->{home} if $s->{mode} eq 'token' && $s->{at} != $s->{home} && node_alive($s->{home}) && rand() < 0.5;
}

sub frame {
    my ($s, $line) = @_;
    my $f = eval { $J->decode($line) };
    my $sess = $s->{sessions}[-1];
    if (ref $f ne 'HASH') { push @errors, "$s->{name}: not JSON: " . substr($line, 0, 80); return }
    my $op = $f->{op} // '';
    if ($op eq 'bookmark') {
        $sess->{start} //= $f->{token}{_data};
    } elsif ($op eq 'event') {
        my $tok = $f->{event}{_id}{_data};
        push @{ $sess->{toks} }, [ $tok, $f->{event}{documentKey}{_id} // '' ];
        $s->{last} = $tok;
        $s->{ack_due} = $tok;
    } elsif ($op eq 'error') {
        # 6: not ready yet (its node is still reaching an upstream), 11601: interrupted
        # (the node is stopping); anything else is a finding.
        my $code = $f->{code} // 0;
        push @errors, "$s->{name}: error $code: " . ($f->{message} // '') unless $code == 6 || $code == 11601;
        sub_lost($s, "error $f->{code}");
    }
}

sub pump_subs {
    my ($secs) = @_;
    my $until = NvsTest::now() + $secs;
    do {
        my $now = NvsTest::now();
        for my $s (grep { !$_->{c} && ($_->{retry_at} // 0) <= $now && node_alive($_->{at}) } @SUBS) {
            sub_connect($s) or $s->{retry_at} = $now + 0.2;
        }
        my $sel = IO::Select->new(map { $_->{c}->sock } grep { $_->{c} } @SUBS);
        my %by = map { fileno($_->{c}->sock) => $_ } grep { $_->{c} } @SUBS;
        for my $fh ($sel->can_read(0.05)) {
            my $s = $by{ fileno($fh) };
            my $c = $s->{c};
            my $r = sysread($c->sock, $c->{buf}, 262144, length $c->{buf});
            next if !defined $r && ($!{EAGAIN} || $!{EINTR});
            if (!$r) { sub_lost($s, 'eof'); next }
            while ((my $i = index($c->{buf}, "\n")) >= 0) {
                frame($s, substr($c->{buf}, 0, $i + 1, ''));
                last unless $s->{c};
            }
            if ($s->{c} && $s->{mode} eq 'durable' && $s->{ack_due}) {
                $s->{c}->ack(1, { _data => $s->{ack_due} });
                $s->{acked} = delete $s->{ack_due};
            }
        }
    } while (NvsTest::now() < $until);
}

# --- writers ----------------------------------------------------------------------------------
# Forked before any subscriber connects (a writer holds no subscriber's socket), they
# start once every subscriber has its start position.
my @wpids;
for my $w (1 .. $S->{writers}) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        srand($SEED + $w);
        Time::HiRes::sleep(0.05) until -e "$dir/go" || getppid() == 1;
        my $t_end = NvsTest::now() + $S->{seconds};
        my ($h, %live, $n);
        while (NvsTest::now() < $t_end) {
            $h //= eval { $pg->dbh(autocommit => 0) } or do { Time::HiRes::sleep(0.1); next };
            eval {
                for (1 .. 1 + int rand 4) {
                    my @ids = keys %live;
                    my $r = rand;
                    if (!@ids || $r < 0.5) {
                        my $table = rand() < 0.6 ? 'health_events' : 'maintenance_events';
                        my $doc = $J->encode({ w => $w, n => ++$n, pad => 'x' x int rand 100 });
                        my ($id) = $table eq 'health_events'
                            ? $h->selectrow_array(q{INSERT INTO health_events (node_name, event_type, document)
                                  VALUES (?, 'GpuXidError', ?::jsonb) RETURNING id}, undef, "fleet-$w", $doc)
                            : $h->selectrow_array(q{INSERT INTO maintenance_events (event_id, csp, cluster_name,
                                  node_name, status, event_received_timestamp, document)
                                  VALUES (?, 'gcp', 'fleet', ?, 'DETECTED', now(), ?::jsonb) RETURNING id}, undef,
                                  "fw$w-$n", "fleet-$w", $doc);
                        $live{$id} = $table;
                    } elsif ($r < 0.85) {
                        my $id = $ids[ int rand @ids ];
                        $h->do("UPDATE $live{$id} SET document = document || jsonb_build_object('n', ?::int),"
                            . ' updated_at = now() WHERE id = ?', undef, ++$n, $id);
                    } else {
                        my $id = $ids[ int rand @ids ];
                        $h->do("DELETE FROM $live{$id} WHERE id = ?", undef, $id);
                        delete $live{$id};
                    }
                }
                rand() < 0.1 ? $h->rollback : $h->commit;
                1;
            } or do { eval { $h->disconnect }; $h = undef };
            # An insert of a rolled back or lost transaction may be gone: a later update or
            # delete of it changes nothing, which is harmless.
            Time::HiRes::sleep($S->{pause}[0] + rand($S->{pause}[1] - $S->{pause}[0]));
        }
        POSIX::_exit(0);
    }
    push @wpids, $pid;
}

# --- faults, one after another while the writers run ------------------------------------------
my @KINDS = qw(node_kill upstream_freeze pg_restart upstream_kill standby_restart);
my @plan = List::Util::shuffle(@KINDS);
my $t_end;
sub inject {
    my ($kind) = @_;
    $fault{$kind}++;
    diag(sprintf 'fault at +%.1fs: %s', $S->{seconds} - ($t_end - NvsTest::now()), $kind);
    if ($kind eq 'node_kill') {
        my $i = int rand $S->{nodes};
        $node[$i]->kill('KILL');
        $node[$i]->wait_exit(5);
        pump_subs(1);
        start_node($i, wait_ready => 0);
    } elsif ($kind eq 'upstream_freeze') {
        my $i = int rand 2;
        $up[$i]->kill('STOP');
        pump_subs(3);
        $up[$i]->kill('CONT');
    } elsif ($kind eq 'upstream_kill') {
        my $i = int rand 2;
        $up[$i]->kill('KILL');
        $up[$i]->wait_exit(5);
        pump_subs(1.5);
        start_up($i, wait_ready => 0);
    } elsif ($kind eq 'pg_restart') {
        eval { $pg->restart('immediate') } or push @errors, "pg restart: $@";
    } elsif ($kind eq 'standby_restart') {
        my ($r, $o) = NvsTest::run_cmd([ 'sh', $NvsTest::PGTMP, 'restart', "$dir/replica", 'fast' ]);
        push @errors, "standby restart: $o" if $r;
    }
}

my $wait = NvsTest::now() + 30 * $slow;
pump_subs(0.2) while NvsTest::now() < $wait && grep { !$_->{sessions} || !defined $_->{sessions}[-1]{start} } @SUBS;
is(scalar(grep { !$_->{sessions} || !defined $_->{sessions}[-1]{start} } @SUBS), 0,
    scalar(@SUBS) . ' subscribers streaming');
open(my $go, '>', "$dir/go") or die $!;
close $go;
$t_end = NvsTest::now() + $S->{seconds};
pump_subs(1);
# Every kind once in a random order, then (long form) more of them at random.
while (@plan || NvsTest::now() < $t_end - 1) {
    @plan = List::Util::shuffle(@KINDS) unless @plan;
    inject(shift @plan);
    pump_subs($S->{gap} * (0.7 + rand 0.6));
}
waitpid($_, 0) for @wpids;

# Every tier back (a node killed last may still be starting), then the sentinels: their
# ticks come after every writer finished, so a subscriber that has its sentinel has had
# its chance at everything before it.
for my $d (@up, @node) { eval { $d->wait_ready(30 * $slow) } or push @errors, "a relay never came back: $@" }
my $sdbh = $pg->dbh;
my $sent_he = NvsTest::insert_health_event($sdbh, node => 'fleet-sentinel');
my ($sent_me) = $sdbh->selectrow_array(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status,
    event_received_timestamp, document) VALUES ('sentinel', 'gcp', 'fleet', 'fleet-sentinel', 'DETECTED', now(), '{}')
    RETURNING id});
my %sentinel = (health_events => "$sent_he", maintenance_events => "$sent_me");
my $deadline = NvsTest::now() + $S->{drain};
sub has_sentinel {
    my ($s) = @_;
    for my $sess (@{ $s->{sessions} || [] }) { return 1 if grep { $_->[1] eq $sentinel{ $s->{table} } } @{ $sess->{toks} } }
    return 0;
}
pump_subs(0.5) while NvsTest::now() < $deadline && grep { !has_sentinel($_) } @SUBS;

# --- checks ---------------------------------------------------------------------------------
my $rows = $sdbh->selectall_arrayref(q{SELECT id, table_name, record_id::text FROM datastore_changelog
    WHERE id > ? ORDER BY id}, undef, $START_ID);
my %cl = map { $_->[0] => { table => $_->[1], record => $_->[2] } } @$rows;
my %T = map { $_ => 0 } qw(expected delivered lost dup order tokmix sentinel sessions);
my @problems;
sub problem { my ($k, $m) = @_; $T{$k}++; push @problems, $m if @problems < 30 }
# Ticks commit asynchronously (daemon/pg/ticker.c): a PostgreSQL crash can take
# a tick after its events were sent, and they come again under a later tick.
# So a change may carry two tokens, and a token subscriber get it twice, when
# the earlier token names a tick that is not in nvsrelay.tick and the later
# one a tick that is.
my %kept = map { $_->[0] => 1 } @{ $sdbh->selectall_arrayref('SELECT tick_id FROM nvsrelay.tick') };
my $relost = 0;
sub lost_then_kept {
    my ($x, $y) = sort @_;
    return !$kept{ NvsTest::token_tick($x) } && $kept{ NvsTest::token_tick($y) };
}
for my $s (@SUBS) {
    my (%got, %mine, @first, @delivered);
    for my $sess (@{ $s->{sessions} || [] }) {
        $T{sessions}++;
        my $cur = $sess->{start};
        next unless @{ $sess->{toks} } || defined $cur;
        problem('order', "$s->{name}: a session on n$sess->{node} started at " . ($cur // 'no bookmark')
            . ", asked to resume after $sess->{asked}") if $sess->{asked} ne '-' && ($cur // '') ne $sess->{asked};
        if ($s->{mode} eq 'durable' && defined $cur) {
            my $acked = $sess->{acked};
            my @skipped = grep { ($acked eq '-' || $_ gt $acked) && $_ le $cur } @delivered;
            problem('order', "$s->{name}: started at $cur past its last ack $acked: " . scalar(@skipped)
                . ' unacknowledged events never redelivered') if @skipped;
        }
        for (@{ $sess->{toks} }) {
            my ($tok) = @$_;
            $T{delivered}++;
            problem('order', "$s->{name}: $tok after " . ($cur // 'no start bookmark')) if !defined $cur || $tok le $cur;
            $cur = $tok;
            push @delivered, $tok;
            my $cid = NvsTest::token_cid($tok);
            if (defined $tok_of{$cid} && $tok_of{$cid} ne $tok) {
                if (lost_then_kept($tok_of{$cid}, $tok)) { $relost++ }
                else { problem('tokmix', "$s->{name}: changelog id $cid as $tok and elsewhere as $tok_of{$cid}") }
            }
            $tok_of{$cid} //= $tok;
            if ($got{$cid}++) {
                problem('dup', "$s->{name}: $tok twice")
                    if $s->{mode} eq 'token' && !($mine{$cid} ne $tok && lost_then_kept($mine{$cid}, $tok));
                next;
            }
            $mine{$cid} = $tok;
            push @first, $cid;
        }
    }
    problem('sentinel', "$s->{name}: never got the sentinel") unless has_sentinel($s);
    my @exp = grep { $cl{$_}{table} eq $s->{table} } map { $_->[0] } @$rows;
    $T{expected} += @exp;
    my @lost = grep { !$got{$_} } @exp;
    $T{lost} += @lost;
    push @problems, "$s->{name}: lost " . scalar(@lost) . " changes, e.g. changelog ids @lost[0 .. ($#lost < 4 ? $#lost : 4)]"
        if @lost;
    my (%er, %gr);
    push @{ $er{ $cl{$_}{record} } }, $_ for grep { $got{$_} } @exp;
    push @{ $gr{ $cl{$_}{record} } }, $_ for grep { $cl{$_} && $cl{$_}{table} eq $s->{table} } @first;
    for my $r (keys %er) {
        my ($e, $g) = (join(',', @{ $er{$r} }), join(',', @{ $gr{$r} || [] }));
        problem('order', "$s->{name}: record $r delivered as [$g], committed as [$e]") if $e ne $g;
    }
    problem('lost', "$s->{name}: an event of the other table") if grep { !$cl{$_} || $cl{$_}{table} ne $s->{table} } @first;
}
diag(sprintf 'fleet: changes=%d expected=%d delivered=%d lost=%d dup=%d order=%d tokmix=%d sessions=%d faults=%s seed=%d',
    scalar @$rows, $T{expected}, $T{delivered}, $T{lost}, $T{dup}, $T{order}, $T{tokmix}, $T{sessions},
    join(',', map {"$_=$fault{$_}"} sort keys %fault), $SEED);
diag("deliveries under a later token after a crash took their tick: $relost");
diag("problem: $_") for @problems;
diag("error: $_") for @errors[ 0 .. ($#errors < 20 ? $#errors : 20) ];

cmp_ok(scalar @$rows, '>', 100, 'the writers committed changes (' . scalar(@$rows) . ')');
is(scalar(grep { !$fault{$_} } @KINDS), 0, 'every kind of fault was injected: ' . join(' ', @KINDS));
is($T{sentinel}, 0, 'every subscriber drained up to its sentinel');
is($T{lost}, 0, 'lost == 0 (' . scalar(@SUBS) . " subscribers, $T{expected} expected deliveries)");
is($T{order}, 0, 'order intact: tokens increasing per session, commit order per record, resumes where asked');
is($T{dup}, 0, 'nothing twice for a subscriber resuming by token (a tick lost in a crash aside)');
is($T{tokmix}, 0, 'one token per change on every relay (a tick lost in a crash aside)');
is(scalar @errors, 0, 'no error frame other than "not ready yet" or "stopping", no tier that did not come back');
my $moved = 0;
for my $s (grep { $_->{mode} eq 'token' } @SUBS) { $moved += grep { $_->{node} != $s->{home} && @{ $_->{toks} } } @{ $s->{sessions} } }
cmp_ok($moved, '>', 0, "token subscribers resumed on another node than their own ($moved sessions)");
is($_->stop(20), 0, 'clean stop') for @node, @up;
done_testing();

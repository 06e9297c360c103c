#!/usr/bin/perl
# 20-resume.t - positions survive everything: resuming by token (from the
# ring and from PostgreSQL once the ring has moved on), durable consumers
# resuming from their acknowledged position, SIGKILL of the daemon in the
# middle of a stream (nothing lost, duplicates only after the last stored
# ack), and a PostgreSQL crash-restart while clients stay connected.  The
# ring and the batch page are kept tiny so catch-up reads and paging are
# exercised, not just the in-memory path.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use NvsTest;

my %small = (ring_events => 8, batch_rows => 3, ack_flush_ms => 50);
my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => \%small);
my $dbh = $pg->dbh();
$dbh->{AutoInactiveDestroy} = 1;

sub tok { $_[0]{event}{_id}{_data} }
sub rid { $_[0]{event}{documentKey}{_id} }

sub insert_n {
    my ($n, $prefix) = @_;
    return [ map { NvsTest::insert_health_event($dbh, node => "$prefix-$_") } 1 .. $n ];
}

# Reads events until every id in $want is seen or the time is up.
sub collect {
    my ($c, $want, $timeout, %o) = @_;
    my %left = map { $_ => 1 } @$want;
    my @got;
    my $deadline = NvsTest::now() + $timeout;
    while (%left && NvsTest::now() < $deadline) {
        my $ev = $c->events(1, $deadline - NvsTest::now(), sid => $o{sid} // 1);
        last unless @$ev;
        push @got, $ev->[0];
        delete $left{ rid($ev->[0]) };
        $c->ack($o{sid} // 1, $ev->[0]{event}{_id}) if $o{ack};
    }
    return \@got;
}

# --- resumeAfter, within the ring and behind it --------------------------------
my $c = NvsTest::Client->connect($d->socket);
$c->watch();
$c->recv_op('bookmark', 10);
my $first = insert_n(3, 'r');
my $ev = collect($c, $first, 10);
is_deeply([ map { rid($_) } @$ev ], $first, 'three events');
$c->close;
my $more = insert_n(3, 's');
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => $ev->[1]{event}{_id});
my $got = collect($c, [ $first->[2], @$more ], 10);
is_deeply([ map { rid($_) } @$got ], [ $first->[2], @$more ], 'resumeAfter the 2nd: 3rd and the new ones, no gap, no duplicate');
$c->close;

my $many = insert_n(20, 't');   # pushes the earlier events out of the 8-slot ring
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => $ev->[0]{event}{_id});
$got = collect($c, $many, 15);
is_deeply([ map { rid($_) } @$got ], [ @$first[1, 2], @$more, @$many ], 'resume from behind the ring: catch-up reads, then live, in order');
my @toks = map { tok($_) } @$got;
is_deeply(\@toks, [ sort @toks ], 'tokens strictly ordered across the catch-up/live switch');
$c->close;

# --- durable consumer ------------------------------------------------------------
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'node-drainer');
ok($c->recv_op('bookmark', 10), 'durable consumer started at the head');
my $five = insert_n(5, 'u');
$got = collect($c, $five, 10);
is(scalar @$got, 5, 'five events');
$c->ack(1, $got->[2]{event}{_id});
select(undef, undef, undef, 0.5);
$c->close;
my ($stored) = $dbh->selectrow_array(q{SELECT resume_token::text FROM resume_tokens WHERE client_name = 'node-drainer'});
my $st = $NvsTest::JSON->decode($stored);
is($st->{token}, tok($got->[2]), 'resume_tokens holds the acknowledged token, not the last sent');
is($st->{eventID}, NvsTest::token_cid(tok($got->[2])), 'with NVSentinel\'s eventID');
like($st->{timestamp}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/, 'and timestamp');
my $later = insert_n(2, 'v');
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'node-drainer');
my $re = collect($c, $later, 10);
is_deeply([ map { rid($_) } @$re ], [ @$five[3, 4], @$later ], 'consumer resumes after its ack: unacked events again, then new ones');
$c->close;

# --- SIGKILL mid-stream -----------------------------------------------------------
my $N = 200;
my $writer = fork // die "fork: $!";
if (!$writer) {
    my $w = $pg->dbh(autocommit => 0);
    my $i = 0;
    while ($i < $N) {
        my $k = 1 + int rand 5;
        for (1 .. $k) { last if $i >= $N; NvsTest::insert_health_event($w, node => 'k-' . $i++) }
        $w->commit;
        select(undef, undef, undef, 0.005 + rand 0.01);
    }
    $w->disconnect;
    POSIX::_exit(0);
}
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'event-exporter');
$c->recv_op('bookmark', 10);
my (%seen, $n_before);
my $deadline = NvsTest::now() + 20;
while (keys %seen < 60 && NvsTest::now() < $deadline) {
    my $e = $c->events(1, 5);
    last unless @$e;
    $seen{ rid($e->[0]) }++;
    $c->ack(1, $e->[0]{event}{_id});
}
$n_before = keys %seen;
cmp_ok($n_before, '>=', 60, 'stream under way before the kill');
$d->kill('KILL');
is($d->wait_exit(10), 128 + 9, 'daemon killed with SIGKILL');
$c->close;
my ($acked) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'event-exporter'});
waitpid($writer, 0);
is($? >> 8, 0, 'writer finished');
$d = NvsTest::Daemon->start($pg, set => \%small);
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'event-exporter');
my $ids = $dbh->selectcol_arrayref(q{SELECT id FROM health_events WHERE node_name LIKE 'k-%'});
is(scalar @$ids, $N, "writer committed $N rows");
my %want = map { $_ => 1 } @$ids;
my ($dups_before_ack, $dups) = (0, 0);
$deadline = NvsTest::now() + 30;
while (grep { !$seen{$_} } keys %want and NvsTest::now() < $deadline) {
    my $e = $c->events(1, 5);
    last unless @$e;
    my $r = rid($e->[0]);
    next unless $want{$r};
    if ($seen{$r}++) {
        $dups++;
        $dups_before_ack++ if tok($e->[0]) le $acked;
    }
    $c->ack(1, $e->[0]{event}{_id});
}
my @missing = grep { !$seen{$_} } keys %want;
is(scalar @missing, 0, 'SIGKILL: nothing lost (' . scalar(keys %seen) . " of $N seen, $dups redelivered)");
is($dups_before_ack, 0, 'redeliveries only after the last stored ack');
$c->close;

# --- PostgreSQL crash-restart while clients stay connected ------------------------
$c = NvsTest::Client->connect($d->socket);
$c->watch(sid => 5);
$c->recv_op('bookmark', 10);
my $pre = insert_n(10, 'p');
$dbh->disconnect;
$pg->restart('immediate');
$dbh = $pg->dbh();
my $post = insert_n(10, 'q');
$got = collect($c, [ @$pre, @$post ], 30, sid => 5);
my %g = map { rid($_) => 1 } @$got;
is(scalar(grep { $g{$_} } @$pre, @$post), 20, 'all 20 rows delivered across the PostgreSQL restart');
ok(!$c->eof, 'the client stayed connected');
like($d->log, qr/postgresql connection lost/, 'the daemon noticed the restart');
is($d->stop, 0, 'clean stop');

# --- several consumers' positions in one write ------------------------------------
# A flush stores every consumer that acknowledged since the last in one
# statement (a flush a second here, so the seven acknowledgements below
# meet in one): names that need quoting in it each get their own position.
my $hport = NvsTest::free_port();
$d = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 1000, http_listen => "127.0.0.1:$hport" });
my @names = ('q"uote', 'back\\slash', 'com,ma', '{brace}', 'NULL', ' spaced ', 'plain');
my @mc = map { NvsTest::Client->connect($d->socket) } @names;
for my $i (0 .. $#names) {
    $mc[$i]->watch(consumer => $names[$i]);
    $mc[$i]->recv_op('bookmark', 10);
}
my $rows = insert_n(3, 'm');
my %acked_tok;
for my $i (0 .. $#names) {
    my $e = $mc[$i]->events(3, 10);
    $mc[$i]->ack(1, $e->[-1]{event}{_id});
    $acked_tok{ $names[$i] } = tok($e->[-1]);
}
# Each stores what it acknowledged, or further: a bookmark sent after the
# events moves a consumer that acknowledged everything on (hub_durable_pos).
my $all_stored = sub {
    my %have = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(q{SELECT client_name, resume_token->>'token' FROM resume_tokens}) };
    return !grep { ($have{$_} // '') lt $acked_tok{$_} } @names;
};
my $until = NvsTest::now() + 10;
Time::HiRes::sleep(0.1) until $all_stored->() || NvsTest::now() > $until;
ok($all_stored->(), 'seven consumers acknowledging together, names with quotes, a backslash, a comma, braces: each stored')
    or diag(explain($dbh->selectall_arrayref(q{SELECT client_name, resume_token->>'token' FROM resume_tokens})), explain(\%acked_tok));
my ($eid) = $dbh->selectrow_array(q{SELECT resume_token->>'eventID' FROM resume_tokens WHERE client_name = 'com,ma'});
cmp_ok($eid, '>=', NvsTest::token_cid($acked_tok{'com,ma'}), '... with the eventID of its position');
my ($batched) = NvsTest::metrics_text($hport) =~ /pg_query_duration_seconds_count\{kind="position_saves"\} (\d+)/;
cmp_ok($batched // 0, '>', 0, 'in one statement for several of them');
$_->close for @mc;

# A stored token of another generation (a restore started a new one) that
# compares above this generation's: the consumer's next save replaces it.
my ($gen) = $dbh->selectrow_array(q{SELECT lpad(to_hex(generation), 8, '0') FROM nvsrelay.meta});
my $other = $gen eq 'ffffffff' ? 'fffffffe' : 'ffffffff';
$dbh->do(q{INSERT INTO resume_tokens (client_name, resume_token, last_updated) VALUES ('old-gen', jsonb_build_object('token', ?::text), now())},
    undef, $other . ('0' x 32));
my $og = NvsTest::Client->connect($d->socket);
$og->watch(sid => 1, consumer => 'old-gen');
my $ogf = $og->recv_op([ 'error', 'bookmark' ], 10);
is($ogf && $ogf->{code}, 286, 'a stored position of another generation: 286');
$og->watch(sid => 2, consumer => 'old-gen', resumeAfter => { _data => $acked_tok{'com,ma'} });
my $ogb = $og->recv_op('bookmark', 10);
$og->ack(2, $ogb->{token});
$until = NvsTest::now() + 10;
my $now_stored = sub { ($dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'old-gen'}))[0] };
Time::HiRes::sleep(0.1) until substr($now_stored->(), 0, 8) eq $gen || NvsTest::now() > $until;
is(substr($now_stored->(), 0, 8), $gen, "... resumed by token and acknowledged, it is stored in this generation");
$og->close;
is($d->stop, 0, 'clean stop');
done_testing();

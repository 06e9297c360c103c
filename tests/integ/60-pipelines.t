#!/usr/bin/perl
# 60-pipelines.t - NVSentinel's five change-stream pipelines (tests/pipelines/)
# through the daemon, against health events written the way NVSentinel writes
# them: inserts like the platform connector, status updates with jsonb_set
# like fault-quarantine and node-drainer.  Each subscription must get exactly
# the events its pipeline selects, in order; a subscription without a
# pipeline gets all of them.  Bad pipelines are refused at watch with an
# error frame naming the stage and the path, and the connection stays
# usable.  While a pipeline filters everything out, bookmarks still carry
# the position forward and a durable consumer's stored position follows.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my @NAMES = qw(NodeQuarantineStatus AllHealthEventInserts ProcessableHealthEventInserts
    ProcessableNonFatalUnhealthyInserts QuarantinedAndDrainedNodes);
my %PIPE;
for my $n (@NAMES) {
    my $text = NvsTest::slurp("$NvsTest::ROOT/tests/pipelines/$n.json");
    $PIPE{$n} = $NvsTest::JSON->decode($text);
}

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 50 });
my $dbh = $pg->dbh();

sub tok { $_[0]{event}{_id}{_data} }

# fault-quarantine's UpdateNodeQuarantineStatus: column and document in step.
sub quarantine {
    my ($id, $status) = @_;
    $dbh->do(q{UPDATE health_events SET node_quarantined = ?, document = jsonb_set(jsonb_set(document,
      '{healtheventstatus,nodequarantined}', to_jsonb(?::text)), '{healtheventstatus,spanids,fault-quarantine}',
      '"4bf92f3577b34da6"') WHERE id = ?}, undef, $status, $status, $id);
}

# node-drainer's UpdatePodEvictionStatus.
sub eviction {
    my ($id, $status) = @_;
    $dbh->do(q{UPDATE health_events SET user_pods_eviction_status = ?, document = jsonb_set(document,
      '{healtheventstatus,userpodsevictionstatus,status}', to_jsonb(?::text)) WHERE id = ?},
        undef, $status, $status, $id);
}

# Reads sid's frames on $c until the stream has passed $last (an event or a
# bookmark at or after it); returns the events (arrayref) and the furthest
# bookmark token seen.
sub until_past {
    my ($c, $sid, $last, $timeout) = @_;
    my $deadline = NvsTest::now() + ($timeout || 15);
    my (@ev, $bm);
    while (NvsTest::now() < $deadline) {
        my $f = $c->recv($deadline - NvsTest::now()) or last;
        next unless defined $f->{sid} && $f->{sid} == $sid;
        if ($f->{op} eq 'event') {
            push @ev, $f;
            return (\@ev, $bm) if tok($f) ge $last;
        } elsif ($f->{op} eq 'bookmark') {
            $bm = $f->{token}{_data};
            return (\@ev, $bm) if $bm ge $last;
        } elsif ($f->{op} eq 'error') {
            diag("error frame: $f->{message}");
            last;
        }
    }
    return (\@ev, $bm);
}

# --- one subscriber per pipeline, and one that takes everything ---------------
my (%cl, $all);
for my $i (0 .. $#NAMES) {
    my $c = NvsTest::Client->connect($d->socket);
    $c->watch(sid => $i + 1, table => 'HealthEvents', pipeline => $PIPE{ $NAMES[$i] });
    my $bm = $c->recv_op([qw(bookmark error)], 10);
    is($bm && $bm->{op}, 'bookmark', "$NAMES[$i]: watch accepted")
        or diag(explain($bm));
    $cl{ $NAMES[$i] } = [ $c, $i + 1 ];
}
$all = NvsTest::Client->connect($d->socket);
$all->watch(sid => 9);
ok($all->recv_op('bookmark', 10), 'unfiltered subscriber started');

# --- the story of a few health events -----------------------------------------
my %id;
my @log;    # [label, id, operationType] in commit order
sub step { push @log, [@_] }

$id{fatal} = NvsTest::insert_health_event($dbh, node => 'node-a');
step('fatal insert', $id{fatal}, 'insert');
$id{store_only} = NvsTest::insert_health_event($dbh, node => 'node-b', strategy => 2);
step('STORE_ONLY insert', $id{store_only}, 'insert');
$id{legacy} = NvsTest::insert_health_event($dbh, node => 'node-c', healthevent => { processingStrategy => undef });
step('insert without processingStrategy', $id{legacy}, 'insert');
$id{healthy} = NvsTest::insert_health_event($dbh, node => 'node-d', fatal => 0, healthy => 1);
step('healthy insert', $id{healthy}, 'insert');
$id{hea} = NvsTest::insert_health_event($dbh, node => 'node-e', fatal => 0, agent => 'health-events-analyzer',
    strategy => 3);
step('analyzer insert', $id{hea}, 'insert');
$id{analyse} = NvsTest::insert_health_event($dbh, node => 'node-f', fatal => 0, strategy => 3);
step('STORE_AND_ANALYSE insert', $id{analyse}, 'insert');
quarantine($id{fatal}, 'Quarantined');
step('fatal quarantined', $id{fatal}, 'update');
eviction($id{fatal}, 'InProgress');
step('fatal drain in progress', $id{fatal}, 'update');
eviction($id{fatal}, 'Succeeded');
step('fatal drained', $id{fatal}, 'update');
quarantine($id{store_only}, 'Cancelled');
step('STORE_ONLY cancelled', $id{store_only}, 'update');
$id{preset} = NvsTest::insert_health_event($dbh, node => 'node-g', status => { nodequarantined => 'AlreadyQuarantined' });
step('insert already quarantined', $id{preset}, 'insert');
$dbh->do(q{UPDATE health_events SET document = jsonb_set(jsonb_set(document,
  '{healtheventstatus,nodequarantined}', '"UnQuarantined"'), '{healtheventstatus,userpodsevictionstatus,status}',
  '"Succeeded"') WHERE id = ?}, undef, $id{healthy});
step('healthy unquarantined and drained', $id{healthy}, 'update');
$dbh->do(q{UPDATE health_events SET document = jsonb_set(document, '{healtheventstatus,faultremediated}',
  '{"value": true}') WHERE id = ?}, undef, $id{fatal});
step('fatal remediated', $id{fatal}, 'update');
$dbh->do('DELETE FROM health_events WHERE id = ?', undef, $id{legacy});
step('legacy deleted', $id{legacy}, 'delete');

my $ev = $all->events(scalar @log, 20, sid => 9);
is(scalar @$ev, scalar @log, 'the unfiltered subscriber got every change');
is_deeply([ map { [ $_->{event}{documentKey}{_id}, $_->{event}{operationType} ] } @$ev ],
    [ map { [ $_->[1], $_->[2] ] } @log ], '... in commit order');
my %label_of_tok = map { tok($ev->[$_]) => $log[$_][0] } 0 .. $#log;
my $last = tok($ev->[-1]);

my %want = (
    NodeQuarantineStatus => [ 'fatal quarantined', 'STORE_ONLY cancelled', 'insert already quarantined',
        'healthy unquarantined and drained' ],
    AllHealthEventInserts => [ 'fatal insert', 'STORE_ONLY insert', 'insert without processingStrategy',
        'healthy insert', 'analyzer insert', 'STORE_AND_ANALYSE insert', 'insert already quarantined' ],
    ProcessableHealthEventInserts => [ 'fatal insert', 'insert without processingStrategy', 'healthy insert',
        'insert already quarantined' ],
    ProcessableNonFatalUnhealthyInserts => [ 'fatal insert', 'insert without processingStrategy',
        'STORE_AND_ANALYSE insert', 'fatal quarantined', 'fatal drain in progress', 'fatal drained',
        'insert already quarantined', 'fatal remediated' ],
    QuarantinedAndDrainedNodes => [ 'fatal drained', 'STORE_ONLY cancelled', 'healthy unquarantined and drained' ],
);

for my $n (@NAMES) {
    my ($c, $sid) = @{ $cl{$n} };
    my ($got, $bm) = until_past($c, $sid, $last, 20);
    is_deeply([ map { $label_of_tok{ tok($_) } // '?' } @$got ], $want{$n}, "$n: exactly its events, in order");
    ok(!grep({ !defined $label_of_tok{ tok($_) } } @$got), "$n: every event is one of the changes");
    my %seen;
    ok(!grep({ $seen{ tok($_) }++ } @$got), "$n: no event twice");
    my $pos = @$got && tok($got->[-1]) ge ($bm // '') ? tok($got->[-1]) : $bm;
    ok(defined $pos && $pos ge $last, "$n: the stream passed the last change (event or bookmark)");
}

# --- bad pipelines are refused at watch, the connection stays usable ----------
my $bad = NvsTest::Client->connect($d->socket);
my @refused = (
    [ [ { '$project' => { a => 1 } } ], qr/pipeline\[0\]: stage \$project is not supported/, 'a $project stage' ],
    [ [ { '$match' => { 'fullDocument.healthevent.agent' => { '$regex' => '^gpu' } } } ],
        qr/pipeline\[0\]\.\$match\.fullDocument\.healthevent\.agent: unknown operator \$regex/, 'an unknown operator' ],
    [ [ { '$match' => { operationType => { '$in' => 'insert' } } } ],
        qr/operationType\.\$in: expected an array/, '$in without an array' ],
    [ { '$match' => {} }, qr/pipeline: expected an array of stages/, 'a pipeline that is not an array' ],
    [ [ { '$match' => { a => 1 }, '$limit' => 1 } ], qr/exactly one key/, 'a stage with two keys' ],
);
for my $r (@refused) {
    my ($p, $re, $what) = @$r;
    $bad->watch(sid => 3, pipeline => $p);
    my $e = $bad->recv_op([qw(error bookmark)], 10);
    ok($e && $e->{op} eq 'error' && $e->{code} == 2 && $e->{codeName} eq 'BadValue', "$what: error 2 BadValue")
        or diag(explain($e));
    like($e && $e->{message}, $re, "$what: the message says where and what");
}
$bad->watch(sid => 3, pipeline => $PIPE{AllHealthEventInserts});
my $ok = $bad->recv_op([qw(error bookmark)], 10);
is($ok && $ok->{op}, 'bookmark', 'the same sid then watches with a good pipeline');
my $after_bad = NvsTest::insert_health_event($dbh, node => 'node-h');
my $bev = $bad->events(1, 10, sid => 3);
is($bev->[0] && $bev->[0]{event}{documentKey}{_id}, $after_bad, '... and receives its events');

# --- filtered-out ranges: bookmarks, and the durable position moves -------------
my $dur = NvsTest::Client->connect($d->socket);
$dur->watch(sid => 4, consumer => 'event-exporter', pipeline => $PIPE{AllHealthEventInserts});
my $start = $dur->recv_op('bookmark', 10);
ok($start, 'durable consumer with a pipeline started');
my ($t0) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'event-exporter'});
for my $i (1 .. 20) {
    quarantine($after_bad, $i % 2 ? 'Quarantined' : 'UnQuarantined');
}
my $upd = $all->events(21, 20, sid => 9);    # the insert above, then 20 updates
is(scalar @$upd, 21, 'the unfiltered subscriber saw the 20 updates');
my $last_upd = tok($upd->[-1]);
my ($got, $bm) = until_past($dur, 4, $last_upd, 15);
is(scalar @$got, 0, 'no event for the durable consumer: all updates filtered out');
ok(defined $bm && $bm ge $last_upd, 'a bookmark carries its position past the filtered range');
$dur->ack(4, { _data => $bm }) if defined $bm;
my $stored;
for (1 .. 100) {
    ($stored) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'event-exporter'});
    last if defined $stored && defined $bm && $stored ge $bm;
    select(undef, undef, undef, 0.1);
}
ok(defined $stored && defined $bm && $stored ge $bm, 'the stored position moved past the filtered range')
    or diag("stored " . ($stored // 'none') . ", bookmark " . ($bm // 'none') . ", start " . ($t0 // 'none'));
ok(defined $stored && (!defined $t0 || $stored gt $t0), '... forward from where it started');

# Reconnecting as the same consumer: the filtered range is not read again and
# the next matching insert is the first event.
$dur->close;
my $next = NvsTest::insert_health_event($dbh, node => 'node-i');
$dur = NvsTest::Client->connect($d->socket);
$dur->watch(sid => 4, consumer => 'event-exporter', pipeline => $PIPE{AllHealthEventInserts});
my $re = $dur->events(1, 15, sid => 4);
is($re->[0] && $re->[0]{event}{documentKey}{_id}, $next, 'after reconnecting, the next matching insert comes first');

$d->kill('TERM');
is($d->wait_exit(10), 0, 'exit status 0');
done_testing();

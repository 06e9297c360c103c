#!/usr/bin/perl
# 10-stream.t - the vertical slice over a real TLS PostgreSQL: inserts,
# updates and deletes reach a subscriber in order and in the documented
# shape; a transaction that took a lower changelog id but commits later is
# still delivered (after the one that committed first); a long open
# transaction does not hold back others; rolled-back rows never appear; bad
# frames get error frames while another subscriber keeps receiving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { max_frame_bytes => 4096 });
my $dbh = $pg->dbh();

sub token_id { NvsTest::token_cid($_[0]{event}{_id}{_data}) }
sub tok      { $_[0]{event}{_id}{_data} }

my $c = NvsTest::Client->connect($d->socket);
my $h = $c->hello('10-stream');
is($h->{op}, 'hello', 'hello answered');
like($h->{generation}, qr/^[0-9a-f]{8}$/, 'hello carries the generation');
$c->watch(sid => 1, table => 'HealthEvents');
my $bm = $c->recv_op('bookmark', 10);
ok($bm && $bm->{token}{_data} =~ /^[0-9a-f]{40}$/, 'watch confirmed by a bookmark with a 40-hex token');

# --- insert, update, delete -------------------------------------------------
my $id = NvsTest::insert_health_event($dbh, node => 'gpu-node-07');
$dbh->do(q{UPDATE health_events SET node_quarantined = 'Quarantined', document = jsonb_set(jsonb_set(document,
  '{healtheventstatus,nodequarantined}', '"Quarantined"'), '{healtheventstatus,spanids,fault-quarantine}', '"abc"')
  WHERE id = ?}, undef, $id);
$dbh->do(q{UPDATE health_events SET document = jsonb_set(document, '{healtheventstatus,userpodsevictionstatus,status}',
  '"Succeeded"') #- '{healthevent,metadata}' WHERE id = ?}, undef, $id);
$dbh->do('DELETE FROM health_events WHERE id = ?', undef, $id);
my $ev = $c->events(4, 15, sid => 1);
is(scalar @$ev, 4, 'four events delivered');
is_deeply([ map { $_->{event}{operationType} } @$ev ], [qw(insert update update delete)], 'in commit order');
my ($ins, $up1, $up2, $del) = map { $_->{event} } @$ev;
is($ins->{documentKey}{_id}, $id, 'documentKey is the record uuid');
is_deeply($ins->{ns}, { db => 'nvsentinel', coll => 'health_events' }, 'ns names database and table');
is($ins->{fullDocument}{id}, $id, 'fullDocument carries the record id');
is($ins->{fullDocument}{healthevent}{nodeName}, 'gpu-node-07', 'fullDocument is the stored document');
ok(!exists $ins->{fullDocument}{document}, 'health_events document is unwrapped');
like($ins->{clusterTime}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'clusterTime is RFC 3339 UTC');
ok(!exists $ins->{updateDescription}, 'no updateDescription on insert');
is_deeply($up1->{updateDescription}{updatedFields},
    { 'healtheventstatus.nodequarantined' => 'Quarantined', 'healtheventstatus.spanids.fault-quarantine' => 'abc' },
    'update 1: flattened updatedFields');
is_deeply($up1->{updateDescription}{removedFields}, [], 'update 1: nothing removed');
ok(!exists $up1->{fullDocumentBeforeChange}, 'no pre-image unless asked');
is_deeply($up2->{updateDescription}{updatedFields}, { 'healtheventstatus.userpodsevictionstatus.status' => 'Succeeded' },
    'update 2: eviction status');
is_deeply($up2->{updateDescription}{removedFields}, ['healthevent.metadata'], 'update 2: removedFields');
ok(!defined $del->{fullDocument}, 'delete: fullDocument null');
is($del->{fullDocumentBeforeChange}{id}, $id, 'delete: pre-image present');
my @toks = map { tok($_) } @$ev;
is_deeply(\@toks, [ sort @toks ], 'tokens increase as strings');
is(scalar(keys %{ { map { $_ => 1 } @toks } }), 4, 'tokens are distinct');

# --- maintenance_events: the whole row --------------------------------------
my $c2 = NvsTest::Client->connect($d->socket);
$c2->watch(sid => 7, table => 'maintenance_events');
ok($c2->recv_op('bookmark', 10), 'second subscriber on maintenance_events');
$dbh->do(q{INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status, event_received_timestamp, document)
  VALUES ('m-1', 'gcp', 'c1', 'gpu-node-07', 'DETECTED', now(), '{"eventId":"m-1","status":"DETECTED"}')});
my $m = $c2->events(1, 10, sid => 7);
is($m->[0]{event}{fullDocument}{event_id}, 'm-1', 'maintenance event: fullDocument is the whole row');
is($m->[0]{event}{fullDocument}{document}{status}, 'DETECTED', '... with the document nested');

# --- rollback ------------------------------------------------------------------
my $tx = $pg->dbh(autocommit => 0);
NvsTest::insert_health_event($tx, node => 'rolled-back');
$tx->rollback;
my $after = NvsTest::insert_health_event($dbh, node => 'after-rollback');
$ev = $c->events(1, 10, sid => 1);
is($ev->[0]{event}{documentKey}{_id}, $after, 'rolled-back row never delivered; the next commit is');

# --- out-of-order commit -------------------------------------------------------
my $a = $pg->dbh(autocommit => 0);
my $a_id = NvsTest::insert_health_event($a, node => 'txn-a');
my ($a_cl) = $a->selectrow_array(q{SELECT currval('datastore_changelog_id_seq')});
my $b_id = NvsTest::insert_health_event($dbh, node => 'txn-b');
my ($b_cl) = $dbh->selectrow_array('SELECT max(id) FROM datastore_changelog');
cmp_ok($a_cl, '<', $b_cl, 'A took the lower changelog id');
$ev = $c->events(1, 10, sid => 1);
is($ev->[0]{event}{documentKey}{_id}, $b_id, 'B delivered while A is open');
$a->commit;
$ev = $c->events(1, 10, sid => 1);
is($ev->[0]{event}{documentKey}{_id}, $a_id, 'A delivered after it commits');
is(token_id($ev->[0]), $a_cl, '... with its own lower changelog id');

# --- long transaction ------------------------------------------------------------
my $l = $pg->dbh(autocommit => 0);
my $l_id = NvsTest::insert_health_event($l, node => 'long');
my @quick;
for my $i (1 .. 5) {
    my $q = NvsTest::insert_health_event($dbh, node => "quick-$i");
    my $e = $c->events(1, 10, sid => 1);
    push @quick, ($e->[0] && $e->[0]{event}{documentKey}{_id} eq $q) ? 1 : 0;
    select(undef, undef, undef, 0.3);
}
is_deeply(\@quick, [1, 1, 1, 1, 1], 'five commits delivered one by one while a transaction stays open');
$l->commit;
$ev = $c->events(1, 10, sid => 1);
is($ev->[0]{event}{documentKey}{_id}, $l_id, 'the long transaction is delivered when it commits');

# --- bad input while another subscriber keeps receiving ------------------------
my $bad = NvsTest::Client->connect($d->socket);
$bad->send_raw("this is not json\n");
my $e = $bad->recv_op('error', 5);
is($e->{code}, 9, 'garbage: FailedToParse');
$bad->send_raw('{"op":"frobnicate"}' . "\n");
is($bad->recv_op('error', 5)->{code}, 59, 'unknown op: CommandNotFound');
$bad->send_raw('{"op":"watch","sid":3,"table":"health_events","resumeAfter":{"_data":"xyz"}}' . "\n");
is($bad->recv_op('error', 5)->{code}, 280, 'bad token: 280');
$bad->send_raw('{"op":"watch","sid":3,"table":"pg_authid"}' . "\n");
is($bad->recv_op('error', 5)->{code}, 73, 'unknown table: InvalidNamespace');
$bad->send_raw('{"op":"watch","sid":"x","table":"health_events"}' . "\n");
is($bad->recv_op('error', 5)->{code}, 14, 'sid of the wrong type: TypeMismatch');
$bad->send_raw('{"op":"ack","sid":99,"token":{"_data":"' . ('0' x 40) . '"}}' . "\n");
is($bad->recv_op('error', 5)->{code}, 2, 'ack for an unknown sid: BadValue');
$bad->send_raw('{"op":"watch","sid":4,"table":"health_events","pipeline":[{"$match":{"a":{"$where":"1"}}}]}' . "\n");
is($bad->recv_op('error', 5)->{code}, 2, 'pipeline refused, not ignored');
$bad->send_raw('{"op":"ping","pad":"' . ('x' x 10000) . '"}' . "\n");
is($bad->recv_op('error', 5)->{code}, 10334, 'oversized frame: BSONObjectTooLarge');
$bad->ping;
ok($bad->recv_op('pong', 5), 'the connection still works after all that');
my $during = NvsTest::insert_health_event($dbh, node => 'during-garbage');
$ev = $c->events(1, 10, sid => 1);
is($ev->[0]{event}{documentKey}{_id}, $during, 'the other subscriber kept receiving');

# --- fullDocumentBeforeChange ----------------------------------------------------
my $c3 = NvsTest::Client->connect($d->socket);
$c3->watch(sid => 2, table => 'health_events', fullDocumentBeforeChange => 'whenAvailable');
ok($c3->recv_op('bookmark', 10), 'pre-image subscriber started');
$dbh->do(q{UPDATE health_events SET document = jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Cancelled"')
  WHERE id = ?}, undef, $during);
$ev = $c3->events(1, 10, sid => 2);
is($ev->[0]{event}{fullDocumentBeforeChange}{healtheventstatus}{nodequarantined}, undef, 'pre-image on update when asked');
is($ev->[0]{event}{fullDocument}{healtheventstatus}{nodequarantined}, 'Cancelled', '... next to the post-image');

# --- shutdown ------------------------------------------------------------------------
$d->kill('TERM');
my $last = $c->recv_op('bookmark', 10);
ok($last, 'final bookmark on SIGTERM');
is($d->wait_exit(10), 0, 'exit status 0');
done_testing();

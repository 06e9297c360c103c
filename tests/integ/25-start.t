#!/usr/bin/perl
# 25-start.t - every way to start a stream and every way it refuses to:
# startAtOperationTime, NVSentinel's {"timestamp","eventID"} positions given
# as resumeAfter, a token of another generation or a tick that is not
# retained (286, naming the oldest position), malformed tokens and times,
# and durable consumer fencing (the newer connection takes over, the older
# one is told, the stored position never moves backwards).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $hport = NvsTest::free_port();
my $d   = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 50, http_listen => "127.0.0.1:$hport" });
my $dbh = $pg->dbh();
sub rid { $_[0]{event}{documentKey}{_id} }

my $gen = NvsTest::Client->connect($d->socket)->hello('t25')->{generation};
my @a = map { NvsTest::insert_health_event($dbh, node => "a-$_") } 1 .. 3;
select(undef, undef, undef, 1.2);
my ($t) = $dbh->selectrow_array(q{SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
select(undef, undef, undef, 0.3);
my @b = map { NvsTest::insert_health_event($dbh, node => "b-$_") } 1 .. 3;

# --- startAtOperationTime ----------------------------------------------------
my $c = NvsTest::Client->connect($d->socket);
$c->watch(startAtOperationTime => $t);
my $ev = $c->events(3, 10);
is_deeply([ map { rid($_) } @$ev ], \@b, 'startAtOperationTime: the changes after that time');
$c->close;
$c = NvsTest::Client->connect($d->socket);
$c->watch(startAtOperationTime => '2001-01-01T00:00:00Z');
my $e = $c->recv_op('error', 10);
is($e->{code}, 286, 'a time before the retained history: 286');
like($e->{message}, qr/oldest available position is \{"_data":"$gen[0-9a-f]{16}f{16}"\}/, '... naming the oldest position');
$c->watch(sid => 2, startAtOperationTime => 'yesterday');
is($c->recv_op('error', 10)->{code}, 2, 'a malformed time: BadValue');

# --- NVSentinel positions ----------------------------------------------------------
my ($cl_a2) = $dbh->selectrow_array(q{SELECT c.id FROM datastore_changelog c WHERE c.record_id = ?}, undef, $a[1]);
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => { timestamp => '2026-11-25T10:00:00Z', eventID => $cl_a2 + 0 });
$ev = $c->events(4, 10);
is_deeply([ map { rid($_) } @$ev ], [ $a[2], @b ], 'resumeAfter {timestamp, eventID}: everything after that changelog row');
$c->watch(sid => 3, resumeAfter => { eventID => 999999999 });
my $far = $c->recv_op('error', 10);
is($far->{code}, 286, 'an eventID beyond every change of the database: 286');
like($far->{message}, qr/beyond every change/, '... saying so');
$c->close;

# A row with a larger changelog id that committed before N's is in an
# earlier batch than N; NVSentinel's watcher can store N having processed
# N only. The stream after eventID N still has that row. ooo() commits a
# row with a larger id first, checks the two batches through a live
# subscriber, and returns the smaller row's and the larger row's ids (and,
# with $pre, the id of a row committed before them).
sub ooo {
    my ($tag, $pre) = @_;
    my $live = NvsTest::Client->connect($d->socket);
    $live->watch(sid => 1);
    $live->recv_op('bookmark', 10);
    if ($pre) {
        $pre = NvsTest::insert_health_event($dbh, node => "ooo-$tag-pre");
        is_deeply([ map { rid($_) } @{ $live->events(1, 10) } ], [$pre], "$tag: a row before them");
    }
    my $open  = $pg->dbh(autocommit => 0);
    my $small = NvsTest::insert_health_event($open, node => "ooo-$tag-small");
    my $large = NvsTest::insert_health_event($dbh, node => "ooo-$tag-large");
    is_deeply([ map { rid($_) } @{ $live->events(1, 10) } ], [$large], "$tag: a larger id committed first, in its own batch");
    $open->commit;
    is_deeply([ map { rid($_) } @{ $live->events(1, 10) } ], [$small], "$tag: ... then the smaller one, in a later batch");
    $live->close;
    return ($small, $large, $pre);
}
sub cl_id { ($dbh->selectrow_array(q{SELECT id FROM datastore_changelog WHERE record_id = ?}, undef, $_[0]))[0] + 0 }
my ($rn, $rn1) = ooo('kept');
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => { eventID => cl_id($rn) });
is_deeply([ map { rid($_) } @{ $c->events(2, 5) } ], [ $rn1, $rn ],
    'resumeAfter {eventID} of the smaller: the larger one comes (and the smaller again, in its batch)');
$c->close;
# The same when row N is gone (cleanup_changelog): the first row after it
# committed after a larger one.
my ($ra, $rb, $rpre) = ooo('removed', 1);
my $cl_pre = cl_id($rpre);
$dbh->do(q{DELETE FROM datastore_changelog WHERE id = ?}, undef, $cl_pre);
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => { eventID => $cl_pre });
is_deeply([ map { rid($_) } @{ $c->events(2, 5) } ], [ $rb, $ra ],
    'resumeAfter {eventID} of a removed row: the larger id that committed first comes too');
$c->close;

# NVSentinel's cleanup_changelog removed the row of a stored position (and
# older ones) but nothing after it: resume after it, as its own watcher would.
sub removed_resumes {
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$hport", Timeout => 5) or return -1;
    print $sock "GET /metrics HTTP/1.0\r\n\r\n";
    local $/;
    my $body = <$sock> // '';
    return $body =~ /^nvsrelay_removed_position_resumes_total (\S+)/m ? $1 + 0 : -1;
}
is(removed_resumes(), 1, 'one removed-position resume counted so far (the one above)');
# Cleaned-up rows are days old: a fresh daemon holds none of them in memory.
is($d->stop, 0, 'daemon stops');
$d = NvsTest::Daemon->start($pg, set => { ack_flush_ms => 50, http_listen => "127.0.0.1:$hport" });
my ($cl_a1) = $dbh->selectrow_array(q{SELECT c.id FROM datastore_changelog c WHERE c.record_id = ?}, undef, $a[0]);
$dbh->do(q{DELETE FROM datastore_changelog WHERE id <= ?}, undef, $cl_a2);
$c = NvsTest::Client->connect($d->socket);
$c->watch(resumeAfter => { timestamp => '2026-11-25T10:00:00Z', eventID => $cl_a2 + 0 });
$ev = $c->events(4, 10);
is_deeply([ map { rid($_) } @$ev ], [ $a[2], @b ], 'an eventID whose row was cleaned up: resumes with the next retained change');
$c->watch(sid => 2, resumeAfter => { eventID => $cl_a1 + 0 });
$ev = $c->events(4, 10, sid => 2);
is_deeply([ map { rid($_) } @$ev ], [ $a[2], @b ], '... also when older rows went with it');
$c->watch(sid => 3, resumeAfter => { eventID => 0 });
$ev = $c->events(4, 10, sid => 3);
is_deeply([ map { rid($_) } @$ev ], [ $a[2], @b ], 'eventID 0: from the start of what is retained');
$c->close;
$dbh->do(q{INSERT INTO resume_tokens (client_name, resume_token, last_updated) VALUES ('moved-over', jsonb_build_object('timestamp', '2026-11-25T10:00:00Z', 'eventID', ?::bigint), now())}, undef, $cl_a1);
$c = NvsTest::Client->connect($d->socket);
$c->watch(consumer => 'moved-over');
$ev = $c->events(4, 10);
is_deeply([ map { rid($_) } @$ev ], [ $a[2], @b ], 'a stored NVSentinel position whose row was cleaned up: the consumer resumes after it');
$c->close;
ok($d->wait_log(qr/NVSentinel position not in the changelog, resuming after it consumer='?moved-over'?/, 5),
    '... with a warning naming the consumer') or diag(join '', grep { /NVSentinel position/ } split /^/m, $d->log);
is(removed_resumes(), 4, '... and each such resume counted in nvsrelay_removed_position_resumes_total');

# --- foreign and missing positions ---------------------------------------------------
$c = NvsTest::Client->connect($d->socket);
my $other = sprintf('%08x', (hex($gen) ^ 1)) . ('0' x 15) . '2' . ('f' x 16);
$c->watch(resumeAfter => { _data => $other });
$e = $c->recv_op('error', 10);
is($e->{code}, 286, 'a token of another generation: 286');
like($e->{message}, qr/another database/, '... saying why');
$c->watch(sid => 4, resumeAfter => { _data => $gen . ('0' x 16) . ('0' x 15) . '1' });
$e = $c->recv_op('error', 10);
is($e->{code}, 286, 'a tick that is not retained: 286');
like($e->{message}, qr/oldest available position/, '... naming the oldest position');
$c->watch(sid => 5, resumeAfter => { _data => 'not-a-token' });
is($c->recv_op('error', 10)->{code}, 280, 'a malformed token: 280');
$c->watch(sid => 6, startAtOperationtime => '2026-01-01T00:00:00Z');
$e = $c->recv_op('error', 10);
is($e->{code}, 40415, 'a misspelt option is refused, not ignored');
like($e->{message}, qr/startAtOperationtime/, '... naming it');
$c->close;

# --- fencing -----------------------------------------------------------------------
my $c1 = NvsTest::Client->connect($d->socket);
$c1->watch(consumer => 'fault-quarantine');
$c1->recv_op('bookmark', 10);
my @f = map { NvsTest::insert_health_event($dbh, node => "f-$_") } 1 .. 4;
$ev = $c1->events(4, 10);
is(scalar @$ev, 4, 'first connection receives');
$c1->ack(1, $ev->[1]{event}{_id});
my $c2 = NvsTest::Client->connect($d->socket);
$c2->watch(consumer => 'fault-quarantine');
$e = $c1->recv_op('error', 10);
is($e->{code}, 11601, 'the first connection is told it was taken over');
# The last frame delivered: the 4th event, or a bookmark the hub sent after it.
cmp_ok($e->{token}{_data}, 'ge', $ev->[3]{event}{_id}{_data}, '... with its last delivered position');
my $ev2 = $c2->events(2, 10);
is_deeply([ map { rid($_) } @$ev2 ], [ @f[2, 3] ], 'the second continues after the first one\'s ack');
$c1->ack(1, $ev->[3]{event}{_id});
ok($c1->recv_op('error', 5), 'an ack from the fenced connection is refused');
$c2->ack(1, $ev2->[0]{event}{_id});
select(undef, undef, undef, 0.5);
my ($stored) = $dbh->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'fault-quarantine'});
is($stored, $ev2->[0]{event}{_id}{_data}, 'the stored position is the new holder\'s ack');
is($d->stop, 0, 'clean stop');
done_testing();

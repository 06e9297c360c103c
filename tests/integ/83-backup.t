#!/usr/bin/perl
# 83-backup.t - the backup and restore procedure of README.md: pg_dump of a database the
# relay serves, pg_restore into a second, new cluster, nvsrelayd started there. The
# daemon notices the other system_identifier, starts a new changelog generation, drops
# the old ticks and clears the old rows' xids (they count the old cluster's
# transactions). A token from the old cluster gets ChangeStreamHistoryLost (286), given
# in watch or stored for a durable consumer, never a silent resume; of two relays starting
# together, one starts the generation and both serve it; nvsrelay reset moves
# such a consumer on; a new subscriber streams exactly the new changes, also after the
# new cluster's transaction counter has passed the old rows' xids; data and NVSentinel
# positions survive; a second start keeps the new generation.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $BUILD = $ENV{NVSRELAY_BUILD} || "$NvsTest::ROOT/build";
my $old = NvsTest::Pg->start;
my $set = { tick_idle_ms => 200, ack_flush_ms => 50 };
my $da  = NvsTest::Daemon->start($old, set => $set);
my $ha  = $old->dbh;

sub sysid { my ($h) = @_; return scalar $h->selectrow_array('SELECT system_identifier::text FROM pg_control_system()') }
sub generation {
    my ($d) = @_;
    my $c = NvsTest::Client->connect($d->socket);
    my $h = $c->hello('t83');
    $c->close;
    return $h->{generation};
}
# Each statement its own transaction: moves the cluster's xid counter on by $n.
sub burn_xids { my ($pg, $n) = @_; $pg->psql(join "\n", ('SELECT pg_current_xact_id();') x $n) }

# ---- the old cluster: events, a durable consumer with acknowledged positions ----

my $c = NvsTest::Client->connect($da->socket);
ok($c->hello('t83'), 'hello');
$c->watch(consumer => 'fault-quarantine');
ok($c->recv_op('bookmark', 10), 'durable consumer fault-quarantine watching on the old cluster');
my @first = map { NvsTest::insert_health_event($ha, node => "before-$_") } 1 .. 5;
my $ev = $c->events(5, 10);
is(scalar @$ev, 5, 'five events');
$c->ack(1, $ev->[-1]{event}{_id});
# Rows written late in the old cluster's life: their xids are far above anything the new
# cluster will have right after the restore.
burn_xids($old, 3000);
my @late = map { NvsTest::insert_health_event($ha, node => "late-$_") } 1 .. 3;
my $late = $c->events(3, 10);
is(scalar @$late, 3, 'three more');
my $old_token = $late->[-1]{event}{_id};
$c->ack(1, $old_token);
# Everything delivered is acknowledged, so the stored position moves on with idle ticks too.
sub stored { scalar $ha->selectrow_array(q{SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = 'fault-quarantine'}) // '' }
my $deadline = NvsTest::now() + 10;
Time::HiRes::sleep(0.05) while NvsTest::now() < $deadline && stored() lt $old_token->{_data};
cmp_ok(stored(), 'ge', $old_token->{_data}, 'its acknowledged position is stored');
$c->close;
my $old_gen = generation($da);
my ($max_old_id, $max_old_xid) = $ha->selectrow_array('SELECT max(id), max(xid)::text FROM datastore_changelog');

# ---- backup: pg_dump, as README.md says ----

my $dump = $old->dir . '/nvsentinel.dump';
my ($rc, $out) = NvsTest::run_cmd([ $old->bin . '/pg_dump', '-h', $old->sockdir, '-p', $old->port, '-U', 'postgres',
    '--format=custom', "--file=$dump", 'nvsentinel' ]);
is($rc, 0, 'pg_dump --format=custom of the running database') or diag($out);
my %data_sql = (
    health_events => 'SELECT md5(string_agg(t::text, chr(10) ORDER BY id)) FROM health_events t',
    changelog     => q{SELECT md5(string_agg(concat_ws('|', id, table_name, record_id, operation, old_values,
        new_values, changed_at, processed), chr(10) ORDER BY id)) FROM datastore_changelog},
);
my %data_old = map { $_ => scalar $ha->selectrow_array($data_sql{$_}) } keys %data_sql;
is($da->stop, 0, 'the old relay stops');

# ---- restore into a new cluster ----

my $new = NvsTest::Pg->start;
my $hb  = $new->dbh;
isnt(sysid($hb), sysid($ha), 'the new cluster has another system_identifier');
($rc, $out) = NvsTest::run_cmd([ $new->bin . '/pg_restore', '-h', $new->sockdir, '-p', $new->port, '-U', 'postgres',
    '--dbname=nvsentinel', '--exit-on-error', '--single-transaction', $dump ]);
is($rc, 0, 'pg_restore --single-transaction into the new cluster') or diag($out);
is_deeply({ map { $_ => scalar $hb->selectrow_array($data_sql{$_}) } keys %data_sql }, \%data_old,
    'health events and changelog restored as they were');
cmp_ok($hb->selectrow_array('SELECT pg_current_xact_id()::text::bigint'), '<', $max_old_xid,
    "the new cluster's xid counter is behind the restored rows' xids ($max_old_xid)");

# Two relays start on the restored database at once: one starts the new generation, both use it.
my $db  = NvsTest::Daemon->start($new, set => $set, wait_ready => 0);
my $db2 = NvsTest::Daemon->start($new, set => $set, wait_ready => 0, socket => $new->dir . '/relay2.sock');
$_->wait_ready(30) for $db, $db2;
my $log = $db->log . $db2->log;
like($log, qr/warning database restored into another cluster: nvsrelay\.meta names system_identifier \d+, this cluster is \d+/,
    'the daemon notices the restore');
my @started = $log =~ /warning database restored into another cluster \(system_identifier now \d+\): new changelog generation ([0-9a-f]{8}), tokens from before the restore get ChangeStreamHistoryLost/g;
is(scalar @started, 1, '... and exactly one of the two relays starts a new generation');
my $new_gen = generation($db);
is($started[0], $new_gen, '... the one both serve');
is(generation($db2), $new_gen, '... both relays hello with it');
isnt($new_gen, $old_gen, "hello: generation $new_gen, not $old_gen");
is($db2->stop, 0, 'the second relay stops');
is($hb->selectrow_array('SELECT system_identifier FROM nvsrelay.meta'), sysid($hb), 'nvsrelay.meta names the new cluster');
is($hb->selectrow_array('SELECT count(*) FROM datastore_changelog WHERE id <= ? AND xid IS NOT NULL', undef, $max_old_id), 0,
    "the restored rows' xids are cleared");
is($hb->selectrow_array('SELECT min(tick_id) FROM nvsrelay.tick'), 1, 'the old ticks are gone, ticking starts over');
is_deeply({ map { $_ => scalar $hb->selectrow_array($data_sql{$_}) } keys %data_sql }, \%data_old,
    '... and nothing else changed in the data');

subtest 'tokens from the old cluster: 286, never a silent resume' => sub {
    my $x = NvsTest::Client->connect($db->socket);
    $x->hello('t83');
    $x->watch(sid => 1, resumeAfter => $old_token);
    my $e = $x->recv_op('error', 10);
    is($e->{code}, 286, 'resumeAfter with an old token: 286');
    is($e->{codeName}, 'ChangeStreamHistoryLost', '... ChangeStreamHistoryLost');
    like($e->{message}, qr/another database or changelog generation \(this one is \Q$new_gen\E\)/, '... saying why');
    $x->watch(sid => 2, consumer => 'fault-quarantine');
    $e = $x->recv_op('error', 10);
    is($e->{sid}, 2, 'the durable consumer whose stored position is from the old cluster:');
    is($e->{code}, 286, '... 286 as well');
    like($e->{message}, qr/stored position belongs to another database or changelog generation/, '... saying why');
    is(scalar @{ $x->events(1, 1) }, 0, 'no event was delivered');
    $x->close;
};

subtest 'a new subscriber streams exactly the new changes' => sub {
    my $x = NvsTest::Client->connect($db->socket);
    $x->hello('t83');
    $x->watch(sid => 1);
    ok($x->recv_op('bookmark', 10), 'watching from the head');
    # Past the old rows' xids: had they kept them, they would now look newly committed.
    burn_xids($new, 3500);
    cmp_ok($hb->selectrow_array('SELECT pg_current_xact_id()::text::bigint'), '>', $max_old_xid,
        'the new cluster\'s xid counter has passed the restored rows\' xids');
    Time::HiRes::sleep(0.5);    # idle ticks across that range
    my @ids = map { NvsTest::insert_health_event($hb, node => "after-$_") } 1 .. 3;
    my $got = $x->events(10, 3);
    is_deeply([ map { $_->{event}{documentKey}{_id} } @$got ], \@ids, 'the three new inserts and nothing restored');
    like($got->[0]{event}{_id}{_data}, qr/^\Q$new_gen\E/, '... with tokens of the new generation');
    $x->close;
};

subtest 'nvsrelay reset moves the old consumer on' => sub {
    my ($rc2, $out2) = NvsTest::run_cmd([ "$BUILD/nvsrelay", 'reset', 'fault-quarantine', '--admin-socket', $db->admin_socket ]);
    is($rc2, 0, 'nvsrelay reset fault-quarantine') or diag($out2);
    my $x = NvsTest::Client->connect($db->socket);
    $x->hello('t83');
    $x->watch(sid => 1, consumer => 'fault-quarantine');
    ok($x->recv_op('bookmark', 10), 'it watches again, from the head');
    my $id = NvsTest::insert_health_event($hb, node => 'after-reset');
    my $got = $x->events(1, 10);
    is($got->[0]{event}{documentKey}{_id}, $id, '... and gets the next change');
    is(scalar @{ $x->errors }, 0, '... without an error');
    $x->close;
};

is($db->stop, 0, 'the new relay stops');
$db = NvsTest::Daemon->start($new, set => $set);
unlike($db->log, qr/restored/, 'a second start: no restore detected');
is(generation($db), $new_gen, '... the generation stays');
is($db->stop, 0, 'stops with 0');
done_testing;

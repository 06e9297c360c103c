#!/usr/bin/perl
# 97-hostile.t - hostile input over the live Unix socket. Random bytes, truncated JSON,
# deep nesting, strings up to max_frame_bytes, invalid UTF-8, oversized frames, every
# field of every op with every wrong type, forged and truncated tokens, injection-shaped
# table names, consumer names and filters, half-sent frames, clients that never read,
# connect/close storms. Each bad frame gets an error frame (or the connection a clean
# close), the connection stays usable where the protocol says so, a bystander subscriber
# keeps receiving throughout, the schema is untouched, the daemon's memory does not
# grow with repetition, and it stops cleanly at the end (under valgrind: without leaks,
# under ASan: without reports).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use NvsTest;

my $MAXF = 262144;
my $pg  = NvsTest::Pg->start();
my $d   = NvsTest::Daemon->start($pg, set => { max_frame_bytes => $MAXF, client_output_limit => 4 * $MAXF });
my $dbh = $pg->dbh();
my $slow = $ENV{NVS_VALGRIND} ? 6 : 1;    # valgrind: everything takes longer

my $by = NvsTest::Client->connect($d->socket);
$by->watch(sid => 1);
ok($by->recv_op('bookmark', 10), 'bystander subscribed');
my $nby = 0;

# The bystander still gets a fresh change, and the daemon still runs.
sub bystander_ok {
    my ($label) = @_;
    my $id = NvsTest::insert_health_event($dbh, node => 'bystander-' . ++$nby);
    my $ev = $by->events(1, 10 * $slow, sid => 1);
    ok(@$ev && $ev->[0]{event}{documentKey}{_id} eq $id, "bystander keeps receiving after $label");
    is($d->wait_exit(0), undef, "daemon alive after $label");
}

# Sends $bytes on a new connection and waits for the outcome: 'error <code>' for an error
# frame, 'closed' when the server hung up, 'ok <op>' for another frame, 'silent' if nothing.
# Unless closed, a ping must still get its pong ('usable').
sub probe {
    my ($bytes, %o) = @_;
    my $c = NvsTest::Client->connect($d->socket);
    $c->send_raw($bytes, 10 * $slow);
    my $f = $c->recv(($o{wait} || 5) * $slow);
    my $what = $f ? ($f->{op} eq 'error' ? "error $f->{code}" : "ok $f->{op}") : $c->eof ? 'closed' : 'silent';
    my $usable = 0;
    if (!$c->eof) {
        # Drain what else this frame produced (random bytes: one error per line).
        $c->ping;
        $usable = !!$c->recv_op('pong', 10 * $slow);
    }
    $c->close;
    return ($what, $usable, $f);
}

# --- random bytes, truncated JSON, nesting, UTF-8 ------------------------------------
srand(97);
for my $i (1 .. 20) {
    my $junk = join '', map { chr int rand 256 } 1 .. 1 + int rand 4000;
    my ($what, $usable) = probe($junk . "\n");
    ok(($what =~ /^error / && $usable) || $what eq 'closed', "random bytes #$i: $what");
}
for my $cut (1, 5, 12, 30, 47) {
    my $frame = '{"op":"watch","sid":1,"table":"health_events","consumer":"x"}';
    my ($what, $usable) = probe(substr($frame, 0, $cut) . "\n");
    is("$what usable=$usable", 'error 9 usable=1', "JSON cut after $cut bytes: FailedToParse, still usable");
}
for my $case (['[' x 100000, '100k ['], ['{"a":' x 50000, '50k nested objects'],
              ['{"op":"ping","x":' . ('[' x 100000) . (']' x 100000) . '}', 'ping carrying 100k balanced ['],
              ['{"op":"watch","sid":1,"table":"health_events","pipeline":[{"$match":' . ('{"$and":[' x 5000) . '{}'
                   . (']}' x 5000) . '}]}', 'pipeline nested 5000 $and deep']) {
    my ($what, $usable) = probe("$case->[0]\n");
    like("$what usable=$usable", qr/^error \d+ usable=1$/, "$case->[1]: an error frame, still usable");
}
for my $case (["\xff\xfe\xfd", 'bytes ff fe fd'], ["\xc3\x28", 'bad 2-byte sequence'],
              ["\xed\xa0\x80", 'UTF-16 surrogate'], ["\xf8\x88\x80\x80\x80", '5-byte form'],
              ["\xc0\xaf", 'overlong /']) {
    my ($bad, $label) = @$case;
    for my $frame (qq({"op":"ping","x":"$bad"}), qq({"op":"watch","sid":2,"table":"health_events$bad"}),
                   qq({"op":"watch","sid":2,"table":"health_events","consumer":"c$bad"}),
                   qq({"op":"hello","v":1,"client":"$bad"}), qq({"op$bad":"ping"})) {
        my ($what, $usable) = probe("$frame\n");
        ok(($what =~ /^(error \d+|ok (pong|hello|bookmark))$/ && $usable) || $what eq 'closed',
            "invalid UTF-8 ($label) in " . substr($frame, 0, 30) . "...: $what, usable=$usable");
        # A consumer name PostgreSQL cannot store must be refused, not retried forever.
        if ($frame =~ /consumer/) {
            is($what, 'error 14', "... refused as TypeMismatch, not 'retry later'");
        }
    }
}
my ($nul_what) = probe(qq({"op":"ping"}\0{"op":"bogus"}\n));
like($nul_what, qr/^(error 9|ok pong)$/, "NUL inside a frame: $nul_what");
my ($trail) = probe(qq({"op":"ping"} trailing garbage\n));
is($trail, 'error 9', 'trailing bytes after the object: FailedToParse, not silently ignored');
bystander_ok('garbage');

# --- sizes --------------------------------------------------------------------------
my $pad = $MAXF - 40;
my ($w1, $u1) = probe('{"op":"ping","pad":"' . ('x' x $pad) . "\"}\n");
is("$w1 usable=$u1", 'ok pong usable=1', 'a ping just under max_frame_bytes is answered');
my ($w2, $u2) = probe('{"op":"ping","pad":"' . ('x' x $MAXF) . "\"}\n");
is("$w2 usable=$u2", 'error 10334 usable=1', 'one byte over: BSONObjectTooLarge, still usable');
# Everything up to the next newline is discarded, however long, without buffering it.
my ($w3, $u3) = probe(('x' x (8 * $MAXF)) . "\n");
is("$w3 usable=$u3", 'error 10334 usable=1', '8x max_frame_bytes before the newline: BSONObjectTooLarge, still usable');
my $big = $MAXF - 200;
my ($w4) = probe('{"op":"watch","sid":1,"table":"health_events","consumer":"' . ('c' x $big) . "\"}\n");
is($w4, 'error 14', 'a huge consumer name: TypeMismatch');
my ($w5) = probe('{"op":"watch","sid":1,"table":"' . ('t' x $big) . "\"}\n");
is($w5, 'error 73', 'a huge table name: InvalidNamespace');
my ($w6) = probe('{"op":"' . ('o' x $big) . "\"}\n");
is($w6, 'error 59', 'a huge op: CommandNotFound');
my ($w7) = probe('{"op":"watch","sid":1,"table":"health_events","pipeline":[{"$match":{"a":{"$in":['
    . join(',', (1) x ($pad / 2 - 100)) . "]}}}]}\n", wait => 20);
like($w7, qr/^(ok bookmark|error \d+)$/, "a pipeline with a ~" . int($pad / 2) . "-element \$in: $w7");
my ($w8) = probe(("\n" x 100000) . qq({"op":"ping"}\n));
is($w8, 'ok pong', '100k empty lines, then a ping');
bystander_ok('sizes');

# --- wrong types for every field of every op ------------------------------------------
my $TOK = ('0' x 40);
my @wrong = (1, -1, 1.5, 1e300, '1', '', JSON::PP::true, JSON::PP::false, undef, [], {}, [1], { a => 1 });
my %fields = (
    hello   => { base => { op => 'hello', v => 1, client => 't97' }, v => 1, client => 1 },
    watch   => { base => { op => 'watch', sid => 9, table => 'health_events' }, sid => 1, table => 1, consumer => 1,
                 resumeAfter => 1, startAfter => 1, startAtOperationTime => 1, fullDocumentBeforeChange => 1,
                 pipeline => 1 },
    ack     => { base => { op => 'ack', sid => 1, token => { _data => $TOK } }, sid => 1, token => 1 },
    unwatch => { base => { op => 'unwatch', sid => 1 }, sid => 1 },
    ping    => { base => { op => 'ping' } },
);
# Values a field accepts: anything else must be refused.
my %good = (
    v => sub { defined $_[0] && !ref $_[0] && $_[0] eq '1' && $_[0] =~ /^1$/ && !JSON::PP::is_bool($_[0]) },
    client => sub { defined $_[0] && !ref $_[0] },
    sid => sub { defined $_[0] && !ref $_[0] && $_[0] =~ /^\d+$/ && !JSON::PP::is_bool($_[0]) },
    consumer => sub { !defined $_[0] || (!ref $_[0] && length $_[0]) },
    pipeline => sub { !defined $_[0] || (ref $_[0] eq 'ARRAY' && !@{ $_[0] }) },    # null = absent
);
my $tc = NvsTest::Client->connect($d->socket);
my ($n_err, $n_cases, @quiet) = (0, 0);
for my $op (sort keys %fields) {
    my $base = $fields{$op}{base};
    for my $field (grep { $_ ne 'base' } sort keys %{ $fields{$op} }) {
        for my $val (@wrong, 'zzz') {
            my %frame = (%$base, $field => $val);
            my $txt = $NvsTest::JSON->encode(\%frame);
            $tc->send_raw("$txt\n");
            $tc->ping;
            my (@got, $f);
            while ($f = $tc->recv(10 * $slow)) { last if $f->{op} eq 'pong'; push @got, $f }
            last unless $f;
            $n_cases++;
            my $accepted = $good{$field} && $good{$field}->($val);
            my @errs = grep { $_->{op} eq 'error' } @got;
            if (@errs) { $n_err++ }
            elsif (!$accepted && !($op eq 'hello' && $field eq 'client')) { push @quiet, $txt }
            # Tidy up a watch or ack that was accepted after all.
            $tc->send({ op => 'unwatch', sid => $frame{sid} }) if $op eq 'watch' && !@errs && defined $frame{sid}
                && !ref $frame{sid};
        }
    }
}
ok(!$tc->eof, "wrong types: the connection survived $n_cases frames");
is(scalar @quiet, 0, "every frame with a wrong-typed field got an error frame ($n_err errors)")
    or diag(join "\n", 'accepted without an error:', @quiet[0 .. ($#quiet < 15 ? $#quiet : 15)]);
for my $doc ('[]', '"str"', '5', 'null', 'true', '{}', '{"op":5}', '{"op":null}', '{"op":["ping"]}', '{"OP":"ping"}') {
    my ($what, $usable) = probe("$doc\n");
    is("$what usable=$usable", 'error 9 usable=1', "frame $doc: FailedToParse");
}
$tc->close;
bystander_ok('wrong types');

# --- tokens -----------------------------------------------------------------------
my $gen = $by->bookmark(1)->{_data};
my $head = $gen;
$gen = substr($gen, 0, 8);
for my $case ([ $TOK, 'all zeros (another generation)' ], [ ('f' x 40), 'all f' ],
              [ substr($head, 0, 39), '39 digits' ], [ "${head}0", '41 digits' ],
              [ substr($head, 0, 38) . 'zz', 'not hex' ], [ '', 'empty' ], [ " $head", 'leading blank' ],
              [ "$head\n", 'with a newline' ]) {
    my ($tok, $label) = @$case;
    for my $field (qw(resumeAfter startAfter)) {
        my ($what, $usable) = probe($NvsTest::JSON->encode({ op => 'watch', sid => 4, table => 'health_events',
            $field => { _data => $tok } }) . "\n");
        ok($what =~ /^error (280|286|2)$/ && $usable, "$field with a token $label: $what");
    }
    my ($what) = probe($NvsTest::JSON->encode({ op => 'ack', sid => 1, token => { _data => $tok } }) . "\n");
    like($what, qr/^error (2|280)$/, "ack with a token $label on no subscription: $what");
}
# A forged position beyond the head, on a live subscription: refused, not a silent skip.
my $fc = NvsTest::Client->connect($d->socket);
$fc->watch(sid => 6);
my $bm = $fc->recv_op('bookmark', 10 * $slow);
$fc->ack(6, { _data => $gen . ('0' x 15) . 'f' . ('0' x 16) });
my $e = $fc->recv_op('error', 5 * $slow);
is($e && $e->{code}, 2, 'ack beyond what was sent: BadValue');
$fc->close;
bystander_ok('tokens');

# --- injection-shaped names and filters ---------------------------------------------
my @inject = (q{health_events; DROP TABLE resume_tokens; --}, q{health_events' OR '1'='1}, q{pg_authid},
    q{nvsrelay.tick}, q{public.health_events}, q{"health_events"}, q{health_events/*}, q{..}, q{$where});
for my $t (@inject) {
    my ($what) = probe($NvsTest::JSON->encode({ op => 'watch', sid => 1, table => $t }) . "\n");
    is($what, 'error 73', "table '$t': InvalidNamespace");
}
my @names = (q{x'); DROP TABLE resume_tokens; --}, q{a" OR 1=1 --}, q{%s%s%s%n}, "tab\there", "new\nline",
    q{\\'\\"}, q{$1}, q{;}, "esc\e[31mred");
for my $name (@names) {
    my $c = NvsTest::Client->connect($d->socket);
    $c->send({ op => 'watch', sid => 1, table => 'health_events', consumer => $name });
    my $f = $c->recv(10 * $slow);
    my $what = $f ? ($f->{op} eq 'error' ? "error $f->{code}" : "ok $f->{op}") : 'nothing';
    ok($what =~ /^(ok bookmark|error (2|14))$/, "consumer name " . $NvsTest::JSON->encode($name) . ": $what");
    $c->close;
}
my $stored = $dbh->selectcol_arrayref('SELECT client_name FROM resume_tokens');
my %st = map { $_ => 1 } @$stored;
ok($st{ $names[0] }, 'the SQL-shaped consumer name is stored as data, verbatim');
my ($tables) = $dbh->selectrow_array(q{SELECT count(*) FROM pg_tables
    WHERE tablename IN ('resume_tokens', 'health_events', 'maintenance_events', 'datastore_changelog')});
is($tables, 4, 'every table is still there');
unlike($d->log, qr/\e/, 'no terminal escape reaches the log');
for my $p ([{ '$match' => { "fullDocument.a'; DROP TABLE health_events; --" => 1 } }],
           [{ '$match' => { '$where' => 'sleep(1000)' } }], [{ '$match' => { a => { '$regex' => '(a+)+$' } } }],
           [{ '$lookup' => { from => 'pg_authid' } }], [{ '$match' => { '$expr' => { '$eq' => [1, 1] } } }],
           [{ '$match' => { 'fullDocument.x' => { '$in' => [ { '$gt' => 1 } ] } } }], [{ '$match' => [] }],
           [{ '$match' => {}, '$project' => {} }]) {
    my $c = NvsTest::Client->connect($d->socket);
    $c->send({ op => 'watch', sid => 1, table => 'health_events', pipeline => $p });
    my $f = $c->recv(10 * $slow);
    my $what = $f ? ($f->{op} eq 'error' ? "error $f->{code}" : "ok $f->{op}") : 'nothing';
    ok($what =~ /^(ok bookmark|error \d+)$/, 'pipeline ' . $NvsTest::JSON->encode($p) . ": $what");
    $c->close;
}
($tables) = $dbh->selectrow_array(q{SELECT count(*) FROM pg_tables WHERE tablename = 'health_events'});
is($tables, 1, 'health_events is still there');
bystander_ok('injection-shaped input');

# --- clients that misbehave over time -------------------------------------------------
# Half a frame, never finished; a client that floods pings and never reads; a storm of
# connections opened and dropped, some mid-frame.
my @half = map { my $c = NvsTest::Client->connect($d->socket); $c->send_raw('{"op":"watch","sid":1,"tab'); $c } 1 .. 20;
my $flood = NvsTest::Client->connect($d->socket);
$flood->send_raw(qq({"op":"ping"}\n) x 20000, 2);
my $burst = 0;
for my $i (1 .. 300) {
    my $c = eval { NvsTest::Client->connect($d->socket) } or next;
    $burst++;
    $c->send_raw(('{"op":"watch","sid":1,"table":"health_events"}' . "\n", '{"op":"pi', "\xff\n", '')[ $i % 4 ]);
    $c->close;
}
is($burst, 300, 'three hundred connections opened and dropped');
bystander_ok('half frames, a flooding non-reader and a connection storm');
$_->close for @half, $flood;

# --- memory does not grow with repetition ------------------------------------------------
sub rss_kb { my ($kb) = NvsTest::slurp('/proc/' . $d->pid . '/status') =~ /^VmRSS:\s+(\d+)/m; $kb // 0 }
my @rounds;
for my $round (1 .. 4) {
    for my $i (1 .. 50) {
        probe(('{"op":"watch","sid":1,"table":"health_events","consumer":"' . ('m' x 100) . "\"}\n"), wait => 1) if $i % 10 == 0;
        probe(join('', map { chr int rand 256 } 1 .. 2000) . "\n", wait => 1);
    }
    probe('{"op":"ping","pad":"' . ('x' x $pad) . "\"}\n");
    push @rounds, rss_kb();
}
diag("RSS after each round (kB): @rounds");
cmp_ok($rounds[-1] - $rounds[1], '<', 16384, 'RSS does not grow round after round (generous bound: 16 MiB)')
    unless $ENV{NVS_VALGRIND};
bystander_ok('the repetition');
is($d->stop(30 * $slow), 0, 'clean stop (no sanitizer or valgrind report)');
done_testing();

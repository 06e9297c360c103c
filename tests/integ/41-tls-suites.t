#!/usr/bin/perl
# 41-tls-suites.t - the subscriber TLS listener's cipher suites: TLS 1.2 is served only
# with forward-secret AEAD suites (ECDHE or DHE key exchange, AES-GCM or
# CHACHA20-POLY1305); an OpenSSL client offering only static RSA key exchange or
# CBC suites (SHA-1 or SHA-2) fails the handshake; TLS 1.3 is served as OpenSSL offers it.
# The server has an RSA certificate here, so the static RSA suites are negotiable at all.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use NvsTest;

my $pg  = NvsTest::Pg->start();
my $dir = $pg->dir;
my $tls = "$dir/tls";


# An RSA server certificate from the test CA.
my ($rc, $out) = NvsTest::run_cmd([ 'openssl', 'req', '-newkey', 'rsa:2048', '-noenc', '-subj', '/CN=localhost',
	'-keyout', "$dir/rsa-server.key", '-out', "$dir/rsa-server.csr" ]);
is($rc, 0, 'an RSA server key') or diag($out);
($rc, $out) = NvsTest::run_cmd([ 'openssl', 'x509', '-req', '-in', "$dir/rsa-server.csr", '-CA', "$tls/ca.crt",
	'-CAkey', "$tls/ca.key", '-CAcreateserial', '-days', '2', '-extfile', "$tls/server.ext",
	'-out', "$dir/rsa-server.crt" ]);
is($rc, 0, '... with a certificate from the test CA') or diag($out);

my $port = NvsTest::free_port();
my $d = NvsTest::Daemon->start($pg, set => {
	listen_tcp => "127.0.0.1:$port", tls_cert_file => "$dir/rsa-server.crt", tls_key_file => "$dir/rsa-server.key",
	tls_ca_file => "$tls/ca.crt" });

# Handshakes with s_client offering only @args; returns (ok, "protocol cipher").
# @SECLEVEL=0 makes the client offer every suite named, so a refusal is the server's.
sub handshake {
	my (@args) = @_;
	my ($code, $text) = NvsTest::run_cmd([ 'openssl', 's_client', '-connect', "127.0.0.1:$port",
		'-servername', 'localhost', '-CAfile', "$tls/ca.crt", '-verify_return_error',
		'-cert', "$tls/client.crt", '-key', "$tls/client.key", @args ]);
	my ($proto, $cipher) = $text =~ /^New, (TLSv[\d.]+), Cipher is (\S+)/m;
	my $ok = $code == 0 && defined $cipher && $cipher ne '(NONE)';
	return ($ok, ($proto // '?') . ' ' . ($cipher // '?'), $text);
}

for my $weak (
	[ 'AES128-SHA',                  'static RSA, CBC, SHA-1' ],
	[ 'AES256-SHA256',               'static RSA, CBC, SHA-256' ],
	[ 'AES128-GCM-SHA256',           'static RSA, AES-GCM' ],
	[ 'AES256-GCM-SHA384',           'static RSA, AES-GCM' ],
	[ 'ECDHE-RSA-AES128-SHA',        'ECDHE, CBC, SHA-1' ],
	[ 'ECDHE-RSA-AES256-SHA384',     'ECDHE, CBC, SHA-384' ],
	[ 'DHE-RSA-AES256-SHA',          'DHE, CBC, SHA-1' ],
	[ 'AES128-SHA:AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA', 'all of them at once' ],
) {
	my ($suite, $what) = @$weak;
	my ($ok, $got, $text) = handshake('-tls1_2', '-cipher', "$suite:\@SECLEVEL=0");
	ok(!$ok, "TLS 1.2 offering only $suite ($what) is refused") or diag("negotiated $got");
}

for my $good (qw(ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305
		 DHE-RSA-AES128-GCM-SHA256)) {
	my ($ok, $got, $text) = handshake('-tls1_2', '-cipher', $good);
	ok($ok, "TLS 1.2 offering only $good is accepted") or diag($text);
	is($got, "TLSv1.2 $good", '... and negotiates it');
}

# Weak suites offered first, a good one last: the server picks the good one.
my ($ok, $got) = handshake('-tls1_2', '-cipher', "AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:\@SECLEVEL=0");
ok($ok && $got eq 'TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256', 'offered after weak ones, the good suite is chosen')
	or diag("negotiated $got");

($ok, $got) = handshake('-tls1_3');
ok($ok && $got =~ /^TLSv1\.3 TLS_/, "TLS 1.3 is served as before ($got)");

ok($d->wait_log(qr/client refused .*refusal=tls_handshake/, 5), 'refused handshakes are logged');

done_testing();

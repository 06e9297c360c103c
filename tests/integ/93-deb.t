#!/usr/bin/perl
# 93-deb.t - the Debian packages, as an operator gets them: `make deb`
# (dpkg-buildpackage on the committed tree) builds nvsrelayd, libnvsrelay0
# and libnvsrelay-dev; lintian finds no error or warning; the files, modes,
# conffile and dependencies are what they should be; installed with
# `dpkg --root` into a scratch root (maintainer scripts run against that root
# through DPKG_ROOT, nothing on this machine changes) the service user
# exists, the units are enabled (the TCP socket is not) and the configuration
# is root:nvsrelayd 0640; the packaged units pass `systemd-analyze verify`;
# the installed daemon, started with the installed configuration against a
# throwaway cluster, streams events to the installed nvsrelay and to a
# program built with the installed header, library and pkg-config file; and
# purging removes it all.
#
# It takes a while (a full package build), so it runs only with
# NVSRELAY_TEST_DEB=1 (.ci/run sets it), and once per `make check`: not
# again on the sanitizer build.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp ();
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";

sub which {
	my ($prog) = @_;
	for (split /:/, $ENV{PATH} || '/usr/bin:/bin') { return "$_/$prog" if -x "$_/$prog" }
	return undef;
}

plan skip_all => 'set NVSRELAY_TEST_DEB=1 to build and check the Debian packages (about a minute)'
	unless ($ENV{NVSRELAY_TEST_DEB} // '') eq '1';
plan skip_all => 'packaging is the same on the sanitizer build; checked on the normal one'
	if $build =~ m{/build-san/?$};
for (qw(dpkg-buildpackage dh dpkg-deb git)) {
	plan skip_all => "$_ not installed (make deps installs debhelper)" unless which($_);
}
plan skip_all => 'not a git checkout: make deb packages the committed tree'
	unless -e "$root/.git";

my $tmp = File::Temp::tempdir('nvs93.XXXXXX', DIR => '/tmp', CLEANUP => !$ENV{NVS_KEEP});
my ($version) = NvsTest::slurp("$root/Makefile") =~ /^VERSION\s*:=\s*(\S+)/m;

# ---- build ----------------------------------------------------------------------
my $t0 = NvsTest::now();
{
	# nocheck: make check runs the unit tests already.
	local $ENV{DEB_BUILD_OPTIONS} = 'nocheck noautodbgsym parallel=2';
	my ($rc, $out) = NvsTest::run_cmd([ 'make', '-s', '-C', $root, 'deb', "DEBDIR=$tmp/deb" ]);
	is($rc, 0, 'make deb') or BAIL_OUT("make deb failed:\n" . join("\n", (split /\n/, $out)[-40 .. -1]));
}
note(sprintf 'make deb: %.1f s', NvsTest::now() - $t0);
my $arch = `dpkg --print-architecture`;
chomp $arch;
my %deb = map { $_ => "$tmp/deb/${_}_${version}_$arch.deb" } qw(nvsrelayd libnvsrelay0 libnvsrelay-dev);
ok(-f $deb{$_}, "$_ $version built") for sort keys %deb;
my ($changes) = glob("$tmp/deb/*.changes");
my ($triplet) = `dpkg-architecture -qDEB_HOST_MULTIARCH` =~ /(\S+)/;

like(NvsTest::slurp("$root/packaging/debian/changelog"), qr/^nvsrelayd \(\Q$version\E\)/,
	'debian/changelog carries the Makefile version');

SKIP: {
	my $lintian = which('lintian');
	skip 'lintian not installed (deps.sh installs it with NVSRELAY_TEST_DEB=1)', 1 unless $lintian;
	my $t1 = NvsTest::now();
	my ($rc, $out) = NvsTest::run_cmd([ $lintian, '--fail-on', 'error,warning', '--tag-display-limit', '0', $changes ]);
	$out =~ s/^running with root privileges is not recommended!\n//m;
	is($rc, 0, 'lintian: no errors or warnings') or diag($out);
	note("lintian: $_") for grep {/\S/} split /\n/, $out;
	note(sprintf 'lintian: %.1f s', NvsTest::now() - $t1);
}

# ---- contents -------------------------------------------------------------------
sub contents {
	my ($deb) = @_;
	my %f;
	for (split /\n/, `dpkg-deb -c '$deb'`) {
		my ($mode, $own, $path) = /^(\S+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+\.(\S+)/ or next;
		$f{$path} = "$mode $own";
	}
	return \%f;
}
my $c = contents($deb{nvsrelayd});
my %want = (
	'/usr/sbin/nvsrelayd' => '-rwxr-xr-x root/root',
	'/usr/bin/nvsrelay' => '-rwxr-xr-x root/root',
	'/etc/nvsrelayd/nvsrelayd.conf' => '-rw-r--r-- root/root',
	'/lib/systemd/system/nvsrelayd.service' => '-rw-r--r-- root/root',
	'/lib/systemd/system/nvsrelayd.socket' => '-rw-r--r-- root/root',
	'/lib/systemd/system/nvsrelayd-tcp.socket' => '-rw-r--r-- root/root',
	'/usr/lib/sysusers.d/nvsrelayd.conf' => '-rw-r--r-- root/root',
	'/usr/share/man/man8/nvsrelayd.8.gz' => '-rw-r--r-- root/root',
	'/usr/share/man/man5/nvsrelayd.conf.5.gz' => '-rw-r--r-- root/root',
	'/usr/share/man/man1/nvsrelay.1.gz' => '-rw-r--r-- root/root',
	'/usr/share/doc/nvsrelayd/PROTOCOL.md.gz' => '-rw-r--r-- root/root',
);
is($c->{$_}, $want{$_}, "nvsrelayd: $_ $want{$_}") for sort keys %want;
my $ld = contents($deb{'libnvsrelay-dev'});
my $l0 = contents($deb{libnvsrelay0});
ok($l0->{"/usr/lib/$triplet/libnvsrelay.so.0"}, "libnvsrelay0: /usr/lib/$triplet/libnvsrelay.so.0");
ok($ld->{$_}, "libnvsrelay-dev: $_")
	for ('/usr/include/nvsrelay.h', map {"/usr/lib/$triplet/$_"} qw(libnvsrelay.a libnvsrelay.so pkgconfig/nvsrelay.pc));

my $ctl = "$tmp/ctl";
system('dpkg-deb', '-e', $deb{nvsrelayd}, $ctl);
is(NvsTest::slurp("$ctl/conffiles"), "/etc/nvsrelayd/nvsrelayd.conf\n", 'the configuration is a conffile');
my $depends = `dpkg-deb -f '$deb{nvsrelayd}' Depends`;
like($depends, qr/systemd \| systemd-standalone-sysusers/, 'depends on a systemd-sysusers provider');
unlike($depends, qr/libnvsrelay0/, 'nvsrelay links the library statically: no dependency on libnvsrelay0');
my $postinst = NvsTest::slurp("$ctl/postinst");
ok(index($postinst, 'systemd-sysusers') >= 0 && index($postinst, 'systemd-sysusers') < index($postinst, 'deb-systemd-invoke'),
	'postinst creates the user before it starts the units');
like(`dpkg-deb -f '$deb{"libnvsrelay-dev"}' Depends`, qr/libnvsrelay0 \(= \Q$version\E\)/,
	'libnvsrelay-dev depends on the same libnvsrelay0');

# ---- install into a scratch root --------------------------------------------------
my $R = "$tmp/root";
system('mkdir', '-p', "$R/var/lib/dpkg/updates", "$R/var/lib/dpkg/info", "$R/etc");
open(my $st, '>', "$R/var/lib/dpkg/status") or die $!;
close $st;
my @dpkg = ('dpkg', "--root=$R", '--force-script-chrootless', '--force-depends', '--log=/dev/null');
my ($rc, $out) = NvsTest::run_cmd([ @dpkg, '-i', @deb{qw(nvsrelayd libnvsrelay0 libnvsrelay-dev)} ]);
is($rc, 0, 'dpkg --root -i: installs, maintainer scripts run against the root') or diag($out);
like(NvsTest::slurp("$R/etc/passwd"), qr{^nvsrelayd:x:\d+:\d+:[^:]*:/nonexistent:/usr/sbin/nologin$}m,
	'postinst: system user nvsrelayd');
my ($gid) = NvsTest::slurp("$R/etc/group") =~ /^nvsrelayd:x:(\d+):/m;
my @cs = stat("$R/etc/nvsrelayd/nvsrelayd.conf");
is(sprintf('%04o %d:%d', $cs[2] & 07777, $cs[4], $cs[5]), sprintf('0640 0:%d', $gid // -1),
	'postinst: nvsrelayd.conf root:nvsrelayd 0640');
ok(-l "$R/etc/systemd/system/multi-user.target.wants/nvsrelayd.service", 'nvsrelayd.service enabled');
ok(-l "$R/etc/systemd/system/sockets.target.wants/nvsrelayd.socket", 'nvsrelayd.socket enabled');
ok(!-e "$R/etc/systemd/system/sockets.target.wants/nvsrelayd-tcp.socket", 'nvsrelayd-tcp.socket not enabled');

SKIP: {
	my $sa = which('systemd-analyze');
	skip 'systemd-analyze not installed', 2 unless $sa;
	# The units the packaged ones refer to (sockets.target, ...) and the
	# kill(1) of ExecReload come from this machine.
	system('cp', '-an', '/lib/systemd/system/.', "$R/lib/systemd/system/");
	system('mkdir', '-p', "$R/bin");
	system('cp', '/bin/kill', "$R/bin/kill");
	($rc) = NvsTest::run_cmd([ $sa, 'verify', '--man=no', "--root=$R",
		map {"/lib/systemd/system/$_"} qw(nvsrelayd.service nvsrelayd.socket nvsrelayd-tcp.socket) ], "$tmp/verify.err");
	is($rc, 0, 'systemd-analyze verify --root: packaged units');
	is(NvsTest::slurp("$tmp/verify.err"), '', 'systemd-analyze verify --root: nothing on stderr');
}

SKIP: {
	my $groff = which('groff');
	skip 'groff not installed', 3 unless $groff;
	for my $page (qw(man8/nvsrelayd.8 man5/nvsrelayd.conf.5 man1/nvsrelay.1)) {
		my $err = `zcat '$R/usr/share/man/$page.gz' | '$groff' -man -ww -z 2>&1`;
		is($err, '', "man page $page renders without warnings");
	}
}

# ---- run what was installed -------------------------------------------------------
my $libdir = "$R/usr/lib/$triplet";
{
	local %ENV = (%ENV, LD_LIBRARY_PATH => $libdir);
	($rc, $out) = NvsTest::run_cmd([ "$R/usr/sbin/nvsrelayd", '--version' ]);
	is($out, "nvsrelayd $version\n", 'installed nvsrelayd --version');
	local %ENV = (PATH => $ENV{PATH});
	($rc, $out) = NvsTest::run_cmd([ "$R/usr/sbin/nvsrelayd", '--check-config', '--config', "$R/etc/nvsrelayd/nvsrelayd.conf" ]);
	is($rc, 0, 'the packaged configuration is valid') or diag($out);
}

my $pg = NvsTest::Pg->start();
my $d  = NvsTest::Daemon->start($pg, bin => "$R/usr/sbin/nvsrelayd",
	args => [ '--config', "$R/etc/nvsrelayd/nvsrelayd.conf" ]);
ok($d, 'installed nvsrelayd runs with the installed configuration');
# Both clients start from a time just before the insert (and after the
# relay's first tick), so neither has to be subscribed before it happens.
my $dbh = $pg->dbh;
my ($since) = $dbh->selectrow_array(
	q{SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
my $id = NvsTest::insert_health_event($dbh, node => 'gpu-node-93');
($rc, $out) = NvsTest::run_cmd([ "$R/usr/bin/nvsrelay", 'watch', '--socket', $d->socket, '--start-at', $since,
	'--count', '1', '--timeout', '20' ], "$tmp/watch.err");
my $ev = eval { $NvsTest::JSON->decode((split /\n/, $out)[0] // '') };
is($ev && $ev->{documentKey}{_id}, $id, 'installed nvsrelay watch prints the event')
	or diag($out . NvsTest::slurp("$tmp/watch.err"));

SKIP: {
	my $cc = which('cc');
	skip 'no C compiler', 3 unless $cc && which('pkg-config');
	local $ENV{PKG_CONFIG_PATH}       = "$libdir/pkgconfig";
	local $ENV{PKG_CONFIG_SYSROOT_DIR} = $R;
	my $flags = `pkg-config --cflags --libs nvsrelay`;
	like($flags, qr/-lnvsrelay\b/, "pkg-config nvsrelay: $flags" =~ s/\s+$//r);
	my $src = "$tmp/client.c";
	open(my $fh, '>', $src) or die $!;
	print $fh <<'EOF';
#include <stdio.h>
#include <nvsrelay.h>

/* Prints the operation type of the first event at or after the time argv[2]. */
int main(int argc, char **argv)
{
	const nvsrelay_frame *f;
	nvsrelay_conn *c;
	int r = 1;

	if (argc < 3)
		return 64;
	c = nvsrelay_connect_unix(argv[1], NULL);
	if (!c || nvsrelay_status(c) < 0 ||
	    nvsrelay_watch(c, 1, &(struct nvsrelay_watch_opts){ .start_at_operation_time = argv[2] }) < 0)
		goto out;
	while (nvsrelay_next(c, 20000, &f) > 0) {
		if (nvsrelay_frame_type(f) == NVSRELAY_FRAME_EVENT) {
			printf("%s\n", nvsrelay_event_operation_type(f));
			r = 0;
			break;
		}
		if (nvsrelay_frame_type(f) == NVSRELAY_FRAME_ERROR)
			break;
	}
out:
	if (c && r)
		fprintf(stderr, "client: %s\n", nvsrelay_error(c)->message);
	nvsrelay_close(c);
	return r;
}
EOF
	close $fh;
	($rc, $out) = NvsTest::run_cmd([ 'sh', '-c', "$cc -std=c11 -Wall -Werror -o $tmp/client $src $flags" ]);
	is($rc, 0, 'a client builds against the installed header and library') or diag($out);
	local $ENV{LD_LIBRARY_PATH} = $libdir;
	($rc, $out) = NvsTest::run_cmd([ "$tmp/client", $d->socket, $since ]);
	is($out, "insert\n", 'and receives the event through libnvsrelay.so.0') or diag($out);
}
$d->stop;

($rc, $out) = NvsTest::run_cmd([ @dpkg, '--purge', qw(libnvsrelay-dev libnvsrelay0 nvsrelayd) ]);
is($rc, 0, 'dpkg --purge') or diag($out);
my @left = grep { !m{^\Q$R\E/(?:var|etc/(?:passwd|group|shadow|gshadow|\.pwd\.lock)[-]?$)} }
	split /\n/, `find '$R' -path '$R/var' -prune -o -path '$R/lib/systemd' -prune -o -path '$R/bin' -prune -o -type f -print -o -type l -print`;
is_deeply(\@left, [], 'purged: no file of the packages is left');

done_testing();

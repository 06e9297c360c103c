#!/usr/bin/perl
# 88-image.t - the OCI image as a cluster gets it (`make image`,
# packaging/image/build.sh):
#  - built twice from scratch (two `make deb`, two assemblies on the cached
#    base) it has the same manifest digest: reproducible;
#  - the layout is valid (umoci unpacks it, where umoci is installed), the
#    config runs nvsrelayd as entrypoint as a non-root user, nvsrelay is
#    inside, and there is no shell or package manager;
#  - the unpacked root filesystem, mounted read-only with only the socket
#    directory and /tmp writable (what readOnlyRootFilesystem and emptyDirs
#    give a pod), runs nvsrelayd as that user against the test PostgreSQL
#    (TLS client certificate, DATASTORE_* from the environment); a
#    subscriber outside receives an event, and the image's own nvsrelay
#    talks to the admin socket;
#  - under podman too, where podman is installed.
# The run uses unshare(1) and chroot(8) as root: what a container runtime
# does, minus the isolation.  Slow (two package builds, about a minute), so
# it runs with NVSRELAY_TEST_IMAGE=1 (.ci/run sets it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp ();
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";

sub which {
	my ($prog) = @_;
	for (split /:/, $ENV{PATH} || '/usr/bin:/bin') { return "$_/$prog" if -x "$_/$prog" }
	return undef;
}

plan skip_all => 'set NVSRELAY_TEST_IMAGE=1 to build and run the OCI image (about a minute)'
	unless ($ENV{NVSRELAY_TEST_IMAGE} // '') eq '1';
plan skip_all => 'the image is the same on the sanitizer build; checked on the normal one'
	if $build =~ m{/build-san/?$};
for (qw(mmdebstrap dpkg-buildpackage dh dpkg-deb git unshare chroot mount)) {
	plan skip_all => "$_ not installed (make deps installs mmdebstrap and debhelper)" unless which($_);
}
plan skip_all => 'not a git checkout: make image packages the committed tree' unless -e "$root/.git";
plan skip_all => 'needs root (mount namespaces and chroot to run the unpacked image)' unless $> == 0;

my $tmp  = File::Temp::tempdir('nvs88.XXXXXX', DIR => '/tmp', CLEANUP => !$ENV{NVS_KEEP});
my $json = JSON::PP->new->utf8->canonical;
my ($version) = NvsTest::slurp("$root/Makefile") =~ /^VERSION\s*:=\s*(\S+)/m;

# ---- build, twice -----------------------------------------------------------------
my @digest;
for my $n (1, 2) {
	my $t0 = NvsTest::now();
	local $ENV{DEB_BUILD_OPTIONS} = 'nocheck noautodbgsym parallel=2';
	my ($rc, $out) = NvsTest::run_cmd([ 'make', '-s', '-C', $root, 'image', "DEBDIR=$tmp/deb$n",
		"IMAGEDIR=$tmp/image$n", "IMAGE_CACHE=$build/image-base" ]);
	is($rc, 0, "make image ($n)") or BAIL_OUT("make image failed:\n" . join("\n", grep { defined } (split /\n/, $out)[-30 .. -1]));
	note(sprintf 'make image %d: %.1f s', $n, NvsTest::now() - $t0);
	($digest[$n]) = NvsTest::slurp("$tmp/image$n/digest") =~ /(sha256:[0-9a-f]{64})/;
}
ok($digest[1], "manifest digest $digest[1]");
is($digest[2], $digest[1], 'the second build from the same sources has the same digest');
is(NvsTest::slurp("$tmp/image1/nvsrelayd.oci.tar"), NvsTest::slurp("$tmp/image2/nvsrelayd.oci.tar"),
	'and the same archive, byte for byte');

# ---- the layout -------------------------------------------------------------------
my $oci = "$tmp/image1/oci";
sub blob { my ($d) = @_; $d =~ s/^sha256://; return "$oci/blobs/sha256/$d" }
my $index = $json->decode(NvsTest::slurp("$oci/index.json"));
my ($mdesc) = @{ $index->{manifests} };
is($mdesc->{digest}, $digest[1], 'index.json names the manifest');
is($mdesc->{annotations}{'org.opencontainers.image.ref.name'}, $version, "tagged $version");
my $manifest = $json->decode(NvsTest::slurp(blob($mdesc->{digest})));
my $config   = $json->decode(NvsTest::slurp(blob($manifest->{config}{digest})));
my $cc = $config->{config};
is_deeply($cc->{Entrypoint}, ['/usr/sbin/nvsrelayd'], 'entrypoint nvsrelayd');
like($cc->{User} // '', qr/^[1-9][0-9]*:[1-9][0-9]*$/, "runs as a numeric non-root user ($cc->{User})");
is(scalar @{ $manifest->{layers} }, 1, 'one layer');
for my $b ($manifest->{config}, @{ $manifest->{layers} }) {
	my ($hex) = `sha256sum '${\ blob($b->{digest}) }'` =~ /^([0-9a-f]{64})/;
	is("sha256:$hex", $b->{digest}, "blob $b->{mediaType} matches its digest");
	is(-s blob($b->{digest}), $b->{size}, "and its size");
}

SKIP: {
	skip 'umoci not installed', 1 unless which('umoci');
	my ($rc, $out) = NvsTest::run_cmd([ 'umoci', 'unpack', '--image', "$oci:$version", "$tmp/bundle" ]);
	is($rc, 0, 'umoci unpacks it into a runtime bundle') or diag($out);
}

my $rootfs = "$tmp/rootfs";
mkdir $rootfs or die $!;
system('tar', '-C', $rootfs, '-xzf', blob($manifest->{layers}[0]{digest})) == 0 or die 'tar failed';
ok(-x "$rootfs/usr/sbin/nvsrelayd", 'nvsrelayd inside');
ok(-x "$rootfs/usr/bin/nvsrelay", 'nvsrelay inside (for kubectl exec)');
ok(!-e "$rootfs/bin/sh" && !-e "$rootfs/usr/bin/apt" && !-e "$rootfs/usr/bin/dpkg", 'no shell, no package manager');
my ($uid, $gid) = split /:/, $cc->{User};
like(NvsTest::slurp("$rootfs/etc/passwd"), qr/^nvsrelayd:x:$uid:$gid:/m, 'the user is in /etc/passwd');

# ---- run it ------------------------------------------------------------------------
my $pg   = NvsTest::Pg->start();
my $penv = $pg->env;
# What the pod mounts: the client certificate (a Secret), the socket
# directory (an emptyDir), written here and seen from outside.
my $run   = "$tmp/run";
my $certs = "$tmp/certs";
mkdir $_ or die $! for $run, $certs;
chown $uid, $gid, $run;
my %from = ('tls.crt' => 'DATASTORE_SSLCERT', 'tls.key' => 'DATASTORE_SSLKEY', 'ca.crt' => 'DATASTORE_SSLROOTCERT');
for my $f (sort keys %from) {
	system('cp', $penv->{ $from{$f} }, "$certs/$f");
	chown $uid, $gid, "$certs/$f";
	chmod($f eq 'tls.key' ? 0600 : 0644, "$certs/$f");
}
my $hport = NvsTest::free_port();

# in_image(@cmd): the command for running @cmd in the image: a private
# mount namespace with the root filesystem read-only, /dev from the host,
# tmpfs on /tmp, the socket and certificate directories bound in; then
# chroot as the image's user.
sub in_image {
	my (@cmd) = @_;
	my $script = join(' && ',
		'mount --bind "$R" "$R"', 'mount -o remount,bind,ro "$R"', 'mount --rbind /dev "$R/dev"',
		'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"', 'mkdir "$R/tmp/certs"', 'mount --bind "$C" "$R/tmp/certs"',
		'mount --bind "$S" "$R/run/nvsrelayd"', 'exec chroot --userspec="$U" "$R" "$@"');
	return ('env', @{ $cc->{Env} || [] }, "R=$rootfs", "C=$certs", "S=$run", "U=$uid:$gid", 'unshare', '-m', '--propagation', 'private',
		'sh', '-c', $script, 'in-image', @cmd);
}

my %denv = (PATH => '/usr/sbin:/usr/bin:/sbin:/bin', DATASTORE_HOST => $penv->{DATASTORE_HOST},
	DATASTORE_PORT => $penv->{DATASTORE_PORT}, DATASTORE_DATABASE => $penv->{DATASTORE_DATABASE} // 'nvsentinel',
	DATASTORE_USERNAME => $penv->{DATASTORE_USERNAME}, DATASTORE_SSLMODE => 'verify-full',
	DATASTORE_SSLCERT => '/tmp/certs/tls.crt', DATASTORE_SSLKEY => '/tmp/certs/tls.key',
	DATASTORE_SSLROOTCERT => '/tmp/certs/ca.crt');
my $log = "$tmp/nvsrelayd.log";
my $pid = fork;
die "fork: $!" unless defined $pid;
if (!$pid) {
	open(STDIN, '<', '/dev/null');
	open(STDOUT, '>', $log) or POSIX::_exit(127);
	open(STDERR, '>&', \*STDOUT);
	%ENV = %denv;
	exec(in_image(@{ $cc->{Entrypoint} }, @{ $cc->{Cmd} || [] }, '--set', 'log_format=text',
		'--set', "http_listen=127.0.0.1:$hport")) or POSIX::_exit(127);
}
if (open(my $pf, '>>', $pg->dir . '/pids')) { print $pf "$pid\n"; close $pf }

my $sock = "$run/nvsrelayd.sock";
my $t0 = NvsTest::now();
Time::HiRes::sleep(0.2) until -S $sock || NvsTest::now() - $t0 > 30 || waitpid($pid, POSIX::WNOHANG()) == $pid;
ok(-S $sock, "the image's nvsrelayd listens on /run/nvsrelayd/nvsrelayd.sock (read-only root, uid $uid)")
	or diag(NvsTest::slurp($log));

SKIP: {
	skip 'daemon not up', 5 unless -S $sock;
	my $c = NvsTest::Client->connect($sock);
	$c->hello('88-image');
	$c->watch(consumer => 'image-consumer');
	ok($c->recv_op('bookmark', 30), 'a subscriber outside the image subscribes');
	my $dbh = $pg->dbh();
	my $id = NvsTest::insert_health_event($dbh, node => 'image-node');
	my $evs = $c->events(1, 30);
	is(scalar(@$evs), 1, 'and receives the event') or diag(NvsTest::slurp($log));
	is($evs->[0]{event}{operationType}, 'insert', 'an insert');

	my ($rc, $out) = NvsTest::run_cmd([ in_image('/usr/bin/nvsrelay', 'status') ], "$tmp/status.err");
	$out .= NvsTest::slurp("$tmp/status.err");
	is($rc, 0, "the image's nvsrelay status reaches the admin socket (NVSRELAY_ADMIN_SOCKET)") or diag($out);
	like($out, qr/ready|streaming/i, 'and reports the relay') or diag($out);
}

kill 'TERM', $pid;
waitpid($pid, 0);
is(NvsTest::wait_code($?), 0, 'exits 0 on SIGTERM') or diag(NvsTest::slurp($log));
unlike(NvsTest::slurp($log), qr/read-only file system|permission denied/i, 'no write attempted outside the mounts');

# ---- podman ------------------------------------------------------------------------
SKIP: {
	skip 'podman not installed', 2 unless which('podman');
	my ($rc, $out) = NvsTest::run_cmd([ 'podman', 'load', '-q', '-i', "$tmp/image1/nvsrelayd.oci.tar" ]);
	is($rc, 0, 'podman load') or diag($out);
	my ($ref) = $out =~ /Loaded image(?:\(s\))?:\s*(\S+)/;
	($rc, $out) = NvsTest::run_cmd([ 'podman', 'run', '--rm', '--read-only', '--network', 'none', $ref // $digest[1],
		'--version' ]);
	is($rc, 0, "podman run --read-only: nvsrelayd --version") or diag($out);
}

done_testing();

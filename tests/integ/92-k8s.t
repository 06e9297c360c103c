#!/usr/bin/perl
# 92-k8s.t - the Kubernetes packaging, checked offline on what a cluster
# would receive: the Helm chart in packaging/helm/nvsrelayd rendered with
# `helm template` (standalone Deployment, and the native sidecar in a parent
# chart that includes it, with the seed's global.datastore values) and the
# example in packaging/k8s/:
#  - helm lint --strict, the values schema and the chart's own refusals;
#  - yamllint --strict on every rendered manifest and plain YAML file;
#  - the OpenAPI schemas of kubernetes-models (types, required fields);
#  - what the schemas cannot see: the sidecar is an init container with
#    restartPolicy Always, probes on /livez and /readyz at a declared port,
#    restricted security contexts, resources, the client certificate secret
#    mounted 0440 with an fsGroup, the socket directory shared with the
#    component, and the seed's values arriving as DATASTORE_*;
#  - the rendered nvsrelayd.conf and environment pass the daemon's own
#    `nvsrelayd --check-config` and give the seed's connection settings.
# helm and kubernetes-models come from npm (tests/tools/helm.sh); without
# them those parts are skipped with the reason.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Test::More;
use NvsTest;

my $root  = $NvsTest::ROOT;
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";
my $chart = "$root/packaging/helm/nvsrelayd";
my $example = "$root/packaging/k8s/nvsentinel-sidecar.yaml";
my $tmp   = File::Temp::tempdir('nvs92.XXXXXX', DIR => '/tmp', CLEANUP => 1);
my $json  = JSON::PP->new->utf8->canonical;

# Keys of nvsrelayd.conf that other work in progress adds; a binary that
# does not know them yet skips their check instead of failing.
my %pending = map { $_ => 1 } qw(http_listen listen_tcp tls_cert_file tls_key_file tls_ca_file);

sub which {
	my ($prog) = @_;
	for (split /:/, $ENV{PATH} || '/usr/bin:/bin') { return "$_/$prog" if -x "$_/$prog" }
	return undef;
}

sub write_file {
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close $fh;
	return $path;
}

# YAML documents (1.1, as Kubernetes reads them: 0440 is octal) as Perl data,
# through the python3-yaml that yamllint brings.
my $py = -x '/usr/bin/python3' ? '/usr/bin/python3' : which('python3');
sub load_yaml {
	my ($file) = @_;
	my ($rc, $out) = NvsTest::run_cmd([ $py, '-c',
		'import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)',
		$file ], "$tmp/py.err");
	die "cannot parse $file: " . NvsTest::slurp("$tmp/py.err") if $rc;
	return $json->decode($out);
}

# The seed's values for NVSentinel on PostgreSQL (docs: "Custom
# Configuration"), as an operator passes them.
my %seed = (host => 'your-postgresql-host', port => 5432, database => 'nvsentinel', username => 'postgres',
	sslmode => 'verify-full', sslcert => '/etc/ssl/client-certs/tls.crt', sslkey => '/etc/ssl/client-certs/tls.key',
	sslrootcert => '/etc/ssl/client-certs/ca.crt');
my $seed_values = write_file("$tmp/seed-values.yaml", <<"EOF");
global:
  datastore:
    provider: "postgresql"
    connection:
      host: "$seed{host}"
      port: $seed{port}
      database: "$seed{database}"
      username: "$seed{username}"
      sslmode: "$seed{sslmode}"
      sslcert: "$seed{sslcert}"
      sslkey: "$seed{sslkey}"
      sslrootcert: "$seed{sslrootcert}"
  mongodbStore:
    enabled: false
EOF

# ---- render ---------------------------------------------------------------------
my ($helm, $why) = (undef, '');
{
	my ($rc, $out) = NvsTest::run_cmd([ 'sh', "$root/tests/tools/helm.sh" ], "$tmp/helm.err");
	chomp $out;
	if ($rc == 0 && -x $out) { $helm = $out }
	else { $why = 'no helm: ' . ((grep {/\S/} split /\n/, NvsTest::slurp("$tmp/helm.err"))[-1] // "helm.sh exit $rc") }
}
$ENV{"HELM_${_}_HOME"} = "$tmp/helm-$_" for qw(CACHE CONFIG DATA);

my @manifests = ($example);    # every file that goes through yamllint and the schemas
my %rendered;                  # scenario => [documents]

sub helm_run {
	my (@args) = @_;
	my ($rc, $out) = NvsTest::run_cmd([ $helm, @args ], "$tmp/helm-run.err");
	return ($rc, $out, NvsTest::slurp("$tmp/helm-run.err"));
}

SKIP: {
	skip $why, 12 unless $helm;
	my ($rc, $out, $err) = helm_run('version', '--short');
	note("helm $out");

	($rc, $out, $err) = helm_run('lint', '--strict', $chart);
	is($rc, 0, 'helm lint --strict') or diag($out . $err);
	($rc, $out, $err) = helm_run('lint', '--strict', $chart, '-f', $seed_values, '--set', 'deployment.enabled=true',
		'--set', 'tcp.enabled=true');
	is($rc, 0, 'helm lint --strict with the seed values, standalone') or diag($out . $err);

	# The chart on its own: the ConfigMap, plus Deployment and Service when
	# standalone.
	my %scen = (
		defaults   => [],
		standalone => [ '-f', $seed_values, '--set', 'deployment.enabled=true', '--set', 'tcp.enabled=true' ],
	);
	for my $name (sort keys %scen) {
		($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--namespace', 'nvsentinel', @{ $scen{$name} });
		is($rc, 0, "helm template: $name") or diag($err);
		push @manifests, write_file("$tmp/$name.yaml", $out);
		$rendered{$name} = load_yaml("$tmp/$name.yaml");
	}
	is_deeply([ map { $_->{kind} } @{ $rendered{defaults} } ], ['ConfigMap'], 'defaults: only the ConfigMap');
	is_deeply([ sort map { $_->{kind} } @{ $rendered{standalone} } ], [qw(ConfigMap Deployment Service)],
		'standalone: ConfigMap, Deployment, Service');

	# As a parent chart uses it: NVSentinel's component chart with this chart
	# as a dependency, taking the sidecar into its pod.
	my $parent = "$tmp/parent";
	system('mkdir', '-p', "$parent/templates", "$parent/charts");
	system('cp', '-r', $chart, "$parent/charts/nvsrelayd");
	write_file("$parent/Chart.yaml", "apiVersion: v2\nname: fault-quarantine\nversion: 0.1.0\n"
		. "dependencies:\n  - name: nvsrelayd\n    version: 0.1.0\n");
	write_file("$parent/values.yaml", "image: registry.example.com/nvsentinel/fault-quarantine:example\n");
	write_file("$parent/templates/deployment.yaml", <<'EOF');
{{- $relay := dict "root" $ "values" .Values.nvsrelayd }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fault-quarantine
spec:
  selector:
    matchLabels:
      app: fault-quarantine
  template:
    metadata:
      labels:
        app: fault-quarantine
    spec:
      securityContext:
        runAsNonRoot: true
        fsGroup: {{ .Values.nvsrelayd.podSecurityContext.fsGroup }}
      initContainers:
        {{- include "nvsrelayd.sidecar" $relay | nindent 8 }}
      containers:
        - name: fault-quarantine
          image: {{ .Values.image }}
          env:
            {{- include "nvsrelayd.socketEnv" $relay | nindent 12 }}
          volumeMounts:
            {{- include "nvsrelayd.socketMount" $relay | nindent 12 }}
      volumes:
        {{- include "nvsrelayd.volumes" $relay | nindent 8 }}
EOF
	($rc, $out, $err) = helm_run('template', 'nvsentinel', $parent, '--namespace', 'nvsentinel', '-f', $seed_values);
	is($rc, 0, 'helm template: a component chart with the sidecar') or diag($err);
	push @manifests, write_file("$tmp/sidecar.yaml", $out);
	$rendered{sidecar} = load_yaml("$tmp/sidecar.yaml");
	is_deeply([ sort map { $_->{kind} } @{ $rendered{sidecar} } ], [qw(ConfigMap Deployment)],
		'sidecar: the component Deployment and the relay ConfigMap');

	# What the chart refuses.
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.provider=mongodb');
	ok($rc && $err =~ /provider/, 'refused: global.datastore.provider other than postgresql') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.connection.port=abc');
	ok($rc && $err =~ /port/, 'refused: a port that is not a number') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.connection.sslmode=prefer');
	ok($rc && $err =~ /sslmode/, 'refused: sslmode prefer (nvsrelayd refuses it too)') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'deployment.enabled=true');
	ok($rc && $err =~ /tcp\.enabled/, 'refused: a standalone Deployment without its TCP listener') or diag($err);
}

# ---- yamllint -------------------------------------------------------------------
SKIP: {
	my $yl = which('yamllint');
	skip 'yamllint not installed (make deps)', 1 unless $yl;
	my ($rc, $out) = NvsTest::run_cmd([ $yl, '--strict', '-f', 'parsable', '-c', "$root/tests/tools/yamllint.yml",
		@manifests, "$chart/Chart.yaml", "$chart/values.yaml" ]);
	is($rc, 0, 'yamllint --strict: ' . scalar(@manifests) . ' manifest files, Chart.yaml, values.yaml') or diag($out);
}

# ---- OpenAPI schemas ------------------------------------------------------------
SKIP: {
	my $node = which('node');
	skip 'node not installed', 1 unless $node;
	my ($rc, $models) = NvsTest::run_cmd([ 'sh', "$root/tests/tools/helm.sh", 'models' ], "$tmp/models.err");
	chomp $models;
	skip 'no kubernetes-models: ' . ((grep {/\S/} split /\n/, NvsTest::slurp("$tmp/models.err"))[-1] // "exit $rc"), 1 if $rc;
	my $out;
	($rc, $out) = NvsTest::run_cmd([ $node, "$root/tests/tools/k8s-validate.cjs", $models, @manifests ], "$tmp/val.err");
	my @res = map { $json->decode($_) } grep {/^\{/} split /\n/, $out;
	my @bad = grep { defined $_->{error} } @res;
	ok($rc == 0 && @res && !@bad, 'kubernetes-models: ' . scalar(@res) . ' documents valid')
		or diag(join("\n", map {"$_->{file} #$_->{doc} $_->{kind}/" . ($_->{name} // '') . ": $_->{error}"} @bad)
			. NvsTest::slurp("$tmp/val.err"));
}

# ---- what the schemas do not check ----------------------------------------------
sub find_docs {
	my ($docs, $kind) = @_;
	return grep { ($_->{kind} // '') eq $kind } @$docs;
}

sub env_of {
	my ($c) = @_;
	return { map { $_->{name} => $_->{value} } grep { exists $_->{value} } @{ $c->{env} || [] } };
}

# Checks the pod spec that runs nvsrelayd; $sidecar: it must be a native
# sidecar next to a component container.  Returns the relay container.
sub check_pod {
	my ($what, $pod, $configmaps, $sidecar) = @_;
	my @init = @{ $pod->{initContainers} || [] };
	my @main = @{ $pod->{containers} || [] };
	my ($relay) = grep { $_->{name} eq 'nvsrelayd' } ($sidecar ? @init : @main);
	ok($relay, "$what: nvsrelayd is " . ($sidecar ? 'an init container' : 'a container')) or return;
	if ($sidecar) {
		is($relay->{restartPolicy}, 'Always', "$what: restartPolicy Always (native sidecar)");
		is($init[0]{name}, 'nvsrelayd', "$what: the first init container, so it starts before the rest");
	}

	my %ports = map { (($_->{name} // '') => $_->{containerPort}, $_->{containerPort} => $_->{containerPort}) }
		@{ $relay->{ports} || [] };
	for ([ startupProbe => '/readyz' ], [ livenessProbe => '/livez' ], [ readinessProbe => '/readyz' ]) {
		my ($p, $path) = @$_;
		my $get = ($relay->{$p} || {})->{httpGet} || {};
		is($get->{path}, $path, "$what: $p on $path");
		ok(defined $get->{port} && $ports{ $get->{port} }, "$what: $p port $get->{port} is a declared container port");
	}

	my $sc = $relay->{securityContext} || {};
	my $psc = $pod->{securityContext} || {};
	ok(($sc->{runAsNonRoot} || $psc->{runAsNonRoot}) ? 1 : 0, "$what: runAsNonRoot");
	ok($sc->{readOnlyRootFilesystem}, "$what: readOnlyRootFilesystem");
	ok(exists $sc->{allowPrivilegeEscalation} && !$sc->{allowPrivilegeEscalation}, "$what: no privilege escalation");
	ok(grep({ $_ eq 'ALL' } @{ ($sc->{capabilities} || {})->{drop} || [] }), "$what: all capabilities dropped");
	my $res = $relay->{resources} || {};
	ok($res->{requests}{cpu} && $res->{requests}{memory} && $res->{limits}{memory},
		"$what: cpu and memory requests, memory limit");

	# PostgreSQL client certificate: the secret, 0440, group-owned by fsGroup.
	my %vols = map { $_->{name} => $_ } @{ $pod->{volumes} || [] };
	my %mounts = map { $_->{name} => $_ } @{ $relay->{volumeMounts} || [] };
	my $env = env_of($relay);
	my ($certdir) = ($env->{DATASTORE_SSLKEY} // '') =~ m{^(.*)/[^/]+$};
	my ($certvol) = grep { ($_->{mountPath} // '') eq ($certdir // '') } values %mounts;
	my $secret = $certvol && ($vols{ $certvol->{name} } || {})->{secret};
	ok($secret, "$what: the directory of DATASTORE_SSLKEY is a mounted secret");
	is(($secret || {})->{secretName}, 'postgresql-client-cert', "$what: cert-manager's postgresql-client-cert");
	is(sprintf('%04o', ($secret || {})->{defaultMode} // 0), '0440', "$what: certificate files mode 0440");
	ok($certvol && $certvol->{readOnly}, "$what: certificates mounted read-only");
	ok($psc->{fsGroup}, "$what: pod fsGroup set, so the files and the socket belong to the pod's group");

	# nvsrelayd.conf from the ConfigMap; the socket in a directory the
	# component mounts too.
	my ($cfmount) = grep { ($_->{mountPath} // '') eq '/etc/nvsrelayd' } values %mounts;
	my $cm_name = $cfmount && ($vols{ $cfmount->{name} }{configMap} || {})->{name};
	my ($cm) = grep { $_->{metadata}{name} eq ($cm_name // '') } @$configmaps;
	ok($cm && $cm->{data}{'nvsrelayd.conf'}, "$what: nvsrelayd.conf from ConfigMap " . ($cm_name // '?'));
	my %conf = ($cm ? $cm->{data}{'nvsrelayd.conf'} : '') =~ /^\s*(\w+)\s*=\s*"?([^"\n]*)"?\s*$/mg;
	is_deeply($relay->{args}, [ '--config', '/etc/nvsrelayd/nvsrelayd.conf' ], "$what: reads that file");
	my ($sockdir) = ($conf{listen_unix} // '') =~ m{^(.*)/[^/]+$};
	my ($smount) = grep { ($_->{mountPath} // '') eq ($sockdir // '') } values %mounts;
	ok($smount && ($vols{ $smount->{name} } || {})->{emptyDir}, "$what: listen_unix is in an emptyDir");
	is($conf{log_format}, 'json', "$what: JSON logs");
	like($conf{http_listen} // '', qr/^0\.0\.0\.0:(\d+)$/, "$what: HTTP on the pod address, where the kubelet probes");
	my ($hport) = ($conf{http_listen} // '') =~ /:(\d+)$/;
	ok($hport && grep({ $_ == $hport } values %ports), "$what: http_listen port is the probed port");
	# Mounts side by side: one inside another (a secret below the read-only
	# ConfigMap directory) may fail to be created in the container.
	my @mp = sort map { $_->{mountPath} } values %mounts;
	my @nested = grep { my $m = $_; grep { index($m, "$_/") == 0 } @mp } @mp;
	is_deeply(\@nested, [], "$what: no volume mounted inside another");
	# Every file the configuration names is in a mounted volume.
	for my $k (grep { /_file$/ && $conf{$_} ne '' } sort keys %conf) {
		my ($fdir) = $conf{$k} =~ m{^(.*)/[^/]+$};
		ok(defined $fdir && $mounts{ (grep { $mounts{$_}{mountPath} eq $fdir } keys %mounts)[0] // '' },
			"$what: $k $conf{$k} is in a mounted volume");
	}

	# The admin socket: in a directory of the relay's own, where nvsrelay
	# in the relay container finds it.
	my ($admindir) = ($conf{admin_socket} // '') =~ m{^(.*)/[^/]+$};
	my ($amount) = grep { ($_->{mountPath} // '') eq ($admindir // '') } values %mounts;
	ok($amount && ($vols{ $amount->{name} } || {})->{emptyDir}, "$what: admin_socket is in an emptyDir");
	is($env->{NVSRELAY_ADMIN_SOCKET}, $conf{admin_socket}, "$what: nvsrelay in the container finds the admin socket");
	if ($sidecar) {
		my ($app) = grep { $_->{name} ne 'nvsrelayd' } @main;
		my ($am) = grep { $smount && $_->{name} eq $smount->{name} } @{ ($app || {})->{volumeMounts} || [] };
		is($am && $am->{mountPath}, $sockdir, "$what: the component mounts the socket directory at the same path");
		is(env_of($app || {})->{NVSRELAY_SOCKET}, $conf{listen_unix}, "$what: and is told where the socket is");
		ok(!grep({ $amount && $_->{name} eq $amount->{name} } map { @{ $_->{volumeMounts} || [] } } @main),
			"$what: the component cannot reach the admin socket");
	}
	return ($relay, $cm ? $cm->{data}{'nvsrelayd.conf'} : '');
}

my @checked;    # [what, relay container, conf text, expected connection]
my %pod_of;     # what => pod spec
{
	my $docs = load_yaml($example);
	my ($dep) = find_docs($docs, 'Deployment');
	my @r = check_pod('k8s example', $dep->{spec}{template}{spec}, [ find_docs($docs, 'ConfigMap') ], 1);
	push @checked, [ 'k8s example', @r, undef ] if $r[0];
	$pod_of{'k8s example'} = $dep->{spec}{template}{spec};
}
for my $name (qw(sidecar standalone)) {
	next unless $rendered{$name};
	my $docs = $rendered{$name};
	my ($dep) = grep { grep { $_->{name} eq 'nvsrelayd' } @{ $_->{spec}{template}{spec}{initContainers} || [] },
		@{ $_->{spec}{template}{spec}{containers} || [] } } find_docs($docs, 'Deployment');
	ok($dep, "$name: a Deployment runs nvsrelayd") or next;
	my @r = check_pod("helm $name", $dep->{spec}{template}{spec}, [ find_docs($docs, 'ConfigMap') ], $name eq 'sidecar');
	push @checked, [ "helm $name", @r, \%seed ] if $r[0];
	$pod_of{"helm $name"} = $dep->{spec}{template}{spec};
	if ($name eq 'standalone') {
		my ($svc) = find_docs($docs, 'Service');
		my %sp = map { $_->{name} => $_ } @{ $svc->{spec}{ports} || [] };
		ok($sp{'relay-tcp'} && grep({ ($_->{name} // '') eq 'relay-tcp' } @{ $r[0]{ports} }),
			'helm standalone: the Service exposes the TCP port of the container');
		is_deeply($svc->{spec}{selector}, $dep->{spec}{selector}{matchLabels}, 'helm standalone: Service selects the pods');
	}
}

# The seed's values reach the relay as the DATASTORE_* NVSentinel's
# components get.
for my $c (grep { $_->[3] } @checked) {
	my ($what, $relay, undef, $want) = @$c;
	my $env = env_of($relay);
	is_deeply({ map { $_ => $env->{ 'DATASTORE_' . uc $_ } } keys %$want }, { map { $_ => "$want->{$_}" } keys %$want },
		"$what: global.datastore.connection -> DATASTORE_*");
	is($env->{DATASTORE_PROVIDER}, 'postgresql', "$what: DATASTORE_PROVIDER");
}

# The rendered configuration as nvsrelayd reads it.
SKIP: {
	my $bin = "$build/nvsrelayd";
	skip "no executable $bin (build it with make)", 1 unless -x $bin;
	for my $c (@checked) {
		my ($what, $relay, $conf) = @$c;
		my $env = env_of($relay);
		my @missing;
		my $text = $conf;
		my ($rc, $out, $err);
		for (1 .. 10) {
			my $file = write_file("$tmp/check.conf", $text);
			local %ENV = (PATH => $ENV{PATH}, %$env);
			($rc, $out) = NvsTest::run_cmd([ $bin, '--check-config', '--config', $file ], "$tmp/check.err");
			$err = NvsTest::slurp("$tmp/check.err");
			last unless $rc && $err =~ /unknown key '(\w+)'/ && $pending{$1};
			push @missing, $1;
			$text =~ s/^\Q$1\E\s*=.*\n//m;
		}
		is($rc, 0, "$what: nvsrelayd --check-config accepts the rendered configuration and environment") or diag($err);
		SKIP: {
			skip "$what: nvsrelayd does not know " . join(', ', @missing) . ' yet', 1 if @missing;
			pass("$what: every rendered key is known to nvsrelayd");
		}
		my %eff = $out =~ /^(\w+) = (.*)$/mg;
		is($eff{datastore_sslkey}, $env->{DATASTORE_SSLKEY}, "$what: effective datastore_sslkey") if $env->{DATASTORE_SSLKEY};
		is($eff{datastore_host}, $env->{DATASTORE_HOST}, "$what: effective datastore_host");
		is($eff{log_format}, 'json', "$what: effective log_format");
	}
}

# ---- the relay as the pod runs it ------------------------------------------------
# What the kubelet would do, emulated for the sidecar: the secret's files
# root:<fsGroup> with the volume's defaultMode, the emptyDirs setgid
# <fsGroup>, the relay as runAsUser/runAsGroup with fsGroup as a
# supplementary group, with the rendered nvsrelayd.conf and DATASTORE_*
# (paths moved under a scratch directory, the server replaced by a
# throwaway cluster).  libpq must accept the key as mounted, a process of
# the pod's group must reach the socket, one outside it must not.
SKIP: {
	my ($c) = (grep { $_->[0] eq 'helm sidecar' } @checked), (grep { $_->[0] eq 'k8s example' } @checked);
	my $bin = "$build/nvsrelayd";
	skip 'needs root (to give files away) and setpriv', 4 unless $> == 0 && which('setpriv');
	skip "no executable $bin or $build/nvsrelay", 4 unless -x $bin && -x "$build/nvsrelay";
	skip 'no sidecar rendered', 4 unless $c;
	my ($what, $relay, $conf) = @$c;
	my $pod = $pod_of{$what};
	my $uid = $relay->{securityContext}{runAsUser} // 65532;
	my $gid = $relay->{securityContext}{runAsGroup} // $uid;
	my $fsg = $pod->{securityContext}{fsGroup};
	my %vols = map { $_->{name} => $_ } @{ $pod->{volumes} || [] };
	my $pg = NvsTest::Pg->start();
	my $base = $pg->dir . '/pod';
	my $env = env_of($relay);
	my $pgenv = $pg->env;
	for my $m (@{ $relay->{volumeMounts} }) {
		my $v = $vols{ $m->{name} } || {};
		my $d = "$base$m->{mountPath}";
		system('mkdir', '-p', $d);
		if ($v->{secret}) {
			my %from = ('tls.crt' => 'DATASTORE_SSLCERT', 'tls.key' => 'DATASTORE_SSLKEY', 'ca.crt' => 'DATASTORE_SSLROOTCERT');
			for my $f (sort keys %from) {
				system('cp', $pgenv->{ $from{$f} }, "$d/$f");
				chown 0, $fsg, "$d/$f";
				chmod $v->{secret}{defaultMode}, "$d/$f";
			}
			chown 0, $fsg, $d;
			chmod 02755, $d;
		} elsif ($v->{emptyDir}) {
			chown 0, $fsg, $d;
			chmod 02777, $d;
		} elsif ($v->{configMap}) {
			open(my $fh, '>', "$d/nvsrelayd.conf") or die $!;
			print $fh $conf;
			close $fh;
		}
	}
	my %run = (PATH => $ENV{PATH}, map { $_ => ($env->{$_} =~ m{^/} ? "$base$env->{$_}" : $env->{$_}) } keys %$env);
	$run{$_} = $pgenv->{$_} for qw(DATASTORE_HOST DATASTORE_PORT DATASTORE_USERNAME);
	$run{$_} = $ENV{$_} for grep {/^(ASAN|UBSAN|LSAN)_OPTIONS$/} keys %ENV;
	my %conf = $conf =~ /^\s*(\w+)\s*=\s*"?([^"\n]*)"?\s*$/mg;
	my $sock = "$base$conf{listen_unix}";
	my $log  = $pg->dir . '/nvsrelayd.pod.log';
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if (!$pid) {
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		%ENV = %run;
		exec('setpriv', "--reuid=$uid", "--regid=$gid", "--groups=$fsg", '--', $bin,
			'--config', "$base/etc/nvsrelayd/nvsrelayd.conf", '--set', "listen_unix=$sock",
			'--set', "admin_socket=$base$conf{admin_socket}", '--set', 'http_listen=') or POSIX::_exit(127);
	}
	if (open(my $pf, '>>', $pg->dir . '/pids')) { print $pf "$pid\n"; close $pf }
	my $t0 = NvsTest::now();
	Time::HiRes::sleep(0.1) until -S $sock || NvsTest::now() - $t0 > 30 || waitpid($pid, POSIX::WNOHANG()) == $pid;
	ok(-S $sock, "$what: as uid $uid with fsGroup $fsg the relay reads the mode "
		. sprintf('%04o', (grep { $_->{secret} } values %vols)[0]{secret}{defaultMode}) . ' key and serves')
		or diag(NvsTest::slurp($log));
	my @watch = ("$build/nvsrelay", 'watch', '--socket', $sock, '--timeout', '1');
	my ($rc, $out) = NvsTest::run_cmd([ 'setpriv', '--reuid=65533', '--regid=65533', "--groups=$fsg", '--', @watch ]);
	is($rc, 0, "$what: a container of the pod (another uid, group $fsg) connects") or diag($out);
	($rc, $out) = NvsTest::run_cmd([ 'setpriv', '--reuid=65533', '--regid=65533', '--groups=65533', '--', @watch ]);
	isnt($rc, 0, "$what: a process outside the pod's group cannot");
	kill 'TERM', $pid;
	waitpid($pid, 0);
	is(NvsTest::wait_code($?), 0, "$what: exits 0 on SIGTERM");
}

# The example and the chart describe the same sidecar.
{
	my ($ex) = grep { $_->[0] eq 'k8s example' } @checked;
	my ($hs) = grep { $_->[0] eq 'helm sidecar' } @checked;
	SKIP: {
		skip 'chart not rendered', 4 unless $ex && $hs;
		my ($a, $b) = ($ex->[1], $hs->[1]);
		is_deeply([ sort map { $_->{name} } @{ $a->{env} } ], [ sort map { $_->{name} } @{ $b->{env} } ],
			'example and chart: same environment variables');
		is_deeply({ map { $_ => $a->{$_} } qw(startupProbe livenessProbe readinessProbe) },
			{ map { $_ => $b->{$_} } qw(startupProbe livenessProbe readinessProbe) }, 'example and chart: same probes');
		is_deeply($a->{resources}, $b->{resources}, 'example and chart: same resources');
		my %sa = %{ $a->{securityContext} };
		delete $sa{seccompProfile};
		my %sb = %{ $b->{securityContext} };
		delete $sb{seccompProfile};
		is_deeply(\%sa, \%sb, 'example and chart: same container security context');
	}
}

done_testing();

#!/usr/bin/perl
# 92-k8s.t - the Kubernetes packaging, checked offline on what a cluster
# would receive: the Helm chart in packaging/helm/nvsrelayd rendered with
# `helm template` (on its own; as a subchart of an NVSentinel umbrella chart
# running the relay as a Deployment, in client-certificate and in password
# mode; as the native sidecar of a component chart that includes it; with
# the seed's global.datastore values) and the example in packaging/k8s/:
#  - helm lint --strict, the values schema and the chart's own refusals;
#  - yamllint --strict on every rendered manifest and plain YAML file;
#  - the OpenAPI schemas of kubernetes-models (types, required fields);
#  - what the schemas cannot see: the sidecar is an init container with
#    restartPolicy Always, probes on /livez and /readyz at the port named
#    metrics (NVSentinel's PodMonitor scrapes that name), restricted
#    security contexts, resources, the connection through envFrom of
#    NVSentinel's <release>-datastore-config ConfigMap and, in password
#    mode, of the credentialsFromSecret Secret; in certificate mode
#    NVSentinel's fix-cert-permissions copy of postgresql-client-cert; the
#    socket directory shared with the component; schema = verify; the
#    migrations Job (`nvsrelayd --migrate`, a pre-install/pre-upgrade hook);
#    the PodMonitor, the PrometheusRule (the rules file) and the dashboard;
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

# Password mode: credentialsFromSecret, no client certificate.
my $pw_values = write_file("$tmp/pw-values.yaml", <<"EOF");
global:
  datastore:
    provider: "postgresql"
    connection:
      host: "$seed{host}"
      port: $seed{port}
      database: "$seed{database}"
      username: "nvsentinel"
      sslmode: "require"
    credentialsFromSecret:
      name: "nvsentinel-db-credentials"
EOF

# NVSentinel's templates/configmap-datastore.yaml as far as PostgreSQL goes:
# <release>-datastore-config with the DATASTORE_* of global.datastore.
my $nvs_configmap = <<'EOF';
{{- with .Values.global.datastore }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-datastore-config
data:
  DATASTORE_PROVIDER: {{ .provider | quote }}
  DATASTORE_HOST: {{ .connection.host | quote }}
  DATASTORE_PORT: {{ .connection.port | default 5432 | toString | quote }}
  {{- range $k, $n := dict "database" "DATASTORE_DATABASE" "username" "DATASTORE_USERNAME" "sslmode" "DATASTORE_SSLMODE" "sslcert" "DATASTORE_SSLCERT" "sslkey" "DATASTORE_SSLKEY" "sslrootcert" "DATASTORE_SSLROOTCERT" }}
  {{- with get $.Values.global.datastore.connection $k }}
  {{ $n }}: {{ . | quote }}
  {{- end }}
  {{- end }}
  MONGODB_URI: ""
{{- end }}
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
my @crd_manifests;             # yamllint only: kinds of the Prometheus Operator
my %rendered;                  # scenario => [documents]

sub helm_run {
	my (@args) = @_;
	my ($rc, $out) = NvsTest::run_cmd([ $helm, @args ], "$tmp/helm-run.err");
	return ($rc, $out, NvsTest::slurp("$tmp/helm-run.err"));
}

SKIP: {
	skip $why, 21 unless $helm;
	my ($rc, $out, $err) = helm_run('version', '--short');
	note("helm $out");

	($rc, $out, $err) = helm_run('lint', '--strict', $chart);
	is($rc, 0, 'helm lint --strict') or diag($out . $err);
	($rc, $out, $err) = helm_run('lint', '--strict', $chart, '-f', $seed_values, '--set', 'deployment.enabled=true',
		'--set', 'tcp.enabled=true');
	is($rc, 0, 'helm lint --strict with the seed values, standalone') or diag($out . $err);

	# The chart on its own: the ConfigMap and the migrations Job, plus
	# Deployment and Service when standalone, plus the monitoring objects.
	my %scen = (
		defaults   => [],
		standalone => [ '-f', $seed_values, '--set', 'deployment.enabled=true', '--set', 'tcp.enabled=true' ],
		monitoring => [ '-f', $seed_values, '--set', 'deployment.enabled=true', '--set', 'tcp.enabled=true',
			'--set', 'podMonitor.enabled=true', '--set', 'prometheusRule.enabled=true', '--set', 'dashboard.enabled=true',
			'--set', 'migrations.hook=false' ],
	);
	for my $name (sort keys %scen) {
		($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--namespace', 'nvsentinel', @{ $scen{$name} });
		is($rc, 0, "helm template: $name") or diag($err);
		# The Prometheus Operator's kinds are not in kubernetes-models.
		my $file = write_file("$tmp/$name.yaml", $out);
		$rendered{$name} = load_yaml($file);
		push @manifests, $file unless $name eq 'monitoring';
		push @crd_manifests, $file if $name eq 'monitoring';
	}
	is_deeply([ sort map { $_->{kind} } @{ $rendered{defaults} } ], [qw(ConfigMap Job)], 'defaults: the ConfigMap and the migrations Job');
	is_deeply([ sort map { $_->{kind} } @{ $rendered{standalone} } ], [qw(ConfigMap Deployment Job Service)],
		'standalone: ConfigMap, Deployment, Service, Job');
	is_deeply([ sort map { $_->{kind} } @{ $rendered{monitoring} } ],
		[qw(ConfigMap ConfigMap Deployment Job PodMonitor PrometheusRule Service)],
		'monitoring: and PodMonitor, PrometheusRule, the dashboard ConfigMap');

	# Joining an NVSentinel release as it is: a subchart of the umbrella
	# chart (which renders <release>-datastore-config), the relay a
	# Deployment the components reach over TCP with TLS.
	for my $mode (qw(umbrella umbrella-password)) {
		my $parent = "$tmp/$mode";
		system('mkdir', '-p', "$parent/templates", "$parent/charts");
		system('cp', '-r', $chart, "$parent/charts/nvsrelayd");
		write_file("$parent/Chart.yaml", "apiVersion: v2\nname: nvsentinel\nversion: 0.1.0\n"
			. "dependencies:\n  - name: nvsrelayd\n    version: 0.1.0\n");
		write_file("$parent/values.yaml", "nvsrelayd:\n  deployment:\n    enabled: true\n  tcp:\n    enabled: true\n");
		write_file("$parent/templates/configmap-datastore.yaml", $nvs_configmap);
		($rc, $out, $err) = helm_run('template', 'nvsentinel', $parent, '--namespace', 'nvsentinel', '-f',
			$mode eq 'umbrella' ? $seed_values : $pw_values);
		is($rc, 0, "helm template: $mode") or diag($err);
		push @manifests, write_file("$tmp/$mode.yaml", $out);
		$rendered{$mode} = load_yaml("$tmp/$mode.yaml");
		is_deeply([ sort map { $_->{kind} } @{ $rendered{$mode} } ], [qw(ConfigMap ConfigMap Deployment Job Service)],
			"$mode: NVSentinel's datastore ConfigMap, the relay's ConfigMap, Deployment, Service, Job");
	}

	# As a component chart takes the sidecar: NVSentinel's component pod
	# (fix-cert-permissions, client-certs-fixed, envFrom the datastore
	# ConfigMap, user 1001) plus the named templates.
	my $parent = "$tmp/parent";
	system('mkdir', '-p', "$parent/templates", "$parent/charts");
	system('cp', '-r', $chart, "$parent/charts/nvsrelayd");
	write_file("$parent/Chart.yaml", "apiVersion: v2\nname: fault-quarantine\nversion: 0.1.0\n"
		. "dependencies:\n  - name: nvsrelayd\n    version: 0.1.0\n");
	write_file("$parent/values.yaml", "image: registry.example.com/nvsentinel/fault-quarantine:example\n");
	write_file("$parent/templates/configmap-datastore.yaml", $nvs_configmap);
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
        # NVSentinel's own, as its component templates have it.
        - name: fix-cert-permissions
          image: docker.io/bitnamilegacy/os-shell:12-debian-12-r30
          command:
            - sh
            - -c
            - >-
              cp /etc/ssl/client-certs-original/* /etc/ssl/client-certs-fixed/ &&
              chmod 644 /etc/ssl/client-certs-fixed/tls.crt /etc/ssl/client-certs-fixed/ca.crt &&
              chmod 600 /etc/ssl/client-certs-fixed/tls.key
          securityContext:
            runAsUser: 1001
            runAsGroup: 1001
          volumeMounts:
            - name: postgresql-client-cert-original
              mountPath: /etc/ssl/client-certs-original
              readOnly: true
            - name: client-certs-fixed
              mountPath: /etc/ssl/client-certs-fixed
        {{- include "nvsrelayd.sidecar" $relay | nindent 8 }}
      containers:
        - name: fault-quarantine
          image: {{ .Values.image }}
          envFrom:
            - configMapRef:
                name: {{ .Release.Name }}-datastore-config
                optional: true
          env:
            {{- include "nvsrelayd.socketEnv" $relay | nindent 12 }}
          volumeMounts:
            {{- include "nvsrelayd.socketMount" $relay | nindent 12 }}
            - name: client-certs-fixed
              mountPath: /etc/ssl/client-certs
              readOnly: true
      volumes:
        {{- include "nvsrelayd.volumes" $relay | nindent 8 }}
        - name: postgresql-client-cert-original
          secret:
            secretName: postgresql-client-cert
            optional: false
        - name: client-certs-fixed
          emptyDir: {}
EOF
	($rc, $out, $err) = helm_run('template', 'nvsentinel', $parent, '--namespace', 'nvsentinel', '-f', $seed_values,
		'--set', 'nvsrelayd.migrations.enabled=false');
	is($rc, 0, 'helm template: a component chart with the sidecar') or diag($err);
	push @manifests, write_file("$tmp/sidecar.yaml", $out);
	$rendered{sidecar} = load_yaml("$tmp/sidecar.yaml");
	is_deeply([ sort map { $_->{kind} } @{ $rendered{sidecar} } ], [qw(ConfigMap ConfigMap Deployment)],
		'sidecar: the component Deployment, the datastore and relay ConfigMaps');

	# What the chart refuses.
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.provider=mongodb');
	ok($rc && $err =~ /provider/, 'refused: global.datastore.provider other than postgresql') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.connection.port=abc');
	ok($rc && $err =~ /port/, 'refused: a port that is not a number') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.connection.sslmode=prefer');
	ok($rc && $err =~ /sslmode/, 'refused: sslmode prefer (nvsrelayd refuses it too)') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'deployment.enabled=true');
	ok($rc && $err =~ /tcp\.enabled/, 'refused: a standalone Deployment without its TCP listener') or diag($err);
	($rc, $out, $err) = helm_run('template', 'nvs', $chart, '--set', 'global.datastore.connection.sslkey=/elsewhere/tls.key');
	ok($rc && $err =~ /sslkey.*clientCerts\.mountPath/, 'refused: a certificate mode key outside the fixed certificates')
		or diag($err);
}

# ---- yamllint -------------------------------------------------------------------
SKIP: {
	my $yl = which('yamllint');
	skip 'yamllint not installed (make deps)', 2 unless $yl;
	my ($rc, $out) = NvsTest::run_cmd([ $yl, '--strict', '-f', 'parsable', '-c', "$root/tests/tools/yamllint.yml",
		@manifests, "$chart/Chart.yaml", "$chart/values.yaml", "$chart/files/prometheus-rules.yaml" ]);
	is($rc, 0, 'yamllint --strict: ' . scalar(@manifests) . ' manifest files, Chart.yaml, values.yaml, the rules')
		or diag($out);
	# Alert texts and dashboard queries are long lines by nature.
	($rc, $out) = NvsTest::run_cmd([ $yl, '--strict', '-f', 'parsable', '-d',
		"{extends: $root/tests/tools/yamllint.yml, rules: {line-length: disable}}", @crd_manifests ]);
	is($rc, 0, 'yamllint --strict, long lines allowed: the monitoring objects') or diag($out);
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

# The environment of container $c as the kubelet builds it: envFrom
# ConfigMaps found in @$configmaps (in order, a later one wins), then env
# values.  Secrets are not resolved.
sub env_of {
	my ($c, $configmaps) = @_;
	my %env;
	for my $src (@{ $c->{envFrom} || [] }) {
		my $name = ($src->{configMapRef} || {})->{name} // next;
		my ($cm) = grep { $_->{metadata}{name} eq $name } @{ $configmaps || [] };
		%env = (%env, %{ ($cm || {})->{data} || {} });
	}
	$env{ $_->{name} } = $_->{value} for grep { exists $_->{value} } @{ $c->{env} || [] };
	return \%env;
}

sub secret_refs { return [ map { $_->{secretRef}{name} } grep { $_->{secretRef} } @{ $_[0]{envFrom} || [] } ] }

# Checks the pod spec that runs nvsrelayd; $sidecar: it must be a native
# sidecar next to a component container; $password: the Secret that
# password mode imports, else certificate mode.  Returns the relay
# container and its nvsrelayd.conf.
sub check_pod {
	my ($what, $pod, $configmaps, $sidecar, $password) = @_;
	my @init = @{ $pod->{initContainers} || [] };
	my @main = @{ $pod->{containers} || [] };
	my ($relay) = grep { $_->{name} eq 'nvsrelayd' } ($sidecar ? @init : @main);
	ok($relay, "$what: nvsrelayd is " . ($sidecar ? 'an init container' : 'a container')) or return;
	if ($sidecar) {
		is($relay->{restartPolicy}, 'Always', "$what: restartPolicy Always (native sidecar)");
		my @before;
		for (@init) { last if $_->{name} eq 'nvsrelayd'; push @before, $_->{name} }
		is_deeply(\@before, ['fix-cert-permissions'], "$what: after NVSentinel's fix-cert-permissions only, before the component");
	}

	my %ports = map { (($_->{name} // '') => $_->{containerPort}, $_->{containerPort} => $_->{containerPort}) }
		@{ $relay->{ports} || [] };
	ok($ports{metrics}, "$what: a container port named metrics (NVSentinel's PodMonitor scrapes it)");
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

	# The connection: NVSentinel's datastore ConfigMap, and in password
	# mode its credentials Secret, through envFrom as its components do.
	my ($dsref) = map { $_->{configMapRef} } grep { $_->{configMapRef} } @{ $relay->{envFrom} || [] };
	is(($dsref || {})->{name}, 'nvsentinel-datastore-config', "$what: envFrom NVSentinel's <release>-datastore-config");
	my $env = env_of($relay, $configmaps);
	ok(!grep({ /^DATASTORE_/ } map { $_->{name} } @{ $relay->{env} || [] }), "$what: no DATASTORE_* repeated by hand");
	is_deeply(secret_refs($relay), $password ? [$password] : [], $password
		? "$what: password mode: envFrom the credentialsFromSecret Secret (DATASTORE_PASSWORD)"
		: "$what: certificate mode: no credentials Secret");

	my %vols = map { $_->{name} => $_ } @{ $pod->{volumes} || [] };
	my %mounts = map { $_->{name} => $_ } @{ $relay->{volumeMounts} || [] };
	if ($password) {
		ok(!$vols{'client-certs-fixed'} && !grep({ $_->{name} eq 'fix-cert-permissions' } @init),
			"$what: password mode: no client certificate, no fix-cert-permissions");
	} else {
		# NVSentinel's fix: postgresql-client-cert copied into the emptyDir
		# client-certs-fixed, the key 0600, by the relay's own user.
		my ($certdir) = ($env->{DATASTORE_SSLKEY} // '') =~ m{^(.*)/[^/]+$};
		my ($certvol) = grep { ($_->{mountPath} // '') eq ($certdir // '') } values %mounts;
		is(($certvol || {})->{name}, 'client-certs-fixed', "$what: the directory of DATASTORE_SSLKEY is client-certs-fixed");
		ok(($vols{'client-certs-fixed'} || {})->{emptyDir}, "$what: an emptyDir");
		ok($certvol && $certvol->{readOnly}, "$what: mounted read-only");
		is(env_of($relay)->{POSTGRESQL_CLIENT_CERT_MOUNT_PATH}, $certdir, "$what: POSTGRESQL_CLIENT_CERT_MOUNT_PATH");
		my ($fix) = grep { $_->{name} eq 'fix-cert-permissions' } @init;
		my %fm = map { $_->{name} => $_->{mountPath} } @{ ($fix || {})->{volumeMounts} || [] };
		is(($vols{'postgresql-client-cert-original'}{secret} || {})->{secretName}, 'postgresql-client-cert',
			"$what: cert-manager's postgresql-client-cert");
		is_deeply([ @fm{qw(postgresql-client-cert-original client-certs-fixed)} ],
			[ '/etc/ssl/client-certs-original', '/etc/ssl/client-certs-fixed' ], "$what: fix-cert-permissions copies it");
		like(join(' ', @{ ($fix || {})->{command} || [] }), qr/chmod 600 \S*tls\.key/, "$what: key 0600");
		is((($fix || {})->{securityContext} || {})->{runAsUser} // -1, $sc->{runAsUser} // -2,
			"$what: fix-cert-permissions runs as the relay's user ($sc->{runAsUser}), so the key is the relay's");
	}

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
	is($conf{schema}, 'verify', "$what: schema = verify: the relay runs no DDL");
	like($conf{http_listen} // '', qr/^0\.0\.0\.0:(\d+)$/, "$what: HTTP on the pod address, where the kubelet probes");
	my ($hport) = ($conf{http_listen} // '') =~ /:(\d+)$/;
	is($hport, $ports{metrics}, "$what: http_listen port is the port named metrics");
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

my @checked;    # [what, relay container, conf text, expected connection, configmaps]
my %pod_of;     # what => pod spec
{
	my $docs = load_yaml($example);
	my ($dep) = find_docs($docs, 'Deployment');
	# The example stands for a release named nvsentinel: its datastore
	# ConfigMap as NVSentinel renders it from the seed's values.
	my @cms = (find_docs($docs, 'ConfigMap'), { kind => 'ConfigMap', metadata => { name => 'nvsentinel-datastore-config' },
		data => { DATASTORE_PROVIDER => 'postgresql', map { ('DATASTORE_' . uc $_ => "$seed{$_}") } keys %seed } });
	my @r = check_pod('k8s example', $dep->{spec}{template}{spec}, \@cms, 1);
	push @checked, [ 'k8s example', @r, \%seed, \@cms ] if $r[0];
	$pod_of{'k8s example'} = $dep->{spec}{template}{spec};
}
for my $name (qw(sidecar umbrella umbrella-password)) {
	next unless $rendered{$name};
	my $docs = $rendered{$name};
	my ($dep) = grep { grep { $_->{name} eq 'nvsrelayd' } @{ $_->{spec}{template}{spec}{initContainers} || [] },
		@{ $_->{spec}{template}{spec}{containers} || [] } } find_docs($docs, 'Deployment');
	ok($dep, "$name: a Deployment runs nvsrelayd") or next;
	my $pw = $name eq 'umbrella-password' ? 'nvsentinel-db-credentials' : undef;
	my @cms = find_docs($docs, 'ConfigMap');
	my @r = check_pod("helm $name", $dep->{spec}{template}{spec}, \@cms, $name eq 'sidecar', $pw);
	push @checked, [ "helm $name", @r, $pw ? undef : \%seed, \@cms ] if $r[0];
	$pod_of{"helm $name"} = $dep->{spec}{template}{spec};
	next if $name eq 'sidecar';

	my ($svc) = find_docs($docs, 'Service');
	my %sp = map { $_->{name} => $_ } @{ $svc->{spec}{ports} || [] };
	ok($sp{'relay-tcp'} && grep({ ($_->{name} // '') eq 'relay-tcp' } @{ $r[0]{ports} }),
		"helm $name: the Service exposes the TCP port of the container");
	is_deeply($svc->{spec}{selector}, $dep->{spec}{selector}{matchLabels}, "helm $name: Service selects the pods");
	is($dep->{spec}{template}{metadata}{labels}{'app.kubernetes.io/instance'}, 'nvsentinel',
		"helm $name: pods labelled with NVSentinel's release, which NVSentinel's PodMonitor selects");

	# The migrations Job: `nvsrelayd --migrate` with the relay's connection.
	my ($job) = find_docs($docs, 'Job');
	my $jpod = $job->{spec}{template}{spec};
	my ($mc) = @{ $jpod->{containers} || [] };
	is($job->{metadata}{annotations}{'helm.sh/hook'}, 'pre-install,pre-upgrade', "helm $name: Job is a pre-install/pre-upgrade hook");
	is_deeply([ @{ $mc->{command} || [] }, @{ $mc->{args} || [] }[0] ], [ '/usr/sbin/nvsrelayd', '--migrate' ],
		"helm $name: the Job runs nvsrelayd --migrate");
	is_deeply($mc->{envFrom}, $r[0]{envFrom}, "helm $name: with the relay's envFrom");
	ok($mc->{securityContext}{readOnlyRootFilesystem} && $mc->{securityContext}{runAsNonRoot}, "helm $name: restricted");
	if ($pw) {
		ok(!$jpod->{initContainers}, "helm $name: no certificate fix in password mode");
	} else {
		is_deeply([ map { $_->{name} } @{ $jpod->{initContainers} || [] } ], ['fix-cert-permissions'],
			"helm $name: the Job fixes the certificate as the relay does");
		is_deeply([ map { $_->{mountPath} } @{ $mc->{volumeMounts} || [] } ], ['/etc/ssl/client-certs'],
			"helm $name: and mounts it at the same path");
	}
}

# The monitoring objects of a release of its own.
SKIP: {
	my $docs = $rendered{monitoring};
	skip 'chart not rendered', 6 unless $docs;
	my ($dep) = find_docs($docs, 'Deployment');
	my ($pm) = find_docs($docs, 'PodMonitor');
	my ($pr) = find_docs($docs, 'PrometheusRule');
	my ($job) = find_docs($docs, 'Job');
	my %labels = %{ $dep->{spec}{template}{metadata}{labels} };
	ok(!grep({ ($labels{$_} // '') ne $pm->{spec}{selector}{matchLabels}{$_} } keys %{ $pm->{spec}{selector}{matchLabels} }),
		'PodMonitor selects the relay pods');
	is($pm->{spec}{podMetricsEndpoints}[0]{port}, 'metrics', 'PodMonitor scrapes the port named metrics');
	is_deeply($pr->{spec}, load_yaml("$chart/files/prometheus-rules.yaml")->[0], 'PrometheusRule carries files/prometheus-rules.yaml');
	my ($dash) = grep { $_->{data}{'nvsrelayd.json'} } find_docs($docs, 'ConfigMap');
	is(eval { $json->decode($dash->{data}{'nvsrelayd.json'})->{uid} }, 'nvsrelayd', 'the dashboard ConfigMap holds the dashboard');
	is($dash->{metadata}{labels}{grafana_dashboard}, '1', "labelled for Grafana's dashboard sidecar");
	ok(!exists $job->{metadata}{annotations}{'helm.sh/hook'}, 'migrations.hook=false: a plain Job');
}

# The seed's values reach the relay as the DATASTORE_* NVSentinel's
# components get, through NVSentinel's ConfigMap.
for my $c (grep { $_->[3] } @checked) {
	my ($what, $relay, undef, $want, $cms) = @$c;
	my $env = env_of($relay, $cms);
	is_deeply({ map { $_ => $env->{ 'DATASTORE_' . uc $_ } } keys %$want }, { map { $_ => "$want->{$_}" } keys %$want },
		"$what: global.datastore.connection -> DATASTORE_*");
	is($env->{DATASTORE_PROVIDER}, 'postgresql', "$what: DATASTORE_PROVIDER");
}

# The rendered configuration as nvsrelayd reads it.
SKIP: {
	my $bin = "$build/nvsrelayd";
	skip "no executable $bin (build it with make)", 1 unless -x $bin;
	for my $c (@checked) {
		my ($what, $relay, $conf, undef, $cms) = @$c;
		my $env = env_of($relay, $cms);
		$env->{DATASTORE_PASSWORD} = 'from-the-secret' if @{ secret_refs($relay) };
		my @missing;
		my $text = $conf;
		my ($rc, $out, $err);
		for (1 .. 10) {
			my $file = write_file("$tmp/check.conf", $text);
			local %ENV = (PATH => $ENV{PATH}, %$env);
			($rc, $out) = NvsTest::run_cmd([ $bin, '--check-config', '--no-file-check', '--config', $file ], "$tmp/check.err");
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
		is($eff{schema}, 'verify', "$what: effective schema");
	}
}

# ---- the relay as the pod runs it ------------------------------------------------
# What the kubelet and fix-cert-permissions would do, emulated for the
# sidecar: client-certs-fixed holds the certificates owned by the user
# fix-cert-permissions runs as (the relay's), key 0600; the other emptyDirs
# setgid <fsGroup>; the relay as runAsUser/runAsGroup with fsGroup as a
# supplementary group, with the rendered nvsrelayd.conf and DATASTORE_*
# (paths moved under a scratch directory, the server replaced by a
# throwaway cluster, which has the schema installed: schema = verify).
# libpq must accept the key, a process of the pod's group must reach the
# socket, one outside it must not.
SKIP: {
	my ($c) = (grep { $_->[0] eq 'helm sidecar' } @checked), (grep { $_->[0] eq 'k8s example' } @checked);
	my $bin = "$build/nvsrelayd";
	skip 'needs root (to give files away) and setpriv', 5 unless $> == 0 && which('setpriv');
	skip "no executable $bin or $build/nvsrelay", 5 unless -x $bin && -x "$build/nvsrelay";
	skip 'no sidecar rendered', 5 unless $c;
	my ($what, $relay, $conf, undef, $cms) = @$c;
	my $pod = $pod_of{$what};
	my $uid = $relay->{securityContext}{runAsUser} // 65532;
	my $gid = $relay->{securityContext}{runAsGroup} // $uid;
	my $fsg = $pod->{securityContext}{fsGroup};
	my %vols = map { $_->{name} => $_ } @{ $pod->{volumes} || [] };
	my $pg = NvsTest::Pg->start();
	my $base = $pg->dir . '/pod';
	my $env = env_of($relay, $cms);
	my $pgenv = $pg->env;
	for my $m (@{ $relay->{volumeMounts} }) {
		my $v = $vols{ $m->{name} } || {};
		my $d = "$base$m->{mountPath}";
		system('mkdir', '-p', $d);
		if ($m->{name} eq 'client-certs-fixed') {
			my %from = ('tls.crt' => 'DATASTORE_SSLCERT', 'tls.key' => 'DATASTORE_SSLKEY', 'ca.crt' => 'DATASTORE_SSLROOTCERT');
			for my $f (sort keys %from) {
				system('cp', $pgenv->{ $from{$f} }, "$d/$f");
				chown $uid, $gid, "$d/$f";
				chmod($f eq 'tls.key' ? 0600 : 0644, "$d/$f");
			}
			chown 0, $fsg, $d;
			chmod 02777, $d;
		} elsif ($v->{emptyDir}) {
			chown 0, $fsg, $d;
			chmod 02777, $d;
		} elsif ($v->{configMap}) {
			open(my $fh, '>', "$d/nvsrelayd.conf") or die $!;
			print $fh $conf;
			close $fh;
		}
	}
	my %run = (PATH => $ENV{PATH}, map { $_ => ($env->{$_} =~ m{^/} ? "$base$env->{$_}" : $env->{$_}) }
		grep { /^(DATASTORE_|POSTGRESQL_|NVSRELAY_)/ } keys %$env);
	$run{$_} = $pgenv->{$_} for grep { defined $pgenv->{$_} } qw(DATASTORE_HOST DATASTORE_PORT DATASTORE_USERNAME DATASTORE_DATABASE);
	# What the migrations Job does before the relays start.
	{
		local %ENV = (PATH => $ENV{PATH}, %$pgenv);
		my ($rc, $out) = NvsTest::run_cmd([ $bin, '--migrate', '--config', '/dev/null' ]);
		is($rc, 0, "$what: the schema migrated first, as the Job does") or diag($out);
	}
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
	ok(-S $sock, "$what: as uid $uid with fsGroup $fsg the relay reads the fixed 0600 key, verifies the schema and serves")
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
		skip 'chart not rendered', 5 unless $ex && $hs;
		my ($a, $b) = ($ex->[1], $hs->[1]);
		is_deeply([ sort map { $_->{name} } @{ $a->{env} } ], [ sort map { $_->{name} } @{ $b->{env} } ],
			'example and chart: same environment variables');
		is_deeply($a->{envFrom}, $b->{envFrom}, 'example and chart: same envFrom');
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

{{/*
Named templates of the nvsrelayd chart.  Each takes a dict:
  root    the top-level context ($), for .Release and .Values.global
  values  this chart's values: $.Values here, $.Values.nvsrelayd (or the
          alias) in a parent chart that includes the sidecar
so that a parent chart can render the sidecar with this chart's values.
*/}}

{{/* <release>-nvsrelayd, or fullnameOverride; 63 characters at most. */}}
{{- define "nvsrelayd.fullname" -}}
{{- $v := .values -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "nvsrelayd" .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-nvsrelayd" .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nvsrelayd.selectorLabels" -}}
app.kubernetes.io/name: nvsrelayd
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "nvsrelayd.labels" -}}
{{ include "nvsrelayd.selectorLabels" . }}
app.kubernetes.io/version: {{ .values.image.tag | quote }}
app.kubernetes.io/component: change-stream-relay
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* The Job's: not the relay's selector labels, so neither the Service nor
a PodMonitor picks its pod. */}}
{{- define "nvsrelayd.migrateLabels" -}}
app.kubernetes.io/name: nvsrelayd-migrate
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .values.image.tag | quote }}
app.kubernetes.io/component: schema-migrations
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* The datastore settings, checked: NVSentinel's layout under global. */}}
{{- define "nvsrelayd.datastore" -}}
{{- $ds := (.root.Values.global | default dict).datastore | default dict -}}
{{- if ne ($ds.provider | default "") "postgresql" -}}
{{- fail (printf "nvsrelayd: global.datastore.provider must be postgresql, not %q" ($ds.provider | default "")) -}}
{{- end -}}
{{- $c := $ds.connection | default dict -}}
{{- if not $c.host -}}
{{- fail "nvsrelayd: global.datastore.connection.host is required" -}}
{{- end -}}
{{- if not (include "nvsrelayd.passwordSecret" .) -}}
{{- range $k := list "sslcert" "sslkey" "sslrootcert" -}}
{{- if not (hasPrefix (printf "%s/" $.values.clientCerts.mountPath) (get $c $k | default "")) -}}
{{- fail (printf "nvsrelayd: global.datastore.connection.%s must be a file in clientCerts.mountPath %s (where the fixed client certificate is), not %q" $k $.values.clientCerts.mountPath (get $c $k | default "")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* global.datastore.credentialsFromSecret.name: password mode; empty:
client-certificate mode, as NVSentinel decides it. */}}
{{- define "nvsrelayd.passwordSecret" -}}
{{- dig "datastore" "credentialsFromSecret" "name" "" (.root.Values.global | default dict) -}}
{{- end -}}

{{/* NVSentinel's ConfigMap of DATASTORE_* variables. */}}
{{- define "nvsrelayd.datastoreConfigMap" -}}
{{- printf "%s-datastore-config" (.values.nvsentinelRelease | default .root.Release.Name) -}}
{{- end -}}

{{/* One nvsrelayd.conf value: strings double-quoted (the file's escapes
are those of YAML's plain ASCII: \\ and \"), numbers and booleans bare. */}}
{{- define "nvsrelayd.confValue" -}}
{{- if kindIs "string" . -}}{{ . | quote }}{{- else if kindIs "bool" . -}}{{ ternary "true" "false" . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* The contents of nvsrelayd.conf. */}}
{{- define "nvsrelayd.conf" -}}
{{- $v := .values -}}
{{- $keys := dict -}}
{{- range $k, $val := $v.config }}{{ $_ := set $keys $k $val }}{{ end -}}
{{- $_ := set $keys "listen_unix" (printf "%s/nvsrelayd.sock" $v.socket.dir) -}}
{{- $_ := set $keys "http_listen" (printf "0.0.0.0:%d" (int $v.http.port)) -}}
{{- $_ := set $keys "admin_socket" (printf "%s/admin.sock" $v.admin.dir) -}}
{{- $_ := set $keys "log_format" "json" -}}
{{- if $v.tcp.enabled -}}
{{- $_ := set $keys "listen_tcp" (printf "0.0.0.0:%d" (int $v.tcp.port)) -}}
{{- $_ := set $keys "tls_cert_file" "/etc/nvsrelayd-tls/tls.crt" -}}
{{- $_ := set $keys "tls_key_file" "/etc/nvsrelayd-tls/tls.key" -}}
{{- $_ := set $keys "tls_ca_file" "/etc/nvsrelayd-tls/ca.crt" -}}
{{- end -}}
# nvsrelayd.conf from the nvsrelayd Helm chart; the keys are described in
# nvsrelayd.conf(5).  The PostgreSQL connection comes from DATASTORE_*.
{{- range $k := keys $keys | sortAlpha }}
{{ $k }} = {{ include "nvsrelayd.confValue" (get $keys $k) }}
{{- end }}
{{ end -}}

{{/* Where the connection comes from, as for NVSentinel's components:
the datastore ConfigMap, then the credentials Secret (a later source wins). */}}
{{- define "nvsrelayd.envFrom" -}}
{{- $_ := include "nvsrelayd.datastore" . -}}
- configMapRef:
    name: {{ include "nvsrelayd.datastoreConfigMap" . }}
{{- with include "nvsrelayd.passwordSecret" . }}
- secretRef:
    name: {{ . }}
    optional: false
{{- end }}
{{- end -}}

{{- define "nvsrelayd.env" -}}
{{- if not (include "nvsrelayd.passwordSecret" .) -}}
- name: POSTGRESQL_CLIENT_CERT_MOUNT_PATH
  value: {{ .values.clientCerts.mountPath | quote }}
{{ end -}}
- name: NVSRELAY_ADMIN_SOCKET
  value: {{ printf "%s/admin.sock" .values.admin.dir | quote }}
{{- end -}}

{{/* NVSentinel's fix-cert-permissions init container: the Secret's files
copied where libpq accepts them (key 0600, owned by the user that runs
the relay).  Certificate mode only; renders nothing in password mode. */}}
{{- define "nvsrelayd.certInit" -}}
{{- if not (include "nvsrelayd.passwordSecret" .) -}}
{{- $v := .values -}}
- name: fix-cert-permissions
  image: {{ (.root.Values.global | default dict).initContainerImage | default "docker.io/bitnamilegacy/os-shell:12-debian-12-r30" | quote }}
  command:
    - sh
    - -c
    - |
      set -e
      cd /etc/ssl/client-certs-original
      cp tls.crt tls.key ca.crt /etc/ssl/client-certs-fixed/
      chmod 644 /etc/ssl/client-certs-fixed/tls.crt /etc/ssl/client-certs-fixed/ca.crt
      chmod 600 /etc/ssl/client-certs-fixed/tls.key
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 32Mi
  securityContext:
    {{- toYaml (include "nvsrelayd.securityContext" . | fromYaml) | nindent 4 }}
  volumeMounts:
    - name: postgresql-client-cert-original
      mountPath: /etc/ssl/client-certs-original
      readOnly: true
    - name: client-certs-fixed
      mountPath: /etc/ssl/client-certs-fixed
{{- end -}}
{{- end -}}

{{/* The volumes of the certificate fix, named as in NVSentinel's pods. */}}
{{- define "nvsrelayd.certVolumes" -}}
{{- if not (include "nvsrelayd.passwordSecret" .) -}}
- name: postgresql-client-cert-original
  secret:
    secretName: {{ .values.clientCerts.secretName }}
    optional: false
- name: client-certs-fixed
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end -}}
{{- end -}}

{{/* The relay's container security context; the sidecar's user is the
component's. */}}
{{- define "nvsrelayd.securityContext" -}}
{{- $sc := deepCopy .values.securityContext -}}
{{- if .sidecar -}}
{{- $sc = mergeOverwrite $sc (deepCopy .values.sidecar.securityContext) -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end -}}

{{/* The relay container.  In a component pod it goes to initContainers,
with restartPolicy Always (a native sidecar, Kubernetes 1.29+): it starts
before the component, which waits for its startup probe, and stops after it. */}}
{{- define "nvsrelayd.container" -}}
{{- $v := .values -}}
- name: nvsrelayd
  image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .sidecar }}
  restartPolicy: Always
  {{- end }}
  command: ["/usr/sbin/nvsrelayd"]
  args: ["--config", "/etc/nvsrelayd/nvsrelayd.conf"]
  envFrom:
    {{- include "nvsrelayd.envFrom" . | nindent 4 }}
  env:
    {{- include "nvsrelayd.env" . | nindent 4 }}
  ports:
    # The name NVSentinel's PodMonitor scrapes.
    - name: metrics
      containerPort: {{ $v.http.port }}
      protocol: TCP
    {{- if $v.tcp.enabled }}
    - name: relay-tcp
      containerPort: {{ $v.tcp.port }}
      protocol: TCP
    {{- end }}
  startupProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /livez
      port: metrics
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- include "nvsrelayd.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: nvsrelayd-socket
      mountPath: {{ $v.socket.dir }}
    - name: nvsrelayd-admin
      mountPath: {{ $v.admin.dir }}
    - name: nvsrelayd-config
      mountPath: /etc/nvsrelayd
      readOnly: true
    {{- if not (include "nvsrelayd.passwordSecret" .) }}
    - name: client-certs-fixed
      mountPath: {{ $v.clientCerts.mountPath }}
      readOnly: true
    {{- end }}
    {{- if $v.tcp.enabled }}
    - name: nvsrelayd-server-cert
      mountPath: /etc/nvsrelayd-tls
      readOnly: true
    {{- end }}
{{- end -}}

{{/* The native sidecar: one entry of a pod's initContainers. */}}
{{- define "nvsrelayd.sidecar" -}}
{{ include "nvsrelayd.container" (dict "root" .root "values" .values "sidecar" true) }}
{{- end -}}

{{/* The pod volumes the relay container mounts, but for the certificate
fix's (nvsrelayd.certVolumes), which a component pod already has. */}}
{{- define "nvsrelayd.volumes" -}}
{{- $v := .values -}}
- name: nvsrelayd-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: nvsrelayd-admin
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: nvsrelayd-config
  configMap:
    name: {{ include "nvsrelayd.fullname" . }}
{{- if $v.tcp.enabled }}
- name: nvsrelayd-server-cert
  secret:
    secretName: {{ $v.tcp.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* For the component's containers: the shared socket directory, and where
its clients find the socket. */}}
{{- define "nvsrelayd.socketMount" -}}
- name: nvsrelayd-socket
  mountPath: {{ .values.socket.dir }}
{{- end -}}

{{- define "nvsrelayd.socketEnv" -}}
- name: NVSRELAY_SOCKET
  value: {{ printf "%s/nvsrelayd.sock" .values.socket.dir | quote }}
{{- end -}}

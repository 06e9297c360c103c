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
{{- toYaml $c -}}
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

{{/* Environment: the DATASTORE_* variables NVSentinel's components get. */}}
{{- define "nvsrelayd.env" -}}
{{- $c := include "nvsrelayd.datastore" . | fromYaml -}}
{{- $v := .values -}}
- name: DATASTORE_PROVIDER
  value: postgresql
- name: DATASTORE_HOST
  value: {{ $c.host | quote }}
- name: DATASTORE_PORT
  value: {{ $c.port | toString | quote }}
- name: DATASTORE_DATABASE
  value: {{ $c.database | quote }}
- name: DATASTORE_USERNAME
  value: {{ $c.username | quote }}
- name: DATASTORE_SSLMODE
  value: {{ $c.sslmode | quote }}
{{- range $name, $key := dict "DATASTORE_SSLCERT" "sslcert" "DATASTORE_SSLKEY" "sslkey" "DATASTORE_SSLROOTCERT" "sslrootcert" }}
{{- with get $c $key }}
- name: {{ $name }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
- name: POSTGRESQL_CLIENT_CERT_MOUNT_PATH
  value: {{ $v.clientCerts.mountPath | quote }}
- name: NVSRELAY_ADMIN_SOCKET
  value: {{ printf "%s/admin.sock" $v.admin.dir | quote }}
{{- if $v.passwordSecret.name }}
- name: DATASTORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.passwordSecret.name }}
      key: {{ $v.passwordSecret.key }}
{{- end }}
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
  env:
    {{- include "nvsrelayd.env" . | nindent 4 }}
  ports:
    - name: relay-http
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
      port: relay-http
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /livez
      port: relay-http
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: relay-http
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: nvsrelayd-socket
      mountPath: {{ $v.socket.dir }}
    - name: nvsrelayd-admin
      mountPath: {{ $v.admin.dir }}
    - name: nvsrelayd-config
      mountPath: /etc/nvsrelayd
      readOnly: true
    - name: nvsrelayd-client-certs
      mountPath: {{ $v.clientCerts.mountPath }}
      readOnly: true
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

{{/* The pod volumes the relay container mounts. */}}
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
- name: nvsrelayd-client-certs
  secret:
    secretName: {{ $v.clientCerts.secretName }}
    defaultMode: {{ $v.clientCerts.defaultMode }}
{{- if $v.tcp.enabled }}
- name: nvsrelayd-server-cert
  secret:
    secretName: {{ $v.tcp.tls.secretName }}
    defaultMode: {{ $v.clientCerts.defaultMode }}
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

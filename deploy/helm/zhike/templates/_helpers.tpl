{{/*
Shared helpers. Per-service templates loop over .Values.services and call these with a
dict context: (dict "root" $ "name" $name "svc" $svc).
*/}}

{{- define "zhike.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-zhike, or the release name when it already contains the chart name. */}}
{{- define "zhike.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "zhike.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a per-service resource: <fullname>-<service>. Context: dict root/name. */}}
{{- define "zhike.serviceFullname" -}}
{{- printf "%s-%s" (include "zhike.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every resource; call with the root context. */}}
{{- define "zhike.labels" -}}
helm.sh/chart: {{ include "zhike.chart" . }}
app.kubernetes.io/name: {{ include "zhike.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zhike
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of every pod of this release (all components). */}}
{{- define "zhike.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "zhike.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of a per-service resource. Context: dict root/name. */}}
{{- define "zhike.componentLabels" -}}
{{ include "zhike.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Selector labels of one service's pods. Context: dict root/name. */}}
{{- define "zhike.componentSelectorLabels" -}}
{{ include "zhike.releaseSelectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Image reference of a service. Context: dict root/name/svc. */}}
{{- define "zhike.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := .svc.image.repository -}}
{{- if $img.registry -}}
{{- $repo = printf "%s/%s" $img.registry $repo -}}
{{- end -}}
{{- $tag := default (default .root.Chart.AppVersion $img.tag) .svc.image.tag -}}
{{- $digest := default $img.digest .svc.image.digest -}}
{{- if $digest -}}
{{- printf "%s:%s@%s" $repo $tag $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
Plain (non-secret) configuration of a service as a YAML map of strings. The ConfigMap
renders it, the Deployment hashes it (checksum/config) and the migration Job inlines it
(the ConfigMap does not exist yet when a pre-install hook runs). Context: dict root/name/svc,
plus "hook" true for the migration Job: it leaves out what the Job must not use (see
zhike.volumes).
*/}}
{{- define "zhike.configData" -}}
{{- include "zhike.checkTlsValues" .root -}}
{{- include "zhike.checkNatsValues" . -}}
{{- include "zhike.checkAuthValues" .root -}}
{{- include "zhike.checkPageTokenValues" . -}}
{{- if eq .name "notifications" -}}
{{- include "zhike.checkNotificationsValues" . -}}
{{- end -}}
{{- include "zhike.checkTransportSecurity" . -}}
{{- $v := .root.Values -}}
ZHIKE_GRPC_PORT: {{ $v.ports.grpc | quote }}
ZHIKE_HEALTH_PORT: {{ $v.ports.health | quote }}
ZHIKE_NATS_URL: {{ $v.nats.url | quote }}
ZHIKE_STREAM_REPLICAS: {{ $v.nats.streamReplicas | quote }}
ZHIKE_STREAM_MAX_AGE_SECONDS: {{ $v.nats.streamMaxAgeSeconds | int64 | quote }}
ZHIKE_STREAM_MAX_BYTES: {{ $v.nats.streamMaxBytes | int64 | quote }}
{{- /* Whole bytes: YAML numbers reach templates as floats, which toJson would print as 5.36870912e+08. */}}
{{- $maxBytesByStream := dict }}
{{- range $stream, $bytes := $v.nats.streamMaxBytesByStream }}
{{- $_ := set $maxBytesByStream $stream ($bytes | int64) }}
{{- end }}
ZHIKE_STREAM_MAX_BYTES_BY_STREAM: {{ $maxBytesByStream | toJson | quote }}
ZHIKE_RUN_MIGRATIONS: "false"
ZHIKE_GRPC_REFLECTION: {{ ternary "true" "false" $v.config.grpcReflection | quote }}
ZHIKE_LOG_LEVEL: {{ $v.config.logLevel | quote }}
ZHIKE_LAME_DUCK_SECONDS: {{ $v.config.lameDuckSeconds | quote }}
ZHIKE_SHUTDOWN_GRACE_SECONDS: {{ $v.config.shutdownGraceSeconds | quote }}
ZHIKE_PROFILE: "production"
ZHIKE_AUTH_ISSUER: {{ $v.auth.issuer | quote }}
ZHIKE_AUTH_AUDIENCE: {{ $v.auth.audience | quote }}
ZHIKE_AUTH_LEEWAY_SECONDS: {{ $v.auth.leewaySeconds | quote }}
{{- if $v.auth.jwksUrl }}
ZHIKE_AUTH_JWKS_URL: {{ $v.auth.jwksUrl | quote }}
{{- else }}
ZHIKE_AUTH_JWKS_FILE: {{ printf "/etc/zhike/auth/jwks/%s" $v.auth.jwksConfigMap.key | quote }}
{{- end }}
{{- if and $v.auth.roles (not .hook) }}
ZHIKE_AUTH_ROLES_FILE: "/etc/zhike/auth/roles/roles.json"
{{- end }}
ZHIKE_AUDIT_RETENTION_DAYS: {{ $v.audit.retentionDays | quote }}
{{- with $v.databaseTls.sslMode }}
ZHIKE_DATABASE_SSL_MODE: {{ . | quote }}
{{- end }}
{{- if $v.databaseTls.rootCA.existingSecret }}
ZHIKE_DATABASE_SSL_ROOT_CERT: {{ printf "/etc/zhike/database-ca/%s" $v.databaseTls.rootCA.existingSecretKey | quote }}
{{- end }}
{{- if .svc.natsCredentials.existingSecret }}
ZHIKE_NATS_CREDS_FILE: {{ printf "/etc/zhike/nats/%s" .svc.natsCredentials.existingSecretKey | quote }}
{{- end }}
{{- if .svc.natsNkeySeed.existingSecret }}
ZHIKE_NATS_NKEY_SEED_FILE: {{ printf "/etc/zhike/nats-nkey/%s" .svc.natsNkeySeed.existingSecretKey | quote }}
{{- end }}
{{- if $v.natsTls.enabled }}
ZHIKE_NATS_TLS_CA_FILE: {{ printf "/etc/zhike/nats-tls/%s" $v.natsTls.caFile | quote }}
{{- if $v.natsTls.clientCertificate }}
ZHIKE_NATS_TLS_CERT_FILE: {{ printf "/etc/zhike/nats-tls/%s" $v.natsTls.certFile | quote }}
ZHIKE_NATS_TLS_KEY_FILE: {{ printf "/etc/zhike/nats-tls/%s" $v.natsTls.keyFile | quote }}
{{- end }}
{{- if $v.natsTls.handshakeFirst }}
ZHIKE_NATS_TLS_HANDSHAKE_FIRST: "true"
{{- end }}
{{- end }}
OTEL_SERVICE_NAME: {{ printf "zhike-%s" .name | quote }}
OTEL_TRACES_EXPORTER: {{ $v.telemetry.tracesExporter | quote }}
{{- if $v.metrics.enabled }}
OTEL_METRICS_EXPORTER: "prometheus"
OTEL_EXPORTER_PROMETHEUS_HOST: "0.0.0.0"
OTEL_EXPORTER_PROMETHEUS_PORT: {{ $v.metrics.port | quote }}
{{- else }}
OTEL_METRICS_EXPORTER: {{ $v.telemetry.metricsExporter | quote }}
{{- end }}
{{- if $v.telemetry.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $v.telemetry.otlpEndpoint | quote }}
{{- end }}
{{- if eq .name "notifications" }}
{{- include "zhike.notificationsConfig" . }}
{{- end }}
{{- range $key, $value := $v.config.extraEnv }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- range $key, $value := .svc.extraEnv }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The secret environment of a service: the database URL, always from an existing Secret. */}}
{{- define "zhike.secretEnv" -}}
- name: ZHIKE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "services.%s.database.existingSecret is required" .name) .svc.database.existingSecret | quote }}
      key: {{ required (printf "services.%s.database.existingSecretKey is required" .name) .svc.database.existingSecretKey | quote }}
{{- with .root.Values.pageTokens.existingSecret }}
- name: ZHIKE_PAGE_TOKEN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.root.Values.pageTokens.existingSecretKey | quote }}
{{- end }}
{{- /* The field keys: only to the services that seal personal data with them (their settings
require them); profile and offers seal nothing and never see identity's keys. */}}
{{- $keys := .root.Values.fieldKeys }}
{{- if and (include "zhike.readsFieldKeys" .) $keys.existingSecret }}
{{- range $env, $key := dict "ZHIKE_DATA_KEYS" $keys.dataKeysKey "ZHIKE_DATA_KEY_ID" $keys.dataKeyIdKey "ZHIKE_BLIND_INDEX_KEY" $keys.blindIndexKeyKey }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $keys.existingSecret | quote }}
      key: {{ $key | quote }}
{{- end }}
{{- else if and (eq .name "identity") .svc.enabled }}
{{- fail "fieldKeys.existingSecret: required, identity encrypts ID numbers, phones and e-mails at rest (docs/operations.md, \"Key rotation\")" }}
{{- else if and (eq .name "notifications") .svc.enabled }}
{{- fail "fieldKeys.existingSecret: required, notifications seals template values and inbox texts at rest (docs/operations.md, \"Key rotation\")" }}
{{- end }}
{{- /* Providers with credentials: the Job checks them too (the settings refuse a failover
order naming a provider that is not there). */}}
{{- if and (eq .name "notifications") .svc.providers.existingSecret }}
- name: ZHIKE_PROVIDERS
  valueFrom:
    secretKeyRef:
      name: {{ .svc.providers.existingSecret | quote }}
      key: {{ .svc.providers.existingSecretKey | quote }}
{{- end }}
{{- end -}}

{{/* Container securityContext (restricted). */}}
{{- define "zhike.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* Pod securityContext (restricted). */}}
{{- define "zhike.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{/*
Volumes of every Zhike pod (Deployment and migration Job, whose settings check the same files):
/tmp scratch, the key set from auth.jwksConfigMap, the auth roles, plus the NATS credentials
and TLS files when configured. Context: dict root/name/svc, plus "hook" true for the migration
Job. A pre-install hook runs before any ordinary object of the release exists, so the Job
mounts none of the release's own objects: it leaves out the auth-roles ConfigMap, which
`migrate` never reads (a Job waiting for it would hang the install). What it mounts must exist
before the install: the operator's Secrets, and the auth.jwksConfigMap (its settings need
ZHIKE_AUTH_JWKS_FILE to name a file).
*/}}
{{- define "zhike.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpVolumeSizeLimit }}
{{- $auth := .root.Values.auth }}
{{- if not $auth.jwksUrl }}
# Mounted whole (no subPath), so a key rotation in the ConfigMap reaches the pod.
- name: auth-jwks
  configMap:
    name: {{ $auth.jwksConfigMap.name | quote }}
    items:
      - key: {{ $auth.jwksConfigMap.key | quote }}
        path: {{ $auth.jwksConfigMap.key | quote }}
{{- end }}
{{- if and $auth.roles (not .hook) }}
- name: auth-roles
  configMap:
    name: {{ printf "%s-auth-roles" (include "zhike.fullname" .root) | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
{{- if .svc.natsCredentials.existingSecret }}
- name: nats-creds
  secret:
    secretName: {{ .svc.natsCredentials.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .svc.natsCredentials.existingSecretKey | quote }}
        path: {{ .svc.natsCredentials.existingSecretKey | quote }}
{{- end }}
{{- if .svc.natsNkeySeed.existingSecret }}
- name: nats-nkey
  secret:
    secretName: {{ .svc.natsNkeySeed.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .svc.natsNkeySeed.existingSecretKey | quote }}
        path: {{ .svc.natsNkeySeed.existingSecretKey | quote }}
{{- end }}
{{- $natsTls := .root.Values.natsTls }}
{{- if $natsTls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ $natsTls.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $natsTls.caFile | quote }}
        path: {{ $natsTls.caFile | quote }}
      {{- if $natsTls.clientCertificate }}
      - key: {{ $natsTls.certFile | quote }}
        path: {{ $natsTls.certFile | quote }}
      - key: {{ $natsTls.keyFile | quote }}
        path: {{ $natsTls.keyFile | quote }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "zhike.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if not .root.Values.auth.jwksUrl }}
- name: auth-jwks
  mountPath: /etc/zhike/auth/jwks
  readOnly: true
{{- end }}
{{- if and .root.Values.auth.roles (not .hook) }}
- name: auth-roles
  mountPath: /etc/zhike/auth/roles
  readOnly: true
{{- end }}
{{- if .svc.natsCredentials.existingSecret }}
- name: nats-creds
  mountPath: /etc/zhike/nats
  readOnly: true
{{- end }}
{{- if .svc.natsNkeySeed.existingSecret }}
- name: nats-nkey
  mountPath: /etc/zhike/nats-nkey
  readOnly: true
{{- end }}
{{- if .root.Values.natsTls.enabled }}
- name: nats-tls
  mountPath: /etc/zhike/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
NATS values that the schema cannot relate to each other (the services' settings refuse the same).
Context: dict root/name/svc.
*/}}
{{- define "zhike.checkNatsValues" -}}
{{- if and .svc.natsCredentials.existingSecret .svc.natsNkeySeed.existingSecret -}}
{{- fail (printf "services.%s: set natsCredentials or natsNkeySeed, not both" .name) -}}
{{- end -}}
{{- $t := .root.Values.natsTls -}}
{{- if $t.enabled -}}
{{- if not $t.existingSecret -}}
{{- fail "natsTls.enabled needs natsTls.existingSecret (the CA of the NATS servers)" -}}
{{- end -}}
{{- range $url := splitList "," .root.Values.nats.url -}}
{{- if not (hasPrefix "tls://" (trim $url)) -}}
{{- fail "natsTls.enabled needs tls:// URLs in nats.url" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Transport security of the production profile (docs/operations.md, "Transport security"): each
enabled service's own NATS identity, TLS to NATS, TLS on the gRPC ports and PostgreSQL
verify-full. Only the installation can supply them (its Secrets), so the defaults lack them and
the chart refuses to render until they are set, or until allowInsecure accepts the absence of
that one piece, flag by flag (a local cluster, a test bench). Runs after the checks of how the
values hold together, whose messages are more precise. Context: dict root/name/svc.
*/}}
{{- define "zhike.checkTransportSecurity" -}}
{{- $v := .root.Values -}}
{{- $allow := $v.allowInsecure -}}
{{- $docs := "(docs/operations.md, \"Transport security\")" -}}
{{- if not (or .svc.natsNkeySeed.existingSecret .svc.natsCredentials.existingSecret $allow.anonymousNats) -}}
{{- fail (printf "services.%s.natsNkeySeed.existingSecret (or services.%s.natsCredentials.existingSecret): required, the service's own NATS user with the permissions of the allow-list; without one it connects anonymously, which a NATS set up as documented refuses (the pods stay Ready while events pile up in the outbox) and which voids the per-service permissions. To accept anonymous NATS here, set allowInsecure.anonymousNats=true %s" .name .name $docs) -}}
{{- end -}}
{{- if not (or $v.natsTls.enabled $allow.plaintextNats) -}}
{{- fail (printf "natsTls.enabled: required, with natsTls.existingSecret (the CA of the NATS servers) and tls:// URLs in nats.url; without it the events, which carry personal data, travel to and from NATS in plaintext, readable and alterable on the way. To accept plaintext NATS here, set allowInsecure.plaintextNats=true %s" $docs) -}}
{{- end -}}
{{- if not (or $v.grpcTls.enabled $allow.plaintextGrpc) -}}
{{- fail (printf "grpcTls.enabled: required, with grpcTls.serverSecrets and services.notifications.directory.tls.existingSecret; without it the gRPC ports speak plaintext: callers' tokens, notifications' dispatcher token and the unmasked phones and e-mails identity returns to it cross the network in the clear. To accept plaintext gRPC here, set allowInsecure.plaintextGrpc=true %s" $docs) -}}
{{- end -}}
{{- $mode := $v.databaseTls.sslMode -}}
{{- if not (or (eq $mode "verify-full") $allow.unverifiedDatabase) -}}
{{- $why := "the connection may be plaintext and the server is not verified, so anyone on the path can read it and pose as the database" -}}
{{- if eq $mode "require" -}}
{{- $why = "the connection is encrypted but the server's certificate is not verified, so anyone on the path can pose as the database" -}}
{{- else if eq $mode "verify-ca" -}}
{{- $why = "verify-ca checks the certificate's CA but not that it names the database host, so any server that CA certified can pose as the database" -}}
{{- end -}}
{{- fail (printf "databaseTls.sslMode: verify-full required, with databaseTls.rootCA.existingSecret (the CA of the PostgreSQL servers), not %s: %s. To accept an unverified database here, set allowInsecure.unverifiedDatabase=true %s" (ternary "empty (as the database URL says; asyncpg's default, prefer)" (quote $mode) (eq $mode "")) $why $docs) -}}
{{- end -}}
{{- end -}}

{{/*
TLS values that the schema cannot relate to each other; stops the render naming the values.
Call with the root context.
*/}}
{{- define "zhike.checkTlsValues" -}}
{{- $g := .Values.grpcTls -}}
{{- if and (or $g.clientCA.existingSecret $g.allowedClientNames) (not $g.enabled) -}}
{{- fail "grpcTls.clientCA and grpcTls.allowedClientNames need grpcTls.enabled=true" -}}
{{- end -}}
{{- if and $g.allowedClientNames (not $g.clientCA.existingSecret) -}}
{{- fail "grpcTls.allowedClientNames needs grpcTls.clientCA.existingSecret (names are read from verified client certificates)" -}}
{{- end -}}
{{- $d := .Values.databaseTls -}}
{{- $verifying := has $d.sslMode (list "verify-ca" "verify-full") -}}
{{- if and $verifying (not $d.rootCA.existingSecret) -}}
{{- fail (printf "databaseTls.sslMode=%s needs databaseTls.rootCA.existingSecret" $d.sslMode) -}}
{{- end -}}
{{- if and $d.rootCA.existingSecret (not $verifying) -}}
{{- fail "databaseTls.rootCA is used only with databaseTls.sslMode verify-ca or verify-full" -}}
{{- end -}}
{{- end -}}

{{/*
TLS of the gRPC service port: environment, volumes and mounts of a service's Deployment (the
migration Jobs serve nothing, so they get none of it). Secret volumes are mounted whole, never
with subPath, so a renewed Secret reaches the running pod and the service reloads it.
Context: dict root/name/svc; include only when grpcTls.enabled.
*/}}
{{- define "zhike.grpcTlsEnv" -}}
{{- $g := .root.Values.grpcTls -}}
- name: ZHIKE_TLS_CERT_FILE
  value: "/etc/zhike/grpc-tls/tls.crt"
- name: ZHIKE_TLS_KEY_FILE
  value: "/etc/zhike/grpc-tls/tls.key"
{{- if $g.clientCA.existingSecret }}
- name: ZHIKE_TLS_CLIENT_CA_FILE
  value: {{ printf "/etc/zhike/grpc-client-ca/%s" $g.clientCA.existingSecretKey | quote }}
{{- end }}
{{- with $g.allowedClientNames }}
- name: ZHIKE_TLS_ALLOWED_CLIENT_NAMES
  value: {{ toJson . | quote }}
{{- end }}
{{- end -}}

{{- define "zhike.grpcTlsVolumes" -}}
{{- $g := .root.Values.grpcTls -}}
- name: grpc-tls
  secret:
    secretName: {{ required (printf "grpcTls.serverSecrets.%s is required when grpcTls.enabled" .name) (get $g.serverSecrets .name) | quote }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- if $g.clientCA.existingSecret }}
- name: grpc-client-ca
  secret:
    secretName: {{ $g.clientCA.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $g.clientCA.existingSecretKey | quote }}
        path: {{ $g.clientCA.existingSecretKey | quote }}
{{- end }}
{{- end -}}

{{- define "zhike.grpcTlsVolumeMounts" -}}
- name: grpc-tls
  mountPath: /etc/zhike/grpc-tls
  readOnly: true
{{- if .root.Values.grpcTls.clientCA.existingSecret }}
- name: grpc-client-ca
  mountPath: /etc/zhike/grpc-client-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The PostgreSQL CA (Deployment and migration Job); include only when databaseTls.rootCA.existingSecret is set. Context: dict root/name/svc. */}}
{{- define "zhike.databaseCaVolumes" -}}
{{- $ca := .root.Values.databaseTls.rootCA -}}
- name: database-ca
  secret:
    secretName: {{ $ca.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $ca.existingSecretKey | quote }}
        path: {{ $ca.existingSecretKey | quote }}
{{- end -}}

{{- define "zhike.databaseCaVolumeMounts" -}}
- name: database-ca
  mountPath: /etc/zhike/database-ca
  readOnly: true
{{- end -}}

{{/* DNS egress rule (UDP and TCP 53 to the cluster DNS). */}}
{{- define "zhike.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.egress.dns.namespace | quote }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.egress.dns.podSelector | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* Enabled services as a sorted list of names (deterministic output). */}}
{{- define "zhike.enabledServices" -}}
{{- $names := list -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/*
checkov skip annotations for pod-owning objects, each with its reason (docs/security-scan.md).
Context: dict root/name/svc, plus "testPod" true for the helm test Pod.
*/}}
{{- define "zhike.checkovSkips" -}}
{{- $n := 1 -}}
checkov.io/skip{{ $n }}: CKV_K8S_15=Images are immutable release tags (optionally digest-pinned); IfNotPresent avoids a registry dependency on every pod start
{{- $n = add1 $n }}
{{- if not (or .root.Values.image.digest (and .svc .svc.image.digest)) }}
checkov.io/skip{{ $n }}: CKV_K8S_43=No digest is known before the release build; the release pipeline sets image.digest
{{- $n = add1 $n }}
{{- end }}
{{- if .testPod }}
checkov.io/skip{{ $n }}: CKV_K8S_8=helm test Pod runs a one-shot gRPC health check and exits; a liveness probe has no meaning
{{- $n = add1 $n }}
checkov.io/skip{{ $n }}: CKV_K8S_9=helm test Pod runs a one-shot gRPC health check and exits; a readiness probe has no meaning
{{- else }}
checkov.io/skip{{ $n }}: CKV_K8S_35=ZHIKE_DATABASE_URL is read from the environment by the settings contract; it comes from an existing Secret via secretKeyRef, never a literal
{{- end }}
{{- end -}}

{{/* Caller-identity values the schema cannot relate to each other. Context: root. */}}
{{- define "zhike.checkAuthValues" -}}
{{- $a := .Values.auth -}}
{{- if not $a.issuer -}}
{{- fail "auth.issuer: required, the `iss` of the bank's identity provider (docs/security.md)" -}}
{{- end -}}
{{- if eq (empty $a.jwksUrl) (empty $a.jwksConfigMap.name) -}}
{{- fail "auth: set exactly one of auth.jwksUrl and auth.jwksConfigMap.name (the key set that verifies callers' tokens)" -}}
{{- end -}}
{{- end -}}

{{/*
NetworkPolicy values that depend on others; include only when networkPolicy.enabled. The
services fetch auth.jwksUrl themselves: with no egress rule to the identity provider they hold
no key and refuse every call (UNAUTHENTICATED) while their readiness stays SERVING.
Call with the root context.
*/}}
{{- define "zhike.checkNetworkPolicyValues" -}}
{{- if and .Values.auth.jwksUrl (not .Values.networkPolicy.egress.identityProvider.to) -}}
{{- fail "networkPolicy.egress.identityProvider.to: required with auth.jwksUrl and networkPolicy.enabled, the NetworkPolicyPeers of the identity provider that serves the key set (its ipBlock CIDRs, or your egress proxy's pods); without it every service fails to fetch the keys and answers every call UNAUTHENTICATED (docs/operations.md, \"Network policies\")" -}}
{{- end -}}
{{- end -}}

{{/*
Whether the `helm test` Pod checks the plaintext health port instead of the gRPC port: with
grpcTls on and no certificate for it (grpcTls.helmTest), it cannot speak to the TLS port.
"true" or empty. Call with the root context.
*/}}
{{- define "zhike.helmTestUsesHealthPort" -}}
{{- $tls := .Values.grpcTls -}}
{{- if and .Values.tests.enabled $tls.enabled (not $tls.helmTest.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* NetworkPolicyPeer of the `helm test` Pod (a list item). Call with the root context. */}}
{{- define "zhike.testPodPeer" -}}
- podSelector:
    matchLabels:
      {{- include "zhike.releaseSelectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: tests
{{- end -}}

{{/*
Who may call the gRPC port (NetworkPolicyPeers, a YAML list; empty when no one may): the
configured clients and, when rendered, the helm test Pod. Never the other Zhike services.
Call with the root context.
*/}}
{{- define "zhike.grpcCallers" -}}
{{- $ingress := .Values.networkPolicy.ingress -}}
{{- if .Values.tests.enabled }}
{{ include "zhike.testPodPeer" . }}
{{- end }}
{{- range $ingress.allowedNamespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
{{- end }}
{{- range $ingress.allowedPodSelectors }}
- podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
{{- end }}
{{- with $ingress.extraFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Whether a service reads the field keys (ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID,
ZHIKE_BLIND_INDEX_KEY): identity and notifications, which seal personal data at rest. "true" or
empty. Context: dict root/name.
*/}}
{{- define "zhike.readsFieldKeys" -}}
{{- if has .name (list "identity" "notifications") -}}
true
{{- end -}}
{{- end -}}

{{/*
Page tokens: with several replicas (or an HPA that may add them) every pod must sign with the
same key, or a listing's next page fails on any pod but the one that issued the token; the
service only logs that. pageTokens.existingSecret gives every pod of every service that key.
Without it identity and notifications derive one from the field keys' blind-index key, which
they hold; profile and offers do not hold the field keys, so for them only the Secret does.
Context: dict root/name/svc.
*/}}
{{- define "zhike.checkPageTokenValues" -}}
{{- $derived := and (include "zhike.readsFieldKeys" .) .root.Values.fieldKeys.existingSecret -}}
{{- if not (or .root.Values.pageTokens.existingSecret $derived) -}}
{{- $replicas := "" -}}
{{- if .svc.autoscaling.enabled -}}
{{- $replicas = "autoscaling is on" -}}
{{- else if gt (int .svc.replicaCount) 1 -}}
{{- $replicas = printf "replicaCount is %d" (int .svc.replicaCount) -}}
{{- end -}}
{{- if $replicas -}}
{{- $alternative := ternary " (or fieldKeys.existingSecret, whose blind-index key gives one)" " (it does not get the field keys, so they give it none)" (eq (include "zhike.readsFieldKeys" .) "true") -}}
{{- fail (printf "services.%s: %s, so pageTokens.existingSecret%s is required: without a shared key each pod signs page tokens with its own and a listing's next page fails on every other pod (docs/operations.md, Prerequisites)" .name $replicas $alternative) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
checksum/config of a service's pod template: a hash of every ConfigMap the chart renders that
the pod reads only at start (its environment, and the auth roles file), so a change rolls the
pods. The JWKS ConfigMap is not the chart's and is re-read when it changes. Context: dict
root/name/svc.
*/}}
{{- define "zhike.configChecksum" -}}
{{- $data := include "zhike.configData" . -}}
{{- with .root.Values.auth.roles -}}
{{- $data = printf "%s\n---\n%s" $data (toJson .) -}}
{{- end -}}
{{- $data | sha256sum -}}
{{- end -}}

{{/*
Operator-supplied environment sources, volumes and mounts (the global ones, then the
service's), for the service pods and their migration Jobs. Context: dict root/name/svc.
*/}}
{{- define "zhike.extraEnvFrom" -}}
{{- with .root.Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- with .svc.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "zhike.extraVolumes" -}}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- with .svc.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "zhike.extraVolumeMounts" -}}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- with .svc.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The notifications service's own values: what the schema cannot relate to each other, and what
it cannot start (or send, or be reached) without. Context: dict root/name/svc.
*/}}
{{- define "zhike.checkNotificationsValues" -}}
{{- $n := .svc -}}
{{- $v := .root.Values -}}
{{- if eq (empty $n.providers.list) (empty $n.providers.existingSecret) -}}
{{- fail "services.notifications.providers: set exactly one of providers.list and providers.existingSecret (the SMS, push and e-mail providers it sends through)" -}}
{{- end -}}
{{- /* The failover orders: the service's defaults (local_sms, local_email, local_push) name
the local gateways of `make run`, which a bank's providers do not define, and the settings (of
the migration Job first) stop the process when an order names a provider that is not there. */}}
{{- range $channel := list "sms" "email" "push" -}}
{{- if not (get $n.providers $channel) -}}
{{- fail (printf "services.notifications.providers.%s: required with providers.list or providers.existingSecret, the names of the %s providers in failover order (without it the service falls back to local_%s, which your providers do not define, and notifications and its migration Job stop at start)" $channel $channel $channel) -}}
{{- end -}}
{{- end -}}
{{- with $n.providers.list -}}
{{- $channels := dict -}}
{{- range $provider := . -}}
{{- if hasKey $channels $provider.name -}}
{{- fail (printf "services.notifications.providers.list: %q is defined twice (each provider name once)" $provider.name) -}}
{{- end -}}
{{- $_ := set $channels $provider.name $provider.channel -}}
{{- end -}}
{{- /* A call to a provider is cut at half the dispatch lease (another replica takes the attempt
up when the lease runs out), and the settings refuse a provider time-out that does not fit in
it: the schema allows up to 120 s, the default lease of 60 s only under 30. */}}
{{- $lease := 60.0 -}}
{{- range $env := list $v.config.extraEnv $n.extraEnv -}}
{{- with $env -}}
{{- with .ZHIKE_DISPATCH_LEASE_SECONDS -}}
{{- $lease = float64 . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $provider := . -}}
{{- $timeout := float64 (default 10 $provider.timeout_seconds) -}}
{{- if ge $timeout (divf $lease 2) -}}
{{- fail (printf "services.notifications.providers.list: %q has timeout_seconds %v, which must be under half of the dispatch lease (ZHIKE_DISPATCH_LEASE_SECONDS, %v s), or notifications and its migration Job stop at start" $provider.name $timeout $lease) -}}
{{- end -}}
{{- end -}}
{{- range $channel := list "sms" "email" "push" -}}
{{- range $name := get $n.providers $channel -}}
{{- if ne (get $channels $name) $channel -}}
{{- fail (printf "services.notifications.providers.%s: %q is not %s %s provider in providers.list" $channel $name (ternary "a" "an" (eq $channel "push")) $channel) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $n.webhooks.publicUrl -}}
{{- fail "services.notifications.webhooks.publicUrl: required, the base URL the unsubscribe links in e-mails point at (ZHIKE_WEBHOOK_PUBLIC_URL)" -}}
{{- end -}}
{{- if not $n.directory.serviceToken.existingSecret -}}
{{- fail "services.notifications.directory.serviceToken.existingSecret: required, a notifications_dispatcher token for identity and the profile (ZHIKE_SERVICE_TOKEN_FILE)" -}}
{{- end -}}
{{- range $peer := list "identity" "profile" -}}
{{- if and (not (get $n.directory (printf "%sAddress" $peer))) (not (get $v.services $peer).enabled) -}}
{{- fail (printf "services.notifications.directory.%sAddress: required, %s is not deployed by this release" $peer $peer) -}}
{{- end -}}
{{- end -}}
{{- if and $v.grpcTls.enabled (not $n.directory.tls.existingSecret) -}}
{{- fail "services.notifications.directory.tls.existingSecret: required with grpcTls.enabled (the CA that signs identity's and the profile's certificates)" -}}
{{- end -}}
{{- if and $v.grpcTls.clientCA.existingSecret (not $n.directory.tls.clientCertificate) -}}
{{- fail "services.notifications.directory.tls.clientCertificate: required with grpcTls.clientCA (identity and the profile ask notifications for a client certificate)" -}}
{{- end -}}
{{- if and $n.webhooks.ingress.enabled (not $n.webhooks.ingress.host) -}}
{{- fail "services.notifications.webhooks.ingress.host: required with webhooks.ingress.enabled" -}}
{{- end -}}
{{- end -}}

{{/* Where identity (or the profile) answers: the value set, or this release's Service. Context: dict root/name/svc plus "peer". */}}
{{- define "zhike.directoryAddress" -}}
{{- $set := get .svc.directory (printf "%sAddress" .peer) -}}
{{- if $set -}}
{{- $set -}}
{{- else -}}
{{- printf "%s:%d" (include "zhike.serviceFullname" (dict "root" .root "name" .peer)) (int .root.Values.ports.grpc) -}}
{{- end -}}
{{- end -}}

{{/* The notifications service's plain settings (part of zhike.configData). Context: dict root/name/svc. */}}
{{- define "zhike.notificationsConfig" -}}
{{- $n := .svc }}
ZHIKE_IDENTITY_ADDRESS: {{ include "zhike.directoryAddress" (merge (dict "peer" "identity") .) | quote }}
ZHIKE_PROFILE_ADDRESS: {{ include "zhike.directoryAddress" (merge (dict "peer" "profile") .) | quote }}
ZHIKE_WEBHOOK_PORT: {{ $n.webhooks.port | quote }}
ZHIKE_WEBHOOK_PUBLIC_URL: {{ $n.webhooks.publicUrl | quote }}
{{- with $n.providers.list }}
ZHIKE_PROVIDERS: {{ toJson . | quote }}
{{- end }}
{{- range $channel := list "sms" "email" "push" }}
{{- with get $n.providers $channel }}
ZHIKE_PROVIDERS_{{ upper $channel }}: {{ toJson . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
What only the notifications pods (not its migration Job) get: the dispatcher token and the
directory's TLS files (mounted whole, so a rotated Secret reaches the pod and is re-read), the
webhook signing secrets and the unsubscribe link key. Context: dict root/name/svc.
*/}}
{{- define "zhike.notificationsEnv" -}}
{{- $n := .svc -}}
- name: ZHIKE_SERVICE_TOKEN_FILE
  value: {{ printf "/etc/zhike/service-token/%s" $n.directory.serviceToken.existingSecretKey | quote }}
{{- with $n.directory.tls }}
{{- if .existingSecret }}
- name: ZHIKE_DIRECTORY_TLS_CA_FILE
  value: {{ printf "/etc/zhike/directory-tls/%s" .caFile | quote }}
{{- if .clientCertificate }}
- name: ZHIKE_DIRECTORY_TLS_CERT_FILE
  value: {{ printf "/etc/zhike/directory-tls/%s" .certFile | quote }}
- name: ZHIKE_DIRECTORY_TLS_KEY_FILE
  value: {{ printf "/etc/zhike/directory-tls/%s" .keyFile | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $n.webhooks.secrets.existingSecret }}
- name: ZHIKE_WEBHOOK_SECRETS
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $n.webhooks.secrets.existingSecretKey | quote }}
{{- end }}
{{- with $n.webhooks.unsubscribeLinkKey.existingSecret }}
- name: ZHIKE_UNSUBSCRIBE_LINK_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $n.webhooks.unsubscribeLinkKey.existingSecretKey | quote }}
{{- end }}
{{- end -}}

{{- define "zhike.notificationsVolumes" -}}
{{- $n := .svc -}}
- name: service-token
  secret:
    secretName: {{ $n.directory.serviceToken.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $n.directory.serviceToken.existingSecretKey | quote }}
        path: {{ $n.directory.serviceToken.existingSecretKey | quote }}
{{- with $n.directory.tls }}
{{- if .existingSecret }}
- name: directory-tls
  secret:
    secretName: {{ .existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .caFile | quote }}
        path: {{ .caFile | quote }}
      {{- if .clientCertificate }}
      - key: {{ .certFile | quote }}
        path: {{ .certFile | quote }}
      - key: {{ .keyFile | quote }}
        path: {{ .keyFile | quote }}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "zhike.notificationsVolumeMounts" -}}
- name: service-token
  mountPath: /etc/zhike/service-token
  readOnly: true
{{- if .svc.directory.tls.existingSecret }}
- name: directory-tls
  mountPath: /etc/zhike/directory-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* NetworkPolicyPeer of one service's pods (a list item). Context: dict root/name. */}}
{{- define "zhike.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "zhike.componentSelectorLabels" . | nindent 6 }}
{{- end -}}

{{/*
Whether this release's notifications calls this service (identity or the profile) in the
cluster: "true" or empty. Context: dict root/name.
*/}}
{{- define "zhike.calledByNotifications" -}}
{{- $n := .root.Values.services.notifications -}}
{{- if and $n.enabled (has .name (list "identity" "profile")) (not (get $n.directory (printf "%sAddress" .name))) -}}
true
{{- end -}}
{{- end -}}

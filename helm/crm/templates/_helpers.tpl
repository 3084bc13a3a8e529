{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "crm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix of every object: `<release>-crm`, or the release name when it already
says crm. */}}
{{- define "crm.fullname" -}}
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

{{/* The object name of one CRM process: dict "root" $ "name" "marketing". */}}
{{- define "crm.component" -}}
{{- printf "%s-%s" (include "crm.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------------ */}}

{{/* Labels of every object of the release. */}}
{{- define "crm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "crm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crm
{{- end -}}

{{/* What selects every pod of the release (NetworkPolicies: "a sibling"). */}}
{{- define "crm.releaseSelector" -}}
app.kubernetes.io/name: {{ include "crm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* What selects the pods of one process: dict "root" $ "name" "marketing". */}}
{{- define "crm.selectorLabels" -}}
{{ include "crm.releaseSelector" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Labels of the objects of one process: dict "root" $ "name" "marketing" "svc" $svc. */}}
{{- define "crm.componentLabels" -}}
{{ include "crm.labels" .root }}
app.kubernetes.io/component: {{ .name }}
crm.example.com/role: {{ .svc.role }}
{{- end -}}

{{/* Values ------------------------------------------------------------------------------------ */}}

{{/* One process's settings: `defaults`, then its own entry (its keys win; lists are replaced),
as YAML: dict "root" $ "svc" $entry. */}}
{{- define "crm.merged" -}}
{{- $merged := mustMergeOverwrite (deepCopy .root.Values.defaults) (deepCopy .svc) -}}
{{- if not (hasKey $merged "migrate") -}}
{{- $_ := set $merged "migrate" $merged.database -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{- define "crm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Settings file --------------------------------------------------------------------------- */}}

{{/* A TOML value. Helm reads every YAML number as a float: whole numbers are written as integers,
which every integer setting needs and a float setting accepts. */}}
{{- define "crm.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (floor .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "crm.tomlValue" $e }}{{ end }}]
{{- else -}}
{{- fail (printf "settings: cannot write %v (%s) in TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* A TOML table and its sub-tables: dict "prefix" "" "table" $map. Empty strings and nulls
are left out, so that a service keeps its built-in default. */}}
{{- define "crm.toml" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .table -}}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{ $key }} = {{ include "crm.tomlValue" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := .table -}}
{{- if kindIs "map" $value -}}
{{- $name := ternary $key (printf "%s.%s" $prefix $key) (eq $prefix "") }}

[{{ $name }}]
{{- include "crm.toml" (dict "prefix" $name "table" $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The settings file of one process: dict "root" $ "name" $name "svc" $merged. What the chart
knows (listen address, telemetry, auth, routes…), then `config`, then the process's `config`. */}}
{{- define "crm.settings" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $v := $root.Values -}}
{{- $telemetry := dict "log_format" $v.telemetry.logFormat "log_filter" $v.telemetry.logFilter "sampling_ratio" $v.telemetry.samplingRatio "otlp_endpoint" $v.telemetry.otlpEndpoint -}}
{{- $auth := dict "issuer" $v.auth.issuer "audience" $v.auth.audience -}}
{{- if $v.auth.jwksKey -}}
{{- $_ := set $auth "jwks_file" "/etc/crm/auth/jwks.json" -}}
{{- end -}}
{{- $settings := dict "server" (dict "listen_addr" (printf "0.0.0.0:%d" (int $svc.port))) "telemetry" $telemetry "auth" $auth -}}
{{- if $svc.database -}}
{{- $_ := set $settings "blob" (dict "root" $v.blobs.mountPath) -}}
{{- end -}}
{{- if eq $svc.role "gateway" -}}
{{- $routes := dict -}}
{{- range $name, $entry := $v.services -}}
{{- if and $entry.enabled (eq $entry.role "api") -}}
{{- $host := include "crm.component" (dict "root" $root "name" (printf "%s-headless" $name)) -}}
{{- $_ := set $routes $entry.route (printf "http://%s:%d" $host (int $entry.port)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $settings "routes" $routes -}}
{{- $_ := set $settings "cors" (dict "allowed_origins" $v.gateway.corsAllowedOrigins) -}}
{{- end -}}
{{- range $sibling := default list $svc.calls -}}
{{- $callee := index $v.services $sibling -}}
{{- if not (and $callee (eq $callee.role "api")) -}}
{{- fail (printf "a service calls %s, which is not an API service of services" $sibling) -}}
{{- end -}}
{{- /* A disabled sibling is left out: the caller keeps its built-in address, and its calls
there answer UNAVAILABLE. */ -}}
{{- if $callee.enabled -}}
{{- $host := include "crm.component" (dict "root" $root "name" $sibling) -}}
{{- $_ := set $settings $callee.route (dict "url" (printf "http://%s:%d" $host (int $callee.port))) -}}
{{- end -}}
{{- end -}}
{{- $settings = mustMergeOverwrite $settings (deepCopy $v.config) (deepCopy (default dict $svc.config)) -}}
{{- include "crm.toml" (dict "prefix" "" "table" $settings) | trim -}}
{{- end -}}

{{/* Pods ----------------------------------------------------------------------------------- */}}

{{- define "crm.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "crm.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The environment of a process's containers: dict "root" $ "svc" $merged. */}}
{{- define "crm.env" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
- name: CRM_CONFIG
  value: /etc/crm/config.toml
{{- if $svc.database }}
- name: CRM__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.existingSecret }}
      key: {{ required (printf "services.%s.databaseUrlKey is required" $svc.binary) $svc.databaseUrlKey }}
- name: CRM__REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.existingSecret }}
      key: {{ $root.Values.redisUrlKey }}
{{- end }}
{{- range $var, $key := merge (deepCopy (default dict $svc.secretEnv)) $root.Values.secretEnv }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- range $var, $value := $svc.env }}
- name: {{ $var }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts and volumes: dict "root" $ "name" $name "svc" $merged "hook" bool. */}}
{{- define "crm.volumeMounts" -}}
- name: config
  mountPath: /etc/crm/config.toml
  subPath: config.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .root.Values.auth.jwksKey }}
- name: jwks
  mountPath: /etc/crm/auth
  readOnly: true
{{- end }}
{{- if and .svc.database (not .hook) }}
- name: blobs
  mountPath: {{ .root.Values.blobs.mountPath }}
{{- end }}
{{- end -}}

{{- define "crm.volumes" -}}
- name: config
  configMap:
    name: {{ include "crm.component" (dict "root" .root "name" .name) }}{{ if .hook }}-migrate{{ end }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .root.Values.auth.jwksKey }}
- name: jwks
  secret:
    secretName: {{ .root.Values.existingSecret }}
    items:
      - key: {{ .root.Values.auth.jwksKey }}
        path: jwks.json
{{- end }}
{{- if and .svc.database (not .hook) }}
- name: blobs
  {{- toYaml .root.Values.blobs.volume | nindent 2 }}
{{- end }}
{{- end -}}

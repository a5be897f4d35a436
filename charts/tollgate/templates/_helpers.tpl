{{/* Name of the chart, or nameOverride. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name. */}}
{{- define "tollgate.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "envoy"). */}}
{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects. */}}
{{- define "tollgate.componentLabels" -}}
{{ include "tollgate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The tollgate image, tagged with appVersion unless image.tag is set. */}}
{{- define "tollgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tollgate.adminService" -}}{{ include "tollgate.fullname" . }}-admin{{- end -}}
{{- define "tollgate.xdsService" -}}{{ include "tollgate.fullname" . }}-xds{{- end -}}
{{- define "tollgate.webService" -}}{{ include "tollgate.fullname" . }}-web{{- end -}}
{{/* The xDS host Envoy and ext_proc dial; the server certificate names it. */}}
{{- define "tollgate.xdsHost" -}}{{ include "tollgate.xdsService" . }}.{{ .Release.Namespace }}.svc{{- end -}}
{{- define "tollgate.cockroachdb" -}}{{ include "tollgate.fullname" . }}-cockroachdb{{- end -}}

{{/* Whether the chart makes the DSN Secret (database.dsn or the in-chart CockroachDB). */}}
{{- define "tollgate.ownDatabaseSecret" -}}
{{- if or .Values.cockroachdb.enabled .Values.database.dsn }}true{{ end -}}
{{- end -}}

{{/* Secret and key of the database DSN. */}}
{{- define "tollgate.databaseSecret" -}}
{{- if include "tollgate.ownDatabaseSecret" . }}{{ include "tollgate.fullname" . }}-database{{ else }}{{ .Values.database.existingSecret }}{{ end -}}
{{- end -}}
{{- define "tollgate.databaseSecretKey" -}}
{{- if include "tollgate.ownDatabaseSecret" . }}dsn{{ else }}{{ .Values.database.existingSecretKey }}{{ end -}}
{{- end -}}

{{- define "tollgate.masterKeySecret" -}}
{{- default (printf "%s-master-key" (include "tollgate.fullname" .)) .Values.secrets.masterKey.existingSecret -}}
{{- end -}}
{{- define "tollgate.masterKeySecretKey" -}}
{{- if .Values.secrets.masterKey.existingSecret }}{{ .Values.secrets.masterKey.existingSecretKey }}{{ else }}master-key{{ end -}}
{{- end -}}
{{- define "tollgate.operatorTokenSecret" -}}
{{- default (printf "%s-operator-token" (include "tollgate.fullname" .)) .Values.secrets.operatorToken.existingSecret -}}
{{- end -}}
{{- define "tollgate.operatorTokenSecretKey" -}}
{{- if .Values.secrets.operatorToken.existingSecret }}{{ .Values.secrets.operatorToken.existingSecretKey }}{{ else }}operator-token{{ end -}}
{{- end -}}

{{/* Secrets of the server and client certificates (tls.mode certManager or secret). */}}
{{- define "tollgate.serverTLSSecret" -}}
{{- if eq .Values.tls.mode "secret" }}{{ .Values.tls.serverSecret }}{{ else }}{{ include "tollgate.fullname" . }}-server-tls{{ end -}}
{{- end -}}
{{- define "tollgate.clientTLSSecret" -}}
{{- if eq .Values.tls.mode "secret" }}{{ .Values.tls.clientSecret }}{{ else }}{{ include "tollgate.fullname" . }}-dataplane-tls{{ end -}}
{{- end -}}

{{/* Fails on combinations of values the schema cannot express. */}}
{{- define "tollgate.validate" -}}
{{- $db := .Values.database -}}
{{- if and .Values.cockroachdb.enabled $db.dsn -}}
{{- fail "cockroachdb.enabled runs a database in the release: leave database.dsn empty" -}}
{{- end -}}
{{- if not (or .Values.cockroachdb.enabled $db.dsn $db.existingSecret) -}}
{{- fail "no database: set database.existingSecret (a Secret with the CockroachDB DSN), database.dsn, or cockroachdb.enabled=true for a trial" -}}
{{- end -}}
{{- if ge (int .Values.envoy.preStopSleepSeconds) (int .Values.envoy.terminationGracePeriodSeconds) -}}
{{- fail "envoy.terminationGracePeriodSeconds must exceed envoy.preStopSleepSeconds, or the kubelet kills Envoy during its sleep" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "secret") (or (not .Values.tls.serverSecret) (not .Values.tls.clientSecret)) -}}
{{- fail "tls.mode=secret needs tls.serverSecret and tls.clientSecret" -}}
{{- end -}}
{{- with .Values.web.sso -}}
{{- if and .issuer (or (not .clientID) (not .clientSecretSecret) (not $.Values.web.baseURL)) -}}
{{- fail "web.sso.issuer needs web.sso.clientID, web.sso.clientSecretSecret and web.baseURL (the provider redirects back to it)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level securityContext of every pod: non-root, RuntimeDefault seccomp. */}}
{{- define "tollgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level securityContext of every container. */}}
{{- define "tollgate.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Default topology spread of a component: over nodes and zones, best effort. */}}
{{- define "tollgate.topologySpread" -}}
{{- if .constraints -}}
{{ toYaml .constraints }}
{{- else -}}
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "tollgate.selectorLabels" (dict "ctx" $.ctx "component" $.component) | nindent 6 }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment of every tollgate container that opens the database. */}}
{{- define "tollgate.databaseEnv" -}}
- name: TOLLGATE_DATABASE
  valueFrom:
    secretKeyRef:
      name: {{ include "tollgate.databaseSecret" . }}
      key: {{ include "tollgate.databaseSecretKey" . }}
{{- end -}}

{{/* NetworkPolicy ingress rule of the metrics port: this namespace and networkPolicy.metricsAllowedNamespaces. */}}
{{- define "tollgate.metricsIngress" -}}
{{- if .Values.metrics.enabled -}}
- from:
    - namespaceSelector:
        matchExpressions:
          - key: kubernetes.io/metadata.name
            operator: In
            values:
              {{- range (prepend .Values.networkPolicy.metricsAllowedNamespaces .Release.Namespace | uniq) }}
              - {{ . | quote }}
              {{- end }}
  ports:
    - port: metrics
      protocol: TCP
{{- end -}}
{{- end -}}

{{/* Telemetry flags shared by the control plane and ext_proc (docs/observability.md). */}}
{{- define "tollgate.telemetryArgs" -}}
{{- if .Values.metrics.tenantLabels }}
- --metrics-tenant-labels
{{- end }}
{{- with .Values.otlp }}
{{- if .endpoint }}
- {{ printf "--otlp-endpoint=%s" .endpoint | quote }}
- {{ printf "--trace-sample-ratio=%v" .traceSampleRatio | quote }}
{{- if .insecure }}
- --otlp-insecure
{{- end }}
{{- if .metrics }}
- --otlp-metrics
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

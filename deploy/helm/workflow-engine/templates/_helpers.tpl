{{/* The chart's name, truncated to 63 characters (a DNS label). */}}
{{- define "wfe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name when it already holds the chart's name. */}}
{{- define "wfe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wfe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "wfe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one role: include "wfe.selectorLabels" (list . "api") */}}
{{- define "wfe.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "wfe.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "wfe.secretName" -}}
{{- default (include "wfe.fullname" .) .Values.secrets.name }}
{{- end }}

{{- define "wfe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wfe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wfe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Environment of both roles: the store and Redis from the Secret, the prefix, extras. */}}
{{- define "wfe.env" -}}
- name: WFE_LOG_JSON
  value: "true"
- name: WFE_QUEUE_PREFIX
  value: {{ .Values.queuePrefix | quote }}
- name: WFE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "wfe.secretName" . }}
      key: redis-url
- name: WFE_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "wfe.secretName" . }}
      key: store-url
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "wfe.podSpecCommon" -}}
serviceAccountName: {{ include "wfe.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* prometheus.io annotations of a pod that serves /metrics on a port, unless the chart's
ServiceMonitors find the targets: include "wfe.scrapeAnnotations" (list . port) */}}
{{- define "wfe.scrapeAnnotations" -}}
{{- $root := index . 0 -}}
{{- if not $root.Values.metrics.serviceMonitor.enabled -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Names and labels shared by every template. */}}

{{- define "inferpool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name, with the chart name unless it contains it. */}}
{{- define "inferpool-operator.fullname" -}}
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

{{- define "inferpool-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferpool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferpool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "inferpool-operator.labels" -}}
helm.sh/chart: {{ include "inferpool-operator.chart" . }}
{{ include "inferpool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferpool
{{- end }}

{{- define "inferpool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferpool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "inferpool-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The CRD files for this configuration: the relaxed variant only with privileged namespaces. */}}
{{- define "inferpool-operator.crdDir" -}}
{{- if .Values.operator.allowPrivilegedNamespaces }}files/crds-privileged{{ else }}files/crds{{ end }}
{{- end }}

{{/* Labels added to the CRDs' own (which already say part-of: inferpool). */}}
{{- define "inferpool-operator.crdLabels" -}}
helm.sh/chart: {{ include "inferpool-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The leader-election Lease (in the release namespace); the Role grants get/update on it only. */}}
{{- define "inferpool-operator.leaseName" -}}
{{- include "inferpool-operator.fullname" . }}
{{- end }}

{{/* Prometheus tenancy mode, "true" or "false". auto: on when the Prometheus is shared, i.e. there
is one to query and the operator serves more than one namespace (all of them, unless
watchNamespaces names exactly one). */}}
{{- define "inferpool-operator.prometheusTenancy" -}}
{{- $enabled := .Values.prometheus.tenancy.enabled -}}
{{- if eq (toString $enabled) "auto" -}}
{{- $queried := or .Values.prometheus.url .Values.prometheus.allowedURLs -}}
{{- $watched := .Values.watchNamespaces | default list -}}
{{- if and $queried (ne (len $watched) 1) }}true{{ else }}false{{ end -}}
{{- else -}}
{{- toString $enabled -}}
{{- end -}}
{{- end }}

{{/* How a ServiceMonitor/PodMonitor endpoint reaches a secured metrics port: HTTPS with
metrics.tls.scrapeTLSConfig; with metrics.auth a bearer token from metrics.auth.scrapeTokenSecret
(a Secret of the monitor's namespace), else, for the ServiceMonitor only, Prometheus's own
ServiceAccount token. */}}
{{- define "inferpool-operator.scrapeSecurity" -}}
{{- if .Values.metrics.tls.secretName }}
scheme: https
{{- with .Values.metrics.tls.scrapeTLSConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- if .Values.metrics.auth.enabled }}
{{- with .Values.metrics.auth.scrapeTokenSecret }}
authorization:
  type: Bearer
  credentials:
    name: {{ .name }}
    key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

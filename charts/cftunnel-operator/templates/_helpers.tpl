{{/* Chart name, truncated to the 63 characters Kubernetes allows in names and labels. */}}
{{- define "cftunnel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name. */}}
{{- define "cftunnel-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "cftunnel-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "cftunnel-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "cftunnel-operator.serviceAccountName" -}}
{{- default (include "cftunnel-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The user name the operator authenticates as; the autoscaler guard lets only it scale. */}}
{{- define "cftunnel-operator.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "cftunnel-operator.serviceAccountName" .) -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "cftunnel-operator.labels" -}}
app.kubernetes.io/name: {{ include "cftunnel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels. */}}
{{- define "cftunnel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cftunnel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

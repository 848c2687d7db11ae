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

{{/* The operator image: repository:tag, or repository:tag@digest when a digest is pinned. */}}
{{- define "cftunnel-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Whether a default Cloudflare API token is configured (created by the chart or existing). */}}
{{- define "cftunnel-operator.hasCredentials" -}}
{{- if or .Values.cloudflare.apiToken .Values.cloudflare.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The Secret that holds the default Cloudflare API token, and its key. */}}
{{- define "cftunnel-operator.credentialsSecretName" -}}
{{- default (printf "%s-cloudflare" (include "cftunnel-operator.fullname" .)) .Values.cloudflare.existingSecret -}}
{{- end -}}

{{- define "cftunnel-operator.credentialsSecretKey" -}}
{{- if .Values.cloudflare.existingSecret -}}{{ .Values.cloudflare.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{/* Where the token file is mounted in the operator container. */}}
{{- define "cftunnel-operator.credentialsDir" -}}
/var/run/secrets/cftunnel.dev/cloudflare
{{- end -}}

{{/*
Combinations of values the schema cannot refuse on its own; rendered (to nothing) by every
template of the operator so that a bad combination stops `helm install` with a clear message.
*/}}
{{- define "cftunnel-operator.validate" -}}
{{- if and .Values.cloudflare.apiToken .Values.cloudflare.existingSecret -}}
{{- fail "set only one of cloudflare.apiToken and cloudflare.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) -}}
{{- fail "metrics.port and health.port must differ" -}}
{{- end -}}
{{- end -}}

{{/*
RBAC rules for the namespaced resources the operator reads and writes: a ClusterRole holds them
when every namespace is watched, a Role in each watched namespace otherwise.
*/}}
{{- define "cftunnel-operator.namespacedRules" -}}
# The operator's own kinds; Kopf patches metadata (finalizers, progress annotations) and status.
- apiGroups: [cftunnel.dev]
  resources: [tunnels, vpcservices]
  verbs: [get, list, watch, patch]
- apiGroups: [cftunnel.dev]
  resources: [tunnels/status, vpcservices/status]
  verbs: [get, patch]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [cftunnel.dev]
  resources: [tunnels/finalizers, vpcservices/finalizers]
  verbs: [update]
# Tunnel run-token Secrets the operator writes by server-side apply (create + patch), and
# credentials Secrets that objects reference (read one by one: never listed or watched).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# Kubernetes Services that VPCServices target (existence check).
- apiGroups: [""]
  resources: [services]
  verbs: [get]
# The cloudflared connectors (watched for readiness and scale changes), their scale (the
# replica guard, scale to zero on deletion) and disruption budgets. Owner references
# garbage-collect them: the operator never deletes them itself.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# Autoscalers are only watched, to report AutoscalerConflict.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch]
- apiGroups: [autoscaling.k8s.io]
  resources: [verticalpodautoscalers]
  verbs: [get, list, watch]
# Events for what users must act on (Kopf writes core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Cluster-scoped reads Kopf needs in every mode: resource discovery and namespace watching. */}}
{{- define "cftunnel-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}

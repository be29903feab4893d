{{/* Chart name. */}}
{{- define "pgpart.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already holds the chart name. */}}
{{- define "pgpart.fullname" -}}
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

{{/* Name of cluster-scoped objects: unique per release namespace too. */}}
{{- define "pgpart.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "pgpart.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgpart.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgpart.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgpart.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pgpart.labels" -}}
helm.sh/chart: {{ include "pgpart.chart" . }}
{{ include "pgpart.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: pgpart
{{- end }}

{{- define "pgpart.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgpart.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgpart.leaseName" -}}
{{- default (include "pgpart.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "pgpart.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the controller does with the API in a watched namespace (or, as a ClusterRole,
in every namespace). Nothing more: secrets are only read one by one (no list/watch),
and policies are never changed, only their status.
*/}}
{{- define "pgpart.watchRules" -}}
- apiGroups: ["pgpart.io"]
  resources: ["partitionpolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["pgpart.io"]
  resources: ["partitionpolicies/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  {{- if eq (include "pgpart.secretWatch" .) "none" }}
  verbs: ["get"]
  {{- else }}
  verbs: ["get", "list", "watch"]
  {{- end }}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* secretWatch with its default resolved: none, labeled or all. */}}
{{- define "pgpart.secretWatch" -}}
{{- if .Values.secretWatch }}{{ .Values.secretWatch }}
{{- else if .Values.watchNamespaces }}all
{{- else }}none
{{- end }}
{{- end }}

{{/* Metadata the chart adds to the generated CRD. */}}
{{- define "pgpart.crdMetadata" -}}
{{- if .Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
{{- end }}
  labels:
    {{- include "pgpart.labels" . | nindent 4 }}
{{- end }}

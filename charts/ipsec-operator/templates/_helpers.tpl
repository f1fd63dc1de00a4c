{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "ipsec-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name when it already contains the chart name,
otherwise "<release>-<chart>". Component suffixes ("-controller", "-agent") are appended, so it is
cut at 52 characters to leave room for them within 63.
*/}}
{{- define "ipsec-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ipsec-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "ipsec-operator.labels" -}}
helm.sh/chart: {{ include "ipsec-operator.chart" . }}
app.kubernetes.io/name: {{ include "ipsec-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ipsec-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller"). Never change them: selectors are immutable. */}}
{{- define "ipsec-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipsec-operator.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "ipsec-operator.componentLabels" -}}
{{ include "ipsec-operator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ipsec-operator.controller.fullname" -}}
{{ include "ipsec-operator.fullname" . }}-controller
{{- end }}

{{- define "ipsec-operator.agent.fullname" -}}
{{ include "ipsec-operator.fullname" . }}-agent
{{- end }}

{{- define "ipsec-operator.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "ipsec-operator.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ipsec-operator.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "ipsec-operator.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image of one component: (dict "ctx" $ "image" .Values.agent.image). */}}
{{- define "ipsec-operator.image" -}}
{{- $root := .ctx.Values.image }}
{{- $repository := default $root.repository .image.repository }}
{{- $digest := default $root.digest .image.digest }}
{{- if $digest }}
{{- printf "%s@%s" $repository $digest }}
{{- else }}
{{- printf "%s:%s" $repository (default (default .ctx.Chart.AppVersion $root.tag) .image.tag) }}
{{- end }}
{{- end }}

{{- define "ipsec-operator.imagePullPolicy" -}}
{{- default .ctx.Values.image.pullPolicy .image.pullPolicy }}
{{- end }}

{{/* imagePullSecrets of one component: the chart's plus the component's. */}}
{{- define "ipsec-operator.imagePullSecrets" -}}
{{- $secrets := concat .ctx.Values.imagePullSecrets .secrets }}
{{- with $secrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scrape job names the alert rules match (monitoring/alerts.yaml). */}}
{{- define "ipsec-operator.controller.job" -}}
{{ .Values.monitoring.jobPrefix }}-controller
{{- end }}

{{- define "ipsec-operator.agent.job" -}}
{{ .Values.monitoring.jobPrefix }}-agent
{{- end }}

{{/* The metadata head added to each CRD of files/crds (their own metadata holds only the name). */}}
{{- define "ipsec-operator.crdMetadata" -}}
metadata:
  labels:
    {{- include "ipsec-operator.componentLabels" (dict "ctx" . "component" "crds") | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    # helm uninstall leaves the CRDs (and so every SA and policy, and the kernel state) in place.
    helm.sh/resource-policy: keep
  {{- end }}
{{ end }}

{{/* Target relabelings: the fixed job name, and for agents the node the pod runs on. */}}
{{- define "ipsec-operator.relabelings" -}}
- action: replace
  targetLabel: job
  replacement: {{ .job }}
{{- if eq .component "agent" }}
- action: replace
  sourceLabels:
    - __meta_kubernetes_pod_node_name
  targetLabel: node
{{- end }}
{{- end }}

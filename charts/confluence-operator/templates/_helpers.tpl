{{/* Chart name, cut to 63 characters (a DNS label). */}}
{{- define "confluence-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already holds it. */}}
{{- define "confluence-operator.fullname" -}}
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

{{- define "confluence-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: only name and instance, which never change across upgrades. */}}
{{- define "confluence-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "confluence-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "confluence-operator.labels" -}}
helm.sh/chart: {{ include "confluence-operator.chart" . }}
{{ include "confluence-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: confluence-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "confluence-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "confluence-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "confluence-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on the objects it reconciles. One list entry per resource,
so that a new kind is one more entry; the same rules serve the ClusterRole
(all namespaces) and each namespaced Role (watchNamespace).
- connectors: list/watch feed the controller's cache; patch adds and removes the
  finalizer (JSON patch). The operator never GETs a connector (its cache has it).
- connectors/status: get re-reads the live status before a write; patch is the
  server-side apply of the status.
- secrets: list/watch of metadata only (to notice rotations), get to read the
  referenced keys. Never written.
- events.k8s.io events: the Recorder creates Events and patches repeats.
*/}}
{{- define "confluence-operator.rules" -}}
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceconnectors"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceconnectors/status"]
  verbs: ["get", "patch"]
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceaccessgrants"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceaccessgrants/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Resources users read through the aggregated view role (one entry per resource). */}}
{{- define "confluence-operator.viewRules" -}}
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceconnectors", "confluenceconnectors/status"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceaccessgrants", "confluenceaccessgrants/status"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Resources users write through the aggregated edit/admin roles. */}}
{{- define "confluence-operator.editRules" -}}
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceconnectors"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
{{- end }}

{{/* Requesting just-in-time access: its own role, since a grant changes who may do
what in Confluence. */}}
{{- define "confluence-operator.grantRules" -}}
- apiGroups: ["confluence-operator.io"]
  resources: ["confluenceaccessgrants"]
  verbs: ["get", "list", "watch", "create", "delete"]
{{- end }}

{{/* Rendering-time checks of combinations the schema cannot express. */}}
{{- define "confluence-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElect) }}
{{- fail "replicaCount > 1 needs leaderElect: true (two replicas without a Lease would both sync every connector and fight over its status)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: true (the ServiceMonitor selects that Service)" }}
{{- end }}
{{- range .Values.watchNamespace }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "watchNamespace entry %q is not a namespace name" .) }}
{{- end }}
{{- end }}
{{- end }}

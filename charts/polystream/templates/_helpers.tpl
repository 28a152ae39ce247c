{{/* Object name of everything the release creates: <release>-operator. */}}
{{- define "polystream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "polystream.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "polystream.fullname" .) -}}
{{- end -}}

{{/* The selector: stable for the release's life (never the version). */}}
{{- define "polystream.selectorLabels" -}}
app.kubernetes.io/name: polystream-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "polystream.labels" -}}
{{ include "polystream.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: polystream
app.kubernetes.io/version: {{ include "polystream.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "polystream.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* Digests (sha256:...) join with '@', tags with ':'. */}}
{{- define "polystream.image" -}}
{{- $tag := include "polystream.tag" . -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does to StreamingPlatforms and their children, in whichever namespaces it
watches. Shared by the ClusterRole (all namespaces) and the per-namespace Roles.
*/}}
{{- define "polystream.rules" -}}
# The custom resource: watched; never written by the operator except its status.
- apiGroups: ["polystream.dev"]
  resources: ["streamingplatforms"]
  verbs: ["get", "list", "watch"]
# Status conditions and the gateway URL, written by the controller.
- apiGroups: ["polystream.dev"]
  resources: ["streamingplatforms/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["polystream.dev"]
  resources: ["streamingplatforms/finalizers"]
  verbs: ["update"]
# Children (config, Services, the pods' ServiceAccount): server-side applied (create on first
# apply, patch after), watched to restore hand edits, deleted when the spec drops them.
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The S1/S2/S3 Deployments, same life cycle as the children above.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One PodDisruptionBudget per component.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# HorizontalPodAutoscalers, only for components with spec autoscaling.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The platform's ingress NetworkPolicy.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The platform's ServiceMonitor, when spec.observability.serviceMonitor is on and the CRD exists.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Connection Secrets: read (store probes, the config hash that rolls pods), never written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# The Event recorder (events.k8s.io/v1), in the platform's namespace.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

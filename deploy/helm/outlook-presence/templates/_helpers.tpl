{{- define "outlook-presence.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "outlook-presence.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "outlook-presence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outlook-presence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "outlook-presence.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "outlook-presence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The checks a bad combination of values fails with, before anything is rendered. */}}
{{- define "outlook-presence.validate" -}}
{{- if not .Values.mattermost.url -}}
{{- fail "mattermost.url is required: Mattermost's base URL as the pods reach it, e.g. http://mattermost.mattermost:8065" -}}
{{- end -}}
{{- if not .Values.secret.name -}}
{{- fail "secret.name is required: an existing Secret holding the bot token (key secret.tokenKey) and the presence secret (key secret.presenceSecretKey)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (or .Values.redis.url .Values.redis.existingSecret)) -}}
{{- fail (printf "replicaCount is %d but no Redis is set: several replicas share state through Redis; set redis.url (or redis.existingSecret) or use replicaCount: 1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownGraceSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above shutdownGraceSeconds (%d), or Kubernetes kills the pod before it has closed its sockets" (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownGraceSeconds)) -}}
{{- end -}}
{{- end -}}

{{- define "rocketry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rocketry.labels" -}}
app.kubernetes.io/name: rocketry-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rocketry.selectorLabels" -}}
app.kubernetes.io/name: rocketry-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rocketry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rocketry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

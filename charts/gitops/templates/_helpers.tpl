{{- define "gitops.labels" -}}
app.kubernetes.io/part-of: platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
platform.acme.io/environment: {{ .Values.environment }}
{{- end -}}

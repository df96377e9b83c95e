{{- define "addons.labels" -}}
app.kubernetes.io/part-of: platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
platform.acme.io/environment: {{ .Values.cluster.environment }}
{{- end -}}

{{/* The IRSA annotation of an add-on's service account: the role the infra program made. */}}
{{- define "addons.role" -}}
eks.amazonaws.com/role-arn: {{ index .root.Values.cluster.roles .owner | quote }}
{{- end -}}

{{/* Namespaces the enabled add-ons run in, and the Pod Security level each needs (the
strictest of the add-ons there); kube-system is the cluster's own and is left alone. */}}
{{- define "addons.namespaces" -}}
{{- $levels := dict "restricted" 0 "baseline" 1 "privileged" 2 }}
{{- $namespaces := dict }}
{{- range $name, $addon := .Values.addons }}
{{- if and $addon.enabled (ne $addon.namespace "kube-system") }}
{{- $current := get $namespaces $addon.namespace | default "restricted" }}
{{- if gt (get $levels $addon.podSecurity) (get $levels $current) }}
{{- $_ := set $namespaces $addon.namespace $addon.podSecurity }}
{{- else }}
{{- $_ := set $namespaces $addon.namespace $current }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $namespaces }}
{{- end -}}

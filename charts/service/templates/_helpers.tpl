{{/*
Object names: the release name, which is the service's name (one release per service). The
infra program's IRSA trust, the secret's name and the SLO gate's queries all rely on it.
*/}}
{{- define "service.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The label that identifies one service's pods; network policies of other services use it. */}}
{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "service.labels" -}}
helm.sh/chart: {{ include "service.chart" . }}
{{ include "service.selectorLabels" . }}
{{- with .Values.image.tag }}
app.kubernetes.io/version: {{ . | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: platform
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Common metadata: name, namespace (never the default namespace implicitly) and labels. */}}
{{- define "service.metadata" -}}
name: {{ include "service.fullname" . }}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "service.labels" . | nindent 2 }}
{{- end -}}

{{- define "service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "service.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image reference: repository@digest when a digest is set (it overrides the tag). */}}
{{- define "service.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (required "image.tag or image.digest is required" .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "service.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: http
{{- with .probe.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
periodSeconds: {{ .probe.periodSeconds }}
{{- with .probe.timeoutSeconds }}
timeoutSeconds: {{ . }}
{{- end }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/* The labels Prometheus puts on this service's series (ServiceMonitor: namespace, service). */}}
{{- define "service.promSelector" -}}
namespace="{{ .Release.Namespace }}", service="{{ include "service.fullname" . }}"
{{- end -}}

{{/* What the HPA scales: the Deployment, or the Rollout that replaces it. */}}
{{- define "service.workloadRef" -}}
{{- if eq .Values.delivery.strategy "rolling" -}}
apiVersion: apps/v1
kind: Deployment
{{- else -}}
apiVersion: argoproj.io/v1alpha1
kind: Rollout
{{- end }}
name: {{ include "service.fullname" . }}
{{- end -}}

{{/*
OpenTelemetry SDK settings (the standard OTEL_* variables): where to send spans and the
resource attributes that tie them to this release, pod and environment.
*/}}
{{- define "service.otelEnv" -}}
- name: OTEL_SERVICE_NAME
  value: {{ include "service.fullname" . | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ with .Values.tracing.collector }}{{ printf "http://%s.%s.svc:%v" .service .namespace .port | quote }}{{ end }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplingRatio | toString | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# From the pod's label, so a promotion changes only the image fields of the manifests.
- name: SERVICE_VERSION
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['app.kubernetes.io/version']
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=%s,service.version=$(SERVICE_VERSION),deployment.environment.name=%s,k8s.cluster.name=%s,k8s.namespace.name=%s,k8s.pod.name=$(K8S_POD_NAME),k8s.node.name=$(K8S_NODE_NAME)" .Release.Namespace (required "platform.environment is set by the ApplicationSet (and by platform render)" .Values.platform.environment) .Values.platform.cluster .Release.Namespace | quote }}
{{- end -}}

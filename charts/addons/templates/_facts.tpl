{{/*
Per add-on: the chart values that come from the cluster (the `cluster` values, filled in from
the cluster secret's annotations). The add-on's `values` in values.yaml and
environments/addons/<env>.yaml are merged over these.
*/}}

{{- define "addons.facts.aws-load-balancer-controller" -}}
clusterName: {{ .Values.cluster.name }}
region: {{ .Values.cluster.region }}
vpcId: {{ .Values.cluster.vpcId }}
# The webhook's certificate comes from cert-manager (wave 0).
enableCertManager: true
serviceAccount:
  name: aws-load-balancer-controller
  annotations:
    {{- include "addons.role" (dict "root" . "owner" "aws-load-balancer-controller") | nindent 4 }}
{{- end -}}

{{- define "addons.facts.cert-manager" -}}
crds:
  enabled: true
  keep: true
{{- end -}}

{{- define "addons.facts.external-dns" -}}
provider:
  name: aws
env:
  - name: AWS_DEFAULT_REGION
    value: {{ .Values.cluster.region }}
domainFilters:
  - {{ .Values.cluster.domain }}
# Only this zone (the chart has no zoneIdFilters value: the flag is passed as is).
extraArgs:
  - --zone-id-filter={{ .Values.cluster.hostedZoneId }}
# Records it made carry this owner; it never touches anyone else's.
txtOwnerId: {{ .Values.cluster.name }}
serviceAccount:
  name: external-dns
  annotations:
    {{- include "addons.role" (dict "root" . "owner" "external-dns") | nindent 4 }}
{{- end -}}

{{- define "addons.facts.external-secrets" -}}
# The CRDs are the external-secrets-crds add-on's (the release's deploy/crds/bundle.yaml, an
# earlier wave): the chart vendored from the git tag has no CRD templates.
installCRDs: false
{{- end -}}

{{- define "addons.facts.prometheus-operator-crds" -}}
{}
{{- end -}}

{{- define "addons.facts.kube-prometheus-stack" -}}
# The CRDs are the prometheus-operator-crds add-on's (wave 0).
crds:
  enabled: false
grafana:
  # This chart's (grafana-serviceaccount.yaml, wave 1): the SecretStore that reads the admin
  # login authenticates as it before Grafana exists.
  serviceAccount:
    create: false
    name: kube-prometheus-stack-grafana
  # The admin login comes from AWS Secrets Manager (grafana-admin, see externalsecret.yaml).
  admin:
    existingSecret: grafana-admin
    userKey: admin-user
    passwordKey: admin-password
  ingress:
    enabled: true
    ingressClassName: alb
    hosts:
      - grafana.{{ .Values.cluster.domain }}
    annotations:
      alb.ingress.kubernetes.io/scheme: internal
      alb.ingress.kubernetes.io/target-type: ip
      alb.ingress.kubernetes.io/listen-ports: '[{"HTTPS":443}]'
      alb.ingress.kubernetes.io/ssl-policy: ELBSecurityPolicy-TLS13-1-2-2021-06
      external-dns.alpha.kubernetes.io/hostname: grafana.{{ .Values.cluster.domain }}
  additionalDataSources:
    - name: CloudWatch
      type: cloudwatch
      jsonData:
        authType: default
        defaultRegion: {{ .Values.cluster.region }}
    - name: X-Ray
      type: grafana-x-ray-datasource
      jsonData:
        authType: default
        defaultRegion: {{ .Values.cluster.region }}
{{- with .Values.prometheus.host }}
# The promotion gates of the next stage query it here, from inside the network; the load
# balancer controller finds the environment's ACM certificate by the host.
prometheus:
  ingress:
    enabled: true
    ingressClassName: alb
    hosts:
      - {{ . }}
    paths:
      - /
    pathType: Prefix
    annotations:
      alb.ingress.kubernetes.io/scheme: internal
      alb.ingress.kubernetes.io/target-type: ip
      alb.ingress.kubernetes.io/listen-ports: '[{"HTTPS":443}]'
      alb.ingress.kubernetes.io/ssl-policy: ELBSecurityPolicy-TLS13-1-2-2021-06
      alb.ingress.kubernetes.io/healthcheck-path: /-/ready
      external-dns.alpha.kubernetes.io/hostname: {{ . }}
{{- end }}
{{- end -}}

{{- define "addons.facts.fluent-bit" -}}
serviceAccount:
  name: fluent-bit
  annotations:
    {{- include "addons.role" (dict "root" . "owner" "fluent-bit") | nindent 4 }}
config:
  # One log group per cluster, created encrypted and with its retention by the infra program
  # (the only one it makes: auto_create_group Off). Every input's tag has an output here, or
  # Fluent Bit reads the records and drops them: the pods' (kube.*) and the kubelet journal's
  # (host.*, in its own streams of the same group).
  outputs: |
    [OUTPUT]
        Name              cloudwatch_logs
        Match             kube.*
        region            {{ .Values.cluster.region }}
        log_group_name    /platform/{{ .Values.cluster.name }}/containers
        log_stream_prefix pod.
        auto_create_group Off

    [OUTPUT]
        Name              cloudwatch_logs
        Match             host.*
        region            {{ .Values.cluster.region }}
        log_group_name    /platform/{{ .Values.cluster.name }}/containers
        log_stream_prefix node.
        auto_create_group Off
{{- end -}}

{{- define "addons.facts.opentelemetry-collector" -}}
fullnameOverride: opentelemetry-collector
serviceAccount:
  name: opentelemetry-collector
  annotations:
    {{- include "addons.role" (dict "root" . "owner" "opentelemetry-collector") | nindent 4 }}
config:
  exporters:
    awsxray:
      region: {{ .Values.cluster.region }}
  service:
    pipelines:
      traces:
        receivers: [otlp]
        processors: [memory_limiter, batch]
        exporters: [awsxray]
{{- end -}}

{{- define "addons.facts.cluster-autoscaler" -}}
cloudProvider: aws
awsRegion: {{ .Values.cluster.region }}
fullnameOverride: cluster-autoscaler
# The Auto Scaling groups tagged k8s.io/cluster-autoscaler/enabled and
# k8s.io/cluster-autoscaler/<cluster> (the chart's default tags), i.e. this cluster's node groups.
autoDiscovery:
  clusterName: {{ .Values.cluster.name }}
rbac:
  serviceAccount:
    name: cluster-autoscaler
    annotations:
      {{- include "addons.role" (dict "root" . "owner" "cluster-autoscaler") | nindent 6 }}
{{- end -}}

{{- define "addons.facts.metrics-server" -}}
{}
{{- end -}}

{{- define "addons.facts.argo-rollouts" -}}
installCRDs: true
keepCRDs: true
{{- end -}}

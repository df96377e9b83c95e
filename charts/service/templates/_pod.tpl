{{/*
The pod template, shared by the Deployment (strategy rolling) and the Argo Rollouts Rollout
(canary, blueGreen) so both run exactly the same pods.
*/}}
{{- define "service.podTemplate" -}}
metadata:
  labels:
    {{- include "service.labels" . | nindent 4 }}
  annotations:
    # Roll the pods when their settings change.
    checksum/config: {{ toJson .Values.env | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "service.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ .Values.runAsUser }}
    runAsGroup: {{ .Values.runAsGroup }}
    fsGroup: {{ .Values.runAsGroup }}
    seccompProfile:
      type: RuntimeDefault
  {{- if .Values.topologySpread.enabled }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "service.selectorLabels" . | nindent 10 }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "service.selectorLabels" . | nindent 10 }}
  {{- end }}
  containers:
    - name: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
      image: {{ include "service.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with .Values.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "service.fullname" . }}
      {{- if .Values.tracing.enabled }}
      env:
        {{- include "service.otelEnv" . | nindent 8 }}
      {{- end }}
      livenessProbe:
        {{- include "service.httpProbe" (dict "probe" .Values.probes.liveness) | nindent 8 }}
      readinessProbe:
        {{- include "service.httpProbe" (dict "probe" .Values.probes.readiness) | nindent 8 }}
      {{- if .Values.probes.startup.enabled }}
      startupProbe:
        {{- include "service.httpProbe" (dict "probe" .Values.probes.startup) | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        runAsUser: {{ .Values.runAsUser }}
        capabilities:
          drop: ["ALL"]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        # Python needs a writable temp dir; the root filesystem stays read-only.
        - name: tmp
          mountPath: /tmp
        {{- if .Values.secrets.enabled }}
        # One file per key of the service's secret (files, not environment variables: they do
        # not leak into child processes or crash dumps, and they update in place).
        - name: secrets
          mountPath: {{ .Values.secrets.mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.secrets.enabled }}
    - name: secrets
      secret:
        secretName: {{ include "service.fullname" . }}
        defaultMode: 0400
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

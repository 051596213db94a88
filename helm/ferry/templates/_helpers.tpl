{{/* Chart name. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name, at most 40 characters so suffixes fit DNS labels. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "worker"). */}}
{{- define "ferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ferry
{{ include "ferry.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of one component. */}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Ferry image. */}}
{{- define "ferry.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart deploys etcd. */}}
{{- define "ferry.etcdBundled" -}}
{{- if not .Values.etcd.external.endpoints -}}true{{- end -}}
{{- end -}}

{{/* etcd client endpoints, comma-separated. */}}
{{- define "ferry.etcdEndpoints" -}}
{{- if .Values.etcd.external.endpoints -}}
{{- join "," .Values.etcd.external.endpoints -}}
{{- else -}}
{{- $full := include "ferry.fullname" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.bundled.replicas) -}}
{{- $eps = append $eps (printf "http://%s-etcd-%d.%s-etcd.%s.svc.%s:2379" $full $i $full $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $eps -}}
{{- end -}}
{{- end -}}

{{/* URL scheme of the coordinator's gRPC port. */}}
{{- define "ferry.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* Pod security context shared by every pod. */}}
{{- define "ferry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context shared by every container. */}}
{{- define "ferry.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod anti-affinity; call with (dict "ctx" $ "component" "worker" "mode" "soft"). */}}
{{- define "ferry.antiAffinity" -}}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "ferry.selectorLabels" . | nindent 10 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "ferry.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end -}}

{{/* Connection environment (env mode) of coordinators and workers. */}}
{{- define "ferry.connectionEnv" -}}
{{- range .Values.connections }}
{{- $var := printf "FERRY_CONN_%s" (upper .name) }}
{{- if eq $.Values.connectionsFrom "file" }}
- name: {{ $var }}_FILE
  value: /etc/ferry/connections/{{ .name }}/{{ .urlKey }}
{{- if .passwordKey }}
- name: {{ $var }}_PASSWORD_FILE
  value: /etc/ferry/connections/{{ .name }}/{{ .passwordKey }}
{{- end }}
{{- else }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .urlKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes every Ferry pod mounts: /tmp, connection and auth Secrets. */}}
{{- define "ferry.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if eq .Values.connectionsFrom "file" }}
{{- range .Values.connections }}
- name: conn-{{ .name | lower | replace "_" "-" }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end -}}

{{- define "ferry.commonMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.connectionsFrom "file" }}
{{- range .Values.connections }}
- name: conn-{{ .name | lower | replace "_" "-" }}
  mountPath: /etc/ferry/connections/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment every Ferry pod gets besides the ConfigMap. */}}
{{- define "ferry.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if .Values.metrics.enabled }}
- name: FERRY_METRICS_LISTEN
  value: 0.0.0.0:{{ .Values.metrics.port }}
{{- end }}
{{- include "ferry.connectionEnv" . }}
{{- end -}}

{{/* Pod annotations for Prometheus plus a checksum of the ConfigMap. */}}
{{- define "ferry.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if and .Values.metrics.enabled .Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Egress to DNS. */}}
{{- define "ferry.dnsEgress" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
{{- define "ferry.metricsIngress" -}}
{{- if .Values.metrics.enabled }}
- ports:
    - {port: {{ .Values.metrics.port }}, protocol: TCP}
  {{- with .Values.networkPolicy.metricsScrapers }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

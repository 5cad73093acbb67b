{{- /*
Names and labels of every object, after Helm's conventions: objects are named after the
release's full name (the release name when it contains "ferrolb", else <release>-ferrolb, or
fullnameOverride), so two releases never collide.
*/}}

{{- define "ferrolb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferrolb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The labels that select a component's pods: (dict "root" $ "component" "speaker"). */}}
{{- define "ferrolb.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* Every object's labels: (dict "root" $ "component" "speaker"). */}}
{{- define "ferrolb.labels" -}}
{{ include "ferrolb.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "ferrolb.chart" .root }}
{{- end -}}

{{- /* A daemon's image: (dict "root" $ "image" .Values.image.speaker). */}}
{{- define "ferrolb.image" -}}
{{- $registry := .image.registry | default .root.Values.image.registry -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* The Secret holding the speakers' heartbeat key. */}}
{{- define "ferrolb.heartbeatKeySecret" -}}
{{- .Values.speaker.heartbeatKey.secretName | default (printf "%s-heartbeat-key" (include "ferrolb.fullname" .)) -}}
{{- end -}}

{{- /* The ConfigMap holding the pool files. */}}
{{- define "ferrolb.poolsConfigMap" -}}
{{- .Values.pools.configMap.name | default (printf "%s-pools" (include "ferrolb.fullname" .)) -}}
{{- end -}}

{{- /* The Secret of the Git credentials. */}}
{{- define "ferrolb.gitSecret" -}}
{{- .Values.pools.git.credentials.secretName | default (printf "%s-git-credentials" (include "ferrolb.fullname" .)) -}}
{{- end -}}

{{- /* The webhook's serving certificate Secret. */}}
{{- define "ferrolb.webhookSecret" -}}
{{- .Values.pools.kubernetes.webhook.certificate.secretName | default (printf "%s-webhook-tls" (include "ferrolb.fullname" .)) -}}
{{- end -}}

{{- /* The bundled etcd's name, and its Services: <etcd> for clients, <etcd>-peer headless. */}}
{{- define "ferrolb.etcd" -}}
{{- printf "%s-etcd" (include "ferrolb.fullname" .) -}}
{{- end -}}

{{- /* The bundled etcd's server and peer certificate Secret. */}}
{{- define "ferrolb.etcdServerSecret" -}}
{{- .Values.etcd.bundledTLS.serverSecretName | default (printf "%s-server-tls" (include "ferrolb.etcd" .)) -}}
{{- end -}}

{{- /* The Secret of the daemons' etcd client certificate (ca.crt, tls.crt, tls.key). */}}
{{- define "ferrolb.etcdClientSecret" -}}
{{- if .Values.etcd.tls.secretName -}}
{{- .Values.etcd.tls.secretName -}}
{{- else if .Values.etcd.bundled -}}
{{- printf "%s-client-tls" (include "ferrolb.etcd" .) -}}
{{- else -}}
{{- printf "%s-etcd-tls" (include "ferrolb.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- /* The etcd client URLs the daemons are given. */}}
{{- define "ferrolb.etcdEndpoints" -}}
{{- if .Values.etcd.bundled -}}
{{- $scheme := ternary "https" "http" .Values.etcd.tls.enabled -}}
{{- printf "%s://%s.%s.svc:2379" $scheme (include "ferrolb.etcd" .) .Release.Namespace -}}
{{- else -}}
{{- required "etcd.endpoints: with etcd.bundled false, give the client URLs of your etcd cluster (https://etcd-0.example:2379,...)" .Values.etcd.endpoints -}}
{{- end -}}
{{- end -}}

{{- /* The daemons' etcd flags, their mount and volume. */}}
{{- define "ferrolb.etcdArgs" -}}
- --etcd-endpoints={{ include "ferrolb.etcdEndpoints" . }}
- --etcd-prefix={{ .Values.etcd.prefix }}
{{- if .Values.etcd.tls.enabled }}
- --etcd-cacert=/etc/ferrolb/etcd-tls/ca.crt
- --etcd-cert=/etc/ferrolb/etcd-tls/tls.crt
- --etcd-key=/etc/ferrolb/etcd-tls/tls.key
{{- end }}
{{- end -}}

{{- define "ferrolb.etcdMount" -}}
- name: etcd-tls
  mountPath: /etc/ferrolb/etcd-tls
  readOnly: true
{{- end -}}

{{- define "ferrolb.etcdVolume" -}}
- name: etcd-tls
  secret:
    secretName: {{ include "ferrolb.etcdClientSecret" . }}
    defaultMode: 0440
{{- end -}}

{{- /* A pod's annotations: the scrape annotations (prometheus.scrapeAnnotations) and the
component's podAnnotations; (dict "root" $ "port" 7472 "values" .Values.speaker). */}}
{{- define "ferrolb.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .root.Values.prometheus.scrapeAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = mergeOverwrite $annotations (.values.podAnnotations | default dict) -}}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- /* Cluster-scoped objects carry the namespace too: releases of one name in two namespaces. */}}
{{- define "ferrolb.clusterName" -}}
{{- printf "%s-%s" (include "ferrolb.fullname" .) .Release.Namespace | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "heldout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "heldout.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "heldout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "heldout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "heldout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "heldout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "heldout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "heldout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "heldout.image" -}}
{{- $variant := ternary "gpu" "cpu" .Values.gpu.enabled }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-%s" .Chart.AppVersion $variant) .Values.image.tag) }}
{{- end }}

{{- define "heldout.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "heldout.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}

{{- define "heldout.databaseSecret" -}}
{{- default (printf "%s-database" (include "heldout.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* The most pods that can run at once: what SQLite, PVC access modes and the PDB care about. */}}
{{- define "heldout.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/* Series of this release only: ServiceMonitor targets get job=<Service name> and the namespace. */}}
{{- define "heldout.seriesSelector" -}}
namespace="{{ .Release.Namespace }}", job="{{ include "heldout.fullname" . }}"
{{- end }}

{{- define "heldout.validate" -}}
{{- $max := include "heldout.maxReplicas" . | int }}
{{- if and (gt $max 1) (eq .Values.database.type "sqlite") }}
{{- fail (printf "heldout: %d replicas cannot share SQLite, which lives on one pod's disk. Set database.type=postgresql with database.url or database.existingSecret, or run one replica." $max) }}
{{- end }}
{{- if and (eq .Values.database.type "postgresql") (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "heldout: database.type=postgresql needs database.url or database.existingSecret." }}
{{- end }}
{{- if and (ne .Values.model.source "none") (not (hasPrefix (printf "%s/" (trimSuffix "/" .Values.model.mountPath)) (printf "%s/" (trimSuffix "/" .Values.model.path)))) }}
{{- fail (printf "heldout: model.path %s must lie under model.mountPath %s." .Values.model.path .Values.model.mountPath) }}
{{- end }}
{{- if and (eq .Values.model.source "pvc") (not .Values.model.pvc.claimName) }}
{{- fail "heldout: model.source=pvc needs model.pvc.claimName." }}
{{- end }}
{{- if and (eq .Values.model.source "image") (not .Values.model.image.repository) }}
{{- fail "heldout: model.source=image needs model.image.repository." }}
{{- end }}
{{- if and (gt $max 1) .Values.persistence.enabled (not (has "ReadWriteMany" .Values.persistence.accessModes)) }}
{{- fail (printf "heldout: %d replicas cannot share a %s data volume. Set persistence.accessModes to [ReadWriteMany] or persistence.enabled=false." $max (join "," .Values.persistence.accessModes)) }}
{{- end }}
{{- end }}
